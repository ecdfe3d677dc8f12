//! The planner's fusion on the CPU backend: a fused training step of the default CNN must give
//! bit-for-bit the losses and parameters of the unfused one, in fewer kernels; and so must every
//! activation as a product's epilogue.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sinter_model::backend::CpuBackend;
use sinter_model::fuse::Fused;
use sinter_model::nn::default_cnn;
use sinter_model::optim::{Optimizer, OptimizerKind};
use sinter_model::plan::PlanOptions;
use sinter_model::train::training_step_graph;
use sinter_model::{ConvConfig, GraphBuilder, Op, Plan, VarKind, VarStore};
use sinter_ops::elementwise::{Epilogue, UnaryOp};

const BATCH: usize = 8;

#[test]
fn fused_cnn_steps_equal_unfused_steps_bit_for_bit() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut store = VarStore::new();
    let model = default_cnn(&mut store, 1, [28, 28], 10, &mut sinter_model::Init::new(3));
    let optimizer = Optimizer::new(OptimizerKind::adam(0.0), 1e-3);
    optimizer.add_state(&mut store);

    let (graph, loss, _) =
        training_step_graph(&model, &store, &optimizer, BATCH, [1, 28, 28]).unwrap();

    let unfused = Plan::new(&graph, &[loss]).unwrap();
    let fused = Plan::with_options(&graph, &[loss], PlanOptions { fuse: true }).unwrap();
    // conv1, conv2, fc1 (bias + ReLU), fc2 (bias), and both pooling gradients with ReLU masks.
    let count = |f: fn(&Fused) -> bool| {
        fused
            .order
            .iter()
            .filter(|&&i| matches!(&fused.nodes[i].op, Op::Fused(k) if f(k)))
            .count()
    };
    const BIAS_RELU: Epilogue = Epilogue {
        bias: true,
        activation: Some(UnaryOp::Relu),
    };
    const BIAS: Epilogue = Epilogue {
        bias: true,
        activation: None,
    };
    assert_eq!(
        count(|k| matches!(k, Fused::Conv2d { epilogue, .. } if *epilogue == BIAS_RELU)),
        2
    );
    assert_eq!(
        count(|k| matches!(k, Fused::MatMul { epilogue, .. } if *epilogue == BIAS_RELU)),
        1
    );
    assert_eq!(
        count(|k| matches!(k, Fused::MatMul { epilogue, .. } if *epilogue == BIAS)),
        1
    );
    assert_eq!(count(|k| matches!(k, Fused::MaxPool2dGradRelu(_))), 2);
    assert_eq!(fused.order.len() + 9, unfused.order.len());
    assert!(fused.memory.peak_live_bytes <= unfused.memory.peak_live_bytes);

    let (mut a, mut b) = (CpuBackend::<f32>::new(), CpuBackend::<f32>::new());
    a.load_vars(&store);
    b.load_vars(&store);
    let (mut pa, mut pb) = (a.compile(unfused), b.compile(fused));
    for step in 0..3u64 {
        let images: Vec<f32> = (0..BATCH * 784).map(|_| rng.random()).collect();
        let labels: Vec<f32> = (0..BATCH).map(|_| rng.random_range(0..10) as f32).collect();
        let scalars = optimizer.scalars(step);
        let la = a.run(&mut pa, &[&images, &labels], &scalars).unwrap();
        let lb = b.run(&mut pb, &[&images, &labels], &scalars).unwrap();
        assert_eq!(
            la[0][0].to_bits(),
            lb[0][0].to_bits(),
            "loss at step {step}"
        );
    }
    for id in store.ids(VarKind::Param) {
        let (va, vb) = (a.read_var(id), b.read_var(id));
        let same = va.iter().zip(&vb).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "{} differs after 3 steps", store.get(id).name);
    }
}

/// Every activation as an epilogue, with and without a bias, after a linear layer and after a
/// convolution (a forward-only graph, where nothing else reads the pre-activation): the fused plan
/// runs one kernel per layer and gives bit-for-bit the values of the unfused one.
#[test]
fn every_activation_fuses_and_equals_unfused_bit_for_bit() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for op in UnaryOp::ALL {
        for bias in [false, true] {
            // log, sqrt and recip get positive inputs, so every pre-activation is positive.
            let positive = matches!(op, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Recip);
            let lo = if positive { 0.1 } else { -1.0 };
            let g = GraphBuilder::new();
            let x = g.input("x", &[5, 7]);
            let w = g.input("w", &[7, 6]);
            let b = g.input("b", &[6]);
            let img = g.input("img", &[2, 3, 6, 5]);
            let k = g.input("k", &[4, 3, 3, 3]);
            let kb = g.input("kb", &[4, 1, 1]);
            let mut lin = x.matmul(&w).unwrap();
            let mut conv = img.conv2d(&k, ConvConfig::padded(1)).unwrap();
            if bias {
                lin = lin.add(&b).unwrap();
                conv = conv.add(&kb).unwrap();
            }
            let (lin, conv) = (lin.unary(op), conv.unary(op));
            let graph = g.finish();
            let outs = [lin.id, conv.id];
            let unfused = Plan::new(&graph, &outs).unwrap();
            let fused = Plan::with_options(&graph, &outs, PlanOptions { fuse: true }).unwrap();
            let what = format!("{} bias {bias}", op.name());
            assert_eq!(fused.order.len(), 2, "{what}: one kernel per layer");
            let feeds: Vec<Vec<f32>> = unfused
                .inputs
                .iter()
                .map(|&i| {
                    let n = unfused.nodes[i].numel();
                    (0..n).map(|_| rng.random_range(lo..1.0)).collect()
                })
                .collect();
            let feeds: Vec<&[f32]> = feeds.iter().map(|f| f.as_slice()).collect();
            let mut cpu = CpuBackend::<f32>::new();
            let (mut pa, mut pb) = (cpu.compile(unfused), cpu.compile(fused));
            let scalars = sinter_model::StepScalars::default();
            let (ya, yb) = (
                cpu.run(&mut pa, &feeds, &scalars).unwrap(),
                cpu.run(&mut pb, &feeds, &scalars).unwrap(),
            );
            for (a, b) in ya.iter().zip(&yb) {
                let same = a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(same, "{what}: fused and unfused values differ");
            }
        }
    }
}
