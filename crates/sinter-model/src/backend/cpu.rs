//! The CPU backend: runs a plan with the native kernels in `cpu/`, in f32 for training or in f64
//! for gradient checks. Buffers are allocated once per plan; a step allocates nothing.

use super::{Anomaly, StepScalars};
use crate::cpu::{self, Real};
use crate::error::{ModelError, Result};
use crate::graph::{NodeId, Op};
use crate::plan::{Plan, Storage};
use crate::profile::{self, HostEvent, KernelTiming, StepProfile};
use crate::vars::{VarId, VarStore};
use sinter_ops::elementwise::Epilogue;
use sinter_ops::Kernel;
use std::time::{Duration, Instant};

/// Variable values held in memory.
#[derive(Debug, Default)]
pub struct CpuBackend<T: Real> {
    /// Every variable's values, by [`VarId`].
    pub vars: Vec<Vec<T>>,
}

/// A plan with its buffers.
#[derive(Debug)]
pub struct CpuProgram<T: Real> {
    /// The plan it runs.
    pub plan: Plan,
    slots: Vec<Vec<T>>,
    /// Time spent in each node of `plan.order` during the last run, when timing is on.
    pub node_times: Option<Vec<Duration>>,
}

impl<T: Real> CpuBackend<T> {
    /// A backend holding no variables yet.
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

    /// The current values of variable `id`, as f32.
    pub fn read_var(&self, id: VarId) -> Vec<f32> {
        self.vars[id.0].iter().map(|v| v.f64() as f32).collect()
    }

    /// Overwrites variable `id` (same length; checkpoints and data-parallel averaging).
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

    /// Allocates the plan's buffers once and writes its constants.
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

