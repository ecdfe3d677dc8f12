//! The selection kernels (index_select, gather, their scatter-add gradients, where) on an adapter
//! against their CPU references, over odd shapes, every axis position, heavy repeats, more ids
//! than a workgroup, invalid ids, broadcasting up to rank 6, NaN masks and bad input.

mod common;

use common::{assert_close, out_buffer, rand_classes, rand_vec, rng, run_checked, to_f64};
use rand::Rng;
use sinter::sinter_device::kernels::select::{self as sel, where_shape, SelectShape};
use sinter::sinter_device::testing::test_gpu;
use sinter::sinter_device::{wgpu, DeviceError, Dispatch, Gpu};
use sinter::sinter_model::cpu;

/// index_select, gather and where copy values: exact (NaN for NaN).
const COPY_ATOL: f64 = 0.0;
/// Gradients: sums of the dy values of repeated ids in f32 against an f64 reference; the error
/// grows with the number of terms (at most k per value).
const GRAD_ATOL: f64 = 1e-5;
const GRAD_ATOL_PER_TERM: f64 = 5e-8;
const GRAD_RTOL: f64 = 1e-5;

/// Stored ids that select nothing: outputs NaN, gradients nothing.
const BAD_IDS: [f32; 7] = [
    -1.0,
    1e9,
    2.5,
    f32::NAN,
    f32::INFINITY,
    -0.5,
    f32::NEG_INFINITY,
];

/// (outer, n, k, inner): tiny, odd, the axis first (outer 1) and last (inner 1), heavy repeats,
/// more ids than a workgroup (several scan chunks), more columns than a workgroup.
const SHAPES: [(usize, usize, usize, usize); 8] = [
    (1, 1, 1, 1),
    (7, 13, 5, 3),
    (1, 65, 33, 17),
    (33, 17, 9, 1),
    (2, 5, 300, 1),
    (4, 3, 1000, 2),
    (3, 200, 7, 300),
    (5, 4, 1, 300),
];

fn shape(&(outer, n, k, inner): &(usize, usize, usize, usize)) -> SelectShape {
    SelectShape { outer, n, k, inner }
}

/// Runs one id kernel (`input`, `ids`) → `out_len` values.
fn run(
    gpu: &Gpu,
    launch: impl Fn(&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer) -> Result<Dispatch, DeviceError>,
    what: &str,
    input: &[f32],
    ids: &[f32],
    out_len: usize,
) -> Vec<f32> {
    let ib = gpu.upload("input", input).unwrap();
    let idb = gpu.upload("ids", ids).unwrap();
    let ob = out_buffer(gpu, "out", out_len);
    let d = launch(&ib, &idb, &ob).unwrap();
    run_checked(gpu, what, &d, &ob, out_len)
}

fn same_bits(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            x.to_bits() == y.to_bits(),
            "{what}: index {i}: {x:e} vs {y:e} (bits differ)"
        );
    }
}

/// Checks one shape of index_select (`gather` false) or gather (true), forward and gradient:
/// against the f64 reference within the stated tolerances, and against the CPU's f32 result
/// bit for bit (both backends add the repeats in the same order), twice.
fn check_select(gpu: &Gpu, s: &SelectShape, ids: &[f32], gather: bool, seed: u64) {
    let mut r = rng(seed);
    let x = rand_vec(&mut r, s.x_len(), -1.0, 1.0);
    let dy = rand_vec(&mut r, s.y_len(), -1.0, 1.0);
    let name = if gather { "gather" } else { "index_select" };
    let what = format!("{name} {s:?}");
    let got = run(
        gpu,
        |a, b, o| {
            if gather {
                sel::gather(gpu, a, b, o, s, "test")
            } else {
                sel::index_select(gpu, a, b, o, s, "test")
            }
        },
        &what,
        &x,
        ids,
        s.y_len(),
    );
    let mut want = vec![0.0; s.y_len()];
    if gather {
        cpu::select::gather(&to_f64(&x), &to_f64(ids), &mut want, s);
    } else {
        cpu::select::index_select(&to_f64(&x), &to_f64(ids), &mut want, s);
    }
    assert_close(&what, &got, &want, COPY_ATOL, 0.0);

    let what = format!("{name}_grad {s:?}");
    let grad = || {
        run(
            gpu,
            |a, b, o| {
                if gather {
                    sel::gather_grad(gpu, b, a, o, s, "test")
                } else {
                    sel::index_select_grad(gpu, b, a, o, s, "test")
                }
            },
            &what,
            &dy,
            ids,
            s.x_len(),
        )
    };
    let got = grad();
    let mut want = vec![0.0; s.x_len()];
    let mut want32 = vec![0.0f32; s.x_len()];
    if gather {
        cpu::select::gather_grad(&to_f64(ids), &to_f64(&dy), &mut want, s);
        cpu::select::gather_grad(ids, &dy, &mut want32, s);
    } else {
        cpu::select::index_select_grad(&to_f64(ids), &to_f64(&dy), &mut want, s);
        cpu::select::index_select_grad(ids, &dy, &mut want32, s);
    }
    let atol = GRAD_ATOL + GRAD_ATOL_PER_TERM * s.k as f64;
    assert_close(&what, &got, &want, atol, GRAD_RTOL);
    assert!(got.iter().all(|v| v.is_finite()), "{what}: not finite");
    same_bits(&format!("{what} vs the CPU in f32"), &got, &want32);
    same_bits(&format!("{what}, second run"), &got, &grad());
}

