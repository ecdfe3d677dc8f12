//! A model defined only through the documented API (the README's way in: a struct of modules,
//! `Model::forward`, one `Trainer`) trains on the CPU backend and on an adapter, and misuse of the
//! API is an error that says what to do, never a panic.

mod common;

use sinter::{
    backward, Backend, Combine, DeviceChoice, Feeds, GraphBuilder, Init, Linear, Mode, Model,
    Optimizer, OptimizerKind, Outputs, Result, TrainConfig, Trainer, VarStore,
};

/// A residual MLP with dropout on the residual branch and a weight shared by two layers.
struct Residual {
    inp: Linear,
    shared: Linear,
    head: Linear,
}

impl Model for Residual {
    fn forward(
        &self,
        vars: &VarStore,
        g: &GraphBuilder,
        batch: usize,
        mode: Mode,
    ) -> Result<Outputs> {
        let x = g.input("x", &[batch, 4]);
        let labels = g.input("labels", &[batch]);
        let h = self.inp.forward(vars, &x)?.tanh();
        // The same layer (one parameter) applied twice, each around a residual connection.
        let h = h.add(&self.shared.forward(vars, &h)?.tanh().dropout(0.1, mode)?)?;
        let h = h.add(&self.shared.forward(vars, &h)?.tanh())?;
        let logits = self.head.forward(vars, &h)?;
        Ok(Outputs::loss(logits.cross_entropy(&labels)?).with_metric(
            "correct",
            logits.count_correct(&labels)?,
            Combine::Sum,
        ))
    }
}

fn residual(vars: &mut VarStore) -> Residual {
    let mut init = Init::new(5);
    Residual {
        inp: Linear::new(vars, "inp", 4, 16, &mut init),
        shared: Linear::new(vars, "shared", 16, 16, &mut init),
        head: Linear::new(vars, "head", 16, 3, &mut init),
    }
}

/// 96 points in three classes by the sign pattern of two features.
fn data() -> (Vec<f32>, Vec<f32>) {
    let mut rng = common::rng(11);
    let x = common::rand_vec(&mut rng, 96 * 4, -1.0, 1.0);
    let labels = x
        .chunks(4)
        .map(|r| match (r[0] > 0.0, r[1] > 0.0) {
            (true, true) => 0.0,
            (true, false) => 1.0,
            _ => 2.0,
        })
        .collect();
    (x, labels)
}

/// Trains 150 steps of batch 96 with Adam; returns (first loss, final loss, final accuracy).
fn train_on(backend: Backend) -> (f32, f32, f32) {
    let mut vars = VarStore::new();
    let model = residual(&mut vars);
    let optimizer = Optimizer::new(OptimizerKind::adam(0.0), 0.02);
    let mut config = TrainConfig::new(96);
    config.stop_on_nan = true;
    let mut t = Trainer::new(model, vars, backend, optimizer, config).unwrap();
    let (x, labels) = data();
    let feeds = Feeds::new().with("x", &x).with("labels", &labels);
    let first = t.step(&feeds).unwrap().loss;
    for _ in 0..150 {
        t.step(&feeds).unwrap();
    }
    let end = t.evaluate_batch(96, &feeds).unwrap();
    let accuracy = end.metric("correct").unwrap() / 96.0;
    (first, end.loss, accuracy)
}

#[test]
fn a_model_from_the_docs_trains_on_the_cpu_backend() {
    let (backend, _) = Backend::open(DeviceChoice::Cpu).unwrap();
    let (first, last, accuracy) = train_on(backend);
    // ln 3 ≈ 1.10 at the start; the classes are separable, so the loss falls well below it.
    assert!(first > 0.8, "first loss {first}");
    assert!(last < 0.3 * first, "loss {first} → {last}");
    assert!(accuracy >= 0.95, "accuracy {accuracy}");
}

#[test]
fn a_model_from_the_docs_trains_on_an_adapter() {
    let Some(backend) = common::gpu_backend() else {
        return; // test_gpu() fails instead when SINTER_REQUIRE_ADAPTER is set
    };
    let (first, last, accuracy) = train_on(backend);
    assert!(last < 0.3 * first, "loss {first} → {last}");
    assert!(accuracy >= 0.95, "accuracy {accuracy}");
}

fn cpu_trainer() -> Trainer<Residual> {
    let mut vars = VarStore::new();
    let model = residual(&mut vars);
    let (backend, _) = Backend::open(DeviceChoice::Cpu).unwrap();
    let optimizer = Optimizer::new(OptimizerKind::adam(0.0), 0.02);
    Trainer::new(model, vars, backend, optimizer, TrainConfig::new(4)).unwrap()
}

#[test]
fn a_wrong_feed_name_or_size_is_an_error_listing_the_inputs() {
    let mut t = cpu_trainer();
    let (x, labels) = (vec![0.0; 16], vec![0.0; 4]);
    let e = t
        .step(&Feeds::new().with("images", &x).with("labels", &labels))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no input named 'images'") && e.contains("'x' [4, 4]"),
        "{e}"
    );
    let e = t
        .step(&Feeds::new().with("x", &x[..8]).with("labels", &labels))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("input 'x' has shape [4, 4] (16 values) but 8"),
        "{e}"
    );
    let e = t.step(&Feeds::new().with("x", &x)).unwrap_err().to_string();
    assert!(e.contains("input 'labels' was not fed"), "{e}");
    // Nothing ran: the step counter did not move.
    assert_eq!(t.step, 0);
}

#[test]
fn variables_not_loaded_are_an_error_naming_the_variable() {
    let mut vars = VarStore::new();
    let fc = Linear::new(&mut vars, "fc", 3, 2, &mut Init::new(0));
    let g = GraphBuilder::new();
    let x = g.input("x", &[1, 3]);
    let y = fc.forward(&vars, &x).unwrap().sum_all();
    let (backend, _) = Backend::open(DeviceChoice::Cpu).unwrap();
    let e = backend
        .compile(&g.finish(), &[y.id])
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("weight") && e.contains("load_vars"), "{e}");
    // A tensor from another graph is refused by the op, naming it.
    let other = GraphBuilder::new().input("z", &[1, 3]);
    let e = x.add(&other).unwrap_err().to_string();
    assert!(e.contains("different graphs"), "{e}");
    let _ = backward(&y, &[]).unwrap();
}

/// A model whose loss was recorded on a graph of its own, and one whose loss is not a scalar.
struct Misrecorded {
    scalar: bool,
}

impl Model for Misrecorded {
    fn forward(&self, _: &VarStore, g: &GraphBuilder, batch: usize, _: Mode) -> Result<Outputs> {
        if self.scalar {
            let elsewhere = GraphBuilder::new().fill(1.0, &[1]);
            Ok(Outputs::loss(elsewhere))
        } else {
            Ok(Outputs::loss(g.input("x", &[batch, 2])))
        }
    }
}

#[test]
fn a_loss_from_another_graph_or_not_a_scalar_is_an_error() {
    for scalar in [true, false] {
        let (backend, _) = Backend::open(DeviceChoice::Cpu).unwrap();
        let optimizer = Optimizer::new(OptimizerKind::adam(0.0), 0.02);
        let e = Trainer::new(
            Misrecorded { scalar },
            VarStore::new(),
            backend,
            optimizer,
            TrainConfig::new(2),
        )
        .err()
        .expect("refused")
        .to_string();
        let want = if scalar {
            "another graph"
        } else {
            "must be a scalar"
        };
        assert!(e.contains(want), "{e}");
    }
}
