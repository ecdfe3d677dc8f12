//! Profiles of training steps: every kernel timed and tagged in model terms with its shapes, FLOPs
//! and bytes; the measured ceilings of a device (cached per device); the report table and traces.

use crate::backend::Backend;
use crate::cpu;
use crate::lower::Launch;
use crate::plan::Plan;
use rayon::prelude::*;
use sinter_ops::matmul::MatmulShape;
use sinter_ops::Kernel;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
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

/// Names the device a backend runs on, for the ceilings cache: the CPU model and thread count,
/// or the adapter's name, API and driver.
pub fn device_key(backend: &Backend) -> String {
    let key = match backend {
        Backend::Cpu(_) => {
            let model = std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("model name"))
                        .and_then(|l| l.split_once(':'))
                        .map(|(_, v)| v.trim().to_string())
                })
                .unwrap_or_else(|| std::env::consts::ARCH.to_string());
            // An unoptimized build computes slower: its ceilings are its own.
            let build = if cfg!(debug_assertions) {
                ", debug build"
            } else {
                ""
            };
            format!(
                "cpu {model} ({} threads{build})",
                rayon::current_num_threads()
            )
        }
        #[cfg(feature = "gpu")]
        Backend::Gpu(g) => {
            let r = &g.gpu.report;
            format!("gpu {} ({:?}, {})", r.name, r.backend, r.driver)
        }
    };
    // One line per device, fields split by tabs.
    key.replace(['\t', '\n', '\r'], " ")
}

/// Overrides the folder of sinter's cache (tests use it to stay out of the user's cache without
/// moving Mesa's shader cache, which also follows `XDG_CACHE_HOME`).
pub const CACHE_DIR_ENV: &str = "SINTER_CACHE_DIR";

/// `$SINTER_CACHE_DIR/ceilings.txt`, else `$XDG_CACHE_HOME/sinter/ceilings.txt`, else
/// `~/.cache/sinter/ceilings.txt`.
pub fn ceilings_cache_file() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let dir = match var(CACHE_DIR_ENV) {
        Some(d) => PathBuf::from(d),
        None => var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))?
            .join("sinter"),
    };
    Some(dir.join("ceilings.txt"))
}

/// The cached ceilings of the device named `key`. The file holds one line per device:
/// `key<TAB>GFLOP/s<TAB>GB/s`.
fn cached(file: &std::path::Path, key: &str) -> Option<Ceilings> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut f = line.split('\t');
        (f.next()? == key).then_some(())?;
        let gflops = f.next()?.parse().ok()?;
        let gbps = f.next()?.parse().ok()?;
        Some(Ceilings { gflops, gbps })
    })
}

/// Replaces the line for `key`; errors are reported as strings because a cache is optional.
fn store(file: &std::path::Path, key: &str, c: &Ceilings) -> std::result::Result<(), String> {
    let old = std::fs::read_to_string(file).unwrap_or_default();
    let mut text: String = old
        .lines()
        .filter(|l| l.split('\t').next() != Some(key))
        .map(|l| format!("{l}\n"))
        .collect();
    let _ = writeln!(text, "{key}\t{:.3}\t{:.3}", c.gflops, c.gbps);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(file, text).map_err(|e| e.to_string())
}

/// Where the ceilings of a report came from.
#[derive(Clone, Debug, PartialEq)]
pub enum CeilingSource {
    Cached(PathBuf),
    /// Measured now and written to the cache.
    Measured(PathBuf),
    /// Measured now; the cache could not be written (the reason).
    Uncached(String),
}

/// The ceilings of `backend`'s device: from the cache unless `refresh`, else measured (a
/// second or so) and cached. A cache that cannot be written is not an error.
pub fn ceilings(backend: &Backend, refresh: bool) -> crate::Result<(Ceilings, CeilingSource)> {
    let key = device_key(backend);
    let file = ceilings_cache_file();
    if !refresh {
        if let Some(c) = file.as_deref().and_then(|f| cached(f, &key)) {
            return Ok((c, CeilingSource::Cached(file.expect("read above"))));
        }
    }
    let measured = match backend {
        Backend::Cpu(_) => calibrate_cpu(),
        #[cfg(feature = "gpu")]
        Backend::Gpu(g) => sinter_device::profiler::calibrate(&g.gpu)?,
    };
    let source = match file {
        None => {
            CeilingSource::Uncached("no cache directory (HOME and XDG_CACHE_HOME unset)".into())
        }
        Some(f) => match store(&f, &key, &measured) {
            Ok(()) => CeilingSource::Measured(f),
            Err(e) => CeilingSource::Uncached(format!("{}: {e}", f.display())),
        },
    };
    Ok((measured, source))
}

// ---- the report table ---------------------------------------------------------------------------

/// One row of the report: a kernel with one tag and shape, summed over its calls.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSummary {
    pub kernel: String,
    pub tag: String,
    pub shapes: String,
    pub calls: usize,
    pub total_us: f64,
    pub flops: u64,
    pub bytes: u64,
}

