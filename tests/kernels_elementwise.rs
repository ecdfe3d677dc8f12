//! The elementwise and reduce kernels on an adapter against their CPU references (run in f64),
//! over odd and broadcast shapes, long reductions, and bad input (loss and optimizers: kernels_loss_optim.rs).

mod common;

use common::{assert_close, out_buffer, rand_vec, rng, run_checked, to_f64};
use rand::Rng;
use sinter::sinter_device::kernels::elementwise::{self as ew, BinaryOp, UnaryOp};
use sinter::sinter_device::kernels::loss::{self, CrossEntropyShape};
use sinter::sinter_device::kernels::optim::{self, SgdConfig};
use sinter::sinter_device::kernels::reduce::{self, ReduceKernel, ReduceOp, ReduceShape};
use sinter::sinter_device::testing::{run_one, test_gpu};
use sinter::sinter_device::{DeviceError, Dispatch, Gpu};
use sinter::sinter_model::cpu;

/// Unary ops and gradients: WGSL's exp/log/tanh are accurate to a few ULP (relative), while tanh
/// built from exponentials loses absolute accuracy near 0, hence the atol.
const UNARY_ATOL: f64 = 2e-6;
const UNARY_RTOL: f64 = 2e-5;
/// One correctly rounded f32 operation per element (a few ULP for division).
const BINARY_RTOL: f64 = 1e-6;
/// Sums of n terms in f32: a fixed floor plus a bound that grows with n (the workgroup tree keeps
/// the real error near √n·ε·|partial|, far below this for uniform data).
const SUM_ATOL: f64 = 1e-5;
const SUM_ATOL_PER_TERM: f64 = 1e-8;
const SUM_RTOL: f64 = 1e-5;

/// Inputs inside op's domain, with saturating extremes and zeros where the op allows them.
fn unary_input(op: UnaryOp, seed: u64, len: usize) -> Vec<f32> {
    let mut r = rng(seed);
    let mut x = match op {
        UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt => rand_vec(&mut r, len, 0.05, 5.0),
        UnaryOp::Recip => rand_vec(&mut r, len, 0.2, 4.0)
            .into_iter()
            .map(|v| if r.random::<bool>() { v } else { -v })
            .collect(),
        UnaryOp::Exp => rand_vec(&mut r, len, -10.0, 10.0),
        _ => rand_vec(&mut r, len, -8.0, 8.0),
    };
    if !matches!(
        op,
        UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Recip | UnaryOp::Exp
    ) {
        x.extend_from_slice(&[-100.0, -30.0, -0.0, 0.0, 30.0, 100.0]);
    }
    x
}

#[test]
fn unary_ops_match_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (k, op) in UnaryOp::ALL.into_iter().enumerate() {
        // unary_input adds 6 special values for most ops: between 1000 and 1002 every op meets a
        // length divisible by 4 (the 4-wide kernel) and one that is not.
        for len in [1, 1000, 1002, 4099] {
            let x = unary_input(op, 10 + k as u64, len);
            let n = x.len();
            let xb = gpu.upload("x", &x).unwrap();
            let yb = out_buffer(gpu, "y", n);
            let d = ew::unary(gpu, &xb, &yb, op, n, "test").unwrap();
            let what = format!("unary {} len {n}", op.name());
            let got = run_checked(gpu, &what, &d, &yb, n);
            let mut want = vec![0.0; n];
            cpu::elementwise::unary(op, &to_f64(&x), &mut want);
            assert_close(&what, &got, &want, UNARY_ATOL, UNARY_RTOL);
        }
    }
}

