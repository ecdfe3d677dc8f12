//! The GPU backend: turns a plan into prepared dispatches once (pipelines, buffers, bind groups),
//! then runs each step as one command encoder, one submit and one small readback.

use super::{Anomaly, StepScalars};
use crate::error::{ModelError, Result};
use crate::fuse::Fused;
use crate::graph::{conv_shape, NodeId, Op};
use crate::plan::{self, Plan, Storage};
use crate::profile::{self, HostEvent, KernelTiming, StepProfile, TimingMethod};
use crate::vars::{VarId, VarStore};
use sinter_device::kernels::{
    attention, conv, elementwise, embedding, loss, matmul, norm, optim, pool, reduce, softmax,
    EpilogueArgs,
};
use sinter_device::{wgpu, Dispatch, Gpu};
use std::time::Instant;

/// Variable buffers on one GPU, plus the per-step scalars every optimizer kernel reads.
pub struct GpuBackend {
    pub gpu: Gpu,
    pub vars: Vec<wgpu::Buffer>,
    var_lens: Vec<usize>,
    /// `[lr, 1 − β1^t, 1 − β2^t]`, written before each step.
    hyper: wgpu::Buffer,
}

/// A plan with its buffers and its prepared dispatches.
pub struct GpuProgram {
    pub plan: Plan,
    slots: Vec<wgpu::Buffer>,
    pub dispatches: Vec<Dispatch>,
    /// The plan node each dispatch computes (some nodes take several dispatches).
    pub dispatch_nodes: Vec<NodeId>,
}

impl GpuBackend {
    pub fn new(gpu: Gpu) -> Result<Self> {
        let hyper = gpu.upload("optimizer scalars", &[0f32; 4])?;
        Ok(Self {
            gpu,
            vars: Vec::new(),
            var_lens: Vec::new(),
            hyper,
        })
    }

    pub fn load_vars(&mut self, store: &VarStore) -> Result<()> {
        for info in &store.vars[self.vars.len()..] {
            let buf = self.gpu.upload(&info.name, &info.init)?;
            self.vars.push(buf);
            self.var_lens.push(info.numel());
        }
        Ok(())
    }

