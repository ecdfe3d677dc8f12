//! The tuner's trials: each candidate variant runs once on random inputs of the shape met, is
//! checked against a CPU reference at sampled outputs (f64), and only then is timed.
//!
//! Timing uses the profiler ([`Gpu::run_timed`]) with the best method the device offers:
//! timestamp queries where it has them, else the host clock around a submit and wait. The
//! checked run is the warm-up; then 3 to 9 timed runs (fewer for slow kernels: about 100 ms per
//! candidate), and the median is kept. The launcher's static choice is tried first; a candidate
//! whose checked run took over 4× the best median so far (plus 5 ms for the submit and readback
//! around it), and again when run once more (the first run may include the pipeline's compile),
//! cannot win and is not timed: its host-clock time of that run is kept instead, since a slow
//! variant on a large shape costs a second a run on a software adapter.

use super::Tuner;
use crate::gpu::{Dispatch, Gpu};
use crate::kernels::conv::{conv2d_with_tm, Conv2dShape, ConvPass};
use crate::kernels::matmul::{matmul_with, MatmulShape, MatmulVariant};
use crate::kernels::reduce::{reduce_with, ReduceKernel, ReduceOp, ReduceShape};
use crate::profiler::best_timing;
use std::collections::BTreeMap;
use std::time::Instant;

/// Wall time the timed runs of one candidate aim at, in seconds.
const TARGET_S: f64 = 0.1;
/// A checked run slower than `HOPELESS · best + HOPELESS_SLACK_US` is not timed.
const HOPELESS: f64 = 4.0;
const HOPELESS_SLACK_US: f64 = 5e3;
/// How much faster than the static rule's choice another variant must be to replace it (0.1: its
/// median under 1/1.1 of the static choice's).
pub(super) const CLEAR_WIN: f64 = 0.1;
/// Outputs compared with the reference per candidate (evenly spread, and the last).
const SAMPLES: usize = 48;
/// A sampled output is right when within `ATOL + RTOL · Σ|terms|` of the f64 reference: f32
/// summation of k terms errs by far less, a wrong index or a lost term by far more.
const ATOL: f64 = 1e-5;
const RTOL: f64 = 2e-4;

/// Times variants for one key, counting each timed run on its tuner.
pub(super) struct Timer<'a> {
    pub(super) tuner: &'a Tuner,
    pub(super) key: &'a str,
}

/// What the trials found: the median time of each right variant, and why the others lost.
#[derive(Default)]
pub(super) struct Measured {
    pub(super) median_us: BTreeMap<String, f64>,
    pub(super) rejected: BTreeMap<String, String>,
}

/// The reference at one sampled output: its index, its value, and Σ|terms| (the tolerance's scale).
struct Expected {
    index: usize,
    value: f64,
    scale: f64,
}

impl Measured {
    /// The fastest variant that was right, except that the static rule's choice (`preferred`,
    /// when it was right) is kept unless another is faster by more than [`CLEAR_WIN`]: on a
    /// loaded machine medians of a few runs swing by that much, and a choice kept on disk should
    /// not be a coin toss between equals.
    pub(super) fn best(&self, preferred: Option<&str>) -> Option<String> {
        let (fastest, &time) = self.median_us.iter().min_by(|a, b| a.1.total_cmp(b.1))?;
        match preferred.and_then(|p| self.median_us.get_key_value(p)) {
            Some((name, &kept)) if kept <= time * (1.0 + CLEAR_WIN) => Some(name.clone()),
            _ => Some(fastest.clone()),
        }
    }

    fn reject_all(&mut self, names: impl IntoIterator<Item = String>, why: String) {
        for name in names {
            self.rejected.insert(name, why.clone());
        }
    }

