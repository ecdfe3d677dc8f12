//! The cross-entropy, accuracy-count and optimizer (SGD, Adam, AdamW) kernels on an adapter
//! against their CPU references (run in f64): extreme logits, bad targets, several update steps.

mod common;

use common::{assert_close, out_buffer, rand_classes, rand_vec, rng, run_checked, to_f64};
use rand::Rng;
use sinter::sinter_device::kernels::loss::{self, CrossEntropyShape};
use sinter::sinter_device::kernels::optim::{self, AdamConfig, SgdConfig};
use sinter::sinter_device::testing::test_gpu;
use sinter::sinter_model::cpu;

/// Cross-entropy: exp and log per logit, summed per row and over rows in f32.
const CE_ATOL: f64 = 1e-5;
const CE_RTOL: f64 = 1e-5;
/// Cross-entropy gradient entries are O(dloss / rows): atol is relative to that scale.
const CE_GRAD_ATOL_PER_UNIT: f64 = 1e-5;
const CE_GRAD_RTOL: f64 = 1e-4;
/// A few steps of f32 updates of O(1) parameters.
const OPTIM_ATOL: f64 = 1e-6;
const OPTIM_RTOL: f64 = 1e-5;

/// Logits in [-scale, scale] and valid targets.
fn ce_input(s: &CrossEntropyShape, seed: u64, scale: f32) -> (Vec<f32>, Vec<f32>) {
    let mut r = rng(seed);
    let logits = rand_vec(&mut r, s.rows * s.classes, -scale, scale);
    let targets = rand_classes(&mut r, s.rows, s.classes);
    (logits, targets)
}

const CE_SHAPES: [(usize, usize); 8] = [
    (1, 1),
    (1, 10),
    (7, 13),
    (64, 10),
    (3, 300),
    (5, 1000),
    (100_000, 10),
    (33, 17),
];

#[test]
fn cross_entropy_forward_matches_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (k, &(rows, classes)) in CE_SHAPES.iter().enumerate() {
        for scale in [3.0f32, 80.0] {
            let s = CrossEntropyShape { rows, classes };
            let (logits, targets) = ce_input(&s, 500 + k as u64, scale);
            let lb = gpu.upload("logits", &logits).unwrap();
            let tb = gpu.upload("targets", &targets).unwrap();
            let out = out_buffer(gpu, "loss", 1);
            let d = loss::cross_entropy(gpu, &lb, &tb, &out, &s, "test").unwrap();
            let what = format!("cross_entropy [{rows}, {classes}] logits ±{scale}");
            let got = run_checked(gpu, &what, &d, &out, 1);
            let want = cpu::loss::cross_entropy(&to_f64(&logits), &to_f64(&targets), &s);
            assert!(got[0].is_finite(), "{what}: not finite: {}", got[0]);
            assert_close(&what, &got, &[want], CE_ATOL, CE_RTOL);
        }
    }
}

#[test]
fn cross_entropy_grad_matches_cpu() {
    let Some(gpu) = test_gpu() else { return };
    let dloss = 1.7f32;
    for (k, &(rows, classes)) in CE_SHAPES.iter().enumerate() {
        for scale in [3.0f32, 80.0] {
            let s = CrossEntropyShape { rows, classes };
            let (logits, targets) = ce_input(&s, 600 + k as u64, scale);
            let lb = gpu.upload("logits", &logits).unwrap();
            let tb = gpu.upload("targets", &targets).unwrap();
            let db = gpu.upload("dloss", &[dloss]).unwrap();
            let out = out_buffer(gpu, "dlogits", logits.len());
            let d = loss::cross_entropy_grad(gpu, &lb, &tb, &db, &out, &s, "test").unwrap();
            let what = format!("cross_entropy_grad [{rows}, {classes}] logits ±{scale}");
            let got = run_checked(gpu, &what, &d, &out, logits.len());
            let mut want = vec![0.0; logits.len()];
            cpu::loss::cross_entropy_grad(
                &to_f64(&logits),
                &to_f64(&targets),
                dloss as f64,
                &mut want,
                &s,
            );
            let atol = CE_GRAD_ATOL_PER_UNIT * dloss as f64 / rows as f64;
            assert_close(&what, &got, &want, atol, CE_GRAD_RTOL);
        }
    }
}