#[test]
fn unary_grads_match_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (k, op) in UnaryOp::ALL.into_iter().enumerate() {
        // Lengths divisible by 4 (the 4-wide kernel) and not, whether or not unary_input adds
        // its 6 special values.
        for len in [2052, 2054] {
            let x = unary_input(op, 30 + k as u64, len);
            let n = x.len();
            let dy = rand_vec(&mut rng(50 + k as u64), n, -2.0, 2.0);
            let (xb, dyb) = (gpu.upload("x", &x).unwrap(), gpu.upload("dy", &dy).unwrap());
            let dxb = out_buffer(gpu, "dx", n);
            let d = ew::unary_grad(gpu, &xb, &dyb, &dxb, op, n, "test").unwrap();
            let what = format!("unary_grad {} len {n}", op.name());
            let got = run_checked(gpu, &what, &d, &dxb, n);
            let mut want = vec![0.0; n];
            cpu::elementwise::unary_grad(op, &to_f64(&x), &to_f64(&dy), &mut want);
            assert_close(&what, &got, &want, UNARY_ATOL, UNARY_RTOL);
        }
    }
    // The conventions at 0, checked directly rather than through the CPU reference.
    let x = gpu.upload("x", &[0.0f32, 0.0]).unwrap();
    let dy = gpu.upload("dy", &[1.0f32, 1.0]).unwrap();
    for op in [UnaryOp::Relu, UnaryOp::Abs] {
        let dx = gpu.buffer("dx", 2).unwrap();
        let d = ew::unary_grad(gpu, &x, &dy, &dx, op, 2, "test").unwrap();
        assert_eq!(
            run_one(gpu, &d, &dx, 2),
            vec![0.0, 0.0],
            "{}'(0)",
            op.name()
        );
    }
}

#[test]
fn gelu_is_the_tanh_approximation() {
    // Values of 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))), computed independently.
    let x = [-3.0f64, -1.0, 0.5, 2.0];
    let want = [
        -0.0036373920817729943,
        -0.15880800939172324,
        0.34571400982514394,
        1.954597694087775,
    ];
    let mut got = [0.0f64; 4];
    cpu::elementwise::unary(UnaryOp::Gelu, &x, &mut got);
    for i in 0..4 {
        assert!(
            (got[i] - want[i]).abs() < 1e-12,
            "gelu({}) = {}, want {}",
            x[i],
            got[i],
            want[i]
        );
    }
}

#[test]
fn silu_is_x_times_sigmoid() {
    // Values of x / (1 + e^−x), computed independently; −20 checks the far negative tail.
    let x = [-20.0f64, -3.0, -1.0, 0.5, 2.0];
    let want = [
        -4.122307236380407e-08,
        -0.14227761953270035,
        -0.2689414213699951,
        0.3112296656009273,
        1.7615941559557646,
    ];
    let mut got = [0.0f64; 5];
    cpu::elementwise::unary(UnaryOp::Silu, &x, &mut got);
    for i in 0..5 {
        assert!(
            (got[i] - want[i]).abs() <= 1e-15 * want[i].abs().max(1.0),
            "silu({}) = {}, want {}",
            x[i],
            got[i],
            want[i]
        );
    }
}

#[test]
fn gelu_erf_is_x_times_the_normal_cdf() {
    // Values of x·Φ(x) = 0.5·x·erfc(−x/√2), computed independently (Python's math.erfc, which
    // does not cancel in the tail); −6 checks the far negative tail.
    let x = [-6.0f64, -3.0, -1.0, 0.5, 2.0];
    let want = [
        -5.919525870226207e-09,
        -0.004049694094890287,
        -0.15865525393145707,
        0.34573123063700656,
        1.9544997361036416,
    ];
    let mut got = [0.0f64; 5];
    cpu::elementwise::unary(UnaryOp::GeluErf, &x, &mut got);
    for i in 0..5 {
        assert!(
            (got[i] - want[i]).abs() <= 1e-12 * want[i].abs(),
            "gelu_erf({}) = {}, want {}",
            x[i],
            got[i],
            want[i]
        );
    }
    // The adapter's erfc has a relative error below 1.2e-7 (Numerical Recipes' Chebyshev fit),
    // and exp(−x²) in f32 adds about x²·ε: in the tail, where 1 + erf would cancel, the GELU
    // keeps a relative accuracy of 1e-5.
    let Some(gpu) = test_gpu() else { return };
    let xs = [-6.0f32, -4.0, -3.0];
    let xb = gpu.upload("x", &xs).unwrap();
    let yb = out_buffer(gpu, "y", 3);
    let d = ew::unary(gpu, &xb, &yb, UnaryOp::GeluErf, 3, "test").unwrap();
    let got = run_checked(gpu, "gelu_erf tail", &d, &yb, 3);
    let mut want = vec![0.0; 3];
    cpu::elementwise::unary(UnaryOp::GeluErf, &to_f64(&xs), &mut want);
    assert_close("gelu_erf tail", &got, &want, 0.0, 1e-5);
}

