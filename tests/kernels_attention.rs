//! Fused attention, forward and backward, with and without attention-weight dropout: the kernels
//! on an adapter against the CPU reference (run in f64), both against the unfused composition
//! written out naively here (the dropout masks from sinter-ops' rule), finite differences of the
//! CPU backward, and bad shapes.

mod common;

use common::{assert_close, out_buffer, rand_vec, rng, to_f64, SENTINEL, TAIL};
use rand::Rng;
use sinter::sinter_device::kernels::attention::{
    self as attn, AttentionGrads, AttentionShape, AttentionVariant,
};
use sinter::sinter_device::testing::test_gpu;
use sinter::sinter_device::{wgpu, Gpu};
use sinter::sinter_model::cpu;

// Tolerances sit about 10× above the worst error seen on lavapipe (o 4.5e-7, lse 8e-7 at
// |lse| 6.5, dq/dk 5e-7, dv 1.4e-6 at |dv| 2.7), leaving room for hardware exp, which Vulkan
// allows to be off by 3 + 2|x| ULP.
/// o is a convex combination of v rows (|v| ≤ 1), accumulated over up to T = 130 keys in f32
/// with a running rescale; the probabilities carry exp's relative error.
const O_ATOL: f64 = 3e-6;
const O_RTOL: f64 = 1e-5;
/// lse = max + log(sum): the f32 score (a D-term dot product) dominates its error.
const LSE_ATOL: f64 = 2e-6;
const LSE_RTOL: f64 = 1e-6;
/// Gradients are sums over T of p·(dp − Δ) terms, where dp − Δ cancels; errors scale with the
/// size of the terms rather than of the result, hence the atol.
const GRAD_ATOL: f64 = 5e-6;
const GRAD_RTOL: f64 = 2e-5;
/// Scores in the hundreds carry f32 rounding of a few 1e-5 (relative 1e-7 of 350), which moves
/// every probability by as much: o and dv then err by up to 1e-5 (seen: 5.6e-6), dq and dk
/// (16× larger) by up to 1.2e-4.
const LARGE_ATOL: f64 = 6e-5;
const LARGE_RTOL: f64 = 1e-4;
/// The CPU reference in f64 against the unfused composition in f64: only summation order differs.
const F64_ATOL: f64 = 1e-12;
const F64_RTOL: f64 = 1e-10;
/// Central differences of an f64 loss with step FD_STEP: truncation error O(step²) plus rounding
/// O(ε / step) on O(1) values.
const FD_STEP: f64 = 1e-5;
const FD_ATOL: f64 = 1e-8;
const FD_RTOL: f64 = 1e-6;

fn shape(batch: usize, seq: usize, heads: usize, head_dim: usize, causal: bool) -> AttentionShape {
    AttentionShape {
        batch,
        seq,
        heads,
        head_dim,
        causal,
        scale: 1.0 / (head_dim as f32).sqrt(),
        dropout: 0.0,
    }
}

/// `shape(..)` whose attention weights are dropped with probability `p`.
fn dropping(p: f32, mut s: AttentionShape) -> AttentionShape {
    s.dropout = p;
    s
}

/// q, k, v, an upstream gradient do, and the row seeds dropout draws from.
struct Inputs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    do_: Vec<f32>,
    seeds: Vec<f32>,
}

impl Inputs {
    /// The seeds the kernels take: only with dropout.
    fn seeds(&self, s: &AttentionShape) -> Option<&[f32]> {
        s.has_dropout().then_some(&self.seeds[..])
    }
}

/// Random inputs: q and k uniform in ±qk_range (2 gives scores of spread about 1.3 after the
/// 1/√D scale, so the softmax is neither flat nor one-hot), v and do uniform in ±1.
fn inputs(s: &AttentionShape, seed: u64, qk_range: f32) -> Inputs {
    let mut r = rng(seed);
    let n = s.qkv_len();
    Inputs {
        q: rand_vec(&mut r, n, -qk_range, qk_range),
        k: rand_vec(&mut r, n, -qk_range, qk_range),
        v: rand_vec(&mut r, n, -1.0, 1.0),
        do_: rand_vec(&mut r, n, -1.0, 1.0),
        // Whole numbers below 2^24, as the trainer draws them.
        seeds: (0..s.batch)
            .map(|_| r.random_range(0..1u32 << 24) as f32)
            .collect(),
    }
}

