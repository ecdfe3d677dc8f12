//! Adapter limits: grids longer than the 65,535 workgroups a dimension allows are folded into
//! more dimensions and still match the CPU reference; what cannot fit (a buffer over the binding
//! limit, a grid that cannot fold) is refused before any step runs, with the size and the limit.

mod common;

use common::{assert_close, gpu_backend, rand_vec, rng, run_checked, to_f64};
use sinter::sinter_device::kernels::attention::{self, AttentionShape};
use sinter::sinter_device::kernels::elementwise::{self, UnaryOp};
use sinter::sinter_device::kernels::matmul::{self, MatmulShape, MatmulVariant};
use sinter::sinter_device::testing::test_gpu;
use sinter::sinter_model::{cpu, ConvConfig, GraphBuilder, ModelError};

#[test]
fn an_elementwise_op_over_more_than_65535_workgroups_folds_its_grid() {
    let Some(gpu) = test_gpu() else { return };
    let limit = gpu.limits.max_compute_workgroups_per_dimension as usize;
    // 256-wide workgroups: one more element than a one-dimensional grid can cover.
    let len = limit * 256 + 1;
    let x = rand_vec(&mut rng(11), len, -2.0, 2.0);
    let (xb, yb) = (
        gpu.upload("x", &x).unwrap(),
        common::out_buffer(gpu, "y", len),
    );
    let d = elementwise::unary(gpu, &xb, &yb, UnaryOp::Relu, len, "relu").unwrap();
    assert!(
        d.workgroups[1] > 1 && d.workgroups.iter().all(|&g| g as usize <= limit),
        "grid {:?}",
        d.workgroups
    );
    let got = run_checked(gpu, "relu over a folded grid", &d, &yb, len);
    let mut want = vec![0f32; len];
    cpu::elementwise::unary(UnaryOp::Relu, &x, &mut want);
    assert_eq!(got, want, "relu is exact");
    for b in [xb, yb] {
        gpu.recycle(b);
    }
}

#[test]
fn a_matmul_batch_longer_than_the_dispatch_limit_folds_into_the_grid() {
    let Some(gpu) = test_gpu() else { return };
    let limit = gpu.limits.max_compute_workgroups_per_dimension as usize;
    let batch = limit + 4465; // 70,000 on the usual limit
    let s = MatmulShape::new(batch, 3, 5, 4);
    let mut r = rng(12);
    let (a, b) = (
        rand_vec(&mut r, s.a_len(), -1.0, 1.0),
        rand_vec(&mut r, s.b_len(), -1.0, 1.0),
    );
    let mut want = vec![0f64; s.c_len()];
    cpu::matmul::matmul(&to_f64(&a), &to_f64(&b), &mut want, &s);
    let (ab, bb) = (gpu.upload("a", &a).unwrap(), gpu.upload("b", &b).unwrap());
    for variant in MatmulVariant::ALL.into_iter().filter(|v| v.runs_on(gpu)) {
        let cb = common::out_buffer(gpu, "c", s.c_len());
        let d = matmul::matmul_with(gpu, variant, &ab, &bb, &cb, &s, "batched").unwrap();
        assert!(
            d.workgroups[2] as usize <= limit && d.workgroups[1] >= 2,
            "{variant:?}: grid {:?}",
            d.workgroups
        );
        let what = format!("{variant:?} batch {batch}");
        let got = run_checked(gpu, &what, &d, &cb, s.c_len());
        // Four products of values in [-1, 1] summed in f32.
        assert_close(&what, &got, &want, 1e-5, 1e-5);
        gpu.recycle(cb);
    }
    for buf in [ab, bb] {
        gpu.recycle(buf);
    }
}

