//! The convolution and pooling kernels against the CPU reference run in f64 (odd shapes, strides,
//! padding, dilation, the default model's layers), the forward's epilogue inside the kernel (bias,
//! every activation), the CPU reference against a naive loop, and bad input.

mod common;

use common::{assert_close, rand_vec, rng, to_f64};
use sinter::sinter_device::kernels::conv::{
    conv2d_forward, conv2d_forward_epilogue, conv2d_grad_input, conv2d_grad_weight, Conv2dShape,
};
use sinter::sinter_device::kernels::elementwise::UnaryOp;
use sinter::sinter_device::kernels::pool::{
    avg_pool2d, avg_pool2d_grad, max_pool2d, max_pool2d_grad, Pool2dShape,
};
use sinter::sinter_device::kernels::EpilogueArgs;
use sinter::sinter_device::testing::test_gpu;
use sinter::sinter_device::{DeviceError, Gpu};
use sinter::sinter_model::cpu::elementwise::epilogue_value;
use sinter::sinter_model::cpu::{conv as cpu_conv, pool as cpu_pool};

/// Absolute tolerance for a sum of 64 products, scaled by √(K/64) for a sum of K. The kernels add
/// products of values in [−1, 1] in f32 one after another; the rounding error is a random walk of
/// about 2⁻²⁴·K/4 (≈ 1.5e-5 at K = 1000), so 1e-4·√(K/64) has a margin of 10× or more at every K
/// tested, while a wrong index or a dropped tap is an error of order 0.1.
const CONV_ATOL_AT_K64: f64 = 1e-4;
const CONV_RTOL: f64 = 1e-4;

fn conv_atol(k: usize) -> f64 {
    CONV_ATOL_AT_K64 * (k as f64 / 64.0).sqrt().max(1.0)
}

/// Max pooling copies values and its gradient sums a handful of dy values; average pooling sums at
/// most KH·KW ≤ 9 terms. Both are exact to a few f32 ulps.
const POOL_ATOL: f64 = 1e-6;
const POOL_RTOL: f64 = 1e-5;

#[allow(clippy::too_many_arguments)]
fn conv(
    n: usize,
    c_in: usize,
    [h, w]: [usize; 2],
    c_out: usize,
    [kh, kw]: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
) -> Conv2dShape {
    Conv2dShape {
        n,
        c_in,
        h,
        w,
        c_out,
        kh,
        kw,
        stride,
        pad,
        dilation,
    }
}

/// The convolutions every pass is checked on.
fn conv_cases() -> Vec<(&'static str, Conv2dShape)> {
    vec![
        (
            "odd 3×3",
            conv(2, 3, [7, 13], 5, [3, 3], [1, 1], [1, 1], [1, 1]),
        ),
        (
            "stride 2",
            conv(2, 4, [9, 8], 6, [3, 3], [2, 2], [1, 1], [1, 1]),
        ),
        (
            "pad 0",
            conv(2, 2, [6, 7], 3, [3, 3], [1, 1], [0, 0], [1, 1]),
        ),
        (
            "pad 2, 5×5",
            conv(2, 3, [5, 6], 7, [5, 5], [1, 1], [2, 2], [1, 1]),
        ),
        (
            "dilation 2",
            conv(2, 3, [11, 10], 5, [3, 3], [1, 1], [2, 2], [2, 2]),
        ),
        (
            "3×5 mixed",
            conv(2, 3, [9, 12], 6, [3, 5], [2, 1], [1, 2], [1, 2]),
        ),
        (
            "stride 3 gaps",
            conv(2, 2, [10, 11], 3, [2, 2], [3, 3], [0, 1], [1, 1]),
        ),
        (
            "batch 1, c_in 1",
            conv(1, 1, [28, 28], 8, [3, 3], [1, 1], [1, 1], [1, 1]),
        ),
        ("1×1", conv(3, 5, [4, 6], 9, [1, 1], [1, 1], [0, 0], [1, 1])),
        (
            "1×1 output",
            conv(2, 2, [5, 5], 3, [5, 5], [1, 1], [0, 0], [1, 1]),
        ),
        (
            "1×1 input",
            conv(1, 3, [1, 1], 2, [3, 3], [1, 1], [1, 1], [1, 1]),
        ),
        (
            "wide channels",
            conv(3, 19, [5, 4], 33, [3, 3], [1, 2], [1, 0], [1, 1]),
        ),
        (
            "model conv1",
            conv(3, 1, [28, 28], 32, [3, 3], [1, 1], [1, 1], [1, 1]),
        ),
        (
            "model conv2",
            conv(3, 32, [14, 14], 64, [3, 3], [1, 1], [1, 1], [1, 1]),
        ),
    ]
}

