//! Profiles of training steps: every kernel timed and tagged in model terms with its shapes, FLOPs
//! and bytes, and the measured ceilings of a backend's device. Tables, traces and the ceilings
//! cache are presentation: they live in the `sinter` package (`sinter::report`).

use crate::backend::Backend;
use crate::cpu;
use crate::fuse::Fused;
use crate::graph::{NodeId, Op};
use crate::plan::{self, Plan};
use rayon::prelude::*;
use sinter_ops::matmul::MatmulShape;
use std::fmt::Write as _;
use std::time::Instant;

pub use sinter_ops::timing::{Ceilings, TimingMethod};

/// One timed kernel of a step: a GPU dispatch, or a node run by the CPU backend.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTiming {
    /// The WGSL entry point on a GPU (`matmul_v4_wide`), the op on the CPU backend (`matmul`).
    pub kernel: String,
    /// What it computes in model terms (`conv2 · weight grad`, `adam · fc1.weight`).
    pub tag: String,
    /// Input shapes and the output shape: `[64, 784] · [784, 256] → [64, 256]`.
    pub shapes: String,
    pub flops: u64,
    pub bytes: u64,
    /// From the start of the step.
    pub start_us: f64,
    pub duration_us: f64,
}

/// A host-side phase of a step (feed, record, submit, wait, readback …).
#[derive(Clone, Debug, PartialEq)]
pub struct HostEvent {
    pub name: String,
    /// From the start of the step.
    pub start_us: f64,
    pub duration_us: f64,
}

/// Everything measured about one step.
#[derive(Clone, Debug)]
pub struct StepProfile {
    /// How the kernels were timed, for reports.
    pub timing: String,
    /// The kernel times came from the host clock around separate submits (so include latency).
    pub host_timed: bool,
    /// The host clock at the start of the step: traces of several steps are laid out by it.
    pub started: Instant,
    /// Wall-clock time of the whole step, host work included.
    pub wall_us: f64,
    /// In the order they ran.
    pub kernels: Vec<KernelTiming>,
    pub host: Vec<HostEvent>,
}

impl StepProfile {
    /// Sum of the kernel durations.
    pub fn kernel_us(&self) -> f64 {
        self.kernels.iter().map(|k| k.duration_us).sum()
    }
}

/// How a CPU-backend profile is labelled.
pub const CPU_TIMING: &str = "CPU backend, host clock around each node";

// ---- FLOP and byte counts of plan nodes (the CPU backend's side of Dispatch::flops/bytes) ------

