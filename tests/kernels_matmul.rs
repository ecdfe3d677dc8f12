//! The matmul kernels (every numbered variant and the default choice) against the CPU reference
//! run in f64, over odd shapes, every transpose, broadcast batches and long k; the epilogue inside
//! the kernel (bias, every activation); plus bad input.

mod common;

use common::{assert_close, rand_vec, rng, to_f64};
use proptest::prelude::*;
use sinter::sinter_device::kernels::elementwise::UnaryOp;
use sinter::sinter_device::kernels::matmul::{
    matmul, matmul_epilogue, matmul_with, matmul_with_epilogue, MatmulShape, MatmulVariant,
};
use sinter::sinter_device::kernels::EpilogueArgs;
use sinter::sinter_device::testing::{run_one, test_gpu};
use sinter::sinter_device::{DeviceError, Gpu};
use sinter::sinter_model::cpu::elementwise::epilogue_value;
use sinter::sinter_model::cpu::matmul as cpu;

/// Absolute tolerance at k = 64, scaled by √(k/64). The kernels sum k products of values in
/// [−1, 1] in f32 one after another; each addition rounds by at most 2⁻²⁴ of a partial sum of size
/// ~√i/3, so the error is a random walk of about 2⁻²⁴·k/4 (1.5e-5 at k = 1000). 1e-4·√(k/64)
/// leaves a margin of 25× or more at every k tested while a wrong index, a missed edge or a dropped
/// k-step shows up as an error of order 0.1 or larger.
const ATOL_AT_K64: f64 = 1e-4;
const RTOL: f64 = 1e-4;

fn atol(k: usize) -> f64 {
    ATOL_AT_K64 * (k as f64 / 64.0).sqrt().max(1.0)
}

/// Random operands for `s`, with every element of the buffers (including gaps between padded
/// batch items) drawn, so a kernel reading the wrong place gets a wrong value, not a zero.
fn operands(s: &MatmulShape, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut r = rng(seed);
    (
        rand_vec(&mut r, s.a_len(), -1.0, 1.0),
        rand_vec(&mut r, s.b_len(), -1.0, 1.0),
    )
}

fn reference(a: &[f32], b: &[f32], s: &MatmulShape) -> Vec<f64> {
    let mut c = vec![0.0f64; s.c_len()];
    cpu::matmul(&to_f64(a), &to_f64(b), &mut c, s);
    c
}

/// Runs `s` on the GPU with `variant` (None: the default `matmul`) and checks it against f64.
fn check_case(gpu: &Gpu, variant: Option<MatmulVariant>, s: &MatmulShape, seed: u64) {
    let (a, b) = operands(s, seed);
    let want = reference(&a, &b, s);
    let ab = gpu.upload("test a", &a).unwrap();
    let bb = gpu.upload("test b", &b).unwrap();
    let cb = gpu.buffer("test c", s.c_len()).unwrap();
    // Poison C so that an output the kernel forgets to write cannot pass as a stale right answer.
    gpu.write(&cb, &vec![f32::NAN; s.c_len()]);
    let d = match variant {
        Some(v) => matmul_with(gpu, v, &ab, &bb, &cb, s, "test"),
        None => matmul(gpu, &ab, &bb, &cb, s, "test"),
    }
    .unwrap_or_else(|e| panic!("{s}: {e}"));
    assert_eq!(d.flops, s.flops());
    let got = run_one(gpu, &d, &cb, s.c_len());
    let name = variant.map_or("matmul (default)", |v| v.entry());
    assert_close(&format!("{name} {s}"), &got, &want, atol(s.k), RTOL);
    for buf in [ab, bb, cb] {
        gpu.recycle(buf);
    }
}

/// Every variant the adapter runs and the default on one shape.
fn check_all(gpu: &Gpu, s: &MatmulShape, seed: u64) {
    for v in MatmulVariant::ALL.into_iter().filter(|v| v.runs_on(gpu)) {
        check_case(gpu, Some(v), s, seed);
    }
    check_case(gpu, None, s, seed);
}

const TRANSPOSES: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];