/// pow is exp2(b·log2|a|) on the adapter: WGSL allows log2 an absolute error of 2⁻²¹ near 1 and
/// exp2 3 + 2|x| ULP, so for |b·log2 a| ≤ 6 the relative error stays below 4e-6.
const POW_RTOL: f64 = 4e-6;

#[test]
fn pow_matches_cpu_including_negative_bases_and_zero() {
    let Some(gpu) = test_gpu() else { return };
    // Bases of both signs and zeros; exponents integer (a negative base then has a value) or
    // fractional (NaN for a negative base), including 0 (x⁰ = 1, also 0⁰).
    let mut r = rng(70);
    let cases: [(&[usize], &[usize]); 5] = [
        (&[7, 13, 5], &[7, 13, 5]),
        (&[4, 9], &[4, 9]),
        (&[33, 17], &[17]),
        (&[5, 1], &[1, 9]),
        (&[300], &[1]),
    ];
    for (c, &(sa, sb)) in cases.iter().enumerate() {
        let (la, lb): (usize, usize) = (sa.iter().product(), sb.iter().product());
        let mut a: Vec<f32> = (0..la)
            .map(|_| {
                let m = r.random_range(0.1f32..3.0);
                match r.random_range(0..5) {
                    0 => 0.0,
                    1 | 2 => -m,
                    _ => m,
                }
            })
            .collect();
        a[0] = 0.0;
        let b: Vec<f32> = (0..lb)
            .map(|_| match r.random_range(0..3) {
                0 => r.random_range(-3..=3) as f32,
                1 => 0.0,
                _ => r.random_range(-2.0f32..2.0),
            })
            .collect();
        let shape = ew::broadcast_shape(sa, sb).unwrap();
        let len: usize = shape.iter().product();
        let (ab, bb) = (gpu.upload("a", &a).unwrap(), gpu.upload("b", &b).unwrap());
        let ob = out_buffer(gpu, "out", len);
        let d = ew::binary(gpu, &ab, sa, &bb, sb, &ob, BinaryOp::Pow, "test").unwrap();
        let what = format!("pow {sa:?} with {sb:?} (case {c})");
        let got = run_checked(gpu, &what, &d, &ob, len);
        let mut want = vec![0.0; len];
        cpu::elementwise::binary(BinaryOp::Pow, &to_f64(&a), sa, &to_f64(&b), sb, &mut want);
        assert_close(&what, &got, &want, 0.0, POW_RTOL);
    }
    // The conventions, directly: (−2)³ = −8, (−2)² = 4, (−2)^0.5 = NaN, 0⁰ = 1, 0⁻¹ = +∞,
    // (−0)⁻¹ = −∞, 0² = 0.
    let a = [-2.0f32, -2.0, -2.0, 0.0, 0.0, -0.0, 0.0];
    let b = [3.0f32, 2.0, 0.5, 0.0, -1.0, -1.0, 2.0];
    let mut want = [0.0f64; 7];
    cpu::elementwise::binary(
        BinaryOp::Pow,
        &to_f64(&a),
        &[7],
        &to_f64(&b),
        &[7],
        &mut want,
    );
    assert_eq!(want[..2], [-8.0, 4.0]);
    assert!(want[2].is_nan());
    assert_eq!(want[3..], [1.0, f64::INFINITY, f64::NEG_INFINITY, 0.0]);
    let (ab, bb) = (gpu.upload("a", &a).unwrap(), gpu.upload("b", &b).unwrap());
    let ob = out_buffer(gpu, "out", 7);
    let d = ew::binary(gpu, &ab, &[7], &bb, &[7], &ob, BinaryOp::Pow, "test").unwrap();
    let got = run_checked(gpu, "pow conventions", &d, &ob, 7);
    assert_close("pow conventions", &got, &want, 0.0, POW_RTOL);
}

