//! Nodes are lowered once, for both backends: the CPU and the adapter profile of the same
//! training step (the default CNN, a ResNet with batch norms, the char-transformer) price every
//! launch with the same FLOPs and bytes, and both run the same launches in the same order.

mod common;

use common::gpu_backend;
use sinter::sinter_model::backend::CpuBackend;
use sinter::sinter_model::data::{embedded_mnist, CharCorpus};
use sinter::sinter_model::lm::{CharArch, CharLm, LmConfig};
use sinter::sinter_model::nn::default_cnn;
use sinter::sinter_model::optim::{Optimizer, OptimizerKind};
use sinter::sinter_model::profile::StepProfile;
use sinter::sinter_model::resnet::resnet;
use sinter::sinter_model::train::{Classifier, ClassifierConfig};
use sinter::sinter_model::{Backend, Init, VarStore};

/// Per launch: (kernel name on the CPU, FLOPs, bytes), summing a GPU launch's dispatches.
fn launch_costs(p: &StepProfile) -> Vec<(u64, u64)> {
    let mut costs: Vec<(u64, u64)> = Vec::new();
    for k in &p.kernels {
        if k.launch >= costs.len() {
            assert_eq!(
                k.launch,
                costs.len(),
                "launches out of order in {}",
                p.timing
            );
            costs.push((0, 0));
        }
        costs[k.launch].0 += k.flops;
        costs[k.launch].1 += k.bytes;
    }
    costs
}

fn assert_same_costs(what: &str, cpu: &StepProfile, gpu: &StepProfile) {
    let (c, g) = (launch_costs(cpu), launch_costs(gpu));
    assert_eq!(
        c.len(),
        g.len(),
        "{what}: launches on the CPU vs the adapter"
    );
    let names: Vec<&str> = cpu.kernels.iter().map(|k| k.kernel.as_str()).collect();
    for (i, (a, b)) in c.iter().zip(&g).enumerate() {
        assert_eq!(
            a, b,
            "{what}: launch {i} ({}): CPU vs adapter (flops, bytes)",
            names[i]
        );
    }
    assert!(
        c.iter().all(|&(_, bytes)| bytes > 0),
        "{what}: a launch moves no bytes"
    );
    assert!(
        c.iter().map(|&(f, _)| f).sum::<u64>() > 0,
        "{what}: no FLOPs at all"
    );
}

fn cnn(backend: Backend) -> Classifier {
    classifier(backend, "cnn")
}

fn classifier(backend: Backend, name: &str) -> Classifier {
    let mut init = Init::new(3);
    let mut store = VarStore::new();
    let model = match name {
        "resnet" => resnet(&mut store, 8, 1, 10, &mut init).expect("depth 8 is 6·1 + 2"),
        _ => default_cnn(&mut store, 1, [28, 28], 10, &mut init),
    };
    let config = ClassifierConfig {
        batch: 8,
        eval_batch: 8,
        seed: 3,
        shuffle: false,
        stop_on_nan: true,
        detect_anomaly: false,
        memory_limit: None,
    };
    let opt = Optimizer::new(OptimizerKind::adam(0.0), 1e-3);
    Classifier::new(name, model, store, backend, opt, config, [1, 28, 28], 1000)
        .expect("the classifier builds")
}

#[test]
fn cnn_step_costs_the_same_on_the_cpu_and_an_adapter() {
    let Some(gpu) = gpu_backend() else { return };
    let (data, _) = embedded_mnist().unwrap();
    let (_, cpu_profile) = cnn(Backend::Cpu(CpuBackend::new()))
        .train_step_profiled(&data, None)
        .unwrap();
    let (_, gpu_profile) = cnn(gpu).train_step_profiled(&data, None).unwrap();
    assert_same_costs("cnn", &cpu_profile, &gpu_profile);
}

#[test]
fn resnet_step_costs_the_same_on_the_cpu_and_an_adapter() {
    let Some(gpu) = gpu_backend() else { return };
    let (data, _) = embedded_mnist().unwrap();
    let resnet = |backend| classifier(backend, "resnet");
    let (_, cpu_profile) = resnet(Backend::Cpu(CpuBackend::new()))
        .train_step_profiled(&data, None)
        .unwrap();
    let (_, gpu_profile) = resnet(gpu).train_step_profiled(&data, None).unwrap();
    let names: Vec<&str> = cpu_profile
        .kernels
        .iter()
        .map(|k| k.kernel.as_str())
        .collect();
    for k in ["batch_norm2d", "batch_norm2d_grad", "batch_norm_update"] {
        assert!(names.contains(&k), "no {k} launch in {names:?}");
    }
    assert_same_costs("resnet", &cpu_profile, &gpu_profile);
}

#[test]
fn char_transformer_step_costs_the_same_on_the_cpu_and_an_adapter() {
    let Some(gpu) = gpu_backend() else { return };
    let arch = CharArch::Transformer {
        layers: 2,
        heads: 2,
        width: 32,
    };
    let lm = |backend| {
        let config = LmConfig {
            batch: 4,
            seed: 1,
            valid_batches: 1,
            stop_on_nan: true,
            detect_anomaly: false,
            memory_limit: None,
        };
        let opt = Optimizer::new(OptimizerKind::adamw(0.01), 1e-3);
        let corpus = CharCorpus::embedded().unwrap();
        CharLm::new(arch, 19, corpus, backend, opt, config).expect("the model builds")
    };
    let (_, cpu_profile) = lm(Backend::Cpu(CpuBackend::new()))
        .train_step_profiled(None)
        .unwrap();
    let (_, gpu_profile) = lm(gpu).train_step_profiled(None).unwrap();
    assert_same_costs("char-transformer", &cpu_profile, &gpu_profile);
}
