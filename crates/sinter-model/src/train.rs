//! Training an image classifier: builds the step graph (forward, cross-entropy, backward,
//! optimizer), compiles it once, then runs one program per step; also evaluation and checkpoints.
//! Data-parallel runs split the step in two programs with an all-reduce of the gradients between.

use crate::backend::{Backend, Program};
use crate::backward::{backward, param_gradients};
use crate::checkpoint::{check_against, NamedTensor, TrainingCheckpoint};
use crate::data::{Batcher, BatcherState, ImageDataset, Order};
use crate::error::{ModelError, Result};
use crate::graph::{Graph, GraphBuilder, NodeId};
use crate::nn::{Mode, Sequential};
use crate::optim::Optimizer;
use crate::parallel::{check_same_settings, Collective, GradientLayout, BUCKET_VALUES};
use crate::plan::MemoryReport;
use crate::profile::{StepProfile, TimingMethod};
use crate::vars::{VarId, VarKind, VarStore};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::Path;

/// Settings of a classifier run that shape its programs.
#[derive(Clone, Debug)]
pub struct ClassifierConfig {
    pub batch: usize,
    pub eval_batch: usize,
    pub seed: u64,
    pub shuffle: bool,
    /// Stop with an error when the loss is NaN or infinite.
    pub stop_on_nan: bool,
    /// Check every value of every training step and stop at the first non-finite one, naming
    /// its node (see [`Backend::run_checked`]); costs nothing when off.
    pub detect_anomaly: bool,
}

/// Loss and correct predictions of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    pub loss: f32,
    pub correct: usize,
}

/// Mean loss and accuracy over a dataset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalStats {
    pub loss: f64,
    pub accuracy: f64,
    pub examples: usize,
}

/// How a training step runs.
// One per classifier, never moved in a loop: the size of the fused variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum TrainStep {
    /// One process: forward, backward and the optimizer's updates in one program.
    Fused(Program),
    /// Data parallel: see [`DataParallel`].
    Split(DataParallel),
}

/// A data-parallel step: this rank's shard of the global batch runs the gradient program (forward
/// and backward; outputs loss, correct count and every parameter's gradient), the gradients are
/// summed over all ranks in a few flat buckets and divided by the number of ranks, and the update
/// program (gradients as inputs → clipping and the optimizer's updates) applies them. Every rank
/// applies the same averaged gradient to the same parameters, so the parameters stay identical.
struct DataParallel {
    collective: Box<dyn Collective>,
    gradients: Program,
    update: Program,
    layout: GradientLayout,
    /// Gradients of all parameters, then loss and correct count, as they travel.
    flat: Vec<f32>,
}

/// A model, its variables on a backend, and the compiled training and evaluation programs.
pub struct Classifier {
    pub name: String,
    pub model: Sequential,
    pub store: VarStore,
    pub backend: Backend,
    pub optimizer: Optimizer,
    pub config: ClassifierConfig,
    /// Steps taken so far.
    pub step: u64,
    pub batcher: Batcher,
    train: TrainStep,
    eval: Vec<(usize, Program)>,
    image: [usize; 3],
    dropout: Vec<f32>,
    dropout_rng: ChaCha8Rng,
    images: Vec<f32>,
    labels: Vec<f32>,
    masks: Vec<Vec<f32>>,
}

