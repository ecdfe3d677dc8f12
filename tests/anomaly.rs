//! Anomaly detection (`--detect-anomaly`): the first value of a step that is NaN or infinite is
//! traced to the node that produced it (op, tag, shape, step), on the CPU backend and an adapter.

mod common;

use common::gpu_backend;
use sinter::sinter_model::backend::CpuBackend;
use sinter::sinter_model::data::embedded_mnist;
use sinter::sinter_model::nn::mlp;
use sinter::sinter_model::optim::{Optimizer, OptimizerKind};
use sinter::sinter_model::train::{Classifier, ClassifierConfig};
use sinter::sinter_model::{backward, Anomaly, Backend, Graph, GraphBuilder, ModelError, NodeId};
use sinter::sinter_model::{Program, VarStore};

/// x → log (scope `logs`); x → exp ÷ z (scope `ratio`); w → √ (scope `sqrt`); the loss
/// Σ(log x + exp x / z + √w) and its gradient by w, 1/(2√w), infinite where w = 0.
struct Probe {
    graph: Graph,
    loss: NodeId,
    grad: NodeId,
    log: NodeId,
    div: NodeId,
    sqrt_grad_tag: &'static str,
}

fn probe() -> Probe {
    let g = GraphBuilder::new();
    let x = g.input("x", &[2, 3]);
    let z = g.input("z", &[2, 3]);
    let w = g.input("w", &[2, 3]);
    let log = g.scoped("logs", || x.log());
    let div = g.scoped("ratio", || x.exp().div(&z)).unwrap();
    let root = g.scoped("sqrt", || w.sqrt());
    let loss = log.add(&div).unwrap().add(&root).unwrap().sum_all();
    let grads = backward(&loss, &[w.id]).unwrap();
    let grad = grads.of(w.id).expect("the loss depends on w");
    Probe {
        graph: g.finish(),
        loss: loss.id,
        grad,
        log: log.id,
        div: div.id,
        sqrt_grad_tag: "sqrt · grad",
    }
}

/// Runs the probe checked on `backend`; returns the anomaly found (if any).
fn check(backend: &mut Backend, p: &Probe, x: &[f32], z: &[f32], w: &[f32]) -> Option<Anomaly> {
    let mut prog: Program = backend
        .compile_checked(&p.graph, &[p.loss, p.grad])
        .unwrap();
    let (_, anomaly) = backend
        .run_checked(&mut prog, &[x, z, w], &Default::default())
        .unwrap();
    anomaly
}

fn backends() -> Vec<(&'static str, Backend)> {
    let mut all = vec![("cpu", Backend::Cpu(CpuBackend::new()))];
    if let Some(gpu) = gpu_backend() {
        all.push(("gpu", gpu));
    }
    all
}

#[test]
fn the_first_non_finite_value_is_traced_to_its_node() {
    let p = probe();
    let ones = [1.0f32; 6];
    let x_ok = [0.5f32, 1.0, 2.0, 3.0, 4.0, 5.0];
    // Log of a negative number (element 4), and a division by zero (element 1) later in the plan.
    let x_neg = [0.5f32, 1.0, 2.0, 3.0, -4.0, 5.0];
    let z_zero = [1.0f32, 0.0, 1.0, 1.0, 1.0, 1.0];
    // √0: the forward value is 0, its gradient 1/(2·√0) is infinite.
    let w_zero = [0.5f32, 1.0, 0.0, 3.0, 4.0, 5.0];
    for (name, mut backend) in backends() {
        assert_eq!(check(&mut backend, &p, &x_ok, &ones, &ones), None, "{name}");

        let a = check(&mut backend, &p, &x_neg, &z_zero, &ones).expect("log of -4");
        assert_eq!(
            (a.node, a.op.as_str(), a.index),
            (p.log, "log", 4),
            "{name}: {a}"
        );
        assert_eq!(
            (a.tag.as_str(), a.shape.as_slice()),
            ("logs", &[2, 3][..]),
            "{name}: {a}"
        );
        assert!(a.value.is_nan(), "{name}: {a}");
        assert!(a.location.contains("tests/anomaly.rs"), "{name}: {a}");

        let a = check(&mut backend, &p, &x_ok, &z_zero, &ones).expect("division by zero");
        assert_eq!(
            (a.node, a.op.as_str(), a.index),
            (p.div, "div", 1),
            "{name}: {a}"
        );
        assert_eq!(a.value, f32::INFINITY, "{name}: {a}");

        let a = check(&mut backend, &p, &x_ok, &ones, &w_zero).expect("the gradient of √0");
        assert!(a.tag.starts_with(p.sqrt_grad_tag), "{name}: {a}");
        assert_eq!((a.op.as_str(), a.index), ("sqrt_grad", 2), "{name}: {a}");

        // A NaN fed in is named as the input it came through.
        let a = check(
            &mut backend,
            &p,
            &ones,
            &[1.0, 1.0, 1.0, f32::NAN, 1.0, 1.0],
            &ones,
        )
        .unwrap();
        assert_eq!((a.op.as_str(), a.index), ("input 'z'", 3), "{name}: {a}");
    }
}

/// An MLP trained by SGD at a learning rate of 10^30: the first step is finite, the next one
/// overflows. With detect_anomaly the run stops there and names the node and the step.
#[test]
fn a_diverging_classifier_stops_at_the_first_non_finite_node() {
    let (train, _) = embedded_mnist().unwrap();
    let mut found = Vec::new();
    for (name, backend) in backends() {
        let mut rng = sinter_model::Init::new(3);
        let mut store = VarStore::new();
        let model = mlp(&mut store, 784, 32, 10, &mut rng);
        let config = ClassifierConfig {
            accumulate: 1,
            batch: 16,
            eval_batch: 16,
            seed: 3,
            shuffle: false,
            stop_on_nan: false,
            detect_anomaly: true,
            memory_limit: None,
        };
        let opt = Optimizer::new(OptimizerKind::sgd(0.0, false, 0.0), 1e30);
        let mut c = Classifier::new(
            "mlp",
            model,
            store,
            backend,
            opt,
            config,
            [1, 28, 28],
            train.n,
        )
        .unwrap();
        let err = (0..5)
            .find_map(|_| c.train_step(&train).err())
            .unwrap_or_else(|| panic!("{name}: five steps at lr 1e30 stayed finite"));
        let ModelError::Anomaly { step, anomaly } = &err else {
            panic!("{name}: {err}")
        };
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "step {step}: the first non-finite value comes from"
            )),
            "{name}: {text}"
        );
        assert!(*step >= 1, "{name}: the first step is finite: {text}");
        assert!(
            !anomaly.shape.is_empty() && !anomaly.tag.is_empty(),
            "{name}: {text}"
        );
        eprintln!("{name}: {text}");
        found.push((*step, anomaly.tag.clone(), anomaly.op.clone()));
    }
    // Both backends compute the same step in the same order: they agree on where it broke.
    assert!(found.windows(2).all(|w| w[0] == w[1]), "{found:?}");
}