#[test]
fn odd_and_tile_sized_shapes() {
    let Some(gpu) = test_gpu() else { return };
    let shapes = [
        (1, 1, 1, 1),
        (1, 7, 13, 5),
        (1, 33, 65, 17),
        (1, 64, 64, 64),
        (1, 65, 63, 66),
        (1, 1, 100, 9),
        (1, 100, 1, 9),
        (1, 128, 3136, 64),
        (3, 7, 13, 5),
        (3, 33, 65, 17),
        // Past one 128×128 tile of v6 on both axes, k not a multiple of its 8-step.
        (2, 130, 129, 21),
    ];
    for (i, &(batch, m, n, k)) in shapes.iter().enumerate() {
        check_all(gpu, &MatmulShape::new(batch, m, n, k), i as u64);
    }
}

/// The subgroup variant is offered, and so checked by every test here, exactly where the
/// adapter's subgroups hold a workgroup's 8 lanes; lavapipe on Vulkan (CI's adapter) has them.
#[test]
fn the_subgroup_variant_runs_where_subgroups_hold_eight_lanes() {
    let Some(gpu) = test_gpu() else { return };
    let eight = gpu.report.subgroups_of_at_least(8);
    assert_eq!(MatmulVariant::V5Subgroup.runs_on(gpu), eight);
    if gpu.report.name.contains("llvmpipe")
        && gpu.report.backend == sinter::sinter_device::wgpu::Backend::Vulkan
    {
        assert!(eight, "lavapipe's subgroups: {:?}", gpu.report.subgroups);
    }
}

#[test]
fn every_transpose_combination() {
    let Some(gpu) = test_gpu() else { return };
    // Unaligned (odd axes), aligned (multiples of 4: the vec4 paths of v3 and v4) and partly
    // aligned shapes (m, n multiples of 4 but k odd: v4's masked last k-step).
    let shapes = [(33, 65, 17), (64, 48, 32), (5, 8, 12), (8, 12, 7)];
    for (i, &(m, n, k)) in shapes.iter().enumerate() {
        for (j, &(ta, tb)) in TRANSPOSES.iter().enumerate() {
            let s = MatmulShape::new(2, m, n, k).with_trans(ta, tb);
            check_all(gpu, &s, (10 * i + j) as u64);
        }
    }
}

#[test]
fn broadcast_and_padded_batch_strides() {
    let Some(gpu) = test_gpu() else { return };
    for (j, &(ta, tb)) in TRANSPOSES.iter().enumerate() {
        let s = MatmulShape::new(3, 19, 23, 11).with_trans(ta, tb);
        check_all(gpu, &s.broadcast_a(), 100 + j as u64);
        check_all(gpu, &s.broadcast_b(), 200 + j as u64);
        // A weight shared by a batch, on the aligned path.
        let w = MatmulShape::new(3, 16, 32, 8)
            .with_trans(ta, tb)
            .broadcast_b();
        check_all(gpu, &w, 300 + j as u64);
        // Batch items further apart than one matrix: the gaps must never be read.
        let mut padded = s;
        padded.a_batch_stride += 5;
        padded.b_batch_stride += 8;
        check_all(gpu, &padded, 400 + j as u64);
    }
}

