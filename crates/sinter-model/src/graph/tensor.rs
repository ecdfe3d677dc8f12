//! Tensor operations: each checks its operands' shapes and records one node (or a few) on the
//! tensor's graph. Errors name the op, the shapes and the caller's line (`#[track_caller]`).

use super::shapes::{batch_norm_shape, conv_shape, matmul_shape, pool_shape};
use super::{ConvConfig, Graph, GraphBuilder, NodeId, Op, PoolConfig};
use crate::error::{ModelError, Result};
use crate::vars::VarId;
use sinter_ops::elementwise::{broadcast_shape, BinaryOp, UnaryOp, MAX_RANK};
use sinter_ops::reduce::ReduceOp;
use std::cell::RefCell;
use std::panic::Location;
use std::rc::Rc;

/// A handle to a node of a shared graph; operations on it record new nodes.
#[derive(Clone)]
pub struct Tensor {
    /// The node this handle refers to.
    pub id: NodeId,
    pub(super) graph: Rc<RefCell<Graph>>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor#{} {:?}", self.id, self.shape())
    }
}

pub(super) fn shape_err(
    op: &'static str,
    detail: String,
    location: &'static Location<'static>,
) -> ModelError {
    ModelError::Shape {
        op,
        detail,
        location: location.to_string(),
    }
}

impl Tensor {
    /// The builder of this tensor's graph, to record leaves (inputs, variables, constants) on it.
    pub fn builder(&self) -> GraphBuilder {
        GraphBuilder {
            graph: self.graph.clone(),
        }
    }

    /// The output shape of the node, row-major; `[]` is a scalar.
    pub fn shape(&self) -> Vec<usize> {
        self.graph.borrow().nodes[self.id].shape.clone()
    }

