//! Training an image classifier: builds the step graph (forward, cross-entropy, backward,
//! optimizer), compiles it once, then runs one program per step; also evaluation and checkpoints.

use crate::backend::{Backend, Program};
use crate::backward::{backward, param_gradients};
use crate::checkpoint::{check_against, NamedTensor, TrainingCheckpoint};
use crate::data::{Batcher, BatcherState, ImageDataset, Order};
use crate::error::{ModelError, Result};
use crate::graph::{GraphBuilder, NodeId};
use crate::nn::{Mode, Sequential};
use crate::optim::Optimizer;
use crate::plan::MemoryReport;
use crate::profile::{StepProfile, TimingMethod};
use crate::vars::{VarKind, VarStore};
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
    train: Program,
    eval: Vec<(usize, Program)>,
    image: [usize; 3],
    dropout: Vec<f32>,
    dropout_rng: ChaCha8Rng,
    images: Vec<f32>,
    labels: Vec<f32>,
    masks: Vec<Vec<f32>>,
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
        mut store: VarStore,
        mut backend: Backend,
        optimizer: Optimizer,
        config: ClassifierConfig,
        image: [usize; 3],
        train_examples: usize,
    ) -> Result<Self> {
        optimizer.add_state(&mut store);
        backend.load_vars(&store)?;

        let (g, loss, correct) = forward_graph(&model, &store, config.batch, image, Mode::Train)?;
        let grads = backward(&g.tensor(loss), &[])?;
        let mut params = Vec::new();
        for id in store.ids(VarKind::Param) {
            // A parameter the model never uses has no leaf: param_gradients reports it.
            let leaf = g.var_leaf(id).unwrap_or(usize::MAX);
            params.push((id, leaf, store.get(id).name.clone()));
        }
        let grad_nodes = param_gradients(&grads, &params)?;
        let pairs: Vec<_> = params.iter().map(|p| p.0).zip(grad_nodes).collect();
        optimizer.append_updates(&g, &store, &pairs)?;
        let train = if config.detect_anomaly {
            backend.compile_checked(&g.finish(), &[loss, correct])?
        } else {
            backend.compile(&g.finish(), &[loss, correct])?
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
        let plan = c.train.plan();
        for (k, mask) in c.masks.iter_mut().enumerate() {
            *mask = vec![0.0; plan.nodes[plan.inputs[2 + k]].numel()];
        }
        let eval_batch = c.config.eval_batch;
        c.eval_program(eval_batch)?;
        Ok(c)
    }

    /// What the planner predicted for the training step.
    pub fn train_memory(&self) -> MemoryReport {
        self.train.memory()
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

    /// The compiled training step.
    pub fn train_program(&self) -> &Program {
        &self.train
    }

    /// One step; profiled when `profile` is `Some(timing)`.
    fn step_on(
        &mut self,
        data: &ImageDataset,
        profile: Option<Option<TimingMethod>>,
    ) -> Result<(StepStats, Option<StepProfile>)> {
        // Disjoint fields: the batch's indices are read while the feed buffers are refilled.
        data.gather(
            self.batcher.next_batch(),
            &mut self.images,
            &mut self.labels,
        );
        for (mask, &p) in self.masks.iter_mut().zip(&self.dropout) {
            // Inverted dropout: kept units are scaled by 1/(1−p) so evaluation needs no change.
            let keep = 1.0 / (1.0 - p);
            for m in mask.iter_mut() {
                *m = if self.dropout_rng.random::<f32>() < p {
                    0.0
                } else {
                    keep
                };
            }
        }
        let mut feeds: Vec<&[f32]> = vec![&self.images, &self.labels];
        feeds.extend(self.masks.iter().map(|m| m.as_slice()));
        let scalars = self.optimizer.scalars(self.step);
        let (out, profile) = match profile {
            None if self.config.detect_anomaly => {
                let out =
                    self.backend
                        .run_detecting(&mut self.train, &feeds, &scalars, self.step)?;
                (out, None)
            }
            None => (self.backend.run(&mut self.train, &feeds, &scalars)?, None),
            Some(timing) => {
                let (out, p) =
                    self.backend
                        .run_profiled(&mut self.train, &feeds, &scalars, timing)?;
                (out, Some(p))
            }
        };
        let loss = out[0][0];
        if !loss.is_finite() {
            let e = ModelError::NonFinite {
                step: self.step,
                what: "the training loss".into(),
                value: loss,
            };
            if self.config.stop_on_nan {
                return Err(e);
            }
            log::warn!("{e}");
        }
        self.step += 1;
        let stats = StepStats {
            loss,
            correct: out[1][0] as usize,
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