/// A device buffer holding `data`, and one for `len` outputs filled with NaN so that an output
/// the kernel forgets to write cannot pass as a stale right answer.
fn output(gpu: &Gpu, len: usize) -> sinter::sinter_device::wgpu::Buffer {
    let b = gpu.buffer("test out", len).unwrap();
    gpu.write(&b, &vec![f32::NAN; len]);
    b
}

#[test]
fn conv_matches_cpu_reference() {
    let Some(gpu) = test_gpu() else { return };
    for (i, (name, s)) in conv_cases().into_iter().enumerate() {
        let mut r = rng(100 + i as u64);
        let x = rand_vec(&mut r, s.x_len(), -1.0, 1.0);
        let w = rand_vec(&mut r, s.w_len(), -1.0, 1.0);
        let dy = rand_vec(&mut r, s.y_len(), -1.0, 1.0);
        let (x64, w64, dy64) = (to_f64(&x), to_f64(&w), to_f64(&dy));
        let mut y_want = vec![0.0; s.y_len()];
        let mut dx_want = vec![0.0; s.x_len()];
        let mut dw_want = vec![0.0; s.w_len()];
        cpu_conv::conv2d_forward(&x64, &w64, &mut y_want, &s);
        cpu_conv::conv2d_grad_input(&dy64, &w64, &mut dx_want, &s);
        cpu_conv::conv2d_grad_weight(&x64, &dy64, &mut dw_want, &s);

        let xb = gpu.upload("test x", &x).unwrap();
        let wb = gpu.upload("test w", &w).unwrap();
        let dyb = gpu.upload("test dy", &dy).unwrap();
        let (yb, dxb, dwb) = (
            output(gpu, s.y_len()),
            output(gpu, s.x_len()),
            output(gpu, s.w_len()),
        );
        let fwd = conv2d_forward(gpu, &xb, &wb, &yb, &s, "test").unwrap();
        let gin = conv2d_grad_input(gpu, &dyb, &wb, &dxb, &s, "test").unwrap();
        let gw = conv2d_grad_weight(gpu, &xb, &dyb, &dwb, &s, "test").unwrap();
        assert_eq!(fwd.flops, s.flops());
        let got = gpu
            .run(
                &[&fwd, &gin, &gw],
                &[(&yb, s.y_len()), (&dxb, s.x_len()), (&dwb, s.w_len())],
            )
            .unwrap();
        let [oh, ow] = s.out_hw().unwrap();
        let what = |pass: &str| format!("{pass} {name}: {}", s.describe());
        let k_fwd = s.c_in * s.kh * s.kw;
        let k_in = s.c_out * s.kh * s.kw;
        let k_w = s.n * oh * ow;
        assert_close(
            &what("conv2d_forward"),
            &got[0],
            &y_want,
            conv_atol(k_fwd),
            CONV_RTOL,
        );
        assert_close(
            &what("conv2d_grad_input"),
            &got[1],
            &dx_want,
            conv_atol(k_in),
            CONV_RTOL,
        );
        assert_close(
            &what("conv2d_grad_weight"),
            &got[2],
            &dw_want,
            conv_atol(k_w),
            CONV_RTOL,
        );
        for b in [xb, wb, dyb, yb, dxb, dwb] {
            gpu.recycle(b);
        }
    }
}

/// The epilogue against the same adapter's plain convolution finished on the CPU in f64: the same
/// WGSL unary functions as the elementwise kernels after one f32 add, so their tolerance
/// (kernels_elementwise.rs: UNARY_ATOL, UNARY_RTOL).
const EPILOGUE_ATOL: f64 = 2e-6;
const EPILOGUE_RTOL: f64 = 2e-5;
/// Against the f64 reference of the whole fused convolution, for activations whose slope is at
/// most this: the convolution's tolerance times this plus the epilogue's.
const SLOPE: f64 = 1.2;