/// Everything one attention call produces.
struct Outputs<T> {
    o: Vec<T>,
    lse: Vec<T>,
    dq: Vec<T>,
    dk: Vec<T>,
    dv: Vec<T>,
}

/// Every variant the adapter runs (lavapipe runs both).
fn variants(gpu: &Gpu) -> Vec<AttentionVariant> {
    AttentionVariant::ALL
        .into_iter()
        .filter(|v| v.runs_on(gpu))
        .collect()
}

/// Forward and backward of `variant` on the adapter in one submit; the backward uses the
/// adapter's own o and lse, as training does. Checks that nothing was written past any output.
fn run_gpu(gpu: &Gpu, variant: AttentionVariant, s: &AttentionShape, x: &Inputs) -> Outputs<f32> {
    let (n, nl) = (s.qkv_len(), s.lse_len());
    let up = |name: &str, data: &[f32]| gpu.upload(name, data).expect("upload");
    let (q, k, v, do_) = (
        up("q", &x.q),
        up("k", &x.k),
        up("v", &x.v),
        up("do", &x.do_),
    );
    let seeds = x.seeds(s).map(|seeds| up("seeds", seeds));
    let o = out_buffer(gpu, "o", n);
    let lse = out_buffer(gpu, "lse", nl);
    let delta = out_buffer(gpu, "delta", s.rows());
    let (dq, dk, dv) = (
        out_buffer(gpu, "dq", n),
        out_buffer(gpu, "dk", n),
        out_buffer(gpu, "dv", n),
    );
    let fwd = attn::attention_forward_with(
        gpu,
        variant,
        &q,
        &k,
        &v,
        seeds.as_ref(),
        &o,
        &lse,
        s,
        "test",
    )
    .expect("forward");
    let grads = AttentionGrads {
        dq: &dq,
        dk: &dk,
        dv: &dv,
    };
    let inputs = [&q, &k, &v, &o, &do_, &lse, &delta];
    let bwd =
        attn::attention_backward_with(gpu, variant, inputs, grads, s, "test").expect("backward");
    assert_eq!(bwd.len(), 2, "attention_backward: dq step, then dk/dv step");
    let mut dispatches = vec![&fwd];
    dispatches.extend(bwd.iter());
    let reads = [
        (&o, n),
        (&lse, nl),
        (&delta, s.rows()),
        (&dq, n),
        (&dk, n),
        (&dv, n),
    ];
    let reads: Vec<(&wgpu::Buffer, usize)> = reads.iter().map(|&(b, l)| (b, l + TAIL)).collect();
    let mut got = gpu.run(&dispatches, &reads).expect("run");
    for (name, out) in ["o", "lse", "delta", "dq", "dk", "dv"].iter().zip(&mut got) {
        let tail = out.split_off(out.len() - TAIL);
        assert!(
            tail.iter().all(|&t| t == SENTINEL),
            "attention {s}: wrote past the end of {name}: {tail:?}"
        );
    }
    let [o, lse, _delta, dq, dk, dv] = <[Vec<f32>; 6]>::try_from(got).expect("six reads");
    Outputs { o, lse, dq, dk, dv }
}

/// The CPU reference in f64 on the same (f32) inputs.
fn run_cpu(s: &AttentionShape, x: &Inputs) -> Outputs<f64> {
    let (n, nl) = (s.qkv_len(), s.lse_len());
    let (q, k, v, do_) = (to_f64(&x.q), to_f64(&x.k), to_f64(&x.v), to_f64(&x.do_));
    let mut out = Outputs {
        o: vec![0.0; n],
        lse: vec![0.0; nl],
        dq: vec![0.0; n],
        dk: vec![0.0; n],
        dv: vec![0.0; n],
    };
    let seeds = x.seeds(s).map(to_f64);
    cpu::attention::attention_forward(&q, &k, &v, seeds.as_deref(), &mut out.o, &mut out.lse, s);
    cpu::attention::attention_backward(
        &q,
        &k,
        &v,
        &out.o,
        &do_,
        &out.lse,
        &mut out.dq,
        &mut out.dk,
        &mut out.dv,
        s,
    );
    out
}