#[test]
fn affine_matches_cpu_including_a_2d_grid() {
    let Some(gpu) = test_gpu() else { return };
    let x = rand_vec(&mut rng(1), 3001, -4.0, 4.0);
    let xb = gpu.upload("x", &x).unwrap();
    let yb = out_buffer(gpu, "y", x.len());
    let d = ew::affine(gpu, &xb, &yb, x.len(), -1.5, 0.25, "test").unwrap();
    let got = run_checked(gpu, "affine len 3001", &d, &yb, x.len());
    let mut want = vec![0.0; x.len()];
    cpu::elementwise::affine(&to_f64(&x), &mut want, -1.5, 0.25);
    assert_close("affine len 3001", &got, &want, 0.0, BINARY_RTOL);

    // More workgroups than one grid dimension allows: the kernel must rebuild the flat index.
    let limit = gpu.limits.max_compute_workgroups_per_dimension as usize;
    let len = limit * 256 + 777;
    if (len as u64) * 4 > gpu.max_binding() {
        eprintln!("affine 2-D grid case skipped: {len} floats exceed the binding limit");
        return;
    }
    // Small integers, so 2x + 1 is exact and the check is equality.
    let x: Vec<f32> = (0..len).map(|i| (i % 1000) as f32).collect();
    let xb = gpu.upload("x", &x).unwrap();
    let yb = out_buffer(gpu, "y", len);
    let d = ew::affine(gpu, &xb, &yb, len, 2.0, 1.0, "test").unwrap();
    assert!(
        d.workgroups[1] > 1,
        "expected a 2-D grid, got {:?}",
        d.workgroups
    );
    let got = run_checked(gpu, "affine 2-D grid", &d, &yb, len);
    for (i, &g) in got.iter().enumerate() {
        assert_eq!(
            g,
            2.0 * (i % 1000) as f32 + 1.0,
            "affine 2-D grid: index {i}"
        );
    }
}

/// Operands for `op`: divisors away from 0, and for comparisons a few small integers so that
/// equal pairs are common.
/// A buffer holding `values` followed by the sentinels `run_checked` looks for.
fn in_place(gpu: &Gpu, values: &[f32]) -> sinter::sinter_device::wgpu::Buffer {
    let mut data = values.to_vec();
    data.extend([common::SENTINEL; common::TAIL]);
    gpu.upload("in place", &data).unwrap()
}

/// The planner's fused ReLU mask, in place on a max-pooling gradient: exact (a multiply by 0 or 1).
/// (The bias-and-activation epilogue runs inside the product kernels: kernels_matmul.rs and
/// kernels_conv.rs test it.)
#[test]
fn relu_mask_matches_cpu() {
    let Some(gpu) = test_gpu() else { return };
    let mut r = rng(41);
    let len = 4099;
    let (x, dx0) = (
        rand_vec(&mut r, len, -1.0, 1.0),
        rand_vec(&mut r, len, -3.0, 3.0),
    );
    let (xb, dxb) = (gpu.upload("x", &x).unwrap(), in_place(gpu, &dx0));
    let d = ew::relu_mask(gpu, &xb, &dxb, len, "test").unwrap();
    let got = run_checked(gpu, "relu_mask 4099", &d, &dxb, len);
    let mut want = vec![0.0; len];
    cpu::elementwise::unary_grad(UnaryOp::Relu, &to_f64(&x), &to_f64(&dx0), &mut want);
    assert_close("relu_mask 4099", &got, &want, 0.0, 0.0);
}

fn binary_input(op: BinaryOp, seed: u64, len: usize, divisor: bool) -> Vec<f32> {
    let mut r = rng(seed);
    match op {
        BinaryOp::Ge | BinaryOp::Eq | BinaryOp::Max | BinaryOp::Min => {
            (0..len).map(|_| r.random_range(0..4) as f32).collect()
        }
        BinaryOp::Div if divisor => rand_vec(&mut r, len, 0.5, 2.0)
            .into_iter()
            .map(|v| if r.random::<bool>() { v } else { -v })
            .collect(),
        _ => rand_vec(&mut r, len, -3.0, 3.0),
    }
}

