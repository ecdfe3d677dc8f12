//! The image-classifier preset on the generic [`Trainer`]: a [`Sequential`] network over
//! `images` `[N, C, H, W]` with cross-entropy against `labels` `[N]`, fed from an
//! [`ImageDataset`] through a seeded [`Batcher`]; reports the loss and the correct count.

use crate::backend::{Backend, MemoryLimit};
use crate::checkpoint::TrainingCheckpoint;
use crate::data::{random_shifts, shift_images, Batcher, BatcherState, ImageDataset, Order};
use crate::error::{ModelError, Result};
use crate::graph::{Graph, GraphBuilder, NodeId};
use crate::nn::{Mode, Sequential};
use crate::optim::Optimizer;
use crate::parallel::Collective;
use crate::profile::{StepProfile, TimingMethod};
use crate::trainer::{Combine, Evaluator, Feeds, Model, Outputs, StepResult, TrainConfig, Trainer};
use crate::vars::{VarKind, VarStore};
use std::collections::BTreeMap;
use std::path::Path;

/// The checkpoint metadata key of [`Classifier::shift`].
const META_SHIFT: &str = "shift";

/// Settings of a classifier run that shape its programs.
#[derive(Clone, Debug)]
pub struct ClassifierConfig {
    /// Examples per training step (the global batch when data-parallel).
    pub batch: usize,
    /// Micro-batches per step (gradient accumulation, see [`TrainConfig::accumulate`]); 1: none.
    pub accumulate: usize,
    /// Examples per evaluation batch (the last batch of a split may be smaller).
    pub eval_batch: usize,
    /// Seeds the parameters, the shuffled order and dropout.
    pub seed: u64,
    /// Draw training examples in a seeded random order each epoch (else in file order).
    pub shuffle: bool,
    /// Stop with an error when the loss is NaN or infinite.
    pub stop_on_nan: bool,
    /// Check every value of every training step and stop at the first non-finite one, naming
    /// its node (see [`Backend::run_checked`]); costs nothing when off.
    pub detect_anomaly: bool,
    /// The memory the backend has (see [`TrainConfig::memory_limit`]); `None`: not checked.
    pub memory_limit: Option<MemoryLimit>,
}

/// Loss and correct predictions of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Mean cross-entropy over the batch, in nats.
    pub loss: f32,
    /// Examples of the batch whose arg-max logit is the label.
    pub correct: usize,
}

/// Mean loss and accuracy over a dataset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalStats {
    /// Mean cross-entropy per example, in nats.
    pub loss: f64,
    /// Fraction of examples classified correctly, in `[0, 1]`.
    pub accuracy: f64,
    /// Examples evaluated.
    pub examples: usize,
}

/// The classifier as a [`Model`]: inputs `images` and `labels`, loss the mean cross-entropy,
/// metric `correct` (a count).
#[derive(Clone, Debug)]
pub struct ImageClassifier {
    /// The network from images to logits.
    pub net: Sequential,
    /// `[channels, height, width]` of one image.
    pub image: [usize; 3],
}

impl Model for ImageClassifier {
    fn forward(
        &self,
        vars: &VarStore,
        g: &GraphBuilder,
        batch: usize,
        mode: Mode,
    ) -> Result<Outputs> {
        let [c, h, w] = self.image;
        let x = g.input("images", &[batch, c, h, w]);
        let t = g.input("labels", &[batch]);
        let logits = self.net.forward(vars, &x, mode)?;
        let (loss, correct) = g.scoped("loss", || -> Result<_> {
            Ok((logits.cross_entropy(&t)?, logits.count_correct(&t)?))
        })?;
        Ok(Outputs::loss(loss).with_metric("correct", correct, Combine::Sum))
    }
}

/// A network, its variables on a backend, and its compiled programs, with the data order.
/// Dereferences to its [`Trainer`] (step, backend, optimizer, store, checkpoints…).
pub struct Classifier {
    /// The model's name in reports and checkpoints (`cnn`, `mlp`).
    pub name: String,
    /// The generic trainer that runs the programs.
    pub trainer: Trainer<ImageClassifier>,
    /// The run's settings.
    pub config: ClassifierConfig,
    /// The order of the training examples.
    pub batcher: Batcher,
    /// Augmentation: each training image is translated by up to this many pixels each way
    /// (zero fill), a fresh draw at every step from the seed and the step number
    /// ([`random_shifts`]); 0, the default, leaves the images as they are.
    pub shift: usize,
    /// Examples in the training split (the batcher's range).
    train_examples: usize,
    images: Vec<f32>,
    labels: Vec<f32>,
}