/// The unfused composition, naively in f64 and materializing every T×T matrix: S = scale·QKᵀ,
/// the causal mask, P = softmax(S), the dropout mask Z (all ones without dropout), O = (P∘Z)·V;
/// and its backward by hand: dP = Z∘(dO·Vᵀ), dS = P∘(dP − rowsum(dP∘P)), dQ = scale·dS·K,
/// dK = scale·dSᵀ·Q, dV = (P∘Z)ᵀ·dO.
fn unfused(s: &AttentionShape, x: &Inputs) -> Outputs<f64> {
    let (t, d, heads) = (s.seq, s.head_dim, s.heads);
    let (q, k, v, go) = (to_f64(&x.q), to_f64(&x.k), to_f64(&x.v), to_f64(&x.do_));
    let at = |b: usize, i: usize, h: usize, e: usize| ((b * t + i) * heads + h) * d + e;
    let n = s.qkv_len();
    let mut out = Outputs {
        o: vec![0.0; n],
        lse: vec![0.0; s.lse_len()],
        dq: vec![0.0; n],
        dk: vec![0.0; n],
        dv: vec![0.0; n],
    };
    let scale = s.scale as f64;
    if s.has_dropout() {
        out.lse[s.rows()..].copy_from_slice(&to_f64(&x.seeds));
    }
    for b in 0..s.batch {
        for h in 0..heads {
            let key = AttentionShape::head_key(x.seeds[b] as u32, h);
            let kept = |i: usize, j: usize| match s.has_dropout() {
                false => 1.0,
                true if s.keeps(key, i, j) => s.keep_scale() as f64,
                true => 0.0,
            };
            let mut sm = vec![vec![f64::NEG_INFINITY; t]; t];
            for (i, row) in sm.iter_mut().enumerate() {
                for (j, sij) in row.iter_mut().enumerate() {
                    if !s.causal || j <= i {
                        *sij = scale
                            * (0..d)
                                .map(|e| q[at(b, i, h, e)] * k[at(b, j, h, e)])
                                .sum::<f64>();
                    }
                }
            }
            let mut p = vec![vec![0.0; t]; t];
            for i in 0..t {
                let m = sm[i].iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = sm[i].iter().map(|&x| (x - m).exp()).sum();
                for j in 0..t {
                    p[i][j] = (sm[i][j] - m).exp() / z;
                }
                out.lse[(b * heads + h) * t + i] = m + z.ln();
                for e in 0..d {
                    out.o[at(b, i, h, e)] = (0..t)
                        .map(|j| p[i][j] * kept(i, j) * v[at(b, j, h, e)])
                        .sum();
                }
            }
            let mut dp = vec![vec![0.0; t]; t];
            for i in 0..t {
                for j in 0..t {
                    dp[i][j] = kept(i, j)
                        * (0..d)
                            .map(|e| go[at(b, i, h, e)] * v[at(b, j, h, e)])
                            .sum::<f64>();
                }
            }
            let mut ds = vec![vec![0.0; t]; t];
            for i in 0..t {
                let rowsum: f64 = (0..t).map(|j| dp[i][j] * p[i][j]).sum();
                for j in 0..t {
                    ds[i][j] = p[i][j] * (dp[i][j] - rowsum);
                }
            }
            for i in 0..t {
                for e in 0..d {
                    out.dq[at(b, i, h, e)] =
                        scale * (0..t).map(|j| ds[i][j] * k[at(b, j, h, e)]).sum::<f64>();
                    out.dk[at(b, i, h, e)] =
                        scale * (0..t).map(|j| ds[j][i] * q[at(b, j, h, e)]).sum::<f64>();
                    out.dv[at(b, i, h, e)] = (0..t)
                        .map(|j| p[j][i] * kept(j, i) * go[at(b, j, h, e)])
                        .sum();
                }
            }
        }
    }
    out
}

/// Compares every output of `got` (f32) with `want` (f64); `grads` is the gradients' (atol, rtol).
fn assert_outputs(what: &str, got: &Outputs<f32>, want: &Outputs<f64>, grads: (f64, f64)) {
    assert_close(&format!("{what} o"), &got.o, &want.o, O_ATOL, O_RTOL);
    assert_close(
        &format!("{what} lse"),
        &got.lse,
        &want.lse,
        LSE_ATOL,
        LSE_RTOL,
    );
    assert_close(&format!("{what} dq"), &got.dq, &want.dq, grads.0, grads.1);
    assert_close(&format!("{what} dk"), &got.dk, &want.dk, grads.0, grads.1);
    assert_close(&format!("{what} dv"), &got.dv, &want.dv, grads.0, grads.1);
}

