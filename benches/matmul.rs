//! Matrix-product benchmark: GFLOP/s of every WGSL variant on the adapter at hand (each checked
//! against the CPU reference before it is timed) and of the CPU backend's gemm, for square sizes.
//!
//! `SINTER_DEVICE=software cargo bench --bench matmul` runs it on lavapipe. `MATMUL_SIZES=256,512`
//! and `MATMUL_VARIANTS=v3,v4` narrow it down.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sinter::sinter_device::kernels::matmul::{matmul_with, MatmulShape, MatmulVariant};
use sinter::sinter_device::{testing::test_gpu, wgpu, Dispatch, Gpu};
use sinter::sinter_model::cpu::matmul as cpu;
use std::time::{Duration, Instant};

/// Each timing round runs about this long; the best of `ROUNDS` rounds is reported, because
/// interference from other work on the machine only ever makes a round slower.
const ROUND: Duration = Duration::from_millis(700);
const ROUNDS: usize = 3;

fn env_list(name: &str) -> Option<Vec<String>> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
}

/// Seconds per call, of wall-clock time and of CPU time summed over this process's threads.
#[derive(Clone, Copy)]
struct Timing {
    wall: f64,
    cpu: f64,
}

/// CPU seconds used so far by all threads of this process (lavapipe's workers included), from
/// /proc/self/stat; NaN where that file does not exist.
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    match fields[..] {
        [user, system] => (user + system) / 100.0, // clock ticks; USER_HZ is 100 on Linux
        _ => f64::NAN,
    }
}

/// Time per call of `f`: the best round of as many calls as fit in `ROUND`.
fn time_per_call(mut f: impl FnMut(usize), estimate: f64) -> Timing {
    let calls = ((ROUND.as_secs_f64() / estimate.max(1e-6)) as usize).clamp(1, 1000);
    let mut best = Timing {
        wall: f64::INFINITY,
        cpu: f64::INFINITY,
    };
    for _ in 0..ROUNDS {
        let cpu = process_cpu_seconds();
        let start = Instant::now();
        f(calls);
        best.wall = best.wall.min(start.elapsed().as_secs_f64() / calls as f64);
        best.cpu = best.cpu.min((process_cpu_seconds() - cpu) / calls as f64);
    }
    best
}

/// Records `count` copies of `d` in one encoder, submits once and waits for them.
fn run_many(gpu: &Gpu, d: &Dispatch, out: &wgpu::Buffer, count: usize) {
    let mut encoder = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("matmul bench"),
        });
    let list: Vec<&Dispatch> = vec![d; count];
    gpu.record(&mut encoder, &list);
    // Reading one value back waits for the whole submission.
    gpu.finish_and_read(encoder, &[(out, 1)])
        .expect("bench submit");
}