impl KernelSummary {
    pub fn mean_us(&self) -> f64 {
        self.total_us / self.calls.max(1) as f64
    }

    pub fn gflops(&self) -> f64 {
        self.flops as f64 / (self.total_us * 1e3).max(1e-9)
    }

    pub fn gbps(&self) -> f64 {
        self.bytes as f64 / (self.total_us * 1e3).max(1e-9)
    }
}

/// The kernels of `profiles` grouped by (kernel, tag, shapes), largest total time first.
pub fn summarize(profiles: &[StepProfile]) -> Vec<KernelSummary> {
    let mut rows: Vec<KernelSummary> = Vec::new();
    let mut index: HashMap<(String, String, String), usize> = HashMap::new();
    for k in profiles.iter().flat_map(|p| &p.kernels) {
        let key = (k.kernel.clone(), k.tag.clone(), k.shapes.clone());
        let r = *index.entry(key).or_insert_with(|| {
            rows.push(KernelSummary {
                kernel: k.kernel.clone(),
                tag: k.tag.clone(),
                shapes: k.shapes.clone(),
                calls: 0,
                total_us: 0.0,
                flops: 0,
                bytes: 0,
            });
            rows.len() - 1
        });
        let row = &mut rows[r];
        row.calls += 1;
        row.total_us += k.duration_us;
        row.flops += k.flops;
        row.bytes += k.bytes;
    }
    rows.sort_by(|a, b| b.total_us.total_cmp(&a.total_us));
    rows
}

fn pct(part: f64, whole: f64) -> String {
    if whole > 0.0 && part.is_finite() {
        format!("{:.1}", 100.0 * part / whole)
    } else {
        "-".into()
    }
}

/// The report: one row per kernel (see [`summarize`]) with calls, total and mean time, its share
/// of the kernel time of the profiled steps, GFLOP/s, GB/s and their share of `ceilings`.
pub fn table(profiles: &[StepProfile], ceilings: Option<&Ceilings>) -> String {
    let rows = summarize(profiles);
    let total: f64 = rows.iter().map(|r| r.total_us).sum();
    let width = |f: &dyn Fn(&KernelSummary) -> usize, title: &str| {
        rows.iter()
            .map(f)
            .chain([title.chars().count()])
            .max()
            .unwrap_or(0)
    };
    let kw = width(&|r| r.kernel.chars().count(), "kernel");
    let tw = width(&|r| r.tag.chars().count(), "tag");
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} {:>6} {:>10} {:>10} {:>7} {:>9} {:>8} {:>7} {:>7}  shapes",
        pad("kernel", kw),
        pad("tag", tw),
        "calls",
        "total ms",
        "mean µs",
        "% step",
        "GFLOP/s",
        "GB/s",
        "%FLOP",
        "%BW"
    );
    for r in &rows {
        let (pf, pb) = match ceilings {
            Some(c) => (pct(r.gflops(), c.gflops), pct(r.gbps(), c.gbps)),
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "{} {} {:>6} {:>10.3} {:>10.1} {:>7} {:>9.2} {:>8.2} {:>7} {:>7}  {}",
            pad(&r.kernel, kw),
            pad(&r.tag, tw),
            r.calls,
            r.total_us / 1e3,
            r.mean_us(),
            pct(r.total_us, total),
            r.gflops(),
            r.gbps(),
            pf,
            pb,
            r.shapes
        );
    }
    let (flops, bytes): (u64, u64) = rows
        .iter()
        .fold((0, 0), |(f, b), r| (f + r.flops, b + r.bytes));
    let _ = writeln!(
        out,
        "{} {} {:>6} {:>10.3} {:>10} {:>7} {:>9.2} {:>8.2}",
        pad("total", kw),
        pad("", tw),
        rows.iter().map(|r| r.calls).sum::<usize>(),
        total / 1e3,
        "",
        "100.0",
        flops as f64 / (total * 1e3).max(1e-9),
        bytes as f64 / (total * 1e3).max(1e-9),
    );
    out
}

// ---- Chrome trace -------------------------------------------------------------------------------

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number: µs with nanosecond precision; non-finite values (which JSON cannot hold) as 0.
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "0".into()
    }
}

/// Track (`tid`) of the kernels in a trace.
pub const TRACE_KERNEL_TID: u32 = 1;
/// Track of the host-side events (steps and their phases).
pub const TRACE_HOST_TID: u32 = 2;