/// The forward's epilogue inside the kernel, on convolutions whose channel counts are not
/// multiples of the rows per invocation and whose pixel counts are not multiples of a workgroup's:
/// every activation with a bias, and none, ReLU and SiLU without, on one; a few on the others.
/// Checked as described at [`EPILOGUE_ATOL`] and [`SLOPE`].
#[test]
fn conv_epilogue_inside_the_kernel() {
    let Some(gpu) = test_gpu() else { return };
    let odd = conv(2, 3, [7, 13], 5, [3, 3], [1, 1], [1, 1], [1, 1]);
    let mut runs: Vec<(Conv2dShape, Option<UnaryOp>, bool)> = Vec::new();
    for act in std::iter::once(None).chain(UnaryOp::ALL.map(Some)) {
        runs.push((odd, act, true));
    }
    for act in [None, Some(UnaryOp::Relu), Some(UnaryOp::Silu)] {
        runs.push((odd, act, false));
    }
    for s in [
        conv(2, 4, [9, 8], 6, [3, 3], [2, 2], [1, 1], [1, 1]),
        conv(3, 19, [5, 4], 33, [3, 3], [1, 2], [1, 0], [1, 1]),
    ] {
        runs.extend([
            (s, Some(UnaryOp::Relu), true),
            (s, Some(UnaryOp::Gelu), false),
            (s, None, true),
        ]);
    }
    for (j, (s, act, with_bias)) in runs.into_iter().enumerate() {
        check_conv_epilogue(gpu, &s, act, with_bias, 1000 + j as u64);
    }
}

fn check_conv_epilogue(
    gpu: &Gpu,
    s: &Conv2dShape,
    act: Option<UnaryOp>,
    with_bias: bool,
    seed: u64,
) {
    // log, sqrt and recip need positive inputs: positive operands, so outputs ≥ K/100.
    let positive = matches!(act, Some(UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Recip));
    let (lo, hi) = if positive { (0.1, 1.0) } else { (-1.0, 1.0) };
    let gentle = !matches!(
        act,
        Some(UnaryOp::Exp | UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Square | UnaryOp::Recip)
    );
    let mut r = rng(seed);
    let x = rand_vec(&mut r, s.x_len(), lo, hi);
    let w = rand_vec(&mut r, s.w_len(), lo, hi);
    let bias = rand_vec(&mut r, s.c_out, lo, hi);
    let xb = gpu.upload("test x", &x).unwrap();
    let wb = gpu.upload("test w", &w).unwrap();
    let bb = gpu.upload("test bias", &bias).unwrap();
    let (yb, pb) = (output(gpu, s.y_len()), output(gpu, s.y_len()));
    let e = EpilogueArgs {
        bias: with_bias.then_some(&bb),
        activation: act,
    };
    let fused = conv2d_forward_epilogue(gpu, &xb, &wb, &yb, s, e, "test").unwrap();
    let plain = conv2d_forward(gpu, &xb, &wb, &pb, s, "test").unwrap();
    let len = s.y_len() as u64;
    assert_eq!(fused.flops, s.flops() + e.epilogue().flops() * len);
    let got = gpu
        .run(&[&fused, &plain], &[(&yb, s.y_len()), (&pb, s.y_len())])
        .unwrap();
    let what = format!("conv2d_forward{} {}", e.epilogue().suffix(), s.describe());
    let [oh, ow] = s.out_hw().unwrap();
    let channel = |i: usize| (i / (oh * ow)) % s.c_out;
    let finished: Vec<f64> = got[1]
        .iter()
        .enumerate()
        .map(|(i, &v)| epilogue_value(v as f64, with_bias.then(|| bias[channel(i)] as f64), act))
        .collect();
    assert_close(&what, &got[0], &finished, EPILOGUE_ATOL, EPILOGUE_RTOL);
    if gentle {
        let bias64 = to_f64(&bias);
        let bias64 = with_bias.then_some(&bias64[..]);
        let mut want = vec![0.0; s.y_len()];
        let (x64, w64) = (to_f64(&x), to_f64(&w));
        cpu_conv::conv2d_forward_epilogue(&x64, &w64, bias64, act, &mut want, s);
        let atol = SLOPE * conv_atol(s.c_in * s.kh * s.kw) + EPILOGUE_ATOL;
        assert_close(&what, &got[0], &want, atol, CONV_RTOL + EPILOGUE_RTOL);
    }
    for b in [xb, wb, bb, yb, pb] {
        gpu.recycle(b);
    }
}

