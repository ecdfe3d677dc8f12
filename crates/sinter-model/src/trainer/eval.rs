//! Evaluation without training: a [`Model`]'s forward pass, loss and metrics compiled per batch
//! size on saved parameters, with no backward pass, optimizer state or training program.

use super::model::{order_feeds, slots, Combine, Feeds, Model, StepResult};
use super::Compiled;
use crate::backend::{Backend, MemoryLimit, StepScalars};
use crate::checkpoint::{check_against, NamedTensor};
use crate::error::{ModelError, Result};
use crate::graph::{GraphBuilder, Tensor};
use crate::nn::Mode;
use crate::plan::MemoryReport;
use crate::vars::{VarKind, VarStore};
use std::path::Path;

/// A model's evaluation programs (dropout off, no update) on a backend holding its parameters:
/// what `sinter eval` and `sinter predict` run. Build the model's modules on `store` as for
/// training, then [`Evaluator::set_params`] with the saved tensors.
pub struct Evaluator<M: Model> {
    /// The model's modules.
    pub model: M,
    /// Its parameters (their values live on the backend).
    pub store: VarStore,
    /// Where the programs run.
    pub backend: Backend,
    /// The memory the backend has: an evaluation whose plan does not fit (with the variables
    /// and the programs compiled before) is refused before it allocates. `None`: not checked.
    pub memory_limit: Option<MemoryLimit>,
    programs: Vec<(usize, Compiled)>,
}

/// Compiles `model`'s evaluation program (loss and metrics) for batches of `batch` examples.
/// With `limit`, refuses a plan that does not fit beside the bytes already held.
pub(super) fn compile_eval<M: Model>(
    model: &M,
    store: &VarStore,
    backend: &Backend,
    batch: usize,
    limit: Option<(&MemoryLimit, u64)>,
) -> Result<Compiled> {
    let (g, out) = super::record(model, store, batch, Mode::Eval)?;
    let mut outputs = vec![out.loss.id];
    outputs.extend(out.metrics.iter().map(|m| m.value.id));
    let graph = g.finish();
    let plan = backend.plan(&graph, &outputs, false)?;
    if let Some((limit, held)) = limit {
        limit.check(&format!("evaluating a batch of {batch}"), &plan, held)?;
    }
    let program = backend.compile_plan(plan)?;
    let slots = slots(program.plan(), &graph);
    let metrics = out
        .metrics
        .iter()
        .map(|m| (m.name.clone(), m.combine))
        .collect();
    Ok(Compiled {
        program,
        slots,
        metrics,
    })
}

/// Runs a compiled evaluation program on one batch of `batch` examples.
pub(super) fn run_eval(
    backend: &mut Backend,
    c: &mut Compiled,
    batch: usize,
    feeds: &Feeds,
) -> Result<StepResult> {
    let ordered = order_feeds(&c.slots, feeds, &[])?;
    let out = backend.run(&mut c.program, &ordered, &StepScalars::default())?;
    Ok(StepResult {
        loss: out[0][0],
        metrics: c
            .metrics
            .iter()
            .zip(&out[1..])
            .map(|((n, _), v)| (n.clone(), v[0]))
            .collect(),
        examples: batch,
    })
}

/// Per-batch results combined: the loss and `Mean` metrics weighted by batch size, `Sum`
/// metrics added (`metrics` as the model lists them).
pub(super) fn combine(results: &[StepResult], metrics: &[(String, Combine)]) -> StepResult {
    let examples: usize = results.iter().map(|r| r.examples).sum();
    let weight = |r: &StepResult| r.examples as f64 / examples.max(1) as f64;
    let loss = results
        .iter()
        .map(|r| r.loss as f64 * weight(r))
        .sum::<f64>() as f32;
    let metrics = metrics
        .iter()
        .enumerate()
        .map(|(k, (name, how))| {
            let v: f64 = results
                .iter()
                .map(|r| {
                    let x = r.metrics.get(k).map_or(0.0, |m| m.1 as f64);
                    match how {
                        Combine::Sum => x,
                        Combine::Mean => x * weight(r),
                    }
                })
                .sum();
            (name.clone(), v as f32)
        })
        .collect();
    StepResult {
        loss,
        metrics,
        examples,
    }
}

