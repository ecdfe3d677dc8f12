//! The graph: tensor operations record nodes (op, inputs, output shape) instead of computing.
//! This file holds what a node is ([`Op`], [`Node`], [`Graph`]); recording lives in `builder.rs`,
//! the tensor operations in `tensor.rs`, and the shape rules they share in `shapes.rs`.

mod builder;
mod shapes;
mod tensor;

pub use builder::GraphBuilder;
pub use shapes::{conv_shape, matmul_shape, pool_shape};
pub use tensor::Tensor;

use crate::vars::VarId;
use sinter_ops::elementwise::{BinaryOp, UnaryOp};
use sinter_ops::optim::{AdamConfig, SgdConfig};
use sinter_ops::reduce::ReduceOp;
use std::panic::Location;

/// Index of a node in its graph.
pub type NodeId = usize;

/// Stride, padding and dilation of a 2-D convolution (the rest of its shape comes from its inputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvConfig {
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub dilation: [usize; 2],
}

impl ConvConfig {
    pub fn padded(pad: usize) -> Self {
        Self {
            stride: [1, 1],
            pad: [pad, pad],
            dilation: [1, 1],
        }
    }
}

/// Window, stride and padding of a 2-D pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
}

impl PoolConfig {
    /// The common `k×k` window with stride `k` and no padding.
    pub fn square(k: usize) -> Self {
        Self {
            kernel: [k, k],
            stride: [k, k],
            pad: [0, 0],
        }
    }
}

/// Every operation the engine knows. Backward rules are in `backward.rs`, CPU kernels in `cpu/`,
/// WGSL in `shaders/`.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Data fed at every step (a batch of images, its labels).
    Input {
        name: String,
    },
    /// A persistent variable: a parameter or an optimizer state.
    Var(VarId),
    /// A tensor filled with one value.
    Fill(f64),
    Unary(UnaryOp),
    /// `dx = dy · f'(x)`; inputs `[x, dy]`.
    UnaryGrad(UnaryOp),
    /// `y = alpha · x + beta`.
    Affine {
        alpha: f64,
        beta: f64,
    },
    /// Elementwise with numpy broadcasting.
    Binary(BinaryOp),
    /// Copy with broadcasting to the node's shape.
    BroadcastTo,
    /// Reduction over one axis; the axis is kept with size 1 when `keep_dim`.
    Reduce {
        op: ReduceOp,
        axis: usize,
        keep_dim: bool,
    },
    /// Same data, new shape: no copy.
    Reshape,
    /// Batched `op(A) · op(B)` over the last two axes; a rank-2 operand broadcasts over the batch.
    MatMul {
        trans_a: bool,
        trans_b: bool,
    },
    /// `y = conv(x, w)`; inputs `[x, w]`.
    Conv2d(ConvConfig),
    /// `dx` of a convolution; inputs `[dy, w]`; the node's shape is x's.
    Conv2dGradInput(ConvConfig),
    /// `dw` of a convolution; inputs `[x, dy]`; the node's shape is w's.
    Conv2dGradWeight(ConvConfig),
    MaxPool2d(PoolConfig),
    /// inputs `[x, dy]`.
    MaxPool2dGrad(PoolConfig),
    AvgPool2d(PoolConfig),
    /// inputs `[dy]`; the node's shape is x's.
    AvgPool2dGrad(PoolConfig),
    /// Mean cross-entropy of logits `[N, K]` against class indices `[N]`: a scalar.
    CrossEntropy,
    /// inputs `[logits, targets, dloss]`.
    CrossEntropyGrad,
    /// Number of rows whose arg-max equals the target: a scalar.
    CountCorrect,
    /// Softmax along the last axis.
    Softmax,
    /// Log-softmax along the last axis.
    LogSoftmax,
    /// inputs `[y, dy]` with `y` the softmax output.
    SoftmaxGrad,
    /// inputs `[y, dy]` with `y` the log-softmax output.
    LogSoftmaxGrad,
    /// Layer normalization over the last axis; inputs `[x, gamma, beta]`.
    LayerNorm {
        eps: f32,
    },
    /// inputs `[x, gamma, dy]`; the node has x's shape.
    LayerNormGradInput {
        eps: f32,
    },
    /// inputs `[x, dy]`; the node has gamma's shape.
    LayerNormGradGamma {
        eps: f32,
    },
    /// Rows of a table picked by token ids (stored as floats); inputs `[ids, table]`.
    Embedding,
    /// inputs `[ids, dout]`; the node has the table's shape.
    EmbeddingGrad,
    /// Fused scaled-dot-product attention of q, k, v: `[B, T, H, D]`. Its secondary output 1 is
    /// the log-sum-exp of each query row, `[B, H, T]`, saved for the backward pass.
    Attention {
        causal: bool,
        scale: f32,
    },
    /// inputs `[q, k, v, o, do, lse]`; the node is dq; secondary outputs 1, 2, 3 are dk, dv and a
    /// `[B, H, T]` scratch row (Σ do∘o).
    AttentionGrad {
        causal: bool,
        scale: f32,
    },
    /// The k-th secondary output (k ≥ 1) of the node that is its only input. The planner gives it
    /// a buffer when its producer runs.
    Secondary(usize),
    /// Several nodes folded into one kernel by the planner (see `fuse.rs`).
    Fused(crate::fuse::Fused),
    /// In-place SGD step; inputs `[grad, scale]`; no output.
    SgdUpdate {
        param: VarId,
        velocity: VarId,
        config: SgdConfig,
    },
    /// In-place Adam/AdamW step; inputs `[grad, scale]`; no output.
    AdamUpdate {
        param: VarId,
        m: VarId,
        v: VarId,
        config: AdamConfig,
    },
}

