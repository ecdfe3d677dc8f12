//! Lowering: the planner resolves each node it schedules, once, into a [`Launch`]: the kernel
//! (family, shape struct, epilogue) and the values it reads, writes and updates. The CPU
//! executor, the GPU preparation and the profiler match on that and never work a shape out again.

use crate::error::{ModelError, Result};
use crate::fuse::Fused;
use crate::graph::{
    batch_norm_shape, conv_shape, pool_shape, ConvConfig, Node, NodeId, Op, PoolConfig,
};
use crate::vars::VarId;
use sinter_ops::attention::AttentionShape;
use sinter_ops::batch_norm::{BatchNormShape, BatchNormUpdate};
use sinter_ops::conv::Conv2dShape;
use sinter_ops::elementwise::Epilogue;
use sinter_ops::embedding::EmbeddingShape;
use sinter_ops::layout::StridedCopy;
use sinter_ops::loss::CrossEntropyShape;
use sinter_ops::matmul::MatmulShape;
use sinter_ops::norm::LayerNormShape;
use sinter_ops::pool::Pool2dShape;
use sinter_ops::reduce::ReduceShape;
use sinter_ops::select::SelectShape;
use sinter_ops::softmax::RowsShape;
use sinter_ops::{Cost, Kernel};

/// One scheduled kernel of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    /// The plan node it computes (its tag names the launch in profiles).
    pub node: NodeId,
    /// What runs, with every size it needs.
    pub kernel: Kernel,
    /// The values it reads, in the kernel's operand order.
    pub reads: Vec<NodeId>,
    /// The values it writes: the node, then its secondary outputs in order. Empty for an
    /// update, which writes variables instead.
    pub writes: Vec<NodeId>,
    /// The variables an update reads and writes in place: an optimizer's parameter, then its
    /// states (SGD: velocity; Adam: m, v); a batch norm's running mean, running variance and
    /// batch counter. Empty for every other kernel.
    pub updates: Vec<VarId>,
}

impl Launch {
    /// FLOPs and bytes of this launch (the one cost model, [`Kernel::cost`]).
    pub fn cost(&self) -> Cost {
        self.kernel.cost()
    }
}

