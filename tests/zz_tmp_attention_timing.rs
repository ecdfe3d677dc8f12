//! Temporary timing scratch (deleted before hand-off).
//! Not part of the project.
mod common;
use common::{rand_vec, rng};
use sinter::sinter_device::kernels::attention::{self as attn, AttentionShape};
use sinter::sinter_device::testing::test_gpu;
use sinter::sinter_model::cpu;
use std::time::Instant;

#[test]
fn time_attention() {
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (bb, tt, hh, dd) = (env("AB", 32), env("AT", 64), env("AH", 4), env("AD", 32));
    for causal in [false, true] {
        let s = AttentionShape {
            batch: bb,
            seq: tt,
            heads: hh,
            head_dim: dd,
            causal,
            scale: 1.0 / (dd as f32).sqrt(),
        };
        let n = s.qkv_len();
        let nl = s.lse_len();
        let mut r = rng(1);
        let q = rand_vec(&mut r, n, -2.0, 2.0);
        let k = rand_vec(&mut r, n, -2.0, 2.0);
        let v = rand_vec(&mut r, n, -1.0, 1.0);
        let g = rand_vec(&mut r, n, -1.0, 1.0);
        let (mut o, mut lse) = (vec![0f32; n], vec![0f32; nl]);
        let (mut dq, mut dk, mut dv) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        let mut best = (f64::MAX, f64::MAX);
        for _ in 0..10 {
            let t = Instant::now();
            cpu::attention::attention_forward(&q, &k, &v, &mut o, &mut lse, &s);
            let f = t.elapsed().as_secs_f64();
            let t = Instant::now();
            cpu::attention::attention_backward(
                &q, &k, &v, &o, &g, &lse, &mut dq, &mut dk, &mut dv, &s,
            );
            best = (best.0.min(f), best.1.min(t.elapsed().as_secs_f64()));
        }
        eprintln!(
            "CPU {s}: forward {:.2} ms, backward {:.2} ms",
            best.0 * 1e3,
            best.1 * 1e3
        );
        let Some(gpu) = test_gpu() else { return };
        let up = |x: &[f32]| gpu.upload("x", x).unwrap();
        let (qb, kb, vb, gb) = (up(&q), up(&k), up(&v), up(&g));
        let b = |l| gpu.buffer("o", l).unwrap();
        let (ob, lb, db, dqb, dkb, dvb) = (b(n), b(nl), b(nl), b(n), b(n), b(n));
        let fwd = attn::attention_forward(gpu, &qb, &kb, &vb, &ob, &lb, &s, "t").unwrap();
        let bwd = attn::attention_backward(
            gpu, &qb, &kb, &vb, &ob, &gb, &lb, &db, &dqb, &dkb, &dvb, &s, "t",
        )
        .unwrap();
        let mut best = (f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..5 {
            let t = Instant::now();
            gpu.run(&[&fwd], &[(&lb, 1)]).unwrap();
            let f = t.elapsed().as_secs_f64();
            let t = Instant::now();
            gpu.run(&[&bwd[0]], &[(&dqb, 1)]).unwrap();
            let b1 = t.elapsed().as_secs_f64();
            let t = Instant::now();
            gpu.run(&[&bwd[1]], &[(&dkb, 1)]).unwrap();
            best = (
                best.0.min(f),
                best.1.min(b1),
                best.2.min(t.elapsed().as_secs_f64()),
            );
        }
        eprintln!(
            "GPU {s}: forward {:.2} ms ({:.2} GFLOP/s), dq {:.2} ms, dkdv {:.2} ms",
            best.0 * 1e3,
            fwd.flops as f64 / best.0 / 1e9,
            best.1 * 1e3,
            best.2 * 1e3
        );
    }
}
