//! Per-dispatch GPU timing and the adapter's measured ceilings. Timestamps are written between
//! dispatches inside one compute pass where the adapter allows it, else around one pass per
//! dispatch; an adapter with no timestamps at all is timed from the host, and says so.

use crate::error::{DeviceError, Result};
use crate::gpu::{Dispatch, Gpu};
use crate::kernels::{elementwise, matmul};
use std::time::{Duration, Instant};

pub use sinter_ops::timing::{Ceilings, TimingMethod, CALIBRATION_COPY_BYTES, CALIBRATION_MATMUL};

/// The device feature `method` needs (none for host timing).
pub fn timing_feature(method: TimingMethod) -> wgpu::Features {
    match method {
        TimingMethod::InsidePasses => {
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
        }
        TimingMethod::PassPerDispatch => wgpu::Features::TIMESTAMP_QUERY,
        TimingMethod::HostTimed => wgpu::Features::empty(),
    }
}

/// Whether `gpu`'s device was opened with the feature `method` needs.
pub fn timing_supported(method: TimingMethod, gpu: &Gpu) -> bool {
    gpu.device.features().contains(timing_feature(method))
}

/// The most faithful timing method `gpu` supports.
pub fn best_timing(gpu: &Gpu) -> TimingMethod {
    TimingMethod::resolve(None, |m| timing_supported(m, gpu)).0
}

/// When one dispatch ran: nanoseconds from the start of the run's first dispatch, and how long.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DispatchTime {
    /// Start, in nanoseconds after the first dispatch of the run began.
    pub start_ns: f64,
    /// Run time of this dispatch alone, in nanoseconds.
    pub duration_ns: f64,
}

/// A host-side phase of a timed run (`record`, `submit`, `wait`, `readback`).
#[derive(Clone, Debug, PartialEq)]
pub struct HostSpan {
    /// The phase: `record`, `submit`, `wait` or `readback`.
    pub name: &'static str,
    /// From [`TimedRun::started`].
    pub start: Duration,
    /// How long the phase took on the host clock.
    pub duration: Duration,
}

/// What [`Gpu::run_timed`] measured, with the values it read back.
#[derive(Clone, Debug)]
pub struct TimedRun {
    /// How the dispatches were timed (timestamps inside passes, a pass each, or the host clock).
    pub method: TimingMethod,
    /// The host clock when the run began: the origin of `host` and `gpu_origin`.
    pub started: Instant,
    /// The values of the requested readbacks, one vector per `(buffer, count)`, in order.
    pub outputs: Vec<Vec<f32>>,
    /// One entry per dispatch, in the order given.
    pub dispatches: Vec<DispatchTime>,
    /// The host-side phases of the run, in the order they happened.
    pub host: Vec<HostSpan>,
    /// Where the first dispatch's start lies on the host timeline. GPU clocks share no epoch with
    /// the host: this is the end of the submit, moved earlier if the kernels would otherwise end
    /// after the host saw the work finish.
    pub gpu_origin: Duration,
}

/// Timestamp queries one query set may hold (`wgpu::QUERY_SET_MAX_QUERIES`).
const MAX_QUERIES: usize = wgpu::QUERY_SET_MAX_QUERIES as usize;

impl Gpu {
    /// Runs `dispatches` like [`Gpu::run`] and times each one with `method`, then reads back
    /// `reads` (buffer, f32 count). Timestamps are resolved after the step and read back with the
    /// outputs, so the step's own work is unchanged apart from the timestamp writes.
    pub fn run_timed(
        &self,
        dispatches: &[&Dispatch],
        reads: &[(&wgpu::Buffer, usize)],
        method: TimingMethod,
    ) -> Result<TimedRun> {
        if !timing_supported(method, self) {
            return Err(DeviceError::Gpu(format!(
                "timing method '{method}' needs {:?}, which {} does not offer",
                timing_feature(method),
                self.report.name
            )));
        }
        match method {
            TimingMethod::HostTimed => self.run_host_timed(dispatches, reads),
            _ => self.run_with_timestamps(dispatches, reads, method),
        }
    }

