//! The graph: tensor operations record nodes (op, inputs, output shape) instead of computing.
//! Shapes are checked when a node is recorded, and a bad shape names the op, the shapes and the line.

use crate::error::{ModelError, Result};
use crate::vars::VarId;
use sinter_ops::conv::Conv2dShape;
use sinter_ops::elementwise::{broadcast_shape, BinaryOp, UnaryOp, MAX_RANK};
use sinter_ops::optim::{AdamConfig, SgdConfig};
use sinter_ops::pool::Pool2dShape;
use sinter_ops::reduce::ReduceOp;
use std::cell::RefCell;
use std::panic::Location;
use std::rc::Rc;

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

/// A handle to a node of a shared graph; operations on it record new nodes.
#[derive(Clone)]
pub struct Tensor {
    pub id: NodeId,
    graph: Rc<RefCell<Graph>>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor#{} {:?}", self.id, self.shape())
    }
}

/// A graph being built; cheap to clone (all clones record into the same graph).
#[derive(Clone, Default)]
pub struct GraphBuilder {
    graph: Rc<RefCell<Graph>>,
}

fn shape_err(op: &'static str, detail: String, location: &'static Location<'static>) -> ModelError {
    ModelError::Shape {
        op,
        detail,
        location: location.to_string(),
    }
}

impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the graph recorded so far, to plan and compile (tensors stay usable).
    pub fn finish(&self) -> Graph {
        let g = self.graph.borrow();
        Graph {
            nodes: g.nodes.clone(),
            scope: Vec::new(),
            var_leaves: g.var_leaves.clone(),
            dropout_masks: g.dropout_masks.clone(),
        }
    }

    /// Runs `f` with `name` prefixed to the tags of the nodes it records.
    pub fn scoped<R>(&self, name: &str, f: impl FnOnce() -> R) -> R {
        self.graph.borrow_mut().scope.push(name.to_string());
        let r = f();
        self.graph.borrow_mut().scope.pop();
        r
    }

    pub fn tensor(&self, id: NodeId) -> Tensor {
        Tensor {
            id,
            graph: self.graph.clone(),
        }
    }

    pub fn node(&self, id: NodeId) -> Node {
        self.graph.borrow().nodes[id].clone()
    }

    pub fn len(&self) -> usize {
        self.graph.borrow().nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a node whose shape has already been checked.
    #[track_caller]
    pub fn push(&self, op: Op, inputs: &[NodeId], shape: Vec<usize>, what: &str) -> Tensor {
        self.push_at(op, inputs, shape, what, Location::caller())
    }

    pub(crate) fn push_at(
        &self,
        op: Op,
        inputs: &[NodeId],
        shape: Vec<usize>,
        what: &str,
        location: &'static Location<'static>,
    ) -> Tensor {
        let mut g = self.graph.borrow_mut();
        let mut tag = g.scope.join(".");
        if !what.is_empty() {
            if !tag.is_empty() {
                tag.push_str(" · ");
            }
            tag.push_str(what);
        }
        if tag.is_empty() {
            tag = op.name();
        }
        g.nodes.push(Node {
            op,
            inputs: inputs.to_vec(),
            shape,
            tag,
            location,
        });
        let id = g.nodes.len() - 1;
        drop(g);
        self.tensor(id)
    }

    /// Records a node with secondary outputs: the primary output has `shapes[0]`, and one
    /// [`Op::Secondary`] node is recorded per further shape. Returns all outputs in order.
    #[track_caller]
    pub fn push_multi(
        &self,
        op: Op,
        inputs: &[NodeId],
        shapes: Vec<Vec<usize>>,
        what: &str,
    ) -> Vec<Tensor> {
        let loc = Location::caller();
        let mut shapes = shapes.into_iter();
        let primary = self.push_at(
            op,
            inputs,
            shapes.next().expect("at least one output"),
            what,
            loc,
        );
        let mut outs = vec![primary.clone()];
        for (k, shape) in shapes.enumerate() {
            outs.push(self.push_at(Op::Secondary(k + 1), &[primary.id], shape, what, loc));
        }
        outs
    }

    /// The secondary output `k` of node `id`, if it was recorded.
    pub fn secondary(&self, id: NodeId, k: usize) -> Option<Tensor> {
        let g = self.graph.borrow();
        let found = g.nodes[id + 1..]
            .iter()
            .position(|n| n.op == Op::Secondary(k) && n.inputs == [id])
            .map(|p| id + 1 + p);
        drop(g);
        found.map(|i| self.tensor(i))
    }

    /// A batch fed at every step.
    #[track_caller]
    pub fn input(&self, name: &str, shape: &[usize]) -> Tensor {
        self.push(
            Op::Input {
                name: name.to_string(),
            },
            &[],
            shape.to_vec(),
            name,
        )
    }

    /// A persistent variable (parameter or optimizer state) of the given shape. A variable has
    /// one leaf per graph however often it is used, so its gradients from every use meet there.
    #[track_caller]
    pub fn var(&self, id: VarId, shape: &[usize], name: &str) -> Tensor {
        let existing = self.graph.borrow().var_leaves.get(&id).copied();
        if let Some(leaf) = existing {
            return self.tensor(leaf);
        }
        let leaf = self.push(Op::Var(id), &[], shape.to_vec(), name);
        self.graph.borrow_mut().var_leaves.insert(id, leaf.id);
        leaf
    }

    /// The leaf of variable `id`, if this graph uses it.
    pub fn var_leaf(&self, id: VarId) -> Option<NodeId> {
        self.graph.borrow().var_leaves.get(&id).copied()
    }

    /// A dropout mask of `shape` that drops with probability `p`: an input named `<scope>.mask`
    /// whose values the trainer draws at every step (0, or 1/(1−p) for kept units).
    #[track_caller]
    pub fn dropout_mask(&self, shape: &[usize], p: f32) -> Tensor {
        let name = {
            let g = self.graph.borrow();
            let mut name = g.scope.join(".");
            if name.is_empty() {
                name = format!("dropout{}", g.dropout_masks.len());
            }
            name.push_str(".mask");
            name
        };
        let mask = self.input(&name, shape);
        self.graph.borrow_mut().dropout_masks.push((mask.id, p));
        mask
    }

    #[track_caller]
    pub fn fill(&self, value: f64, shape: &[usize]) -> Tensor {
        self.push(Op::Fill(value), &[], shape.to_vec(), "")
    }
}

