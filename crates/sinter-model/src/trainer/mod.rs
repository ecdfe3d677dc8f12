//! The one trainer every model uses: it compiles a [`Model`]'s training step once (forward, loss,
//! backward, optimizer), runs it on named feeds, evaluates, checkpoints and resumes exactly, and
//! trains data-parallel over a [`Collective`]. The image classifier and the language models are
//! thin presets on it.

use crate::backend::{Backend, Program};
use crate::backward::{backward, param_gradients};
use crate::checkpoint::{check_against, NamedTensor, TrainingCheckpoint};
use crate::error::{ModelError, Result};
use crate::graph::{DropoutDraw, Graph, GraphBuilder, NodeId, Tensor};
use crate::nn::Mode;
use crate::optim::Optimizer;
use crate::parallel::{
    check_same_settings, Collective, GradientLayout, SingleProcess, BUCKET_VALUES,
};

mod data_parallel;
mod eval;
mod in_flight;
mod model;

use crate::plan::MemoryReport;
use crate::profile::{StepProfile, TimingMethod};
use crate::vars::{VarKind, VarStore};
use data_parallel::DataParallel;
pub use eval::Evaluator;
use in_flight::Pending;
use model::{order_feeds, slots, Slot};
pub use model::{Combine, Feeds, Metric, Model, Outputs, StepResult, TrainConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

/// A compiled program with the sources of its inputs, and the layout of its outputs.
struct Compiled {
    program: Program,
    slots: Vec<Slot>,
    /// Number of metric outputs after the loss.
    metrics: Vec<(String, Combine)>,
}

/// How a training step runs.
// One per trainer, never moved in a loop: the size of the fused variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum TrainStep {
    /// One process: forward, backward and the optimizer's updates in one program.
    Fused(Compiled),
    /// Data parallel, gradient accumulation or both: see [`DataParallel`].
    Split(DataParallel),
}

/// A model, its variables on a backend, its optimizer, and the compiled programs.
pub struct Trainer<M: Model> {
    /// The model's modules.
    pub model: M,
    /// Parameters and optimizer state (their values live on the backend).
    pub store: VarStore,
    /// Where the programs run.
    pub backend: Backend,
    /// The optimizer, its schedule and clipping.
    pub optimizer: Optimizer,
    /// The run's settings.
    pub config: TrainConfig,
    /// Steps taken so far.
    pub step: u64,
    train: TrainStep,
    eval: Vec<(usize, Compiled)>,
    dropout_rng: ChaCha8Rng,
    masks: Vec<Vec<f32>>,
    /// Non-finite losses seen without `stop_on_nan` (warned about once).
    nan_steps: u64,
    /// Steps submitted and not yet completed, oldest first (see [`Trainer::submit`]).
    in_flight: VecDeque<Pending>,
}

/// The trainer's metadata keys in a checkpoint.
const META_OPTIMIZER: &str = "optimizer";
const META_DROPOUT_RNG: &str = "dropout_rng_word_pos";

fn record<M: Model>(
    model: &M,
    vars: &VarStore,
    batch: usize,
    mode: Mode,
) -> Result<(GraphBuilder, Outputs)> {
    let g = GraphBuilder::new();
    let out = model.forward(vars, &g, batch, mode)?;
    let check = |t: &Tensor, what: &str| -> Result<()> {
        if !t.same_graph_as(&g) {
            return Err(ModelError::Graph(format!(
                "{what} was recorded on another graph: record it on the builder `forward` is given"
            )));
        }
        if t.numel() != 1 {
            return Err(ModelError::Graph(format!(
                "{what} must be a scalar, but its shape is {:?}: reduce it (e.g. `mean_all`)",
                t.shape()
            )));
        }
        Ok(())
    };
    check(&out.loss, "the loss")?;
    for m in &out.metrics {
        check(&m.value, &format!("metric '{}'", m.name))?;
    }
    Ok((g, out))
}

impl<M: Model> Trainer<M> {
    /// Compiles the training step of `model` on `backend` and loads the variables.
    pub fn new(
        model: M,
        store: VarStore,
        backend: Backend,
        optimizer: Optimizer,
        config: TrainConfig,
    ) -> Result<Self> {
        Self::build(model, store, backend, optimizer, config, None)
    }

