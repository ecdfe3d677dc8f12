//! Training-step benchmark: one step (forward, backward, Adam) of the default CNN at batch 64 on
//! the CPU backend and on the adapter at hand (a hardware GPU, else a software one), median ms.
//!
//! `cargo bench --bench step`; `STEP_BATCH=128 STEP_STEPS=50` change the batch and the timed steps.

use sinter::sinter_device::{pick_adapter, DeviceChoice, Gpu};
use sinter::sinter_model::backend::GpuBackend;
use sinter::sinter_model::data::embedded_mnist;
use sinter::sinter_model::nn::default_cnn;
use sinter::sinter_model::optim::{Optimizer, OptimizerKind};
use sinter::sinter_model::train::{Classifier, ClassifierConfig};
use sinter::sinter_model::{Backend, VarStore};
use std::time::Instant;

const WARMUP: usize = 3;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median milliseconds per training step of the default CNN on `backend`.
fn bench(label: &str, backend: Backend, batch: usize, steps: usize) {
    let (data, _) = embedded_mnist().expect("embedded MNIST");
    let image = [data.channels, data.rows, data.cols];
    let mut store = VarStore::new();
    let mut rng = sinter_model::Init::new(0);
    let model = default_cnn(
        &mut store,
        image[0],
        [image[1], image[2]],
        data.classes,
        &mut rng,
    );
    let config = ClassifierConfig {
        accumulate: 1,
        batch,
        eval_batch: batch,
        seed: 0,
        shuffle: true,
        stop_on_nan: false,
        detect_anomaly: false,
        memory_limit: None,
    };
    let opt = Optimizer::new(OptimizerKind::adam(0.0), 1e-3);
    let describe = backend.describe();
    let mut c = Classifier::new("cnn", model, store, backend, opt, config, image, data.n)
        .expect("compile the step");
    for _ in 0..WARMUP {
        c.train_step(&data).expect("warm-up step");
    }
    let mut ms: Vec<f64> = (0..steps)
        .map(|_| {
            let start = Instant::now();
            c.train_step(&data).expect("step");
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    println!(
        "cnn {label} batch {batch}: {median:.2} ms/step, {:.0} samples/s (min {:.2}, max {:.2} ms over {steps} steps; {describe})",
        batch as f64 * 1e3 / median,
        ms[0],
        ms[ms.len() - 1]
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let batch = env_usize("STEP_BATCH", 64).max(1);
    let steps = env_usize("STEP_STEPS", 20).max(1);
    bench("cpu", Backend::Cpu(Default::default()), batch, steps);
    let adapter = match pick_adapter(DeviceChoice::Gpu) {
        Ok(Some(a)) => Some(("gpu", a)),
        _ => pick_adapter(DeviceChoice::Software)
            .ok()
            .flatten()
            .map(|a| ("software", a)),
    };
    match adapter {
        Some((label, a)) => {
            let gpu = Gpu::new(a).expect("open the adapter");
            let backend = GpuBackend::new(gpu).expect("GPU backend");
            bench(label, Backend::Gpu(Box::new(backend)), batch, steps);
        }
        None => println!("no adapter found: CPU backend only"),
    }
}