impl Tensor {
    pub fn builder(&self) -> GraphBuilder {
        GraphBuilder {
            graph: self.graph.clone(),
        }
    }

    pub fn shape(&self) -> Vec<usize> {
        self.graph.borrow().nodes[self.id].shape.clone()
    }

    pub fn numel(&self) -> usize {
        self.shape().iter().product()
    }

    pub fn rank(&self) -> usize {
        self.shape().len()
    }

    /// Whether this tensor was recorded on `g`'s graph.
    pub fn same_graph_as(&self, g: &GraphBuilder) -> bool {
        Rc::ptr_eq(&self.graph, &g.graph)
    }

    /// Inverted dropout with drop probability `p` in training (`Mode::Train`), the identity in
    /// evaluation: works anywhere in a model (attention, residuals). `p` must lie in [0, 1).
    #[track_caller]
    pub fn dropout(&self, p: f32, mode: crate::nn::Mode) -> Result<Tensor> {
        if !(0.0..1.0).contains(&p) {
            return Err(shape_err(
                "dropout",
                format!("probability {p} is outside [0, 1)"),
                Location::caller(),
            ));
        }
        if mode == crate::nn::Mode::Eval || p == 0.0 {
            return Ok(self.clone());
        }
        let mask = self.builder().dropout_mask(&self.shape(), p);
        self.mul(&mask)
    }

