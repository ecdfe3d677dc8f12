//! The graph: tensor operations record nodes (op, inputs, output shape) instead of computing.
//! This file holds what a node is ([`Op`], [`Node`], [`Graph`]); recording lives in `builder.rs`,
//! the tensor operations in `tensor.rs` (layout ops in `layout.rs`, selection ops in `select.rs`,
//! RMS normalization in `rms_norm.rs`), and the shape rules they share in `shapes.rs`.

mod attention;
mod builder;
mod layout;
mod rms_norm;
mod select;
mod shapes;
mod tensor;

pub use builder::GraphBuilder;
pub use shapes::{batch_norm_shape, conv_shape, matmul_shape, pool_shape};
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
    /// `[sh, sw]`: steps of the kernel between outputs.
    pub stride: [usize; 2],
    /// `[ph, pw]`: zeros added on both sides of height and width.
    pub pad: [usize; 2],
    /// `[dh, dw]`: spacing between kernel taps (1 is a dense kernel).
    pub dilation: [usize; 2],
}

impl ConvConfig {
    /// Stride 1, no dilation, `pad` zeros on every side: `padded(k / 2)` keeps an odd `k×k`
    /// kernel's output the size of its input.
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
    /// `[kh, kw]`: the window.
    pub kernel: [usize; 2],
    /// `[sh, sw]`: steps of the window between outputs.
    pub stride: [usize; 2],
    /// `[ph, pw]`: padding on both sides, at most half the window. A padded cell never wins a
    /// max and counts as a zero in an average (which always divides by kh·kw, as PyTorch does).
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
        /// The feed name the trainer and backends look it up by.
        name: String,
    },
    /// A persistent variable: a parameter or an optimizer state.
    Var(VarId),
    /// A tensor filled with one value.
    Fill(f64),
    /// `y = f(x)` elementwise.
    Unary(UnaryOp),
    /// `dx = dy · f'(x)`; inputs `[x, dy]`.
    UnaryGrad(UnaryOp),
    /// `y = alpha · x + beta`.
    Affine {
        /// The scale.
        alpha: f64,
        /// The shift.
        beta: f64,
    },
    /// Elementwise with numpy broadcasting.
    Binary(BinaryOp),
    /// Copy with broadcasting to the node's shape.
    BroadcastTo,
    /// Reduction over one axis; the axis is kept with size 1 when `keep_dim`.
    Reduce {
        /// What is computed over the axis.
        op: ReduceOp,
        /// The reduced axis of the input.
        axis: usize,
        /// Keep the axis with size 1 (so the result broadcasts against the input).
        keep_dim: bool,
    },
    /// Same data, new shape: no copy.
    Reshape,
    /// Axes reordered (a copy): axis k of the result is axis `perm[k]` of the input.
    Permute(Vec<usize>),
    /// A range along one axis (a copy): the node's size along `axis` elements from `start`.
    Slice {
        /// The sliced axis.
        axis: usize,
        /// The first index taken along it.
        start: usize,
    },
    /// The inputs, in order, joined along `axis` (a copy).
    Concat {
        /// The joined axis.
        axis: usize,
    },
    /// Batched `op(A) · op(B)` over the last two axes; a rank-2 operand broadcasts over the batch.
    MatMul {
        /// Use the transpose of A's last two axes.
        trans_a: bool,
        /// Use the transpose of B's last two axes.
        trans_b: bool,
    },
    /// `y = conv(x, w)`; inputs `[x, w]`.
    Conv2d(ConvConfig),
    /// `dx` of a convolution; inputs `[dy, w]`; the node's shape is x's.
    Conv2dGradInput(ConvConfig),
    /// `dw` of a convolution; inputs `[x, dy]`; the node's shape is w's.
    Conv2dGradWeight(ConvConfig),
    /// Max over each window of `x: [N, C, H, W]`.
    MaxPool2d(PoolConfig),
    /// inputs `[x, dy]`.
    MaxPool2dGrad(PoolConfig),
    /// Mean over each window of `x: [N, C, H, W]`, dividing by the window size.
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
        /// Added to the variance before the square root.
        eps: f32,
    },
    /// inputs `[x, gamma, dy]`; the node has x's shape.
    LayerNormGradInput {
        /// The forward's epsilon (the row statistics are recomputed).
        eps: f32,
    },
    /// inputs `[x, dy]`; the node has gamma's shape.
    LayerNormGradGamma {
        /// The forward's epsilon (the row statistics are recomputed).
        eps: f32,
    },
    /// Rows of a table picked by token ids (stored as floats); inputs `[ids, table]`.
    Embedding,
    /// inputs `[ids, dout]`; the node has the table's shape.
    EmbeddingGrad,
    /// Fused scaled-dot-product attention of q, k, v: `[B, T, H, D]` (inputs `[q, k, v]`, plus
    /// the `[B]` row seeds with dropout). Its secondary output 1 is the log-sum-exp of each query
    /// row, `[B, H, T]` (with dropout flat, the seeds behind the rows), saved for the backward.
    Attention {
        /// Query i sees only keys j ≤ i.
        causal: bool,
        /// Multiplies the scores `q·k` before the softmax (1/√D when recorded by
        /// [`Tensor::attention`]).
        scale: f32,
        /// Drop probability of each attention weight (see
        /// [`sinter_ops::attention::AttentionShape::keeps`]); 0: none.
        dropout: f32,
    },
    /// inputs `[q, k, v, o, do, lse]`; the node is dq; secondary outputs 1, 2, 3 are dk, dv and a
    /// `[B, H, T]` scratch row (Σ do∘o).
    AttentionGrad {
        /// The forward's mask.
        causal: bool,
        /// The forward's score scale.
        scale: f32,
        /// The forward's drop probability: the masks are redrawn from the seeds in lse.
        dropout: f32,
    },
    /// The k-th secondary output (k ≥ 1) of the node that is its only input. The planner gives it
    /// a buffer when its producer runs.
    Secondary(usize),
    /// Several nodes folded into one kernel by the planner (see `fuse.rs`).
    Fused(crate::fuse::Fused),
    /// In-place SGD step; inputs `[grad, scale]` with `scale: [1]` multiplying the gradient
    /// (1, or the global-norm clip factor); no output. The learning rate comes per step.
    SgdUpdate {
        /// The parameter updated in place.
        param: VarId,
        /// Its momentum buffer (`<param>.momentum`).
        velocity: VarId,
        /// Momentum, Nesterov and weight decay.
        config: SgdConfig,
    },
    /// In-place Adam/AdamW step; inputs `[grad, scale]` as for [`Op::SgdUpdate`]; no output.
    AdamUpdate {
        /// The parameter updated in place.
        param: VarId,
        /// Its first-moment estimate (`<param>.adam_m`).
        m: VarId,
        /// Its second-moment estimate (`<param>.adam_v`).
        v: VarId,
        /// β1, β2, ε, weight decay and whether it is decoupled (AdamW).
        config: AdamConfig,
    },
    /// RMS normalization over the last axis, `x / sqrt(mean(x²) + eps) · gamma`; inputs
    /// `[x, gamma]`.
    RmsNorm {
        /// Added to the mean square before the square root.
        eps: f32,
    },
    /// inputs `[x, gamma, dy]`; the node has x's shape.
    RmsNormGradInput {
        /// The forward's epsilon (the row statistics are recomputed).
        eps: f32,
    },
    /// inputs `[x, dy]`; the node has gamma's shape.
    RmsNormGradGamma {
        /// The forward's epsilon (the row statistics are recomputed).
        eps: f32,
    },
    /// Slices of x along `axis` picked by ids (integers stored as floats, any shape, flattened);
    /// inputs `[x, ids]`.
    IndexSelect {
        /// The axis of x the ids index.
        axis: usize,
    },
    /// inputs `[ids, dy]`; the node has x's shape.
    IndexSelectGrad {
        /// The forward's axis.
        axis: usize,
    },
    /// `torch.gather` along `axis`: `y[.., t, ..] = x[.., index[.., t, ..], ..]`; inputs
    /// `[x, index]`, the node has the index's shape.
    Gather {
        /// The axis of x the index values index.
        axis: usize,
    },
    /// inputs `[index, dy]`; the node has x's shape.
    GatherGrad {
        /// The forward's axis.
        axis: usize,
    },
    /// `mask ≠ 0 ? a : b` elementwise with numpy broadcasting of all three; inputs
    /// `[mask, a, b]`.
    Where,
    /// Batch normalization of `x: [N, C, H, W]` with the batch's statistics (training mode);
    /// inputs `[x, weight, bias]` (both `[C]`). Its secondary output 1 is the statistics
    /// `[2, C]`: the per-channel mean, then the biased variance.
    BatchNorm2d {
        /// Added to the variance before the square root.
        eps: f32,
    },
    /// inputs `[x, weight, stats, dy]`; the node is dx; secondary outputs 1 and 2 are dweight
    /// and dbias.
    BatchNorm2dGrad {
        /// The forward's epsilon.
        eps: f32,
    },
    /// In-place update of a batch norm's running statistics from a batch's; inputs `[stats]`
    /// (the `[2, C]` output of [`Op::BatchNorm2d`]); no output. Like an optimizer update it is
    /// always planned, but it touches buffers, never parameters.
    BatchNormUpdate {
        /// `<name>.running_mean: [C]`.
        running_mean: VarId,
        /// `<name>.running_var: [C]`, following the unbiased batch variance.
        running_var: VarId,
        /// `<name>.num_batches_tracked: []`, counting the updates.
        num_batches_tracked: VarId,
        /// Weight of the new batch: running = (1 − momentum)·running + momentum·batch.
        momentum: f32,
        /// Values each statistic was taken over (N·H·W), for the unbiased variance.
        count: usize,
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
            Op::Permute(_) => "permute".into(),
            Op::Slice { .. } => "slice".into(),
            Op::Concat { .. } => "concat".into(),
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
            Op::RmsNorm { .. } => "rms_norm".into(),
            Op::RmsNormGradInput { .. } => "rms_norm_grad_input".into(),
            Op::RmsNormGradGamma { .. } => "rms_norm_grad_gamma".into(),
            Op::IndexSelect { .. } => "index_select".into(),
            Op::IndexSelectGrad { .. } => "index_select_grad".into(),
            Op::Gather { .. } => "gather".into(),
            Op::GatherGrad { .. } => "gather_grad".into(),
            Op::Where => "where".into(),
            Op::BatchNorm2d { .. } => "batch_norm2d".into(),
            Op::BatchNorm2dGrad { .. } => "batch_norm2d_grad".into(),
            Op::BatchNormUpdate { .. } => "batch_norm_update".into(),
        }
    }

    /// Updates (an optimizer's, a batch norm's running statistics) write variables in place and
    /// produce no value; the planner keeps every one a graph holds.
    pub fn is_update(&self) -> bool {
        matches!(
            self,
            Op::SgdUpdate { .. } | Op::AdamUpdate { .. } | Op::BatchNormUpdate { .. }
        )
    }
}