#[test]
fn count_correct_matches_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (k, &(rows, classes)) in CE_SHAPES.iter().enumerate() {
        let s = CrossEntropyShape { rows, classes };
        let mut r = rng(700 + k as u64);
        // Small integer logits make ties common; half the targets are the first argmax.
        let logits: Vec<f32> = (0..rows * classes)
            .map(|_| r.random_range(0..4) as f32)
            .collect();
        let mut targets = rand_classes(&mut r, rows, classes);
        for (row, t) in logits.chunks(classes).zip(targets.iter_mut()) {
            if r.random::<bool>() {
                let m = row.iter().copied().fold(f32::MIN, f32::max);
                *t = row.iter().position(|&v| v == m).unwrap() as f32;
            }
        }
        let lb = gpu.upload("logits", &logits).unwrap();
        let tb = gpu.upload("targets", &targets).unwrap();
        let out = out_buffer(gpu, "count", 1);
        let d = loss::count_correct(gpu, &lb, &tb, &out, &s, "test").unwrap();
        let what = format!("count_correct [{rows}, {classes}]");
        let got = run_checked(gpu, &what, &d, &out, 1);
        let want = cpu::loss::count_correct(&logits, &targets, &s);
        assert_eq!(got[0], want as f32, "{what}");
    }
}

#[test]
fn bad_targets_make_nan_without_reading_out_of_bounds() {
    let Some(gpu) = test_gpu() else { return };
    let s = CrossEntropyShape {
        rows: 4,
        classes: 3,
    };
    let logits = rand_vec(&mut rng(800), 12, -1.0, 1.0);
    for bad in [3.0f32, -1.0, 1.5, f32::NAN, 1e9] {
        let targets = [0.0, bad, 2.0, 1.0];
        let lb = gpu.upload("logits", &logits).unwrap();
        let tb = gpu.upload("targets", &targets).unwrap();
        let db = gpu.upload("dloss", &[1.0f32]).unwrap();
        let (lo, go, co) = (
            gpu.buffer("loss", 1).unwrap(),
            gpu.buffer("dlogits", 12).unwrap(),
            gpu.buffer("count", 1).unwrap(),
        );
        let d1 = loss::cross_entropy(gpu, &lb, &tb, &lo, &s, "test").unwrap();
        let d2 = loss::cross_entropy_grad(gpu, &lb, &tb, &db, &go, &s, "test").unwrap();
        let d3 = loss::count_correct(gpu, &lb, &tb, &co, &s, "test").unwrap();
        let got = gpu
            .run(&[&d1, &d2, &d3], &[(&lo, 1), (&go, 12), (&co, 1)])
            .unwrap();
        let (l64, t64) = (to_f64(&logits), to_f64(&targets));
        assert!(
            got[0][0].is_nan(),
            "cross_entropy with target {bad}: {}",
            got[0][0]
        );
        assert!(
            cpu::loss::cross_entropy(&l64, &t64, &s).is_nan(),
            "cpu cross_entropy with target {bad}"
        );
        let mut want = vec![0.0; 12];
        cpu::loss::cross_entropy_grad(&l64, &t64, 1.0, &mut want, &s);
        // Row 1 is NaN, the other rows are the ordinary gradient.
        assert_close(
            &format!("cross_entropy_grad with target {bad}"),
            &got[1],
            &want,
            1e-6,
            1e-5,
        );
        assert!(got[1][3..6].iter().all(|v| v.is_nan()));
        assert_eq!(
            got[2][0],
            cpu::loss::count_correct(&logits, &targets, &s) as f32
        );
    }
}

const SGD_CONFIGS: [(SgdConfig, f32); 4] = [
    (
        SgdConfig {
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        },
        1.0,
    ),
    (
        SgdConfig {
            momentum: 0.9,
            weight_decay: 0.0,
            nesterov: false,
        },
        1.0,
    ),
    (
        SgdConfig {
            momentum: 0.9,
            weight_decay: 1e-2,
            nesterov: true,
        },
        1.0,
    ),
    (
        SgdConfig {
            momentum: 0.8,
            weight_decay: 5e-4,
            nesterov: false,
        },
        0.5,
    ),
];

#[test]
fn sgd_steps_match_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (k, &(cfg, scale)) in SGD_CONFIGS.iter().enumerate() {
        for len in [1, 1003, 70_001] {
            let mut r = rng(900 + k as u64);
            let p0 = rand_vec(&mut r, len, -1.0, 1.0);
            let (pb, vb) = (
                gpu.upload("p", &p0).unwrap(),
                gpu.upload("v", &vec![0.0f32; len]).unwrap(),
            );
            let gb = gpu.buffer("g", len).unwrap();
            let sb = gpu.upload("scale", &[scale]).unwrap();
            let hb = gpu.upload("hyper", &[0.0f32; 3]).unwrap();
            // Prepared once: every step only rewrites the grad and hyper buffers, like a training plan.
            let d = optim::sgd(gpu, &gb, &sb, &hb, &pb, &vb, len, &cfg, "test").unwrap();
            let (mut p, mut v) = (to_f64(&p0), vec![0.0; len]);
            for step in 0..4 {
                let g = rand_vec(&mut r, len, -1.0, 1.0);
                let lr = 0.1f32 / (step + 1) as f32;
                gpu.write(&gb, &g);
                gpu.write(&hb, &[lr, 0.0, 0.0]);
                let got = gpu.run(&[&d], &[(&pb, len), (&vb, len)]).unwrap();
                cpu::optim::sgd(&mut p, &to_f64(&g), &mut v, scale as f64, lr as f64, &cfg);
                let what = format!("sgd {cfg:?} scale {scale} len {len} step {step}");
                assert_close(
                    &format!("{what} param"),
                    &got[0],
                    &p,
                    OPTIM_ATOL,
                    OPTIM_RTOL,
                );
                assert_close(
                    &format!("{what} velocity"),
                    &got[1],
                    &v,
                    OPTIM_ATOL,
                    OPTIM_RTOL,
                );
            }
        }
    }
}