#[test]
fn long_k() {
    let Some(gpu) = test_gpu() else { return };
    check_all(gpu, &MatmulShape::new(1, 9, 11, 1000), 500);
    check_all(gpu, &MatmulShape::new(1, 64, 64, 1000), 501);
    check_all(
        gpu,
        &MatmulShape::new(2, 20, 36, 1001).with_trans(true, true),
        502,
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_small_shapes(
        batch in 1usize..4,
        m in 1usize..70,
        n in 1usize..70,
        k in 1usize..70,
        ta in any::<bool>(),
        tb in any::<bool>(),
        bcast in 0usize..3,
        seed in any::<u64>(),
    ) {
        let Some(gpu) = test_gpu() else { return Ok(()) };
        let mut s = MatmulShape::new(batch, m, n, k).with_trans(ta, tb);
        if bcast == 1 {
            s = s.broadcast_a();
        } else if bcast == 2 {
            s = s.broadcast_b();
        }
        check_all(gpu, &s, seed);
    }
}

/// The epilogue against the same adapter's plain product finished on the CPU in f64: the
/// epilogue runs the same WGSL unary functions as the elementwise kernels, after one f32 add, so
/// it gets their tolerance (kernels_elementwise.rs: UNARY_ATOL, UNARY_RTOL).
const EPILOGUE_ATOL: f64 = 2e-6;
const EPILOGUE_RTOL: f64 = 2e-5;
/// Against the f64 reference of the whole fused product, for the activations whose slope is at
/// most this (the product's error passes through at most this much larger), the product's
/// tolerance times this plus the epilogue's.
const SLOPE: f64 = 1.2;

/// No activation, then every unary op.
fn activations() -> Vec<Option<UnaryOp>> {
    std::iter::once(None)
        .chain(UnaryOp::ALL.map(Some))
        .collect()
}

/// Whether |f'| ≤ [`SLOPE`] everywhere (exp, log, sqrt, square and recip amplify errors).
fn gentle(act: Option<UnaryOp>) -> bool {
    !matches!(
        act,
        Some(UnaryOp::Exp | UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Square | UnaryOp::Recip)
    )
}

/// Operands (and biases) in `act`'s domain: positive for log, sqrt and recip, so every product
/// is at least k/100.
fn domain(act: Option<UnaryOp>) -> (f32, f32) {
    match act {
        Some(UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Recip) => (0.1, 1.0),
        _ => (-1.0, 1.0),
    }
}

/// Runs `s` with an epilogue (`variant` None: the default `matmul_epilogue`) and checks it as
/// described at [`EPILOGUE_ATOL`] and [`SLOPE`].
fn check_epilogue(
    gpu: &Gpu,
    variant: Option<MatmulVariant>,
    s: &MatmulShape,
    act: Option<UnaryOp>,
    with_bias: bool,
    seed: u64,
) {
    let (lo, hi) = domain(act);
    let mut r = rng(seed);
    let a = rand_vec(&mut r, s.a_len(), lo, hi);
    let b = rand_vec(&mut r, s.b_len(), lo, hi);
    let bias = rand_vec(&mut r, s.n, lo, hi);
    let (ab, bb, biasb) = (
        gpu.upload("test a", &a).unwrap(),
        gpu.upload("test b", &b).unwrap(),
        gpu.upload("test bias", &bias).unwrap(),
    );
    let (cb, pb) = (
        gpu.buffer("test c", s.c_len()).unwrap(),
        gpu.buffer("test plain", s.c_len()).unwrap(),
    );
    gpu.write(&cb, &vec![f32::NAN; s.c_len()]);
    let e = EpilogueArgs {
        bias: with_bias.then_some(&biasb),
        activation: act,
    };
    let v = variant.unwrap_or_else(|| MatmulVariant::best_for(gpu));
    let fused = match variant {
        Some(v) => matmul_with_epilogue(gpu, v, &ab, &bb, &cb, s, e, "test"),
        None => matmul_epilogue(gpu, &ab, &bb, &cb, s, e, "test"),
    }
    .unwrap_or_else(|e| panic!("{s}: {e}"));
    let plain = matmul_with(gpu, v, &ab, &bb, &pb, s, "test").unwrap();
    assert_eq!(
        fused.flops,
        s.flops() + e.epilogue().flops() * s.c_len() as u64
    );
    let got = gpu
        .run(&[&fused, &plain], &[(&cb, s.c_len()), (&pb, s.c_len())])
        .unwrap();
    let name = format!(
        "{}{} {s}",
        variant.map_or("matmul (default)", |v| v.entry()),
        e.epilogue().suffix()
    );
    let bias_of = |j: usize| with_bias.then(|| bias[j] as f64);
    let finished: Vec<f64> = got[1]
        .iter()
        .enumerate()
        .map(|(i, &v)| epilogue_value(v as f64, bias_of(i % s.n), act))
        .collect();
    assert_close(&name, &got[0], &finished, EPILOGUE_ATOL, EPILOGUE_RTOL);
    if gentle(act) {
        let bias64 = to_f64(&bias);
        let mut want = vec![0.0; s.c_len()];
        let bias64 = with_bias.then_some(&bias64[..]);
        cpu::matmul_epilogue(&to_f64(&a), &to_f64(&b), bias64, act, &mut want, s);
        let atol = SLOPE * atol(s.k) + EPILOGUE_ATOL;
        assert_close(&name, &got[0], &want, atol, RTOL + EPILOGUE_RTOL);
    }
    for buf in [ab, bb, biasb, cb, pb] {
        gpu.recycle(buf);
    }
}

/// The epilogue inside the kernel, on the variants the default picks (v3 for hardware, v5 or v4
/// for software adapters): every activation with a bias, and no activation, ReLU and SiLU without,
/// on a shape that is no multiple of any tile; a few epilogues on aligned (vec4 stores),
/// transposed and broadcast shapes, on v1, v2, v4 and v6, and through the default. (Each epilogue is its
/// own pipeline: the sweep is kept to one shape.)
#[test]
fn epilogue_inside_the_kernel() {
    let Some(gpu) = test_gpu() else { return };
    let odd = MatmulShape::new(1, 37, 70, 19);
    // v3 and the adapter's static choice (v5 on CI's lavapipe, else v4); v4 and v6 get the few
    // epilogues below (v4 and v5 share their stores).
    let mut best = vec![MatmulVariant::V3Tiled, MatmulVariant::best_for(gpu)];
    best.dedup();
    for (j, act) in activations().into_iter().enumerate() {
        for &v in &best {
            check_epilogue(gpu, Some(v), &odd, act, true, 2 * j as u64);
        }
    }
    for (j, act) in [None, Some(UnaryOp::Relu), Some(UnaryOp::Silu)]
        .into_iter()
        .enumerate()
    {
        for &v in &best {
            check_epilogue(gpu, Some(v), &odd, act, false, 50 + j as u64);
        }
    }
    let few = [
        (Some(UnaryOp::Relu), true),
        (Some(UnaryOp::Gelu), false),
        (None, true),
    ];
    let others = [
        MatmulShape::new(2, 36, 132, 20).with_trans(true, false),
        MatmulShape::new(3, 5, 8, 12)
            .with_trans(false, true)
            .broadcast_b(),
    ];
    for (i, s) in others.iter().enumerate() {
        for (j, &(act, with_bias)) in few.iter().enumerate() {
            for &v in &best {
                check_epilogue(gpu, Some(v), s, act, with_bias, (100 * i + j) as u64);
            }
        }
    }
    let rest = [
        MatmulVariant::V1Naive,
        MatmulVariant::V2Blocked,
        MatmulVariant::V4Wide,
        MatmulVariant::V6Tiled8,
    ];
    for (j, &(act, with_bias)) in few.iter().enumerate() {
        for v in rest.into_iter().filter(|v| v.runs_on(gpu)) {
            check_epilogue(gpu, Some(v), &odd, act, with_bias, 200 + j as u64);
        }
    }
    check_epilogue(gpu, None, &odd, Some(UnaryOp::Relu), true, 300);
}

#[test]
fn a_short_bias_is_refused() {
    let Some(gpu) = test_gpu() else { return };
    // The pool hands out at least 64 values: a bias of 4 is still short of 100 columns.
    let s = MatmulShape::new(1, 8, 100, 8);
    let buf = gpu.buffer("test", 1024).unwrap();
    let short = gpu.buffer("test bias", 4).unwrap();
    let e = EpilogueArgs {
        bias: Some(&short),
        activation: None,
    };
    expect_bad_shape(
        matmul_epilogue(gpu, &buf, &buf, &buf, &s, e, "t"),
        "C has 100 columns",
    );
}

fn expect_bad_shape(result: Result<impl Sized, DeviceError>, needle: &str) {
    match result {
        Err(e @ DeviceError::BadShape { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("matmul"),
                "error does not name the op: {msg}"
            );
            assert!(
                msg.contains(needle),
                "error '{msg}' does not mention '{needle}'"
            );
        }
        Err(e) => panic!("expected BadShape mentioning '{needle}', got {e}"),
        Ok(_) => panic!("expected BadShape mentioning '{needle}', got Ok"),
    }
}

#[test]
fn zero_sized_axes_are_refused() {
    let Some(gpu) = test_gpu() else { return };
    let buf = gpu.buffer("test", 64).unwrap();
    for (batch, m, n, k) in [(1, 0, 4, 4), (1, 4, 0, 4), (1, 4, 4, 0), (0, 4, 4, 4)] {
        let s = MatmulShape::new(batch, m, n, k);
        for v in MatmulVariant::ALL {
            expect_bad_shape(
                matmul_with(gpu, v, &buf, &buf, &buf, &s, "zero"),
                "every axis must be at least 1",
            );
        }
        expect_bad_shape(matmul(gpu, &buf, &buf, &buf, &s, "zero"), &s.to_string());
    }
}

#[test]
fn short_buffers_and_overlapping_strides_are_refused() {
    let Some(gpu) = test_gpu() else { return };
    // 200×200 needs 40000 values per operand; the small buffer holds far fewer.
    let s = MatmulShape::new(1, 200, 200, 200);
    let big = gpu.buffer("test big", s.a_len()).unwrap();
    let small = gpu.buffer("test small", 1000).unwrap();
    expect_bad_shape(matmul(gpu, &small, &big, &big, &s, "t"), "buffer a holds");
    expect_bad_shape(matmul(gpu, &big, &small, &big, &s, "t"), "buffer b holds");
    expect_bad_shape(matmul(gpu, &big, &big, &small, &s, "t"), "buffer c holds");
    // The message carries the shape, stored A and B shapes included.
    let t = s.with_trans(true, false);
    expect_bad_shape(
        matmul(gpu, &small, &big, &big, &t, "t"),
        "A[200, 200]ᵀ · B[200, 200] → C[200, 200]",
    );
    let mut overlap = MatmulShape::new(2, 8, 8, 8);
    overlap.b_batch_stride = 10;
    expect_bad_shape(
        matmul(gpu, &big, &big, &big, &overlap, "t"),
        "b_batch_stride 10",
    );
}

/// The product by its definition, in f64: the check on the CPU reference itself.
fn naive(a: &[f64], b: &[f64], s: &MatmulShape) -> Vec<f64> {
    let mut c = vec![0.0; s.c_len()];
    for z in 0..s.batch {
        let (ao, bo) = (z * s.a_batch_stride, z * s.b_batch_stride);
        for i in 0..s.m {
            for j in 0..s.n {
                c[(z * s.m + i) * s.n + j] = (0..s.k)
                    .map(|p| {
                        let av = a[ao + if s.trans_a { p * s.m + i } else { i * s.k + p }];
                        let bv = b[bo + if s.trans_b { j * s.k + p } else { p * s.n + j }];
                        av * bv
                    })
                    .sum();
            }
        }
    }
    c
}

#[test]
fn cpu_reference_in_f32_matches_naive_f64() {
    // Covers gemm's single-threaded path, the parallel-over-batch path (4 × 64³) and the
    // parallel-within-a-product path (2 × 128³), with every transpose and broadcast.
    let shapes = [
        MatmulShape::new(1, 7, 13, 5),
        MatmulShape::new(2, 70, 90, 300),
        MatmulShape::new(4, 64, 64, 64),
        MatmulShape::new(2, 128, 128, 128),
    ];
    for (i, base) in shapes.iter().enumerate() {
        for (j, &(ta, tb)) in TRANSPOSES.iter().enumerate() {
            for (l, s) in [
                base.with_trans(ta, tb),
                base.with_trans(ta, tb).broadcast_a(),
                base.with_trans(ta, tb).broadcast_b(),
            ]
            .iter()
            .enumerate()
            {
                let (a, b) = operands(s, (100 * i + 10 * j + l) as u64);
                let mut got = vec![f32::NAN; s.c_len()];
                cpu::matmul(&a, &b, &mut got, s);
                let want = naive(&to_f64(&a), &to_f64(&b), s);
                assert_close(&format!("cpu matmul f32 {s}"), &got, &want, atol(s.k), RTOL);
            }
        }
    }
}

/// The f16 values of a packed buffer read back as f32 words: word w holds element 2w in its low
/// half and 2w + 1 in its high half.
fn unpack_halves(words: &[f32], len: usize) -> Vec<f32> {
    words
        .iter()
        .flat_map(|w| {
            let bits = w.to_bits();
            [bits as u16, (bits >> 16) as u16].map(|h| half::f16::from_bits(h).to_f32())
        })
        .take(len)
        .collect()
}

/// f16 storage: `pack_f16` rounds each value to a neighbouring half (within 2⁻¹¹ of it relative,
/// or half the subnormal spacing, 2⁻²⁵, near zero) and zeroes the unused half of an odd count's
/// last word; `matmul_f16` equals the f64 product of the halves the GPU packed (the epilogue
/// applied) within the f32 products' tolerance, over odd shapes, every transpose and broadcasts.
#[test]
fn f16_storage_products_match_the_product_of_their_halves() {
    use sinter::sinter_device::kernels::matmul_f16::{matmul_f16, pack_f16};
    let Some(gpu) = test_gpu() else { return };
    let cases = [
        (MatmulShape::new(1, 37, 70, 19), None, false),
        (
            MatmulShape::new(2, 36, 132, 20).with_trans(true, false),
            Some(UnaryOp::Relu),
            true,
        ),
        (
            MatmulShape::new(3, 5, 9, 13)
                .with_trans(false, true)
                .broadcast_b(),
            Some(UnaryOp::Gelu),
            false,
        ),
        (
            MatmulShape::new(2, 33, 7, 65)
                .with_trans(true, true)
                .broadcast_a(),
            None,
            true,
        ),
        (MatmulShape::new(1, 1, 1, 1), None, false),
    ];
    for (case, (s, act, with_bias)) in cases.into_iter().enumerate() {
        let (a, b) = operands(&s, 900 + case as u64);
        let bias = rand_vec(&mut rng(950 + case as u64), s.n, -1.0, 1.0);
        let (ab, bb, biasb) = (
            gpu.upload("test a", &a).unwrap(),
            gpu.upload("test b", &b).unwrap(),
            gpu.upload("test bias", &bias).unwrap(),
        );
        let pa = gpu.buffer("test a16", s.a_len().div_ceil(2)).unwrap();
        let pb = gpu.buffer("test b16", s.b_len().div_ceil(2)).unwrap();
        let cb = gpu.buffer("test c", s.c_len()).unwrap();
        gpu.write(&cb, &vec![f32::NAN; s.c_len()]);
        let e = EpilogueArgs {
            bias: with_bias.then_some(&biasb),
            activation: act,
        };
        let pack_a = pack_f16(gpu, &ab, &pa, s.a_len(), "test").unwrap();
        let pack_b = pack_f16(gpu, &bb, &pb, s.b_len(), "test").unwrap();
        let product = matmul_f16(gpu, &pa, &pb, &cb, &s, e, "test").unwrap();
        let (wa, wb) = (s.a_len().div_ceil(2), s.b_len().div_ceil(2));
        let got = gpu
            .run(
                &[&pack_a, &pack_b, &product],
                &[(&pa, wa), (&pb, wb), (&cb, s.c_len())],
            )
            .unwrap();
        let (ha, hb) = (
            unpack_halves(&got[0], s.a_len()),
            unpack_halves(&got[1], s.b_len()),
        );
        for (what, x, h, words) in [("a", &a, &ha, &got[0]), ("b", &b, &hb, &got[1])] {
            for (i, (&x, &h)) in x.iter().zip(h).enumerate() {
                let err = (h as f64 - x as f64).abs();
                assert!(
                    err <= (x as f64).abs() * 2f64.powi(-11) + 2f64.powi(-25),
                    "{s}: {what}[{i}] = {x} packed as {h}"
                );
            }
            if x.len() % 2 == 1 {
                let last = words[x.len() / 2].to_bits();
                assert_eq!(last >> 16, 0, "{s}: {what}: the unused half is not zero");
            }
        }
        let mut want = reference(&ha, &hb, &s);
        for (i, v) in want.iter_mut().enumerate() {
            *v = epilogue_value(*v, with_bias.then(|| bias[i % s.n] as f64), act);
        }
        assert_close(&format!("matmul_f16 {s}"), &got[2], &want, atol(s.k), RTOL);
        for buf in [ab, bb, biasb, pa, pb, cb] {
            gpu.recycle(buf);
        }
    }
}

#[test]
fn f16_storage_refuses_short_buffers_naming_the_op() {
    use sinter::sinter_device::kernels::matmul_f16::{matmul_f16, pack_f16};
    let Some(gpu) = test_gpu() else { return };
    let s = MatmulShape::new(1, 64, 64, 64);
    // 64·64 halves need 8192 bytes; a buffer of 64 f32 values (the pool's least) is 256.
    let small = gpu.buffer("test", 64).unwrap();
    let c = gpu.buffer("test c", s.c_len()).unwrap();
    expect_bad_shape(
        matmul_f16(gpu, &small, &small, &c, &s, EpilogueArgs::NONE, "t"),
        "8192",
    );
    let err = match pack_f16(gpu, &c, &small, s.c_len(), "t") {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a short packed buffer was accepted"),
    };
    assert!(
        err.starts_with("pack_f16") && err.contains("4096 halves need 8192"),
        "{err}"
    );
}