    /// Runs `d` (writing `out`, `len` values) once and checks it against `want`; if right, times
    /// it and keeps its median.
    fn trial(
        &mut self,
        gpu: &Gpu,
        timer: &mut Timer<'_>,
        name: &str,
        d: &Dispatch,
        (out, len): (&wgpu::Buffer, usize),
        want: &[Expected],
    ) {
        // NaN where the samples are read, so an output the kernel never writes is caught.
        for e in want {
            gpu.queue
                .write_buffer(out, e.index as u64 * 4, bytemuck::bytes_of(&f32::NAN));
        }
        let started = Instant::now();
        let got = match run_and_gather(gpu, d, (out, len), want) {
            Ok(got) => got,
            Err(e) => {
                self.rejected
                    .insert(name.to_string(), format!("its run failed: {e}"));
                return;
            }
        };
        let warm_us = started.elapsed().as_secs_f64() * 1e6;
        if let Err(why) = check(&got, want) {
            self.rejected.insert(name.to_string(), why);
            return;
        }
        let best = self
            .median_us
            .values()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let hopeless = |us: f64| us > HOPELESS * best + HOPELESS_SLACK_US;
        // A software adapter compiles a pipeline at its first dispatch, inside the checked run:
        // a run that looks hopeless is timed once more before it is judged.
        let mut warm_us = warm_us;
        if hopeless(warm_us) {
            let again = Instant::now();
            if let Err(e) = run_and_gather(gpu, d, (out, len), want) {
                self.rejected
                    .insert(name.to_string(), format!("its second run failed: {e}"));
                return;
            }
            warm_us = again.elapsed().as_secs_f64() * 1e6;
        }
        if hopeless(warm_us) {
            self.median_us.insert(name.to_string(), warm_us);
            return;
        }
        let reps = ((TARGET_S * 1e6 / warm_us.max(1.0)) as usize).clamp(3, 9);
        timer.tuner.note_timed(timer.key, name);
        match gpu.run_timed(&vec![d; reps], &[], best_timing(gpu)) {
            Ok(run) => {
                let mut us: Vec<f64> = run.dispatches.iter().map(|t| t.duration_ns / 1e3).collect();
                us.sort_by(f64::total_cmp);
                match us.get(us.len() / 2) {
                    Some(&median) => {
                        self.median_us.insert(name.to_string(), median);
                    }
                    None => {
                        self.rejected
                            .insert(name.to_string(), "its timed run measured nothing".into());
                    }
                }
            }
            Err(e) => {
                self.rejected
                    .insert(name.to_string(), format!("its timed run failed: {e}"));
            }
        }
    }
}

/// Runs `d` and reads back only the sampled outputs of `out` (`len` values), copied into a
/// small buffer first: a large output (a vocabulary's logits) is never read whole, and no
/// staging buffer of its size is left in the device's staging pool.
fn run_and_gather(
    gpu: &Gpu,
    d: &Dispatch,
    (out, len): (&wgpu::Buffer, usize),
    want: &[Expected],
) -> crate::Result<Vec<f32>> {
    let gather = scratch(gpu, "tuning samples", None, want.len())?;
    let mut encoder = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("sinter tuning"),
        });
    gpu.record(&mut encoder, &[d]);
    for (i, e) in want.iter().enumerate() {
        assert!(e.index < len, "sample {} past the output's {len}", e.index);
        encoder.copy_buffer_to_buffer(out, e.index as u64 * 4, &gather, i as u64 * 4, Some(4));
    }
    Ok(gpu
        .finish_and_read(encoder, &[(&gather, want.len())])?
        .pop()
        .unwrap_or_default())
}

/// Compares the sampled outputs (`got[i]` is output `want[i].index`) with the reference; the
/// first wrong one is the reason.
fn check(got: &[f32], want: &[Expected]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{} sampled values read, {} expected",
            got.len(),
            want.len()
        ));
    }
    for (&g, e) in got.iter().zip(want) {
        let g = g as f64;
        if g.is_nan() || (g - e.value).abs() > ATOL + RTOL * e.scale {
            return Err(format!(
                "output {} = {g} where the CPU reference gives {}",
                e.index, e.value
            ));
        }
    }
    Ok(())
}

