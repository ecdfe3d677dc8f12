//! End-to-end training: a model learns on the shipped MNIST digits, the WGSL kernels on an
//! adapter agree with the CPU backend step by step, and a resumed run equals an uninterrupted one.

mod common;

use common::gpu_backend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sinter::sinter_model::backend::CpuBackend;
use sinter::sinter_model::data::{embedded_mnist, ImageDataset};
use sinter::sinter_model::gpt2::{Gpt2, Gpt2Config};
use sinter::sinter_model::nn::{default_cnn, mlp, Sequential};
use sinter::sinter_model::optim::{Optimizer, OptimizerKind, Schedule};
use sinter::sinter_model::train::{Classifier, ClassifierConfig, StepStats};
use sinter::sinter_model::trainer::{Feeds, TrainConfig, Trainer};
use sinter::sinter_model::{Backend, VarStore};
use std::sync::OnceLock;

fn data() -> &'static (ImageDataset, ImageDataset) {
    static DATA: OnceLock<(ImageDataset, ImageDataset)> = OnceLock::new();
    DATA.get_or_init(|| embedded_mnist().expect("the embedded MNIST digits load"))
}

#[derive(Clone, Copy)]
enum Arch {
    Mlp,
    Cnn,
}

fn model(arch: Arch, seed: u64) -> (Sequential, VarStore) {
    let mut rng = sinter_model::Init::new(seed);
    let mut store = VarStore::new();
    let m = match arch {
        Arch::Mlp => mlp(&mut store, 784, 256, 10, &mut rng),
        Arch::Cnn => default_cnn(&mut store, 1, [28, 28], 10, &mut rng),
    };
    (m, store)
}

fn classifier(backend: Backend, arch: Arch, opt: Optimizer, batch: usize, seed: u64) -> Classifier {
    let (m, store) = model(arch, seed);
    let config = ClassifierConfig {
        batch,
        accumulate: 1,
        eval_batch: 200,
        seed,
        shuffle: true,
        stop_on_nan: true,
        detect_anomaly: false,
        memory_limit: None,
    };
    Classifier::new(
        "test",
        m,
        store,
        backend,
        opt,
        config,
        [1, 28, 28],
        data().0.n,
    )
    .expect("classifier builds")
}

fn cpu_backend() -> Backend {
    Backend::Cpu(CpuBackend::new())
}

/// Trains `steps` steps and returns the loss of each.
fn losses(c: &mut Classifier, steps: usize) -> Vec<f32> {
    (0..steps)
        .map(|_| c.train_step(&data().0).expect("step runs").loss)
        .collect()
}

/// Relative agreement of GPU and CPU losses at every step. f32 kernels that sum in a different
/// order drift apart slowly as training amplifies rounding; 1e-3 after hundreds of steps (and
/// 1e-4 over the first 20) is far below the step-to-step change of the loss.
fn assert_losses_agree(what: &str, gpu: &[f32], cpu: &[f32], rtol: f32) {
    for (step, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        assert!(
            (g - c).abs() <= rtol * c.abs(),
            "{what}: step {step}: GPU loss {g} vs CPU loss {c} (rtol {rtol})"
        );
    }
}

/// Six epochs of Adam with a cosine schedule: the MLP's recipe for the 8,000 training digits.
const MLP_STEPS: usize = 6 * 125;

fn mlp_optimizer() -> Optimizer {
    let mut opt = Optimizer::new(OptimizerKind::adam(0.0), 2e-3);
    opt.schedule = Schedule::Cosine {
        warmup: MLP_STEPS as u64 / 20,
        total: MLP_STEPS as u64,
        min_factor: 0.0,
    };
    opt
}

#[test]
fn mlp_reaches_95_percent_on_the_cpu_backend() {
    let mut c = classifier(cpu_backend(), Arch::Mlp, mlp_optimizer(), 64, 1);
    let before = c.evaluate(&data().1).unwrap();
    losses(&mut c, MLP_STEPS);
    let after = c.evaluate(&data().1).unwrap();
    eprintln!(
        "MLP on CPU: test accuracy {:.2}% → {:.2}%",
        before.accuracy * 100.0,
        after.accuracy * 100.0
    );
    assert!(
        after.accuracy >= 0.95,
        "MLP test accuracy {:.2}% < 95%",
        after.accuracy * 100.0
    );
    assert!(
        after.loss < before.loss / 5.0,
        "test loss fell only from {} to {}",
        before.loss,
        after.loss
    );
}

