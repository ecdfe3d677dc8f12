//! The CPU backend: runs a plan with the native kernels in `cpu/`, in f32 for training or in f64
//! for gradient checks. Buffers are allocated once per plan; a step allocates nothing.

use super::{Anomaly, StepScalars};
use crate::cpu::{self, Real};
use crate::error::Result;
use crate::fuse::Fused;
use crate::graph::{NodeId, Op};
use crate::plan::{self, Plan, Storage};
use crate::profile::{self, HostEvent, KernelTiming, StepProfile};
use crate::vars::{VarId, VarStore};
use sinter_ops::reduce::ReduceShape;
use std::time::{Duration, Instant};

/// Variable values held in memory.
#[derive(Debug, Default)]
pub struct CpuBackend<T: Real> {
    pub vars: Vec<Vec<T>>,
}

/// A plan with its buffers.
#[derive(Debug)]
pub struct CpuProgram<T: Real> {
    pub plan: Plan,
    slots: Vec<Vec<T>>,
    /// Time spent in each node of `plan.order` during the last run, when timing is on.
    pub node_times: Option<Vec<Duration>>,
}

impl<T: Real> CpuBackend<T> {
    pub fn new() -> Self {
        Self { vars: Vec::new() }
    }

    /// Adds the initial values of variables this backend has not seen yet.
    pub fn load_vars(&mut self, store: &VarStore) {
        for info in &store.vars[self.vars.len()..] {
            self.vars
                .push(info.init.iter().map(|&v| T::of(v as f64)).collect());
        }
    }

    pub fn read_var(&self, id: VarId) -> Vec<f32> {
        self.vars[id.0].iter().map(|v| v.f64() as f32).collect()
    }

    pub fn write_var(&mut self, id: VarId, data: &[f32]) {
        assert_eq!(
            self.vars[id.0].len(),
            data.len(),
            "write_var: length of var {id:?}"
        );
        for (d, &s) in self.vars[id.0].iter_mut().zip(data) {
            *d = T::of(s as f64);
        }
    }

    pub fn compile(&self, plan: Plan) -> CpuProgram<T> {
        let mut slots: Vec<Vec<T>> = plan.slots.iter().map(|&n| vec![T::zero(); n]).collect();
        for (i, node) in plan.nodes.iter().enumerate() {
            if let (Op::Fill(v), Storage::Slot(s)) = (&node.op, plan.storage[i]) {
                slots[s][..node.numel()].fill(T::of(*v));
            }
        }
        CpuProgram {
            plan,
            slots,
            node_times: None,
        }
    }

    /// Runs one step in f64-capable precision; feeds are given as f64 so gradient checks lose nothing.
    pub fn run_f64(
        &mut self,
        prog: &mut CpuProgram<T>,
        feeds: &[&[f64]],
        scalars: &StepScalars,
    ) -> Result<Vec<Vec<f64>>> {
        prog.feed(feeds, T::of)?;
        prog.execute(&mut self.vars, scalars)?;
        Ok(prog
            .outputs()
            .map(|o| o.iter().map(|v| v.f64()).collect())
            .collect())
    }

    /// [`CpuBackend::run`] checking every value (see [`super::Backend::run_checked`]).
    pub fn run_checked(
        &mut self,
        prog: &mut CpuProgram<T>,
        feeds: &[&[f32]],
        scalars: &StepScalars,
    ) -> Result<(Vec<Vec<f32>>, Option<Anomaly>)> {
        prog.feed(feeds, |v| T::of(v as f64))?;
        let anomaly = prog.execute_checked(&mut self.vars, scalars)?;
        let outputs = prog
            .outputs()
            .map(|o| o.iter().map(|v| v.f64() as f32).collect())
            .collect();
        Ok((outputs, anomaly))
    }

    pub fn run(
        &mut self,
        prog: &mut CpuProgram<T>,
        feeds: &[&[f32]],
        scalars: &StepScalars,
    ) -> Result<Vec<Vec<f32>>> {
        prog.feed(feeds, |v| T::of(v as f64))?;
        prog.execute(&mut self.vars, scalars)?;
        Ok(prog
            .outputs()
            .map(|o| o.iter().map(|v| v.f64() as f32).collect())
            .collect())
    }
}