/// The Chrome trace event format (opens in Perfetto or chrome://tracing): one complete event
/// (`"ph":"X"`) per kernel on the kernel track, args holding its kernel, tag, shapes, FLOPs and
/// bytes; each step and its host phases on the host track. Times are µs from the first step.
pub fn chrome_trace(profiles: &[StepProfile], device: &str) -> String {
    let origin = profiles.first().map(|p| p.started);
    let mut events: Vec<String> = vec![
        format!(
            r#"{{"name":"process_name","ph":"M","pid":1,"tid":0,"args":{{"name":{}}}}}"#,
            json_string(&format!("sinter · {device}"))
        ),
        format!(
            r#"{{"name":"thread_name","ph":"M","pid":1,"tid":{TRACE_KERNEL_TID},"args":{{"name":{}}}}}"#,
            json_string(&format!(
                "kernels ({})",
                profiles.first().map_or("", |p| p.timing.as_str())
            ))
        ),
        format!(
            r#"{{"name":"thread_name","ph":"M","pid":1,"tid":{TRACE_HOST_TID},"args":{{"name":"host"}}}}"#
        ),
    ];
    for (step, p) in profiles.iter().enumerate() {
        let base = origin.map_or(0.0, |o| {
            p.started.saturating_duration_since(o).as_secs_f64() * 1e6
        });
        events.push(format!(
            r#"{{"name":{},"cat":"step","ph":"X","ts":{},"dur":{},"pid":1,"tid":{TRACE_HOST_TID},"args":{{"step":{step},"kernels":{}}}}}"#,
            json_string(&format!("step {step}")),
            num(base),
            num(p.wall_us),
            p.kernels.len()
        ));
        for h in &p.host {
            events.push(format!(
                r#"{{"name":{},"cat":"host","ph":"X","ts":{},"dur":{},"pid":1,"tid":{TRACE_HOST_TID},"args":{{"step":{step}}}}}"#,
                json_string(&h.name),
                num(base + h.start_us),
                num(h.duration_us)
            ));
        }
        for k in &p.kernels {
            events.push(format!(
                r#"{{"name":{},"cat":"kernel","ph":"X","ts":{},"dur":{},"pid":1,"tid":{TRACE_KERNEL_TID},"args":{{"kernel":{},"tag":{},"shapes":{},"flops":{},"bytes":{},"step":{step},"host_timed":{}}}}}"#,
                json_string(&k.tag),
                num(base + k.start_us),
                num(k.duration_us),
                json_string(&k.kernel),
                json_string(&k.tag),
                json_string(&k.shapes),
                k.flops,
                k.bytes,
                p.host_timed
            ));
        }
    }
    format!(
        "{{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n{}\n]}}\n",
        events.join(",\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{ConvConfig, GraphBuilder};

    #[test]
    fn json_strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(
            json_string("a\"b\\c\nd\u{1}·"),
            "\"a\\\"b\\\\c\\nd\\u0001·\""
        );
    }

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

    #[test]
    fn the_ceilings_cache_keeps_one_line_per_device() {
        let dir = std::env::temp_dir().join(format!("sinter-ceilings-{}", std::process::id()));
        let file = dir.join("ceilings.txt");
        let (a, b) = (
            Ceilings {
                gflops: 1.5,
                gbps: 2.5,
            },
            Ceilings {
                gflops: 3.0,
                gbps: 4.0,
            },
        );
        store(&file, "cpu x (2 threads)", &a).unwrap();
        store(&file, "gpu y (Vulkan, z)", &a).unwrap();
        store(&file, "cpu x (2 threads)", &b).unwrap();
        assert_eq!(cached(&file, "cpu x (2 threads)"), Some(b));
        assert_eq!(cached(&file, "gpu y (Vulkan, z)"), Some(a));
        assert_eq!(cached(&file, "gpu other"), None);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn profile(kernels: &[(&str, &str, f64)]) -> StepProfile {
        StepProfile {
            timing: "test".into(),
            host_timed: false,
            started: Instant::now(),
            wall_us: 100.0,
            kernels: kernels
                .iter()
                .enumerate()
                .map(|(launch, &(kernel, tag, d))| KernelTiming {
                    launch,
                    kernel: kernel.into(),
                    tag: tag.into(),
                    shapes: "[1] → [1]".into(),
                    flops: 1000,
                    bytes: 8,
                    start_us: 0.0,
                    duration_us: d,
                })
                .collect(),
            host: vec![],
        }
    }

    #[test]
    fn the_table_sums_calls_per_kernel_and_sorts_by_total_time() {
        let p = profile(&[
            ("a", "x \"q\"", 1.0),
            ("b", "y", 5.0),
            ("a", "x \"q\"", 2.0),
        ]);
        let rows = summarize(&[p.clone(), p.clone()]);
        assert_eq!(rows[0].kernel, "b");
        assert_eq!((rows[1].kernel.as_str(), rows[1].calls), ("a", 4));
        assert!((rows[1].total_us - 6.0).abs() < 1e-9);
        let text = table(
            &[p],
            Some(&Ceilings {
                gflops: 1.0,
                gbps: 1.0,
            }),
        );
        assert!(text.lines().count() == 4, "{text}");
        assert!(text.contains("x \"q\""), "{text}");
    }
}