    pub fn read_var(&self, id: VarId) -> Result<Vec<f32>> {
        Ok(self.gpu.read(&self.vars[id.0], self.var_lens[id.0])?)
    }

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
        let mut dispatches = Vec::with_capacity(plan.order.len());
        let mut dispatch_nodes = Vec::with_capacity(plan.order.len());
        for &i in &plan.order {
            let prepared = self.prepare(&plan, &slots, i)?;
            dispatch_nodes.extend(std::iter::repeat_n(i, prepared.len()));
            dispatches.extend(prepared);
        }
        log::debug!(
            "gpu program: {} dispatches, {} buffers",
            dispatches.len(),
            slots.len()
        );
        Ok(GpuProgram {
            plan,
            slots,
            dispatches,
            dispatch_nodes,
        })
    }

    /// The dispatches of node `i` (one for most ops).
    fn prepare(&self, plan: &Plan, slots: &[wgpu::Buffer], i: NodeId) -> Result<Vec<Dispatch>> {
        let gpu = &self.gpu;
        let node = &plan.nodes[i];
        let buf = |id: NodeId| -> &wgpu::Buffer {
            match plan.storage[id] {
                Storage::Slot(s) => &slots[s],
                Storage::Var(v) => &self.vars[v.0],
                Storage::None => panic!("node {id} has no storage"),
            }
        };
        let input = |k: usize| buf(node.inputs[k]);
        let shape = |k: usize| plan.shape(node.inputs[k]);
        let (tag, len) = (node.tag.as_str(), node.numel());
        // The node's output buffer (optimizer updates have none: they write variables).
        let y = || buf(i);
        let d = match &node.op {
            Op::Softmax => softmax::softmax(gpu, input(0), y(), &plan::rows_shape(shape(0)), tag)?,
            Op::LogSoftmax => {
                softmax::log_softmax(gpu, input(0), y(), &plan::rows_shape(shape(0)), tag)?
            }
            Op::SoftmaxGrad => softmax::softmax_grad(
                gpu,
                input(0),
                input(1),
                y(),
                &plan::rows_shape(shape(0)),
                tag,
            )?,
            Op::LogSoftmaxGrad => softmax::log_softmax_grad(
                gpu,
                input(0),
                input(1),
                y(),
                &plan::rows_shape(shape(0)),
                tag,
            )?,
            Op::LayerNorm { eps } => {
                let s = plan::layer_norm_shape(shape(0), *eps);
                norm::layer_norm(gpu, input(0), input(1), input(2), y(), &s, tag)?
            }
            Op::LayerNormGradInput { eps } => {
                let s = plan::layer_norm_shape(shape(0), *eps);
                norm::layer_norm_grad_input(gpu, input(0), input(1), input(2), y(), &s, tag)?
            }
            Op::LayerNormGradGamma { eps } => {
                let s = plan::layer_norm_shape(shape(0), *eps);
                norm::layer_norm_grad_gamma(gpu, input(0), input(1), y(), &s, tag)?
            }
            Op::Embedding => {
                let s = plan::embedding_shape(shape(0), shape(1));
                embedding::embedding(gpu, input(0), input(1), y(), &s, tag)?
            }
            Op::EmbeddingGrad => {
                let s = plan::embedding_shape(shape(0), &node.shape);
                embedding::embedding_grad(gpu, input(0), input(1), y(), &s, tag)?
            }
            Op::Attention { causal, scale } => {
                let s = plan::attention_shape(shape(0), *causal, *scale);
                let lse = buf(plan.extras[i][0]);
                attention::attention_forward(gpu, input(0), input(1), input(2), y(), lse, &s, tag)?
            }
            Op::AttentionGrad { causal, scale } => {
                let s = plan::attention_shape(shape(0), *causal, *scale);
                let [dk, dv, delta] = [0, 1, 2].map(|k| buf(plan.extras[i][k]));
                let (q, k, v, o, d_o, lse) =
                    (input(0), input(1), input(2), input(3), input(4), input(5));
                return Ok(attention::attention_backward(
                    gpu,
                    q,
                    k,
                    v,
                    o,
                    d_o,
                    lse,
                    delta,
                    y(),
                    dk,
                    dv,
                    &s,
                    tag,
                )?);
            }
            Op::Secondary(_) => unreachable!("secondary outputs are written by their producer"),
            Op::Unary(u) => elementwise::unary(gpu, input(0), y(), *u, len, tag)?,
            Op::UnaryGrad(u) => {
                elementwise::unary_grad(gpu, input(0), input(1), y(), *u, len, tag)?
            }
            Op::Affine { alpha, beta } => {
                elementwise::affine(gpu, input(0), y(), len, *alpha as f32, *beta as f32, tag)?
            }
            Op::Binary(b) => {
                elementwise::binary(gpu, input(0), shape(0), input(1), shape(1), y(), *b, tag)?
            }
            Op::BroadcastTo => {
                elementwise::broadcast_to(gpu, input(0), shape(0), y(), &node.shape, tag)?
            }
            Op::Reduce { op, axis, .. } => {
                let s = reduce::ReduceShape::along(shape(0), *axis);
                reduce::reduce(gpu, input(0), y(), *op, &s, tag)?
            }
            Op::MatMul { trans_a, trans_b } => {
                let s = plan::matmul_kernel_shape(shape(0), shape(1), *trans_a, *trans_b);
                matmul::matmul(gpu, input(0), input(1), y(), &s, tag)?
            }
            Op::Conv2d(c) => {
                let s = plan::conv_kernel_shape(plan, node.inputs[0], node.inputs[1], *c);
                conv::conv2d_forward(gpu, input(0), input(1), y(), &s, tag)?
            }
            Op::Conv2dGradInput(c) => {
                let s = conv_shape(&node.shape, shape(1), *c).expect("checked when recorded");
                conv::conv2d_grad_input(gpu, input(0), input(1), y(), &s, tag)?
            }
            Op::Conv2dGradWeight(c) => {
                let s = plan::conv_kernel_shape(plan, node.inputs[0], i, *c);
                conv::conv2d_grad_weight(gpu, input(0), input(1), y(), &s, tag)?
            }
            Op::MaxPool2d(c) => pool::max_pool2d(
                gpu,
                input(0),
                y(),
                &plan::pool_kernel_shape(shape(0), *c),
                tag,
            )?,
            Op::MaxPool2dGrad(c) => pool::max_pool2d_grad(
                gpu,
                input(0),
                input(1),
                y(),
                &plan::pool_kernel_shape(shape(0), *c),
                tag,
            )?,
            Op::AvgPool2d(c) => pool::avg_pool2d(
                gpu,
                input(0),
                y(),
                &plan::pool_kernel_shape(shape(0), *c),
                tag,
            )?,
            Op::AvgPool2dGrad(c) => pool::avg_pool2d_grad(
                gpu,
                input(0),
                y(),
                &plan::pool_kernel_shape(&node.shape, *c),
                tag,
            )?,
            Op::CrossEntropy => loss::cross_entropy(
                gpu,
                input(0),
                input(1),
                y(),
                &plan::cross_entropy_shape(shape(0)),
                tag,
            )?,
            Op::CrossEntropyGrad => loss::cross_entropy_grad(
                gpu,
                input(0),
                input(1),
                input(2),
                y(),
                &plan::cross_entropy_shape(shape(0)),
                tag,
            )?,
            Op::CountCorrect => loss::count_correct(
                gpu,
                input(0),
                input(1),
                y(),
                &plan::cross_entropy_shape(shape(0)),
                tag,
            )?,
            Op::SgdUpdate {
                param,
                velocity,
                config,
            } => optim::sgd(
                gpu,
                input(0),
                input(1),
                &self.hyper,
                &self.vars[param.0],
                &self.vars[velocity.0],
                self.var_lens[param.0],
                config,
                tag,
            )?,
            Op::AdamUpdate {
                param,
                m,
                v,
                config,
            } => optim::adam(
                gpu,
                input(0),
                input(1),
                &self.hyper,
                &self.vars[param.0],
                &self.vars[m.0],
                &self.vars[v.0],
                self.var_lens[param.0],
                config,
                tag,
            )?,
            Op::Input { .. } | Op::Var(_) | Op::Fill(_) | Op::Reshape => {
                unreachable!("{} is not executed", node.op.name())
            }
            // A fused product runs its epilogue inside its kernel: one dispatch.
            Op::Fused(Fused::Conv2d { conv, epilogue: e }) => {
                let s = plan::conv_kernel_shape(plan, node.inputs[0], node.inputs[1], *conv);
                let e = EpilogueArgs {
                    bias: e.bias.then(|| input(2)),
                    activation: e.activation,
                };
                conv::conv2d_forward_epilogue(gpu, input(0), input(1), y(), &s, e, tag)?
            }
            Op::Fused(Fused::MatMul {
                trans_a,
                trans_b,
                epilogue: e,
            }) => {
                let s = plan::matmul_kernel_shape(shape(0), shape(1), *trans_a, *trans_b);
                let e = EpilogueArgs {
                    bias: e.bias.then(|| input(2)),
                    activation: e.activation,
                };
                matmul::matmul_epilogue(gpu, input(0), input(1), y(), &s, e, tag)?
            }
            Op::Fused(Fused::MaxPool2dGradRelu(c)) => {
                let s = plan::pool_kernel_shape(shape(0), *c);
                return Ok(vec![
                    pool::max_pool2d_grad(gpu, input(0), input(1), y(), &s, tag)?,
                    elementwise::relu_mask(gpu, input(0), y(), len, tag)?,
                ]);
            }
        };
        Ok(vec![d])
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
            .zip(&prog.dispatch_nodes)
            .zip(&run.dispatches)
            .map(|((d, &node), t)| KernelTiming {
                kernel: d.entry.to_string(),
                tag: d.tag.clone(),
                shapes: profile::node_shapes(&prog.plan, node),
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
