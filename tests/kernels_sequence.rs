//! The sequence-model kernels (softmax, layer norm, embedding) on an adapter against their CPU
//! references (run in f64), over odd and long rows, extreme logits, repeated and invalid ids, bad input.

mod common;

use common::{
    assert_close, out_buffer, rand_classes, rand_vec, rng, run_checked, run_checked_all, to_f64,
};
use sinter::sinter_device::kernels::embedding::{self as emb, EmbeddingGradKernel, EmbeddingShape};
use sinter::sinter_device::kernels::norm::{self, LayerNormShape};
use sinter::sinter_device::kernels::softmax::{self as sm, RowsShape};
use sinter::sinter_device::testing::test_gpu;
use sinter::sinter_device::{DeviceError, Gpu};
use sinter::sinter_model::cpu;

/// Softmax: an exp and a division per value plus a sum over the row, all relative to the row's
/// largest term; values far below the max are tiny, hence the atol.
const SOFTMAX_ATOL: f64 = 1e-7;
const SOFTMAX_RTOL: f64 = 2e-5;
/// Log-softmax: (x − max) − log Σ: absolute error of a few ULP of the largest magnitude (±160
/// for logits of ±80) plus the error of log Σ.
const LOG_SOFTMAX_ATOL: f64 = 2e-5;
const LOG_SOFTMAX_RTOL: f64 = 2e-6;
/// Softmax gradients: a row sum of cols products in f32 (error grows with √cols·|terms|), then one
/// multiply-add per element.
const SOFTMAX_GRAD_ATOL: f64 = 1e-6;
const SOFTMAX_GRAD_ATOL_PER_COL: f64 = 2e-8;
const SOFTMAX_GRAD_RTOL: f64 = 2e-5;
/// Layer norm: two row sums and an inverse square root in f32, for O(1) outputs.
const LN_ATOL: f64 = 2e-5;
const LN_RTOL: f64 = 2e-5;
/// Layer norm input gradient: the statistics and two more row sums.
const LN_GRAD_ATOL: f64 = 1e-5;
const LN_GRAD_RTOL: f64 = 1e-5;
/// Layer norm gamma gradient: a sum over rows of O(1) terms; the error grows with the rows.
const LN_GAMMA_ATOL: f64 = 2e-5;
const LN_GAMMA_ATOL_PER_ROW: f64 = 2e-7;
const LN_GAMMA_RTOL: f64 = 2e-5;
/// A row of x offset by 1000: two-pass statistics keep x̂ accurate to the error of the mean
/// (≈1e-4 here), where E[x²] − E[x]² in f32 would be off by tens of percent.
const LN_OFFSET_ATOL: f64 = 2e-3;
/// Embedding lookup is a copy: exact.
const EMB_ATOL: f64 = 0.0;
/// Embedding gradient: sums of the repeats of one token, in f32.
const EMB_GRAD_ATOL: f64 = 1e-5;
const EMB_GRAD_RTOL: f64 = 1e-5;

/// Odd shapes, shapes on both sides of the one-invocation-per-row / workgroup-per-row switch,
/// and a vocabulary-sized row.
const ROW_SHAPES: [(usize, usize); 9] = [
    (1, 1),
    (7, 13),
    (33, 65),
    (1000, 65),
    (3, 255),
    (5, 256),
    (4, 777),
    (3, 5000),
    (2, 50257),
];

// ---------------------------------------------------------------------------------------------
// softmax

/// Logits of ±8, with a few rows of extremes: ±80 mixed, and a constant row of 80.
fn logits(seed: u64, rows: usize, cols: usize) -> Vec<f32> {
    let mut x = rand_vec(&mut rng(seed), rows * cols, -8.0, 8.0);
    if rows > 2 {
        let big = rand_vec(&mut rng(seed + 1), cols, -80.0, 80.0);
        x[cols..2 * cols].copy_from_slice(&big);
        x[2 * cols..3 * cols].fill(80.0);
    }
    x
}

