//! A model with a custom loss: a line fitted with the Huber loss (quadratic near zero, linear
//! beyond δ) to data with outliers that the example makes; `cargo run --example custom_loss`.

use sinter::{
    Backend, Combine, DeviceChoice, Feeds, GraphBuilder, Init, Linear, Mode, Model, Optimizer,
    OptimizerKind, Outputs, Result, Tensor, TrainConfig, Trainer, VarStore,
};

/// Mean Huber loss of `pred` against `target`: ½d² where |d| ≤ δ, δ(|d| − ½δ) beyond, written
/// as ½·m² + δ·(|d| − m) with m = min(|d|, δ), so that it is made of differentiable ops.
fn huber(pred: &Tensor, target: &Tensor, delta: f64) -> Result<Tensor> {
    let g = pred.builder();
    let d = pred.sub(target)?.abs();
    let m = d.minimum(&g.fill(delta, &[1]))?;
    let quadratic = m.square().scale(0.5);
    let linear = d.sub(&m)?.scale(delta);
    Ok(quadratic.add(&linear)?.mean_all())
}

/// y ≈ w·x + b.
struct Line {
    fit: Linear,
}

impl Model for Line {
    fn forward(&self, vars: &VarStore, g: &GraphBuilder, batch: usize, _: Mode) -> Result<Outputs> {
        let x = g.input("x", &[batch, 1]);
        let y = g.input("y", &[batch, 1]);
        let pred = self.fit.forward(vars, &x)?;
        let mae = pred.sub(&y)?.abs().mean_all();
        Ok(Outputs::loss(huber(&pred, &y, 1.0)?).with_metric("mae", mae, Combine::Mean))
    }
}

fn main() -> Result<()> {
    // y = 3x − 1 with small noise, and every tenth point thrown far off.
    let n = 256;
    let x: Vec<f32> = (0..n).map(|i| i as f32 / n as f32 * 4.0 - 2.0).collect();
    let y: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let noise = ((i * 37 % 11) as f32 - 5.0) * 0.01;
            let outlier = if i % 10 == 0 { 25.0 } else { 0.0 };
            3.0 * x - 1.0 + noise + outlier
        })
        .collect();
    let (mut vars, mut init) = (VarStore::new(), Init::new(0));
    let model = Line {
        fit: Linear::new(&mut vars, "fit", 1, 1, &mut init),
    };
    let (backend, _) = Backend::open(DeviceChoice::from_env()?)?;
    let optimizer = Optimizer::new(OptimizerKind::adam(0.0), 0.05);
    let mut trainer = Trainer::new(model, vars, backend, optimizer, TrainConfig::new(n))?;
    let feeds = Feeds::new().with("x", &x).with("y", &y);
    for step in 0..600 {
        let r = trainer.step(&feeds)?;
        if step % 100 == 0 {
            println!(
                "step {step:3}  huber {:.4}  mae {:.4}",
                r.loss,
                r.metric("mae").unwrap_or(0.0)
            );
        }
    }
    let params = trainer.params()?;
    let (w, b) = (params[0].data[0], params[1].data[0]);
    println!("fitted y = {w:.3}·x + {b:.3} (the clean line is y = 3·x − 1)");
    // A squared loss would be pulled up by the outliers (by about 2.5); Huber stays near the line.
    if (w - 3.0).abs() > 0.1 || (b + 1.0).abs() > 0.3 {
        return Err(sinter::ModelError::Config(format!(
            "the fit y = {w}·x + {b} is not near y = 3·x − 1"
        )));
    }
    Ok(())
}