    /// One step: writes the feeds (in `plan.inputs` order), runs every launch, returns the
    /// outputs (in `plan.outputs` order).
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
    /// its shapes, FLOPs and bytes ([`crate::lower::Launch::cost`]).
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
            .launches
            .iter()
            .zip(&times)
            .enumerate()
            .map(|(k, (launch, &d))| {
                let cost = launch.cost();
                let timing = KernelTiming {
                    launch: k,
                    kernel: launch.kernel.name(),
                    tag: prog.plan.nodes[launch.node].tag.clone(),
                    shapes: profile::launch_shapes(&prog.plan, launch),
                    flops: cost.flops,
                    bytes: cost.bytes,
                    start_us: at,
                    duration_us: us(d),
                };
                at += us(d);
                timing
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
        for k in 0..self.plan.launches.len() {
            let start = timing.then(Instant::now);
            self.execute_launch(vars, k, scalars)?;
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
            self.execute_launch(vars, k, scalars)?;
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

    /// Runs launch `k` of the plan: one match on its kernel, every size taken from the lowering.
    fn execute_launch(
        &mut self,
        vars: &mut [Vec<T>],
        k: usize,
        scalars: &StepScalars,
    ) -> Result<()> {
        let launch = &self.plan.launches[k];
        if !launch.updates.is_empty() {
            return self.execute_update(vars, k, scalars);
        }
        let plan = &self.plan;
        // The output buffers are taken out of their slots while the kernel reads the inputs.
        let mut outs: Vec<(usize, Vec<T>)> = launch
            .writes
            .iter()
            .map(|&id| match plan.storage[id] {
                Storage::Slot(s) => Ok((s, std::mem::take(&mut self.slots[s]))),
                other => Err(internal(format!("output {id} is stored as {other:?}"))),
            })
            .collect::<Result<_>>()?;
        let mut bufs: Vec<&mut [T]> = outs
            .iter_mut()
            .zip(&launch.writes)
            .map(|((_, b), &id)| &mut b[..plan.nodes[id].numel()])
            .collect();
        let [y, extra @ ..] = &mut bufs[..] else {
            return Err(internal(format!("launch {k} writes nothing")));
        };
        let x = |j: usize| self.value(vars, launch.reads[j]);
        let bias = |e: &Epilogue| e.bias.then(|| x(2));
        match &launch.kernel {
            Kernel::Unary { op, .. } => cpu::elementwise::unary(*op, x(0), y),
            Kernel::UnaryGrad { op, .. } => cpu::elementwise::unary_grad(*op, x(0), x(1), y),
            Kernel::Affine { alpha, beta, .. } => {
                cpu::elementwise::affine(x(0), y, T::of(*alpha), T::of(*beta))
            }
            Kernel::Binary { op, a, b } => cpu::elementwise::binary(*op, x(0), a, x(1), b, y),
            Kernel::BroadcastTo { from, to } => cpu::elementwise::broadcast_to(x(0), from, y, to),
            Kernel::Copy { parts, .. } => {
                for (k, part) in parts.iter().enumerate() {
                    cpu::layout::strided_copy(x(k), y, part);
                }
            }
            Kernel::Reduce { op, shape } => cpu::reduce::reduce(*op, x(0), y, shape),
            Kernel::MatMul { shape, epilogue: e } => {
                cpu::matmul::matmul_epilogue(x(0), x(1), bias(e), e.activation, y, shape)
            }
            Kernel::Conv2d { shape, epilogue: e } => {
                cpu::conv::conv2d_forward_epilogue(x(0), x(1), bias(e), e.activation, y, shape)
            }
            Kernel::Conv2dGradInput(s) => cpu::conv::conv2d_grad_input(x(0), x(1), y, s),
            Kernel::Conv2dGradWeight(s) => cpu::conv::conv2d_grad_weight(x(0), x(1), y, s),
            Kernel::MaxPool2d(s) => cpu::pool::max_pool2d(x(0), y, s),
            Kernel::MaxPool2dGrad { shape, relu } => {
                cpu::pool::max_pool2d_grad_relu(x(0), x(1), y, shape, *relu)
            }
            Kernel::AvgPool2d(s) => cpu::pool::avg_pool2d(x(0), y, s),
            Kernel::AvgPool2dGrad(s) => cpu::pool::avg_pool2d_grad(x(0), y, s),
            Kernel::CrossEntropy(s) => y[0] = cpu::loss::cross_entropy(x(0), x(1), s),
            Kernel::CrossEntropyGrad(s) => cpu::loss::cross_entropy_grad(x(0), x(1), x(2)[0], y, s),
            Kernel::CountCorrect(s) => y[0] = T::of(cpu::loss::count_correct(x(0), x(1), s) as f64),
            Kernel::Softmax(s) => cpu::softmax::softmax(x(0), y, s),
            Kernel::LogSoftmax(s) => cpu::softmax::log_softmax(x(0), y, s),
            Kernel::SoftmaxGrad(s) => cpu::softmax::softmax_grad(x(0), x(1), y, s),
            Kernel::LogSoftmaxGrad(s) => cpu::softmax::log_softmax_grad(x(0), x(1), y, s),
            Kernel::LayerNorm(s) => cpu::norm::layer_norm(x(0), x(1), x(2), y, s),
            Kernel::LayerNormGradInput(s) => {
                cpu::norm::layer_norm_grad_input(x(0), x(1), x(2), y, s)
            }
            Kernel::LayerNormGradGamma(s) => cpu::norm::layer_norm_grad_gamma(x(0), x(1), y, s),
            Kernel::Embedding(s) => cpu::embedding::embedding(x(0), x(1), y, s),
            Kernel::EmbeddingGrad(s) => cpu::embedding::embedding_grad(x(0), x(1), y, s),
            Kernel::Attention(s) => {
                let [lse] = extra else {
                    return Err(internal("attention writes o and lse".into()));
                };
                let seeds = s.has_dropout().then(|| x(3));
                cpu::attention::attention_forward(x(0), x(1), x(2), seeds, y, lse, s)
            }
            Kernel::AttentionGrad(s) => {
                // The scratch row sums (delta) are a GPU intermediate; the CPU keeps its own.
                let [dk, dv, _delta] = extra else {
                    return Err(internal("attention_grad writes dq, dk, dv, delta".into()));
                };
                cpu::attention::attention_backward(x(0), x(1), x(2), x(3), x(4), x(5), y, dk, dv, s)
            }
            Kernel::Sgd { .. } | Kernel::Adam { .. } => {
                return Err(internal("an optimizer update without variables".into()))
            }
            Kernel::RmsNorm(s) => cpu::norm::rms_norm(x(0), x(1), y, s),
            Kernel::RmsNormGradInput(s) => cpu::norm::rms_norm_grad_input(x(0), x(1), x(2), y, s),
            Kernel::RmsNormGradGamma(s) => cpu::norm::rms_norm_grad_gamma(x(0), x(1), y, s),
            Kernel::IndexSelect(s) => cpu::select::index_select(x(0), x(1), y, s),
            Kernel::IndexSelectGrad(s) => cpu::select::index_select_grad(x(0), x(1), y, s),
            Kernel::Gather(s) => cpu::select::gather(x(0), x(1), y, s),
            Kernel::GatherGrad(s) => cpu::select::gather_grad(x(0), x(1), y, s),
            Kernel::Where { mask, a, b } => {
                cpu::select::where_select(x(0), mask, x(1), a, x(2), b, y)
            }
            Kernel::BatchNorm2d(s) => {
                let [stats] = extra else {
                    return Err(internal("batch_norm2d writes y and stats".into()));
                };
                cpu::batch_norm::batch_norm2d(x(0), x(1), x(2), y, stats, s)
            }
            Kernel::BatchNorm2dGrad(s) => {
                let [dweight, dbias] = extra else {
                    return Err(internal(
                        "batch_norm2d_grad writes dx, dweight, dbias".into(),
                    ));
                };
                cpu::batch_norm::batch_norm2d_grad(x(0), x(1), x(2), x(3), y, dweight, dbias, s)
            }
            Kernel::BatchNormUpdate(_) => {
                return Err(internal("a batch norm update without variables".into()))
            }
        }
        drop(bufs);
        for (slot, buf) in outs {
            self.slots[slot] = buf;
        }
        Ok(())
    }

    /// An update: an optimizer's reads the gradient and the clipping scale (computed values, so
    /// in slots) and writes the parameter and its states in place; a batch norm's reads the
    /// batch statistics and writes the running statistics.
    fn execute_update(
        &mut self,
        vars: &mut [Vec<T>],
        k: usize,
        scalars: &StepScalars,
    ) -> Result<()> {
        let launch = &self.plan.launches[k];
        let slot = |id: NodeId| match self.plan.storage[id] {
            Storage::Slot(s) => Ok(&self.slots[s][..self.plan.nodes[id].numel()]),
            other => Err(internal(format!(
                "optimizer input {id} stored as {other:?}"
            ))),
        };
        let ids: Vec<usize> = launch.updates.iter().map(|v| v.0).collect();
        if let (Kernel::BatchNormUpdate(u), &[rm, rv, nb]) = (&launch.kernel, &ids[..]) {
            let stats = slot(launch.reads[0])?;
            let [rm, rv, nb] = vars
                .get_disjoint_mut([rm, rv, nb])
                .map_err(|e| internal(format!("batch norm running statistics: {e}")))?;
            cpu::batch_norm::batch_norm_update(stats, rm, rv, nb, u);
            return Ok(());
        }
        let (grad, scale, lr) = (
            slot(launch.reads[0])?,
            slot(launch.reads[1])?[0],
            T::of(scalars.lr),
        );
        match (&launch.kernel, &ids[..]) {
            (Kernel::Sgd { config, .. }, &[p, vel]) => {
                let [p, vel] = vars
                    .get_disjoint_mut([p, vel])
                    .map_err(|e| internal(format!("sgd variables: {e}")))?;
                cpu::optim::sgd(p, grad, vel, scale, lr, config);
            }
            (Kernel::Adam { config, .. }, &[p, m, v]) => {
                let [p, m, v] = vars
                    .get_disjoint_mut([p, m, v])
                    .map_err(|e| internal(format!("adam variables: {e}")))?;
                let (bc1, bc2) = (
                    T::of(scalars.bias_correction1),
                    T::of(scalars.bias_correction2),
                );
                cpu::optim::adam(p, grad, m, v, scale, lr, bc1, bc2, config);
            }
            (kernel, _) => {
                return Err(internal(format!(
                    "{} updates variables {ids:?}",
                    kernel.name()
                )))
            }
        }
        Ok(())
    }
}

/// A broken plan invariant, reported rather than panicking mid-step.
fn internal(what: String) -> ModelError {
    ModelError::Graph(format!("CPU backend: {what}"))
}