/// y = conv2d(x, w), dx and dw straight from the definition, in f64:
/// y[n,o,oy,ox] = Σ_{c,ky,kx} x[n, c, oy·sh − ph + ky·dh, ox·sw − pw + kx·dw] · w[o,c,ky,kx].
fn naive_conv(x: &[f64], w: &[f64], dy: &[f64], s: &Conv2dShape) -> [Vec<f64>; 3] {
    let [oh, ow] = s.out_hw().unwrap();
    let mut y = vec![0.0; s.y_len()];
    let mut dx = vec![0.0; s.x_len()];
    let mut dw = vec![0.0; s.w_len()];
    for n in 0..s.n {
        for o in 0..s.c_out {
            for oy in 0..oh {
                for ox in 0..ow {
                    let yi = ((n * s.c_out + o) * oh + oy) * ow + ox;
                    for c in 0..s.c_in {
                        for ky in 0..s.kh {
                            for kx in 0..s.kw {
                                let ih = (oy * s.stride[0] + ky * s.dilation[0]) as isize
                                    - s.pad[0] as isize;
                                let iw = (ox * s.stride[1] + kx * s.dilation[1]) as isize
                                    - s.pad[1] as isize;
                                if ih < 0 || iw < 0 || ih >= s.h as isize || iw >= s.w as isize {
                                    continue;
                                }
                                let xi = ((n * s.c_in + c) * s.h + ih as usize) * s.w + iw as usize;
                                let wi = ((o * s.c_in + c) * s.kh + ky) * s.kw + kx;
                                y[yi] += x[xi] * w[wi];
                                dx[xi] += w[wi] * dy[yi];
                                dw[wi] += x[xi] * dy[yi];
                            }
                        }
                    }
                }
            }
        }
    }
    [y, dx, dw]
}

/// The CPU reference itself, in f64 and in f32 (the CPU backend trains in f32), against the
/// definition. In f64 the GEMM only reorders the sum, so it agrees to 1e-12.
#[test]
fn cpu_conv_reference_matches_naive_loops() {
    for (i, (name, s)) in conv_cases().into_iter().enumerate() {
        let mut r = rng(200 + i as u64);
        let x = rand_vec(&mut r, s.x_len(), -1.0, 1.0);
        let w = rand_vec(&mut r, s.w_len(), -1.0, 1.0);
        let dy = rand_vec(&mut r, s.y_len(), -1.0, 1.0);
        let (x64, w64, dy64) = (to_f64(&x), to_f64(&w), to_f64(&dy));
        let want = naive_conv(&x64, &w64, &dy64, &s);

        let mut y = vec![f64::NAN; s.y_len()];
        let mut dx = vec![f64::NAN; s.x_len()];
        let mut dw = vec![f64::NAN; s.w_len()];
        cpu_conv::conv2d_forward(&x64, &w64, &mut y, &s);
        cpu_conv::conv2d_grad_input(&dy64, &w64, &mut dx, &s);
        cpu_conv::conv2d_grad_weight(&x64, &dy64, &mut dw, &s);
        for (pass, got, want) in [
            ("forward", &y, &want[0]),
            ("grad_input", &dx, &want[1]),
            ("grad_weight", &dw, &want[2]),
        ] {
            for (j, (g, w)) in got.iter().zip(want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-12 * (1.0 + w.abs()),
                    "cpu conv2d {pass} f64 {name}: index {j}: got {g}, want {w}"
                );
            }
        }

        let mut y = vec![f32::NAN; s.y_len()];
        let mut dx = vec![f32::NAN; s.x_len()];
        let mut dw = vec![f32::NAN; s.w_len()];
        cpu_conv::conv2d_forward(&x, &w, &mut y, &s);
        cpu_conv::conv2d_grad_input(&dy, &w, &mut dx, &s);
        cpu_conv::conv2d_grad_weight(&x, &dy, &mut dw, &s);
        let [oh, ow] = s.out_hw().unwrap();
        let what = |pass: &str| format!("cpu {pass} f32 {name}: {}", s.describe());
        let k_fwd = conv_atol(s.c_in * s.kh * s.kw);
        assert_close(&what("conv2d_forward"), &y, &want[0], k_fwd, CONV_RTOL);
        let k_in = conv_atol(s.c_out * s.kh * s.kw);
        assert_close(&what("conv2d_grad_input"), &dx, &want[1], k_in, CONV_RTOL);
        let k_w = conv_atol(s.n * oh * ow);
        assert_close(&what("conv2d_grad_weight"), &dw, &want[2], k_w, CONV_RTOL);
    }
}

