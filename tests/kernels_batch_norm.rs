//! The batch-norm kernels (statistics and normalization, backward, running-statistics update) on
//! an adapter against the CPU reference run in f64, on odd shapes, channels of 2 to 8192 values,
//! inputs far from zero; runs repeat bit for bit; bad buffers are refused.

mod common;

use common::{assert_close, out_buffer, rand_vec, rng, to_f64, SENTINEL, TAIL};
use sinter::sinter_device::kernels::batch_norm::{
    batch_norm2d, batch_norm2d_grad, batch_norm_update, BatchNormShape, BatchNormUpdate,
};
use sinter::sinter_device::testing::test_gpu;
use sinter::sinter_device::{wgpu, Dispatch, Gpu};
use sinter::sinter_model::cpu::batch_norm as cpu_bn;

/// Statistics: a channel's sum of m values in f32, strided over 256 invocations then a fixed
/// tree of 8 levels: the mean is off by about 8 roundings of the partial sums, ≈ 5e-7·|x|
/// for values of magnitude |x| (2 here, or 102 with the offset); the variance by a few ulps of
/// the squared deviations.
const MEAN_ATOL_PER_MAGNITUDE: f64 = 1e-6;
const VAR_RTOL: f64 = 2e-5;
/// y = x·scale + shift: the mean's error times the scale (≤ 1.5/0.9), then the rounding of
/// x·scale at |x|·scale and of the sum, for outputs of size ~3.
const Y_ATOL: f64 = 2e-5;
const Y_ATOL_PER_MAGNITUDE: f64 = 2e-6;
const Y_RTOL: f64 = 2e-5;
/// dx: the two channel sums (divided by m) and a few products per value.
const DX_ATOL: f64 = 2e-5;
const DX_RTOL: f64 = 2e-5;
/// dweight, dbias: sums of m terms of size ~1; the f32 rounding walk grows like √m, bounded here
/// by 1e-7·m on top of 1e-5 (a wrong index or a dropped term is an error of order 1).
const SUM_ATOL: f64 = 1e-5;
const SUM_ATOL_PER_VALUE: f64 = 1e-7;
const SUM_RTOL: f64 = 2e-5;
/// The running update: three roundings per value.
const RUNNING_ATOL: f64 = 1e-6;
const RUNNING_RTOL: f64 = 1e-6;

/// `[N, C, H, W]`, then how far x sits from zero.
const CASES: [([usize; 4], f32); 6] = [
    ([3, 5, 7, 9], 0.0),
    ([2, 1, 1, 1], 0.0),
    ([1, 3, 2, 1], 0.5),
    ([8, 3, 32, 32], 0.0),
    ([4, 70, 3, 3], 0.0),
    ([3, 5, 7, 9], 100.0),
];

struct Case {
    shape: BatchNormShape,
    x: Vec<f32>,
    weight: Vec<f32>,
    bias: Vec<f32>,
    dy: Vec<f32>,
}

fn case(seed: u64, [n, c, h, w]: [usize; 4], offset: f32) -> Case {
    let mut r = rng(seed);
    let shape = BatchNormShape {
        n,
        channels: c,
        hw: h * w,
        eps: 1e-5,
    };
    let len = shape.len();
    Case {
        x: rand_vec(&mut r, len, -2.0 + offset, 2.0 + offset),
        weight: rand_vec(&mut r, c, 0.5, 1.5),
        bias: rand_vec(&mut r, c, -0.5, 0.5),
        dy: rand_vec(&mut r, len, -1.0, 1.0),
        shape,
    }
}

/// Runs `dispatches` in one submit and reads each output (`len` values plus the sentinels after
/// them, which must be intact).
fn run(
    gpu: &Gpu,
    what: &str,
    dispatches: &[Dispatch],
    outs: &[(&wgpu::Buffer, usize)],
) -> Vec<Vec<f32>> {
    let refs: Vec<&Dispatch> = dispatches.iter().collect();
    let reads: Vec<(&wgpu::Buffer, usize)> = outs.iter().map(|&(b, n)| (b, n + TAIL)).collect();
    let mut got = gpu.run(&refs, &reads).expect("the dispatches run");
    for (v, &(_, n)) in got.iter_mut().zip(outs) {
        let tail = v.split_off(n);
        assert!(
            tail.iter().all(|&t| t == SENTINEL),
            "{what}: wrote past the end of an output: {tail:?}"
        );
    }
    got
}