impl Op {
    /// A short name for errors, logs and profiles.
    pub fn name(&self) -> String {
        match self {
            Op::Input { name } => format!("input '{name}'"),
            Op::Var(id) => format!("var {id:?}"),
            Op::Fill(v) => format!("fill {v}"),
            Op::Unary(u) => u.name().to_string(),
            Op::UnaryGrad(u) => format!("{}_grad", u.name()),
            Op::Affine { .. } => "affine".into(),
            Op::Binary(b) => b.name().to_string(),
            Op::BroadcastTo => "broadcast_to".into(),
            Op::Reduce { op, .. } => format!("reduce_{op:?}").to_lowercase(),
            Op::Reshape => "reshape".into(),
            Op::MatMul { .. } => "matmul".into(),
            Op::Conv2d(_) => "conv2d".into(),
            Op::Conv2dGradInput(_) => "conv2d_grad_input".into(),
            Op::Conv2dGradWeight(_) => "conv2d_grad_weight".into(),
            Op::MaxPool2d(_) => "max_pool2d".into(),
            Op::MaxPool2dGrad(_) => "max_pool2d_grad".into(),
            Op::AvgPool2d(_) => "avg_pool2d".into(),
            Op::AvgPool2dGrad(_) => "avg_pool2d_grad".into(),
            Op::CrossEntropy => "cross_entropy".into(),
            Op::CrossEntropyGrad => "cross_entropy_grad".into(),
            Op::CountCorrect => "count_correct".into(),
            Op::Softmax => "softmax".into(),
            Op::LogSoftmax => "log_softmax".into(),
            Op::SoftmaxGrad => "softmax_grad".into(),
            Op::LogSoftmaxGrad => "log_softmax_grad".into(),
            Op::LayerNorm { .. } => "layer_norm".into(),
            Op::LayerNormGradInput { .. } => "layer_norm_grad_input".into(),
            Op::LayerNormGradGamma { .. } => "layer_norm_grad_gamma".into(),
            Op::Embedding => "embedding".into(),
            Op::EmbeddingGrad => "embedding_grad".into(),
            Op::Attention { .. } => "attention".into(),
            Op::AttentionGrad { .. } => "attention_grad".into(),
            Op::Secondary(k) => format!("output {k}"),
            Op::Fused(f) => f.name(),
            Op::SgdUpdate { .. } => "sgd".into(),
            Op::AdamUpdate { .. } => "adam".into(),
        }
    }

    /// Optimizer updates write variables in place and produce no value.
    pub fn is_update(&self) -> bool {
        matches!(self, Op::SgdUpdate { .. } | Op::AdamUpdate { .. })
    }
}

/// One recorded operation.
#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<NodeId>,
    pub shape: Vec<usize>,
    /// What this node computes in model terms (`fc1 · forward`), for profiles and errors.
    pub tag: String,
    /// The source line that recorded the node.
    pub location: &'static Location<'static>,
}

impl Node {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The recorded nodes, in an order where every input precedes its users.
#[derive(Debug, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    /// Prefix for tags of nodes recorded now (set by modules: `conv1`, `fc2`, …).
    scope: Vec<String>,
    /// The one leaf node of each variable used.
    var_leaves: std::collections::HashMap<VarId, NodeId>,
    /// Inputs that are dropout masks, with their drop probability, in recording order: the
    /// trainer draws them from its seeded generator at every step.
    pub dropout_masks: Vec<(NodeId, f32)>,
}