    fn run_with_timestamps(
        &self,
        dispatches: &[&Dispatch],
        reads: &[(&wgpu::Buffer, usize)],
        method: TimingMethod,
    ) -> Result<TimedRun> {
        let started = Instant::now();
        let inside = method == TimingMethod::InsidePasses;
        // Inside a pass: one timestamp before the first dispatch and one after each.
        // Per pass: a begin and an end timestamp per dispatch.
        let per_chunk = if inside {
            MAX_QUERIES - 1
        } else {
            MAX_QUERIES / 2
        };
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("sinter profiled step"),
            });
        let mut resolved: Vec<(wgpu::Buffer, usize)> = Vec::new();
        for chunk in dispatches.chunks(per_chunk.max(1)) {
            let count = if inside {
                chunk.len() + 1
            } else {
                2 * chunk.len()
            };
            let set = self.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("sinter profiler"),
                ty: wgpu::QueryType::Timestamp,
                count: count as u32,
            });
            if inside {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("sinter step"),
                    timestamp_writes: None,
                });
                pass.write_timestamp(&set, 0);
                for (j, d) in chunk.iter().enumerate() {
                    d.encode(&mut pass);
                    pass.write_timestamp(&set, j as u32 + 1);
                }
            } else {
                for (j, d) in chunk.iter().enumerate() {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(&d.tag),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: &set,
                            beginning_of_pass_write_index: Some(2 * j as u32),
                            end_of_pass_write_index: Some(2 * j as u32 + 1),
                        }),
                    });
                    d.encode(&mut pass);
                }
            }
            let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("sinter timestamps"),
                size: (count * wgpu::QUERY_SIZE as usize) as u64,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            encoder.resolve_query_set(&set, 0..count as u32, &buffer, 0);
            resolved.push((buffer, count));
        }
        let recorded = started.elapsed();
        self.submit_profiled(encoder)?;
        let submitted = started.elapsed();
        self.wait_idle()?;
        let waited = started.elapsed();
        // Outputs and timestamps come back together; each timestamp is two f32-sized words.
        let mut all_reads: Vec<(&wgpu::Buffer, usize)> = reads.to_vec();
        all_reads.extend(resolved.iter().map(|(b, count)| (b, 2 * count)));
        let readback = self.device.create_command_encoder(&Default::default());
        let mut values = self.finish_and_read(readback, &all_reads)?;
        let stamps = values.split_off(reads.len());
        let read = started.elapsed();

        let period = self.queue.get_timestamp_period() as f64;
        let ticks: Vec<Vec<u64>> = stamps
            .iter()
            .map(|words| {
                bytemuck::cast_slice::<f32, u32>(words)
                    .chunks_exact(2)
                    .map(|w| w[0] as u64 | (w[1] as u64) << 32)
                    .collect()
            })
            .collect();
        let origin = ticks.first().and_then(|t| t.first()).copied().unwrap_or(0);
        // Timestamps are not promised to be monotonic across passes: a negative span reads as 0.
        let ns = |from: u64, to: u64| to.saturating_sub(from) as f64 * period;
        let mut times = Vec::with_capacity(dispatches.len());
        for t in &ticks {
            if inside {
                times.extend(t.windows(2).map(|w| DispatchTime {
                    start_ns: ns(origin, w[0]),
                    duration_ns: ns(w[0], w[1]),
                }));
            } else {
                times.extend(t.chunks_exact(2).map(|w| DispatchTime {
                    start_ns: ns(origin, w[0]),
                    duration_ns: ns(w[0], w[1]),
                }));
            }
        }
        assert_eq!(times.len(), dispatches.len(), "one time per dispatch");
        let gpu_span = times
            .last()
            .map_or(0.0, |t| t.start_ns + t.duration_ns)
            .max(0.0);
        let gpu_origin =
            submitted.min(waited.saturating_sub(Duration::from_nanos(gpu_span as u64)));
        Ok(TimedRun {
            method,
            started,
            outputs: values,
            dispatches: times,
            host: vec![
                span("record", Duration::ZERO, recorded),
                span("submit", recorded, submitted),
                span("wait", submitted, waited),
                span("readback", waited, read),
            ],
            gpu_origin,
        })
    }

    fn run_host_timed(
        &self,
        dispatches: &[&Dispatch],
        reads: &[(&wgpu::Buffer, usize)],
    ) -> Result<TimedRun> {
        let started = Instant::now();
        let mut times = Vec::with_capacity(dispatches.len());
        let mut host = Vec::with_capacity(dispatches.len() + 1);
        for d in dispatches {
            let begin = started.elapsed();
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some(&d.tag),
                });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(&d.tag),
                    timestamp_writes: None,
                });
                d.encode(&mut pass);
            }
            self.submit_profiled(encoder)?;
            self.wait_idle()?;
            let end = started.elapsed();
            host.push(span("submit + wait", begin, end));
            times.push(DispatchTime {
                start_ns: (begin - host[0].start).as_nanos() as f64,
                duration_ns: (end - begin).as_nanos() as f64,
            });
        }
        let before_read = started.elapsed();
        let readback = self.device.create_command_encoder(&Default::default());
        let outputs = self.finish_and_read(readback, reads)?;
        host.push(span("readback", before_read, started.elapsed()));
        Ok(TimedRun {
            method: TimingMethod::HostTimed,
            started,
            outputs,
            dispatches: times,
            gpu_origin: host.first().map_or(Duration::ZERO, |h| h.start),
            host,
        })
    }

    fn submit_profiled(&self, encoder: wgpu::CommandEncoder) -> Result<()> {
        self.check_fault()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        self.queue.submit([encoder.finish()]);
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        match validation.or(oom) {
            Some(e) => Err(DeviceError::Gpu(format!("profiled submit: {e}"))),
            None => Ok(()),
        }
    }

    fn wait_idle(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| DeviceError::Gpu(format!("waiting for the GPU: {e}")))
    }
}

