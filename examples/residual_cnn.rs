//! A residual CNN defined from scratch and trained on the shipped MNIST digits with the generic
//! trainer: `cargo run --release --example residual_cnn [steps]` (default 300 steps).

use sinter::{
    embedded_mnist, Backend, Combine, Conv2d, ConvConfig, DeviceChoice, Feeds, GraphBuilder, Init,
    Linear, Mode, Model, Optimizer, OptimizerKind, Outputs, PoolConfig, Result, TrainConfig,
    Trainer, VarStore,
};

/// stem (3×3 conv, 16 channels) → residual block (two 3×3 convs and a skip) → 2×2 max-pool →
/// linear head over 16·14·14 features.
struct ResidualCnn {
    stem: Conv2d,
    block_a: Conv2d,
    block_b: Conv2d,
    head: Linear,
}

impl ResidualCnn {
    fn new(vars: &mut VarStore, init: &mut Init) -> Self {
        let same = ConvConfig::padded(1);
        Self {
            stem: Conv2d::new(vars, "stem", 1, 16, 3, same, init),
            block_a: Conv2d::new(vars, "block.conv1", 16, 16, 3, same, init),
            block_b: Conv2d::new(vars, "block.conv2", 16, 16, 3, same, init),
            head: Linear::new(vars, "head", 16 * 14 * 14, 10, init),
        }
    }
}

impl Model for ResidualCnn {
    fn forward(
        &self,
        vars: &VarStore,
        g: &GraphBuilder,
        batch: usize,
        _mode: Mode,
    ) -> Result<Outputs> {
        let images = g.input("images", &[batch, 1, 28, 28]);
        let labels = g.input("labels", &[batch]);
        let x = self.stem.forward(vars, &images)?.relu();
        // The residual connection: x + conv(relu(conv(x))).
        let r = self.block_a.forward(vars, &x)?.relu();
        let x = x.add(&self.block_b.forward(vars, &r)?)?.relu();
        let x = x.max_pool2d(PoolConfig::square(2))?.flatten(1)?;
        let logits = self.head.forward(vars, &x)?;
        let loss = logits.cross_entropy(&labels)?;
        let correct = logits.count_correct(&labels)?;
        Ok(Outputs::loss(loss).with_metric("correct", correct, Combine::Sum))
    }
}

fn main() -> Result<()> {
    let steps: u64 = match std::env::args().nth(1) {
        Some(s) => s.parse().map_err(|_| {
            sinter::ModelError::Config(format!("steps must be a whole number, got '{s}'"))
        })?,
        None => 300,
    };
    let (train, test) = embedded_mnist()?;
    let (mut vars, mut init) = (VarStore::new(), Init::new(1));
    let model = ResidualCnn::new(&mut vars, &mut init);
    let (backend, notice) = Backend::open(DeviceChoice::from_env()?)?;
    if let Some(n) = notice {
        eprintln!("{n}");
    }
    println!("training on {}", backend.describe());
    let optimizer = Optimizer::new(OptimizerKind::adam(0.0), 2e-3);
    let batch = 32;
    let mut trainer = Trainer::new(model, vars, backend, optimizer, TrainConfig::new(batch))?;
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for step in 0..steps {
        let start = (step as usize * batch) % (train.n - batch);
        let idx: Vec<usize> = (start..start + batch).collect();
        train.gather(&idx, &mut images, &mut labels);
        let feeds = Feeds::new().with("images", &images).with("labels", &labels);
        let r = trainer.step(&feeds)?;
        if step % 50 == 0 || step + 1 == steps {
            println!("step {step:4}  loss {:.4}", r.loss);
        }
    }
    // Evaluate on the 2,000 test digits in batches of 250.
    let mut results = Vec::new();
    for start in (0..test.n).step_by(250) {
        let idx: Vec<usize> = (start..(start + 250).min(test.n)).collect();
        test.gather(&idx, &mut images, &mut labels);
        let feeds = Feeds::new().with("images", &images).with("labels", &labels);
        results.push(trainer.evaluate_batch(idx.len(), &feeds)?);
    }
    let all = trainer.combine(&results);
    let accuracy = all.metric("correct").unwrap_or(0.0) / test.n as f32;
    println!(
        "test loss {:.4}, accuracy {:.2}% on {} digits",
        all.loss,
        100.0 * accuracy,
        test.n
    );
    Ok(())
}