    fn same_graph(
        &self,
        other: &Tensor,
        op: &'static str,
        loc: &'static Location<'static>,
    ) -> Result<()> {
        if Rc::ptr_eq(&self.graph, &other.graph) {
            Ok(())
        } else {
            Err(shape_err(
                op,
                "operands belong to different graphs".into(),
                loc,
            ))
        }
    }

    fn record(
        &self,
        op: Op,
        inputs: &[NodeId],
        shape: Vec<usize>,
        loc: &'static Location<'static>,
    ) -> Tensor {
        self.builder().push_at(op, inputs, shape, "", loc)
    }

    // ---- elementwise -------------------------------------------------------------------------

    #[track_caller]
    pub fn unary(&self, op: UnaryOp) -> Tensor {
        self.record(Op::Unary(op), &[self.id], self.shape(), Location::caller())
    }

    #[track_caller]
    pub fn relu(&self) -> Tensor {
        self.unary(UnaryOp::Relu)
    }
    #[track_caller]
    pub fn gelu(&self) -> Tensor {
        self.unary(UnaryOp::Gelu)
    }
    #[track_caller]
    pub fn tanh(&self) -> Tensor {
        self.unary(UnaryOp::Tanh)
    }
    #[track_caller]
    pub fn sigmoid(&self) -> Tensor {
        self.unary(UnaryOp::Sigmoid)
    }
    /// x·σ(x).
    #[track_caller]
    pub fn silu(&self) -> Tensor {
        self.unary(UnaryOp::Silu)
    }
    #[track_caller]
    pub fn exp(&self) -> Tensor {
        self.unary(UnaryOp::Exp)
    }
    #[track_caller]
    pub fn log(&self) -> Tensor {
        self.unary(UnaryOp::Log)
    }
    #[track_caller]
    pub fn sqrt(&self) -> Tensor {
        self.unary(UnaryOp::Sqrt)
    }
    #[track_caller]
    pub fn square(&self) -> Tensor {
        self.unary(UnaryOp::Square)
    }
    #[track_caller]
    pub fn neg(&self) -> Tensor {
        self.unary(UnaryOp::Neg)
    }
    #[track_caller]
    pub fn abs(&self) -> Tensor {
        self.unary(UnaryOp::Abs)
    }

    /// `alpha · x + beta`.
    #[track_caller]
    pub fn affine(&self, alpha: f64, beta: f64) -> Tensor {
        self.record(
            Op::Affine { alpha, beta },
            &[self.id],
            self.shape(),
            Location::caller(),
        )
    }

    #[track_caller]
    pub fn scale(&self, alpha: f64) -> Tensor {
        self.affine(alpha, 0.0)
    }

    #[track_caller]
    pub fn binary(&self, op: BinaryOp, other: &Tensor) -> Result<Tensor> {
        let loc = Location::caller();
        let name = op.name();
        self.same_graph(other, name, loc)?;
        let (a, b) = (self.shape(), other.shape());
        let out = broadcast_shape(&a, &b).ok_or_else(|| {
            shape_err(
                name,
                format!("shapes {a:?} and {b:?} do not broadcast"),
                loc,
            )
        })?;
        if out.len() > MAX_RANK {
            return Err(shape_err(
                name,
                format!("rank {} exceeds the maximum of {MAX_RANK}", out.len()),
                loc,
            ));
        }
        Ok(self.record(Op::Binary(op), &[self.id, other.id], out, loc))
    }