fn pool(
    n: usize,
    c: usize,
    [h, w]: [usize; 2],
    k: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
) -> Pool2dShape {
    Pool2dShape {
        n,
        c,
        h,
        w,
        kh: k[0],
        kw: k[1],
        stride,
        pad,
    }
}

fn pool_cases() -> Vec<(&'static str, Pool2dShape)> {
    vec![
        ("k2 s2 even", pool(2, 3, [8, 6], [2, 2], [2, 2], [0, 0])),
        ("k2 s2 odd", pool(2, 3, [7, 9], [2, 2], [2, 2], [0, 0])),
        ("k2 s2 p1", pool(2, 2, [7, 8], [2, 2], [2, 2], [1, 1])),
        ("k2 s3 gaps", pool(1, 3, [8, 10], [2, 2], [3, 3], [0, 1])),
        ("k3 s2 p1", pool(2, 4, [14, 13], [3, 3], [2, 2], [1, 1])),
        (
            "k3 s2 p1 batch 1",
            pool(1, 1, [5, 5], [3, 3], [2, 2], [1, 1]),
        ),
        (
            "overlapping 3×2",
            pool(2, 2, [6, 7], [3, 2], [1, 2], [1, 0]),
        ),
        ("mixed 2×3 s2", pool(1, 2, [9, 11], [2, 3], [2, 2], [1, 1])),
        ("model pool", pool(3, 32, [28, 28], [2, 2], [2, 2], [0, 0])),
    ]
}

/// Runs the four pooling kernels on `x` and `dy` and checks them against the CPU in f64.
fn check_pool(gpu: &Gpu, name: &str, s: &Pool2dShape, x: &[f32], dy: &[f32]) {
    let (xl, yl) = (s.x_len(), s.y_len());
    let (x64, dy64) = (to_f64(x), to_f64(dy));
    let mut want = [vec![0.0; yl], vec![0.0; xl], vec![0.0; yl], vec![0.0; xl]];
    cpu_pool::max_pool2d(&x64, &mut want[0], s);
    cpu_pool::max_pool2d_grad(&x64, &dy64, &mut want[1], s);
    cpu_pool::avg_pool2d(&x64, &mut want[2], s);
    cpu_pool::avg_pool2d_grad(&dy64, &mut want[3], s);

    let xb = gpu.upload("test x", x).unwrap();
    let dyb = gpu.upload("test dy", dy).unwrap();
    let outs = [
        output(gpu, yl),
        output(gpu, xl),
        output(gpu, yl),
        output(gpu, xl),
    ];
    let d = [
        max_pool2d(gpu, &xb, &outs[0], s, "test").unwrap(),
        max_pool2d_grad(gpu, &xb, &dyb, &outs[1], s, "test").unwrap(),
        avg_pool2d(gpu, &xb, &outs[2], s, "test").unwrap(),
        avg_pool2d_grad(gpu, &dyb, &outs[3], s, "test").unwrap(),
    ];
    let lens = [yl, xl, yl, xl];
    let reads: Vec<_> = outs.iter().zip(lens).collect();
    let got = gpu.run(&d.each_ref(), &reads).unwrap();
    let names = [
        "max_pool2d",
        "max_pool2d_grad",
        "avg_pool2d",
        "avg_pool2d_grad",
    ];
    for ((kernel, got), want) in names.iter().zip(&got).zip(&want) {
        let what = format!("{kernel} {name}: {}", s.describe());
        assert_close(&what, got, want, POOL_ATOL, POOL_RTOL);
    }
    gpu.recycle(xb);
    gpu.recycle(dyb);
    for b in outs {
        gpu.recycle(b);
    }
}