#[test]
fn mlp_reaches_95_percent_on_an_adapter() {
    let Some(backend) = gpu_backend() else { return };
    let mut c = classifier(backend, Arch::Mlp, mlp_optimizer(), 64, 1);
    losses(&mut c, MLP_STEPS);
    let after = c.evaluate(&data().1).unwrap();
    eprintln!(
        "MLP on {}: test accuracy {:.2}%",
        c.backend.describe(),
        after.accuracy * 100.0
    );
    assert!(
        after.accuracy >= 0.95,
        "MLP test accuracy {:.2}% < 95%",
        after.accuracy * 100.0
    );
}

#[test]
fn mlp_on_an_adapter_matches_the_cpu_backend_for_20_steps() {
    let Some(backend) = gpu_backend() else { return };
    for opt in [
        Optimizer::new(OptimizerKind::sgd(0.9, true, 1e-4), 0.05),
        Optimizer::new(OptimizerKind::adamw(0.01), 1e-3),
    ] {
        let name = opt.kind.name();
        let mut clip = opt.clone();
        clip.clip_norm = Some(1.0);
        let mut g = classifier(
            gpu_backend().unwrap_or_else(|| unreachable!()),
            Arch::Mlp,
            clip.clone(),
            32,
            7,
        );
        let mut c = classifier(cpu_backend(), Arch::Mlp, clip, 32, 7);
        assert_losses_agree(name, &losses(&mut g, 20), &losses(&mut c, 20), 1e-4);
    }
    drop(backend);
}

#[test]
fn cnn_on_an_adapter_matches_the_cpu_backend_for_200_steps() {
    let Some(backend) = gpu_backend() else { return };
    // SGD rather than Adam: Adam divides by √v, which magnifies the last-bit differences of
    // gradients near zero, so its trajectories part sooner without either being wrong.
    let opt = Optimizer::new(OptimizerKind::sgd(0.9, false, 0.0), 0.02);
    let mut g = classifier(backend, Arch::Cnn, opt.clone(), 8, 3);
    let mut c = classifier(cpu_backend(), Arch::Cnn, opt, 8, 3);
    let (lg, lc) = (losses(&mut g, 200), losses(&mut c, 200));
    // The first steps agree to the rounding of f32 sums; later ones within the drift bound.
    assert_losses_agree("cnn (first 5 steps)", &lg[..5], &lc[..5], 1e-5);
    assert_losses_agree("cnn", &lg, &lc, 1e-3);
    let head: f32 = lc[..20].iter().sum::<f32>() / 20.0;
    let tail: f32 = lc[180..].iter().sum::<f32>() / 20.0;
    assert!(tail < head * 0.6, "CNN loss did not fall: {head} → {tail}");
}