/// The largest |got − want| and whether every element is within `tol` (scaled by √k: the
/// rounding error of a k-term f32 dot product of O(1) terms grows like √k·ε·|terms|).
fn check(got: &[f32], want: &[f32], k: usize) -> (f64, bool) {
    let tol = 1e-5 * (k as f64).sqrt() * 4.0;
    let mut worst = 0.0f64;
    let mut ok = true;
    for (&g, &w) in got.iter().zip(want) {
        let err = (g as f64 - w as f64).abs();
        worst = worst.max(err);
        ok &= err <= tol * (1.0 + (w as f64).abs());
    }
    (worst, ok)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let sizes: Vec<usize> = env_list("MATMUL_SIZES")
        .map(|v| v.iter().map(|s| s.parse().expect("MATMUL_SIZES")).collect())
        .unwrap_or_else(|| vec![256, 512, 1024]);
    let wanted = env_list("MATMUL_VARIANTS");
    let variants: Vec<MatmulVariant> = MatmulVariant::ALL
        .into_iter()
        .filter(|v| {
            wanted
                .as_ref()
                .is_none_or(|w| w.iter().any(|x| v.entry().contains(x.as_str())))
        })
        .collect();
    let gpu = test_gpu();
    match gpu {
        Some(g) => println!(
            "adapter: {} ({:?}, {}), default variant {:?}",
            g.report.name,
            g.report.backend,
            g.report.class,
            MatmulVariant::best_for(g)
        ),
        None => println!("no adapter: CPU only"),
    }
    println!(
        "cpu threads: {}\nGFLOP/cpu·s divides by the CPU time of all this process's threads: on a \
         software adapter it is the\nspeed per core whatever else the machine runs (times the \
         core count for an idle machine's figure).\n\n{:>12}  {:<18} {:>10} {:>10} {:>12} {:>10}",
        cpu_threads(),
        "shape",
        "kernel",
        "ms/call",
        "GFLOP/s",
        "GFLOP/cpu·s",
        "max|err|"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for &n in &sizes {
        bench_shape(
            gpu,
            &variants,
            &MatmulShape::new(1, n, n, n),
            &n.to_string(),
            &mut rng,
        );
    }
    // The shapes of backward passes (transposed operands) and of odd sizes, default variant only.
    let Some(gpu) = gpu else { return };
    println!("\nbackward-pass and unaligned shapes, default variant:");
    let best = [MatmulVariant::best_for(gpu)];
    let n = 512;
    for (ta, tb, label) in [
        (true, false, "512 Aᵀ·B"),
        (false, true, "512 A·Bᵀ"),
        (true, true, "512 Aᵀ·Bᵀ"),
    ] {
        let s = MatmulShape::new(1, n, n, n).with_trans(ta, tb);
        bench_shape(Some(gpu), &best, &s, label, &mut rng);
    }
    bench_shape(
        Some(gpu),
        &best,
        &MatmulShape::new(1, 511, 511, 511),
        "511",
        &mut rng,
    );
}

/// Times the CPU reference and each of `variants` on `shape`, one table row each.
fn bench_shape(
    gpu: Option<&Gpu>,
    variants: &[MatmulVariant],
    shape: &MatmulShape,
    label: &str,
    rng: &mut ChaCha8Rng,
) {
    let a: Vec<f32> = (0..shape.a_len())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let b: Vec<f32> = (0..shape.b_len())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let len = shape.c_len();
    let mut want = vec![0.0f32; len];
    let start = Instant::now();
    cpu::matmul(&a, &b, &mut want, shape);
    let estimate = start.elapsed().as_secs_f64();
    let flops = shape.flops() as f64;
    let row = |name: &str, t: Timing, err: Option<f64>| {
        println!(
            "{label:>12}  {name:<18} {:>10.3} {:>10.2} {:>12.2} {:>10}",
            t.wall * 1e3,
            flops / t.wall / 1e9,
            flops / t.cpu / 1e9,
            err.map_or("-".to_string(), |e| format!("{e:.2e}"))
        )
    };
    let mut c = vec![0.0f32; len];
    let t = time_per_call(
        |calls| {
            for _ in 0..calls {
                cpu::matmul(&a, &b, &mut c, shape);
            }
        },
        estimate,
    );
    row("cpu gemm f32", t, None);
    let Some(gpu) = gpu else { return };
    let ab = gpu.upload("bench a", &a).expect("upload a");
    let bb = gpu.upload("bench b", &b).expect("upload b");
    let cb = gpu.buffer("bench c", len).expect("buffer c");
    for &v in variants.iter().filter(|v| v.runs_on(gpu)) {
        let d = matmul_with(gpu, v, &ab, &bb, &cb, shape, "bench").expect("prepare");
        // The first run compiles the pipeline and is the correctness check; it is not timed.
        let start = Instant::now();
        let got = gpu.run(&[&d], &[(&cb, len)]).expect("run").remove(0);
        let estimate = start.elapsed().as_secs_f64();
        let (worst, ok) = check(&got, &want, shape.k);
        if !ok {
            println!(
                "{label:>12}  {:<18} WRONG (max|err| {worst:.2e}): not timed",
                v.entry().trim_start_matches("matmul_")
            );
            continue;
        }
        let t = time_per_call(|calls| run_many(gpu, &d, &cb, calls), estimate);
        row(v.entry().trim_start_matches("matmul_"), t, Some(worst));
    }
    for buf in [ab, bb, cb] {
        gpu.recycle(buf);
    }
}

fn cpu_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