fn forward_ref(log: bool, x: &[f32], s: &RowsShape) -> Vec<f64> {
    let mut want = vec![0.0; s.len()];
    if log {
        cpu::softmax::log_softmax(&to_f64(x), &mut want, s);
    } else {
        cpu::softmax::softmax(&to_f64(x), &mut want, s);
    }
    want
}

fn run_forward(gpu: &Gpu, log: bool, x: &[f32], s: &RowsShape) -> Vec<f32> {
    let xb = gpu.upload("x", x).unwrap();
    let yb = out_buffer(gpu, "y", s.len());
    let d = if log {
        sm::log_softmax(gpu, &xb, &yb, s, "test").unwrap()
    } else {
        sm::softmax(gpu, &xb, &yb, s, "test").unwrap()
    };
    run_checked(gpu, &format!("softmax log={log} {s:?}"), &d, &yb, s.len())
}

#[test]
fn softmax_and_log_softmax_match_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (k, &(rows, cols)) in ROW_SHAPES.iter().enumerate() {
        let s = RowsShape { rows, cols };
        let x = logits(100 + k as u64, rows, cols);
        for log in [false, true] {
            let got = run_forward(gpu, log, &x, &s);
            let want = forward_ref(log, &x, &s);
            assert!(
                got.iter().all(|v| v.is_finite()),
                "softmax log={log} {s:?}: non-finite output"
            );
            let (what, atol, rtol) = if log {
                ("log_softmax", LOG_SOFTMAX_ATOL, LOG_SOFTMAX_RTOL)
            } else {
                ("softmax", SOFTMAX_ATOL, SOFTMAX_RTOL)
            };
            assert_close(
                &format!("{what} [{rows}, {cols}] (tree {})", s.uses_tree()),
                &got,
                &want,
                atol,
                rtol,
            );
        }
    }
}

fn grad_ref(log: bool, y: &[f32], dy: &[f32], s: &RowsShape) -> Vec<f64> {
    let mut want = vec![0.0; s.len()];
    if log {
        cpu::softmax::log_softmax_grad(&to_f64(y), &to_f64(dy), &mut want, s);
    } else {
        cpu::softmax::softmax_grad(&to_f64(y), &to_f64(dy), &mut want, s);
    }
    want
}

#[test]
fn softmax_grads_match_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (k, &(rows, cols)) in ROW_SHAPES.iter().enumerate() {
        let s = RowsShape { rows, cols };
        let x = logits(200 + k as u64, rows, cols);
        let dy = rand_vec(&mut rng(300 + k as u64), s.len(), -1.0, 1.0);
        for log in [false, true] {
            // The forward output as the model would hold it: f32.
            let y: Vec<f32> = forward_ref(log, &x, &s).iter().map(|&v| v as f32).collect();
            let (yb, dyb) = (gpu.upload("y", &y).unwrap(), gpu.upload("dy", &dy).unwrap());
            let dxb = out_buffer(gpu, "dx", s.len());
            let d = if log {
                sm::log_softmax_grad(gpu, &yb, &dyb, &dxb, &s, "test").unwrap()
            } else {
                sm::softmax_grad(gpu, &yb, &dyb, &dxb, &s, "test").unwrap()
            };
            let what = format!(
                "{}softmax_grad [{rows}, {cols}] (tree {})",
                if log { "log_" } else { "" },
                s.uses_tree()
            );
            let got = run_checked(gpu, &what, &d, &dxb, s.len());
            let atol = SOFTMAX_GRAD_ATOL + SOFTMAX_GRAD_ATOL_PER_COL * cols as f64;
            assert_close(
                &what,
                &got,
                &grad_ref(log, &y, &dy, &s),
                atol,
                SOFTMAX_GRAD_RTOL,
            );
        }
    }
}