const BROADCAST_CASES: [(&[usize], &[usize]); 10] = [
    (&[7, 13, 5], &[13, 1]),
    (&[13, 1], &[7, 13, 5]),
    (&[3, 1, 4], &[1, 5, 1]),
    (&[1], &[33, 65, 17]),
    (&[33, 65, 17], &[1]),
    (&[33, 65, 17], &[33, 65, 17]),
    // Equal shapes of a length divisible by 4: the 4-wide flat kernel.
    (&[6, 10, 4], &[6, 10, 4]),
    (&[2, 3, 4], &[4]),
    (&[1, 1], &[1]),
    (&[2, 1, 3, 1, 2, 1], &[1, 4, 1, 5, 1, 3]),
];

#[test]
fn binary_ops_broadcast_like_numpy() {
    let Some(gpu) = test_gpu() else { return };
    // pow has its own test and tolerance (pow_matches_cpu_including_negative_bases_and_zero).
    let ops = BinaryOp::ALL.into_iter().filter(|&op| op != BinaryOp::Pow);
    for (k, op) in ops.enumerate() {
        for (c, &(sa, sb)) in BROADCAST_CASES.iter().enumerate() {
            let (la, lb) = (sa.iter().product(), sb.iter().product());
            let seed = 100 * k as u64 + c as u64;
            let a = binary_input(op, seed, la, false);
            let b = binary_input(op, seed + 50, lb, true);
            let shape = ew::broadcast_shape(sa, sb).unwrap();
            let len: usize = shape.iter().product();
            let (ab, bb) = (gpu.upload("a", &a).unwrap(), gpu.upload("b", &b).unwrap());
            let ob = out_buffer(gpu, "out", len);
            let d = ew::binary(gpu, &ab, sa, &bb, sb, &ob, op, "test").unwrap();
            let what = format!("binary {} {sa:?} with {sb:?}", op.name());
            let got = run_checked(gpu, &what, &d, &ob, len);
            let mut want = vec![0.0; len];
            cpu::elementwise::binary(op, &to_f64(&a), sa, &to_f64(&b), sb, &mut want);
            assert_close(&what, &got, &want, 0.0, BINARY_RTOL);
        }
    }
}

#[test]
fn broadcast_to_copies_along_broadcast_axes() {
    let Some(gpu) = test_gpu() else { return };
    let cases: [(&[usize], &[usize]); 6] = [
        (&[13, 1], &[7, 13, 5]),
        (&[1], &[33, 65, 17]),
        (&[3, 1, 4], &[2, 3, 5, 4]),
        (&[7, 13, 5], &[7, 13, 5]),
        (&[5], &[3, 5]),
        (&[1, 1], &[1, 1]),
    ];
    for (c, &(xs, os)) in cases.iter().enumerate() {
        let x = rand_vec(&mut rng(200 + c as u64), xs.iter().product(), -1.0, 1.0);
        let len: usize = os.iter().product();
        let xb = gpu.upload("x", &x).unwrap();
        let ob = out_buffer(gpu, "out", len);
        let d = ew::broadcast_to(gpu, &xb, xs, &ob, os, "test").unwrap();
        let what = format!("broadcast_to {xs:?} -> {os:?}");
        let got = run_checked(gpu, &what, &d, &ob, len);
        let mut want = vec![0.0; len];
        cpu::elementwise::broadcast_to(&to_f64(&x), xs, &mut want, os);
        assert_close(&what, &got, &want, 0.0, 0.0);
    }
}

/// The error text of a launch that must fail.
fn err_text(r: Result<Dispatch, DeviceError>) -> String {
    match r {
        Ok(_) => panic!("expected an error, got a dispatch"),
        Err(e) => e.to_string(),
    }
}

fn assert_names(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error {msg:?} should mention {p:?}");
    }
}