impl DataParallel {
    /// Sums the gradient program's outputs (`[loss, correct, gradients…]`) over the ranks bucket
    /// by bucket, averages the gradients and the loss, and runs the update program on them.
    /// Returns the global loss and correct count.
    fn reduce_and_update(
        &mut self,
        backend: &mut Backend,
        out: &[Vec<f32>],
        scalars: &crate::backend::StepScalars,
    ) -> Result<(f32, f32)> {
        let layout = &self.layout;
        for (range, grad) in layout.params.iter().zip(&out[2..]) {
            self.flat[range.clone()].copy_from_slice(grad);
        }
        let at = layout.loss_at();
        self.flat[at] = out[0][0];
        self.flat[at + 1] = out[1][0];
        for bucket in &layout.buckets {
            self.collective
                .all_reduce_sum(&mut self.flat[bucket.clone()])?;
        }
        let ranks = self.collective.size();
        if ranks > 1 {
            // Each rank's loss and gradients are means over its shard; the mean over the global
            // batch is the mean of those (the correct count stays a sum).
            let inv = 1.0 / ranks as f32;
            for v in &mut self.flat[..=at] {
                *v *= inv;
            }
        }
        let feeds: Vec<&[f32]> = layout
            .params
            .iter()
            .map(|r| &self.flat[r.clone()])
            .collect();
        backend.run(&mut self.update, &feeds, scalars)?;
        Ok((self.flat[at], self.flat[at + 1]))
    }
}

/// A training batch's graph up to the gradients: the builder, the loss and correct-count nodes,
/// and each parameter with its gradient node, in store order.
type GradientGraph = (GraphBuilder, NodeId, NodeId, Vec<(VarId, NodeId)>);

/// Records forward, loss, metrics and backward for a training batch.
fn gradient_graph(
    model: &Sequential,
    store: &VarStore,
    batch: usize,
    image: [usize; 3],
) -> Result<GradientGraph> {
    let (g, loss, correct) = forward_graph(model, store, batch, image, Mode::Train)?;
    let grads = backward(&g.tensor(loss), &[])?;
    let params: Vec<_> = store
        .ids(VarKind::Param)
        .into_iter()
        // A parameter the model never uses has no leaf: param_gradients reports it.
        .map(|id| {
            (
                id,
                g.var_leaf(id).unwrap_or(usize::MAX),
                store.get(id).name.clone(),
            )
        })
        .collect();
    let grad_nodes = param_gradients(&grads, &params)?;
    let pairs = params.iter().map(|p| p.0).zip(grad_nodes).collect();
    Ok((g, loss, correct, pairs))
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
    let (g, loss, correct, pairs) = gradient_graph(model, store, batch, image)?;
    optimizer.append_updates(&g, store, &pairs)?;
    Ok((g.finish(), loss, correct))
}