impl<M: Model> Evaluator<M> {
    /// Loads `store`'s variables (its parameters as initialized) onto `backend`; nothing is
    /// compiled until the first evaluation.
    pub fn new(model: M, store: VarStore, mut backend: Backend) -> Result<Self> {
        backend.load_vars(&store)?;
        Ok(Self {
            model,
            store,
            backend,
            memory_limit: None,
            programs: Vec::new(),
        })
    }

    /// Replaces the state_dict (parameters and buffers) with `tensors` (from `file`), which
    /// must match names and shapes exactly; an error lists every missing, unexpected and
    /// mismatched tensor.
    pub fn set_params(&mut self, tensors: &[NamedTensor], file: &Path) -> Result<()> {
        let expected: Vec<(String, Vec<usize>)> = self
            .store
            .ids_of(&VarKind::STATE_DICT)
            .into_iter()
            .map(|id| {
                let v = self.store.get(id);
                (v.name.clone(), v.shape.clone())
            })
            .collect();
        check_against(tensors, &expected, file)?;
        for t in tensors {
            let id = self.store.find(&t.name).ok_or_else(|| {
                ModelError::checkpoint(file, format!("has no variable named {}", t.name))
            })?;
            self.backend.write_var(id, &t.data)?;
        }
        Ok(())
    }

    fn compiled(&mut self, batch: usize) -> Result<usize> {
        if let Some(k) = self.programs.iter().position(|(b, _)| *b == batch) {
            return Ok(k);
        }
        let held = self
            .store
            .vars
            .iter()
            .map(|v| 4 * v.numel() as u64)
            .sum::<u64>()
            + self
                .programs
                .iter()
                .map(|(_, c)| c.program.memory().planned_bytes)
                .sum::<u64>();
        let limit = self.memory_limit.as_ref().map(|l| (l, held));
        let c = compile_eval(&self.model, &self.store, &self.backend, batch, limit)?;
        self.programs.push((batch, c));
        Ok(self.programs.len() - 1)
    }

    /// Loss and metrics of one batch of `batch` examples, fed by input name.
    pub fn evaluate_batch(&mut self, batch: usize, feeds: &Feeds) -> Result<StepResult> {
        let k = self.compiled(batch)?;
        run_eval(&mut self.backend, &mut self.programs[k].1, batch, feeds)
    }

    /// Per-batch results combined over an evaluation (see [`crate::Trainer::combine`]). Before
    /// any batch was evaluated there are no metrics to combine.
    pub fn combine(&self, results: &[StepResult]) -> StepResult {
        let metrics = self
            .programs
            .first()
            .map_or(&[][..], |(_, c)| c.metrics.as_slice());
        combine(results, metrics)
    }

    /// The values of the nodes `record` returns, recorded on the model's variables and fed by
    /// input name: a forward-only program (no loss needed) compiled for this one call, e.g. a
    /// classifier's class probabilities.
    pub fn run_forward(
        &mut self,
        record: impl FnOnce(&M, &VarStore, &GraphBuilder) -> Result<Vec<Tensor>>,
        feeds: &Feeds,
    ) -> Result<Vec<Vec<f32>>> {
        let g = GraphBuilder::new();
        let outputs = record(&self.model, &self.store, &g)?;
        let ids: Vec<_> = outputs.iter().map(|t| t.id).collect();
        let graph = g.finish();
        let mut program = self.backend.compile(&graph, &ids)?;
        let slots = slots(program.plan(), &graph);
        let ordered = order_feeds(&slots, feeds, &[])?;
        self.backend
            .run(&mut program, &ordered, &StepScalars::default())
    }

    /// What the planner predicted for each evaluation program compiled so far.
    pub fn memory(&self) -> Vec<MemoryReport> {
        self.programs
            .iter()
            .map(|(_, c)| c.program.memory())
            .collect()
    }
}