#[test]
fn softmax_handles_a_two_dimensional_grid() {
    let Some(gpu) = test_gpu() else { return };
    // More rows than one grid dimension holds, on the workgroup-per-row path.
    let rows = gpu.limits.max_compute_workgroups_per_dimension as usize + 3;
    let s = RowsShape { rows, cols: 256 };
    if (s.len() as u64) * 4 > gpu.max_binding() {
        eprintln!(
            "softmax 2-D grid case skipped: {} floats exceed the binding limit",
            s.len()
        );
        return;
    }
    let x = rand_vec(&mut rng(7), s.len(), -4.0, 4.0);
    let xb = gpu.upload("x", &x).unwrap();
    let yb = out_buffer(gpu, "y", s.len());
    let d = sm::softmax(gpu, &xb, &yb, &s, "test").unwrap();
    assert!(
        d.workgroups[1] > 1,
        "expected a 2-D grid, got {:?}",
        d.workgroups
    );
    let got = run_checked(gpu, "softmax 2-D grid", &d, &yb, s.len());
    assert_close(
        &format!("softmax 2-D grid [{rows}, 256]"),
        &got,
        &forward_ref(false, &x, &s),
        SOFTMAX_ATOL,
        SOFTMAX_RTOL,
    );
}

#[test]
fn a_nan_logit_poisons_only_its_row() {
    let Some(gpu) = test_gpu() else { return };
    // Both paths: one invocation per row and one workgroup per row.
    for cols in [13, 700] {
        let s = RowsShape { rows: 3, cols };
        let mut x = rand_vec(&mut rng(450), s.len(), -4.0, 4.0);
        x[cols + cols / 2] = f32::NAN;
        for log in [false, true] {
            let got = run_forward(gpu, log, &x, &s);
            let want = forward_ref(log, &x, &s);
            assert!(want[cols..2 * cols].iter().all(|v| v.is_nan()));
            let (atol, rtol) = if log {
                (LOG_SOFTMAX_ATOL, LOG_SOFTMAX_RTOL)
            } else {
                (SOFTMAX_ATOL, SOFTMAX_RTOL)
            };
            let what = format!("softmax log={log} [3, {cols}] with a NaN in row 1");
            assert_close(&what, &got, &want, atol, rtol);
        }
    }
}