#[test]
fn index_select_and_grad_match_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (c, dims) in SHAPES.iter().enumerate() {
        let s = shape(dims);
        let ids = rand_classes(&mut rng(10 + c as u64), s.k, s.n);
        check_select(gpu, &s, &ids, false, 20 + c as u64);
    }
}

#[test]
fn gather_and_grad_match_cpu() {
    let Some(gpu) = test_gpu() else { return };
    for (c, dims) in SHAPES.iter().enumerate() {
        let s = shape(dims);
        let index = rand_classes(&mut rng(30 + c as u64), s.y_len(), s.n);
        check_select(gpu, &s, &index, true, 40 + c as u64);
    }
}

#[test]
fn invalid_ids_give_nan_and_no_gradient_on_both_backends() {
    let Some(gpu) = test_gpu() else { return };
    // index_select: the bad ids between valid ones, repeated twice.
    let mut ids = vec![1.0, 4.0];
    ids.extend_from_slice(&BAD_IDS);
    ids.push(0.0);
    ids.extend_from_slice(&BAD_IDS);
    let s = SelectShape {
        outer: 3,
        n: 5,
        k: ids.len(),
        inner: 4,
    };
    check_select(gpu, &s, &ids, false, 50);
    let x: Vec<f32> = (0..s.x_len()).map(|v| v as f32).collect();
    let got = run(
        gpu,
        |a, b, o| sel::index_select(gpu, a, b, o, &s, "test"),
        "index_select bad ids",
        &x,
        &ids,
        s.y_len(),
    );
    for (r, row) in got.chunks(s.inner).enumerate() {
        let id = ids[r % s.k];
        let bad = BAD_IDS.iter().any(|b| b.to_bits() == id.to_bits());
        assert_eq!(
            row.iter().all(|v| v.is_nan()),
            bad,
            "index_select: id {id} gave {row:?}"
        );
    }
    // gather: a bad id in every third position.
    let s = SelectShape {
        outer: 2,
        n: 6,
        k: 7,
        inner: 3,
    };
    let mut index = rand_classes(&mut rng(51), s.y_len(), s.n);
    for (i, v) in index.iter_mut().enumerate().step_by(3) {
        *v = BAD_IDS[i % BAD_IDS.len()];
    }
    check_select(gpu, &s, &index, true, 52);
}

#[test]
fn index_select_grad_handles_a_two_dimensional_grid() {
    let Some(gpu) = test_gpu() else { return };
    // One workgroup per row of x: more rows than one grid dimension holds.
    let n = gpu.limits.max_compute_workgroups_per_dimension as usize + 5;
    let s = SelectShape {
        outer: 1,
        n,
        k: 4,
        inner: 1,
    };
    let ids = [0.0, (n - 1) as f32, 3.0, (n - 1) as f32];
    let dy = [1.0f32, 2.0, 4.0, 8.0];
    let ib = gpu.upload("ids", &ids).unwrap();
    let gb = gpu.upload("dy", &dy).unwrap();
    let xb = out_buffer(gpu, "dx", n);
    let d = sel::index_select_grad(gpu, &ib, &gb, &xb, &s, "test").unwrap();
    assert!(
        d.workgroups[1] > 1,
        "expected a 2-D grid, got {:?}",
        d.workgroups
    );
    let got = run_checked(gpu, "index_select_grad 2-D grid", &d, &xb, n);
    for (v, &g) in got.iter().enumerate() {
        let want = match v {
            0 => 1.0,
            3 => 4.0,
            _ if v == n - 1 => 10.0,
            _ => 0.0,
        };
        assert_eq!(g, want, "index_select_grad 2-D grid: row {v}");
    }
}

