//! Nodes are lowered once, for both backends: the CPU and the adapter profile of the same
//! training step (the default CNN, the char-transformer, a graph of the selection and RMS norm
//! ops) price every launch with the same FLOPs and bytes, and both run the same launches in order.
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
use sinter::sinter_model::{backward, Backend, GraphBuilder, Init, StepScalars, Tensor, VarStore};

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
        accumulate: 1,
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
            accumulate: 1,
            batch: 4,
            seed: 1,
            valid_batches: 1,
            stop_on_nan: true,
            detect_anomaly: false,
            dropout: 0.0,
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

#[test]
fn selection_and_rms_norm_cost_the_same_on_the_cpu_and_an_adapter() {
    let Some(gpu) = gpu_backend() else { return };
    let g = GraphBuilder::new();
    let x = g.input("x", &[4, 6, 5]);
    let gamma = g.input("gamma", &[5]);
    let ids = g.input("ids", &[3]);
    let index = g.input("index", &[4, 2, 5]);
    let mask = g.input("mask", &[6, 1]);
    let y = x.rms_norm(&gamma, 1e-5).unwrap();
    let picked = y.index_select(1, &ids).unwrap();
    let gathered = y.gather(1, &index).unwrap();
    let filled = y.masked_fill(&mask, 0.0).unwrap();
    let chosen = Tensor::where_(&mask, &y, &x).unwrap();
    let loss = picked
        .square()
        .sum_all()
        .add(&gathered.square().sum_all())
        .unwrap()
        .add(&filled.mul(&chosen).unwrap().sum_all())
        .unwrap();
    let grads = backward(&loss, &[x.id, gamma.id]).unwrap();
    let outputs = [
        loss.id,
        grads.of(x.id).unwrap(),
        grads.of(gamma.id).unwrap(),
    ];
    let graph = g.finish();
    let xs: Vec<f32> = (0..120)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
        .collect();
    let gs = [0.5f32, 1.5, -1.0, 2.0, 0.75];
    let ids_v = [5.0f32, 0.0, 5.0];
    let index_v: Vec<f32> = (0..40).map(|i| (i * 5 % 6) as f32).collect();
    let mask_v = [1.0f32, 0.0, 0.0, 1.0, 0.0, 1.0];
    let feeds: [&[f32]; 5] = [&xs, &gs, &ids_v, &index_v, &mask_v];
    let run = |mut backend: Backend| {
        let mut prog = backend.compile(&graph, &outputs).unwrap();
        backend
            .run_profiled(&mut prog, &feeds, &StepScalars::default(), None)
            .unwrap()
    };
    let (cpu_out, cpu_profile) = run(Backend::Cpu(CpuBackend::new()));
    let (gpu_out, gpu_profile) = run(gpu);
    assert_same_costs("selection and rms norm", &cpu_profile, &gpu_profile);
    let names: Vec<&str> = cpu_profile
        .kernels
        .iter()
        .map(|k| k.kernel.as_str())
        .collect();
    for kernel in [
        "rms_norm",
        "rms_norm_grad_input",
        "rms_norm_grad_gamma",
        "index_select",
        "index_select_grad",
        "gather",
        "gather_grad",
        "where",
    ] {
        assert!(names.contains(&kernel), "no {kernel} launch in {names:?}");
    }
    // Both backends compute the same step (f32 sums in different orders: 1e-5 relative).
    for (k, (c, g)) in cpu_out.iter().zip(&gpu_out).enumerate() {
        for (i, (a, b)) in c.iter().zip(g).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 + 1e-5 * a.abs(),
                "output {k}[{i}]: CPU {a} vs adapter {b}"
            );
        }
    }
}