#[test]
fn bad_shapes_are_errors_naming_op_and_shapes() {
    let Some(gpu) = test_gpu() else { return };
    let a = gpu.buffer("a", 64).unwrap();
    let b = gpu.buffer("b", 64).unwrap();
    let o = gpu.buffer("o", 64).unwrap();
    let msg = err_text(ew::binary(gpu, &a, &[3], &b, &[4], &o, BinaryOp::Add, "t"));
    assert_names(&msg, &["binary add", "[3]", "[4]", "broadcast"]);
    let msg = err_text(ew::binary(
        gpu,
        &a,
        &[7, 13, 5],
        &b,
        &[13, 2],
        &o,
        BinaryOp::Mul,
        "t",
    ));
    assert_names(&msg, &["binary mul", "[7, 13, 5]", "[13, 2]"]);
    let msg = err_text(ew::binary(
        gpu,
        &a,
        &[0, 3],
        &b,
        &[3],
        &o,
        BinaryOp::Sub,
        "t",
    ));
    assert_names(&msg, &["binary sub", "[0, 3]"]);
    let msg = err_text(ew::binary(
        gpu,
        &a,
        &[1; 7],
        &b,
        &[1],
        &o,
        BinaryOp::Div,
        "t",
    ));
    assert_names(&msg, &["binary div", "MAX_RANK"]);
    let msg = err_text(ew::binary(
        gpu,
        &a,
        &[100],
        &b,
        &[100],
        &o,
        BinaryOp::Add,
        "t",
    ));
    assert_names(&msg, &["binary add", "buffer a"]);
    let msg = err_text(ew::broadcast_to(gpu, &a, &[2], &o, &[3], "t"));
    assert_names(&msg, &["broadcast_to", "[2]", "[3]"]);
    let msg = err_text(ew::broadcast_to(gpu, &a, &[3, 1], &o, &[3], "t"));
    assert_names(&msg, &["broadcast_to", "[3, 1]", "[3]"]);
    let msg = err_text(ew::unary(gpu, &a, &o, UnaryOp::Relu, 0, "t"));
    assert_names(&msg, &["unary relu", "0 elements"]);
    let msg = err_text(ew::unary_grad(gpu, &a, &b, &o, UnaryOp::Tanh, 0, "t"));
    assert_names(&msg, &["unary_grad tanh", "0 elements"]);
    let msg = err_text(reduce::reduce(
        gpu,
        &a,
        &o,
        ReduceOp::Sum,
        &ReduceShape {
            outer: 2,
            n: 0,
            inner: 3,
        },
        "t",
    ));
    assert_names(&msg, &["reduce sum", "[2, 0, 3]"]);
    let ce = CrossEntropyShape {
        rows: 0,
        classes: 10,
    };
    let msg = err_text(loss::cross_entropy(gpu, &a, &b, &o, &ce, "t"));
    assert_names(&msg, &["cross_entropy", "[0, 10]"]);
    let ce = CrossEntropyShape {
        rows: 10,
        classes: 10,
    };
    let msg = err_text(loss::cross_entropy_grad(gpu, &a, &b, &o, &o, &ce, "t"));
    assert_names(&msg, &["cross_entropy_grad", "logits"]);
    let cfg = SgdConfig {
        momentum: 0.9,
        weight_decay: 0.0,
        nesterov: false,
    };
    let msg = err_text(optim::sgd(gpu, &a, &b, &b, &o, &o, 0, &cfg, "t"));
    assert_names(&msg, &["sgd", "0 elements"]);
}

/// The f64 reference of a reduction.
fn reduce_ref(op: ReduceOp, x: &[f32], s: &ReduceShape) -> Vec<f64> {
    let mut want = vec![0.0; s.output_len()];
    cpu::reduce::reduce(op, &to_f64(x), &mut want, s);
    want
}

/// The reduction on the adapter with `kernel`, or the launcher's choice (`None`).
fn run_reduce(
    gpu: &Gpu,
    kernel: Option<ReduceKernel>,
    op: ReduceOp,
    x: &[f32],
    s: &ReduceShape,
) -> Vec<f32> {
    let xb = gpu.upload("x", x).unwrap();
    let yb = out_buffer(gpu, "y", s.output_len());
    let d = match kernel {
        Some(k) => reduce::reduce_with(gpu, k, &xb, &yb, op, s, "test"),
        None => reduce::reduce(gpu, &xb, &yb, op, s, "test"),
    }
    .unwrap();
    run_checked(
        gpu,
        &format!("reduce {} {kernel:?} {s:?}", op.name()),
        &d,
        &yb,
        s.output_len(),
    )
}

fn reduce_tolerance(op: ReduceOp, n: usize) -> (f64, f64) {
    let atol = SUM_ATOL + SUM_ATOL_PER_TERM * n as f64;
    match op {
        ReduceOp::Sum => (atol, SUM_RTOL),
        ReduceOp::Mean => (atol / n as f64, SUM_RTOL),
        // Max and argmax pick an element: exact.
        ReduceOp::Max | ReduceOp::Argmax => (0.0, 0.0),
    }
}

