//! Profiles of training steps: every kernel timed and tagged in model terms with its shapes, FLOPs
//! and bytes, and the measured ceilings of a backend's device. Tables, traces and the ceilings
//! cache are presentation: they live in the `sinter` package (`sinter::report`).

use crate::backend::Backend;
use crate::cpu;
use crate::lower::Launch;
use crate::plan::Plan;
use rayon::prelude::*;
use sinter_ops::matmul::MatmulShape;
use sinter_ops::Kernel;
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
    /// The plan launch it belongs to (index into `Plan::launches`); a GPU launch may take
    /// several dispatches, whose FLOPs and bytes sum to the launch's cost.
    pub launch: usize,
    /// Floating-point operations, from the one cost model (`sinter_ops::Kernel::cost`).
    pub flops: u64,
    /// Bytes moved, each value read or written counted once.
    pub bytes: u64,
    /// From the start of the step.
    pub start_us: f64,
    /// How long it ran, in microseconds.
    pub duration_us: f64,
}

/// A host-side phase of a step (feed, record, submit, wait, readback …).
#[derive(Clone, Debug, PartialEq)]
pub struct HostEvent {
    /// The phase: `feed`, `record`, `submit`, `wait`, `readback` …
    pub name: String,
    /// From the start of the step.
    pub start_us: f64,
    /// How long it took, in microseconds.
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
    /// The host-side phases, in the order they ran.
    pub host: Vec<HostEvent>,
}

impl StepProfile {
    /// Sum of the kernel durations.
    pub fn kernel_us(&self) -> f64 {
        self.kernels.iter().map(|k| k.duration_us).sum()
    }

    /// Adds the kernels and host phases of `later`, a run that belongs to the same step (the
    /// next micro-batch of an accumulated step), placed on this step's clock.
    pub fn append(&mut self, later: StepProfile) {
        let offset = later
            .started
            .saturating_duration_since(self.started)
            .as_secs_f64()
            * 1e6;
        self.kernels.extend(later.kernels.into_iter().map(|mut k| {
            k.start_us += offset;
            k
        }));
        self.host.extend(later.host.into_iter().map(|mut h| {
            h.start_us += offset;
            h
        }));
        self.wall_us = offset + later.wall_us;
    }
}

/// How a CPU-backend profile is labelled.
pub const CPU_TIMING: &str = "CPU backend, host clock around each node";

fn dims(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// `[64, 784] · [784, 256] → [64, 256]`: the shapes of a launch's inputs and of its outputs
/// (secondary outputs after a comma); `ᵀ` marks a transposed matrix-product operand.
pub fn launch_shapes(plan: &Plan, launch: &Launch) -> String {
    let node = &plan.nodes[launch.node];
    let (ta, tb) = match &launch.kernel {
        Kernel::MatMul { shape, .. } => (shape.trans_a, shape.trans_b),
        _ => (false, false),
    };
    let inputs: Vec<String> = launch
        .reads
        .iter()
        .enumerate()
        .map(|(k, &j)| {
            let t = (k == 0 && ta) || (k == 1 && tb);
            format!("{}{}", dims(plan.shape(j)), if t { "ᵀ" } else { "" })
        })
        .collect();
    let mut out = if launch.writes.is_empty() {
        "(in place)".to_string()
    } else {
        dims(&node.shape)
    };
    for &e in launch.writes.iter().skip(1) {
        let _ = write!(out, ", {}", dims(plan.shape(e)));
    }
    format!("{} → {out}", inputs.join(" · "))
}

// ---- ceilings -----------------------------------------------------------------------------------

/// Measures the CPU backend's ceilings: a 1024³ product run by the backend's own f32 product
/// (`cpu::matmul`: the `gemm` crate, or OpenBLAS with the `blas` feature, as
/// [`cpu::matmul::gemm_library`] names it), and a 64 MiB copy over all rayon threads; the best
/// of several runs each. Takes well under a second.
pub fn calibrate_cpu() -> Ceilings {
    let n = sinter_ops::timing::CALIBRATION_MATMUL;
    let s = MatmulShape::new(1, n, n, n);
    let (a, b) = (vec![0.5f32; n * n], vec![0.25f32; n * n]);
    let mut c = vec![0f32; n * n];
    let matmul_s = best_of(8, || cpu::matmul::matmul(&a, &b, &mut c, &s));
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
        let launch = |id| plan.launches.iter().find(|l| l.node == id).unwrap();
        let c = launch(y.id).cost();
        assert_eq!(c.flops, 2 * 8 * 5 * 3);
        assert_eq!(c.bytes, 4 * (8 * 3 + 3 * 5 + 8 * 5));
        assert_eq!(launch(z.id).cost().flops, 2 * 2 * 4 * 6 * 6 * 3 * 3 * 3);
        assert_eq!(
            launch_shapes(&plan, launch(y.id)),
            "[8, 3] · [3, 5] → [8, 5]"
        );
    }
}