/// Mask values: mostly 0 and 1, with −0 (unset), NaN and other nonzero values (set).
fn mask_values(seed: u64, len: usize) -> Vec<f32> {
    let mut r = rng(seed);
    (0..len)
        .map(|_| match r.random_range(0..10) {
            0 => -0.0,
            1 => f32::NAN,
            2 => -3.5,
            3 => 1e-30,
            4..=6 => 0.0,
            _ => 1.0,
        })
        .collect()
}

#[test]
fn where_broadcasts_like_numpy_and_matches_cpu() {
    let Some(gpu) = test_gpu() else { return };
    type Shapes = (&'static [usize], &'static [usize], &'static [usize]);
    let cases: [Shapes; 7] = [
        (&[1], &[1], &[1]),
        (&[7, 13, 5], &[7, 13, 5], &[7, 13, 5]),
        (&[33, 1, 17], &[65, 1], &[17]),
        (&[1], &[4099], &[]),
        (&[4099], &[], &[1]),
        (&[3, 1, 5], &[3, 4, 5], &[4, 1]),
        (
            &[2, 1, 3, 1, 5, 1],
            &[1, 4, 1, 6, 1, 7],
            &[2, 4, 3, 6, 5, 7],
        ),
    ];
    for (c, &(ms, as_, bs)) in cases.iter().enumerate() {
        let out = where_shape(ms, as_, bs).expect("the cases broadcast");
        let numel = |s: &[usize]| s.iter().product::<usize>();
        let len = numel(&out);
        let mask = mask_values(60 + c as u64, numel(ms));
        let mut r = rng(70 + c as u64);
        let mut a = rand_vec(&mut r, numel(as_), -1.0, 1.0);
        let b = rand_vec(&mut r, numel(bs), 2.0, 3.0);
        // A NaN value in a passes through where it is chosen.
        a[0] = f32::NAN;
        let (mb, ab, bb) = (
            gpu.upload("mask", &mask).unwrap(),
            gpu.upload("a", &a).unwrap(),
            gpu.upload("b", &b).unwrap(),
        );
        let ob = out_buffer(gpu, "out", len);
        let d = sel::where_select(gpu, &mb, ms, &ab, as_, &bb, bs, &ob, "test").unwrap();
        let what = format!("where mask {ms:?}, a {as_:?}, b {bs:?}");
        let got = run_checked(gpu, &what, &d, &ob, len);
        let mut want = vec![0.0; len];
        cpu::select::where_select(
            &to_f64(&mask),
            ms,
            &to_f64(&a),
            as_,
            &to_f64(&b),
            bs,
            &mut want,
        );
        assert_close(&what, &got, &want, COPY_ATOL, 0.0);
    }
}

fn err_text(r: Result<Dispatch, DeviceError>) -> String {
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
    let zero = SelectShape {
        outer: 2,
        n: 0,
        k: 3,
        inner: 4,
    };
    let e = err_text(sel::index_select(gpu, &big, &big, &big, &zero, "t"));
    assert!(e.contains("index_select") && e.contains("[2, 0, 4]"), "{e}");
    let s = SelectShape {
        outer: 2,
        n: 30,
        k: 100,
        inner: 4,
    };
    let e = err_text(sel::index_select(gpu, &big, &small, &big, &s, "t"));
    assert!(
        e.contains("index_select") && e.contains("ids") && e.contains("100"),
        "{e}"
    );
    let e = err_text(sel::index_select_grad(gpu, &big, &big, &small, &s, "t"));
    assert!(e.contains("index_select_grad") && e.contains("dx"), "{e}");
    let e = err_text(sel::gather(gpu, &big, &small, &big, &s, "t"));
    assert!(
        e.contains("gather") && e.contains("index") && e.contains("800"),
        "{e}"
    );
    let e = err_text(sel::gather_grad(gpu, &big, &small, &big, &s, "t"));
    assert!(e.contains("gather_grad") && e.contains("dy"), "{e}");
    let e = err_text(sel::where_select(
        gpu,
        &big,
        &[3],
        &big,
        &[4],
        &big,
        &[1],
        &big,
        "t",
    ));
    assert!(
        e.contains("where") && e.contains("[3]") && e.contains("[4]"),
        "{e}"
    );
    // Pool buffers hold at least 64 values, so a must outgrow `small`.
    let e = err_text(sel::where_select(
        gpu,
        &big,
        &[30, 90],
        &small,
        &[90],
        &big,
        &[],
        &big,
        "t",
    ));
    assert!(
        e.contains("where") && e.contains("buffer a") && e.contains("90"),
        "{e}"
    );
}