/// One recorded operation.
#[derive(Clone, Debug)]
pub struct Node {
    /// What the node computes.
    pub op: Op,
    /// Its operands, in the order its [`Op`] documents; all recorded before it.
    pub inputs: Vec<NodeId>,
    /// The output shape, row-major; `[]` is a scalar.
    pub shape: Vec<usize>,
    /// What this node computes in model terms (`fc1 · forward`), for profiles and errors.
    pub tag: String,
    /// The source line that recorded the node.
    pub location: &'static Location<'static>,
}

impl Node {
    /// Elements of the output (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The recorded nodes, in an order where every input precedes its users.
#[derive(Debug, Default)]
pub struct Graph {
    /// Every node, indexed by [`NodeId`].
    pub nodes: Vec<Node>,
    /// Prefix for tags of nodes recorded now (set by modules: `conv1`, `fc2`, …).
    scope: Vec<String>,
    /// The one leaf node of each variable used.
    var_leaves: std::collections::HashMap<VarId, NodeId>,
    /// Inputs that dropout draws into, with what to draw, in recording order: the trainer
    /// draws them from its seeded generator at every step.
    pub dropout_masks: Vec<(NodeId, DropoutDraw)>,
}

/// What the trainer draws into a dropout input at every step (batch rows leading, so that a
/// micro-batch or a rank takes its rows of the whole batch's draw).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DropoutDraw {
    /// A mask that drops each unit with this probability: 0, or 1/(1 − p) for a kept unit.
    Mask(f32),
    /// One seed per batch row, a whole number below 2²⁴ (exact in f32), from which a kernel
    /// draws its own masks (the attention weights', see [`Tensor::attention_dropout`]).
    RowSeeds,
}