    /// Elements of the tensor (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape().iter().product()
    }

    /// Number of axes (0 for a scalar).
    pub fn rank(&self) -> usize {
        self.shape().len()
    }

    /// Whether this tensor was recorded on `g`'s graph.
    pub fn same_graph_as(&self, g: &GraphBuilder) -> bool {
        Rc::ptr_eq(&self.graph, &g.graph)
    }

    /// Inverted dropout with drop probability `p` in training (`Mode::Train`), the identity in
    /// evaluation: works anywhere in a model (attention, residuals). `p` must lie in `[0, 1)`,
    /// else [`ModelError::Shape`] names the probability.
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

    pub(super) fn same_graph(
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

    pub(super) fn record(
        &self,
        op: Op,
        inputs: &[NodeId],
        shape: Vec<usize>,
        loc: &'static Location<'static>,
    ) -> Tensor {
        self.builder().push_at(op, inputs, shape, "", loc)
    }

    // ---- elementwise -------------------------------------------------------------------------

    /// `f(x)` for every element, any shape (the named methods below are shorthands).
    #[track_caller]
    pub fn unary(&self, op: UnaryOp) -> Tensor {
        self.record(Op::Unary(op), &[self.id], self.shape(), Location::caller())
    }

    /// max(x, 0).
    #[track_caller]
    pub fn relu(&self) -> Tensor {
        self.unary(UnaryOp::Relu)
    }
    /// GELU in its tanh approximation (PyTorch's `approximate="tanh"`).
    #[track_caller]
    pub fn gelu(&self) -> Tensor {
        self.unary(UnaryOp::Gelu)
    }
    /// tanh(x).
    #[track_caller]
    pub fn tanh(&self) -> Tensor {
        self.unary(UnaryOp::Tanh)
    }
    /// σ(x) = 1 / (1 + e⁻ˣ).
    #[track_caller]
    pub fn sigmoid(&self) -> Tensor {
        self.unary(UnaryOp::Sigmoid)
    }
    /// x·σ(x).
    #[track_caller]
    pub fn silu(&self) -> Tensor {
        self.unary(UnaryOp::Silu)
    }

    /// 1/√x (PyTorch's `rsqrt`): +∞ at 0, NaN below.
    #[track_caller]
    pub fn rsqrt(&self) -> Tensor {
        self.unary(UnaryOp::Rsqrt)
    }

    /// The exact GELU x·Φ(x), Φ the standard normal CDF (PyTorch's `gelu(approximate='none')`);
    /// [`Tensor::gelu`] is the tanh approximation.
    #[track_caller]
    pub fn gelu_erf(&self) -> Tensor {
        self.unary(UnaryOp::GeluErf)
    }
    /// eˣ.
    #[track_caller]
    pub fn exp(&self) -> Tensor {
        self.unary(UnaryOp::Exp)
    }
    /// Natural logarithm (NaN below 0, −∞ at 0).
    #[track_caller]
    pub fn log(&self) -> Tensor {
        self.unary(UnaryOp::Log)
    }
    /// √x (NaN below 0).
    #[track_caller]
    pub fn sqrt(&self) -> Tensor {
        self.unary(UnaryOp::Sqrt)
    }
    /// x².
    #[track_caller]
    pub fn square(&self) -> Tensor {
        self.unary(UnaryOp::Square)
    }
    /// −x.
    #[track_caller]
    pub fn neg(&self) -> Tensor {
        self.unary(UnaryOp::Neg)
    }
    /// |x|.
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

    /// `alpha · x`.
    #[track_caller]
    pub fn scale(&self, alpha: f64) -> Tensor {
        self.affine(alpha, 0.0)
    }

    /// `op(self, other)` elementwise with numpy broadcasting; the result has the broadcast shape.
    /// [`ModelError::Shape`] when the shapes do not broadcast, the result's rank exceeds
    /// [`MAX_RANK`], or the operands belong to different graphs.
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

    /// `self + other`, broadcasting; errors as [`Tensor::binary`].
    #[track_caller]
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Add, other)
    }
    /// `self − other`, broadcasting; errors as [`Tensor::binary`].
    #[track_caller]
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Sub, other)
    }
    /// `self · other` elementwise, broadcasting; errors as [`Tensor::binary`].
    #[track_caller]
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Mul, other)
    }
    /// `self / other` elementwise, broadcasting; errors as [`Tensor::binary`].
    #[track_caller]
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Div, other)
    }
    /// `self` to the power `exponent` elementwise, broadcasting, as PyTorch's `pow`: a negative
    /// base needs an integer exponent (NaN otherwise) and x⁰ = 1. Errors as [`Tensor::binary`].
    #[track_caller]
    pub fn pow(&self, exponent: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Pow, exponent)
    }
    /// `self` to a constant power: [`Tensor::pow`] with the exponent broadcast from one value.
    #[track_caller]
    pub fn powf(&self, exponent: f64) -> Tensor {
        let loc = Location::caller();
        let e = self.builder().fill(exponent, &vec![1; self.rank()]);
        let shape = self.shape();
        self.record(Op::Binary(BinaryOp::Pow), &[self.id, e.id], shape, loc)
    }
    /// Elementwise max, broadcasting (a tie sends the gradient to `self`).
    #[track_caller]
    pub fn maximum(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Max, other)
    }
    /// Elementwise min, broadcasting (a tie sends the gradient to `self`).
    #[track_caller]
    pub fn minimum(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Min, other)
    }

    /// A copy repeated along broadcast axes to `shape` (numpy rules: leading axes added, size-1
    /// axes stretched); [`ModelError::Shape`] if it does not broadcast.
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

    /// The same elements in row-major order under a new shape (no copy);
    /// [`ModelError::Shape`] if the element counts differ.
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

    /// `op` over axis `axis`, which is removed, or kept with size 1 when `keep_dim`
    /// (`[4, 3, 5]` over axis 1 → `[4, 5]` or `[4, 1, 5]`); [`ModelError::Shape`] if the axis is
    /// out of range.
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

    /// Sum over one axis: [`Tensor::reduce`] with [`ReduceOp::Sum`].
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

    /// Max over each window of `self: [N, C, H, W]` → `[N, C, OH, OW]` (floor mode);
    /// [`ModelError::Shape`] for another rank, padding over half the window, or a window larger
    /// than the padded input.
    #[track_caller]
    pub fn max_pool2d(&self, config: PoolConfig) -> Result<Tensor> {
        self.pool(config, true)
    }

    /// Mean over each window of `self: [N, C, H, W]` → `[N, C, OH, OW]`, padding counted as
    /// zeros; errors as [`Tensor::max_pool2d`].
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
    pub(super) fn last_axis(&self, op: &'static str) -> Result<usize> {
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

    // ---- batch normalization -----------------------------------------------------------------

    /// Batch normalization of `self: [N, C, H, W]` with the batch's own per-channel statistics
    /// (training mode of PyTorch's `BatchNorm2d`: mean and biased variance over N·H·W), scaled
    /// by `weight` and shifted by `bias` (both `[C]`). Returns y and the statistics `[2, C]`
    /// (means, then biased variances), which [`Tensor::batch_norm_update`] folds into running
    /// statistics. [`ModelError::Shape`] for another rank, parameters of another shape, or a
    /// channel of a single value (N·H·W = 1).
    #[track_caller]
    pub fn batch_norm2d(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor)> {
        const OP: &str = "batch_norm2d";
        let loc = Location::caller();
        self.same_graph(weight, OP, loc)?;
        self.same_graph(bias, OP, loc)?;
        let x = self.shape();
        let s = batch_norm_shape(&x, eps).map_err(|d| shape_err(OP, d, loc))?;
        let c = s.channels;
        if weight.shape() != [c] || bias.shape() != [c] {
            return Err(shape_err(
                OP,
                format!(
                    "x {x:?} needs weight and bias of shape [{c}], got {:?} and {:?}",
                    weight.shape(),
                    bias.shape()
                ),
                loc,
            ));
        }
        let outs = self.builder().push_multi(
            Op::BatchNorm2d { eps },
            &[self.id, weight.id, bias.id],
            vec![x, vec![2, c]],
            "",
        );
        Ok((outs[0].clone(), outs[1].clone()))
    }

    /// Records the in-place update of running statistics from these batch statistics (the
    /// second result of [`Tensor::batch_norm2d`]), as PyTorch does in training:
    /// `running = (1 − momentum)·running + momentum·batch`, the variance unbiased
    /// (× m/(m − 1) for m = N·H·W), and `num_batches_tracked += 1`. The three variables are
    /// `[C]`, `[C]` and `[]`; the update is planned with every step of the graph.
    /// [`ModelError::Shape`] if `self` is not a batch norm's statistics or `momentum` is
    /// outside `[0, 1]`.
    #[track_caller]
    pub fn batch_norm_update(
        &self,
        running_mean: VarId,
        running_var: VarId,
        num_batches_tracked: VarId,
        momentum: f32,
    ) -> Result<()> {
        const OP: &str = "batch_norm_update";
        let loc = Location::caller();
        let g = self.builder();
        let node = g.node(self.id);
        let producer = match (&node.op, node.inputs.as_slice()) {
            (Op::Secondary(1), &[p]) => Some(g.node(p)),
            _ => None,
        };
        let Some(x) = producer
            .filter(|p| matches!(p.op, Op::BatchNorm2d { .. }))
            .map(|p| g.node(p.inputs[0]).shape)
        else {
            return Err(shape_err(
                OP,
                format!(
                    "{:?} ({}) is not the statistics output of batch_norm2d",
                    node.shape, node.tag
                ),
                loc,
            ));
        };
        if !(0.0..=1.0).contains(&momentum) {
            return Err(shape_err(
                OP,
                format!("momentum {momentum} is outside [0, 1]"),
                loc,
            ));
        }
        let op = Op::BatchNormUpdate {
            running_mean,
            running_var,
            num_batches_tracked,
            momentum,
            count: x[0] * x[2] * x[3],
        };
        g.push_at(op, &[self.id], vec![], "running statistics", loc);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_errors_name_the_op_the_shapes_and_the_line() {
        let g = GraphBuilder::new();
        let a = g.input("a", &[2, 3]);
        let b = g.input("b", &[4, 5]);
        let err = a.matmul(&b).unwrap_err().to_string();
        assert!(err.starts_with("matmul at "), "{err}");
        assert!(err.contains("tensor.rs"), "{err}");
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