/// Lowers node `i` of a planned graph; `extras[i]` are its secondary outputs. Leaves (inputs,
/// variables, constants), reshapes and secondary outputs are not launches.
pub(crate) fn lower(nodes: &[Node], extras: &[Vec<NodeId>], i: NodeId) -> Result<Launch> {
    let node = &nodes[i];
    let shape = |k: usize| -> &[usize] { &nodes[node.inputs[k]].shape };
    let len = node.numel();
    let mut updates = Vec::new();
    let kernel = match &node.op {
        Op::Unary(op) => Kernel::Unary { op: *op, len },
        Op::UnaryGrad(op) => Kernel::UnaryGrad { op: *op, len },
        Op::Affine { alpha, beta } => Kernel::Affine {
            alpha: *alpha,
            beta: *beta,
            len,
        },
        Op::Binary(op) => Kernel::Binary {
            op: *op,
            a: shape(0).to_vec(),
            b: shape(1).to_vec(),
        },
        Op::BroadcastTo => Kernel::BroadcastTo {
            from: shape(0).to_vec(),
            to: node.shape.clone(),
        },
        Op::Permute(perm) => Kernel::Copy {
            op: "permute",
            parts: vec![StridedCopy::permute(shape(0), perm)],
        },
        Op::Slice { axis, start } => Kernel::Copy {
            op: "slice",
            parts: vec![StridedCopy::slice(
                shape(0),
                *axis,
                *start,
                node.shape[*axis],
            )],
        },
        Op::Concat { axis } => {
            let mut at = 0;
            let parts = (0..node.inputs.len())
                .map(|k| {
                    let part = StridedCopy::concat_part(&node.shape, *axis, at, shape(k));
                    at += shape(k)[*axis];
                    part
                })
                .collect();
            Kernel::Copy {
                op: "concat",
                parts,
            }
        }
        Op::Reduce { op, axis, .. } => Kernel::Reduce {
            op: *op,
            shape: ReduceShape::along(shape(0), *axis),
        },
        Op::MatMul { trans_a, trans_b } => Kernel::MatMul {
            shape: matmul_shape(shape(0), shape(1), *trans_a, *trans_b),
            epilogue: Epilogue::NONE,
        },
        Op::Fused(Fused::MatMul {
            trans_a,
            trans_b,
            epilogue,
        }) => Kernel::MatMul {
            shape: matmul_shape(shape(0), shape(1), *trans_a, *trans_b),
            epilogue: *epilogue,
        },
        Op::Conv2d(c) => Kernel::Conv2d {
            shape: conv(node, shape(0), shape(1), *c)?,
            epilogue: Epilogue::NONE,
        },
        Op::Fused(Fused::Conv2d { conv: c, epilogue }) => Kernel::Conv2d {
            shape: conv(node, shape(0), shape(1), *c)?,
            epilogue: *epilogue,
        },
        // inputs [dy, w]; the node has x's shape
        Op::Conv2dGradInput(c) => Kernel::Conv2dGradInput(conv(node, &node.shape, shape(1), *c)?),
        // inputs [x, dy]; the node has w's shape
        Op::Conv2dGradWeight(c) => Kernel::Conv2dGradWeight(conv(node, shape(0), &node.shape, *c)?),
        Op::MaxPool2d(c) => Kernel::MaxPool2d(pool(node, shape(0), *c)?),
        Op::MaxPool2dGrad(c) => Kernel::MaxPool2dGrad {
            shape: pool(node, shape(0), *c)?,
            relu: false,
        },
        Op::Fused(Fused::MaxPool2dGradRelu(c)) => Kernel::MaxPool2dGrad {
            shape: pool(node, shape(0), *c)?,
            relu: true,
        },
        Op::AvgPool2d(c) => Kernel::AvgPool2d(pool(node, shape(0), *c)?),
        // inputs [dy]; the node has x's shape
        Op::AvgPool2dGrad(c) => Kernel::AvgPool2dGrad(pool(node, &node.shape, *c)?),
        Op::CrossEntropy => Kernel::CrossEntropy(cross_entropy_shape(shape(0))),
        Op::CrossEntropyGrad => Kernel::CrossEntropyGrad(cross_entropy_shape(shape(0))),
        Op::CountCorrect => Kernel::CountCorrect(cross_entropy_shape(shape(0))),
        Op::Softmax => Kernel::Softmax(rows_shape(shape(0))),
        Op::LogSoftmax => Kernel::LogSoftmax(rows_shape(shape(0))),
        Op::SoftmaxGrad => Kernel::SoftmaxGrad(rows_shape(shape(0))),
        Op::LogSoftmaxGrad => Kernel::LogSoftmaxGrad(rows_shape(shape(0))),
        Op::LayerNorm { eps } => Kernel::LayerNorm(layer_norm_shape(shape(0), *eps)),
        Op::LayerNormGradInput { eps } => {
            Kernel::LayerNormGradInput(layer_norm_shape(shape(0), *eps))
        }
        Op::LayerNormGradGamma { eps } => {
            Kernel::LayerNormGradGamma(layer_norm_shape(shape(0), *eps))
        }
        Op::Embedding => Kernel::Embedding(embedding_shape(shape(0), shape(1))),
        // inputs [ids, dout]; the node has the table's shape
        Op::EmbeddingGrad => Kernel::EmbeddingGrad(embedding_shape(shape(0), &node.shape)),
        Op::Attention {
            causal,
            scale,
            dropout,
        } => Kernel::Attention(attention_shape(shape(0), *causal, *scale, *dropout)),
        Op::AttentionGrad {
            causal,
            scale,
            dropout,
        } => Kernel::AttentionGrad(attention_shape(shape(0), *causal, *scale, *dropout)),
        Op::SgdUpdate {
            param,
            velocity,
            config,
        } => {
            updates = vec![*param, *velocity];
            Kernel::Sgd {
                len: nodes[node.inputs[0]].numel(),
                config: *config,
            }
        }
        Op::AdamUpdate {
            param,
            m,
            v,
            config,
        } => {
            updates = vec![*param, *m, *v];
            Kernel::Adam {
                len: nodes[node.inputs[0]].numel(),
                config: *config,
            }
        }
        Op::RmsNorm { eps } => Kernel::RmsNorm(layer_norm_shape(shape(0), *eps)),
        Op::RmsNormGradInput { eps } => Kernel::RmsNormGradInput(layer_norm_shape(shape(0), *eps)),
        Op::RmsNormGradGamma { eps } => Kernel::RmsNormGradGamma(layer_norm_shape(shape(0), *eps)),
        // inputs [x, ids]
        Op::IndexSelect { axis } => {
            Kernel::IndexSelect(SelectShape::along(shape(0), *axis, numel(shape(1))))
        }
        // inputs [ids, dy]; the node has x's shape
        Op::IndexSelectGrad { axis } => {
            Kernel::IndexSelectGrad(SelectShape::along(&node.shape, *axis, numel(shape(0))))
        }
        // inputs [x, index]
        Op::Gather { axis } => Kernel::Gather(SelectShape::along(shape(0), *axis, shape(1)[*axis])),
        // inputs [index, dy]; the node has x's shape
        Op::GatherGrad { axis } => {
            Kernel::GatherGrad(SelectShape::along(&node.shape, *axis, shape(0)[*axis]))
        }
        Op::Where => Kernel::Where {
            mask: shape(0).to_vec(),
            a: shape(1).to_vec(),
            b: shape(2).to_vec(),
        },
        Op::BatchNorm2d { eps } => Kernel::BatchNorm2d(batch_norm(node, shape(0), *eps)?),
        // inputs [x, weight, stats, dy]
        Op::BatchNorm2dGrad { eps } => Kernel::BatchNorm2dGrad(batch_norm(node, shape(0), *eps)?),
        Op::BatchNormUpdate {
            running_mean,
            running_var,
            num_batches_tracked,
            momentum,
            count,
        } => {
            updates = vec![*running_mean, *running_var, *num_batches_tracked];
            // inputs [stats: [2, C]]
            Kernel::BatchNormUpdate(BatchNormUpdate {
                channels: shape(0)[1],
                count: *count,
                momentum: *momentum,
            })
        }
        Op::Input { .. } | Op::Var(_) | Op::Fill(_) | Op::Reshape | Op::Secondary(_) => {
            return Err(ModelError::Graph(format!(
                "node {i} ({}) is not a kernel: the planner schedules only computed values",
                node.op.name()
            )))
        }
    };
    let writes = if updates.is_empty() {
        std::iter::once(i)
            .chain(extras[i].iter().copied())
            .collect()
    } else {
        Vec::new()
    };
    Ok(Launch {
        node: i,
        kernel,
        reads: node.inputs.clone(),
        writes,
        updates,
    })
}