/// Records forward, loss and metrics for a batch; returns (graph builder, loss, correct).
fn forward_graph(
    model: &Sequential,
    store: &VarStore,
    batch: usize,
    image: [usize; 3],
    mode: Mode,
) -> Result<(GraphBuilder, NodeId, NodeId)> {
    let g = GraphBuilder::new();
    let x = g.input("images", &[batch, image[0], image[1], image[2]]);
    let t = g.input("labels", &[batch]);
    let logits = model.forward(store, &x, mode)?;
    let (loss, correct) = g.scoped("loss", || -> Result<_> {
        Ok((logits.cross_entropy(&t)?, logits.count_correct(&t)?))
    })?;
    Ok((g, loss.id, correct.id))
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
        Self::build(
            name,
            model,
            store,
            backend,
            optimizer,
            config,
            image,
            train_examples,
            None,
        )
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
        let ranks = collective.size();
        if ranks == 0 || config.batch % ranks != 0 {
            return Err(ModelError::Config(format!(
                "the global batch of {} does not split evenly over {ranks} ranks: use a batch that is a multiple of {ranks}",
                config.batch
            )));
        }
        let mut c = Self::build(
            name,
            model,
            store,
            backend,
            optimizer,
            config,
            image,
            train_examples,
            Some(collective),
        )?;
        let params: Vec<String> = c
            .expected(VarKind::Param)
            .iter()
            .map(|(n, s)| format!("{n}{s:?}"))
            .collect();
        let settings = [
            ("model", c.name.clone()),
            ("optimizer", format!("{:?}", c.optimizer)),
            ("global batch", c.config.batch.to_string()),
            ("seed", c.config.seed.to_string()),
            ("shuffle", c.config.shuffle.to_string()),
            ("image shape", format!("{:?}", c.image)),
            ("number of training examples", train_examples.to_string()),
            ("parameters", params.join(", ")),
        ];
        c.agree_on(&settings.map(|(k, v)| (k.to_string(), v)))?;
        c.broadcast_state()?;
        Ok(c)
    }

    #[allow(clippy::too_many_arguments)] // `new`'s arguments and the ranks, if any
    fn build(
        name: &str,
        model: Sequential,
        mut store: VarStore,
        mut backend: Backend,
        optimizer: Optimizer,
        config: ClassifierConfig,
        image: [usize; 3],
        train_examples: usize,
        collective: Option<Box<dyn Collective>>,
    ) -> Result<Self> {
        optimizer.add_state(&mut store);
        backend.load_vars(&store)?;

        let ranks = collective.as_ref().map_or(1, |c| c.size());
        let local_batch = config.batch / ranks;
        let (g, loss, correct, pairs) = gradient_graph(&model, &store, local_batch, image)?;
        let compile = |backend: &Backend, graph: &Graph, outputs: &[NodeId]| {
            if config.detect_anomaly {
                backend.compile_checked(graph, outputs)
            } else {
                backend.compile(graph, outputs)
            }
        };
        let train = match collective {
            None => {
                optimizer.append_updates(&g, &store, &pairs)?;
                TrainStep::Fused(compile(&backend, &g.finish(), &[loss, correct])?)
            }
            Some(collective) => {
                let mut outputs = vec![loss, correct];
                outputs.extend(pairs.iter().map(|p| p.1));
                let gradients = compile(&backend, &g.finish(), &outputs)?;
                // The update program takes the averaged gradients as inputs, in parameter order.
                let u = GraphBuilder::new();
                let fed: Vec<_> = pairs
                    .iter()
                    .map(|&(id, _)| {
                        let var = store.get(id);
                        let grad = u.input(&format!("{} · gradient", var.name), &var.shape);
                        (id, grad.id)
                    })
                    .collect();
                optimizer.append_updates(&u, &store, &fed)?;
                let update = backend.compile(&u.finish(), &[])?;
                let sizes: Vec<usize> = pairs.iter().map(|p| store.get(p.0).numel()).collect();
                let layout = GradientLayout::new(&sizes, BUCKET_VALUES);
                TrainStep::Split(DataParallel {
                    collective,
                    gradients,
                    update,
                    flat: vec![0.0; layout.len],
                    layout,
                })
            }
        };

        let order = if config.shuffle {
            Order::Shuffled { seed: config.seed }
        } else {
            Order::Sequential
        };
        let batcher = Batcher::new(train_examples, config.batch, order, true)?;
        let dropout = model.dropout_rates();
        let masks = dropout.iter().map(|_| Vec::new()).collect();
        let mut c = Self {
            name: name.to_string(),
            model,
            store,
            backend,
            optimizer,
            step: 0,
            batcher,
            train,
            eval: Vec::new(),
            image,
            dropout,
            dropout_rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed_d509),
            images: Vec::new(),
            labels: Vec::new(),
            masks,
            config,
        };
        // Mask sizes follow from the compiled training plan's inputs (after images and labels).
        let plan = c.train_program().plan();
        let sizes: Vec<usize> = (0..c.masks.len())
            .map(|k| plan.nodes[plan.inputs[2 + k]].numel())
            .collect();
        for (mask, n) in c.masks.iter_mut().zip(sizes) {
            *mask = vec![0.0; n];
        }
        let eval_batch = c.config.eval_batch;
        c.eval_program(eval_batch)?;
        Ok(c)
    }

    /// What the planner predicted for the training step (data parallel: its gradient program).
    pub fn train_memory(&self) -> MemoryReport {
        self.train_program().memory()
    }

    /// The ranks this classifier trains with, if it trains data-parallel.
    pub fn collective(&self) -> Option<&dyn Collective> {
        match &self.train {
            TrainStep::Fused(_) => None,
            TrainStep::Split(dp) => Some(dp.collective.as_ref()),
        }
    }

    /// This process's rank and the number of ranks: `(0, 1)` for one process.
    pub fn rank_and_size(&self) -> (usize, usize) {
        self.collective().map_or((0, 1), |c| (c.rank(), c.size()))
    }

    /// Bytes of gradients (plus loss and correct count) each rank all-reduces per step; 0 for one
    /// process.
    pub fn gradient_bytes(&self) -> usize {
        match &self.train {
            TrainStep::Fused(_) => 0,
            TrainStep::Split(dp) => dp.layout.bytes(),
        }
    }

    /// Checks that every rank has the same value of each `(setting, value)`; an error names the
    /// first that differs. Nothing to check for one process.
    pub fn agree_on(&self, settings: &[(String, String)]) -> Result<()> {
        match self.collective() {
            None => Ok(()),
            Some(c) => check_same_settings(c, settings),
        }
    }

    /// Gives every rank rank 0's parameters and optimizer state (after initialisation, loading
    /// or resuming, so that the ranks start identical whatever each one read).
    pub fn broadcast_state(&mut self) -> Result<()> {
        let TrainStep::Split(dp) = &self.train else {
            return Ok(());
        };
        let mut ids = self.store.ids(VarKind::Param);
        ids.extend(self.store.ids(VarKind::OptimizerState));
        for id in ids {
            let mut values = self.backend.read_var(id)?;
            dp.collective.broadcast_from_root(&mut values)?;
            self.backend.write_var(id, &values);
        }
        Ok(())
    }

    /// The largest absolute difference between any rank's parameters and rank 0's (0 for one
    /// process): how far the ranks have drifted apart, which data parallelism keeps at 0.
    pub fn rank_divergence(&self) -> Result<f32> {
        let TrainStep::Split(dp) = &self.train else {
            return Ok(0.0);
        };
        let mut worst = 0.0f32;
        for id in self.store.ids(VarKind::Param) {
            let mine = self.backend.read_var(id)?;
            let mut root = mine.clone();
            dp.collective.broadcast_from_root(&mut root)?;
            for (a, b) in mine.iter().zip(&root) {
                let d = (a - b).abs();
                // NaN (one rank diverged to NaN) wins over any number.
                if d.is_nan() || d > worst {
                    worst = d;
                }
            }
        }
        let all = dp
            .collective
            .all_gather_u64(&[u64::from(worst.to_bits())])?;
        Ok(all
            .iter()
            .map(|&b| f32::from_bits(b as u32))
            .fold(0.0, |m, d| if d.is_nan() || d > m { d } else { m }))
    }

    /// What the planner predicted for each evaluation program compiled so far.
    pub fn eval_memory(&self) -> Vec<MemoryReport> {
        self.eval.iter().map(|(_, p)| p.memory()).collect()
    }

    /// Bytes of all persistent variables (parameters and optimizer state).
    pub fn variable_bytes(&self) -> u64 {
        self.store.vars.iter().map(|v| 4 * v.numel() as u64).sum()
    }

    fn eval_program(&mut self, batch: usize) -> Result<usize> {
        if let Some(k) = self.eval.iter().position(|(b, _)| *b == batch) {
            return Ok(k);
        }
        let (g, loss, correct) =
            forward_graph(&self.model, &self.store, batch, self.image, Mode::Eval)?;
        let prog = self.backend.compile(&g.finish(), &[loss, correct])?;
        self.eval.push((batch, prog));
        Ok(self.eval.len() - 1)
    }

    /// One training step on the next batch of `data`.
    pub fn train_step(&mut self, data: &ImageDataset) -> Result<StepStats> {
        Ok(self.step_on(data, None)?.0)
    }

    /// [`Classifier::train_step`] with every kernel timed and tagged (see
    /// [`Backend::run_profiled`]); `timing` picks how a GPU times its dispatches.
    pub fn train_step_profiled(
        &mut self,
        data: &ImageDataset,
        timing: Option<TimingMethod>,
    ) -> Result<(StepStats, StepProfile)> {
        let (stats, profile) = self.step_on(data, Some(timing))?;
        Ok((stats, profile.expect("profiled step")))
    }

    /// The compiled training step (data parallel: the gradient program, which does the work).
    pub fn train_program(&self) -> &Program {
        match &self.train {
            TrainStep::Fused(p) => p,
            TrainStep::Split(dp) => &dp.gradients,
        }
    }

    /// One step; profiled when `profile` is `Some(timing)`.
    fn step_on(
        &mut self,
        data: &ImageDataset,
        profile: Option<Option<TimingMethod>>,
    ) -> Result<(StepStats, Option<StepProfile>)> {
        let (rank, ranks) = self.rank_and_size();
        let local = self.config.batch / ranks;
        // Disjoint fields: the batch's indices are read while the feed buffers are refilled.
        // Each rank takes its contiguous shard of the global batch.
        let batch = self.batcher.next_batch();
        data.gather(
            &batch[rank * local..(rank + 1) * local],
            &mut self.images,
            &mut self.labels,
        );
        for (mask, &p) in self.masks.iter_mut().zip(&self.dropout) {
            // Inverted dropout: kept units are scaled by 1/(1−p) so evaluation needs no change.
            // The mask of the whole global batch is drawn on every rank (so the generator stays
            // where one process would have it) and each keeps its shard's rows.
            let keep = 1.0 / (1.0 - p);
            let mine = rank * mask.len()..(rank + 1) * mask.len();
            for j in 0..ranks * mask.len() {
                let dropped = self.dropout_rng.random::<f32>() < p;
                if mine.contains(&j) {
                    mask[j - mine.start] = if dropped { 0.0 } else { keep };
                }
            }
        }
        let mut feeds: Vec<&[f32]> = vec![&self.images, &self.labels];
        feeds.extend(self.masks.iter().map(|m| m.as_slice()));
        let scalars = self.optimizer.scalars(self.step);
        let program = match &mut self.train {
            TrainStep::Fused(p) => p,
            TrainStep::Split(dp) => &mut dp.gradients,
        };
        let (out, profile) = match profile {
            None if self.config.detect_anomaly => {
                let out = self
                    .backend
                    .run_detecting(program, &feeds, &scalars, self.step)?;
                (out, None)
            }
            None => (self.backend.run(program, &feeds, &scalars)?, None),
            Some(timing) => {
                let (out, p) = self
                    .backend
                    .run_profiled(program, &feeds, &scalars, timing)?;
                (out, Some(p))
            }
        };
        let (loss, correct) = match &mut self.train {
            TrainStep::Fused(_) => (out[0][0], out[1][0]),
            TrainStep::Split(dp) => dp.reduce_and_update(&mut self.backend, &out, &scalars)?,
        };
        // Without `stop_on_nan` the caller sees the loss in the step's stats and reports it once
        // (a warning per step of a diverged run would bury everything else).
        if !loss.is_finite() && self.config.stop_on_nan {
            return Err(ModelError::NonFinite {
                step: self.step,
                what: "the training loss".into(),
                value: loss,
            });
        }
        self.step += 1;
        let stats = StepStats {
            loss,
            correct: correct as usize,
        };
        Ok((stats, profile))
    }

    /// Mean loss and accuracy over all of `data`, in batches of the evaluation size.
    pub fn evaluate(&mut self, data: &ImageDataset) -> Result<EvalStats> {
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        let mut start = 0;
        while start < data.n {
            let batch = self.config.eval_batch.min(data.n - start);
            let k = self.eval_program(batch)?;
            let idx: Vec<usize> = (start..start + batch).collect();
            data.gather(&idx, &mut self.images, &mut self.labels);
            let out = self.backend.run(
                &mut self.eval[k].1,
                &[&self.images, &self.labels],
                &Default::default(),
            )?;
            loss_sum += out[0][0] as f64 * batch as f64;
            correct += out[1][0] as usize;
            start += batch;
        }
        Ok(EvalStats {
            loss: loss_sum / data.n.max(1) as f64,
            accuracy: correct as f64 / data.n.max(1) as f64,
            examples: data.n,
        })
    }

    fn tensors(&self, kind: VarKind) -> Result<Vec<NamedTensor>> {
        self.store
            .ids(kind)
            .into_iter()
            .map(|id| {
                let info = self.store.get(id);
                Ok(NamedTensor::new(
                    info.name.clone(),
                    info.shape.clone(),
                    self.backend.read_var(id)?,
                ))
            })
            .collect()
    }

    /// The parameters, named as in PyTorch's `state_dict`.
    pub fn params(&self) -> Result<Vec<NamedTensor>> {
        self.tensors(VarKind::Param)
    }

    fn expected(&self, kind: VarKind) -> Vec<(String, Vec<usize>)> {
        self.store
            .ids(kind)
            .into_iter()
            .map(|id| {
                (
                    self.store.get(id).name.clone(),
                    self.store.get(id).shape.clone(),
                )
            })
            .collect()
    }

    fn write_tensors(&mut self, tensors: &[NamedTensor], kind: VarKind, file: &Path) -> Result<()> {
        check_against(tensors, &self.expected(kind), file)?;
        for t in tensors {
            let id = self.store.find(&t.name).expect("checked against the store");
            self.backend.write_var(id, &t.data);
        }
        Ok(())
    }

    /// Replaces the parameters with `tensors` (from `file`), which must match names and shapes exactly.
    pub fn set_params(&mut self, tensors: &[NamedTensor], file: &Path) -> Result<()> {
        self.write_tensors(tensors, VarKind::Param, file)
    }

    /// Everything needed to continue this run exactly: parameters, optimizer state, step, batcher
    /// and dropout generator positions.
    pub fn checkpoint(&self) -> Result<TrainingCheckpoint> {
        let mut meta = BTreeMap::new();
        meta.insert("model".into(), self.name.clone());
        meta.insert("optimizer".into(), format!("{:?}", self.optimizer));
        meta.insert("batcher".into(), self.batcher.state().to_string());
        meta.insert(
            "dropout_rng_word_pos".into(),
            self.dropout_rng.get_word_pos().to_string(),
        );
        Ok(TrainingCheckpoint {
            params: self.tensors(VarKind::Param)?,
            optimizer_state: self.tensors(VarKind::OptimizerState)?,
            step: self.step,
            meta,
        })
    }

    /// Continues from a checkpoint of the same model and optimizer.
    pub fn restore(&mut self, ckpt: &TrainingCheckpoint, file: &Path) -> Result<()> {
        let mismatch = |what: &str, saved: &str, now: &str| {
            ModelError::checkpoint(
                file,
                format!("was saved with {what} {saved} but this run uses {now}"),
            )
        };
        let saved_model = ckpt.meta.get("model").map(String::as_str).unwrap_or("?");
        if saved_model != self.name {
            return Err(mismatch("model", saved_model, &self.name));
        }
        let now_opt = format!("{:?}", self.optimizer);
        let saved_opt = ckpt
            .meta
            .get("optimizer")
            .map(String::as_str)
            .unwrap_or("?");
        if saved_opt != now_opt {
            return Err(mismatch("optimizer", saved_opt, &now_opt));
        }
        self.write_tensors(&ckpt.params, VarKind::Param, file)?;
        self.write_tensors(&ckpt.optimizer_state, VarKind::OptimizerState, file)?;
        let state: BatcherState = ckpt
            .meta
            .get("batcher")
            .ok_or_else(|| ModelError::checkpoint(file, "has no batcher state"))?
            .parse()?;
        self.batcher.restore(&state)?;
        let word_pos: u128 = ckpt
            .meta
            .get("dropout_rng_word_pos")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ModelError::checkpoint(file, "has no dropout generator position"))?;
        self.dropout_rng.set_word_pos(word_pos);
        self.step = ckpt.step;
        Ok(())
    }
}