#[test]
fn cnn_learns_on_the_cpu_backend() {
    let mut c = classifier(
        cpu_backend(),
        Arch::Cnn,
        Optimizer::new(OptimizerKind::adam(0.0), 1e-3),
        64,
        5,
    );
    losses(&mut c, 250);
    let eval = c.evaluate(&data().1).unwrap();
    eprintln!(
        "CNN on CPU after 250 steps: test accuracy {:.2}%",
        eval.accuracy * 100.0
    );
    assert!(
        eval.accuracy >= 0.95,
        "CNN test accuracy {:.2}% < 95% after 2 epochs",
        eval.accuracy * 100.0
    );
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one() {
    let opt = Optimizer::new(OptimizerKind::adamw(0.01), 1e-3);
    let mut whole = classifier(cpu_backend(), Arch::Mlp, opt.clone(), 32, 11);
    losses(&mut whole, 30);

    let mut first = classifier(cpu_backend(), Arch::Mlp, opt.clone(), 32, 11);
    losses(&mut first, 17);
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("resume-test.ckpt");
    first.checkpoint().unwrap().save(&path).unwrap();
    drop(first);

    // A fresh process would build the model from a different seed; the checkpoint overrides it.
    let mut second = classifier(cpu_backend(), Arch::Mlp, opt, 32, 99);
    let ckpt = sinter::sinter_model::checkpoint::TrainingCheckpoint::load(&path).unwrap();
    second.restore(&ckpt, &path).unwrap();
    assert_eq!(second.step, 17);
    losses(&mut second, 13);
    for (a, b) in whole.params().unwrap().iter().zip(second.params().unwrap()) {
        assert_eq!(a.name, b.name);
        assert_eq!(
            a.data, b.data,
            "{} differs between the resumed and the uninterrupted run",
            a.name
        );
    }
}

/// Same seed, same backend, same thread count: bit-identical parameters. Three CNN runs, since a
/// sum whose order follows rayon's work stealing (the convolution's weight gradient once was)
/// differs between runs only now and then.
#[test]
fn cnn_training_on_the_cpu_backend_is_bit_reproducible() {
    let run = || {
        let opt = Optimizer::new(OptimizerKind::adam(0.0), 2e-3);
        let mut c = classifier(cpu_backend(), Arch::Cnn, opt, 64, 1);
        losses(&mut c, 15);
        c.params().unwrap()
    };
    let first = run();
    for again in 1..3 {
        for (a, b) in first.iter().zip(run()) {
            assert_eq!(a.name, b.name);
            let diff = a
                .data
                .iter()
                .zip(&b.data)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(
                a.data == b.data,
                "{} differs between run 1 and run {} (max difference {diff:e})",
                a.name,
                again + 1
            );
        }
    }
}

#[test]
fn gpu_memory_matches_the_plan_and_a_steady_loop_allocates_nothing() {
    let Some(backend) = gpu_backend() else { return };
    let before = backend.pool_stats().expect("a GPU backend");
    let opt = Optimizer::new(OptimizerKind::adam(0.0), 1e-3);
    let mut c = classifier(backend, Arch::Cnn, opt, 16, 3);
    let compiled = c.backend.pool_stats().unwrap();
    let train = c.train_memory();
    let eval: u64 = c.eval_memory().iter().map(|m| m.planned_bytes).sum();
    let predicted = c.variable_bytes() + train.planned_bytes + eval;
    let allocated = compiled.bytes_allocated - before.bytes_allocated;
    eprintln!(
        "CNN batch 16: train step planned {} B in {} buffers (peak live {} B, {} B without reuse); \
         variables {} B; eval {} B; predicted {} B, allocated {} B",
        train.planned_bytes,
        train.buffers,
        train.peak_live_bytes,
        train.unshared_bytes,
        c.variable_bytes(),
        eval,
        predicted,
        allocated
    );
    // Fusion leaves few short-lived values (the bias-add and ReLU outputs are gone), so reuse
    // has less to share than in an unfused plan; it must still share some, and the plan must
    // stay close to the peak of values alive at once.
    assert!(
        train.planned_bytes < train.unshared_bytes,
        "no buffer is reused: {train:?}"
    );
    assert!(
        train.planned_bytes <= train.peak_live_bytes * 3 / 2,
        "plan far above the peak live bytes: {train:?}"
    );
    // Allocation rounds each buffer up to its pool size class (at most 4/3), plus the 16-byte
    // optimizer-scalar buffer.
    assert!(
        allocated >= predicted,
        "allocated {allocated} < predicted {predicted}"
    );
    assert!(
        allocated <= predicted * 4 / 3 + 4096,
        "allocated {allocated} far above predicted {predicted}"
    );
    losses(&mut c, 3);
    c.evaluate(&data().1).unwrap();
    let warm = c.backend.pool_stats().unwrap();
    losses(&mut c, 5);
    c.evaluate(&data().1).unwrap();
    assert_eq!(
        c.backend.pool_stats().unwrap(),
        warm,
        "the steady training loop allocated GPU buffers"
    );
}

#[test]
fn a_nan_loss_is_reported_with_its_step() {
    let (train, _) = data();
    let mut poisoned = train.clone();
    let opt = Optimizer::new(OptimizerKind::sgd(0.0, false, 0.0), 0.01);
    let (m, store) = model(Arch::Mlp, 1);
    let config = ClassifierConfig {
        accumulate: 1,
        batch: 16,
        eval_batch: 200,
        seed: 1,
        shuffle: false,
        stop_on_nan: true,
        detect_anomaly: false,
        memory_limit: None,
    };
    let mut c = Classifier::new(
        "nan",
        m,
        store,
        cpu_backend(),
        opt,
        config,
        [1, 28, 28],
        train.n,
    )
    .unwrap();
    c.train_step(train).unwrap();
    // The second batch (examples 16..32) holds a NaN pixel.
    poisoned.images[20 * 784 + 300] = f32::NAN;
    let err = c.train_step(&poisoned).unwrap_err().to_string();
    assert!(
        err.contains("step 1") && err.contains("not finite"),
        "{err}"
    );
}

#[test]
fn dropout_masks_are_the_same_on_every_backend_and_off_in_evaluation() {
    use sinter::sinter_model::nn::{Dropout, Layer};
    let Some(backend) = gpu_backend() else { return };
    let with_dropout = |seed: u64| {
        let (mut m, store) = model(Arch::Mlp, seed);
        m.layers
            .insert(3, ("drop1".into(), Layer::Dropout(Dropout { p: 0.3 })));
        (m, store)
    };
    let config = ClassifierConfig {
        accumulate: 1,
        batch: 32,
        eval_batch: 200,
        seed: 4,
        shuffle: true,
        stop_on_nan: true,
        detect_anomaly: false,
        memory_limit: None,
    };
    let opt = Optimizer::new(OptimizerKind::adam(0.0), 1e-3);
    let (m, store) = with_dropout(4);
    let mut g = Classifier::new(
        "drop",
        m,
        store,
        backend,
        opt.clone(),
        config.clone(),
        [1, 28, 28],
        data().0.n,
    )
    .unwrap();
    let (m, store) = with_dropout(4);
    let mut c = Classifier::new(
        "drop",
        m,
        store,
        cpu_backend(),
        opt,
        config,
        [1, 28, 28],
        data().0.n,
    )
    .unwrap();
    assert_losses_agree(
        "dropout mlp",
        &losses(&mut g, 20),
        &losses(&mut c, 20),
        1e-4,
    );
    // Evaluation is deterministic: no mask, so two evaluations agree exactly.
    let (a, b) = (
        c.evaluate(&data().1).unwrap(),
        c.evaluate(&data().1).unwrap(),
    );
    assert_eq!(a, b);
}

/// The planner's fusion on the adapter: a fused CNN step (conv + bias + ReLU, max-pool gradients
/// with the ReLU mask, linear + bias) gives bit-for-bit the losses and parameters of the unfused
/// step, as on the CPU backend (crates/sinter-model/tests/fusion.rs).
#[test]
fn fused_and_unfused_cnn_steps_agree_bit_for_bit_on_an_adapter() {
    use rand::Rng;
    use sinter::sinter_model::plan::PlanOptions;
    use sinter::sinter_model::train::training_step_graph;
    use sinter::sinter_model::{Plan, VarKind};

    let backends = [gpu_backend(), gpu_backend()];
    let [Some(Backend::Gpu(mut a)), Some(Backend::Gpu(mut b))] = backends else {
        return;
    };
    let (model, mut store) = model(Arch::Cnn, 5);
    let optimizer = Optimizer::new(OptimizerKind::adam(0.0), 1e-3);
    optimizer.add_state(&mut store);
    let batch = 4;
    let (graph, loss, _) =
        training_step_graph(&model, &store, &optimizer, batch, [1, 28, 28]).unwrap();
    let unfused = Plan::new(&graph, &[loss]).unwrap();
    let fused = Plan::with_options(&graph, &[loss], PlanOptions { fuse: true }).unwrap();
    assert!(fused.order.len() < unfused.order.len());
    a.load_vars(&store).unwrap();
    b.load_vars(&store).unwrap();
    let (pa, pb) = (a.compile(unfused).unwrap(), b.compile(fused).unwrap());
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for step in 0..3u64 {
        let images: Vec<f32> = (0..batch * 784).map(|_| rng.random()).collect();
        let labels: Vec<f32> = (0..batch).map(|_| rng.random_range(0..10) as f32).collect();
        let scalars = optimizer.scalars(step);
        let la = a.run(&pa, &[&images, &labels], &scalars).unwrap();
        let lb = b.run(&pb, &[&images, &labels], &scalars).unwrap();
        assert_eq!(
            la[0][0].to_bits(),
            lb[0][0].to_bits(),
            "loss at step {step}"
        );
    }
    for id in store.ids(VarKind::Param) {
        let (va, vb) = (a.read_var(id).unwrap(), b.read_var(id).unwrap());
        let same = va.iter().zip(&vb).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "{} differs after 3 steps", store.get(id).name);
    }
}

