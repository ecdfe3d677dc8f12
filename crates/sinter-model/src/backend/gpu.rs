//! The GPU backend: turns a plan into prepared dispatches once (pipelines, buffers, bind groups),
//! then runs each step as one command encoder, one submit and one small readback.

use super::{Anomaly, StepScalars};
use crate::error::{ModelError, Result};
use crate::graph::{NodeId, Op};
use crate::plan::{Plan, Storage};
use crate::profile::{self, HostEvent, KernelTiming, StepProfile, TimingMethod};
use crate::vars::{VarId, VarStore};
use rayon::prelude::*;
use sinter_device::kernels::{
    attention, batch_norm, conv, elementwise, embedding, loss, matmul, norm, optim, pool, reduce,
    select, softmax, EpilogueArgs,
};
use sinter_device::{wgpu, Dispatch, Gpu};
use sinter_ops::elementwise::Epilogue;
use sinter_ops::Kernel;
use std::time::Instant;

/// Variable buffers on one GPU, plus the per-step scalars every optimizer kernel reads.
pub struct GpuBackend {
    /// The device and its queue, pools and pipeline cache.
    pub gpu: Gpu,
    /// Every variable's buffer, by [`VarId`].
    pub vars: Vec<wgpu::Buffer>,
    var_lens: Vec<usize>,
    /// `[lr, 1 − β1^t, 1 − β2^t]`, written before each step.
    hyper: wgpu::Buffer,
}

/// A plan with its buffers and its prepared dispatches.
pub struct GpuProgram {
    /// The plan it runs.
    pub plan: Plan,
    slots: Vec<wgpu::Buffer>,
    /// Every dispatch of a step, prepared (pipeline and bind group), in order.
    pub dispatches: Vec<Dispatch>,
    /// The launch (index into `plan.launches`) each dispatch belongs to; some take several.
    pub dispatch_launches: Vec<usize>,
}

impl GpuBackend {
    /// A backend on `gpu` holding no variables yet.
    pub fn new(gpu: Gpu) -> Result<Self> {
        let hyper = gpu.upload("optimizer scalars", &[0f32; 4])?;
        Ok(Self {
            gpu,
            vars: Vec::new(),
            var_lens: Vec::new(),
            hyper,
        })
    }

    /// Uploads the initial values of variables this backend has not seen yet.
    pub fn load_vars(&mut self, store: &VarStore) -> Result<()> {
        for info in &store.vars[self.vars.len()..] {
            let buf = self.gpu.upload(&info.name, &info.init)?;
            self.vars.push(buf);
            self.var_lens.push(info.numel());
        }
        Ok(())
    }

    /// Reads variable `id` back from the device.
    pub fn read_var(&self, id: VarId) -> Result<Vec<f32>> {
        Ok(self.gpu.read(&self.vars[id.0], self.var_lens[id.0])?)
    }

    /// The length of variable `id`, if this backend holds it.
    pub fn var_len(&self, id: VarId) -> Option<usize> {
        self.var_lens.get(id.0).copied()
    }

    /// Overwrites variable `id` (same length).
    pub fn write_var(&mut self, id: VarId, data: &[f32]) {
        assert_eq!(
            self.var_lens[id.0],
            data.len(),
            "write_var: length of var {id:?}"
        );
        self.gpu.write(&self.vars[id.0], data);
    }

    /// Allocates the plan's buffers and prepares every dispatch.
    pub fn compile(&self, plan: Plan) -> Result<GpuProgram> {
        plan.check_buffer_limit(self.gpu.max_binding())?;
        let gpu = &self.gpu;
        let slots = plan
            .slots
            .iter()
            .map(|&n| gpu.buffer("plan buffer", n))
            .collect::<sinter_device::Result<Vec<_>>>()?;
        for (i, node) in plan.nodes.iter().enumerate() {
            if let (Op::Fill(v), Storage::Slot(s)) = (&node.op, plan.storage[i]) {
                gpu.write(&slots[s], &vec![*v as f32; node.numel()]);
            }
        }
        // Kernel variants are tuned here, one new shape class after another and before anything
        // else runs, so timings are not disturbed; preparing the launches then only looks up.
        sinter_device::tune::tune_kernels(gpu, plan.launches.iter().map(|l| &l.kernel));
        // Launches are prepared on rayon's threads, so the driver compiles their pipelines in
        // parallel (most of the time before a first step); the dispatches keep the plan's order.
        let prepared: Vec<Result<Vec<Dispatch>>> = (0..plan.launches.len())
            .into_par_iter()
            .map(|k| self.prepare(&plan, &slots, k))
            .collect();
        let mut dispatches = Vec::with_capacity(plan.order.len());
        let mut dispatch_launches = Vec::with_capacity(plan.launches.len());
        for (k, prepared) in prepared.into_iter().enumerate() {
            let prepared = prepared?;
            dispatch_launches.extend(std::iter::repeat_n(k, prepared.len()));
            dispatches.extend(prepared);
        }
        log::debug!(
            "gpu program: {} dispatches, {} buffers",
            dispatches.len(),
            slots.len()
        );
        // Every pipeline the program runs is compiled now: keep them for the next run.
        self.gpu.persist_pipelines();
        Ok(GpuProgram {
            plan,
            slots,
            dispatches,
            dispatch_launches,
        })
    }