/// Shapes over which the adapter is checked: T not a multiple of the workgroups (64, 8) or of the
/// key steps (4, 8), D not a multiple of 4, several heads, batch 3.
fn cases() -> Vec<AttentionShape> {
    let mut out = Vec::new();
    for causal in [false, true] {
        for seq in [1, 7, 33, 65, 100] {
            for head_dim in [1, 5, 8, 32, 64] {
                out.push(shape(3, seq, 2, head_dim, causal));
            }
        }
        out.push(shape(1, 20, 3, 128, causal));
        out.push(shape(2, 130, 1, 16, causal));
        // Dropout of the attention weights, at two rates.
        out.push(dropping(0.3, shape(3, 65, 2, 5, causal)));
        out.push(dropping(0.1, shape(2, 100, 3, 32, causal)));
    }
    out
}

#[test]
fn forward_and_backward_match_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (c, s) in cases().iter().enumerate() {
        let x = inputs(s, 100 + c as u64, 2.0);
        let want = run_cpu(s, &x);
        for variant in variants(gpu) {
            let got = run_gpu(gpu, variant, s, &x);
            let what = format!("attention {} {s}", variant.name());
            assert_outputs(&what, &got, &want, (GRAD_ATOL, GRAD_RTOL));
        }
    }
}

/// The subgroup variant is checked above exactly where subgroups hold its 8 lanes; lavapipe on
/// Vulkan (CI's adapter) has them, and there it is the launchers' choice.
#[test]
fn the_subgroup_variant_runs_where_subgroups_hold_eight_lanes() {
    let Some(gpu) = test_gpu() else { return };
    let sg = AttentionVariant::Subgroup8;
    assert_eq!(sg.runs_on(gpu), gpu.report.subgroups_of_at_least(8));
    if gpu.report.name.contains("llvmpipe") && gpu.report.backend == wgpu::Backend::Vulkan {
        assert!(
            sg.runs_on(gpu),
            "lavapipe's subgroups: {:?}",
            gpu.report.subgroups
        );
        assert_eq!(AttentionVariant::best_for(gpu), sg);
    }
}

#[test]
fn cpu_reference_equals_unfused_composition() {
    for (c, s) in cases().iter().enumerate() {
        let x = inputs(s, 200 + c as u64, 2.0);
        let fused = run_cpu(s, &x);
        let naive = unfused(s, &x);
        let what = format!("cpu attention vs unfused {s}");
        for (name, a, b) in [
            ("o", &fused.o, &naive.o),
            ("lse", &fused.lse, &naive.lse),
            ("dq", &fused.dq, &naive.dq),
            ("dk", &fused.dk, &naive.dk),
            ("dv", &fused.dv, &naive.dv),
        ] {
            for (i, (&g, &w)) in a.iter().zip(b).enumerate() {
                assert!(
                    (g - w).abs() <= F64_ATOL + F64_RTOL * w.abs(),
                    "{what} {name}: index {i}: got {g:e}, want {w:e}"
                );
            }
        }
    }
}

#[test]
fn gpu_equals_unfused_composition() {
    let Some(gpu) = test_gpu() else { return };
    for causal in [false, true] {
        for s in [
            shape(3, 33, 2, 8, causal),
            shape(2, 65, 3, 5, causal),
            dropping(0.2, shape(2, 40, 2, 8, causal)),
        ] {
            let x = inputs(&s, 300, 2.0);
            let want = unfused(&s, &x);
            for variant in variants(gpu) {
                let got = run_gpu(gpu, variant, &s, &x);
                let what = format!("gpu attention {} vs unfused {s}", variant.name());
                assert_outputs(&what, &got, &want, (GRAD_ATOL, GRAD_RTOL));
            }
        }
    }
}