impl std::ops::Deref for Classifier {
    type Target = Trainer<ImageClassifier>;
    fn deref(&self) -> &Self::Target {
        &self.trainer
    }
}

impl std::ops::DerefMut for Classifier {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.trainer
    }
}

/// The graph of one fused training step of `model` on a batch of images — forward, cross-entropy,
/// backward and the optimizer's updates, as [`Classifier`] compiles it — with its loss and
/// correct-count nodes. The optimizer's state must already be in `store`.
pub fn training_step_graph(
    model: &Sequential,
    store: &VarStore,
    optimizer: &Optimizer,
    batch: usize,
    image: [usize; 3],
) -> Result<(Graph, NodeId, NodeId)> {
    let g = GraphBuilder::new();
    let m = ImageClassifier {
        net: model.clone(),
        image,
    };
    let out = m.forward(store, &g, batch, Mode::Train)?;
    let grads = crate::backward::backward(&out.loss, &[])?;
    let params: Vec<_> = store
        .ids(VarKind::Param)
        .into_iter()
        .map(|id| {
            let leaf = g.var_leaf(id).unwrap_or(usize::MAX);
            (id, leaf, store.get(id).name.clone())
        })
        .collect();
    let nodes = crate::backward::param_gradients(&grads, &params)?;
    let pairs: Vec<_> = params.iter().map(|p| p.0).zip(nodes).collect();
    optimizer.append_updates(&g, store, &pairs)?;
    Ok((g.finish(), out.loss.id, out.metrics[0].value.id))
}

fn stats(r: &StepResult) -> StepStats {
    StepStats {
        loss: r.loss,
        correct: r.metric("correct").unwrap_or(0.0) as usize,
    }
}

impl Classifier {
    /// Builds and compiles the training step and the evaluation program. `train_examples` is the
    /// size of the training split (for the batcher).
    #[allow(clippy::too_many_arguments)] // each is a distinct part of a run; a struct would only rename them
    pub fn new(
        name: &str,
        model: Sequential,
        store: VarStore,
        backend: Backend,
        optimizer: Optimizer,
        config: ClassifierConfig,
        image: [usize; 3],
        train_examples: usize,
    ) -> Result<Self> {
        let net = ImageClassifier { net: model, image };
        let trainer = Trainer::new(net, store, backend, optimizer, train_config(&config))?;
        Self::around(name, trainer, config, train_examples)
    }

    /// A classifier that trains data-parallel with the other ranks of `collective`: `config.batch`
    /// is the global batch, which must divide evenly over the ranks; each rank computes the
    /// gradients of its contiguous shard. The ranks check that they were started with the same
    /// model, optimizer and data settings, then take rank 0's parameters.
    #[allow(clippy::too_many_arguments)] // as `new`, plus the ranks
    pub fn data_parallel(
        name: &str,
        model: Sequential,
        store: VarStore,
        backend: Backend,
        optimizer: Optimizer,
        config: ClassifierConfig,
        image: [usize; 3],
        train_examples: usize,
        collective: Box<dyn Collective>,
    ) -> Result<Self> {
        let settings = [
            ("model", name.to_string()),
            ("shuffle", config.shuffle.to_string()),
            ("image shape", format!("{image:?}")),
            ("number of training examples", train_examples.to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v));
        let net = ImageClassifier { net: model, image };
        let trainer = Trainer::data_parallel(
            net,
            store,
            backend,
            optimizer,
            train_config(&config),
            collective,
            &settings,
        )?;
        Self::around(name, trainer, config, train_examples)
    }

    fn around(
        name: &str,
        mut trainer: Trainer<ImageClassifier>,
        config: ClassifierConfig,
        train_examples: usize,
    ) -> Result<Self> {
        let order = if config.shuffle {
            Order::Shuffled { seed: config.seed }
        } else {
            Order::Sequential
        };
        let batcher = Batcher::new(train_examples, config.batch, order, true)?;
        // Compile the evaluation program now, so that its memory is known before step 1.
        let eval_batch = config.eval_batch.max(1);
        let image = trainer.model.image;
        let zeros = vec![0.0; eval_batch * image.iter().product::<usize>()];
        let labels = vec![0.0; eval_batch];
        trainer.evaluate_batch(
            eval_batch,
            &Feeds::new().with("images", &zeros).with("labels", &labels),
        )?;
        Ok(Self {
            name: name.to_string(),
            trainer,
            config,
            batcher,
            shift: 0,
            train_examples,
            images: Vec::new(),
            labels: Vec::new(),
        })
    }

