//! The planner's fusion on the CPU backend: a fused training step of the default CNN must give
//! bit-for-bit the losses and parameters of the unfused one, in fewer kernels.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sinter_model::backend::CpuBackend;
use sinter_model::fuse::Fused;
use sinter_model::nn::default_cnn;
use sinter_model::optim::{Optimizer, OptimizerKind};
use sinter_model::plan::PlanOptions;
use sinter_model::train::training_step_graph;
use sinter_model::{Op, Plan, VarKind, VarStore};

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
    assert_eq!(
        count(|k| matches!(k, Fused::Conv2dBias { relu: true, .. })),
        2
    );
    assert_eq!(
        count(|k| matches!(k, Fused::MatMulBias { relu: true, .. })),
        1
    );
    assert_eq!(
        count(|k| matches!(k, Fused::MatMulBias { relu: false, .. })),
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
