//! The tuner's trials of the attention layouts ([`AttentionVariant`]): one choice serves the
//! forward and both backward steps, so each candidate is checked on all four outputs and timed on
//! the three dispatches together.
//!
//! The check runs on a small instance of the shape's class (one batch row, two heads, 13 rows:
//! blocks of 8 and of 64 both end part-way; the same head size, mask and dropout) against an f64
//! reference written out here; the timing runs on the shape met. Every output must lie within
//! 1e-5 + 1e-4·|reference| (the kernel tests' own bounds are tighter; a wrong lane or row is off
//! by far more).

use super::measure::{scratch, values, Measured, Timer};
use crate::gpu::{Dispatch, Gpu};
use crate::kernels::attention::{
    attention_backward_with, attention_forward_with, AttentionGrads, AttentionShape,
    AttentionVariant,
};
use crate::profiler::best_timing;

const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-4;
/// Timed runs of the three dispatches per candidate (the median is kept).
const REPS: usize = 3;
/// The dropout seed of the check's one batch row (a whole number below 2²⁴, as the seeds are).
const SEED: u32 = 4_242_424;

/// o, dq, dk and dv of one instance, [B, T, H, D] each.
struct Outputs<T> {
    o: Vec<T>,
    dq: Vec<T>,
    dk: Vec<T>,
    dv: Vec<T>,
}

/// Inputs of one instance: q, k, v and the output gradient, [B, T, H, D] each.
struct Inputs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    dout: Vec<f32>,
}

impl Inputs {
    fn of(s: &AttentionShape) -> Self {
        let n = s.qkv_len();
        Inputs {
            q: values(n, 11),
            k: values(n, 12),
            v: values(n, 13),
            dout: values(n, 14),
        }
    }
}

/// Trials of the attention `candidates` on `s`.
pub(super) fn attention(
    gpu: &Gpu,
    timer: &mut Timer<'_>,
    s: &AttentionShape,
    candidates: &[AttentionVariant],
) -> Measured {
    let mut m = Measured::default();
    let small = AttentionShape {
        batch: 1,
        seq: 13,
        heads: 2,
        ..*s
    };
    let small_inputs = Inputs::of(&small);
    let want = reference(&small, &small_inputs);
    let full_inputs = Inputs::of(s);
    for &v in candidates {
        let name = v.entry("attention_forward").to_string();
        let checked = match run(gpu, v, &small, &small_inputs, true) {
            Ok(Some(got)) => compare(&got, &want),
            Ok(None) => Err("its run read nothing back".to_string()),
            Err(e) => Err(format!("its run failed: {e}")),
        };
        if let Err(why) = checked {
            m.rejected.insert(name, why);
            continue;
        }
        timer.tuner.note_timed(timer.key, &name);
        match run(gpu, v, s, &full_inputs, false) {
            Ok(_) => {}
            Err(e) => {
                m.rejected.insert(name, format!("its run failed: {e}"));
                continue;
            }
        }
        match time(gpu, v, s, &full_inputs) {
            Ok(us) => {
                m.median_us.insert(name, us);
            }
            Err(e) => {
                m.rejected
                    .insert(name, format!("its timed run failed: {e}"));
            }
        }
    }
    m
}

/// The buffers of one instance, the trial's own (not the pool's).
struct Buffers {
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    dout: wgpu::Buffer,
    seeds: Option<wgpu::Buffer>,
    o: wgpu::Buffer,
    lse: wgpu::Buffer,
    delta: wgpu::Buffer,
    dq: wgpu::Buffer,
    dk: wgpu::Buffer,
    dv: wgpu::Buffer,
}