    /// One training step on the next batch of `data`, the training split the classifier was
    /// built for: [`ModelError::Config`] if it has fewer examples than that.
    pub fn train_step(&mut self, data: &ImageDataset) -> Result<StepStats> {
        Ok(self.step_on(data, None)?.0)
    }

    /// [`Classifier::train_step`] without waiting for it (see [`Trainer::submit`]): the batch is
    /// drawn and the step queued; [`Classifier::complete_step`] returns its statistics. The host
    /// can draw and submit the next batch while a GPU runs this one.
    pub fn submit_step(&mut self, data: &ImageDataset) -> Result<()> {
        self.gather_next(data)?;
        let feeds = Feeds::new()
            .with("images", &self.images)
            .with("labels", &self.labels);
        self.trainer.submit(&feeds)
    }

    /// The statistics of the oldest step from [`Classifier::submit_step`], once it has run.
    pub fn complete_step(&mut self) -> Result<StepStats> {
        Ok(stats(&self.trainer.complete()?))
    }

    /// [`Classifier::train_step`] with every kernel timed and tagged (see
    /// [`Backend::run_profiled`]); `timing` picks how a GPU times its dispatches.
    pub fn train_step_profiled(
        &mut self,
        data: &ImageDataset,
        timing: Option<TimingMethod>,
    ) -> Result<(StepStats, StepProfile)> {
        let (stats, profile) = self.step_on(data, Some(timing))?;
        Ok((stats, profile.expect("a profiled step returns its profile")))
    }

    fn step_on(
        &mut self,
        data: &ImageDataset,
        profile: Option<Option<TimingMethod>>,
    ) -> Result<(StepStats, Option<StepProfile>)> {
        self.gather_next(data)?;
        let feeds = Feeds::new()
            .with("images", &self.images)
            .with("labels", &self.labels);
        let (r, p) = match profile {
            None => (self.trainer.step(&feeds)?, None),
            Some(timing) => {
                let (r, p) = self.trainer.step_profiled(&feeds, timing)?;
                (r, Some(p))
            }
        };
        Ok((stats(&r), p))
    }

    /// Draws the next batch of `data` into the feed buffers (this rank's shard of it, shifted
    /// when the run augments).
    fn gather_next(&mut self, data: &ImageDataset) -> Result<()> {
        let drawn_from = self.batcher.state().n;
        if data.n < drawn_from {
            return Err(ModelError::Config(format!(
                "train_step got a dataset of {} examples, but this classifier draws batches from \
                 the {drawn_from} of the training split it was built for: pass that split",
                data.n
            )));
        }
        let (rank, _) = self.trainer.rank_and_size();
        let local = self.trainer.local_batch();
        // Each rank takes its contiguous shard of the global batch.
        let batch = self.batcher.next_batch();
        let mine = rank * local..(rank + 1) * local;
        data.gather(&batch[mine.clone()], &mut self.images, &mut self.labels);
        if self.shift > 0 {
            // Drawn for the whole global batch, so every rank's rows match one process's.
            let step = self.trainer.next_step();
            let shifts = random_shifts(self.config.seed, step, batch.len(), self.shift);
            shift_images(&mut self.images, self.trainer.model.image, &shifts[mine]);
        }
        Ok(())
    }

    /// Mean loss and accuracy over all of `data`, in batches of the evaluation size.
    pub fn evaluate(&mut self, data: &ImageDataset) -> Result<EvalStats> {
        let trainer = &mut self.trainer;
        let buffers = (&mut self.images, &mut self.labels);
        let results = in_batches(data, self.config.eval_batch, buffers, |batch, feeds| {
            trainer.evaluate_batch(batch, feeds)
        })?;
        Ok(eval_stats(&self.trainer.combine(&results), data))
    }

    /// Everything needed to continue this run exactly: parameters, optimizer state, step, batcher
    /// and dropout generator positions.
    pub fn checkpoint(&self) -> Result<TrainingCheckpoint> {
        let mut meta = BTreeMap::new();
        meta.insert("model".into(), self.name.clone());
        meta.insert("batcher".into(), self.batcher.state().to_string());
        meta.insert(META_SHIFT.into(), self.shift.to_string());
        self.trainer.checkpoint(meta)
    }