/// Scores far beyond exp's f32 range (|s| in the hundreds): the online softmax must stay finite
/// and agree with the reference. The scores themselves carry f32 error proportional to their
/// size, and so does everything computed from them.
#[test]
fn large_scores_stay_finite() {
    let Some(gpu) = test_gpu() else { return };
    for causal in [false, true] {
        let mut s = shape(2, 65, 2, 16, causal);
        s.scale = 4.0;
        let x = inputs(&s, 400, 4.0);
        let variant = AttentionVariant::best_for(gpu);
        let got = run_gpu(gpu, variant, &s, &x);
        for v in [&got.o, &got.lse, &got.dq, &got.dk, &got.dv] {
            assert!(
                v.iter().all(|x| x.is_finite()),
                "attention {s}: non-finite output"
            );
        }
        let want = run_cpu(&s, &x);
        let biggest = want.lse.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(biggest > 100.0, "test inputs too tame: max |lse| {biggest}");
        let what = format!("attention large scores {s}");
        assert_close(
            &format!("{what} o"),
            &got.o,
            &want.o,
            LARGE_ATOL,
            LARGE_RTOL,
        );
        assert_close(
            &format!("{what} lse"),
            &got.lse,
            &want.lse,
            LSE_ATOL,
            LSE_RTOL,
        );
        assert_close(
            &format!("{what} dv"),
            &got.dv,
            &want.dv,
            LARGE_ATOL,
            LARGE_RTOL,
        );
        // dq and dk carry the factor scale = 4 and |q|, |k| up to 4.
        let (atol, rtol) = (16.0 * LARGE_ATOL, LARGE_RTOL);
        assert_close(&format!("{what} dq"), &got.dq, &want.dq, atol, rtol);
        assert_close(&format!("{what} dk"), &got.dk, &want.dk, atol, rtol);
    }
}

/// Central differences of loss = Σ o∘r in f64, against the CPU backward with do = r.
#[test]
fn cpu_backward_matches_finite_differences() {
    let cases = [false, true].into_iter().flat_map(|causal| {
        [
            shape(1, 5, 2, 3, causal),
            dropping(0.4, shape(2, 5, 2, 3, causal)),
        ]
    });
    for s in cases {
        let x = inputs(&s, 500, 1.5);
        let seeds = x.seeds(&s).map(to_f64);
        let (q, k, v, r) = (to_f64(&x.q), to_f64(&x.k), to_f64(&x.v), to_f64(&x.do_));
        let n = s.qkv_len();
        let loss = |q: &[f64], k: &[f64], v: &[f64]| {
            let mut o = vec![0.0; n];
            let mut lse = vec![0.0; s.lse_len()];
            cpu::attention::attention_forward(q, k, v, seeds.as_deref(), &mut o, &mut lse, &s);
            o.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>()
        };
        let g = run_cpu(&s, &x);
        for (name, analytic, which) in [("dq", &g.dq, 0), ("dk", &g.dk, 1), ("dv", &g.dv, 2)] {
            for i in 0..n {
                let at = |delta: f64| {
                    let mut xs = [q.clone(), k.clone(), v.clone()];
                    xs[which][i] += delta;
                    loss(&xs[0], &xs[1], &xs[2])
                };
                let numeric = (at(FD_STEP) - at(-FD_STEP)) / (2.0 * FD_STEP);
                let a = analytic[i];
                assert!(
                    (a - numeric).abs() <= FD_ATOL + FD_RTOL * numeric.abs(),
                    "attention {s} {name}: index {i}: backward {a:e}, finite difference {numeric:e}"
                );
            }
        }
    }
}

/// T = 1: the only key is the query's own, so o = v and lse = scale·q·k exactly (up to rounding).
#[test]
fn one_token_copies_v() {
    let Some(gpu) = test_gpu() else { return };
    let s = shape(3, 1, 4, 8, true);
    let x = inputs(&s, 600, 2.0);
    for variant in variants(gpu) {
        let got = run_gpu(gpu, variant, &s, &x);
        assert_close(
            &format!("attention {s} o"),
            &got.o,
            &to_f64(&x.v),
            1e-7,
            1e-6,
        );
        let lse: Vec<f64> = (0..s.batch * s.heads)
            .map(|bh| {
                let r = bh * s.head_dim;
                (0..s.head_dim)
                    .map(|e| x.q[r + e] as f64 * x.k[r + e] as f64)
                    .sum::<f64>()
                    * s.scale as f64
            })
            .collect();
        assert_close(
            &format!("attention {s} lse"),
            &got.lse,
            &lse,
            LSE_ATOL,
            LSE_RTOL,
        );
        let zeros = vec![0.0; s.qkv_len()];
        assert_close(&format!("attention {s} dq"), &got.dq, &zeros, 1e-7, 0.0);
        assert_close(&format!("attention {s} dk"), &got.dk, &zeros, 1e-7, 0.0);
        assert_close(
            &format!("attention {s} dv"),
            &got.dv,
            &to_f64(&x.do_),
            1e-7,
            1e-6,
        );
    }
}