const ADAM_CONFIGS: [(AdamConfig, f32); 3] = [
    (
        AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        },
        1.0,
    ),
    (
        AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
            decoupled: false,
        },
        0.5,
    ),
    (
        AdamConfig {
            beta1: 0.85,
            beta2: 0.99,
            eps: 1e-6,
            weight_decay: 0.1,
            decoupled: true,
        },
        1.0,
    ),
];

#[test]
fn adam_and_adamw_steps_match_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (k, &(cfg, scale)) in ADAM_CONFIGS.iter().enumerate() {
        // 1004: a length divisible by 4 (the 4-wide kernel).
        for len in [1, 1003, 1004, 70_001] {
            let mut r = rng(1000 + k as u64);
            let p0 = rand_vec(&mut r, len, -1.0, 1.0);
            let zeros = vec![0.0f32; len];
            let pb = gpu.upload("p", &p0).unwrap();
            let (mb, vb) = (
                gpu.upload("m", &zeros).unwrap(),
                gpu.upload("v", &zeros).unwrap(),
            );
            let gb = gpu.buffer("g", len).unwrap();
            let sb = gpu.upload("scale", &[scale]).unwrap();
            let hb = gpu.upload("hyper", &[0.0f32; 3]).unwrap();
            let d = optim::adam(gpu, &gb, &sb, &hb, &pb, &mb, &vb, len, &cfg, "test").unwrap();
            let (mut p, mut m, mut v) = (to_f64(&p0), vec![0.0; len], vec![0.0; len]);
            for t in 1..=4 {
                let g = rand_vec(&mut r, len, -1.0, 1.0);
                let hyper = optim::adam_hyper(0.01, &cfg, t);
                gpu.write(&gb, &g);
                gpu.write(&hb, &hyper);
                let got = gpu
                    .run(&[&d], &[(&pb, len), (&mb, len), (&vb, len)])
                    .unwrap();
                let [lr, bc1, bc2] = hyper.map(|h| h as f64);
                cpu::optim::adam(
                    &mut p,
                    &to_f64(&g),
                    &mut m,
                    &mut v,
                    scale as f64,
                    lr,
                    bc1,
                    bc2,
                    &cfg,
                );
                let what = format!("adam {cfg:?} scale {scale} len {len} step {t}");
                assert_close(
                    &format!("{what} param"),
                    &got[0],
                    &p,
                    OPTIM_ATOL,
                    OPTIM_RTOL,
                );
                assert_close(&format!("{what} m"), &got[1], &m, OPTIM_ATOL, OPTIM_RTOL);
                assert_close(&format!("{what} v"), &got[2], &v, OPTIM_ATOL, OPTIM_RTOL);
            }
        }
    }
}

#[test]
fn adam_hyper_is_lr_and_bias_corrections() {
    let cfg = AdamConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
    };
    let [lr, bc1, bc2] = optim::adam_hyper(3e-4, &cfg, 2);
    assert_eq!(lr, 3e-4);
    assert!((bc1 as f64 - (1.0 - 0.81)).abs() < 1e-6, "bc1 {bc1}");
    assert!(
        (bc2 as f64 - (1.0 - 0.999f64 * 0.999)).abs() < 1e-7,
        "bc2 {bc2}"
    );
}

#[test]
fn cpu_f32_cross_entropy_stays_close_to_f64() {
    // The CPU backend trains in f32: its row sums must not drift over many rows.
    let s = CrossEntropyShape {
        rows: 100_000,
        classes: 10,
    };
    let (logits, targets) = ce_input(&s, 1101, 3.0);
    let got = cpu::loss::cross_entropy(&logits, &targets, &s);
    let want = cpu::loss::cross_entropy(&to_f64(&logits), &to_f64(&targets), &s);
    assert_close(
        "cpu f32 cross_entropy [100000, 10]",
        &[got],
        &[want],
        CE_ATOL,
        CE_RTOL,
    );
}