impl Buffers {
    fn new(gpu: &Gpu, s: &AttentionShape, x: &Inputs) -> crate::Result<Self> {
        let n = s.qkv_len();
        let seeds = vec![SEED as f32; s.batch];
        Ok(Buffers {
            q: scratch(gpu, "tuning q", Some(&x.q), n)?,
            k: scratch(gpu, "tuning k", Some(&x.k), n)?,
            v: scratch(gpu, "tuning v", Some(&x.v), n)?,
            dout: scratch(gpu, "tuning do", Some(&x.dout), n)?,
            seeds: match s.has_dropout() {
                true => Some(scratch(gpu, "tuning seeds", Some(&seeds), s.batch)?),
                false => None,
            },
            o: scratch(gpu, "tuning o", None, n)?,
            lse: scratch(gpu, "tuning lse", None, s.lse_len())?,
            delta: scratch(gpu, "tuning delta", None, s.rows())?,
            dq: scratch(gpu, "tuning dq", None, n)?,
            dk: scratch(gpu, "tuning dk", None, n)?,
            dv: scratch(gpu, "tuning dv", None, n)?,
        })
    }

    /// The forward and the two backward steps of `variant`, in order.
    fn dispatches(
        &self,
        gpu: &Gpu,
        variant: AttentionVariant,
        s: &AttentionShape,
    ) -> crate::Result<Vec<Dispatch>> {
        let b = self;
        let forward = attention_forward_with(
            gpu,
            variant,
            &b.q,
            &b.k,
            &b.v,
            b.seeds.as_ref(),
            &b.o,
            &b.lse,
            s,
            "tuning",
        )?;
        let grads = AttentionGrads {
            dq: &b.dq,
            dk: &b.dk,
            dv: &b.dv,
        };
        let inputs = [&b.q, &b.k, &b.v, &b.o, &b.dout, &b.lse, &b.delta];
        let mut all = vec![forward];
        all.extend(attention_backward_with(
            gpu, variant, inputs, grads, s, "tuning",
        )?);
        Ok(all)
    }
}

/// Runs forward and backward of `variant` on `s` once; with `read`, returns o, dq, dk and dv.
fn run(
    gpu: &Gpu,
    variant: AttentionVariant,
    s: &AttentionShape,
    x: &Inputs,
    read: bool,
) -> crate::Result<Option<Outputs<f32>>> {
    let b = Buffers::new(gpu, s, x)?;
    let ds = b.dispatches(gpu, variant, s)?;
    let refs: Vec<&Dispatch> = ds.iter().collect();
    let n = s.qkv_len();
    let reads = [(&b.o, n), (&b.dq, n), (&b.dk, n), (&b.dv, n)];
    let got = gpu.run(&refs, if read { &reads[..] } else { &[] })?;
    Ok(<[Vec<f32>; 4]>::try_from(got)
        .ok()
        .map(|[o, dq, dk, dv]| Outputs { o, dq, dk, dv }))
}

/// The median over [`REPS`] runs of the three dispatches' summed time, in microseconds.
fn time(
    gpu: &Gpu,
    variant: AttentionVariant,
    s: &AttentionShape,
    x: &Inputs,
) -> crate::Result<f64> {
    let b = Buffers::new(gpu, s, x)?;
    let ds = b.dispatches(gpu, variant, s)?;
    let per_rep = ds.len();
    let refs: Vec<&Dispatch> = (0..REPS).flat_map(|_| ds.iter()).collect();
    let run = gpu.run_timed(&refs, &[], best_timing(gpu))?;
    let mut us: Vec<f64> = run
        .dispatches
        .chunks(per_rep)
        .map(|rep| rep.iter().map(|t| t.duration_ns / 1e3).sum())
        .collect();
    us.sort_by(f64::total_cmp);
    Ok(us[us.len() / 2])
}