/// The error for `s`, with buffers of the given lengths (qkv for q, k, v, o, do and gradients).
fn forward_error(gpu: &Gpu, s: &AttentionShape, qkv: usize, lse: usize) -> String {
    let b = |len: usize| gpu.buffer("t", len).expect("buffer");
    let (q, k, v, o, l) = (b(qkv), b(qkv), b(qkv), b(qkv), b(lse));
    match attn::attention_forward(gpu, &q, &k, &v, None, &o, &l, s, "test") {
        Ok(_) => panic!("attention_forward accepted {s} with buffers of {qkv} and {lse}"),
        Err(e) => e.to_string(),
    }
}

fn backward_error(gpu: &Gpu, s: &AttentionShape, qkv: usize, lse: usize, delta: usize) -> String {
    let b = |len: usize| gpu.buffer("t", len).expect("buffer");
    let (q, k, v, o, g) = (b(qkv), b(qkv), b(qkv), b(qkv), b(qkv));
    let (l, d) = (b(lse), b(delta));
    let (dq, dk, dv) = (b(qkv), b(qkv), b(qkv));
    match attn::attention_backward(gpu, &q, &k, &v, &o, &g, &l, &d, &dq, &dk, &dv, s, "test") {
        Ok(_) => panic!("attention_backward accepted {s} with buffers of {qkv}, {lse}, {delta}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_shapes_are_refused() {
    let Some(gpu) = test_gpu() else { return };
    let expect = |e: String, parts: &[&str]| {
        for p in parts {
            assert!(e.contains(p), "error {e:?} should mention {p:?}");
        }
    };
    // A head too long for the registers.
    let s = shape(1, 5, 2, 129, false);
    let e = forward_error(gpu, &s, s.qkv_len(), s.lse_len());
    expect(e, &["attention_forward", "D 129", "128"]);
    let e = backward_error(gpu, &s, s.qkv_len(), s.lse_len(), s.lse_len());
    expect(e, &["attention_backward", "D 129", "128"]);
    // Dropout without the row seeds, and a probability of 1.
    let s = dropping(0.5, shape(1, 5, 2, 8, false));
    let e = forward_error(gpu, &s, s.qkv_len(), s.lse_len());
    expect(e, &["attention_forward", "dropout 0.5", "seeds"]);
    let s = dropping(1.0, shape(1, 5, 2, 8, false));
    let e = forward_error(gpu, &s, s.qkv_len(), s.lse_len());
    expect(e, &["attention_forward", "dropout", "[0, 1)"]);
    // Zero-sized dims.
    for s in [
        shape(0, 5, 2, 8, false),
        shape(1, 0, 2, 8, true),
        shape(1, 5, 0, 8, false),
        AttentionShape {
            head_dim: 0,
            ..shape(1, 5, 2, 8, false)
        },
    ] {
        let e = forward_error(gpu, &s, 80, 10);
        expect(e, &["attention_forward", &s.to_string(), "at least 1"]);
    }
    // Buffers smaller than the shape: q/k/v (a large enough buffer is 1536 values in the pool's
    // size classes, so the shape must need more), lse, and the backward's delta scratch.
    let s = shape(3, 33, 4, 32, true);
    let e = forward_error(gpu, &s, s.qkv_len() / 2, s.lse_len());
    expect(
        e,
        &["attention_forward", "buffer q", "[B 3, T 33, H 4, D 32]"],
    );
    let e = forward_error(gpu, &s, s.qkv_len(), 64);
    expect(e, &["attention_forward", "buffer lse", "needs 396"]);
    let e = backward_error(gpu, &s, s.qkv_len(), s.lse_len(), 64);
    expect(e, &["attention_backward", "buffer delta", "needs 396"]);
}