/// FLOPs and bytes of node `i` of `plan`, by the conventions of the WGSL launches: a matrix
/// product is 2·m·n·k per batch item, a convolution (and each of its gradients)
/// 2·N·O·OH·OW·C·KH·KW, and bytes are 4 per f32 value read or written once (inputs and outputs;
/// for optimizer updates also the variables they read and write).
pub fn node_cost(plan: &Plan, i: NodeId) -> (u64, u64) {
    let node = &plan.nodes[i];
    let numel = |id: NodeId| plan.nodes[id].numel() as u64;
    let len = node.numel() as u64;
    let outputs: u64 = len + plan.extras[i].iter().map(|&e| numel(e)).sum::<u64>();
    let io_bytes = 4 * (node.inputs.iter().map(|&j| numel(j)).sum::<u64>() + outputs);
    let shape = |k: usize| plan.shape(node.inputs[k]);
    let flops = match &node.op {
        Op::MatMul { trans_a, trans_b } => {
            plan::matmul_kernel_shape(shape(0), shape(1), *trans_a, *trans_b).flops()
        }
        Op::Conv2d(c) => plan::conv_kernel_shape(plan, node.inputs[0], node.inputs[1], *c).flops(),
        Op::Conv2dGradInput(c) => crate::graph::conv_shape(&node.shape, shape(1), *c)
            .expect("checked when recorded")
            .flops(),
        Op::Conv2dGradWeight(c) => plan::conv_kernel_shape(plan, node.inputs[0], i, *c).flops(),
        Op::Unary(u) => u.flops() * len,
        Op::UnaryGrad(u) => (u.flops() + 2) * len,
        Op::Affine { .. } => 2 * len,
        Op::Binary(_) => len,
        Op::BroadcastTo | Op::Embedding | Op::Reshape => 0,
        Op::Reduce { .. } => numel(node.inputs[0]),
        Op::MaxPool2d(c) | Op::AvgPool2d(c) => {
            let p = plan::pool_kernel_shape(shape(0), *c);
            len * (p.kh * p.kw) as u64
        }
        Op::MaxPool2dGrad(c) => {
            let p = plan::pool_kernel_shape(shape(0), *c);
            numel(node.inputs[1]) * (p.kh * p.kw) as u64
        }
        Op::AvgPool2dGrad(c) => {
            let p = plan::pool_kernel_shape(&node.shape, *c);
            numel(node.inputs[0]) * (p.kh * p.kw) as u64
        }
        Op::CrossEntropy => {
            let s = plan::cross_entropy_shape(shape(0));
            4 * (s.rows * s.classes) as u64 + 3 * s.rows as u64
        }
        Op::CrossEntropyGrad => 8 * len,
        Op::CountCorrect => numel(node.inputs[0]),
        Op::Softmax | Op::LogSoftmax => 5 * len,
        Op::SoftmaxGrad | Op::LogSoftmaxGrad => 4 * len,
        Op::LayerNorm { .. } => 8 * len,
        Op::LayerNormGradInput { .. } => 18 * len,
        Op::LayerNormGradGamma { .. } => 4 * numel(node.inputs[0]),
        Op::EmbeddingGrad => numel(node.inputs[1]),
        Op::Attention { causal, scale } => {
            let s = plan::attention_shape(shape(0), *causal, *scale);
            s.pairs() * (4 * s.head_dim as u64 + 4)
        }
        Op::AttentionGrad { causal, scale } => {
            let s = plan::attention_shape(shape(0), *causal, *scale);
            let (d, rows) = (s.head_dim as u64, (s.batch * s.seq * s.heads) as u64);
            rows * 2 * d + s.pairs() * (14 * d + 8)
        }
        Op::Fused(Fused::Conv2d { conv, epilogue }) => {
            let s = plan::conv_kernel_shape(plan, node.inputs[0], node.inputs[1], *conv);
            s.flops() + len * epilogue.flops()
        }
        Op::Fused(Fused::MatMul {
            trans_a,
            trans_b,
            epilogue,
        }) => {
            let s = plan::matmul_kernel_shape(shape(0), shape(1), *trans_a, *trans_b);
            s.flops() + len * epilogue.flops()
        }
        Op::Fused(Fused::MaxPool2dGradRelu(c)) => {
            let p = plan::pool_kernel_shape(shape(0), *c);
            numel(node.inputs[1]) * (p.kh * p.kw + 1) as u64
        }
        Op::SgdUpdate { param, .. } => 8 * plan_var_len(plan, i, *param),
        Op::AdamUpdate { param, .. } => 18 * plan_var_len(plan, i, *param),
        Op::Input { .. } | Op::Var(_) | Op::Fill(_) | Op::Secondary(_) => 0,
    };
    let bytes = match &node.op {
        // Gradient in; parameter and velocity read and written.
        Op::SgdUpdate { param, .. } => 20 * plan_var_len(plan, i, *param),
        // Gradient in; parameter, m and v read and written.
        Op::AdamUpdate { param, .. } => 28 * plan_var_len(plan, i, *param),
        _ => io_bytes,
    };
    (flops, bytes)
}

/// Length of the variable an optimizer node updates: its gradient input has the same shape.
fn plan_var_len(plan: &Plan, i: NodeId, _param: crate::vars::VarId) -> u64 {
    plan.nodes[plan.nodes[i].inputs[0]].numel() as u64
}