    /// A trainer that trains data-parallel with the other ranks of `collective`: `config.batch`
    /// is the global batch, which must divide evenly over the ranks; each rank feeds its
    /// contiguous shard (`config.batch / ranks` examples) to [`Trainer::step`]. `settings` are
    /// compared across ranks (an error names the first that differs), then every rank takes
    /// rank 0's parameters.
    pub fn data_parallel(
        model: M,
        store: VarStore,
        backend: Backend,
        optimizer: Optimizer,
        config: TrainConfig,
        collective: Box<dyn Collective>,
        settings: &[(String, String)],
    ) -> Result<Self> {
        let mut t = Self::build(model, store, backend, optimizer, config, Some(collective))?;
        let mut all = settings.to_vec();
        all.push(("optimizer".into(), format!("{:?}", t.optimizer)));
        all.push(("global batch".into(), t.config.batch.to_string()));
        all.push(("seed".into(), t.config.seed.to_string()));
        let params: Vec<String> = t
            .expected(&[VarKind::Param])
            .iter()
            .map(|(n, s)| format!("{n}{s:?}"))
            .collect();
        all.push(("parameters".into(), params.join(", ")));
        t.agree_on(&all)?;
        t.broadcast_state()?;
        Ok(t)
    }

    fn build(
        model: M,
        mut store: VarStore,
        mut backend: Backend,
        optimizer: Optimizer,
        config: TrainConfig,
        collective: Option<Box<dyn Collective>>,
    ) -> Result<Self> {
        if config.batch == 0 {
            return Err(ModelError::Config(
                "the batch must hold at least 1 example".into(),
            ));
        }
        let ranks = collective.as_ref().map_or(1, |c| c.size());
        let parts = ranks * config.accumulate;
        if config.accumulate == 0 {
            return Err(ModelError::Config(
                "gradient accumulation needs at least 1 micro-batch per step".into(),
            ));
        }
        if parts == 0 || config.batch % parts != 0 {
            let over = match (ranks, config.accumulate) {
                (r, 1) => format!("{r} ranks"),
                (1, a) => format!("{a} micro-batches"),
                (r, a) => format!("{r} ranks × {a} micro-batches"),
            };
            let batch = if ranks > 1 { "global batch" } else { "batch" };
            return Err(ModelError::Config(format!(
                "the {batch} of {} does not split evenly over {over}: use a batch that is a multiple of {parts}",
                config.batch
            )));
        }
        // Accumulation in one process runs the split step with a collective of one.
        let collective = match collective {
            None if config.accumulate > 1 => Some(Box::new(SingleProcess) as Box<dyn Collective>),
            c => c,
        };
        optimizer.add_state(&mut store);
        backend.load_vars(&store)?;
        let micro = config.batch / parts;
        let (g, out) = record(&model, &store, micro, Mode::Train)?;
        let grads = backward(&out.loss, &[])?;
        let params: Vec<_> = store
            .ids(VarKind::Param)
            .into_iter()
            // A parameter the model never uses has no leaf: param_gradients reports it.
            .map(|id| {
                let leaf = g.var_leaf(id).unwrap_or(usize::MAX);
                (id, leaf, store.get(id).name.clone())
            })
            .collect();
        let grad_nodes = param_gradients(&grads, &params)?;
        let pairs: Vec<_> = params.iter().map(|p| p.0).zip(grad_nodes).collect();
        let metrics: Vec<(String, Combine)> = out
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.combine))
            .collect();
        let mut outputs = vec![out.loss.id];
        outputs.extend(out.metrics.iter().map(|m| m.value.id));
        // The variables are on the backend already; each program must fit beside them and the
        // programs before it, checked on its plan before its buffers are allocated.
        let mut held: u64 = store.vars.iter().map(|v| 4 * v.numel() as u64).sum();
        let mut compile = |backend: &Backend,
                           graph: &Graph,
                           outputs: &[NodeId],
                           what: &str|
         -> Result<Compiled> {
            let plan = backend.plan(graph, outputs, config.detect_anomaly)?;
            if let Some(limit) = &config.memory_limit {
                limit.check(what, &plan, held)?;
            }
            held += plan.memory.planned_bytes;
            let program = backend.compile_plan(plan)?;
            let slots = slots(program.plan(), graph);
            Ok(Compiled {
                program,
                slots,
                metrics: metrics.clone(),
            })
        };
        let train = match collective {
            None => {
                optimizer.append_updates(&g, &store, &pairs)?;
                let what = format!("one step of batch {}", config.batch);
                TrainStep::Fused(compile(&backend, &g.finish(), &outputs, &what)?)
            }
            Some(collective) => {
                let extras = outputs.len();
                outputs.extend(pairs.iter().map(|p| p.1));
                let what = match (ranks, config.accumulate) {
                    (_, 1) => format!("one step of batch {micro} per rank"),
                    (1, a) => format!("one micro-batch of {micro} ({a} per step)"),
                    (_, a) => format!("one micro-batch of {micro} per rank ({a} per step)"),
                };
                let gradients = compile(&backend, &g.finish(), &outputs, &what)?;
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
                let layout = GradientLayout::with_extras(&sizes, extras, BUCKET_VALUES);
                TrainStep::Split(DataParallel {
                    collective,
                    gradients,
                    update,
                    flat: vec![0.0; layout.len],
                    layout,
                    accumulate: config.accumulate,
                })
            }
        };
        let masks = g.finish().dropout_masks;
        let mut t = Self {
            model,
            store,
            backend,
            optimizer,
            step: 0,
            train,
            eval: Vec::new(),
            dropout_rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed_d509),
            masks: Vec::new(),
            nan_steps: 0,
            in_flight: VecDeque::new(),
            config,
        };
        // Masks hold the whole local batch: each micro-batch takes its part.
        let plan = t.train_compiled().program.plan();
        t.masks = masks
            .iter()
            .map(|&(m, _)| vec![0.0; plan.nodes[m].numel() * t.config.accumulate])
            .collect();
        Ok(t)
    }

    fn train_compiled(&self) -> &Compiled {
        match &self.train {
            TrainStep::Fused(c) => c,
            TrainStep::Split(dp) => &dp.gradients,
        }
    }

    /// The compiled training step (data parallel: the gradient program, which does the work).
    pub fn train_program(&self) -> &Program {
        &self.train_compiled().program
    }

    /// What the planner predicted for the training step (data parallel: its gradient program).
    pub fn train_memory(&self) -> MemoryReport {
        self.train_program().memory()
    }

    /// The names and shapes of the inputs a training step takes (dropout masks excluded: the
    /// trainer draws them).
    pub fn feed_names(&self) -> Vec<(String, Vec<usize>)> {
        self.train_compiled()
            .slots
            .iter()
            .filter_map(|s| match s {
                Slot::Feed { name, shape } => Some((name.clone(), shape.clone())),
                Slot::Mask { .. } => None,
            })
            .collect()
    }

    /// Examples this process feeds per training step (the global batch divided by the ranks).
    pub fn local_batch(&self) -> usize {
        self.config.batch / self.rank_and_size().1
    }

    /// Examples one run of the training program takes: the local batch divided by
    /// [`TrainConfig::accumulate`].
    pub fn micro_batch(&self) -> usize {
        self.local_batch() / self.config.accumulate
    }

    /// The ranks this trainer trains with, if it trains data-parallel (a single process that
    /// accumulates gradients has a collective of one).
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

    /// Bytes of gradients (plus loss and metrics) each rank all-reduces per step; 0 for one
    /// process.
    pub fn gradient_bytes(&self) -> usize {
        match &self.train {
            TrainStep::Split(dp) if dp.collective.size() > 1 => dp.layout.bytes(),
            _ => 0,
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

    /// Gives every rank rank 0's parameters, buffers and optimizer state (after initialisation,
    /// loading or resuming, so that the ranks start identical whatever each one read).
    pub fn broadcast_state(&mut self) -> Result<()> {
        let TrainStep::Split(dp) = &self.train else {
            return Ok(());
        };
        let mut ids = self.store.ids_of(&VarKind::STATE_DICT);
        ids.extend(self.store.ids(VarKind::OptimizerState));
        for id in ids {
            let mut values = self.backend.read_var(id)?;
            dp.collective.broadcast_from_root(&mut values)?;
            self.backend.write_var(id, &values)?;
        }
        Ok(())
    }

    /// The largest absolute difference between any rank's parameters and rank 0's (0 for one
    /// process): how far the ranks have drifted apart, which data parallelism keeps at 0.
    pub fn rank_divergence(&self) -> Result<f32> {
        let TrainStep::Split(dp) = &self.train else {
            return Ok(0.0);
        };
        let worse = |m: f32, d: f32| if d.is_nan() || d > m { d } else { m };
        let mut worst = 0.0f32;
        for id in self.store.ids(VarKind::Param) {
            let mine = self.backend.read_var(id)?;
            let mut root = mine.clone();
            dp.collective.broadcast_from_root(&mut root)?;
            for (a, b) in mine.iter().zip(&root) {
                worst = worse(worst, (a - b).abs());
            }
        }
        let all = dp
            .collective
            .all_gather_u64(&[u64::from(worst.to_bits())])?;
        Ok(all
            .iter()
            .map(|&b| f32::from_bits(b as u32))
            .fold(0.0, worse))
    }

    /// What the planner predicted for each evaluation program compiled so far.
    pub fn eval_memory(&self) -> Vec<MemoryReport> {
        self.eval.iter().map(|(_, c)| c.program.memory()).collect()
    }

    /// Bytes of all persistent variables (parameters, buffers and optimizer state).
    pub fn variable_bytes(&self) -> u64 {
        self.store.vars.iter().map(|v| 4 * v.numel() as u64).sum()
    }

    /// Parameters (not optimizer state) and their total number of values.
    pub fn parameter_count(&self) -> usize {
        self.store
            .ids(VarKind::Param)
            .iter()
            .map(|&id| self.store.get(id).numel())
            .sum()
    }

    fn eval_compiled(&mut self, batch: usize) -> Result<usize> {
        if let Some(k) = self.eval.iter().position(|(b, _)| *b == batch) {
            return Ok(k);
        }
        let held = self.variable_bytes()
            + self.train_compiled().program.memory().planned_bytes
            + self
                .eval
                .iter()
                .map(|(_, c)| c.program.memory().planned_bytes)
                .sum::<u64>();
        let limit = self.config.memory_limit.as_ref().map(|l| (l, held));
        let c = eval::compile_eval(&self.model, &self.store, &self.backend, batch, limit)?;
        self.eval.push((batch, c));
        Ok(self.eval.len() - 1)
    }

    /// One training step on a batch of [`Trainer::local_batch`] examples.
    pub fn step(&mut self, feeds: &Feeds) -> Result<StepResult> {
        self.submit(feeds)?;
        self.complete()
    }

    /// [`Trainer::step`] with every kernel timed and tagged (see [`Backend::run_profiled`]);
    /// `timing` picks how a GPU times its dispatches.
    pub fn step_profiled(
        &mut self,
        feeds: &Feeds,
        timing: Option<TimingMethod>,
    ) -> Result<(StepResult, StepProfile)> {
        self.settled("a profiled training step")?;
        let (values, profile) = self.run_values(feeds, Some(timing))?;
        let result = self.finish_step(values)?;
        Ok((
            result,
            profile.expect("a profiled step returns its profile"),
        ))
    }

    fn draw_masks(&mut self) {
        let (rank, ranks) = self.rank_and_size();
        let mut order: Vec<(usize, DropoutDraw)> = self
            .train_compiled()
            .slots
            .iter()
            .filter_map(|s| match s {
                Slot::Mask { k, draw } => Some((*k, *draw)),
                Slot::Feed { .. } => None,
            })
            .collect();
        // Masks are drawn in the order the model recorded them, whatever order the plan feeds.
        order.sort_by_key(|o| o.0);
        for (k, draw) in order {
            let mask = &mut self.masks[k];
            // The draw of the whole global batch is made on every rank (so the generator stays
            // where one process would have it) and each keeps its shard's rows.
            let mine = rank * mask.len()..(rank + 1) * mask.len();
            for j in 0..ranks * mask.len() {
                let value = match draw {
                    // Inverted dropout: kept units are scaled by 1/(1−p) so evaluation needs no
                    // change.
                    DropoutDraw::Mask(p) => {
                        let dropped = self.dropout_rng.random::<f32>() < p;
                        if dropped {
                            0.0
                        } else {
                            1.0 / (1.0 - p)
                        }
                    }
                    // 24 random bits: a whole number an f32 holds exactly.
                    DropoutDraw::RowSeeds => (self.dropout_rng.random::<u32>() >> 8) as f32,
                };
                if mine.contains(&j) {
                    mask[j - mine.start] = value;
                }
            }
        }
    }

    /// Runs one step to the end and returns its loss and metric values (not yet counted: see
    /// [`Trainer::finish_step`]); profiled when `profile` is `Some(timing)`.
    fn run_values(
        &mut self,
        feeds: &Feeds,
        profile: Option<Option<TimingMethod>>,
    ) -> Result<(Vec<f32>, Option<StepProfile>)> {
        self.draw_masks();
        let step = self.next_step();
        let scalars = self.optimizer.scalars(step);
        let parts = self.config.accumulate;
        let mut merged: Option<StepProfile> = None;
        let mut values = Vec::new();
        for i in 0..parts {
            let compiled = match &mut self.train {
                TrainStep::Fused(c) => c,
                TrainStep::Split(dp) => &mut dp.gradients,
            };
            let micro = feeds.micro_batch(&compiled.slots, i, parts)?;
            let masks: Vec<&[f32]> = self
                .masks
                .iter()
                .map(|m| {
                    let per = m.len() / parts;
                    &m[i * per..(i + 1) * per]
                })
                .collect();
            let ordered = order_feeds(&compiled.slots, &micro, &masks)?;
            let program = &mut compiled.program;
            let out = match profile {
                None if self.config.detect_anomaly => self
                    .backend
                    .run_detecting(program, &ordered, &scalars, step)?,
                None => self.backend.run(program, &ordered, &scalars)?,
                Some(timing) => {
                    let (out, p) = self
                        .backend
                        .run_profiled(program, &ordered, &scalars, timing)?;
                    match &mut merged {
                        None => merged = Some(p),
                        Some(m) => m.append(p),
                    }
                    out
                }
            };
            let metrics = compiled.metrics.len();
            match &mut self.train {
                TrainStep::Fused(_) => {
                    values = out.iter().take(1 + metrics).map(|v| v[0]).collect();
                }
                TrainStep::Split(dp) => dp.add_micro_batch(&out, i == 0),
            }
        }
        if let TrainStep::Split(dp) = &mut self.train {
            values = dp.reduce_and_update(&mut self.backend, &scalars)?;
        }
        Ok((values, merged))
    }

    /// Counts a step whose loss and metric `values` are in: the non-finite check, the step
    /// counter, the result.
    fn finish_step(&mut self, values: Vec<f32>) -> Result<StepResult> {
        let names: Vec<String> = self
            .train_compiled()
            .metrics
            .iter()
            .map(|m| m.0.clone())
            .collect();
        let loss = values[0];
        if !loss.is_finite() {
            if self.config.stop_on_nan {
                // The run stops here: steps submitted after this one are dropped unread.
                self.in_flight.clear();
                return Err(ModelError::NonFinite {
                    step: self.step,
                    what: "the training loss".into(),
                    value: loss,
                });
            }
            // Counted, not logged: the caller reports it once, in its own terms.
            self.nan_steps += 1;
        }
        self.step += 1;
        Ok(StepResult {
            loss,
            metrics: names.into_iter().zip(values[1..].iter().copied()).collect(),
            examples: self.config.batch,
        })
    }

    /// Training steps whose loss was NaN or infinite (without `stop_on_nan`).
    pub fn non_finite_steps(&self) -> u64 {
        self.nan_steps
    }

    /// Loss and metrics of one evaluation batch of `batch` examples (dropout off, no update).
    pub fn evaluate_batch(&mut self, batch: usize, feeds: &Feeds) -> Result<StepResult> {
        self.settled("evaluation")?;
        let k = self.eval_compiled(batch)?;
        eval::run_eval(&mut self.backend, &mut self.eval[k].1, batch, feeds)
    }

    /// Combines per-batch evaluation results: the loss and `Mean` metrics weighted by batch size,
    /// `Sum` metrics added.
    pub fn combine(&self, results: &[StepResult]) -> StepResult {
        eval::combine(results, &self.train_compiled().metrics)
    }

    fn tensors(&self, kinds: &[VarKind]) -> Result<Vec<NamedTensor>> {
        self.store
            .ids_of(kinds)
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

    /// The model's state_dict: its parameters and buffers (a batch norm's running statistics),
    /// named as the modules named them (PyTorch's `state_dict` names).
    pub fn params(&self) -> Result<Vec<NamedTensor>> {
        self.settled("reading the parameters")?;
        self.tensors(&VarKind::STATE_DICT)
    }

    fn expected(&self, kinds: &[VarKind]) -> Vec<(String, Vec<usize>)> {
        self.store
            .ids_of(kinds)
            .into_iter()
            .map(|id| {
                let v = self.store.get(id);
                (v.name.clone(), v.shape.clone())
            })
            .collect()
    }

    fn write_tensors(
        &mut self,
        tensors: &[NamedTensor],
        kinds: &[VarKind],
        file: &Path,
    ) -> Result<()> {
        check_against(tensors, &self.expected(kinds), file)?;
        for t in tensors {
            let id = self.store.find(&t.name).ok_or_else(|| {
                ModelError::checkpoint(file, format!("has no variable named {}", t.name))
            })?;
            self.backend.write_var(id, &t.data)?;
        }
        Ok(())
    }

    /// Replaces the state_dict (parameters and buffers) with `tensors` (from `file`), which
    /// must match names and shapes exactly; an error lists every missing, unexpected and
    /// mismatched tensor.
    pub fn set_params(&mut self, tensors: &[NamedTensor], file: &Path) -> Result<()> {
        self.settled("setting the parameters")?;
        self.write_tensors(tensors, &VarKind::STATE_DICT, file)
    }

    /// Everything needed to continue this run exactly: parameters and buffers, optimizer state,
    /// step, the optimizer's settings and the dropout generator's position, plus the caller's
    /// `meta` (a preset's data order, its model name).
    pub fn checkpoint(&self, mut meta: BTreeMap<String, String>) -> Result<TrainingCheckpoint> {
        self.settled("a checkpoint")?;
        meta.insert(META_OPTIMIZER.into(), format!("{:?}", self.optimizer));
        meta.insert(
            META_DROPOUT_RNG.into(),
            self.dropout_rng.get_word_pos().to_string(),
        );
        Ok(TrainingCheckpoint {
            params: self.tensors(&VarKind::STATE_DICT)?,
            optimizer_state: self.tensors(&[VarKind::OptimizerState])?,
            step: self.step,
            meta,
        })
    }

    /// Continues from a checkpoint of the same model and optimizer (`file` names it in errors).
    pub fn restore(&mut self, ckpt: &TrainingCheckpoint, file: &Path) -> Result<()> {
        self.settled("restoring a checkpoint")?;
        let now_opt = format!("{:?}", self.optimizer);
        let saved_opt = ckpt
            .meta
            .get(META_OPTIMIZER)
            .map(String::as_str)
            .unwrap_or("?");
        let older_match =
            self.optimizer.description_before_decay_on().as_deref() == Some(saved_opt);
        if saved_opt != now_opt && !older_match {
            return Err(ModelError::checkpoint(
                file,
                format!("was saved with optimizer {saved_opt} but this run uses {now_opt}"),
            ));
        }
        self.write_tensors(&ckpt.params, &VarKind::STATE_DICT, file)?;
        self.write_tensors(&ckpt.optimizer_state, &[VarKind::OptimizerState], file)?;
        let word_pos: u128 = ckpt
            .meta
            .get(META_DROPOUT_RNG)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ModelError::checkpoint(file, "has no dropout generator position"))?;
        self.dropout_rng.set_word_pos(word_pos);
        self.step = ckpt.step;
        Ok(())
    }
}