fn span(name: &'static str, from: Duration, to: Duration) -> HostSpan {
    HostSpan {
        name,
        start: from,
        duration: to.saturating_sub(from),
    }
}

/// Measures `gpu`'s ceilings: a 1024³ matrix product with the kernel the backend uses for it,
/// and the faster of a buffer-to-buffer copy and a copy shader over 64 MiB. Takes about a
/// second on a software adapter.
pub fn calibrate(gpu: &Gpu) -> Result<Ceilings> {
    let n = CALIBRATION_MATMUL;
    let shape = matmul::MatmulShape::new(1, n, n, n);
    let a = gpu.upload("calibration a", &vec![0.5f32; n * n])?;
    let b = gpu.upload("calibration b", &vec![0.25f32; n * n])?;
    let c = gpu.buffer("calibration c", n * n)?;
    let mm = matmul::matmul(gpu, &a, &b, &c, &shape, "calibration · matmul")?;
    let matmul_s = best_seconds(gpu, &|e| gpu.record(e, &[&mm]))?;
    log::debug!("calibration: {n}³ matmul {:.3} ms", matmul_s * 1e3);

    let bytes = CALIBRATION_COPY_BYTES.min(gpu.max_binding() / 2) & !255;
    let len = (bytes / 4) as usize;
    let src = gpu.buffer("calibration src", len)?;
    let dst = gpu.buffer("calibration dst", len)?;
    let copy_s = best_seconds(gpu, &|e| {
        e.copy_buffer_to_buffer(&src, 0, &dst, 0, Some(bytes));
    })?;
    let shader = elementwise::affine(gpu, &src, &dst, len, 1.0, 0.0, "calibration · copy")?;
    let shader_s = best_seconds(gpu, &|e| gpu.record(e, &[&shader]))?;
    log::debug!(
        "calibration: {bytes} B copy {:.3} ms, copy shader {:.3} ms",
        copy_s * 1e3,
        shader_s * 1e3
    );
    for buf in [a, b, c, src, dst] {
        gpu.recycle(buf);
    }
    let moved = 2.0 * bytes as f64;
    Ok(Ceilings {
        gflops: shape.flops() as f64 / matmul_s / 1e9,
        gbps: (moved / copy_s).max(moved / shader_s) / 1e9,
    })
}

/// Seconds per repetition of what `record` records: the best of three submissions of as many
/// repetitions as fit in about 0.1 s, because interference only ever makes a round slower.
fn best_seconds(gpu: &Gpu, record: &dyn Fn(&mut wgpu::CommandEncoder)) -> Result<f64> {
    let timed = |reps: usize| -> Result<f64> {
        let start = Instant::now();
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        for _ in 0..reps {
            record(&mut encoder);
        }
        gpu.submit_profiled(encoder)?;
        gpu.wait_idle()?;
        Ok(start.elapsed().as_secs_f64() / reps as f64)
    };
    // The first run compiles and warms up; it also sizes the rounds.
    let once = timed(1)?;
    let reps = ((0.1 / once.max(1e-7)) as usize).clamp(1, 200);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        best = best.min(timed(reps)?);
    }
    Ok(best.max(1e-12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_methods_parse_as_the_command_line_spells_them() {
        for m in [
            TimingMethod::InsidePasses,
            TimingMethod::PassPerDispatch,
            TimingMethod::HostTimed,
        ] {
            assert_eq!(TimingMethod::parse(&m.to_string()), Some(m));
        }
        assert_eq!(TimingMethod::parse("sometimes"), None);
        assert!(TimingMethod::HostTimed.label().contains("host-timed"));
    }

    #[test]
    fn an_adapter_without_timestamps_falls_back_to_host_timing_with_a_note() {
        use TimingMethod::*;
        let none = |m: TimingMethod| m == HostTimed;
        assert_eq!(TimingMethod::resolve(None, none), (HostTimed, None));
        let (m, note) = TimingMethod::resolve(Some(InsidePasses), none);
        assert_eq!(m, HostTimed);
        let note = note.expect("a note");
        assert!(
            note.contains("'inside'") && note.contains("host-timed"),
            "{note}"
        );
        // Timestamps between passes only: `inside` falls back to `pass`; `pass` is kept.
        let passes = |m: TimingMethod| m != InsidePasses;
        assert_eq!(TimingMethod::resolve(None, passes), (PassPerDispatch, None));
        assert_eq!(
            TimingMethod::resolve(Some(InsidePasses), passes).0,
            PassPerDispatch
        );
        assert_eq!(
            TimingMethod::resolve(Some(PassPerDispatch), passes),
            (PassPerDispatch, None)
        );
    }
}
