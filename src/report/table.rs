//! The profile report table: the kernels of profiled steps grouped by (kernel, tag, shapes), with
//! calls, times, GFLOP/s and GB/s against the device's ceilings, as `sinter profile` prints it.

use sinter_model::profile::{Ceilings, StepProfile};
use std::collections::HashMap;
use std::fmt::Write as _;

/// One row of the report: a kernel with one tag and shape, summed over its calls.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSummary {
    /// The WGSL entry point, or the op on the CPU backend.
    pub kernel: String,
    /// What it computes in model terms.
    pub tag: String,
    /// Input shapes and the output shape.
    pub shapes: String,
    /// How many times it ran over the profiled steps.
    pub calls: usize,
    /// Its time summed over those calls.
    pub total_us: f64,
    /// FLOPs summed over those calls.
    pub flops: u64,
    /// Bytes summed over those calls.
    pub bytes: u64,
}

impl KernelSummary {
    /// Time per call.
    pub fn mean_us(&self) -> f64 {
        self.total_us / self.calls.max(1) as f64
    }

    /// Achieved GFLOP/s over its total time.
    pub fn gflops(&self) -> f64 {
        self.flops as f64 / (self.total_us * 1e3).max(1e-9)
    }

    /// Achieved GB/s over its total time.
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

#[cfg(test)]
mod tests {
    use super::*;
    use sinter_model::profile::KernelTiming;
    use std::time::Instant;

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