/// `accumulate` micro-batches per step give the update of the whole batch at once: the same
/// losses, correct counts and evaluation, with dropout (each micro-batch takes its slice of the
/// step's masks) and SGD momentum, on the CPU backend and on an adapter.
#[test]
fn gradient_accumulation_matches_the_whole_batch() {
    use sinter::sinter_model::nn::{Dropout, Layer};
    let run = |backend: Backend, accumulate: usize| {
        let (mut m, store) = model(Arch::Mlp, 9);
        m.layers
            .insert(3, ("drop1".into(), Layer::Dropout(Dropout { p: 0.2 })));
        let config = ClassifierConfig {
            batch: 48,
            accumulate,
            eval_batch: 200,
            seed: 9,
            shuffle: true,
            stop_on_nan: true,
            detect_anomaly: false,
            memory_limit: None,
        };
        let opt = Optimizer::new(OptimizerKind::sgd(0.9, false, 0.0), 0.05);
        let mut c = Classifier::new(
            "acc",
            m,
            store,
            backend,
            opt,
            config,
            [1, 28, 28],
            data().0.n,
        )
        .expect("classifier builds");
        let steps: Vec<StepStats> = (0..12).map(|_| c.train_step(&data().0).unwrap()).collect();
        (steps, c.evaluate(&data().1).unwrap())
    };
    let (whole, whole_eval) = run(cpu_backend(), 1);
    let mut runs = vec![("cpu, 3 micro-batches", run(cpu_backend(), 3))];
    if let Some(gpu) = gpu_backend() {
        runs.push(("adapter, 4 micro-batches", run(gpu, 4)));
    }
    for (what, (steps, eval)) in runs {
        for (i, (a, b)) in steps.iter().zip(&whole).enumerate() {
            // f32 sums in another order: 1e-5 relative.
            assert!(
                (a.loss - b.loss).abs() <= 1e-5 * b.loss.abs(),
                "{what}, step {i}: loss {} vs {} for the whole batch",
                a.loss,
                b.loss
            );
            assert_eq!(a.correct, b.correct, "{what}, step {i}: correct");
        }
        assert!(
            (eval.loss - whole_eval.loss).abs() <= 1e-5 * whole_eval.loss,
            "{what}: evaluation loss {} vs {}",
            eval.loss,
            whole_eval.loss
        );
    }
}