#[test]
fn cpu_softmax_rows_sum_to_one() {
    for &(rows, cols) in &ROW_SHAPES {
        let s = RowsShape { rows, cols };
        let x = logits(400, rows, cols);
        let mut y = vec![0.0f32; s.len()];
        cpu::softmax::softmax(&x, &mut y, &s);
        for (r, row) in y.chunks(cols).enumerate() {
            let sum: f64 = row.iter().map(|&v| v as f64).sum();
            assert!(
                (sum - 1.0).abs() < 1e-5 && row.iter().all(|&v| (0.0..=1.0).contains(&v)),
                "softmax [{rows}, {cols}] row {r} sums to {sum}"
            );
        }
        let mut ly = vec![0.0f64; s.len()];
        cpu::softmax::log_softmax(&to_f64(&x), &mut ly, &s);
        for (r, row) in ly.chunks(cols).enumerate() {
            let sum: f64 = row.iter().map(|v| v.exp()).sum();
            assert!(
                (sum - 1.0).abs() < 1e-12,
                "log_softmax [{rows}, {cols}] row {r}: Σ exp = {sum}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// layer norm

const LN_SHAPES: [(usize, usize); 9] = [
    (1, 1),
    (7, 13),
    (33, 65),
    (1000, 65),
    (300, 255),
    // Row chunks and column blocks of the gamma gradient both past one (WG ≤ 256).
    (513, 300),
    (5, 256),
    (9, 768),
    (3, 5000),
];

struct LnCase {
    shape: LayerNormShape,
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    dy: Vec<f32>,
}

fn ln_case(seed: u64, rows: usize, dim: usize, offset: f32) -> LnCase {
    let mut r = rng(seed);
    let len = rows * dim;
    LnCase {
        shape: LayerNormShape {
            rows,
            dim,
            eps: 1e-5,
        },
        x: rand_vec(&mut r, len, -2.0, 2.0)
            .into_iter()
            .map(|v| v + offset)
            .collect(),
        gamma: rand_vec(&mut r, dim, 0.5, 1.5),
        beta: rand_vec(&mut r, dim, -0.5, 0.5),
        dy: rand_vec(&mut r, len, -1.0, 1.0),
    }
}

fn run_layer_norm(gpu: &Gpu, c: &LnCase) -> Vec<f32> {
    let len = c.shape.len();
    let xb = gpu.upload("x", &c.x).unwrap();
    let gb = gpu.upload("gamma", &c.gamma).unwrap();
    let bb = gpu.upload("beta", &c.beta).unwrap();
    let yb = out_buffer(gpu, "y", len);
    let d = norm::layer_norm(gpu, &xb, &gb, &bb, &yb, &c.shape, "test").unwrap();
    run_checked(gpu, &format!("layer_norm {:?}", c.shape), &d, &yb, len)
}

fn layer_norm_ref(c: &LnCase) -> Vec<f64> {
    let mut want = vec![0.0; c.shape.len()];
    cpu::norm::layer_norm(
        &to_f64(&c.x),
        &to_f64(&c.gamma),
        &to_f64(&c.beta),
        &mut want,
        &c.shape,
    );
    want
}

#[test]
fn layer_norm_matches_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (k, &(rows, dim)) in LN_SHAPES.iter().enumerate() {
        let c = ln_case(500 + k as u64, rows, dim, 3.0);
        let got = run_layer_norm(gpu, &c);
        let what = format!("layer_norm [{rows}, {dim}] (tree {})", c.shape.uses_tree());
        assert_close(&what, &got, &layer_norm_ref(&c), LN_ATOL, LN_RTOL);
    }
}

#[test]
fn layer_norm_is_accurate_for_rows_far_from_zero() {
    let Some(gpu) = test_gpu() else { return };
    for (rows, dim) in [(64, 65), (8, 768)] {
        let c = ln_case(550, rows, dim, 1000.0);
        let got = run_layer_norm(gpu, &c);
        let what = format!("layer_norm offset 1000 [{rows}, {dim}]");
        assert_close(&what, &got, &layer_norm_ref(&c), LN_OFFSET_ATOL, 0.0);
    }
}

#[test]
fn layer_norm_grads_match_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (k, &(rows, dim)) in LN_SHAPES.iter().enumerate() {
        let c = ln_case(600 + k as u64, rows, dim, 3.0);
        let s = &c.shape;
        let len = s.len();
        let xb = gpu.upload("x", &c.x).unwrap();
        let gb = gpu.upload("gamma", &c.gamma).unwrap();
        let dyb = gpu.upload("dy", &c.dy).unwrap();

        let dxb = out_buffer(gpu, "dx", len);
        let d = norm::layer_norm_grad_input(gpu, &xb, &gb, &dyb, &dxb, s, "test").unwrap();
        let what = format!(
            "layer_norm_grad_input [{rows}, {dim}] (tree {})",
            s.uses_tree()
        );
        let got = run_checked(gpu, &what, &d, &dxb, len);
        let mut want = vec![0.0; len];
        cpu::norm::layer_norm_grad_input(
            &to_f64(&c.x),
            &to_f64(&c.gamma),
            &to_f64(&c.dy),
            &mut want,
            s,
        );
        assert_close(&what, &got, &want, LN_GRAD_ATOL, LN_GRAD_RTOL);

        let dgb = out_buffer(gpu, "dgamma", dim);
        let d = norm::layer_norm_grad_gamma(gpu, &xb, &dyb, &dgb, s, "test").unwrap();
        let what = format!("layer_norm_grad_gamma [{rows}, {dim}]");
        let got = run_checked_all(gpu, &what, &d, &dgb, dim);
        let mut want = vec![0.0; dim];
        cpu::norm::layer_norm_grad_gamma(&to_f64(&c.x), &to_f64(&c.dy), &mut want, s);
        let atol = LN_GAMMA_ATOL + LN_GAMMA_ATOL_PER_ROW * rows as f64;
        assert_close(&what, &got, &want, atol, LN_GAMMA_RTOL);
    }
}

#[test]
fn cpu_layer_norm_output_is_standardized() {
    for &(rows, dim) in LN_SHAPES.iter().filter(|s| s.1 > 1) {
        let mut c = ln_case(700, rows, dim, 5.0);
        c.gamma.fill(1.0);
        c.beta.fill(0.0);
        let mut y = vec![0.0f64; c.shape.len()];
        cpu::norm::layer_norm(
            &to_f64(&c.x),
            &to_f64(&c.gamma),
            &to_f64(&c.beta),
            &mut y,
            &c.shape,
        );
        for (r, row) in y.chunks(dim).enumerate() {
            let n = dim as f64;
            let mean = row.iter().sum::<f64>() / n;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            // var(x̂) = var / (var + eps), a hair under 1 for var ≈ 1.3.
            assert!(
                mean.abs() < 1e-9 && (var - 1.0).abs() < 1e-4,
                "layer_norm [{rows}, {dim}] row {r}: mean {mean}, var {var}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// embedding

fn run_embedding(gpu: &Gpu, ids: &[f32], table: &[f32], s: &EmbeddingShape) -> Vec<f32> {
    let len = s.tokens * s.dim;
    let ib = gpu.upload("ids", ids).unwrap();
    let tb = gpu.upload("table", table).unwrap();
    let ob = out_buffer(gpu, "out", len);
    let d = emb::embedding(gpu, &ib, &tb, &ob, s, "test").unwrap();
    run_checked(gpu, &format!("embedding {s:?}"), &d, &ob, len)
}

/// The embedding-gradient kernels the test adapter runs (the subgroup one where it has subgroups
/// of 8 lanes or more).
fn grad_kernels(gpu: &Gpu) -> Vec<EmbeddingGradKernel> {
    EmbeddingGradKernel::ALL
        .into_iter()
        .filter(|k| k.runs_on(gpu))
        .collect()
}

fn run_embedding_grad(
    gpu: &Gpu,
    kernel: EmbeddingGradKernel,
    ids: &[f32],
    dout: &[f32],
    s: &EmbeddingShape,
) -> Vec<f32> {
    let len = s.vocab * s.dim;
    let ib = gpu.upload("ids", ids).unwrap();
    let gb = gpu.upload("dout", dout).unwrap();
    let tb = out_buffer(gpu, "dtable", len);
    let d = emb::embedding_grad_with(gpu, kernel, &ib, &gb, &tb, s, "test").unwrap();
    let what = format!("{} {s:?}", kernel.entry());
    run_checked(gpu, &what, &d, &tb, len)
}

/// (tokens, vocab, dim): tiny, odd, more columns than a workgroup, and a text-model-like batch
/// where every id repeats about 63 times.
const EMB_SHAPES: [(usize, usize, usize); 6] = [
    (1, 1, 1),
    (7, 13, 5),
    (33, 65, 17),
    (300, 11, 300),
    (1000, 3, 2),
    (4096, 65, 128),
];

#[test]
fn embedding_and_grad_match_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (k, &(tokens, vocab, dim)) in EMB_SHAPES.iter().enumerate() {
        let s = EmbeddingShape { tokens, vocab, dim };
        let mut r = rng(800 + k as u64);
        let ids = rand_classes(&mut r, tokens, vocab);
        let table = rand_vec(&mut r, vocab * dim, -1.0, 1.0);
        let dout = rand_vec(&mut r, tokens * dim, -1.0, 1.0);

        let got = run_embedding(gpu, &ids, &table, &s);
        let mut want = vec![0.0; tokens * dim];
        cpu::embedding::embedding(&to_f64(&ids), &to_f64(&table), &mut want, &s);
        assert_close(&format!("embedding {s:?}"), &got, &want, EMB_ATOL, 0.0);

        let mut want = vec![0.0; vocab * dim];
        cpu::embedding::embedding_grad(&to_f64(&ids), &to_f64(&dout), &mut want, &s);
        for kernel in grad_kernels(gpu) {
            let got = run_embedding_grad(gpu, kernel, &ids, &dout, &s);
            let what = format!("{} {s:?}", kernel.entry());
            assert_close(&what, &got, &want, EMB_GRAD_ATOL, EMB_GRAD_RTOL);
            // No atomics: a second run gives the same bits.
            let again = run_embedding_grad(gpu, kernel, &ids, &dout, &s);
            assert!(
                got.iter()
                    .zip(&again)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{what}: two runs differ"
            );
        }
    }
}

#[test]
fn embedding_grad_sums_repeated_tokens() {
    let Some(gpu) = test_gpu() else { return };
    // Every token is id 2 except one id 0: row 2 is the sum of 299 rows of dout, row 1 is zero.
    let (tokens, vocab, dim) = (300, 3, 4);
    let s = EmbeddingShape { tokens, vocab, dim };
    let mut ids = vec![2.0f32; tokens];
    ids[150] = 0.0;
    // Small integers: every partial sum is exact, so the check is equality.
    let dout: Vec<f32> = (0..tokens * dim).map(|i| (i % 7) as f32 - 3.0).collect();
    let mut want = vec![0.0f32; vocab * dim];
    for (t, &id) in ids.iter().enumerate() {
        for j in 0..dim {
            want[id as usize * dim + j] += dout[t * dim + j];
        }
    }
    for kernel in grad_kernels(gpu) {
        let got = run_embedding_grad(gpu, kernel, &ids, &dout, &s);
        assert_eq!(
            got,
            want,
            "{} {s:?} with one id repeated 299 times",
            kernel.entry()
        );
    }
}

#[test]
fn invalid_ids_give_nan_rows_and_no_gradient() {
    let Some(gpu) = test_gpu() else { return };
    let (vocab, dim) = (5, 3);
    let bad = [-1.0, vocab as f32, 2.5, f32::NAN, f32::INFINITY, -0.5, 1e9];
    let mut ids = vec![1.0, 4.0];
    ids.extend_from_slice(&bad);
    ids.push(0.0);
    let s = EmbeddingShape {
        tokens: ids.len(),
        vocab,
        dim,
    };
    let table = rand_vec(&mut rng(900), vocab * dim, -1.0, 1.0);
    let got = run_embedding(gpu, &ids, &table, &s);
    for (t, &id) in ids.iter().enumerate() {
        let row = &got[t * dim..(t + 1) * dim];
        if bad.iter().any(|b| b.to_bits() == id.to_bits()) {
            assert!(
                row.iter().all(|v| v.is_nan()),
                "embedding: bad id {id} at token {t} gave {row:?}, want NaN"
            );
        } else {
            let v = id as usize;
            assert_eq!(row, &table[v * dim..(v + 1) * dim], "embedding: id {id}");
        }
    }
    let mut want = vec![0.0; s.tokens * dim];
    cpu::embedding::embedding(&to_f64(&ids), &to_f64(&table), &mut want, &s);
    assert_close(&format!("embedding bad ids {s:?}"), &got, &want, 0.0, 0.0);

    let dout = rand_vec(&mut rng(901), s.tokens * dim, -1.0, 1.0);
    let mut want = vec![0.0; vocab * dim];
    cpu::embedding::embedding_grad(&to_f64(&ids), &to_f64(&dout), &mut want, &s);
    for kernel in grad_kernels(gpu) {
        let got = run_embedding_grad(gpu, kernel, &ids, &dout, &s);
        let what = format!("{} bad ids {s:?}", kernel.entry());
        assert!(
            got.iter().all(|v| v.is_finite()),
            "{what}: bad ids leaked: {got:?}"
        );
        assert_close(&what, &got, &want, EMB_GRAD_ATOL, EMB_GRAD_RTOL);
    }
}

#[test]
fn embedding_grad_handles_a_two_dimensional_grid() {
    let Some(gpu) = test_gpu() else { return };
    // One workgroup per table row: more rows than one grid dimension holds.
    let vocab = gpu.limits.max_compute_workgroups_per_dimension as usize + 5;
    let s = EmbeddingShape {
        tokens: 4,
        vocab,
        dim: 1,
    };
    let ids = [0.0, (vocab - 1) as f32, 3.0, (vocab - 1) as f32];
    let dout = [1.0f32, 2.0, 4.0, 8.0];
    let ib = gpu.upload("ids", &ids).unwrap();
    let gb = gpu.upload("dout", &dout).unwrap();
    for kernel in grad_kernels(gpu) {
        let tb = out_buffer(gpu, "dtable", vocab);
        let d = emb::embedding_grad_with(gpu, kernel, &ib, &gb, &tb, &s, "test").unwrap();
        let what = format!("{} 2-D grid", kernel.entry());
        assert!(
            d.workgroups[1] > 1,
            "{what}: expected a 2-D grid, got {:?}",
            d.workgroups
        );
        let got = run_checked(gpu, &what, &d, &tb, vocab);
        for (v, &g) in got.iter().enumerate() {
            let want = match v {
                0 => 1.0,
                3 => 4.0,
                _ if v == vocab - 1 => 10.0,
                _ => 0.0,
            };
            assert_eq!(g, want, "{what}: row {v}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// bad input

fn err_text<T>(r: Result<T, DeviceError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn assert_names(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error {msg:?} does not mention {p:?}");
    }
}

#[test]
fn bad_shapes_are_errors_naming_op_and_shapes() {
    let Some(gpu) = test_gpu() else { return };
    let small = gpu.buffer("small", 4).unwrap();
    let big = gpu.buffer("big", 4096).unwrap();

    let zero = RowsShape { rows: 0, cols: 5 };
    let e = err_text(sm::softmax(gpu, &big, &big, &zero, "t"));
    assert_names(&e, &["softmax", "[0, 5]"]);
    let e = err_text(sm::log_softmax_grad(gpu, &big, &big, &big, &zero, "t"));
    assert_names(&e, &["log_softmax_grad", "[0, 5]"]);
    let s = RowsShape {
        rows: 10,
        cols: 100,
    };
    let e = err_text(sm::log_softmax(gpu, &small, &big, &s, "t"));
    assert_names(&e, &["log_softmax", "x", "1000"]);
    let e = err_text(sm::softmax_grad(gpu, &big, &big, &small, &s, "t"));
    assert_names(&e, &["softmax_grad", "dx", "1000"]);

    let ln = LayerNormShape {
        rows: 30,
        dim: 0,
        eps: 1e-5,
    };
    let e = err_text(norm::layer_norm(gpu, &big, &big, &big, &big, &ln, "t"));
    assert_names(&e, &["layer_norm", "[30, 0]"]);
    let ln = LayerNormShape {
        rows: 30,
        dim: 80,
        eps: f32::NAN,
    };
    let e = err_text(norm::layer_norm(gpu, &big, &big, &big, &big, &ln, "t"));
    assert_names(&e, &["layer_norm", "eps", "[30, 80]"]);
    // Pool buffers hold at least 64 values, so the shapes must outgrow `small`.
    let ln = LayerNormShape {
        rows: 30,
        dim: 80,
        eps: 1e-5,
    };
    let e = err_text(norm::layer_norm(gpu, &big, &small, &big, &big, &ln, "t"));
    assert_names(&e, &["layer_norm", "gamma", "80"]);
    let e = err_text(norm::layer_norm_grad_input(
        gpu, &big, &big, &small, &big, &ln, "t",
    ));
    assert_names(&e, &["layer_norm_grad_input", "dy", "2400"]);
    let e = err_text(norm::layer_norm_grad_gamma(
        gpu, &big, &big, &small, &ln, "t",
    ));
    assert_names(&e, &["layer_norm_grad_gamma", "dgamma", "80"]);

    let es = EmbeddingShape {
        tokens: 4,
        vocab: 0,
        dim: 3,
    };
    let e = err_text(emb::embedding(gpu, &big, &big, &big, &es, "t"));
    assert_names(&e, &["embedding", "[0, 3]"]);
    let es = EmbeddingShape {
        tokens: 100,
        vocab: 10,
        dim: 30,
    };
    let e = err_text(emb::embedding(gpu, &small, &big, &big, &es, "t"));
    assert_names(&e, &["embedding", "ids", "100"]);
    let e = err_text(emb::embedding_grad(gpu, &big, &big, &small, &es, "t"));
    assert_names(&e, &["embedding_grad", "dtable", "300"]);
}
