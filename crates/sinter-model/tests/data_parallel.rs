//! The data-parallel training step without MPI: one rank's split step equals the fused step, and
//! ranks played by threads (a shared-memory `Collective`) stay identical and match one process.

use sinter_model::backend::CpuBackend;
use sinter_model::data::{embedded_mnist, ImageDataset};
use sinter_model::nn::{default_cnn, Dropout, Layer, Linear, Sequential};
use sinter_model::optim::{Optimizer, OptimizerKind};
use sinter_model::parallel::{Collective, SingleProcess};
use sinter_model::train::{Classifier, ClassifierConfig};
use sinter_model::{Backend, Result, VarStore};
use sinter_ops::elementwise::UnaryOp;
use std::sync::{Arc, Barrier, Mutex, OnceLock};

fn data() -> &'static (ImageDataset, ImageDataset) {
    static DATA: OnceLock<(ImageDataset, ImageDataset)> = OnceLock::new();
    DATA.get_or_init(|| embedded_mnist().expect("the embedded MNIST digits load"))
}

/// Ranks played by threads of one process: each all-reduce writes this rank's values into its
/// slot, waits for every rank, and sums the slots in rank order (so every rank gets the same bits).
struct ThreadRanks {
    rank: usize,
    size: usize,
    barrier: Arc<Barrier>,
    floats: Arc<Mutex<Vec<Vec<f32>>>>,
    words: Arc<Mutex<Vec<Vec<u64>>>>,
}

impl ThreadRanks {
    fn group(size: usize) -> Vec<ThreadRanks> {
        let barrier = Arc::new(Barrier::new(size));
        let floats = Arc::new(Mutex::new(vec![Vec::new(); size]));
        let words = Arc::new(Mutex::new(vec![Vec::new(); size]));
        (0..size)
            .map(|rank| ThreadRanks {
                rank,
                size,
                barrier: barrier.clone(),
                floats: floats.clone(),
                words: words.clone(),
            })
            .collect()
    }
}

impl Collective for ThreadRanks {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()> {
        self.floats.lock().unwrap()[self.rank] = values.to_vec();
        self.barrier.wait();
        {
            let slots = self.floats.lock().unwrap();
            for (k, v) in values.iter_mut().enumerate() {
                *v = slots.iter().map(|s| s[k]).fold(0.0, |a, b| a + b);
            }
        }
        self.barrier.wait();
        Ok(())
    }
    fn broadcast_from_root(&self, values: &mut [f32]) -> Result<()> {
        if self.rank == 0 {
            self.floats.lock().unwrap()[0] = values.to_vec();
        }
        self.barrier.wait();
        values.copy_from_slice(&self.floats.lock().unwrap()[0]);
        self.barrier.wait();
        Ok(())
    }
    fn all_gather_u64(&self, values: &[u64]) -> Result<Vec<u64>> {
        self.words.lock().unwrap()[self.rank] = values.to_vec();
        self.barrier.wait();
        let all = self.words.lock().unwrap().concat();
        self.barrier.wait();
        Ok(all)
    }
}

#[derive(Clone, Copy)]
enum Arch {
    Cnn,
    /// An MLP with dropout, so that the masks' sharding is exercised.
    DropoutMlp,
}

fn model(arch: Arch, seed: u64) -> (Sequential, VarStore) {
    let mut rng = sinter_model::Init::new(seed);
    let mut store = VarStore::new();
    let m = match arch {
        Arch::Cnn => default_cnn(&mut store, 1, [28, 28], 10, &mut rng),
        Arch::DropoutMlp => {
            let mut m = Sequential::new();
            m.push("flatten", Layer::Flatten)
                .push(
                    "fc1",
                    Layer::Linear(Linear::new(&mut store, "fc1", 784, 64, &mut rng)),
                )
                .push("relu1", Layer::Activation(UnaryOp::Relu))
                .push("drop1", Layer::Dropout(Dropout { p: 0.3 }))
                .push(
                    "fc2",
                    Layer::Linear(Linear::new(&mut store, "fc2", 64, 10, &mut rng)),
                );
            m
        }
    };
    (m, store)
}

fn config(batch: usize) -> ClassifierConfig {
    ClassifierConfig {
        accumulate: 1,
        batch,
        eval_batch: 200,
        seed: 11,
        shuffle: true,
        stop_on_nan: true,
        detect_anomaly: false,
        memory_limit: None,
    }
}

/// Adam with clipping: clipping sees the global gradient norm, so it tests that the update
/// program gets the averaged gradients.
fn optimizer(lr: f64) -> Optimizer {
    let mut opt = Optimizer::new(OptimizerKind::adam(0.0), lr);
    opt.clip_norm = Some(1.0);
    opt
}

fn cpu() -> Backend {
    Backend::Cpu(CpuBackend::new())
}

fn one_process(arch: Arch, batch: usize) -> Classifier {
    let (m, store) = model(arch, 4);
    Classifier::new(
        "test",
        m,
        store,
        cpu(),
        optimizer(2e-3),
        config(batch),
        [1, 28, 28],
        data().0.n,
    )
    .expect("classifier builds")
}

fn ranked(
    arch: Arch,
    batch: usize,
    accumulate: usize,
    lr: f64,
    ranks: Box<dyn Collective>,
) -> Result<Classifier> {
    // Every rank but 0 starts from other weights: the broadcast must replace them.
    let (m, store) = model(arch, 4 + ranks.rank() as u64);
    Classifier::data_parallel(
        "test",
        m,
        store,
        cpu(),
        optimizer(lr),
        ClassifierConfig {
            accumulate,
            ..config(batch)
        },
        [1, 28, 28],
        data().0.n,
        ranks,
    )
}