impl CpuBackend<f32> {
    /// [`CpuBackend::run`] with every node of the plan timed by the host clock and tagged with
    /// its shapes, FLOPs and bytes ([`profile::node_cost`]).
    pub fn run_profiled(
        &mut self,
        prog: &mut CpuProgram<f32>,
        feeds: &[&[f32]],
        scalars: &StepScalars,
    ) -> Result<(Vec<Vec<f32>>, StepProfile)> {
        let started = Instant::now();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        prog.feed(feeds, |v| v)?;
        let fed = started.elapsed();
        let previous = prog.node_times.replace(Vec::new());
        let executed = prog.execute(&mut self.vars, scalars);
        let times = std::mem::replace(&mut prog.node_times, previous).unwrap_or_default();
        executed?;
        let ran = started.elapsed();
        let outputs: Vec<Vec<f32>> = prog.outputs().map(<[f32]>::to_vec).collect();
        let wall = started.elapsed();
        // Nodes run back to back, so each starts where the previous one ended.
        let mut at = us(fed);
        let kernels = prog
            .plan
            .order
            .iter()
            .zip(&times)
            .map(|(&i, &d)| {
                let (flops, bytes) = profile::node_cost(&prog.plan, i);
                let node = &prog.plan.nodes[i];
                let k = KernelTiming {
                    kernel: node.op.name(),
                    tag: node.tag.clone(),
                    shapes: profile::node_shapes(&prog.plan, i),
                    flops,
                    bytes,
                    start_us: at,
                    duration_us: us(d),
                };
                at += us(d);
                k
            })
            .collect();
        let event = |name: &str, from: Duration, to: Duration| HostEvent {
            name: name.to_string(),
            start_us: us(from),
            duration_us: us(to.saturating_sub(from)),
        };
        let profile = StepProfile {
            timing: profile::CPU_TIMING.to_string(),
            host_timed: false,
            started,
            wall_us: us(wall),
            kernels,
            host: vec![
                event("feed", Duration::ZERO, fed),
                event("execute", fed, ran),
                event("read outputs", ran, wall),
            ],
        };
        Ok((outputs, profile))
    }
}

impl<T: Real> CpuProgram<T> {
    fn feed<S: Copy>(&mut self, feeds: &[&[S]], convert: impl Fn(S) -> T) -> Result<()> {
        super::check_feeds(&self.plan, feeds.iter().map(|f| f.len()))?;
        for (k, values) in feeds.iter().enumerate() {
            let Storage::Slot(s) = self.plan.storage[self.plan.inputs[k]] else {
                unreachable!("inputs have slots")
            };
            for (d, &v) in self.slots[s].iter_mut().zip(values.iter()) {
                *d = convert(v);
            }
        }
        Ok(())
    }

    fn outputs(&self) -> impl Iterator<Item = &[T]> {
        self.plan.outputs.iter().map(|&o| self.value(&[], o))
    }

    fn value<'a>(&'a self, vars: &'a [Vec<T>], id: NodeId) -> &'a [T] {
        let n = self.plan.nodes[id].numel();
        match self.plan.storage[id] {
            Storage::Slot(s) => &self.slots[s][..n],
            Storage::Var(v) => &vars[v.0][..n],
            Storage::None => panic!(
                "node {id} ({}) has no storage in this plan",
                self.plan.nodes[id].tag
            ),
        }
    }

    fn execute(&mut self, vars: &mut [Vec<T>], scalars: &StepScalars) -> Result<()> {
        let timing = self.node_times.is_some();
        let mut times = Vec::with_capacity(if timing { self.plan.order.len() } else { 0 });
        for k in 0..self.plan.order.len() {
            let i = self.plan.order[k];
            let start = timing.then(Instant::now);
            self.execute_node(vars, i, scalars)?;
            if let Some(s) = start {
                times.push(s.elapsed());
            }
        }
        if timing {
            self.node_times = Some(times);
        }
        Ok(())
    }

