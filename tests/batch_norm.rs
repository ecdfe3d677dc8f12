//! Batch norm through the trainer, on the CPU backend and an adapter: running statistics after k
//! steps against PyTorch's formula worked by hand, evaluation with the running statistics (its loss
//! recomputed by hand), buffers never touched by the optimizer, and a small ResNet that learns.

mod common;

use rand::Rng;
use sinter::sinter_model::backend::CpuBackend;
use sinter::sinter_model::nn::{Layer, Linear, Sequential};
use sinter::sinter_model::optim::{Optimizer, OptimizerKind};
use sinter::sinter_model::resnet::{resnet, BatchNorm2d};
use sinter::sinter_model::train::ImageClassifier;
use sinter::sinter_model::{Backend, Feeds, Init, TrainConfig, Trainer, VarKind, VarStore};

/// The running statistics are three roundings per step of f32 values of size ~1.
const RUNNING_ATOL: f64 = 1e-5;
/// The evaluation loss in f32 against f64 by hand: a few roundings in each of 2·3·3 products.
const EVAL_LOSS_ATOL: f64 = 2e-5;

const BATCH: usize = 6;
const IMAGE: [usize; 3] = [2, 3, 3];
const STEPS: usize = 3;

/// bn (2 channels) → flatten → fc (18 → 3): the batch norm sees the fed images, so its batch
/// statistics are known without running the model.
fn net(store: &mut VarStore) -> (Sequential, BatchNorm2d, Linear) {
    let mut init = Init::new(5);
    let bn = BatchNorm2d::new(store, "bn", IMAGE[0]);
    let fc = Linear::new(store, "fc", 18, 3, &mut init);
    let mut m = Sequential::new();
    m.push("bn", Layer::BatchNorm2d(bn.clone()))
        .push("flatten", Layer::Flatten)
        .push("fc", Layer::Linear(fc.clone()));
    (m, bn, fc)
}

fn batches() -> Vec<(Vec<f32>, Vec<f32>)> {
    let mut r = common::rng(77);
    (0..=STEPS)
        .map(|_| {
            let images = common::rand_vec(&mut r, BATCH * 18, -1.0, 3.0);
            let labels = (0..BATCH).map(|_| r.random_range(0..3) as f32).collect();
            (images, labels)
        })
        .collect()
}

/// PyTorch's update, by hand in f64: mean and unbiased variance of each channel over N·H·W.
fn expected_running(batches: &[(Vec<f32>, Vec<f32>)]) -> (Vec<f64>, Vec<f64>) {
    let (mut mean, mut var) = (vec![0.0; 2], vec![1.0; 2]);
    for (images, _) in batches {
        for c in 0..2 {
            let vals: Vec<f64> = (0..BATCH)
                .flat_map(|n| images[(n * 2 + c) * 9..(n * 2 + c + 1) * 9].to_vec())
                .map(f64::from)
                .collect();
            let m = vals.len() as f64;
            let mu = vals.iter().sum::<f64>() / m;
            let unbiased = vals.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / (m - 1.0);
            mean[c] = 0.9 * mean[c] + 0.1 * mu;
            var[c] = 0.9 * var[c] + 0.1 * unbiased;
        }
    }
    (mean, var)
}

/// The evaluation loss by hand: normalize with the running statistics, then fc, then the mean
/// cross-entropy.
fn eval_loss_by_hand(
    t: &Trainer<ImageClassifier>,
    bn: &BatchNorm2d,
    fc: &Linear,
    batch: &(Vec<f32>, Vec<f32>),
) -> f64 {
    let read = |id| -> Vec<f64> {
        t.backend
            .read_var(id)
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    };
    let (w, b, rm, rv) = (
        read(bn.weight),
        read(bn.bias),
        read(bn.running_mean),
        read(bn.running_var),
    );
    let (fw, fb) = (read(fc.weight), read(fc.bias));
    let (images, labels) = batch;
    let mut total = 0.0;
    for n in 0..BATCH {
        let x: Vec<f64> = (0..18)
            .map(|j| {
                let c = j / 9;
                let v = f64::from(images[n * 18 + j]);
                (v - rm[c]) / (rv[c] + 1e-5).sqrt() * w[c] + b[c]
            })
            .collect();
        let logits: Vec<f64> = (0..3)
            .map(|k| fb[k] + (0..18).map(|j| fw[k * 18 + j] * x[j]).sum::<f64>())
            .collect();
        let max = logits.iter().cloned().fold(f64::MIN, f64::max);
        let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
        total += lse - logits[labels[n] as usize];
    }
    total / BATCH as f64
}