    /// Continues from a checkpoint of the same model and optimizer.
    pub fn restore(&mut self, ckpt: &TrainingCheckpoint, file: &Path) -> Result<()> {
        let saved_model = ckpt.meta.get("model").map(String::as_str).unwrap_or("?");
        if saved_model != self.name {
            return Err(ModelError::checkpoint(
                file,
                format!(
                    "was saved with model {saved_model} but this run uses {}",
                    self.name
                ),
            ));
        }
        // Checkpoints from before augmentation existed trained without it.
        let saved_shift = ckpt.meta.get(META_SHIFT).map(String::as_str).unwrap_or("0");
        if saved_shift != self.shift.to_string() {
            return Err(ModelError::checkpoint(
                file,
                format!(
                    "was saved with images shifted by up to {saved_shift} pixels but this run shifts by {}",
                    self.shift
                ),
            ));
        }
        self.trainer.restore(ckpt, file)?;
        let state: BatcherState = ckpt
            .meta
            .get("batcher")
            .ok_or_else(|| ModelError::checkpoint(file, "has no batcher state"))?
            .parse()?;
        self.batcher.restore(&state)?;
        Ok(())
    }

    /// Examples in the training split.
    pub fn train_examples(&self) -> usize {
        self.train_examples
    }
}

/// Runs `run` on every batch of `data` in file order, `eval_batch` examples at a time (the last
/// batch holds the rest), with the images and labels gathered into `buffers`.
fn in_batches(
    data: &ImageDataset,
    eval_batch: usize,
    buffers: (&mut Vec<f32>, &mut Vec<f32>),
    mut run: impl FnMut(usize, &Feeds) -> Result<StepResult>,
) -> Result<Vec<StepResult>> {
    let (images, labels) = buffers;
    let mut results = Vec::new();
    let mut start = 0;
    while start < data.n {
        let batch = eval_batch.max(1).min(data.n - start);
        let idx: Vec<usize> = (start..start + batch).collect();
        data.gather(&idx, images, labels);
        let feeds = Feeds::new().with("images", images).with("labels", labels);
        results.push(run(batch, &feeds)?);
        start += batch;
    }
    Ok(results)
}

fn eval_stats(all: &StepResult, data: &ImageDataset) -> EvalStats {
    EvalStats {
        loss: all.loss as f64,
        accuracy: all.metric("correct").unwrap_or(0.0) as f64 / data.n.max(1) as f64,
        examples: data.n,
    }
}

/// A saved image classifier compiled for evaluation and prediction only, with no training
/// program, gradients or optimizer state: what `sinter eval` and `sinter predict` run.
impl Evaluator<ImageClassifier> {
    /// Mean loss and accuracy over all of `data`, in batches of `eval_batch` images.
    pub fn evaluate_images(&mut self, data: &ImageDataset, eval_batch: usize) -> Result<EvalStats> {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        let results = in_batches(data, eval_batch, (&mut images, &mut labels), |b, feeds| {
            self.evaluate_batch(b, feeds)
        })?;
        Ok(eval_stats(&self.combine(&results), data))
    }

    /// The class probabilities (softmax of the logits) of `n` images laid out
    /// `[n, channels, height, width]`, one row of probabilities per image.
    pub fn probabilities(&mut self, images: &[f32], n: usize) -> Result<Vec<Vec<f32>>> {
        let [c, h, w] = self.model.image;
        if n == 0 || images.len() != n * c * h * w {
            return Err(ModelError::Config(format!(
                "{} values for {n} images of {c}×{h}×{w}",
                images.len()
            )));
        }
        let out = self.run_forward(
            |m, vars, g| {
                let x = g.input("images", &[n, c, h, w]);
                Ok(vec![m.net.forward(vars, &x, Mode::Eval)?.softmax()?])
            },
            &Feeds::new().with("images", images),
        )?;
        let probs = &out[0];
        let classes = probs.len() / n;
        Ok(probs.chunks(classes).map(<[f32]>::to_vec).collect())
    }
}

fn train_config(c: &ClassifierConfig) -> TrainConfig {
    TrainConfig {
        batch: c.batch,
        accumulate: c.accumulate,
        seed: c.seed,
        stop_on_nan: c.stop_on_nan,
        detect_anomaly: c.detect_anomaly,
        memory_limit: c.memory_limit.clone(),
    }
}
