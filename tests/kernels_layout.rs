//! The layout ops (permute, slice, concat) on the adapter against the CPU reference: the strided
//! copy kernel on odd shapes, and whole graphs (forward and backward) on both backends.

mod common;

use common::{assert_close, gpu_backend, out_buffer, rand_vec, rng, run_checked, to_f64, SENTINEL};
use sinter::sinter_device::kernels::elementwise::{self as ew, StridedCopy};
use sinter::sinter_device::testing::test_gpu;
use sinter::sinter_model::backend::CpuBackend;
use sinter::sinter_model::{backward, cpu, Backend, GraphBuilder, Tensor};

/// Runs one strided copy of `src` (shape `from`) on the adapter into a sentinel-filled output of
/// `dst_len` values and compares every value, sentinels included, with the CPU reference: a copy
/// is exact (tolerance 0), and a region must not write outside itself.
fn check_copy(what: &str, src: &[f32], dst_len: usize, copy: &StridedCopy) {
    let gpu = test_gpu().expect("adapter");
    let sb = gpu.upload("src", src).unwrap();
    let db = out_buffer(gpu, "dst", dst_len);
    let d = ew::strided_copy(gpu, &sb, src.len(), &db, dst_len, copy, "test", "test").unwrap();
    let got = run_checked(gpu, what, &d, &db, dst_len);
    let mut want = vec![SENTINEL as f64; dst_len];
    cpu::layout::strided_copy(&to_f64(src), &mut want, copy);
    assert_close(what, &got, &want, 0.0, 0.0);
}

#[test]
fn permutes_of_odd_shapes_match_cpu() {
    if test_gpu().is_none() {
        return;
    }
    let cases: [(&[usize], &[usize]); 6] = [
        (&[3, 5, 7, 2], &[0, 2, 1, 3]),
        (&[3, 5, 7, 2], &[3, 2, 1, 0]),
        (&[2, 33, 3, 17], &[0, 2, 1, 3]), // [B, T, H, D] → [B, H, T, D]
        (&[65, 129], &[1, 0]),
        (&[2, 3, 5, 7, 3], &[4, 0, 3, 1, 2]),
        (&[1, 9, 1, 4], &[2, 3, 0, 1]),
    ];
    for (c, &(shape, perm)) in cases.iter().enumerate() {
        let x = rand_vec(&mut rng(300 + c as u64), shape.iter().product(), -1.0, 1.0);
        let copy = StridedCopy::permute(shape, perm);
        check_copy(
            &format!("permute {shape:?} by {perm:?}"),
            &x,
            x.len(),
            &copy,
        );
    }
}

#[test]
fn slices_and_concat_parts_of_odd_shapes_match_cpu() {
    if test_gpu().is_none() {
        return;
    }
    let shape = [3usize, 7, 5, 9];
    let x = rand_vec(&mut rng(310), shape.iter().product(), -1.0, 1.0);
    for axis in 0..4 {
        for (start, len) in [(0, 1), (1, 2), (shape[axis] - 2, 2)] {
            let copy = StridedCopy::slice(&shape, axis, start, len);
            let what = format!("slice {start}..{} of axis {axis} of {shape:?}", start + len);
            check_copy(&what, &x, copy.numel(), &copy);
        }
        // x as the middle part of a concatenation with 2 before and 3 after it on `axis`
        let mut out = shape;
        out[axis] += 5;
        let copy = StridedCopy::concat_part(&out, axis, 2, &shape);
        let what = format!("concat part {shape:?} at 2 of axis {axis} of {out:?}");
        check_copy(&what, &x, out.iter().product(), &copy);
    }
}

#[test]
fn a_region_past_its_buffers_is_an_error_naming_the_op() {
    let Some(gpu) = test_gpu() else { return };
    let sb = gpu.upload("src", &[0.0; 6]).unwrap();
    let db = out_buffer(gpu, "dst", 6);
    let copy = StridedCopy::slice(&[2, 4], 1, 1, 3);
    let Err(err) = ew::strided_copy(gpu, &sb, 6, &db, 6, &copy, "slice", "t") else {
        panic!("a slice of [2, 4] from a 6-element buffer was accepted");
    };
    let msg = err.to_string();
    assert!(msg.contains("slice") && msg.contains("6 elements"), "{msg}");
}

/// A graph using every layout op: a fused projection split in three, heads moved to the front,
/// a slice of the time axis, and a concatenation; returns the loss and the gradients of x and w.
fn layout_graph() -> (sinter::sinter_model::Graph, Vec<usize>) {
    let g = GraphBuilder::new();
    let x = g.input("x", &[2, 5, 12]);
    let w = g.input("w", &[12, 36]);
    let qkv = x.matmul(&w).unwrap(); // [2, 5, 36]
    let parts = qkv.split(2, &[12, 12, 12]).unwrap();
    let heads = |t: &Tensor| {
        t.reshape(&[2, 5, 3, 4])
            .unwrap()
            .permute(&[0, 2, 1, 3])
            .unwrap()
    };
    let (q, k, v) = (heads(&parts[0]), heads(&parts[1]), heads(&parts[2]));
    let scores = q.matmul_t(&k, false, true).unwrap(); // [2, 3, 5, 5]
    let late = scores.narrow(3, 1, 4).unwrap().tanh(); // [2, 3, 5, 4]
    let mixed = Tensor::concat(&[&late, &v.square()], 3).unwrap(); // [2, 3, 5, 8]
    let y = mixed.transpose(1, 2).unwrap().reshape(&[2, 5, 24]).unwrap();
    let loss = y.mul(&y.sigmoid()).unwrap().mean_all();
    let grads = backward(&loss, &[x.id, w.id]).unwrap();
    let outputs = vec![loss.id, grads.of(x.id).unwrap(), grads.of(w.id).unwrap()];
    (g.finish(), outputs)
}

/// The whole graph, forward and backward, on the adapter and on the CPU: copies are exact, so the
/// difference comes from the products and activations (f32 on both, different summation order):
/// rtol 1e-5 with atol 1e-6.
#[test]
fn layout_graphs_train_the_same_on_both_backends() {
    let Some(mut gpu) = gpu_backend() else { return };
    let (graph, outputs) = layout_graph();
    let x = rand_vec(&mut rng(320), 2 * 5 * 12, -1.0, 1.0);
    let w = rand_vec(&mut rng(321), 12 * 36, -0.5, 0.5);
    let mut cpu_backend = Backend::Cpu(CpuBackend::new());
    let run = |b: &mut Backend| {
        let mut prog = b.compile(&graph, &outputs).unwrap();
        b.run(&mut prog, &[&x, &w], &Default::default()).unwrap()
    };
    let want = run(&mut cpu_backend);
    let got = run(&mut gpu);
    for (k, name) in ["loss", "dloss/dx", "dloss/dw"].iter().enumerate() {
        assert_close(name, &got[k], &to_f64(&want[k]), 1e-6, 1e-5);
    }
}