/// A storage buffer of the trial's own, holding `data` (or `len` zeros): not from the device's
/// pool, so tuning leaves neither the pool's buffers nor its counters changed (the planner's
/// memory figures stay exact), and the buffer is freed when dropped. Its size is a multiple of
/// 16 bytes, as the vec4 views of the matrix product need.
pub(super) fn scratch(
    gpu: &Gpu,
    label: &str,
    data: Option<&[f32]>,
    len: usize,
) -> crate::Result<wgpu::Buffer> {
    let bytes = (len.max(1) as u64 * 4).next_multiple_of(16);
    gpu.check_binding(label, bytes)?;
    let buffer = crate::gpu::scoped(&gpu.device, label, || {
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    })?;
    if let Some(data) = data {
        gpu.write(&buffer, data);
    }
    Ok(buffer)
}

/// `len` values in [−1, 1), the same for the same `seed`.
pub(super) fn values(len: usize, seed: u64) -> Vec<f32> {
    (0..len as u64)
        .map(|i| {
            // splitmix64 of (seed, i): cheap, and no pattern a wrong index could hide behind.
            let mut z = i
                .wrapping_add(seed << 40)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// The outputs to check among `len`: evenly spread, and the last.
fn samples(len: usize) -> Vec<usize> {
    let mut at: Vec<usize> = (0..SAMPLES).map(|i| i * len / SAMPLES).collect();
    at.push(len - 1);
    at.dedup();
    at
}

/// Σ of `terms` and Σ of their magnitudes.
fn dot(terms: impl Iterator<Item = f64>) -> (f64, f64) {
    terms.fold((0.0, 0.0), |(s, m), t| (s + t, m + t.abs()))
}

/// Trials of the matrix-product `candidates` on `s`.
pub(super) fn matmul(
    gpu: &Gpu,
    timer: &mut Timer<'_>,
    s: &MatmulShape,
    candidates: &[MatmulVariant],
) -> Measured {
    let mut m = Measured::default();
    let names = || candidates.iter().map(|v| v.entry().to_string());
    let (a, b) = (values(s.a_len(), 1), values(s.b_len(), 2));
    let bufs = (|| {
        Ok::<_, crate::DeviceError>((
            scratch(gpu, "tuning a", Some(&a), a.len())?,
            scratch(gpu, "tuning b", Some(&b), b.len())?,
            scratch(gpu, "tuning c", None, s.c_len())?,
        ))
    })();
    let (ab, bb, cb) = match bufs {
        Ok(bufs) => bufs,
        Err(e) => {
            m.reject_all(names(), format!("no buffers for the trial: {e}"));
            return m;
        }
    };
    // a: [batch | 1, m, k] (stored [.., k, m] when trans_a), b: [batch | 1, k, n] (stored
    // [.., n, k] when trans_b), c: [batch, m, n]
    let want: Vec<Expected> = samples(s.c_len())
        .into_iter()
        .map(|index| {
            let (bi, i, j) = (index / (s.m * s.n), index / s.n % s.m, index % s.n);
            let (a0, b0) = (bi * s.a_batch_stride, bi * s.b_batch_stride);
            let (value, scale) = dot((0..s.k).map(|p| {
                let x = if s.trans_a {
                    a[a0 + p * s.m + i]
                } else {
                    a[a0 + i * s.k + p]
                };
                let y = if s.trans_b {
                    b[b0 + j * s.k + p]
                } else {
                    b[b0 + p * s.n + j]
                };
                x as f64 * y as f64
            }));
            Expected {
                index,
                value,
                scale,
            }
        })
        .collect();
    for &v in candidates {
        match matmul_with(gpu, v, &ab, &bb, &cb, s, "tuning") {
            Ok(d) => m.trial(gpu, timer, v.entry(), &d, (&cb, s.c_len()), &want),
            Err(e) => {
                m.rejected
                    .insert(v.entry().to_string(), format!("could not be prepared: {e}"));
            }
        }
    }
    m
}

/// Trials of a convolution `pass` on `s` at each `TM` of `candidates`.
pub(super) fn conv(
    gpu: &Gpu,
    timer: &mut Timer<'_>,
    pass: ConvPass,
    s: &Conv2dShape,
    candidates: &[u32],
) -> Measured {
    use crate::kernels::conv::tm_variant;
    let mut m = Measured::default();
    let names = || candidates.iter().map(|&tm| tm_variant(pass.entry(), tm));
    let [oh, ow] = s.out_hw().unwrap_or([0, 0]);
    let (xv, wv, dyv) = (
        values(s.x_len(), 3),
        values(s.w_len(), 4),
        values(s.y_len(), 5),
    );
    let (x, w, dy) = (&xv[..], &wv[..], &dyv[..]);
    let out_len = match pass {
        ConvPass::Forward => s.y_len(),
        ConvPass::GradInput => s.x_len(),
        ConvPass::GradWeight => s.w_len(),
    };
    let bufs = (|| {
        let (first, second) = match pass {
            ConvPass::Forward => (x, w),
            ConvPass::GradInput => (dy, w),
            ConvPass::GradWeight => (x, dy),
        };
        Ok::<_, crate::DeviceError>([
            scratch(gpu, "tuning input", Some(first), first.len())?,
            scratch(gpu, "tuning input", Some(second), second.len())?,
            scratch(gpu, "tuning output", None, out_len)?,
        ])
    })();
    let bufs = match bufs {
        Ok(bufs) => bufs,
        Err(e) => {
            m.reject_all(names(), format!("no buffers for the trial: {e}"));
            return m;
        }
    };
    // x: [N, C, H, W], w: [O, C, KH, KW], y and dy: [N, O, OH, OW]
    let (c, h, wd, o, kh, kw) = (s.c_in, s.h, s.w, s.c_out, s.kh, s.kw);
    let xi = |n: usize, ci: usize, iy: usize, ix: usize| ((n * c + ci) * h + iy) * wd + ix;
    let wi = |oi: usize, ci: usize, ky: usize, kx: usize| ((oi * c + ci) * kh + ky) * kw + kx;
    let yi = |n: usize, oi: usize, oy: usize, ox: usize| ((n * o + oi) * oh + oy) * ow + ox;
    // The input pixel an output pixel's tap reads, if inside the image.
    let input_at = |out: usize, tap: usize, axis: usize, size: usize| {
        (out * s.stride[axis] + tap * s.dilation[axis])
            .checked_sub(s.pad[axis])
            .filter(|&i| i < size)
    };
    // The output pixel whose tap reads input pixel `i`, if any.
    let output_at = |i: usize, tap: usize, axis: usize, size: usize| {
        (i + s.pad[axis])
            .checked_sub(tap * s.dilation[axis])
            .filter(|t| t % s.stride[axis] == 0)
            .map(|t| t / s.stride[axis])
            .filter(|&out| out < size)
    };
    let reference = |index: usize| -> (f64, f64) {
        let taps = || (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (ky, kx)));
        match pass {
            ConvPass::Forward => {
                let (n, oi, oy, ox) = (
                    index / (o * oh * ow),
                    index / (oh * ow) % o,
                    index / ow % oh,
                    index % ow,
                );
                dot((0..c).flat_map(|ci| {
                    taps().filter_map(move |(ky, kx)| {
                        let (iy, ix) = (input_at(oy, ky, 0, h)?, input_at(ox, kx, 1, wd)?);
                        Some(x[xi(n, ci, iy, ix)] as f64 * w[wi(oi, ci, ky, kx)] as f64)
                    })
                }))
            }
            ConvPass::GradInput => {
                let (n, ci, iy, ix) = (
                    index / (c * h * wd),
                    index / (h * wd) % c,
                    index / wd % h,
                    index % wd,
                );
                dot((0..o).flat_map(|oi| {
                    taps().filter_map(move |(ky, kx)| {
                        let (oy, ox) = (output_at(iy, ky, 0, oh)?, output_at(ix, kx, 1, ow)?);
                        Some(dy[yi(n, oi, oy, ox)] as f64 * w[wi(oi, ci, ky, kx)] as f64)
                    })
                }))
            }
            ConvPass::GradWeight => {
                let (oi, ci, ky, kx) = (
                    index / (c * kh * kw),
                    index / (kh * kw) % c,
                    index / kw % kh,
                    index % kw,
                );
                let pixels = (0..oh).flat_map(|oy| (0..ow).map(move |ox| (oy, ox)));
                dot((0..s.n).flat_map(|n| {
                    pixels.clone().filter_map(move |(oy, ox)| {
                        let (iy, ix) = (input_at(oy, ky, 0, h)?, input_at(ox, kx, 1, wd)?);
                        Some(dy[yi(n, oi, oy, ox)] as f64 * x[xi(n, ci, iy, ix)] as f64)
                    })
                }))
            }
        }
    };
    let want: Vec<Expected> = samples(out_len)
        .into_iter()
        .map(|index| {
            let (value, scale) = reference(index);
            Expected {
                index,
                value,
                scale,
            }
        })
        .collect();
    let [b0, b1, out] = &bufs;
    for &tm in candidates {
        let name = tm_variant(pass.entry(), tm);
        match conv2d_with_tm(gpu, pass, tm, [b0, b1, out], s, "tuning") {
            Ok(d) => m.trial(gpu, timer, &name, &d, (out, out_len), &want),
            Err(e) => {
                m.rejected
                    .insert(name, format!("could not be prepared: {e}"));
            }
        }
    }
    m
}

/// Trials of the rows (`false`) and tree (`true`) reductions among `candidates` on `s`.
pub(super) fn reduce(
    gpu: &Gpu,
    timer: &mut Timer<'_>,
    op: ReduceOp,
    s: &ReduceShape,
    candidates: &[ReduceKernel],
) -> Measured {
    let mut m = Measured::default();
    let x = values(s.input_len(), 6);
    let bufs = (|| {
        Ok::<_, crate::DeviceError>((
            scratch(gpu, "tuning x", Some(&x), x.len())?,
            scratch(gpu, "tuning y", None, s.output_len())?,
        ))
    })();
    let (xb, yb) = match bufs {
        Ok(bufs) => bufs,
        Err(e) => {
            m.reject_all(
                candidates.iter().map(|k| k.entry().to_string()),
                format!("no buffers for the trial: {e}"),
            );
            return m;
        }
    };
    // x: [outer, n, inner], y: [outer, inner]
    let want: Vec<Expected> = samples(s.output_len())
        .into_iter()
        .map(|index| {
            let (o, i) = (index / s.inner, index % s.inner);
            let along = (0..s.n).map(|p| x[(o * s.n + p) * s.inner + i] as f64);
            let (sum, scale) = dot(along.clone());
            let (value, scale) = match op {
                ReduceOp::Sum => (sum, scale),
                ReduceOp::Mean => (sum / s.n as f64, scale / s.n as f64),
                // Exact: the largest element, or the index of the first one.
                ReduceOp::Max => (along.fold(f64::MIN, f64::max), 0.0),
                ReduceOp::Argmax => {
                    let (first, _) = along.enumerate().fold((0, f64::MIN), |(bi, bv), (p, v)| {
                        if v > bv {
                            (p, v)
                        } else {
                            (bi, bv)
                        }
                    });
                    (first as f64, 0.0)
                }
            };
            Expected {
                index,
                value,
                scale,
            }
        })
        .collect();
    for &kernel in candidates {
        match reduce_with(gpu, kernel, &xb, &yb, op, s, "tuning") {
            Ok(d) => m.trial(gpu, timer, kernel.entry(), &d, (&yb, s.output_len()), &want),
            Err(e) => {
                m.rejected.insert(
                    kernel.entry().to_string(),
                    format!("could not be prepared: {e}"),
                );
            }
        }
    }
    m
}