    #[track_caller]
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Add, other)
    }
    #[track_caller]
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Sub, other)
    }
    #[track_caller]
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Mul, other)
    }
    #[track_caller]
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Div, other)
    }
    #[track_caller]
    pub fn maximum(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Max, other)
    }
    #[track_caller]
    pub fn minimum(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Min, other)
    }

    #[track_caller]
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        let loc = Location::caller();
        let from = self.shape();
        if broadcast_shape(&from, shape).as_deref() != Some(shape) {
            return Err(shape_err(
                "broadcast_to",
                format!("{from:?} does not broadcast to {shape:?}"),
                loc,
            ));
        }
        Ok(self.record(Op::BroadcastTo, &[self.id], shape.to_vec(), loc))
    }

    // ---- shape and reductions ----------------------------------------------------------------

    #[track_caller]
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let loc = Location::caller();
        let from = self.shape();
        if from.iter().product::<usize>() != shape.iter().product::<usize>() {
            return Err(shape_err(
                "reshape",
                format!("cannot reshape {from:?} to {shape:?}: element counts differ"),
                loc,
            ));
        }
        Ok(self.record(Op::Reshape, &[self.id], shape.to_vec(), loc))
    }

    /// Collapses every axis from `start` on into one: `[N, C, H, W]` → `[N, C·H·W]` for `start = 1`.
    #[track_caller]
    pub fn flatten(&self, start: usize) -> Result<Tensor> {
        let shape = self.shape();
        if start >= shape.len() {
            return Err(shape_err(
                "flatten",
                format!("start axis {start} out of range for {shape:?}"),
                Location::caller(),
            ));
        }
        let mut out = shape[..start].to_vec();
        out.push(shape[start..].iter().product());
        self.reshape(&out)
    }

    #[track_caller]
    pub fn reduce(&self, op: ReduceOp, axis: usize, keep_dim: bool) -> Result<Tensor> {
        let loc = Location::caller();
        let mut shape = self.shape();
        if axis >= shape.len() {
            return Err(shape_err(
                "reduce",
                format!("axis {axis} out of range for {shape:?}"),
                loc,
            ));
        }
        if keep_dim {
            shape[axis] = 1;
        } else {
            shape.remove(axis);
        }
        Ok(self.record(Op::Reduce { op, axis, keep_dim }, &[self.id], shape, loc))
    }

    #[track_caller]
    pub fn sum_axis(&self, axis: usize, keep_dim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Sum, axis, keep_dim)
    }

    /// Sum of every element: a scalar (shape `[]`).
    #[track_caller]
    pub fn sum_all(&self) -> Tensor {
        let loc = Location::caller();
        let flat = self.record(Op::Reshape, &[self.id], vec![self.numel()], loc);
        flat.record(
            Op::Reduce {
                op: ReduceOp::Sum,
                axis: 0,
                keep_dim: false,
            },
            &[flat.id],
            vec![],
            loc,
        )
    }

    /// Mean of every element: a scalar.
    #[track_caller]
    pub fn mean_all(&self) -> Tensor {
        let n = self.numel() as f64;
        self.sum_all().scale(1.0 / n)
    }

    /// Sums broadcast axes away so the result has `shape` (the adjoint of broadcasting).
    #[track_caller]
    pub fn sum_to(&self, shape: &[usize]) -> Result<Tensor> {
        let loc = Location::caller();
        let from = self.shape();
        if from == shape {
            return Ok(self.clone());
        }
        if broadcast_shape(shape, &from).as_deref() != Some(from.as_slice()) {
            return Err(shape_err(
                "sum_to",
                format!("{from:?} cannot be summed to {shape:?}"),
                loc,
            ));
        }
        let lead = from.len() - shape.len();
        let mut t = self.clone();
        for _ in 0..lead {
            t = t.reduce(ReduceOp::Sum, 0, false)?;
        }
        for (axis, &want) in shape.iter().enumerate() {
            if want == 1 && t.shape()[axis] != 1 {
                t = t.reduce(ReduceOp::Sum, axis, true)?;
            }
        }
        Ok(t)
    }

    // ---- matrix products, convolution, pooling -----------------------------------------------

    /// `self · other` over the last two axes.
    #[track_caller]
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        self.matmul_t(other, false, false)
    }

    /// `op(self) · op(other)`, where `op` transposes the last two axes when its flag is set.
    #[track_caller]
    pub fn matmul_t(&self, other: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        let loc = Location::caller();
        self.same_graph(other, "matmul", loc)?;
        let shape = matmul_shape(&self.shape(), &other.shape(), trans_a, trans_b)
            .map_err(|d| shape_err("matmul", d, loc))?;
        Ok(self.record(
            Op::MatMul { trans_a, trans_b },
            &[self.id, other.id],
            shape,
            loc,
        ))
    }

    /// 2-D convolution of `self: [N, C, H, W]` with `weight: [O, C, KH, KW]`.
    #[track_caller]
    pub fn conv2d(&self, weight: &Tensor, config: ConvConfig) -> Result<Tensor> {
        let loc = Location::caller();
        self.same_graph(weight, "conv2d", loc)?;
        let s = conv_shape(&self.shape(), &weight.shape(), config)
            .map_err(|d| shape_err("conv2d", d, loc))?;
        let [oh, ow] = s.out_hw().expect("checked by conv_shape");
        Ok(self.record(
            Op::Conv2d(config),
            &[self.id, weight.id],
            vec![s.n, s.c_out, oh, ow],
            loc,
        ))
    }

    #[track_caller]
    pub fn max_pool2d(&self, config: PoolConfig) -> Result<Tensor> {
        self.pool(config, true)
    }

    #[track_caller]
    pub fn avg_pool2d(&self, config: PoolConfig) -> Result<Tensor> {
        self.pool(config, false)
    }

    #[track_caller]
    fn pool(&self, config: PoolConfig, max: bool) -> Result<Tensor> {
        let loc = Location::caller();
        let name = if max { "max_pool2d" } else { "avg_pool2d" };
        let s = pool_shape(&self.shape(), config).map_err(|d| shape_err(name, d, loc))?;
        let [oh, ow] = s.out_hw().expect("checked by pool_shape");
        let op = if max {
            Op::MaxPool2d(config)
        } else {
            Op::AvgPool2d(config)
        };
        Ok(self.record(op, &[self.id], vec![s.n, s.c, oh, ow], loc))
    }

    // ---- sequence models ---------------------------------------------------------------------

    #[track_caller]
    fn last_axis(&self, op: &'static str) -> Result<usize> {
        match self.shape().last() {
            Some(&d) if d > 0 => Ok(d),
            _ => Err(shape_err(
                op,
                format!("needs a non-empty last axis, got {:?}", self.shape()),
                Location::caller(),
            )),
        }
    }

    /// Softmax along the last axis.
    #[track_caller]
    pub fn softmax(&self) -> Result<Tensor> {
        self.last_axis("softmax")?;
        Ok(self.record(Op::Softmax, &[self.id], self.shape(), Location::caller()))
    }

    /// Log-softmax along the last axis.
    #[track_caller]
    pub fn log_softmax(&self) -> Result<Tensor> {
        self.last_axis("log_softmax")?;
        Ok(self.record(Op::LogSoftmax, &[self.id], self.shape(), Location::caller()))
    }

    /// Layer normalization over the last axis with scale `gamma` and shift `beta` (both `[d]`).
    #[track_caller]
    pub fn layer_norm(&self, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<Tensor> {
        let loc = Location::caller();
        let d = self.last_axis("layer_norm")?;
        if gamma.shape() != [d] || beta.shape() != [d] {
            return Err(shape_err(
                "layer_norm",
                format!(
                    "x {:?} needs gamma and beta of shape [{d}], got {:?} and {:?}",
                    self.shape(),
                    gamma.shape(),
                    beta.shape()
                ),
                loc,
            ));
        }
        Ok(self.record(
            Op::LayerNorm { eps },
            &[self.id, gamma.id, beta.id],
            self.shape(),
            loc,
        ))
    }

    /// Looks up `table: [V, d]` rows for these token ids: the result has shape `ids.shape + [d]`.
    #[track_caller]
    pub fn embedding(&self, table: &Tensor) -> Result<Tensor> {
        let loc = Location::caller();
        let t = table.shape();
        if t.len() != 2 {
            return Err(shape_err(
                "embedding",
                format!("table must be [vocab, dim], got {t:?}"),
                loc,
            ));
        }
        let mut shape = self.shape();
        shape.push(t[1]);
        Ok(self.record(Op::Embedding, &[self.id, table.id], shape, loc))
    }

    /// Fused scaled-dot-product attention; `self` is q and all of q, k, v are `[B, T, H, D]`.
    #[track_caller]
    pub fn attention(&self, k: &Tensor, v: &Tensor, causal: bool) -> Result<Tensor> {
        let loc = Location::caller();
        let (qs, ks, vs) = (self.shape(), k.shape(), v.shape());
        if qs.len() != 4 || qs != ks || qs != vs {
            return Err(shape_err(
                "attention",
                format!("q, k, v must share one [B, T, H, D] shape, got {qs:?}, {ks:?}, {vs:?}"),
                loc,
            ));
        }
        let scale = 1.0 / (qs[3] as f32).sqrt();
        let lse = vec![qs[0], qs[2], qs[1]];
        let outs = self.builder().push_multi(
            Op::Attention { causal, scale },
            &[self.id, k.id, v.id],
            vec![qs, lse],
            "",
        );
        Ok(outs[0].clone())
    }

    // ---- losses and metrics ------------------------------------------------------------------

    /// Mean cross-entropy of logits `[N, K]` against class indices `[N]` (stored as floats).
    #[track_caller]
    pub fn cross_entropy(&self, targets: &Tensor) -> Result<Tensor> {
        let loc = Location::caller();
        self.check_logits(targets, "cross_entropy", loc)?;
        Ok(self.record(Op::CrossEntropy, &[self.id, targets.id], vec![], loc))
    }

    /// How many rows of logits `[N, K]` pick the target class: a scalar.
    #[track_caller]
    pub fn count_correct(&self, targets: &Tensor) -> Result<Tensor> {
        let loc = Location::caller();
        self.check_logits(targets, "count_correct", loc)?;
        Ok(self.record(Op::CountCorrect, &[self.id, targets.id], vec![], loc))
    }

    fn check_logits(
        &self,
        targets: &Tensor,
        op: &'static str,
        loc: &'static Location<'static>,
    ) -> Result<()> {
        self.same_graph(targets, op, loc)?;
        let (l, t) = (self.shape(), targets.shape());
        if l.len() != 2 || t != [l[0]] {
            return Err(shape_err(
                op,
                format!("expects logits [N, K] and targets [N], got {l:?} and {t:?}"),
                loc,
            ));
        }
        Ok(())
    }

    /// Mean squared error against `target` of the same shape.
    #[track_caller]
    pub fn mse(&self, target: &Tensor) -> Result<Tensor> {
        let loc = Location::caller();
        if self.shape() != target.shape() {
            return Err(shape_err(
                "mse",
                format!(
                    "prediction {:?} and target {:?} differ",
                    self.shape(),
                    target.shape()
                ),
                loc,
            ));
        }
        let d = self.sub(target)?;
        Ok(d.square().mean_all())
    }
}