#[test]
fn an_accumulation_that_does_not_split_the_batch_is_refused() {
    let (m, store) = model(Arch::Mlp, 0);
    let config = ClassifierConfig {
        batch: 30,
        accumulate: 4,
        eval_batch: 200,
        seed: 0,
        shuffle: true,
        stop_on_nan: true,
        detect_anomaly: false,
        memory_limit: None,
    };
    let err = Classifier::new(
        "acc",
        m,
        store,
        cpu_backend(),
        mlp_optimizer(),
        config,
        [1, 28, 28],
        data().0.n,
    )
    .err()
    .expect("a batch of 30 in 4 micro-batches is refused")
    .to_string();
    assert!(
        err.contains("batch of 30")
            && err.contains("4 micro-batches")
            && err.contains("multiple of 4"),
        "{err}"
    );
}

/// A tiny GPT-2 (vocabulary 101, context 16, seed 2) on a trainer of batch 2 with SGD at lr 0.5,
/// `adjust`ed before it compiles, and one batch of ids and targets for it.
fn tiny_gpt2(
    backend: Backend,
    adjust: impl FnOnce(&mut Gpt2),
) -> (Trainer<Gpt2>, Vec<f32>, Vec<f32>) {
    let mut config = Gpt2Config::preset("tiny").unwrap();
    config.vocab_size = 101;
    let mut store = VarStore::new();
    let mut gpt = Gpt2::new(&mut store, config, 16, &mut sinter_model::Init::new(2)).unwrap();
    adjust(&mut gpt);
    let opt = Optimizer::new(OptimizerKind::sgd(0.0, false, 0.0), 0.5);
    let trainer = Trainer::new(gpt, store, backend, opt, TrainConfig::new(2)).unwrap();
    let ids: Vec<f32> = (0..32).map(|i| ((i * 37 + 11) % 101) as f32).collect();
    let targets: Vec<f32> = (0..32).map(|i| ((i * 53 + 5) % 101) as f32).collect();
    (trainer, ids, targets)
}

