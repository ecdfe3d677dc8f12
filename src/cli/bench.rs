//! `sinter bench`: throughput of the kernels that dominate training (matrix product, the default
//! CNN's convolutions, attention) on the CPU backend and an adapter, and of whole training steps.
//! Every GPU kernel is checked against the CPU reference before it is timed.

use super::profile::{device_choice, device_label, median, model_name, Gpt2Size, Trainer};
use super::train::ModelName;
use super::{CliError, Result};
use clap::{Args, Subcommand};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sinter_device::kernels::attention::{self as attn, AttentionShape};
use sinter_device::kernels::conv::{self, Conv2dShape};
use sinter_device::kernels::matmul::{self, MatmulShape, MatmulVariant};
use sinter_device::{pick_adapter, wgpu, Dispatch, Gpu};
use sinter_model::cpu;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// Square matrix products: the WGSL kernel on the device and the CPU backend's gemm.
    Matmul(KernelArgs),
    /// The default CNN's two convolutions: forward, input gradient and weight gradient.
    Conv(KernelArgs),
    /// Fused causal attention, B=32 T=64 H=4 D=32: forward and backward.
    Attention(KernelArgs),
    /// Whole training steps; the last line reads `<model> <device> batch <B>: <X> ms/step, <Y> samples/s`.
    Step(StepArgs),
    /// A long run: GPU buffer-pool size and process resident memory at --report-at and at the end.
    Soak(SoakArgs),
}

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// The model whose training step runs (the models of `sinter train`).
    #[arg(long, value_enum, default_value_t = ModelName::Cnn)]
    pub model: ModelName,
    /// Images (image models) or windows (text models) per step; default 64 / 32.
    #[arg(long, value_parser = super::checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub batch: Option<usize>,
    /// auto (hardware GPU, else CPU), gpu, software (lavapipe & co.), cpu, or one adapter:
    /// gpu:N, software:N, gpu:NAME, software:NAME (see `sinter info`); or SINTER_DEVICE.
    #[arg(long)]
    pub device: Option<String>,
    /// Training steps in all.
    #[arg(long, default_value_t = 5000)]
    pub steps: u64,
    /// The step whose memory is the baseline: by then every buffer a step needs exists.
    #[arg(long, default_value_t = 100)]
    pub report_at: u64,
    /// Seed of the initial parameters and the data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub gpt2: Gpt2Size,
}

#[derive(Args, Debug)]
pub struct KernelArgs {
    /// auto (hardware GPU, else CPU only), gpu, software (lavapipe & co.), cpu; or SINTER_DEVICE.
    #[arg(long)]
    pub device: Option<String>,
    /// Matrix sizes (matmul).
    #[arg(long, value_delimiter = ',', default_value = "256,512,1024")]
    pub sizes: Vec<usize>,
    /// Images per convolution (conv).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Time each kernel for about this many milliseconds per round (best of three rounds).
    #[arg(long, default_value_t = 300)]
    pub round_ms: u64,
}

#[derive(Args, Debug)]
pub struct StepArgs {
    /// The model whose training step runs (the models of `sinter train`).
    #[arg(long, value_enum, default_value_t = ModelName::Cnn)]
    pub model: ModelName,
    /// Images (image models) or windows (text models) per step; default 64 / 32.
    #[arg(long, value_parser = super::checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub batch: Option<usize>,
    /// auto (hardware GPU, else CPU), gpu, software (lavapipe & co.), cpu, or one adapter:
    /// gpu:N, software:N, gpu:NAME, software:NAME (see `sinter info`); or SINTER_DEVICE.
    #[arg(long)]
    pub device: Option<String>,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed steps; the median is reported.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Seed of the initial parameters and the data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub gpt2: Gpt2Size,
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.what {
        BenchWhat::Matmul(a) => kernels(&a, bench_matmul),
        BenchWhat::Conv(a) => kernels(&a, bench_conv),
        BenchWhat::Attention(a) => kernels(&a, bench_attention),
        BenchWhat::Step(a) => step(a),
        BenchWhat::Soak(a) => soak(a),
    }
}

// ---- kernel benchmarks --------------------------------------------------------------------------

/// What a kernel benchmark works with: the adapter (None: CPU only) and how long to time.
struct Bench {
    gpu: Option<Gpu>,
    round_s: f64,
    rng: ChaCha8Rng,
}

