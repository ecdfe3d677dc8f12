//! The RMS normalization kernels (forward, input gradient, gamma gradient) on an adapter against
//! their CPU references (run in f64), over odd rows, rows on both sides of the per-row /
//! per-workgroup switch, long rows, PyTorch's default eps, zero rows and bad input.

mod common;

use common::{assert_close, out_buffer, rand_vec, rng, run_checked, run_checked_all, to_f64};
use sinter::sinter_device::kernels::norm::{self, LayerNormShape};
use sinter::sinter_device::testing::test_gpu;
use sinter::sinter_device::{DeviceError, Gpu};
use sinter::sinter_model::cpu;

/// Forward: one row sum of squares and an inverse square root in f32 (WGSL's inverseSqrt is
/// within 2 ULP), then two multiplies, for outputs of size O(1).
const RMS_ATOL: f64 = 2e-5;
const RMS_RTOL: f64 = 2e-5;
/// Input gradient: the statistic and one more row sum, then a multiply-add.
const RMS_GRAD_ATOL: f64 = 1e-5;
const RMS_GRAD_RTOL: f64 = 1e-5;
/// Gamma gradient: a sum over rows of O(1) terms; the error grows with the rows.
const RMS_GAMMA_ATOL: f64 = 2e-5;
const RMS_GAMMA_ATOL_PER_ROW: f64 = 2e-7;
const RMS_GAMMA_RTOL: f64 = 2e-5;

/// (rows, dim): odd sizes, both sides of the 256-column switch, long rows.
const SHAPES: [(usize, usize); 9] = [
    (1, 1),
    (7, 13),
    (33, 65),
    (1000, 65),
    // Row chunks and column blocks of the gamma gradient both past one (WG ≤ 256).
    (513, 300),
    (3, 255),
    (5, 256),
    (4, 777),
    (3, 5000),
];

struct Case {
    shape: LayerNormShape,
    x: Vec<f32>,
    gamma: Vec<f32>,
    dy: Vec<f32>,
}

fn case(seed: u64, rows: usize, dim: usize, eps: f32) -> Case {
    let mut r = rng(seed);
    let len = rows * dim;
    Case {
        shape: LayerNormShape { rows, dim, eps },
        x: rand_vec(&mut r, len, -2.0, 2.0),
        gamma: rand_vec(&mut r, dim, 0.5, 1.5),
        dy: rand_vec(&mut r, len, -1.0, 1.0),
    }
}

fn forward(gpu: &Gpu, c: &Case) -> (Vec<f32>, Vec<f64>) {
    let len = c.shape.len();
    let xb = gpu.upload("x", &c.x).unwrap();
    let gb = gpu.upload("gamma", &c.gamma).unwrap();
    let yb = out_buffer(gpu, "y", len);
    let d = norm::rms_norm(gpu, &xb, &gb, &yb, &c.shape, "test").unwrap();
    let got = run_checked(gpu, &format!("rms_norm {:?}", c.shape), &d, &yb, len);
    let mut want = vec![0.0; len];
    cpu::norm::rms_norm(&to_f64(&c.x), &to_f64(&c.gamma), &mut want, &c.shape);
    (got, want)
}

#[test]
fn rms_norm_matches_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (k, &(rows, dim)) in SHAPES.iter().enumerate() {
        let c = case(100 + k as u64, rows, dim, 1e-6);
        let (got, want) = forward(gpu, &c);
        let what = format!("rms_norm [{rows}, {dim}] (tree {})", c.shape.uses_tree());
        assert_close(&what, &got, &want, RMS_ATOL, RMS_RTOL);
    }
}