// ---- kernel shapes of graph ops ----------------------------------------------------------------

/// A (possibly batched) product `op(a) · op(b)` over the last two axes; a rank-2 operand is
/// shared by every batch item (batch stride 0).
fn matmul_shape(a: &[usize], b: &[usize], trans_a: bool, trans_b: bool) -> MatmulShape {
    let (ra, rb) = (a.len(), b.len());
    let (m, k) = if trans_a {
        (a[ra - 1], a[ra - 2])
    } else {
        (a[ra - 2], a[ra - 1])
    };
    let n = if trans_b { b[rb - 2] } else { b[rb - 1] };
    let batch_a: usize = a[..ra - 2].iter().product();
    let batch_b: usize = b[..rb - 2].iter().product();
    MatmulShape {
        batch: batch_a.max(batch_b),
        m,
        n,
        k,
        trans_a,
        trans_b,
        a_batch_stride: if ra > 2 { m * k } else { 0 },
        b_batch_stride: if rb > 2 { k * n } else { 0 },
    }
}

/// Shape rules were checked when the node was recorded; a failure here means a graph was
/// edited by hand into something inconsistent, and says which node.
fn conv(node: &Node, x: &[usize], w: &[usize], c: ConvConfig) -> Result<Conv2dShape> {
    conv_shape(x, w, c)
        .map_err(|e| ModelError::Graph(format!("{} ({}): {e}", node.tag, node.op.name())))
}

fn pool(node: &Node, x: &[usize], c: PoolConfig) -> Result<Pool2dShape> {
    pool_shape(x, c)
        .map_err(|e| ModelError::Graph(format!("{} ({}): {e}", node.tag, node.op.name())))
}

fn batch_norm(node: &Node, x: &[usize], eps: f32) -> Result<BatchNormShape> {
    batch_norm_shape(x, eps)
        .map_err(|e| ModelError::Graph(format!("{} ({}): {e}", node.tag, node.op.name())))
}

/// A tensor as rows of its last axis.
fn rows_shape(x: &[usize]) -> RowsShape {
    let cols = x.last().copied().unwrap_or(1);
    RowsShape {
        rows: x.iter().product::<usize>() / cols.max(1),
        cols,
    }
}

fn layer_norm_shape(x: &[usize], eps: f32) -> LayerNormShape {
    let r = rows_shape(x);
    LayerNormShape {
        rows: r.rows,
        dim: r.cols,
        eps,
    }
}

/// ids: any shape; table: `[vocab, dim]`.
fn embedding_shape(ids: &[usize], table: &[usize]) -> EmbeddingShape {
    EmbeddingShape {
        tokens: ids.iter().product(),
        vocab: table[0],
        dim: table[1],
    }
}

/// q: `[B, T, H, D]`.
fn attention_shape(q: &[usize], causal: bool, scale: f32, dropout: f32) -> AttentionShape {
    AttentionShape {
        batch: q[0],
        seq: q[1],
        heads: q[2],
        head_dim: q[3],
        causal,
        scale,
        dropout,
    }
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// logits: `[N, K]`.
fn cross_entropy_shape(logits: &[usize]) -> CrossEntropyShape {
    CrossEntropyShape {
        rows: logits[0],
        classes: logits[1],
    }
}