fn dims(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// `[64, 784] · [784, 256] → [64, 256]`: the shapes of node `i`'s inputs and of its outputs
/// (secondary outputs after a comma); `ᵀ` marks a transposed matrix-product operand.
pub fn node_shapes(plan: &Plan, i: NodeId) -> String {
    let node = &plan.nodes[i];
    let (ta, tb) = match node.op {
        Op::MatMul { trans_a, trans_b }
        | Op::Fused(Fused::MatMul {
            trans_a, trans_b, ..
        }) => (trans_a, trans_b),
        _ => (false, false),
    };
    let inputs: Vec<String> = node
        .inputs
        .iter()
        .enumerate()
        .map(|(k, &j)| {
            let t = (k == 0 && ta) || (k == 1 && tb);
            format!("{}{}", dims(plan.shape(j)), if t { "ᵀ" } else { "" })
        })
        .collect();
    let mut out = if node.op.is_update() {
        "(in place)".to_string()
    } else {
        dims(&node.shape)
    };
    for &e in &plan.extras[i] {
        let _ = write!(out, ", {}", dims(plan.shape(e)));
    }
    format!("{} → {out}", inputs.join(" · "))
}

// ---- ceilings -----------------------------------------------------------------------------------

/// Measures the CPU backend's ceilings: a 1024³ product with its gemm, and a 64 MiB copy over
/// all rayon threads. Takes well under a second.
pub fn calibrate_cpu() -> Ceilings {
    let n = sinter_ops::timing::CALIBRATION_MATMUL;
    let s = MatmulShape::new(1, n, n, n);
    let (a, b) = (vec![0.5f32; n * n], vec![0.25f32; n * n]);
    let mut c = vec![0f32; n * n];
    let matmul_s = best_of(4, || cpu::matmul::matmul(&a, &b, &mut c, &s));
    let len = (sinter_ops::timing::CALIBRATION_COPY_BYTES / 4) as usize;
    let src = vec![1f32; len];
    let mut dst = vec![0f32; len];
    let copy_s = best_of(5, || {
        dst.par_chunks_mut(1 << 16)
            .zip(src.par_chunks(1 << 16))
            .for_each(|(d, s)| d.copy_from_slice(s));
    });
    Ceilings {
        gflops: s.flops() as f64 / matmul_s / 1e9,
        gbps: 2.0 * (4 * len) as f64 / copy_s / 1e9,
    }
}

/// The fastest of `rounds` runs of `f` after one warm-up, in seconds.
fn best_of(rounds: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
        .max(1e-12)
}

/// Measures the ceilings of `backend`'s device: [`calibrate_cpu`] on the CPU backend, the
/// adapter's own calibration on a GPU (a second or so either way; nothing is cached here).
pub fn calibrate(backend: &Backend) -> crate::Result<Ceilings> {
    Ok(match backend {
        Backend::Cpu(_) => calibrate_cpu(),
        #[cfg(feature = "gpu")]
        Backend::Gpu(g) => sinter_device::profiler::calibrate(&g.gpu)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{ConvConfig, GraphBuilder};

    #[test]
    fn a_matmul_costs_2mnk_and_a_conv_2_n_o_oh_ow_c_kh_kw() {
        let g = GraphBuilder::new();
        let x = g.input("x", &[8, 3]);
        let w = g.input("w", &[3, 5]);
        let y = x.matmul(&w).unwrap();
        let img = g.input("img", &[2, 3, 6, 6]);
        let k = g.input("k", &[4, 3, 3, 3]);
        let z = img.conv2d(&k, ConvConfig::padded(1)).unwrap();
        let out = y.sum_all().add(&z.sum_all()).unwrap();
        let plan = Plan::new(&g.finish(), &[out.id]).unwrap();
        let (f, b) = node_cost(&plan, y.id);
        assert_eq!(f, 2 * 8 * 5 * 3);
        assert_eq!(b, 4 * (8 * 3 + 3 * 5 + 8 * 5));
        let (f, _) = node_cost(&plan, z.id);
        assert_eq!(f, 2 * 2 * 4 * 6 * 6 * 3 * 3 * 3);
        assert_eq!(node_shapes(&plan, y.id), "[8, 3] · [3, 5] → [8, 5]");
    }
}