#[test]
fn an_attention_grid_over_the_dispatch_limit_is_refused_with_its_size_and_the_limit() {
    let Some(gpu) = test_gpu() else { return };
    let limit = gpu.limits.max_compute_workgroups_per_dimension;
    let s = AttentionShape {
        batch: limit as usize + 1,
        seq: 1,
        heads: 1,
        head_dim: 4,
        causal: true,
        scale: 0.5,
        dropout: 0.0,
    };
    let bufs: Vec<_> = (0..4)
        .map(|_| gpu.buffer("qkvo", s.qkv_len()).unwrap())
        .collect();
    let lse = gpu.buffer("lse", s.lse_len()).unwrap();
    let e = attention::attention_forward(
        gpu, &bufs[0], &bufs[1], &bufs[2], None, &bufs[3], &lse, &s, "attn",
    )
    .err()
    .expect("a grid of 65,536 batch items is refused")
    .to_string();
    assert!(
        e.contains("attn")
            && e.contains(&format!("{}", limit + 1))
            && e.contains(&format!("limit of {limit} workgroups")),
        "{e}"
    );
    for b in bufs.into_iter().chain([lse]) {
        gpu.recycle(b);
    }
}

/// Steps whose matmul, convolution or attention needs one buffer over the adapter's binding
/// limit are refused when compiled, before any buffer is allocated or any step runs.
#[test]
fn buffers_over_the_binding_limit_are_refused_before_the_step() {
    let Some(backend) = gpu_backend() else { return };
    let limit = match &backend {
        sinter::sinter_model::Backend::Gpu(g) => g.gpu.max_binding(),
        _ => unreachable!(),
    };
    // A square matrix just over the limit, and inputs well under it.
    let side = ((limit / 4) as f64).sqrt() as usize + 1;
    let refuse = |what: &str, g: GraphBuilder, out: usize, culprit: &str| {
        let before = match &backend {
            sinter::sinter_model::Backend::Gpu(g) => g.gpu.pool_stats(),
            _ => unreachable!(),
        };
        let err = backend
            .compile(&g.finish(), &[out])
            .err()
            .unwrap_or_else(|| panic!("{what}: compiled"));
        let text = err.to_string();
        let ModelError::TooLarge {
            needed, limit: l, ..
        } = err
        else {
            panic!("{what}: {text}")
        };
        assert!(needed > l && l == limit, "{what}: {text}");
        assert!(
            text.contains(&needed.to_string())
                && text.contains(&limit.to_string())
                && text.contains(culprit),
            "{what}: {text}"
        );
        eprintln!("{what}: {text}");
        let after = match &backend {
            sinter::sinter_model::Backend::Gpu(g) => g.gpu.pool_stats(),
            _ => unreachable!(),
        };
        assert_eq!(before, after, "{what}: buffers were allocated");
    };

    let g = GraphBuilder::new();
    let a = g.input("a", &[side, 1]);
    let b = g.input("b", &[1, side]);
    let c = g.scoped("outer", || a.matmul(&b)).unwrap().sum_all();
    refuse("matmul", g, c.id, "outer (matmul");

    let g = GraphBuilder::new();
    let x = g.input("x", &[1, 1, side, side / 64 + 2]);
    let w = g.input("w", &[64, 1, 1, 1]);
    let y = g
        .scoped("conv", || x.conv2d(&w, ConvConfig::padded(0)))
        .unwrap()
        .sum_all();
    refuse("conv2d", g, y.id, "conv (conv2d");

    // Attention's output is as large as its query, so the first value over the limit is the
    // projection that makes the query.
    let g = GraphBuilder::new();
    let d = 16;
    // 4 heads of 16: the query holds 64·t values, just over the limit.
    let t = (limit / 4 / 64) as usize + 1;
    let x = g.input("x", &[1, t, 1, 4]);
    let proj = g.input("proj", &[4, 4 * d]);
    let q = g
        .scoped("q_proj", || x.reshape(&[t, 4]).unwrap().matmul(&proj))
        .unwrap()
        .reshape(&[1, t, 4, d])
        .unwrap();
    let o = g
        .scoped("attn", || q.attention(&q, &q, true))
        .unwrap()
        .sum_all();
    refuse("attention", g, o.id, "q_proj (matmul");
}