/// (y, stats) on the adapter.
fn forward(gpu: &Gpu, c: &Case) -> Vec<Vec<f32>> {
    let s = &c.shape;
    let (xb, wb, bb) = (
        gpu.upload("x", &c.x).unwrap(),
        gpu.upload("weight", &c.weight).unwrap(),
        gpu.upload("bias", &c.bias).unwrap(),
    );
    let (yb, sb) = (
        out_buffer(gpu, "y", s.len()),
        out_buffer(gpu, "stats", 2 * s.channels),
    );
    let d = batch_norm2d(gpu, &xb, &wb, &bb, &yb, &sb, s, "test").unwrap();
    run(
        gpu,
        "batch_norm2d",
        &d,
        &[(&yb, s.len()), (&sb, 2 * s.channels)],
    )
}

/// (dx, dweight, dbias) on the adapter, from the CPU's statistics (rounded to f32).
fn backward(gpu: &Gpu, c: &Case, stats: &[f32]) -> Vec<Vec<f32>> {
    let s = &c.shape;
    let (ch, len) = (s.channels, s.len());
    let xb = gpu.upload("x", &c.x).unwrap();
    let wb = gpu.upload("weight", &c.weight).unwrap();
    let sb = gpu.upload("stats", stats).unwrap();
    let dyb = gpu.upload("dy", &c.dy).unwrap();
    let (dxb, dwb, dbb) = (
        out_buffer(gpu, "dx", len),
        out_buffer(gpu, "dweight", ch),
        out_buffer(gpu, "dbias", ch),
    );
    let d = batch_norm2d_grad(gpu, &xb, &wb, &sb, &dyb, &dxb, &dwb, &dbb, s, "test").unwrap();
    run(
        gpu,
        "batch_norm2d_grad",
        &d,
        &[(&dxb, len), (&dwb, ch), (&dbb, ch)],
    )
}

fn name(c: &Case, offset: f32) -> String {
    let s = &c.shape;
    format!(
        "[N, C, H·W] = [{}, {}, {}] offset {offset}",
        s.n, s.channels, s.hw
    )
}

#[test]
fn batch_norm_forward_matches_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (k, &(dims, offset)) in CASES.iter().enumerate() {
        let c = case(900 + k as u64, dims, offset);
        let s = &c.shape;
        let what = name(&c, offset);
        let (mut y, mut stats) = (vec![0.0; s.len()], vec![0.0; 2 * s.channels]);
        cpu_bn::batch_norm2d(
            &to_f64(&c.x),
            &to_f64(&c.weight),
            &to_f64(&c.bias),
            &mut y,
            &mut stats,
            s,
        );
        let got = forward(gpu, &c);
        let ch = s.channels;
        let magnitude = 2.0 + offset as f64;
        let mean_atol = MEAN_ATOL_PER_MAGNITUDE * magnitude;
        let y_atol = Y_ATOL + Y_ATOL_PER_MAGNITUDE * magnitude;
        assert_close(
            &format!("mean {what}"),
            &got[1][..ch],
            &stats[..ch],
            mean_atol,
            0.0,
        );
        assert_close(
            &format!("var {what}"),
            &got[1][ch..],
            &stats[ch..],
            0.0,
            VAR_RTOL,
        );
        assert_close(&format!("y {what}"), &got[0], &y, y_atol, Y_RTOL);
    }
}

#[test]
fn batch_norm_backward_matches_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (k, &(dims, offset)) in CASES.iter().enumerate() {
        let c = case(950 + k as u64, dims, offset);
        let s = &c.shape;
        let what = name(&c, offset);
        let (ch, len) = (s.channels, s.len());
        let (mut y, mut stats) = (vec![0.0; len], vec![0.0; 2 * ch]);
        let x = to_f64(&c.x);
        cpu_bn::batch_norm2d(
            &x,
            &to_f64(&c.weight),
            &to_f64(&c.bias),
            &mut y,
            &mut stats,
            s,
        );
        // Both sides start from the same f32 statistics, as the GPU step does.
        let stats32: Vec<f32> = stats.iter().map(|&v| v as f32).collect();
        let (mut dx, mut dw, mut db) = (vec![0.0; len], vec![0.0; ch], vec![0.0; ch]);
        cpu_bn::batch_norm2d_grad(
            &x,
            &to_f64(&c.weight),
            &to_f64(&stats32),
            &to_f64(&c.dy),
            &mut dx,
            &mut dw,
            &mut db,
            s,
        );
        let got = backward(gpu, &c, &stats32);
        let sum_atol = SUM_ATOL + SUM_ATOL_PER_VALUE * s.count() as f64;
        assert_close(&format!("dx {what}"), &got[0], &dx, DX_ATOL, DX_RTOL);
        assert_close(&format!("dweight {what}"), &got[1], &dw, sum_atol, SUM_RTOL);
        assert_close(&format!("dbias {what}"), &got[2], &db, sum_atol, SUM_RTOL);
    }
}