/// Issue 14 item 6: GPT-2's head and loss in chunks of rows (so that no `[B·T, vocab]` logits
/// buffer goes over a binding limit) give the loss and the gradients of the whole head at once:
/// one SGD step of a tiny GPT-2 whose 32 positions are cut into chunks of 5 (the last of 2),
/// on the CPU backend and on an adapter, against the unchunked step on the CPU backend.
#[test]
fn gpt2_head_in_chunks_matches_the_whole_head() {
    let step = |backend: Backend, head_rows: Option<usize>| {
        let (mut t, ids, targets) = tiny_gpt2(backend, |gpt| gpt.head_rows = head_rows);
        let feeds = Feeds::new().with("ids", &ids).with("targets", &targets);
        let loss = t.step(&feeds).unwrap().loss;
        let params: Vec<f32> = t
            .params()
            .unwrap()
            .into_iter()
            .flat_map(|p| p.data)
            .collect();
        (loss, params)
    };
    let (whole_loss, whole) = step(cpu_backend(), None);
    let mut runs = vec![("cpu", step(cpu_backend(), Some(5)))];
    if let Some(gpu) = gpu_backend() {
        runs.push(("adapter", step(gpu, Some(5))));
    }
    for (what, (loss, params)) in runs {
        // f32 sums in other orders: 1e-6 relative on the loss; lr 0.5 × gradient differences
        // of ~1e-7 on the parameters.
        assert!(
            (loss - whole_loss).abs() <= 1e-6 * whole_loss,
            "{what}: chunked loss {loss} vs {whole_loss}"
        );
        let d = params
            .iter()
            .zip(&whole)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d <= 1e-6, "{what}: parameters after the step differ by {d}");
    }
}

/// GPT-2's dropout (embeddings, attention weights and both residual branches of every block):
/// the trainer draws the masks, and the attention kernels' row seeds, on the host from the run's
/// seed, so the CPU backend and an adapter train on the same masks and give the same losses;
/// evaluation drops nothing; training with dropout is not training without it; and the same
/// seed gives the same run.
#[test]
fn gpt2_dropout_uses_the_same_masks_on_every_backend() {
    let run = |backend: Backend, dropout: f32| {
        let (mut t, ids, targets) = tiny_gpt2(backend, |gpt| gpt.dropout = dropout);
        let feeds = Feeds::new().with("ids", &ids).with("targets", &targets);
        let eval = t.evaluate_batch(2, &feeds).unwrap().loss;
        let losses: Vec<f32> = (0..3).map(|_| t.step(&feeds).unwrap().loss).collect();
        (eval, losses)
    };
    let (eval_plain, plain) = run(cpu_backend(), 0.0);
    let (eval_cpu, cpu) = run(cpu_backend(), 0.3);
    assert_eq!(eval_cpu, eval_plain, "evaluation must not drop");
    assert!(
        (cpu[0] - plain[0]).abs() > 1e-3,
        "dropout 0.3 left the first training loss at {} (without: {})",
        cpu[0],
        plain[0]
    );
    assert_eq!(
        run(cpu_backend(), 0.3).1,
        cpu,
        "the same seed gives the same run"
    );
    if let Some(gpu) = gpu_backend() {
        let (eval_gpu, adapter) = run(gpu, 0.3);
        // The same masks; f32 sums in other orders, grown over three SGD steps of lr 0.5.
        assert!((eval_gpu - eval_cpu).abs() <= 1e-6 * eval_cpu);
        for (k, (a, c)) in adapter.iter().zip(&cpu).enumerate() {
            assert!(
                (a - c).abs() <= 1e-5 * c,
                "step {k}: adapter loss {a} vs CPU {c} (all: {adapter:?} vs {cpu:?})"
            );
        }
    }
}

