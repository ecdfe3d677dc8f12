//! The kernel vocabulary: every kernel either backend runs, with its shape struct and epilogue,
//! and the one cost model (FLOPs and bytes) that the CPU profile and the WGSL launchers report.
//!
//! Costs count the work the operation needs, not what one implementation happens to do, so a
//! CPU and a GPU profile of the same step are comparable row for row:
//! - FLOPs: a multiply-add is two; a transcendental is one ([`UnaryOp::flops`]); recomputation
//!   a kernel does for its own convenience (statistics recomputed per block, argmaxes recomputed
//!   per overlapping window) is not counted.
//! - Bytes: 4 per f32 value, each input read once and each output written once; an optimizer
//!   update also reads and writes the variables it updates.

use crate::attention::AttentionShape;
use crate::batch_norm::{BatchNormShape, BatchNormUpdate};
use crate::conv::Conv2dShape;
use crate::elementwise::{broadcast_shape, BinaryOp, Epilogue, UnaryOp};
use crate::embedding::EmbeddingShape;
use crate::layout::StridedCopy;
use crate::loss::CrossEntropyShape;
use crate::matmul::MatmulShape;
use crate::norm::LayerNormShape;
use crate::optim::{AdamConfig, SgdConfig};
use crate::pool::Pool2dShape;
use crate::reduce::{ReduceOp, ReduceShape};
use crate::select::SelectShape;
use crate::softmax::RowsShape;

/// Work of one kernel launch: arithmetic and memory traffic, by the conventions of this module.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Floating-point operations (a multiply-add counts two).
    pub flops: u64,
    /// Bytes read and written, each value once.
    pub bytes: u64,
}