#[test]
fn batch_norm_runs_repeat_bit_for_bit() {
    let Some(gpu) = test_gpu() else { return };
    let c = case(990, [8, 3, 32, 32], 0.0);
    let first = forward(gpu, &c);
    let again = forward(gpu, &c);
    assert_eq!(first, again, "batch_norm2d is not reproducible");
    let grads = backward(gpu, &c, &first[1]);
    assert_eq!(
        grads,
        backward(gpu, &c, &first[1]),
        "batch_norm2d_grad is not reproducible"
    );
}

#[test]
fn running_update_matches_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (channels, count) in [(5, 189), (1, 2), (300, 7)] {
        let mut r = rng(channels as u64);
        let u = BatchNormUpdate {
            channels,
            count,
            momentum: 0.1,
        };
        let stats = rand_vec(&mut r, 2 * channels, 0.0, 3.0);
        let mean = rand_vec(&mut r, channels, -1.0, 1.0);
        let var = rand_vec(&mut r, channels, 0.5, 2.0);
        let (sb, mb, vb, nb) = (
            gpu.upload("stats", &stats).unwrap(),
            gpu.upload("running_mean", &mean).unwrap(),
            gpu.upload("running_var", &var).unwrap(),
            gpu.upload("num_batches_tracked", &[41.0f32]).unwrap(),
        );
        let d = batch_norm_update(gpu, &sb, &mb, &vb, &nb, &u, "test").unwrap();
        let got = gpu
            .run(&[&d], &[(&mb, channels), (&vb, channels), (&nb, 1)])
            .unwrap();
        let (mut m, mut v, mut n) = (to_f64(&mean), to_f64(&var), vec![41.0]);
        cpu_bn::batch_norm_update(&to_f64(&stats), &mut m, &mut v, &mut n, &u);
        let what = format!("batch_norm_update C {channels}, count {count}");
        assert_close(&what, &got[0], &m, RUNNING_ATOL, RUNNING_RTOL);
        assert_close(&what, &got[1], &v, RUNNING_ATOL, RUNNING_RTOL);
        assert_eq!(got[2], [42.0], "{what}: num_batches_tracked");
    }
}

#[test]
fn bad_buffers_and_shapes_are_refused() {
    let Some(gpu) = test_gpu() else { return };
    let s = BatchNormShape {
        n: 2,
        channels: 100,
        hw: 4,
        eps: 1e-5,
    };
    let x = gpu.upload("x", &[0.0f32; 800]).unwrap();
    // Pool buffers hold at least 64 values, so "short" must be well short of 100.
    let small = gpu.upload("weight", &[1.0f32; 8]).unwrap();
    let ok = gpu.upload("bias", &[0.0f32; 100]).unwrap();
    let y = out_buffer(gpu, "y", 800);
    let stats = out_buffer(gpu, "stats", 200);
    let e = batch_norm2d(gpu, &x, &small, &ok, &y, &stats, &s, "t")
        .err()
        .expect("a short weight is refused")
        .to_string();
    assert!(e.contains("weight") && e.contains("100"), "{e}");
    let single = BatchNormShape { n: 1, hw: 1, ..s };
    let e = batch_norm2d(gpu, &x, &ok, &ok, &y, &stats, &single, "t")
        .err()
        .expect("one value per channel is refused")
        .to_string();
    assert!(e.contains("more than 1 value"), "{e}");
}

#[test]
fn the_cpu_reference_repeats_bit_for_bit_in_f32() {
    // Large enough that channels are reduced on rayon's threads: the order is fixed per channel.
    let c = case(995, [16, 8, 32, 32], 0.0);
    let s = &c.shape;
    let run = || {
        let (mut y, mut stats) = (vec![0.0f32; s.len()], vec![0.0f32; 2 * s.channels]);
        cpu_bn::batch_norm2d(&c.x, &c.weight, &c.bias, &mut y, &mut stats, s);
        let (mut dx, mut dw, mut db) = (
            vec![0.0f32; s.len()],
            vec![0.0f32; s.channels],
            vec![0.0f32; s.channels],
        );
        cpu_bn::batch_norm2d_grad(&c.x, &c.weight, &stats, &c.dy, &mut dx, &mut dw, &mut db, s);
        (y, stats, dx, dw, db)
    };
    assert!(run() == run(), "the CPU batch norm is not reproducible");
}