#[test]
fn pool_matches_cpu_reference() {
    let Some(gpu) = test_gpu() else { return };
    for (i, (name, s)) in pool_cases().into_iter().enumerate() {
        let mut r = rng(300 + i as u64);
        let x = rand_vec(&mut r, s.x_len(), -1.0, 1.0);
        let dy = rand_vec(&mut r, s.y_len(), -1.0, 1.0);
        check_pool(gpu, name, &s, &x, &dy);
    }
}

/// Inputs from {−1, 0, 1, 2} make tied maxima common; the GPU must pick the same (first) one.
#[test]
fn max_pool_ties_agree_with_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (i, (name, s)) in pool_cases().into_iter().enumerate() {
        let mut r = rng(400 + i as u64);
        let x: Vec<f32> = rand_vec(&mut r, s.x_len(), -1.0, 3.0)
            .into_iter()
            .map(f32::floor)
            .collect();
        let dy = rand_vec(&mut r, s.y_len(), -1.0, 1.0);
        check_pool(gpu, name, &s, &x, &dy);
    }
}

#[test]
fn cpu_max_pool_grad_tie_rule() {
    // A 4×4 plane of ones, 2×2 windows, stride 2: every window's gradient goes to its top-left.
    let s = pool(1, 1, [4, 4], [2, 2], [2, 2], [0, 0]);
    let mut dx = vec![f64::NAN; 16];
    cpu_pool::max_pool2d_grad(&[1.0; 16], &[1.0, 2.0, 3.0, 4.0], &mut dx, &s);
    #[rustfmt::skip]
    let want = [
        1.0, 0.0, 2.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        3.0, 0.0, 4.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(dx, want);
    // Overlapping 3×3 windows with stride 1 on a tie between (0, 1) and (1, 0): the row-major first,
    // (0, 1), collects the gradient of every window holding both.
    let s = pool(1, 1, [3, 3], [2, 2], [1, 1], [0, 0]);
    let x = [0.0, 5.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let mut dx = vec![f64::NAN; 9];
    cpu_pool::max_pool2d_grad(&x, &[1.0, 10.0, 100.0, 1000.0], &mut dx, &s);
    // Windows: (0,0) holds both → (0,1); (0,1) → (0,1); (1,0) → (1,0); (1,1) holds neither: its
    // first element (1,1) wins among zeros.
    assert_eq!(dx, [0.0, 11.0, 0.0, 100.0, 1000.0, 0.0, 0.0, 0.0, 0.0]);
}

fn expect_bad_shape<T>(result: Result<T, DeviceError>, needles: &[&str]) {
    match result {
        Ok(_) => panic!("expected a BadShape error mentioning {needles:?}"),
        Err(e @ DeviceError::BadShape { .. }) => {
            let msg = e.to_string();
            for n in needles {
                assert!(msg.contains(n), "error {msg:?} does not mention {n:?}");
            }
        }
        Err(e) => panic!("expected BadShape, got {e}"),
    }
}

#[test]
fn conv_bad_input_is_refused() {
    let Some(gpu) = test_gpu() else { return };
    let good = conv(2, 3, [6, 6], 4, [3, 3], [1, 1], [1, 1], [1, 1]);
    let x = gpu.buffer("test x", good.x_len()).unwrap();
    let w = gpu.buffer("test w", good.w_len()).unwrap();
    let y = gpu.buffer("test y", good.y_len()).unwrap();
    assert!(conv2d_forward(gpu, &x, &w, &y, &good, "test").is_ok());

    // A 5×5 kernel with dilation 2 spans 9 > 6 + 2·1.
    let too_big = Conv2dShape {
        kh: 5,
        kw: 5,
        dilation: [2, 2],
        ..good
    };
    expect_bad_shape(
        conv2d_forward(gpu, &x, &w, &y, &too_big, "test"),
        &[
            "conv2d_forward",
            "[2, 3, 6, 6]",
            "larger than the padded input",
        ],
    );
    assert_eq!(too_big.out_hw(), None);
    for zero in [
        Conv2dShape { n: 0, ..good },
        Conv2dShape { c_in: 0, ..good },
        Conv2dShape { h: 0, ..good },
        Conv2dShape { c_out: 0, ..good },
        Conv2dShape { kw: 0, ..good },
    ] {
        expect_bad_shape(
            conv2d_grad_input(gpu, &y, &w, &x, &zero, "test"),
            &["conv2d_grad_input", "zero-sized"],
        );
    }
    expect_bad_shape(
        conv2d_grad_weight(
            gpu,
            &x,
            &y,
            &w,
            &Conv2dShape {
                stride: [0, 1],
                ..good
            },
            "test",
        ),
        &["conv2d_grad_weight", "stride"],
    );
    // Buffers that do not match the shape: x of a 64-image batch in a buffer for 2 images.
    let big = Conv2dShape { n: 64, ..good };
    expect_bad_shape(
        conv2d_forward(gpu, &x, &w, &y, &big, "test"),
        &["conv2d_forward", "x holds", "[64, 3, 6, 6]"],
    );
    let wide = Conv2dShape { c_out: 400, ..good };
    expect_bad_shape(
        conv2d_grad_weight(gpu, &x, &y, &w, &wide, "test"),
        &["conv2d_grad_weight", "holds", "[400, 3, 3, 3]"],
    );
    for b in [x, w, y] {
        gpu.recycle(b);
    }
}

#[test]
fn pool_bad_input_is_refused() {
    let Some(gpu) = test_gpu() else { return };
    let good = pool(2, 3, [6, 6], [2, 2], [2, 2], [0, 0]);
    let x = gpu.buffer("test x", good.x_len()).unwrap();
    let y = gpu.buffer("test y", good.y_len()).unwrap();
    assert!(max_pool2d(gpu, &x, &y, &good, "test").is_ok());
    expect_bad_shape(
        max_pool2d(gpu, &x, &y, &Pool2dShape { kh: 7, ..good }, "test"),
        &["max_pool2d", "[2, 3, 6, 6]", "larger than the padded input"],
    );
    expect_bad_shape(
        avg_pool2d(
            gpu,
            &x,
            &y,
            &Pool2dShape {
                pad: [0, 2],
                ..good
            },
            "test",
        ),
        &["avg_pool2d", "padding"],
    );
    expect_bad_shape(
        avg_pool2d_grad(gpu, &y, &x, &Pool2dShape { c: 0, ..good }, "test"),
        &["avg_pool2d_grad", "zero-sized"],
    );
    let big = Pool2dShape {
        n: 64,
        h: 28,
        w: 28,
        ..good
    };
    expect_bad_shape(
        max_pool2d_grad(gpu, &x, &y, &x, &big, "test"),
        &["max_pool2d_grad", "holds", "[64, 3, 28, 28]"],
    );
    gpu.recycle(x);
    gpu.recycle(y);
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let err = std::panic::catch_unwind(f).expect_err("expected a panic");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn cpu_reference_panics_on_bad_input_naming_op_and_shapes() {
    let s = conv(2, 3, [6, 6], 4, [3, 3], [1, 1], [1, 1], [1, 1]);
    let msg = panic_message(|| {
        let mut y = vec![0.0f32; s.y_len()];
        cpu_conv::conv2d_forward(&vec![0.0; s.x_len() - 1], &vec![0.0; s.w_len()], &mut y, &s);
    });
    assert!(
        msg.contains("conv2d_forward") && msg.contains("[2, 3, 6, 6]"),
        "{msg}"
    );
    let msg = panic_message(|| {
        let bad = Conv2dShape { kh: 9, ..s };
        cpu_conv::conv2d_grad_weight(&[0.0f64; 216], &[0.0; 288], &mut [0.0; 108], &bad);
    });
    assert!(
        msg.contains("conv2d_grad_weight") && msg.contains("larger"),
        "{msg}"
    );
    let msg = panic_message(|| {
        let p = pool(1, 1, [4, 4], [2, 2], [2, 2], [0, 0]);
        cpu_pool::max_pool2d(&[0.0f32; 16], &mut [0.0; 3], &p);
    });
    assert!(
        msg.contains("max_pool2d") && msg.contains("[1, 1, 4, 4]"),
        "{msg}"
    );
}