/// The launcher's choice and every kernel the adapter runs (rows, tree, and the subgroup one on
/// CI's lavapipe), on every axis of odd shapes.
#[test]
fn reduce_every_axis_matches_cpu() {
    let Some(gpu) = test_gpu() else { return };
    let kernels: Vec<Option<ReduceKernel>> = [None]
        .into_iter()
        .chain(
            ReduceKernel::ALL
                .into_iter()
                .filter(|k| k.runs_on(gpu))
                .map(Some),
        )
        .collect();
    let shapes: [&[usize]; 8] = [
        &[7, 13, 5],
        &[33, 65, 17],
        &[5, 1, 3],
        &[1],
        &[1, 1],
        &[3, 1000, 7],
        &[2, 5000],
        &[300, 2],
    ];
    let mut used_tree = false;
    let mut used_rows = false;
    for (k, shape) in shapes.iter().enumerate() {
        for axis in 0..shape.len() {
            let s = ReduceShape::along(shape, axis);
            used_tree |= s.uses_tree();
            used_rows |= !s.uses_tree();
            for op in ReduceOp::ALL {
                let mut r = rng(300 + k as u64);
                // Argmax/max also see ties (small integers): the first maximum must win.
                let x = if matches!(op, ReduceOp::Argmax | ReduceOp::Max) && k % 2 == 0 {
                    (0..s.input_len())
                        .map(|_| r.random_range(0..5) as f32)
                        .collect()
                } else {
                    rand_vec(&mut r, s.input_len(), -1.0, 1.0)
                };
                let want = reduce_ref(op, &x, &s);
                let (atol, rtol) = reduce_tolerance(op, s.n);
                for &kernel in &kernels {
                    let got = run_reduce(gpu, kernel, op, &x, &s);
                    let what = format!("reduce {} {kernel:?} {shape:?} axis {axis}", op.name());
                    assert_close(&what, &got, &want, atol, rtol);
                }
            }
        }
    }
    assert!(
        used_tree && used_rows,
        "the shapes must exercise both reduce kernels"
    );
}

#[test]
fn reduce_whole_tensor_of_1_2m() {
    let Some(gpu) = test_gpu() else { return };
    let s = ReduceShape {
        outer: 1,
        n: 1_200_000,
        inner: 1,
    };
    let x = rand_vec(&mut rng(400), s.n, -1.0, 1.0);
    for op in ReduceOp::ALL {
        let got = run_reduce(gpu, None, op, &x, &s);
        let want = reduce_ref(op, &x, &s);
        let (atol, rtol) = reduce_tolerance(op, s.n);
        eprintln!(
            "reduce {} n=1.2M: got {} want {} |err| {:e} (atol {atol:e})",
            op.name(),
            got[0],
            want[0],
            (got[0] as f64 - want[0]).abs()
        );
        assert_close(
            &format!("reduce {} n=1.2M", op.name()),
            &got,
            &want,
            atol,
            rtol,
        );
    }
}

#[test]
fn cpu_f32_sums_stay_close_to_f64() {
    // The CPU backend trains in f32: its pairwise and blocked sums must not drift with n.
    let x = rand_vec(&mut rng(1100), 1_200_000, -1.0, 1.0);
    for s in [
        ReduceShape {
            outer: 1,
            n: 1_200_000,
            inner: 1,
        },
        ReduceShape {
            outer: 2,
            n: 6000,
            inner: 100,
        },
    ] {
        let (mut y32, mut y64) = (vec![0.0f32; s.output_len()], vec![0.0f64; s.output_len()]);
        cpu::reduce::reduce(ReduceOp::Sum, &x, &mut y32, &s);
        cpu::reduce::reduce(ReduceOp::Sum, &to_f64(&x), &mut y64, &s);
        let (atol, rtol) = reduce_tolerance(ReduceOp::Sum, s.n);
        assert_close(&format!("cpu f32 reduce sum {s:?}"), &y32, &y64, atol, rtol);
    }
}