/// Output shape of a batched matrix product, or why the operands do not fit.
pub fn matmul_shape(
    a: &[usize],
    b: &[usize],
    trans_a: bool,
    trans_b: bool,
) -> Result<Vec<usize>, String> {
    if a.len() < 2 || b.len() < 2 {
        return Err(format!("operands must have rank ≥ 2, got {a:?} and {b:?}"));
    }
    let (ra, rb) = (a.len(), b.len());
    let (m, ka) = if trans_a {
        (a[ra - 1], a[ra - 2])
    } else {
        (a[ra - 2], a[ra - 1])
    };
    let (kb, n) = if trans_b {
        (b[rb - 1], b[rb - 2])
    } else {
        (b[rb - 2], b[rb - 1])
    };
    if ka != kb {
        return Err(format!(
            "inner dimensions differ: {a:?}{} · {b:?}{} ({ka} vs {kb})",
            if trans_a { "ᵀ" } else { "" },
            if trans_b { "ᵀ" } else { "" }
        ));
    }
    let (ba, bb) = (&a[..ra - 2], &b[..rb - 2]);
    let batch = match (ba.is_empty(), bb.is_empty()) {
        (_, true) => ba.to_vec(),
        (true, false) => bb.to_vec(),
        (false, false) if ba == bb => ba.to_vec(),
        _ => return Err(format!("batch dimensions differ: {a:?} and {b:?}")),
    };
    let mut out = batch;
    out.extend([m, n]);
    Ok(out)
}