    /// The dispatches of launch `k` (one for most kernels): one match on its kernel, every size
    /// taken from the lowering. Its dispatches' FLOPs and bytes sum to the launch's cost
    /// ([`crate::lower::Launch::cost`]).
    fn prepare(&self, plan: &Plan, slots: &[wgpu::Buffer], k: usize) -> Result<Vec<Dispatch>> {
        let gpu = &self.gpu;
        let launch = &plan.launches[k];
        let buf = |id: NodeId| -> Result<&wgpu::Buffer> {
            match plan.storage[id] {
                Storage::Slot(s) => Ok(&slots[s]),
                Storage::Var(v) => Ok(&self.vars[v.0]),
                Storage::None => Err(internal(format!("node {id} has no storage"))),
            }
        };
        let x = |j: usize| buf(launch.reads[j]);
        let tag = plan.nodes[launch.node].tag.as_str();
        // The launch's outputs: the node's value, then its secondary outputs.
        let out = |j: usize| match launch.writes.get(j) {
            Some(&id) => buf(id),
            None => Err(internal(format!(
                "{} has no output {j}",
                launch.kernel.name()
            ))),
        };
        let y = || out(0);
        let epilogue = |e: &Epilogue| -> Result<EpilogueArgs> {
            Ok(EpilogueArgs {
                bias: if e.bias { Some(x(2)?) } else { None },
                activation: e.activation,
            })
        };
        let var = |j: usize| match launch.updates.get(j) {
            Some(v) => Ok((&self.vars[v.0], self.var_lens[v.0])),
            None => Err(internal(format!(
                "{} has no variable {j}",
                launch.kernel.name()
            ))),
        };
        let mut dispatches = match &launch.kernel {
            Kernel::Unary { op, len } => {
                vec![elementwise::unary(gpu, x(0)?, y()?, *op, *len, tag)?]
            }
            Kernel::UnaryGrad { op, len } => vec![elementwise::unary_grad(
                gpu,
                x(0)?,
                x(1)?,
                y()?,
                *op,
                *len,
                tag,
            )?],
            Kernel::Affine { alpha, beta, len } => vec![elementwise::affine(
                gpu,
                x(0)?,
                y()?,
                *len,
                *alpha as f32,
                *beta as f32,
                tag,
            )?],
            Kernel::Binary { op, a, b } => {
                vec![elementwise::binary(
                    gpu,
                    x(0)?,
                    a,
                    x(1)?,
                    b,
                    y()?,
                    *op,
                    tag,
                )?]
            }
            Kernel::BroadcastTo { from, to } => {
                vec![elementwise::broadcast_to(gpu, x(0)?, from, y()?, to, tag)?]
            }
            // One dispatch per part, each reading its operand.
            Kernel::Copy { op, parts } => {
                let dst_len = plan.nodes[launch.node].numel();
                parts
                    .iter()
                    .enumerate()
                    .map(|(k, part)| {
                        let src_len = plan.nodes[launch.reads[k]].numel();
                        elementwise::strided_copy(gpu, x(k)?, src_len, y()?, dst_len, part, op, tag)
                            .map_err(Into::into)
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            Kernel::Reduce { op, shape } => {
                vec![reduce::reduce(gpu, x(0)?, y()?, *op, shape, tag)?]
            }
            Kernel::MatMul { shape, epilogue: e } => vec![matmul::matmul_epilogue(
                gpu,
                x(0)?,
                x(1)?,
                y()?,
                shape,
                epilogue(e)?,
                tag,
            )?],
            Kernel::Conv2d { shape, epilogue: e } => vec![conv::conv2d_forward_epilogue(
                gpu,
                x(0)?,
                x(1)?,
                y()?,
                shape,
                epilogue(e)?,
                tag,
            )?],
            Kernel::Conv2dGradInput(s) => {
                vec![conv::conv2d_grad_input(gpu, x(0)?, x(1)?, y()?, s, tag)?]
            }
            Kernel::Conv2dGradWeight(s) => {
                vec![conv::conv2d_grad_weight(gpu, x(0)?, x(1)?, y()?, s, tag)?]
            }
            Kernel::MaxPool2d(s) => vec![pool::max_pool2d(gpu, x(0)?, y()?, s, tag)?],
            Kernel::MaxPool2dGrad { shape, relu } => {
                let mut d = vec![pool::max_pool2d_grad(gpu, x(0)?, x(1)?, y()?, shape, tag)?];
                if *relu {
                    d.push(elementwise::relu_mask(
                        gpu,
                        x(0)?,
                        y()?,
                        shape.x_len(),
                        tag,
                    )?);
                }
                d
            }
            Kernel::AvgPool2d(s) => vec![pool::avg_pool2d(gpu, x(0)?, y()?, s, tag)?],
            Kernel::AvgPool2dGrad(s) => vec![pool::avg_pool2d_grad(gpu, x(0)?, y()?, s, tag)?],
            Kernel::CrossEntropy(s) => {
                vec![loss::cross_entropy(gpu, x(0)?, x(1)?, y()?, s, tag)?]
            }
            Kernel::CrossEntropyGrad(s) => vec![loss::cross_entropy_grad(
                gpu,
                x(0)?,
                x(1)?,
                x(2)?,
                y()?,
                s,
                tag,
            )?],
            Kernel::CountCorrect(s) => {
                vec![loss::count_correct(gpu, x(0)?, x(1)?, y()?, s, tag)?]
            }
            Kernel::Softmax(s) => vec![softmax::softmax(gpu, x(0)?, y()?, s, tag)?],
            Kernel::LogSoftmax(s) => vec![softmax::log_softmax(gpu, x(0)?, y()?, s, tag)?],
            Kernel::SoftmaxGrad(s) => {
                vec![softmax::softmax_grad(gpu, x(0)?, x(1)?, y()?, s, tag)?]
            }
            Kernel::LogSoftmaxGrad(s) => {
                vec![softmax::log_softmax_grad(gpu, x(0)?, x(1)?, y()?, s, tag)?]
            }
            Kernel::LayerNorm(s) => {
                vec![norm::layer_norm(gpu, x(0)?, x(1)?, x(2)?, y()?, s, tag)?]
            }
            Kernel::LayerNormGradInput(s) => vec![norm::layer_norm_grad_input(
                gpu,
                x(0)?,
                x(1)?,
                x(2)?,
                y()?,
                s,
                tag,
            )?],
            Kernel::LayerNormGradGamma(s) => {
                norm::layer_norm_grad_gamma(gpu, x(0)?, x(1)?, y()?, s, tag)?
            }
            Kernel::Embedding(s) => vec![embedding::embedding(gpu, x(0)?, x(1)?, y()?, s, tag)?],
            Kernel::EmbeddingGrad(s) => {
                vec![embedding::embedding_grad(gpu, x(0)?, x(1)?, y()?, s, tag)?]
            }
            Kernel::Attention(s) => vec![attention::attention_forward(
                gpu,
                x(0)?,
                x(1)?,
                x(2)?,
                if s.has_dropout() { Some(x(3)?) } else { None },
                y()?,
                out(1)?,
                s,
                tag,
            )?],
            // outputs [dq, dk, dv, delta]
            Kernel::AttentionGrad(s) => attention::attention_backward(
                gpu,
                x(0)?,
                x(1)?,
                x(2)?,
                x(3)?,
                x(4)?,
                x(5)?,
                out(3)?,
                y()?,
                out(1)?,
                out(2)?,
                s,
                tag,
            )?,
            Kernel::Sgd { len, config } => {
                let ((param, _), (velocity, _)) = (var(0)?, var(1)?);
                vec![optim::sgd(
                    gpu,
                    x(0)?,
                    x(1)?,
                    &self.hyper,
                    param,
                    velocity,
                    *len,
                    config,
                    tag,
                )?]
            }
            Kernel::Adam { len, config } => {
                let ((param, _), (m, _), (v, _)) = (var(0)?, var(1)?, var(2)?);
                vec![optim::adam(
                    gpu,
                    x(0)?,
                    x(1)?,
                    &self.hyper,
                    param,
                    m,
                    v,
                    *len,
                    config,
                    tag,
                )?]
            }
            Kernel::RmsNorm(s) => vec![norm::rms_norm(gpu, x(0)?, x(1)?, y()?, s, tag)?],
            Kernel::RmsNormGradInput(s) => vec![norm::rms_norm_grad_input(
                gpu,
                x(0)?,
                x(1)?,
                x(2)?,
                y()?,
                s,
                tag,
            )?],
            Kernel::RmsNormGradGamma(s) => {
                norm::rms_norm_grad_gamma(gpu, x(0)?, x(1)?, y()?, s, tag)?
            }
            Kernel::IndexSelect(s) => {
                vec![select::index_select(gpu, x(0)?, x(1)?, y()?, s, tag)?]
            }
            Kernel::IndexSelectGrad(s) => {
                vec![select::index_select_grad(gpu, x(0)?, x(1)?, y()?, s, tag)?]
            }
            Kernel::Gather(s) => vec![select::gather(gpu, x(0)?, x(1)?, y()?, s, tag)?],
            Kernel::GatherGrad(s) => {
                vec![select::gather_grad(gpu, x(0)?, x(1)?, y()?, s, tag)?]
            }
            Kernel::Where { mask, a, b } => vec![select::where_select(
                gpu,
                x(0)?,
                mask,
                x(1)?,
                a,
                x(2)?,
                b,
                y()?,
                tag,
            )?],
            // outputs [y, stats]
            Kernel::BatchNorm2d(s) => {
                batch_norm::batch_norm2d(gpu, x(0)?, x(1)?, x(2)?, y()?, out(1)?, s, tag)?
            }
            // inputs [x, weight, stats, dy]; outputs [dx, dweight, dbias]
            Kernel::BatchNorm2dGrad(s) => batch_norm::batch_norm2d_grad(
                gpu,
                x(0)?,
                x(1)?,
                x(2)?,
                x(3)?,
                y()?,
                out(1)?,
                out(2)?,
                s,
                tag,
            )?,
            Kernel::BatchNormUpdate(u) => {
                let ((mean, _), (variance, _), (count, _)) = (var(0)?, var(1)?, var(2)?);
                vec![batch_norm::batch_norm_update(
                    gpu,
                    x(0)?,
                    mean,
                    variance,
                    count,
                    u,
                    tag,
                )?]
            }
        };
        // The launchers price their dispatches by the same cost model; where a launch takes
        // several (a fused mask pass), the last carries what the others leave of the launch's
        // cost, so a launch's dispatches always sum to it.
        let cost = launch.cost();
        if let Some((last, rest)) = dispatches.split_last_mut() {
            let (flops, bytes) = rest
                .iter()
                .fold((0, 0), |(f, b), d| (f + d.flops, b + d.bytes));
            last.flops = cost.flops.saturating_sub(flops);
            last.bytes = cost.bytes.saturating_sub(bytes);
        }
        Ok(dispatches)
    }

    /// Returns a program's buffers to the device's pool.
    pub fn release(&self, prog: GpuProgram) {
        for buf in prog.slots {
            self.gpu.recycle(buf);
        }
    }

    /// Writes the feeds and scalars of a step; returns the reads of its outputs.
    fn stage<'a>(
        &'a self,
        prog: &'a GpuProgram,
        feeds: &[&[f32]],
        scalars: &StepScalars,
    ) -> Result<Vec<(&'a wgpu::Buffer, usize)>> {
        super::check_feeds(&prog.plan, feeds.iter().map(|f| f.len()))?;
        for (k, data) in feeds.iter().enumerate() {
            let Storage::Slot(s) = prog.plan.storage[prog.plan.inputs[k]] else {
                unreachable!("inputs have slots")
            };
            self.gpu.write(&prog.slots[s], data);
        }
        let hyper = [
            scalars.lr as f32,
            scalars.bias_correction1 as f32,
            scalars.bias_correction2 as f32,
            0.0,
        ];
        self.gpu.write(&self.hyper, &hyper);
        Ok(prog
            .plan
            .outputs
            .iter()
            .map(|&o| match prog.plan.storage[o] {
                Storage::Slot(s) => (&prog.slots[s], prog.plan.nodes[o].numel()),
                Storage::Var(v) => (&self.vars[v.0], prog.plan.nodes[o].numel()),
                Storage::None => panic!("output {o} has no storage"),
            })
            .collect())
    }

    /// One step: write the feeds and scalars, record every dispatch, submit once, read the outputs.
    pub fn run(
        &mut self,
        prog: &GpuProgram,
        feeds: &[&[f32]],
        scalars: &StepScalars,
    ) -> Result<Vec<Vec<f32>>> {
        let reads = self.stage(prog, feeds, scalars)?;
        let dispatches: Vec<&Dispatch> = prog.dispatches.iter().collect();
        Ok(self.gpu.run(&dispatches, &reads)?)
    }

    /// [`GpuBackend::run`] without waiting: the step is on the GPU's queue when this returns,
    /// and [`sinter_device::Gpu::wait`] reads its outputs. Feeds and scalars are copied at once
    /// (the queue writes them before this step's commands), so the caller may reuse them.
    pub fn submit(
        &mut self,
        prog: &GpuProgram,
        feeds: &[&[f32]],
        scalars: &StepScalars,
    ) -> Result<sinter_device::Submitted> {
        let reads = self.stage(prog, feeds, scalars)?;
        let dispatches: Vec<&Dispatch> = prog.dispatches.iter().collect();
        Ok(self.gpu.submit(&dispatches, &reads)?)
    }

    /// [`GpuBackend::run`], then every value of the step read back and checked, inputs first,
    /// then nodes in plan order (see [`super::Backend::run_checked`]). The program must come from
    /// a plan without buffer reuse, or later values would have overwritten earlier ones.
    pub fn run_checked(
        &mut self,
        prog: &GpuProgram,
        feeds: &[&[f32]],
        scalars: &StepScalars,
    ) -> Result<(Vec<Vec<f32>>, Option<Anomaly>)> {
        let plan = &prog.plan;
        if plan.reuse {
            return Err(ModelError::Config(
                "anomaly detection on a GPU needs a program from Backend::compile_checked".into(),
            ));
        }
        let mut reads = self.stage(prog, feeds, scalars)?;
        let outputs = reads.len();
        let checked: Vec<NodeId> = plan
            .inputs
            .iter()
            .copied()
            .chain(
                plan.order
                    .iter()
                    .flat_map(|&i| std::iter::once(i).chain(plan.extras[i].iter().copied())),
            )
            .filter(|&id| matches!(plan.storage[id], Storage::Slot(_)))
            .collect();
        reads.extend(checked.iter().map(|&id| {
            let Storage::Slot(s) = plan.storage[id] else {
                unreachable!("filtered above")
            };
            (&prog.slots[s], plan.nodes[id].numel())
        }));
        let dispatches: Vec<&Dispatch> = prog.dispatches.iter().collect();
        let mut values = self.gpu.run(&dispatches, &reads)?;
        let anomaly = checked
            .iter()
            .zip(&values[outputs..])
            .find_map(|(&id, v)| Anomaly::find(plan, id, v));
        values.truncate(outputs);
        Ok((values, anomaly))
    }

    /// [`GpuBackend::run`] with every dispatch timed by `method`, each tagged with its plan
    /// node's shapes; host phases (feed, record, submit, wait, readback) are timed too.
    pub fn run_profiled(
        &mut self,
        prog: &GpuProgram,
        feeds: &[&[f32]],
        scalars: &StepScalars,
        method: TimingMethod,
    ) -> Result<(Vec<Vec<f32>>, StepProfile)> {
        let started = Instant::now();
        let reads = self.stage(prog, feeds, scalars)?;
        let fed = started.elapsed();
        let dispatches: Vec<&Dispatch> = prog.dispatches.iter().collect();
        let run = self.gpu.run_timed(&dispatches, &reads, method)?;
        let wall_us = started.elapsed().as_secs_f64() * 1e6;
        let offset = |d: std::time::Duration| (run.started - started + d).as_secs_f64() * 1e6;
        let kernels = prog
            .dispatches
            .iter()
            .zip(&prog.dispatch_launches)
            .zip(&run.dispatches)
            .map(|((d, &k), t)| KernelTiming {
                launch: k,
                kernel: d.entry.to_string(),
                tag: d.tag.clone(),
                shapes: profile::launch_shapes(&prog.plan, &prog.plan.launches[k]),
                flops: d.flops,
                bytes: d.bytes,
                start_us: offset(run.gpu_origin) + t.start_ns * 1e-3,
                duration_us: t.duration_ns * 1e-3,
            })
            .collect();
        let mut host = vec![HostEvent {
            name: "write feeds".into(),
            start_us: 0.0,
            duration_us: fed.as_secs_f64() * 1e6,
        }];
        host.extend(run.host.iter().map(|h| HostEvent {
            name: h.name.to_string(),
            start_us: offset(h.start),
            duration_us: h.duration.as_secs_f64() * 1e6,
        }));
        let profile = StepProfile {
            timing: method.label().to_string(),
            host_timed: method == TimingMethod::HostTimed,
            started,
            wall_us,
            kernels,
            host,
        };
        Ok((run.outputs, profile))
    }
}

/// A broken plan invariant, reported rather than panicking while a program is prepared.
fn internal(what: String) -> ModelError {
    ModelError::Graph(format!("GPU backend: {what}"))
}