#[test]
fn rms_norm_with_pytorch_default_eps_and_zero_rows() {
    let Some(gpu) = test_gpu() else { return };
    for (rows, dim) in [(9, 31), (2, 300)] {
        let mut c = case(150, rows, dim, f32::EPSILON);
        // Row 1 is all zeros: 0 · 1/sqrt(eps) stays 0.
        c.x[dim..2 * dim].fill(0.0);
        let (got, want) = forward(gpu, &c);
        let what = format!("rms_norm eps f32::EPSILON [{rows}, {dim}]");
        assert_close(&what, &got, &want, RMS_ATOL, RMS_RTOL);
        assert!(
            got[dim..2 * dim].iter().all(|&v| v == 0.0),
            "{what}: a zero row gave {:?}",
            &got[dim..2 * dim]
        );
    }
}

#[test]
fn rms_norm_grads_match_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (k, &(rows, dim)) in SHAPES.iter().enumerate() {
        let c = case(200 + k as u64, rows, dim, 1e-6);
        let s = &c.shape;
        let len = s.len();
        let xb = gpu.upload("x", &c.x).unwrap();
        let gb = gpu.upload("gamma", &c.gamma).unwrap();
        let dyb = gpu.upload("dy", &c.dy).unwrap();

        let dxb = out_buffer(gpu, "dx", len);
        let d = norm::rms_norm_grad_input(gpu, &xb, &gb, &dyb, &dxb, s, "test").unwrap();
        let what = format!(
            "rms_norm_grad_input [{rows}, {dim}] (tree {})",
            s.uses_tree()
        );
        let got = run_checked(gpu, &what, &d, &dxb, len);
        let mut want = vec![0.0; len];
        cpu::norm::rms_norm_grad_input(
            &to_f64(&c.x),
            &to_f64(&c.gamma),
            &to_f64(&c.dy),
            &mut want,
            s,
        );
        assert_close(&what, &got, &want, RMS_GRAD_ATOL, RMS_GRAD_RTOL);

        let dgb = out_buffer(gpu, "dgamma", dim);
        let d = norm::rms_norm_grad_gamma(gpu, &xb, &dyb, &dgb, s, "test").unwrap();
        let what = format!("rms_norm_grad_gamma [{rows}, {dim}]");
        let got = run_checked_all(gpu, &what, &d, &dgb, dim);
        let mut want = vec![0.0; dim];
        cpu::norm::rms_norm_grad_gamma(&to_f64(&c.x), &to_f64(&c.dy), &mut want, s);
        let atol = RMS_GAMMA_ATOL + RMS_GAMMA_ATOL_PER_ROW * rows as f64;
        assert_close(&what, &got, &want, atol, RMS_GAMMA_RTOL);
    }
}

fn err_text<T>(r: Result<T, DeviceError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_shapes_are_errors_naming_op_and_shapes() {
    let Some(gpu) = test_gpu() else { return };
    let small = gpu.buffer("small", 4).unwrap();
    let big = gpu.buffer("big", 4096).unwrap();
    let zero = LayerNormShape {
        rows: 30,
        dim: 0,
        eps: 1e-6,
    };
    let e = err_text(norm::rms_norm(gpu, &big, &big, &big, &zero, "t"));
    assert!(e.contains("rms_norm") && e.contains("[30, 0]"), "{e}");
    let s = LayerNormShape {
        rows: 30,
        dim: 80,
        eps: 1e-6,
    };
    let e = err_text(norm::rms_norm(gpu, &big, &small, &big, &s, "t"));
    assert!(e.contains("rms_norm") && e.contains("gamma"), "{e}");
    let e = err_text(norm::rms_norm_grad_input(
        gpu, &big, &big, &small, &big, &s, "t",
    ));
    assert!(e.contains("rms_norm_grad_input") && e.contains("dy"), "{e}");
    let e = err_text(norm::rms_norm_grad_gamma(gpu, &big, &big, &small, &s, "t"));
    assert!(
        e.contains("rms_norm_grad_gamma") && e.contains("dgamma"),
        "{e}"
    );
    let nan = LayerNormShape { eps: f32::NAN, ..s };
    let e = err_text(norm::rms_norm(gpu, &big, &big, &big, &nan, "t"));
    assert!(e.contains("rms_norm") && e.contains("eps"), "{e}");
}