/// The kernel shape of a convolution, or why it is invalid.
pub fn conv_shape(x: &[usize], w: &[usize], c: ConvConfig) -> Result<Conv2dShape, String> {
    if x.len() != 4 || w.len() != 4 {
        return Err(format!(
            "expects x [N, C, H, W] and weight [O, C, KH, KW], got {x:?} and {w:?}"
        ));
    }
    if x[1] != w[1] {
        return Err(format!(
            "input has {} channels but weight {w:?} expects {}",
            x[1], w[1]
        ));
    }
    let s = Conv2dShape {
        n: x[0],
        c_in: x[1],
        h: x[2],
        w: x[3],
        c_out: w[0],
        kh: w[2],
        kw: w[3],
        stride: c.stride,
        pad: c.pad,
        dilation: c.dilation,
    };
    s.check("conv2d").map_err(|e| e.to_string())?;
    Ok(s)
}

/// The kernel shape of a pooling, or why it is invalid.
pub fn pool_shape(x: &[usize], c: PoolConfig) -> Result<Pool2dShape, String> {
    if x.len() != 4 {
        return Err(format!("expects x [N, C, H, W], got {x:?}"));
    }
    let s = Pool2dShape {
        n: x[0],
        c: x[1],
        h: x[2],
        w: x[3],
        kh: c.kernel[0],
        kw: c.kernel[1],
        stride: c.stride,
        pad: c.pad,
    };
    s.check("pool2d").map_err(|e| e.to_string())?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_shapes() {
        assert_eq!(matmul_shape(&[2, 3], &[3, 4], false, false), Ok(vec![2, 4]));
        assert_eq!(matmul_shape(&[3, 2], &[3, 4], true, false), Ok(vec![2, 4]));
        assert_eq!(matmul_shape(&[2, 3], &[4, 3], false, true), Ok(vec![2, 4]));
        assert_eq!(
            matmul_shape(&[5, 2, 3], &[3, 4], false, false),
            Ok(vec![5, 2, 4])
        );
        assert_eq!(
            matmul_shape(&[2, 3], &[5, 3, 4], false, false),
            Ok(vec![5, 2, 4])
        );
        let e = matmul_shape(&[2, 3], &[4, 5], false, false).unwrap_err();
        assert!(e.contains("[2, 3]") && e.contains("[4, 5]"), "{e}");
        assert!(matmul_shape(&[2, 2, 3], &[5, 3, 4], false, false).is_err());
    }

    #[test]
    fn shape_errors_name_the_op_the_shapes_and_the_line() {
        let g = GraphBuilder::new();
        let a = g.input("a", &[2, 3]);
        let b = g.input("b", &[4, 5]);
        let err = a.matmul(&b).unwrap_err().to_string();
        assert!(err.starts_with("matmul at "), "{err}");
        assert!(err.contains("graph.rs"), "{err}");
        assert!(err.contains("[2, 3]") && err.contains("[4, 5]"), "{err}");
        let err = a.add(&b).unwrap_err().to_string();
        assert!(
            err.contains("add") && err.contains("do not broadcast"),
            "{err}"
        );
    }

    #[test]
    fn sum_to_reverses_broadcasting() {
        let g = GraphBuilder::new();
        let x = g.input("x", &[4, 3, 5]);
        assert_eq!(x.sum_to(&[3, 1]).unwrap().shape(), vec![3, 1]);
        assert_eq!(x.sum_to(&[5]).unwrap().shape(), vec![5]);
        assert_eq!(x.sum_to(&[4, 3, 5]).unwrap().id, x.id);
        assert!(x.sum_to(&[2]).is_err());
    }
}