fn kernels(args: &KernelArgs, body: fn(&mut Bench, &KernelArgs) -> Result<()>) -> Result<()> {
    let choice = device_choice(&args.device)?;
    let gpu = pick_adapter(choice)?.map(Gpu::new).transpose()?;
    match &gpu {
        Some(g) => println!(
            "adapter: {} ({:?}, {}); CPU backend: {} threads",
            g.report.name,
            g.report.backend,
            g.report.class,
            rayon_threads()
        ),
        None => println!(
            "CPU backend only ({} threads); --device software or gpu adds the WGSL kernels",
            rayon_threads()
        ),
    }
    println!(
        "{:<34} {:<9} {:>10} {:>10} {:>10}",
        "kernel", "device", "ms/call", "GFLOP/s", "max|err|"
    );
    let mut b = Bench {
        gpu,
        round_s: args.round_ms.max(1) as f64 / 1e3,
        rng: ChaCha8Rng::seed_from_u64(7),
    };
    body(&mut b, args)
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Bench {
    fn random(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.rng.random_range(-1.0..1.0)).collect()
    }

    /// Seconds per call of `f`: the best of three rounds of as many calls as fit in a round.
    fn time(&self, mut f: impl FnMut(usize)) -> f64 {
        let start = Instant::now();
        f(1);
        let once = start.elapsed().as_secs_f64();
        let calls = ((self.round_s / once.max(1e-7)) as usize).clamp(1, 1000);
        (0..3)
            .map(|_| {
                let start = Instant::now();
                f(calls);
                start.elapsed().as_secs_f64() / calls as f64
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// Times the CPU reference, one row.
    fn cpu_row(&self, what: &str, flops: u64, mut f: impl FnMut()) {
        let t = self.time(|calls| {
            for _ in 0..calls {
                f();
            }
        });
        row(what, "cpu", t, flops, None);
    }

    /// Runs `dispatches` once and compares each of `outs` with the CPU's `want`; when they
    /// agree, times `dispatches` (repeated in one submit) and prints one row.
    fn gpu_row(
        &self,
        gpu: &Gpu,
        what: &str,
        dispatches: &[&Dispatch],
        outs: &[(&wgpu::Buffer, &[f32], usize)],
    ) -> Result<()> {
        let reads: Vec<(&wgpu::Buffer, usize)> = outs.iter().map(|o| (o.0, o.1.len())).collect();
        let got = gpu.run(dispatches, &reads)?;
        let mut worst = 0.0f64;
        for (g, &(_, want, k)) in got.iter().zip(outs) {
            let (err, ok) = check(g, want, k);
            worst = worst.max(err);
            if !ok {
                println!(
                    "{what:<34} {:<9} WRONG (max|err| {err:.2e} against the CPU): not timed",
                    "gpu"
                );
                return Err(CliError::Usage(format!(
                    "{what}: the WGSL kernel disagrees with the CPU reference (max|err| {err:.2e})"
                )));
            }
        }
        let flops: u64 = dispatches.iter().map(|d| d.flops).sum();
        let probe = reads[0].0;
        let t = self.time(|calls| {
            let list: Vec<&Dispatch> = (0..calls)
                .flat_map(|_| dispatches.iter().copied())
                .collect();
            // Reading one value back waits for the whole submission.
            gpu.run(&list, &[(probe, 1)]).expect("benchmark submit");
        });
        let label = if gpu.report.class.is_hardware() {
            "gpu"
        } else {
            "software"
        };
        row(what, label, t, flops, Some(worst));
        Ok(())
    }
}

fn row(what: &str, device: &str, seconds: f64, flops: u64, err: Option<f64>) {
    println!(
        "{what:<34} {device:<9} {:>10.3} {:>10.2} {:>10}",
        seconds * 1e3,
        flops as f64 / seconds / 1e9,
        err.map_or("-".to_string(), |e| format!("{e:.2e}"))
    );
}

/// The largest |got − want| and whether every element is within tolerance: `k` terms summed in
/// f32 give rounding error growing like √k·ε, relative to the size of the result.
fn check(got: &[f32], want: &[f32], k: usize) -> (f64, bool) {
    let tol = 4e-5 * (k.max(1) as f64).sqrt();
    let mut worst = 0.0f64;
    let mut ok = got.len() == want.len();
    for (&g, &w) in got.iter().zip(want) {
        let err = (g as f64 - w as f64).abs();
        worst = worst.max(err);
        ok &= err <= tol * (1.0 + (w as f64).abs());
    }
    (worst, ok)
}

fn bench_matmul(b: &mut Bench, args: &KernelArgs) -> Result<()> {
    for &n in &args.sizes {
        if n == 0 {
            return Err(CliError::Usage("--sizes must be positive".into()));
        }
        let s = MatmulShape::new(1, n, n, n);
        let (a, bm) = (b.random(n * n), b.random(n * n));
        let mut want = vec![0f32; n * n];
        cpu::matmul::matmul(&a, &bm, &mut want, &s);
        let mut c = vec![0f32; n * n];
        b.cpu_row(&format!("matmul {n}³ gemm"), s.flops(), || {
            cpu::matmul::matmul(&a, &bm, &mut c, &s)
        });
        if let Some(gpu) = &b.gpu {
            let (ab, bb) = (gpu.upload("bench a", &a)?, gpu.upload("bench b", &bm)?);
            let cb = gpu.buffer("bench c", n * n)?;
            let v = MatmulVariant::best_for(gpu);
            let d = matmul::matmul(gpu, &ab, &bb, &cb, &s, "bench")?;
            let what = format!("matmul {n}³ {}", v.entry().trim_start_matches("matmul_"));
            b.gpu_row(gpu, &what, &[&d], &[(&cb, &want, n)])?;
            for buf in [ab, bb, cb] {
                gpu.recycle(buf);
            }
        }
    }
    Ok(())
}

fn bench_conv(b: &mut Bench, args: &KernelArgs) -> Result<()> {
    if args.batch == 0 {
        return Err(CliError::Usage("--batch must be at least 1".into()));
    }
    // The default CNN on 28×28 digits: conv1 1→32 at 28×28, conv2 32→64 at 14×14; 3×3, pad 1.
    for (name, c_in, hw, c_out) in [("conv1", 1, 28, 32), ("conv2", 32, 14, 64)] {
        let s = Conv2dShape {
            n: args.batch,
            c_in,
            h: hw,
            w: hw,
            c_out,
            kh: 3,
            kw: 3,
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
        };
        let [oh, ow] = s.out_hw().expect("valid shape");
        let (x, w, dy) = (
            b.random(s.x_len()),
            b.random(s.w_len()),
            b.random(s.y_len()),
        );
        let (mut y, mut dx, mut dw) = (
            vec![0f32; s.y_len()],
            vec![0f32; s.x_len()],
            vec![0f32; s.w_len()],
        );
        cpu::conv::conv2d_forward(&x, &w, &mut y, &s);
        cpu::conv::conv2d_grad_input(&dy, &w, &mut dx, &s);
        cpu::conv::conv2d_grad_weight(&x, &dy, &mut dw, &s);
        let label = |pass: &str| format!("{name} {pass} N={} {c_in}→{c_out} {hw}²", s.n);
        let (mut y2, mut dx2, mut dw2) = (y.clone(), dx.clone(), dw.clone());
        b.cpu_row(&label("forward"), s.flops(), || {
            cpu::conv::conv2d_forward(&x, &w, &mut y2, &s)
        });
        b.cpu_row(&label("grad input"), s.flops(), || {
            cpu::conv::conv2d_grad_input(&dy, &w, &mut dx2, &s)
        });
        b.cpu_row(&label("grad weight"), s.flops(), || {
            cpu::conv::conv2d_grad_weight(&x, &dy, &mut dw2, &s)
        });
        if let Some(gpu) = &b.gpu {
            let (xb, wb, dyb) = (
                gpu.upload("bench x", &x)?,
                gpu.upload("bench w", &w)?,
                gpu.upload("bench dy", &dy)?,
            );
            let (yb, dxb, dwb) = (
                gpu.buffer("bench y", s.y_len())?,
                gpu.buffer("bench dx", s.x_len())?,
                gpu.buffer("bench dw", s.w_len())?,
            );
            let (k_fwd, k_w) = (c_in * 9, s.n * oh * ow);
            let d = conv::conv2d_forward(gpu, &xb, &wb, &yb, &s, "bench")?;
            b.gpu_row(gpu, &label("forward"), &[&d], &[(&yb, &y, k_fwd)])?;
            let d = conv::conv2d_grad_input(gpu, &dyb, &wb, &dxb, &s, "bench")?;
            b.gpu_row(gpu, &label("grad input"), &[&d], &[(&dxb, &dx, c_out * 9)])?;
            let d = conv::conv2d_grad_weight(gpu, &xb, &dyb, &dwb, &s, "bench")?;
            b.gpu_row(gpu, &label("grad weight"), &[&d], &[(&dwb, &dw, k_w)])?;
            for buf in [xb, wb, dyb, yb, dxb, dwb] {
                gpu.recycle(buf);
            }
        }
    }
    Ok(())
}

fn bench_attention(b: &mut Bench, _args: &KernelArgs) -> Result<()> {
    let s = AttentionShape {
        batch: 32,
        seq: 64,
        heads: 4,
        head_dim: 32,
        causal: true,
        scale: 1.0 / (32f32).sqrt(),
        dropout: 0.0,
    };
    let (n, nl) = (s.qkv_len(), s.lse_len());
    let (q, k, v, d_o) = (b.random(n), b.random(n), b.random(n), b.random(n));
    let (mut o, mut lse) = (vec![0f32; n], vec![0f32; nl]);
    cpu::attention::attention_forward(&q, &k, &v, None, &mut o, &mut lse, &s);
    let (mut dq, mut dk, mut dv) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    cpu::attention::attention_backward(&q, &k, &v, &o, &d_o, &lse, &mut dq, &mut dk, &mut dv, &s);
    // The same counts as the WGSL launches (see kernels/attention.rs).
    let d = s.head_dim as u64;
    let rows = (s.batch * s.seq * s.heads) as u64;
    let fwd_flops = s.pairs() * (4 * d + 4);
    let bwd_flops = rows * 2 * d + s.pairs() * (6 * d + 4) + s.pairs() * (8 * d + 4);
    let label = |pass: &str| format!("attention {pass} B32 T64 H4 D32");
    let (mut o2, mut lse2) = (o.clone(), lse.clone());
    b.cpu_row(&label("forward"), fwd_flops, || {
        cpu::attention::attention_forward(&q, &k, &v, None, &mut o2, &mut lse2, &s)
    });
    let (mut dq2, mut dk2, mut dv2) = (dq.clone(), dk.clone(), dv.clone());
    b.cpu_row(&label("backward"), bwd_flops, || {
        cpu::attention::attention_backward(
            &q, &k, &v, &o, &d_o, &lse, &mut dq2, &mut dk2, &mut dv2, &s,
        )
    });
    if let Some(gpu) = &b.gpu {
        let up = |what: &str, data: &[f32]| gpu.upload(what, data);
        let (qb, kb, vb, dob) = (up("q", &q)?, up("k", &k)?, up("v", &v)?, up("do", &d_o)?);
        let (ob, lseb) = (gpu.buffer("o", n)?, gpu.buffer("lse", nl)?);
        let t = s.seq;
        // The backward reads the forward's o and lse, which its run leaves in place.
        let (delta, dqb, dkb, dvb) = (
            gpu.buffer("delta", nl)?,
            gpu.buffer("dq", n)?,
            gpu.buffer("dk", n)?,
            gpu.buffer("dv", n)?,
        );
        let variants = attn::AttentionVariant::ALL
            .into_iter()
            .filter(|v| v.runs_on(gpu));
        for variant in variants {
            let named = |pass: &str| format!("{} {}", label(pass), variant.name());
            let fwd = attn::attention_forward_with(
                gpu, variant, &qb, &kb, &vb, None, &ob, &lseb, &s, "bench",
            )?;
            let outputs = [(&ob, &o[..], t), (&lseb, &lse[..], t)];
            b.gpu_row(gpu, &named("forward"), &[&fwd], &outputs)?;
            let grads = attn::AttentionGrads {
                dq: &dqb,
                dk: &dkb,
                dv: &dvb,
            };
            let inputs = [&qb, &kb, &vb, &ob, &dob, &lseb, &delta];
            let bwd = attn::attention_backward_with(gpu, variant, inputs, grads, &s, "bench")?;
            let refs: Vec<&Dispatch> = bwd.iter().collect();
            let outputs = [(&dqb, &dq[..], t), (&dkb, &dk[..], t), (&dvb, &dv[..], t)];
            b.gpu_row(gpu, &named("backward"), &refs, &outputs)?;
        }
        for buf in [qb, kb, vb, dob, ob, lseb, delta, dqb, dkb, dvb] {
            gpu.recycle(buf);
        }
    }
    Ok(())
}

// ---- training steps -----------------------------------------------------------------------------

fn step(args: StepArgs) -> Result<()> {
    if args.steps == 0 {
        return Err(CliError::Usage("--steps must be at least 1".into()));
    }
    let choice = device_choice(&args.device)?;
    let mut t = Trainer::build(args.model, args.batch, choice, args.seed, &args.gpt2)?;
    let (model, device, batch) = (model_name(args.model), device_label(t.backend()), t.batch());
    println!(
        "{model} training step on {} · batch {batch} · {} warm-up + {} timed steps",
        t.backend().describe(),
        args.warmup,
        args.steps
    );
    for _ in 0..args.warmup {
        t.step()?;
    }
    let mut ms = Vec::with_capacity(args.steps);
    for _ in 0..args.steps {
        let start = Instant::now();
        t.step()?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let (lo, hi) = ms
        .iter()
        .fold((f64::INFINITY, 0f64), |(lo, hi), &m| (lo.min(m), hi.max(m)));
    println!("min {lo:.2} ms, max {hi:.2} ms over {} steps", ms.len());
    let med = median(&ms);
    println!(
        "{model} {device} batch {batch}: {med:.2} ms/step, {:.0} samples/s",
        batch as f64 * 1e3 / med.max(1e-9)
    );
    Ok(())
}

// ---- soak ---------------------------------------------------------------------------------------

/// The process's resident memory in KiB (VmRSS in /proc/self/status), where the OS reports it.
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One memory report line; `sinter bench soak`'s output is parsed by its test, so keep the form.
fn memory_line(t: &Trainer, step: u64) -> (String, Option<sinter_device::PoolStats>, Option<u64>) {
    let pool = t.backend().pool_stats();
    let rss = resident_kib();
    let pool_text = match pool {
        Some(p) => format!(
            "pool_allocations {} pool_bytes {} pool_free_buffers {}",
            p.allocations, p.bytes_allocated, p.free_buffers
        ),
        None => "pool_allocations - pool_bytes - pool_free_buffers - (CPU backend: no GPU pool)"
            .to_string(),
    };
    let rss_text = rss.map_or("unavailable".to_string(), |k| k.to_string());
    (
        format!("step {step}: {pool_text} rss_kib {rss_text}"),
        pool,
        rss,
    )
}

fn soak(args: SoakArgs) -> Result<()> {
    if args.report_at == 0 || args.steps <= args.report_at {
        return Err(CliError::Usage(format!(
            "--steps ({}) must be larger than --report-at ({}), which must be at least 1",
            args.steps, args.report_at
        )));
    }
    let choice = device_choice(&args.device)?;
    let mut t = Trainer::build(args.model, args.batch, choice, args.seed, &args.gpt2)?;
    let model = model_name(args.model);
    println!(
        "soak: {model} on {} · batch {} · {} steps, memory at step {} and at the end",
        t.backend().describe(),
        t.batch(),
        args.steps,
        args.report_at
    );
    let started = Instant::now();
    let mut baseline = None;
    for step in 1..=args.steps {
        t.step()?;
        if step == args.report_at {
            let (line, pool, rss) = memory_line(&t, step);
            println!("{line}");
            baseline = Some((pool, rss));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let (line, pool, rss) = memory_line(&t, args.steps);
    println!("{line}");
    let (pool0, rss0) = baseline.expect("report_at < steps");
    let growth = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:+}", b as i64 - a as i64),
        _ => "unavailable".to_string(),
    };
    println!(
        "growth from step {} to {}: pool_bytes {} rss_kib {} · {:.2} ms/step",
        args.report_at,
        args.steps,
        growth(
            pool0.map(|p| p.bytes_allocated),
            pool.map(|p| p.bytes_allocated)
        ),
        growth(rss0, rss),
        secs * 1e3 / args.steps as f64
    );
    Ok(())
}