    /// [`CpuProgram::execute`] checking the inputs, then each node's values (its own and its
    /// secondary outputs) as soon as it has run; stops at the first that is not finite.
    fn execute_checked(
        &mut self,
        vars: &mut [Vec<T>],
        scalars: &StepScalars,
    ) -> Result<Option<Anomaly>> {
        let plan = &self.plan;
        if let Some(a) = plan
            .inputs
            .iter()
            .find_map(|&i| Anomaly::find(plan, i, self.value(vars, i)))
        {
            return Ok(Some(a));
        }
        for k in 0..self.plan.order.len() {
            let i = self.plan.order[k];
            self.execute_node(vars, i, scalars)?;
            let plan = &self.plan;
            if plan.storage[i] == Storage::None {
                continue; // an optimizer update: it writes variables, not a value
            }
            let found = std::iter::once(i)
                .chain(plan.extras[i].iter().copied())
                .find_map(|id| Anomaly::find(plan, id, self.value(vars, id)));
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Attention and its gradient write several outputs: the node's own and its secondaries.
    fn execute_attention(
        &mut self,
        vars: &mut [Vec<T>],
        i: NodeId,
        causal: bool,
        scale: f32,
    ) -> Result<()> {
        let node = &self.plan.nodes[i];
        let mut outs: Vec<(usize, Vec<T>)> = std::iter::once(i)
            .chain(self.plan.extras[i].iter().copied())
            .map(|id| {
                let Storage::Slot(s) = self.plan.storage[id] else {
                    unreachable!("outputs have slots")
                };
                (s, std::mem::take(&mut self.slots[s]))
            })
            .collect();
        let x = |k: usize| self.value(vars, node.inputs[k]);
        let s = plan::attention_shape(self.plan.shape(node.inputs[0]), causal, scale);
        let (n, rows) = (s.qkv_len(), s.lse_len());
        match &mut outs[..] {
            [(_, o), (_, lse)] if matches!(node.op, Op::Attention { .. }) => {
                cpu::attention::attention_forward(
                    x(0),
                    x(1),
                    x(2),
                    &mut o[..n],
                    &mut lse[..rows],
                    &s,
                )
            }
            [(_, dq), (_, dk), (_, dv), _delta] => cpu::attention::attention_backward(
                x(0),
                x(1),
                x(2),
                x(3),
                x(4),
                x(5),
                &mut dq[..n],
                &mut dk[..n],
                &mut dv[..n],
                &s,
            ),
            _ => unreachable!("attention nodes are recorded with their secondary outputs"),
        }
        for (slot, buf) in outs {
            self.slots[slot] = buf;
        }
        Ok(())
    }

    fn execute_node(
        &mut self,
        vars: &mut [Vec<T>],
        i: NodeId,
        scalars: &StepScalars,
    ) -> Result<()> {
        let node = &self.plan.nodes[i];
        if node.op.is_update() {
            // Gradients and the clipping scale are computed values, so they live in slots and
            // can be read while the variables are written.
            let slot = |id: NodeId| match self.plan.storage[id] {
                Storage::Slot(s) => &self.slots[s][..self.plan.nodes[id].numel()],
                other => unreachable!("optimizer input {id} stored as {other:?}"),
            };
            let (grad, scale, lr) = (
                slot(node.inputs[0]),
                slot(node.inputs[1])[0],
                T::of(scalars.lr),
            );
            match &node.op {
                Op::SgdUpdate {
                    param,
                    velocity,
                    config,
                } => {
                    let [p, vel] = vars
                        .get_disjoint_mut([param.0, velocity.0])
                        .expect("distinct variables");
                    cpu::optim::sgd(p, grad, vel, scale, lr, config);
                }
                Op::AdamUpdate {
                    param,
                    m,
                    v,
                    config,
                } => {
                    let [p, mm, vv] = vars
                        .get_disjoint_mut([param.0, m.0, v.0])
                        .expect("distinct variables");
                    let (bc1, bc2) = (
                        T::of(scalars.bias_correction1),
                        T::of(scalars.bias_correction2),
                    );
                    cpu::optim::adam(p, grad, mm, vv, scale, lr, bc1, bc2, config);
                }
                _ => unreachable!("is_update"),
            }
            return Ok(());
        }
        if let Op::Attention { causal, scale } | Op::AttentionGrad { causal, scale } = node.op {
            return self.execute_attention(vars, i, causal, scale);
        }
        let Storage::Slot(s) = self.plan.storage[i] else {
            unreachable!("valued nodes have slots")
        };
        let mut out = std::mem::take(&mut self.slots[s]);
        let y = &mut out[..node.numel()];
        let x = |k: usize| self.value(vars, node.inputs[k]);
        let shape = |k: usize| self.plan.shape(node.inputs[k]);
        match &node.op {
            Op::Softmax => cpu::softmax::softmax(x(0), y, &plan::rows_shape(shape(0))),
            Op::LogSoftmax => cpu::softmax::log_softmax(x(0), y, &plan::rows_shape(shape(0))),
            Op::SoftmaxGrad => {
                cpu::softmax::softmax_grad(x(0), x(1), y, &plan::rows_shape(shape(0)))
            }
            Op::LogSoftmaxGrad => {
                cpu::softmax::log_softmax_grad(x(0), x(1), y, &plan::rows_shape(shape(0)))
            }
            Op::LayerNorm { eps } => {
                cpu::norm::layer_norm(x(0), x(1), x(2), y, &plan::layer_norm_shape(shape(0), *eps))
            }
            Op::LayerNormGradInput { eps } => cpu::norm::layer_norm_grad_input(
                x(0),
                x(1),
                x(2),
                y,
                &plan::layer_norm_shape(shape(0), *eps),
            ),
            Op::LayerNormGradGamma { eps } => cpu::norm::layer_norm_grad_gamma(
                x(0),
                x(1),
                y,
                &plan::layer_norm_shape(shape(0), *eps),
            ),
            Op::Embedding => {
                cpu::embedding::embedding(x(0), x(1), y, &plan::embedding_shape(shape(0), shape(1)))
            }
            Op::EmbeddingGrad => cpu::embedding::embedding_grad(
                x(0),
                x(1),
                y,
                &plan::embedding_shape(shape(0), &node.shape),
            ),
            Op::Attention { .. } | Op::AttentionGrad { .. } | Op::Secondary(_) => {
                unreachable!("{} has several outputs", node.op.name())
            }
            Op::Unary(u) => cpu::elementwise::unary(*u, x(0), y),
            Op::UnaryGrad(u) => cpu::elementwise::unary_grad(*u, x(0), x(1), y),
            Op::Affine { alpha, beta } => {
                cpu::elementwise::affine(x(0), y, T::of(*alpha), T::of(*beta))
            }
            Op::Binary(b) => cpu::elementwise::binary(*b, x(0), shape(0), x(1), shape(1), y),
            Op::BroadcastTo => cpu::elementwise::broadcast_to(x(0), shape(0), y, &node.shape),
            Op::Reduce { op, axis, .. } => {
                cpu::reduce::reduce(*op, x(0), y, &ReduceShape::along(shape(0), *axis))
            }
            Op::MatMul { trans_a, trans_b } => {
                let s = plan::matmul_kernel_shape(shape(0), shape(1), *trans_a, *trans_b);
                cpu::matmul::matmul(x(0), x(1), y, &s)
            }
            Op::Conv2d(c) => {
                let s = plan::conv_kernel_shape(&self.plan, node.inputs[0], node.inputs[1], *c);
                cpu::conv::conv2d_forward(x(0), x(1), y, &s)
            }
            Op::Conv2dGradInput(c) => {
                // inputs [dy, w]; the node has x's shape
                let s = crate::graph::conv_shape(&node.shape, shape(1), *c)
                    .expect("checked when recorded");
                cpu::conv::conv2d_grad_input(x(0), x(1), y, &s)
            }
            Op::Conv2dGradWeight(c) => {
                let s = plan::conv_kernel_shape(&self.plan, node.inputs[0], i, *c);
                cpu::conv::conv2d_grad_weight(x(0), x(1), y, &s)
            }
            Op::MaxPool2d(c) => {
                cpu::pool::max_pool2d(x(0), y, &plan::pool_kernel_shape(shape(0), *c))
            }
            Op::Fused(Fused::Conv2d { conv, epilogue: e }) => {
                let s = plan::conv_kernel_shape(&self.plan, node.inputs[0], node.inputs[1], *conv);
                let bias = e.bias.then(|| x(2));
                cpu::conv::conv2d_forward_epilogue(x(0), x(1), bias, e.activation, y, &s)
            }
            Op::Fused(Fused::MatMul {
                trans_a,
                trans_b,
                epilogue: e,
            }) => {
                let s = plan::matmul_kernel_shape(shape(0), shape(1), *trans_a, *trans_b);
                let bias = e.bias.then(|| x(2));
                cpu::matmul::matmul_epilogue(x(0), x(1), bias, e.activation, y, &s)
            }
            Op::Fused(Fused::MaxPool2dGradRelu(c)) => cpu::pool::max_pool2d_grad_relu(
                x(0),
                x(1),
                y,
                &plan::pool_kernel_shape(shape(0), *c),
                true,
            ),
            Op::MaxPool2dGrad(c) => {
                cpu::pool::max_pool2d_grad(x(0), x(1), y, &plan::pool_kernel_shape(shape(0), *c))
            }
            Op::AvgPool2d(c) => {
                cpu::pool::avg_pool2d(x(0), y, &plan::pool_kernel_shape(shape(0), *c))
            }
            Op::AvgPool2dGrad(c) => {
                cpu::pool::avg_pool2d_grad(x(0), y, &plan::pool_kernel_shape(&node.shape, *c))
            }
            Op::CrossEntropy => {
                y[0] = cpu::loss::cross_entropy(x(0), x(1), &plan::cross_entropy_shape(shape(0)));
            }
            Op::CrossEntropyGrad => {
                let dloss = x(2)[0];
                cpu::loss::cross_entropy_grad(
                    x(0),
                    x(1),
                    dloss,
                    y,
                    &plan::cross_entropy_shape(shape(0)),
                )
            }
            Op::CountCorrect => {
                y[0] = T::of(cpu::loss::count_correct(
                    x(0),
                    x(1),
                    &plan::cross_entropy_shape(shape(0)),
                ) as f64);
            }
            Op::Input { .. }
            | Op::Var(_)
            | Op::Fill(_)
            | Op::Reshape
            | Op::SgdUpdate { .. }
            | Op::AdamUpdate { .. } => {
                unreachable!("{} is not executed", node.op.name())
            }
        }
        self.slots[s] = out;
        Ok(())
    }
}