/// Trains `steps` steps; returns the losses and the flattened parameters.
fn train(c: &mut Classifier, steps: usize) -> (Vec<f32>, Vec<f32>) {
    let losses = (0..steps)
        .map(|_| c.train_step(&data().0).expect("step runs").loss)
        .collect();
    let params = c
        .params()
        .unwrap()
        .into_iter()
        .flat_map(|t| t.data)
        .collect();
    (losses, params)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn one_rank_split_step_matches_the_fused_step() {
    let mut fused = one_process(Arch::Cnn, 16);
    let mut split = ranked(Arch::Cnn, 16, 1, 2e-3, Box::new(SingleProcess)).unwrap();
    let (lf, pf) = train(&mut fused, 8);
    let (ls, ps) = train(&mut split, 8);
    // The same kernels on the same values in the same order: the split step feeds the update
    // the very gradient values the fused step computes, so nothing may differ at all.
    assert_eq!(lf, ls, "losses of the fused and the split step");
    assert_eq!(max_diff(&pf, &ps), 0.0, "parameters after 8 steps");
}

/// Runs `ranks` thread ranks for `steps` steps, each accumulating `accumulate` micro-batches;
/// returns each rank's (losses, parameters).
fn thread_ranks(
    arch: Arch,
    ranks: usize,
    batch: usize,
    accumulate: usize,
    steps: usize,
) -> Vec<(Vec<f32>, Vec<f32>)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = ThreadRanks::group(ranks)
            .into_iter()
            .map(|r| {
                s.spawn(move || {
                    let mut c =
                        ranked(arch, batch, accumulate, 2e-3, Box::new(r)).expect("rank builds");
                    let out = train(&mut c, steps);
                    assert_eq!(c.rank_divergence().unwrap(), 0.0, "divergence reported");
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn two_ranks_stay_identical_and_match_one_process() {
    for arch in [Arch::DropoutMlp, Arch::Cnn] {
        let steps = 12;
        let ranks = thread_ranks(arch, 2, 32, 1, steps);
        let (l1, p1) = train(&mut one_process(arch, 32), steps);
        // Every rank applies the same summed gradient to the same parameters: bit-identical.
        assert_eq!(
            ranks[0], ranks[1],
            "rank 0 and rank 1 losses and parameters"
        );
        // Against one process the only difference is the order of f32 sums (two half-batch
        // means averaged instead of one mean), a few ulps per gradient; 12 Adam steps of
        // lr 2e-3 move each weight by at most 0.024, so 1e-4 is tight yet far above rounding.
        let (l2, p2) = &ranks[0];
        for (step, (a, b)) in l1.iter().zip(l2).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs(),
                "step {step}: loss {a} in one process vs {b} on two ranks"
            );
        }
        let d = max_diff(&p1, p2);
        eprintln!("largest parameter difference, one process vs two ranks: {d:e}");
        assert!(d <= 1e-4, "parameters differ by {d} from one process");
    }
}

/// Two ranks that each accumulate 2 micro-batches of 8 take the step of one process on the
/// whole batch of 32 (dropout masks sharded the same way), to the tolerance of the test above.
#[test]
fn two_ranks_accumulating_micro_batches_match_one_process() {
    let steps = 12;
    let ranks = thread_ranks(Arch::DropoutMlp, 2, 32, 2, steps);
    let (l1, p1) = train(&mut one_process(Arch::DropoutMlp, 32), steps);
    assert_eq!(
        ranks[0], ranks[1],
        "rank 0 and rank 1 losses and parameters"
    );
    for (step, (a, b)) in l1.iter().zip(&ranks[0].0).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs(),
            "step {step}: loss {a} in one process vs {b} on two accumulating ranks"
        );
    }
    let d = max_diff(&p1, &ranks[0].1);
    assert!(d <= 1e-4, "parameters differ by {d} from one process");
}

#[test]
fn a_global_batch_that_does_not_split_over_the_ranks_is_refused() {
    let mut group = ThreadRanks::group(2);
    let rank0 = group.remove(0);
    // The check comes before any collective, so one rank alone sees it.
    let e = ranked(Arch::Cnn, 33, 1, 2e-3, Box::new(rank0))
        .err()
        .expect("batch 33 over 2 ranks is refused")
        .to_string();
    assert!(
        e.contains("global batch of 33") && e.contains("2 ranks"),
        "{e}"
    );
}

#[test]
fn ranks_started_with_different_hyperparameters_are_refused() {
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = ThreadRanks::group(2)
            .into_iter()
            .map(|r| {
                let lr = if r.rank == 0 { 2e-3 } else { 1e-3 };
                s.spawn(move || match ranked(Arch::Cnn, 16, 1, lr, Box::new(r)) {
                    Ok(_) => String::new(),
                    Err(e) => e.to_string(),
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, e) in errors.iter().enumerate() {
        assert!(
            e.contains("different optimizer") && e.contains("rank(s) 1 differ from rank 0"),
            "rank {rank}: {e}"
        );
        assert!(
            e.contains(&format!("this is rank {rank}")),
            "rank {rank}: {e}"
        );
    }
    assert!(errors[1].contains("lr: 0.001"), "{}", errors[1]);
}