/// The first output outside the tolerance, named.
fn compare(got: &Outputs<f32>, want: &Outputs<f64>) -> Result<(), String> {
    let pairs = [
        ("o", &got.o, &want.o),
        ("dq", &got.dq, &want.dq),
        ("dk", &got.dk, &want.dk),
        ("dv", &got.dv, &want.dv),
    ];
    for (name, g, w) in pairs {
        if g.len() != w.len() {
            return Err(format!(
                "{name}: {} values read, {} expected",
                g.len(),
                w.len()
            ));
        }
        for (i, (&g, &w)) in g.iter().zip(w.iter()).enumerate() {
            let g = g as f64;
            if g.is_nan() || (g - w).abs() > ATOL + RTOL * w.abs() {
                return Err(format!(
                    "{name}[{i}] = {g} where the CPU reference gives {w}"
                ));
            }
        }
    }
    Ok(())
}

/// Attention forward and backward in f64, written out: p = softmax(scale·q·kᵀ) over the keys
/// each query sees, weights dropped by the shape's rule with the seed [`SEED`] for every batch
/// row, o = Σ p·z·v; dS = p·(z·(do·v) − Δ) with Δ = do·o, dq = scale·Σ dS·k, dk = scale·Σ dS·q,
/// dv = Σ p·z·do.
fn reference(s: &AttentionShape, x: &Inputs) -> Outputs<f64> {
    let (t, h, d) = (s.seq, s.heads, s.head_dim);
    let at = |b: usize, i: usize, hh: usize| ((b * t + i) * h + hh) * d;
    let n = s.qkv_len();
    let mut out = Outputs {
        o: vec![0.0; n],
        dq: vec![0.0; n],
        dk: vec![0.0; n],
        dv: vec![0.0; n],
    };
    let scale = s.scale as f64;
    let dot = |a: &[f32], ai: usize, b: &[f32], bi: usize| -> f64 {
        (0..d).map(|e| a[ai + e] as f64 * b[bi + e] as f64).sum()
    };
    for b in 0..s.batch {
        for hh in 0..h {
            let key = AttentionShape::head_key(SEED, hh);
            let z = |i: usize, j: usize| match (s.has_dropout(), s.keeps(key, i, j)) {
                (false, _) => 1.0,
                (true, true) => s.keep_scale() as f64,
                (true, false) => 0.0,
            };
            let sees = |i: usize, j: usize| !s.causal || j <= i;
            // p[i][j], 0 where query i does not see key j.
            let p: Vec<Vec<f64>> = (0..t)
                .map(|i| {
                    let scores: Vec<f64> = (0..t)
                        .map(|j| scale * dot(&x.q, at(b, i, hh), &x.k, at(b, j, hh)))
                        .collect();
                    let max = (0..t)
                        .filter(|&j| sees(i, j))
                        .map(|j| scores[j])
                        .fold(f64::MIN, f64::max);
                    let e: Vec<f64> = (0..t)
                        .map(|j| {
                            if sees(i, j) {
                                (scores[j] - max).exp()
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    let total: f64 = e.iter().sum();
                    e.into_iter().map(|v| v / total).collect()
                })
                .collect();
            for (i, pi) in p.iter().enumerate() {
                for e in 0..d {
                    out.o[at(b, i, hh) + e] = pi
                        .iter()
                        .enumerate()
                        .map(|(j, &pij)| pij * z(i, j) * x.v[at(b, j, hh) + e] as f64)
                        .sum();
                }
            }
            for (i, pi) in p.iter().enumerate() {
                let qi = at(b, i, hh);
                let delta: f64 = (0..d).map(|e| x.dout[qi + e] as f64 * out.o[qi + e]).sum();
                for (j, &pij) in pi.iter().enumerate() {
                    let kj = at(b, j, hh);
                    let ds = pij * (z(i, j) * dot(&x.dout, qi, &x.v, kj) - delta);
                    let pz = pij * z(i, j);
                    for e in 0..d {
                        out.dq[qi + e] += scale * ds * x.k[kj + e] as f64;
                        out.dk[kj + e] += scale * ds * x.q[qi + e] as f64;
                        out.dv[kj + e] += pz * x.dout[qi + e] as f64;
                    }
                }
            }
        }
    }
    out
}