impl Cost {
    /// `flops` operations over `values` f32 values moved.
    fn new(flops: u64, values: usize) -> Self {
        Self {
            flops,
            bytes: 4 * values as u64,
        }
    }
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, other: Cost) -> Cost {
        Cost {
            flops: self.flops + other.flops,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// One kernel with everything that fixes what it computes: its family, its shape struct and (for
/// products) its epilogue. A planned node lowers to exactly one of these; both backends run it
/// and the profiler prices it without looking at the graph again.
#[derive(Clone, Debug, PartialEq)]
pub enum Kernel {
    /// `y = f(x)` over `len` elements.
    Unary {
        /// The function.
        op: UnaryOp,
        /// Elements of x and y.
        len: usize,
    },
    /// `dx = dy · f'(x)` over `len` elements; inputs x, dy.
    UnaryGrad {
        /// The function whose derivative is taken.
        op: UnaryOp,
        /// Elements of x, dy and dx.
        len: usize,
    },
    /// `y = alpha · x + beta` over `len` elements.
    Affine {
        /// Scale (f64, so the CPU backend's f64 gradient checks lose nothing).
        alpha: f64,
        /// Offset.
        beta: f64,
        /// Elements of x and y.
        len: usize,
    },
    /// `y = a ∘ b` with numpy broadcasting of the two shapes.
    Binary {
        /// The function.
        op: BinaryOp,
        /// Shape of a.
        a: Vec<usize>,
        /// Shape of b.
        b: Vec<usize>,
    },
    /// A layout op (permute, slice, concat): strided copies into one output, part k reading
    /// operand k (permute and slice have one part).
    Copy {
        /// `permute`, `slice` or `concat`.
        op: &'static str,
        /// The regions copied.
        parts: Vec<StridedCopy>,
    },
    /// `y = x` broadcast from shape `from` to shape `to`.
    BroadcastTo {
        /// Shape of x.
        from: Vec<usize>,
        /// Shape of y.
        to: Vec<usize>,
    },
    /// A reduction along one axis: x `[outer, n, inner]` → y `[outer, inner]`.
    Reduce {
        /// Sum, mean or max.
        op: ReduceOp,
        /// The axis and what lies either side of it.
        shape: ReduceShape,
    },
    /// Batched `op(A) · op(B)`, then the epilogue; inputs A, B (and the bias).
    MatMul {
        /// Sizes, transposes and batch strides.
        shape: MatmulShape,
        /// Bias and activation applied to each output.
        epilogue: Epilogue,
    },
    /// `y = conv(x, w)`, then the epilogue; inputs x, w (and the bias).
    Conv2d {
        /// Sizes, stride, padding and dilation.
        shape: Conv2dShape,
        /// Bias and activation applied to each output.
        epilogue: Epilogue,
    },
    /// `dx` of a convolution; inputs dy, w.
    Conv2dGradInput(Conv2dShape),
    /// `dw` of a convolution; inputs x, dy.
    Conv2dGradWeight(Conv2dShape),
    /// Max over each window; input x.
    MaxPool2d(Pool2dShape),
    /// `dx` of max pooling; inputs x, dy. With `relu`, dx is also masked by `x > 0` (the
    /// gradient of a ReLU before the pooling, fused).
    MaxPool2dGrad {
        /// Sizes, window, stride and padding.
        shape: Pool2dShape,
        /// Mask dx by `x > 0`.
        relu: bool,
    },
    /// Mean over each window; input x.
    AvgPool2d(Pool2dShape),
    /// `dx` of average pooling; input dy.
    AvgPool2dGrad(Pool2dShape),
    /// Mean cross-entropy of logits against class indices; inputs logits, targets.
    CrossEntropy(CrossEntropyShape),
    /// Gradient of the mean cross-entropy; inputs logits, targets, dloss.
    CrossEntropyGrad(CrossEntropyShape),
    /// Rows whose arg-max is the target; inputs logits, targets.
    CountCorrect(CrossEntropyShape),
    /// Softmax of each row.
    Softmax(RowsShape),
    /// Log-softmax of each row.
    LogSoftmax(RowsShape),
    /// Gradient of softmax; inputs y, dy.
    SoftmaxGrad(RowsShape),
    /// Gradient of log-softmax; inputs y, dy.
    LogSoftmaxGrad(RowsShape),
    /// Layer normalization of each row; inputs x, gamma, beta.
    LayerNorm(LayerNormShape),
    /// `dx` of layer normalization; inputs x, gamma, dy.
    LayerNormGradInput(LayerNormShape),
    /// `dgamma` of layer normalization; inputs x, dy.
    LayerNormGradGamma(LayerNormShape),
    /// Rows of a table picked by ids; inputs ids, table.
    Embedding(EmbeddingShape),
    /// Gradient of the table; inputs ids, dout.
    EmbeddingGrad(EmbeddingShape),
    /// Fused attention forward; inputs q, k, v; outputs o and the log-sum-exp of each row.
    Attention(AttentionShape),
    /// Fused attention backward; inputs q, k, v, o, do, lse; outputs dq, dk, dv and the row
    /// dot products `Σ do·o` it computes on the way.
    AttentionGrad(AttentionShape),
    /// SGD (momentum, weight decay, Nesterov) on one parameter of `len` elements; inputs the
    /// gradient and the clipping scale; updates the parameter and its velocity.
    Sgd {
        /// Elements of the parameter.
        len: usize,
        /// The optimizer's settings.
        config: SgdConfig,
    },
    /// Adam / AdamW on one parameter of `len` elements; inputs the gradient and the clipping
    /// scale; updates the parameter and its two moments.
    Adam {
        /// Elements of the parameter.
        len: usize,
        /// The optimizer's settings.
        config: AdamConfig,
    },
    /// RMS normalization of each row, `x / sqrt(mean(x²) + eps) · gamma`; inputs x, gamma.
    RmsNorm(LayerNormShape),
    /// `dx` of RMS normalization; inputs x, gamma, dy.
    RmsNormGradInput(LayerNormShape),
    /// `dgamma` of RMS normalization; inputs x, dy.
    RmsNormGradGamma(LayerNormShape),
    /// Slices of x along one axis picked by a list of ids; inputs x, ids.
    IndexSelect(SelectShape),
    /// Gradient of x for an index_select (a deterministic scatter-add); inputs ids, dy.
    IndexSelectGrad(SelectShape),
    /// `torch.gather` along one axis, one id per output element; inputs x, index.
    Gather(SelectShape),
    /// Gradient of x for a gather (a deterministic scatter-add); inputs index, dy.
    GatherGrad(SelectShape),
    /// `out = mask ≠ 0 ? a : b` with numpy broadcasting of the three shapes; inputs mask, a, b.
    Where {
        /// Shape of the mask.
        mask: Vec<usize>,
        /// Shape of a (taken where the mask is nonzero).
        a: Vec<usize>,
        /// Shape of b (taken where the mask is zero).
        b: Vec<usize>,
    },
    /// Batch normalization with the batch's statistics (training); inputs x, weight, bias;
    /// outputs y and the statistics `[2, C]` (row 0 the mean, row 1 the biased variance).
    BatchNorm2d(BatchNormShape),
    /// Gradient of [`Kernel::BatchNorm2d`]; inputs x, weight, statistics, dy; outputs dx,
    /// dweight and dbias.
    BatchNorm2dGrad(BatchNormShape),
    /// The running statistics follow a batch's, in place; input the statistics `[2, C]`;
    /// updates running_mean, running_var and num_batches_tracked.
    BatchNormUpdate(BatchNormUpdate),
}

impl Kernel {
    /// The kernel's name in reports: the op, with a product's epilogue appended
    /// (`matmul+bias+relu`).
    pub fn name(&self) -> String {
        let plain = match self {
            Kernel::Unary { op, .. } => op.name(),
            Kernel::UnaryGrad { op, .. } => return format!("{}_grad", op.name()),
            Kernel::Affine { .. } => "affine",
            Kernel::Binary { op, .. } => op.name(),
            Kernel::BroadcastTo { .. } => "broadcast_to",
            Kernel::Copy { op, .. } => op,
            Kernel::Reduce { op, .. } => op.name(),
            Kernel::MatMul { epilogue, .. } => return format!("matmul{}", epilogue.suffix()),
            Kernel::Conv2d { epilogue, .. } => return format!("conv2d{}", epilogue.suffix()),
            Kernel::Conv2dGradInput(_) => "conv2d_grad_input",
            Kernel::Conv2dGradWeight(_) => "conv2d_grad_weight",
            Kernel::MaxPool2d(_) => "max_pool2d",
            Kernel::MaxPool2dGrad { relu: false, .. } => "max_pool2d_grad",
            Kernel::MaxPool2dGrad { relu: true, .. } => "max_pool2d_grad+relu_grad",
            Kernel::AvgPool2d(_) => "avg_pool2d",
            Kernel::AvgPool2dGrad(_) => "avg_pool2d_grad",
            Kernel::CrossEntropy(_) => "cross_entropy",
            Kernel::CrossEntropyGrad(_) => "cross_entropy_grad",
            Kernel::CountCorrect(_) => "count_correct",
            Kernel::Softmax(_) => "softmax",
            Kernel::LogSoftmax(_) => "log_softmax",
            Kernel::SoftmaxGrad(_) => "softmax_grad",
            Kernel::LogSoftmaxGrad(_) => "log_softmax_grad",
            Kernel::LayerNorm(_) => "layer_norm",
            Kernel::LayerNormGradInput(_) => "layer_norm_grad_input",
            Kernel::LayerNormGradGamma(_) => "layer_norm_grad_gamma",
            Kernel::Embedding(_) => "embedding",
            Kernel::EmbeddingGrad(_) => "embedding_grad",
            Kernel::Attention(_) => "attention",
            Kernel::AttentionGrad(_) => "attention_grad",
            Kernel::Sgd { .. } => "sgd",
            Kernel::Adam { .. } => "adam",
            Kernel::RmsNorm(_) => "rms_norm",
            Kernel::RmsNormGradInput(_) => "rms_norm_grad_input",
            Kernel::RmsNormGradGamma(_) => "rms_norm_grad_gamma",
            Kernel::IndexSelect(_) => "index_select",
            Kernel::IndexSelectGrad(_) => "index_select_grad",
            Kernel::Gather(_) => "gather",
            Kernel::GatherGrad(_) => "gather_grad",
            Kernel::Where { .. } => "where",
            Kernel::BatchNorm2d(_) => "batch_norm2d",
            Kernel::BatchNorm2dGrad(_) => "batch_norm2d_grad",
            Kernel::BatchNormUpdate(_) => "batch_norm_update",
        };
        plain.to_string()
    }

    /// FLOPs and bytes of one launch, by the conventions in this module's documentation.
    pub fn cost(&self) -> Cost {
        match self {
            Kernel::Unary { op, len } => Cost::new(op.flops() * *len as u64, 2 * len),
            Kernel::UnaryGrad { op, len } => Cost::new((op.flops() + 2) * *len as u64, 3 * len),
            Kernel::Affine { len, .. } => Cost::new(2 * *len as u64, 2 * len),
            Kernel::Binary { op, a, b } => {
                let (la, lb) = (numel(a), numel(b));
                let len = broadcast_shape(a, b).map_or(la.max(lb), |s| numel(&s));
                Cost::new(len as u64 * op.flops(), la + lb + len)
            }
            Kernel::BroadcastTo { from, to } => Cost::new(0, numel(from) + numel(to)),
            Kernel::Copy { parts, .. } => {
                Cost::new(0, 2 * parts.iter().map(StridedCopy::numel).sum::<usize>())
            }
            Kernel::Reduce { shape, .. } => Cost::new(
                shape.input_len() as u64,
                shape.input_len() + shape.output_len(),
            ),
            Kernel::MatMul { shape, epilogue } => {
                let c = shape.c_len();
                let bias = if epilogue.bias { shape.n } else { 0 };
                Cost::new(
                    shape.flops() + epilogue.flops() * c as u64,
                    shape.a_len() + shape.b_len() + bias + c,
                )
            }
            Kernel::Conv2d { shape, epilogue } => {
                let y = shape.y_len();
                let bias = if epilogue.bias { shape.c_out } else { 0 };
                Cost::new(
                    shape.flops() + epilogue.flops() * y as u64,
                    shape.x_len() + shape.w_len() + bias + y,
                )
            }
            Kernel::Conv2dGradInput(s) | Kernel::Conv2dGradWeight(s) => {
                Cost::new(s.flops(), s.x_len() + s.w_len() + s.y_len())
            }
            Kernel::MaxPool2d(s) | Kernel::AvgPool2d(s) => {
                Cost::new(s.y_len() as u64 * window(s), s.x_len() + s.y_len())
            }
            Kernel::MaxPool2dGrad { shape: s, relu } => {
                let mask = if *relu { s.x_len() as u64 } else { 0 };
                Cost::new(
                    s.y_len() as u64 * window(s) + mask,
                    2 * s.x_len() + s.y_len(),
                )
            }
            Kernel::AvgPool2dGrad(s) => {
                Cost::new(s.y_len() as u64 * window(s), s.x_len() + s.y_len())
            }
            Kernel::CrossEntropy(s) => {
                let len = s.rows * s.classes;
                Cost::new(4 * len as u64 + 3 * s.rows as u64, len + s.rows + 1)
            }
            Kernel::CrossEntropyGrad(s) => {
                let len = s.rows * s.classes;
                Cost::new(8 * len as u64, 2 * len + s.rows + 1)
            }
            Kernel::CountCorrect(s) => {
                let len = s.rows * s.classes;
                Cost::new(len as u64, len + s.rows + 1)
            }
            Kernel::Softmax(s) | Kernel::LogSoftmax(s) => {
                Cost::new(5 * s.len() as u64, 2 * s.len())
            }
            Kernel::SoftmaxGrad(s) | Kernel::LogSoftmaxGrad(s) => {
                Cost::new(4 * s.len() as u64, 3 * s.len())
            }
            Kernel::LayerNorm(s) => Cost::new(8 * s.len() as u64, 2 * s.len() + 2 * s.dim),
            Kernel::LayerNormGradInput(s) => Cost::new(18 * s.len() as u64, 3 * s.len() + s.dim),
            Kernel::LayerNormGradGamma(s) => Cost::new(4 * s.len() as u64, 2 * s.len() + s.dim),
            Kernel::Embedding(s) => {
                let out = s.tokens * s.dim;
                Cost::new(0, s.tokens + s.vocab * s.dim + out)
            }
            Kernel::EmbeddingGrad(s) => {
                let dout = s.tokens * s.dim;
                Cost::new(dout as u64, s.tokens + dout + s.vocab * s.dim)
            }
            // With dropout the row seeds are read and copied behind the lse rows.
            Kernel::Attention(s) => {
                let d = s.head_dim as u64;
                let seeds = s.lse_len() - s.rows();
                Cost::new(
                    s.pairs() * (4 * d + 4),
                    4 * s.qkv_len() + s.lse_len() + seeds,
                )
            }
            Kernel::AttentionGrad(s) => {
                let d = s.head_dim as u64;
                let rows = s.rows() as u64;
                Cost::new(
                    rows * 2 * d + s.pairs() * (14 * d + 8),
                    8 * s.qkv_len() + s.lse_len() + s.rows(),
                )
            }
            // Gradient and scale in; parameter and velocity read and written.
            Kernel::Sgd { len, .. } => Cost::new(8 * *len as u64, 5 * len),
            // Gradient and scale in; parameter, m and v read and written.
            Kernel::Adam { len, .. } => Cost::new(18 * *len as u64, 7 * len),
            // Forward: x² summed (2), then x·rstd·γ (2) per element. Input gradient, with the
            // statistics not counted (recomputed): g = dy·γ, x̂ = x·rstd, Σ g·x̂ (2), then
            // rstd·(g − x̂·m) (3). Gamma gradient: x̂ (1), Σ dy·x̂ (2).
            Kernel::RmsNorm(s) => Cost::new(4 * s.len() as u64, 2 * s.len() + s.dim),
            Kernel::RmsNormGradInput(s) => Cost::new(7 * s.len() as u64, 3 * s.len() + s.dim),
            Kernel::RmsNormGradGamma(s) => Cost::new(3 * s.len() as u64, 2 * s.len() + s.dim),
            // Copies: the ids, x and y each once. Gradients: one add per dy value.
            Kernel::IndexSelect(s) => Cost::new(0, s.k + s.x_len() + s.y_len()),
            Kernel::IndexSelectGrad(s) => Cost::new(s.y_len() as u64, s.k + s.y_len() + s.x_len()),
            Kernel::Gather(s) => Cost::new(0, 2 * s.y_len() + s.x_len()),
            Kernel::GatherGrad(s) => Cost::new(s.y_len() as u64, 2 * s.y_len() + s.x_len()),
            Kernel::Where { mask, a, b } => {
                let len = crate::select::where_shape(mask, a, b)
                    .map_or(numel(a).max(numel(b)), |s| numel(&s));
                Cost::new(len as u64, numel(mask) + numel(a) + numel(b) + len)
            }
            // Mean (1 per value), two-pass variance (3), y = x·scale + shift (2); per channel
            // rstd, scale and shift (4). x, weight, bias in; y and [2, C] statistics out.
            Kernel::BatchNorm2d(s) => Cost::new(
                6 * s.len() as u64 + 4 * s.channels as u64,
                2 * s.len() + 4 * s.channels,
            ),
            // Σdy and Σdy·x̂ (5 per value), then dx = k·(dy − mean dy − x̂·mean dy·x̂) (6). x, dy
            // in, dx out; weight and statistics in, dweight and dbias out.
            Kernel::BatchNorm2dGrad(s) => {
                Cost::new(11 * s.len() as u64, 3 * s.len() + 5 * s.channels)
            }
            // Per channel: (1 − m)·r + m·mean (3), the same with the unbiased variance (4);
            // statistics in, both running values read and written, the counter incremented.
            Kernel::BatchNormUpdate(u) => Cost::new(7 * u.channels as u64 + 1, 6 * u.channels + 2),
        }
    }
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

fn window(s: &Pool2dShape) -> u64 {
    (s.kh * s.kw) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_costs_two_mnk_plus_its_epilogue() {
        let shape = MatmulShape::new(1, 3, 5, 7);
        let plain = Kernel::MatMul {
            shape,
            epilogue: Epilogue::NONE,
        };
        assert_eq!(plain.cost().flops, 2 * 3 * 5 * 7);
        assert_eq!(plain.cost().bytes, 4 * (3 * 7 + 7 * 5 + 3 * 5));
        let fused = Kernel::MatMul {
            shape,
            epilogue: Epilogue {
                bias: true,
                activation: Some(UnaryOp::Relu),
            },
        };
        assert_eq!(fused.cost().flops, 2 * 3 * 5 * 7 + 2 * 15);
        assert_eq!(fused.cost().bytes, plain.cost().bytes + 4 * 5);
        assert_eq!(fused.name(), "matmul+bias+relu");
    }

    #[test]
    fn broadcasting_counts_each_operand_once() {
        let k = Kernel::Binary {
            op: BinaryOp::Add,
            a: vec![4, 3],
            b: vec![3],
        };
        assert_eq!(k.cost(), Cost::new(12, 12 + 3 + 12));
    }

    #[test]
    fn selection_costs_count_ids_and_values_once() {
        let s = SelectShape {
            outer: 2,
            n: 5,
            k: 3,
            inner: 4,
        };
        assert_eq!(Kernel::IndexSelect(s).cost(), Cost::new(0, 3 + 40 + 24));
        assert_eq!(
            Kernel::IndexSelectGrad(s).cost(),
            Cost::new(24, 3 + 24 + 40)
        );
        assert_eq!(Kernel::Gather(s).cost(), Cost::new(0, 24 + 40 + 24));
        assert_eq!(Kernel::GatherGrad(s).cost(), Cost::new(24, 24 + 24 + 40));
        let w = Kernel::Where {
            mask: vec![4, 1],
            a: vec![3],
            b: vec![],
        };
        assert_eq!(w.cost(), Cost::new(12, 4 + 3 + 1 + 12));
    }
}
