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

/// Seconds per call of `f`: the best round of as many calls as fit in `ROUND`.
fn time_per_call(mut f: impl FnMut(usize), estimate: f64) -> f64 {
    let calls = ((ROUND.as_secs_f64() / estimate.max(1e-6)) as usize).clamp(1, 1000);
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            f(calls);
            start.elapsed().as_secs_f64() / calls as f64
        })
        .fold(f64::INFINITY, f64::min)
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
        "cpu threads: {}\n\n{:>6}  {:<22} {:>10} {:>10} {:>10}",
        cpu_threads(),
        "size",
        "kernel",
        "ms/call",
        "GFLOP/s",
        "max|err|"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for &n in &sizes {
        let shape = MatmulShape::new(1, n, n, n);
        let a: Vec<f32> = (0..n * n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let b: Vec<f32> = (0..n * n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut want = vec![0.0f32; n * n];
        let start = Instant::now();
        cpu::matmul(&a, &b, &mut want, &shape);
        let estimate = start.elapsed().as_secs_f64();
        let flops = shape.flops() as f64;
        let mut c = vec![0.0f32; n * n];
        let secs = time_per_call(
            |calls| {
                for _ in 0..calls {
                    cpu::matmul(&a, &b, &mut c, &shape);
                }
            },
            estimate,
        );
        println!(
            "{n:>6}  {:<22} {:>10.3} {:>10.2} {:>10}",
            "cpu gemm f32",
            secs * 1e3,
            flops / secs / 1e9,
            "-"
        );
        let Some(gpu) = gpu else { continue };
        let ab = gpu.upload("bench a", &a).expect("upload a");
        let bb = gpu.upload("bench b", &b).expect("upload b");
        let cb = gpu.buffer("bench c", n * n).expect("buffer c");
        for &v in &variants {
            let d = matmul_with(gpu, v, &ab, &bb, &cb, &shape, "bench").expect("prepare");
            // The first run compiles the pipeline and is the correctness check; it is not timed.
            let start = Instant::now();
            let got = gpu.run(&[&d], &[(&cb, n * n)]).expect("run").remove(0);
            let estimate = start.elapsed().as_secs_f64();
            let (worst, ok) = check(&got, &want, n);
            if !ok {
                println!(
                    "{n:>6}  {:<22} {:>10} {:>10} {:>10.2e}  WRONG: not timed",
                    v.entry(),
                    "-",
                    "-",
                    worst
                );
                continue;
            }
            let secs = time_per_call(|calls| run_many(gpu, &d, &cb, calls), estimate);
            println!(
                "{n:>6}  {:<22} {:>10.3} {:>10.2} {:>10.2e}",
                v.entry(),
                secs * 1e3,
                flops / secs / 1e9,
                worst
            );
        }
        for buf in [ab, bb, cb] {
            gpu.recycle(buf);
        }
    }
}

fn cpu_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