/// An MLP with dropout, Adam on a cosine schedule and shifted images: every per-step draw
/// (masks, scalars, shifts) that steps in flight must take from their own step.
fn per_step_draws_classifier(backend: Backend) -> Classifier {
    use sinter::sinter_model::nn::{Dropout, Layer};
    let (mut m, store) = model(Arch::Mlp, 4);
    m.layers
        .insert(3, ("drop1".into(), Layer::Dropout(Dropout { p: 0.2 })));
    let config = ClassifierConfig {
        batch: 32,
        accumulate: 1,
        eval_batch: 200,
        seed: 4,
        shuffle: true,
        stop_on_nan: true,
        detect_anomaly: false,
        memory_limit: None,
    };
    let mut c = Classifier::new(
        "in flight",
        m,
        store,
        backend,
        mlp_optimizer(),
        config,
        [1, 28, 28],
        data().0.n,
    )
    .expect("classifier builds");
    c.shift = 2;
    c
}

#[test]
fn steps_in_flight_give_the_results_of_one_step_at_a_time_bit_for_bit() {
    let Some(one_backend) = gpu_backend() else {
        return;
    };
    let steps = 12;
    let mut one = per_step_draws_classifier(one_backend);
    let one_stats: Vec<StepStats> = (0..steps)
        .map(|_| one.train_step(&data().0).unwrap())
        .collect();

    let mut ahead = per_step_draws_classifier(gpu_backend().unwrap());
    let mut ahead_stats = Vec::new();
    ahead.submit_step(&data().0).unwrap();
    for i in 0..steps {
        if i + 1 < steps {
            ahead.submit_step(&data().0).unwrap();
            assert_eq!(ahead.trainer.in_flight(), 2);
            // The device's parameters are a step ahead of the counter: reading them is refused.
            let err = ahead.evaluate(&data().1).unwrap_err().to_string();
            assert!(
                err.contains("in flight") && err.contains("complete"),
                "{err}"
            );
            let err = ahead.checkpoint().unwrap_err().to_string();
            assert!(err.contains("in flight"), "{err}");
        }
        ahead_stats.push(ahead.complete_step().unwrap());
        assert_eq!(ahead.trainer.step, i as u64 + 1);
    }
    assert_eq!(ahead.trainer.in_flight(), 0);
    for (i, (a, b)) in ahead_stats.iter().zip(&one_stats).enumerate() {
        assert_eq!(
            a.loss.to_bits(),
            b.loss.to_bits(),
            "step {i}: loss {} vs {}",
            a.loss,
            b.loss
        );
        assert_eq!(a.correct, b.correct, "step {i}: correct");
    }
    let (pa, pb) = (
        ahead.trainer.params().unwrap(),
        one.trainer.params().unwrap(),
    );
    assert_eq!(pa.len(), pb.len());
    for (a, b) in pa.iter().zip(&pb) {
        assert_eq!(a.name, b.name);
        let differ = a
            .data
            .iter()
            .zip(&b.data)
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count();
        assert_eq!(differ, 0, "{}: {differ} values differ", a.name);
    }
    // Once settled, evaluation runs.
    ahead.evaluate(&data().1).unwrap();
}

#[test]
fn a_nan_loss_behind_a_step_in_flight_is_reported_with_its_own_step() {
    let Some(backend) = gpu_backend() else {
        return;
    };
    let (train, _) = data();
    let mut poisoned = train.clone();
    // Without shuffling, step 1 draws examples 16..32: one of its pixels is NaN.
    poisoned.images[20 * 784 + 300] = f32::NAN;
    let (m, store) = model(Arch::Mlp, 1);
    let config = ClassifierConfig {
        accumulate: 1,
        batch: 16,
        eval_batch: 200,
        seed: 1,
        shuffle: false,
        stop_on_nan: true,
        detect_anomaly: false,
        memory_limit: None,
    };
    let opt = Optimizer::new(OptimizerKind::sgd(0.0, false, 0.0), 0.01);
    let mut c =
        Classifier::new("nan", m, store, backend, opt, config, [1, 28, 28], train.n).unwrap();
    c.submit_step(&poisoned).unwrap();
    c.submit_step(&poisoned).unwrap();
    assert!(c.complete_step().unwrap().loss.is_finite());
    c.submit_step(&poisoned).unwrap();
    let err = c.complete_step().unwrap_err().to_string();
    assert!(
        err.contains("step 1") && err.contains("not finite"),
        "{err}"
    );
    // The step submitted behind it is dropped: nothing is left in flight.
    assert_eq!(c.trainer.in_flight(), 0);
    assert_eq!(c.trainer.step, 1);
}