/// Trains STEPS steps on `backend`; checks the running statistics, the counter, the untouched
/// buffers' kind and the evaluation loss; returns the running statistics.
fn train_and_check(backend: Backend, what: &str) -> Vec<Vec<f32>> {
    let mut store = VarStore::new();
    let (net, bn, fc) = net(&mut store);
    let model = ImageClassifier { net, image: IMAGE };
    let opt = Optimizer::new(OptimizerKind::sgd(0.9, false, 0.0), 0.1);
    let mut t = Trainer::new(model, store, backend, opt, TrainConfig::new(BATCH)).unwrap();
    let data = batches();
    for (images, labels) in &data[..STEPS] {
        let feeds = Feeds::new().with("images", images).with("labels", labels);
        t.step(&feeds).unwrap();
    }
    let (mean, var) = expected_running(&data[..STEPS]);
    let got_mean = t.backend.read_var(bn.running_mean).unwrap();
    let got_var = t.backend.read_var(bn.running_var).unwrap();
    common::assert_close(
        &format!("{what}: running_mean"),
        &got_mean,
        &mean,
        RUNNING_ATOL,
        0.0,
    );
    common::assert_close(
        &format!("{what}: running_var"),
        &got_var,
        &var,
        RUNNING_ATOL,
        0.0,
    );
    let count = t.backend.read_var(bn.num_batches_tracked).unwrap();
    assert_eq!(count, [STEPS as f32], "{what}: num_batches_tracked");
    // The optimizer keeps state for parameters only, and the state_dict holds the buffers.
    assert!(t.store.find("bn.running_mean.momentum").is_none(), "{what}");
    let names: Vec<String> = t.params().unwrap().into_iter().map(|p| p.name).collect();
    for want in [
        "bn.weight",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{what}: {want} not in {names:?}"
        );
    }
    assert_eq!(t.store.ids(VarKind::Buffer).len(), 3, "{what}");
    // Evaluation normalizes with the running statistics and leaves them as they are.
    let test = &data[STEPS];
    let feeds = Feeds::new().with("images", &test.0).with("labels", &test.1);
    let loss = t.evaluate_batch(BATCH, &feeds).unwrap().loss as f64;
    let want = eval_loss_by_hand(&t, &bn, &fc, test);
    assert!(
        (loss - want).abs() <= EVAL_LOSS_ATOL,
        "{what}: eval loss {loss}, by hand {want}"
    );
    assert_eq!(
        t.backend.read_var(bn.running_mean).unwrap(),
        got_mean,
        "{what}: eval changed running_mean"
    );
    assert_eq!(
        t.backend.read_var(bn.num_batches_tracked).unwrap(),
        count,
        "{what}"
    );
    vec![got_mean, got_var]
}

#[test]
fn running_statistics_follow_pytorch_and_evaluation_uses_them() {
    let cpu = train_and_check(Backend::Cpu(CpuBackend::new()), "cpu");
    if let Some(gpu) = common::gpu_backend() {
        let on_gpu = train_and_check(gpu, "adapter");
        for (g, c) in on_gpu.iter().zip(&cpu) {
            common::assert_close(
                "adapter vs cpu running statistics",
                g,
                &common::to_f64(c),
                RUNNING_ATOL,
                0.0,
            );
        }
    }
}

#[test]
fn a_small_resnet_learns_random_labels_on_both_backends() {
    // 16 images of 3×8×8 with fixed random labels: ResNet-8 can memorize them, so the loss
    // must fall well below its start (ln 4 ≈ 1.39 for 4 classes) within 30 Adam steps.
    let mut r = common::rng(3);
    let images = common::rand_vec(&mut r, 16 * 3 * 64, 0.0, 1.0);
    let labels: Vec<f32> = (0..16).map(|_| r.random_range(0..4) as f32).collect();
    let mut backends = vec![("cpu", Backend::Cpu(CpuBackend::new()))];
    backends.extend(common::gpu_backend().map(|b| ("adapter", b)));
    for (what, backend) in backends {
        let mut store = VarStore::new();
        let net = resnet(&mut store, 8, 3, 4, &mut Init::new(1)).unwrap();
        let model = ImageClassifier {
            net,
            image: [3, 8, 8],
        };
        let opt = Optimizer::new(OptimizerKind::adam(0.0), 3e-3);
        let mut t = Trainer::new(model, store, backend, opt, TrainConfig::new(16)).unwrap();
        let feeds = Feeds::new().with("images", &images).with("labels", &labels);
        let losses: Vec<f32> = (0..30).map(|_| t.step(&feeds).unwrap().loss).collect();
        let (first, last) = (losses[0], losses[29]);
        assert!(
            last < 0.5 * first,
            "{what}: loss {first} → {last}: {losses:?}"
        );
        let eval = t.evaluate_batch(16, &feeds).unwrap();
        assert!(eval.loss.is_finite(), "{what}: eval loss {}", eval.loss);
    }
}

#[test]
fn checkpoints_carry_the_running_statistics_and_resume_exactly() {
    let data = batches();
    let feeds = |k: usize| {
        Feeds::new()
            .with("images", &data[k].0)
            .with("labels", &data[k].1)
    };
    let trainer = || {
        let mut store = VarStore::new();
        let (net, bn, _) = net(&mut store);
        let model = ImageClassifier { net, image: IMAGE };
        let opt = Optimizer::new(OptimizerKind::adam(0.0), 1e-2);
        let backend = Backend::Cpu(CpuBackend::new());
        let t = Trainer::new(model, store, backend, opt, TrainConfig::new(BATCH)).unwrap();
        (t, bn)
    };
    let (mut a, bn) = trainer();
    a.step(&feeds(0)).unwrap();
    a.step(&feeds(1)).unwrap();
    let ckpt = a.checkpoint(Default::default()).unwrap();
    let saved: Vec<&str> = ckpt.params.iter().map(|t| t.name.as_str()).collect();
    assert!(saved.contains(&"bn.running_var") && saved.contains(&"bn.num_batches_tracked"));
    a.step(&feeds(2)).unwrap();

    let (mut b, _) = trainer();
    b.restore(&ckpt, std::path::Path::new("in memory")).unwrap();
    assert_eq!(b.backend.read_var(bn.num_batches_tracked).unwrap(), [2.0]);
    b.step(&feeds(2)).unwrap();
    for id in [
        bn.running_mean,
        bn.running_var,
        bn.num_batches_tracked,
        bn.weight,
    ] {
        assert_eq!(
            a.backend.read_var(id).unwrap(),
            b.backend.read_var(id).unwrap(),
            "{} differs after resuming",
            a.store.get(id).name
        );
    }
}
