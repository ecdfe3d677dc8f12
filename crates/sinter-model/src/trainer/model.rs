//! What a model gives the trainer (the `Model` trait, its outputs and metrics) and what the
//! trainer is fed (named `Feeds`, matched to a compiled program's inputs by name).

use crate::backend::MemoryLimit;
use crate::error::{ModelError, Result};
use crate::graph::{DropoutDraw, Graph, GraphBuilder, Op, Tensor};
use crate::nn::Mode;
use crate::plan::Plan;
use crate::vars::VarStore;

/// A trainable model: a struct of modules that records the loss of one batch on a graph.
///
/// `forward` gets the variables (`vars`, where the modules' parameters live) and declares the batch's inputs with [`GraphBuilder::input`] (their names are the names
/// of the [`Feeds`]), records the forward pass, and returns the loss (any scalar node) and the
/// metrics to report. It is called once per program the trainer compiles (training, and
/// evaluation per batch size), never per step.
pub trait Model {
    /// Records inputs, forward pass, loss and metrics for a batch of `batch` examples.
    fn forward(
        &self,
        vars: &VarStore,
        g: &GraphBuilder,
        batch: usize,
        mode: Mode,
    ) -> Result<Outputs>;
}

/// How a metric's per-batch values combine over an evaluation of several batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// Added up (counts: correct predictions, tokens).
    Sum,
    /// Averaged, weighted by the batch size (per-example means).
    Mean,
}

/// A scalar the model reports besides its loss.
#[derive(Clone, Debug)]
pub struct Metric {
    /// How reports and [`StepResult::metric`] name it.
    pub name: String,
    /// The scalar node computing it for one batch (shape `[]`), on the loss's graph.
    pub value: Tensor,
    /// How batches combine in an evaluation.
    pub combine: Combine,
}

/// What [`Model::forward`] returns: the loss to minimize and the metrics to report.
#[derive(Clone, Debug)]
pub struct Outputs {
    /// The scalar the optimizer minimizes (a per-example mean, for evaluation's weighting).
    pub loss: Tensor,
    /// Further scalars computed with the loss.
    pub metrics: Vec<Metric>,
}

impl Outputs {
    /// Outputs with `loss` (a scalar node) and no metrics yet.
    pub fn loss(loss: Tensor) -> Self {
        Self {
            loss,
            metrics: Vec::new(),
        }
    }

    /// Adds the scalar `value` as metric `name`, combined over evaluation batches by `combine`.
    pub fn with_metric(mut self, name: &str, value: Tensor, combine: Combine) -> Self {
        self.metrics.push(Metric {
            name: name.to_string(),
            value,
            combine,
        });
        self
    }
}

/// The data of one batch, by input name: `Feeds::new().with("images", &x).with("labels", &y)`.
#[derive(Clone, Debug, Default)]
pub struct Feeds<'a> {
    pub(super) named: Vec<(&'a str, &'a [f32])>,
}

impl<'a> Feeds<'a> {
    /// No feeds yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the values of input `name` (row-major, as many as its shape holds).
    pub fn with(mut self, name: &'a str, values: &'a [f32]) -> Self {
        self.named.push((name, values));
        self
    }

    pub(super) fn get(&self, name: &str) -> Option<&'a [f32]> {
        self.named.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// Micro-batch `i` of `count` (the `i`-th equal part of every feed, each split along its
    /// leading axis): what one run of a program compiled for the micro-batch takes. A feed
    /// whose length is not `count` times the program's input is an error naming it.
    pub(super) fn micro_batch(&self, slots: &[Slot], i: usize, count: usize) -> Result<Self> {
        if count == 1 {
            return Ok(self.clone());
        }
        let named = self
            .named
            .iter()
            .map(|&(name, values)| {
                let shape = slots.iter().find_map(|s| match s {
                    Slot::Feed { name: n, shape } if n == name => Some(shape),
                    _ => None,
                });
                // An unknown name is reported by `order_feeds`, with what the step takes.
                let Some(shape) = shape else {
                    return Ok((name, values));
                };
                let per: usize = shape.iter().product();
                if values.len() != per * count {
                    let mut whole = shape.clone();
                    if let Some(lead) = whole.first_mut() {
                        *lead *= count;
                    }
                    return Err(ModelError::Config(format!(
                        "input '{name}' has shape {whole:?} ({} values: {count} micro-batches of {shape:?}) but {} values were fed",
                        per * count,
                        values.len()
                    )));
                }
                Ok((name, &values[i * per..(i + 1) * per]))
            })
            .collect::<Result<_>>()?;
        Ok(Self { named })
    }
}

/// The loss and metrics of one step or one evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct StepResult {
    /// The loss (an evaluation: the batch-weighted mean).
    pub loss: f32,
    /// Each metric, in the order the model listed them.
    pub metrics: Vec<(String, f32)>,
    /// Examples the values cover.
    pub examples: usize,
}

impl StepResult {
    /// The metric called `name`, if the model reports one.
    pub fn metric(&self, name: &str) -> Option<f32> {
        self.metrics.iter().find(|(n, _)| n == name).map(|m| m.1)
    }
}

/// Settings of a run that shape its programs.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Examples per training step (data parallel: the global batch).
    pub batch: usize,
    /// Micro-batches per step (gradient accumulation): each rank runs forward and backward on
    /// `batch / (ranks · accumulate)` examples at a time, adds up the gradients and applies
    /// their mean once. The step's memory is that of one micro-batch. `batch` must divide
    /// evenly; 1 (the default) runs the whole batch at once.
    pub accumulate: usize,
    /// Seeds the dropout masks (parameters are seeded by their [`crate::Init`]).
    pub seed: u64,
    /// Stop with [`ModelError::NonFinite`] when the loss is NaN or infinite; otherwise the step
    /// succeeds and [`crate::Trainer::non_finite_steps`] counts it.
    pub stop_on_nan: bool,
    /// Check every value of every training step and stop at the first non-finite one, naming
    /// its node (see [`crate::Backend::run_checked`]); costs nothing when off.
    pub detect_anomaly: bool,
    /// The memory the backend has: a program whose plan (with the variables and the programs
    /// compiled before it) does not fit is refused before anything is allocated
    /// ([`ModelError::OutOfMemory`]). `None`: not checked.
    pub memory_limit: Option<MemoryLimit>,
}

impl TrainConfig {
    /// `batch` examples per step in one micro-batch, seed 0, warn on NaN, no anomaly
    /// detection, no memory limit.
    pub fn new(batch: usize) -> Self {
        Self {
            batch,
            accumulate: 1,
            seed: 0,
            stop_on_nan: false,
            detect_anomaly: false,
            memory_limit: None,
        }
    }
}

/// Where each input of a compiled program gets its values.
#[derive(Clone, Debug)]
pub(super) enum Slot {
    /// From the feed of this name, of this shape.
    Feed { name: String, shape: Vec<usize> },
    /// A dropout mask or row seeds, drawn by the trainer (dropout input `k` of the graph).
    Mask { k: usize, draw: DropoutDraw },
}

/// The input slots of `plan`, in its feed order.
pub(super) fn slots(plan: &Plan, graph: &Graph) -> Vec<Slot> {
    plan.inputs
        .iter()
        .map(|&i| {
            let node = &plan.nodes[i];
            match graph.dropout_masks.iter().position(|&(m, _)| m == i) {
                Some(k) => Slot::Mask {
                    k,
                    draw: graph.dropout_masks[k].1,
                },
                None => Slot::Feed {
                    name: match &node.op {
                        Op::Input { name } => name.clone(),
                        _ => node.tag.clone(),
                    },
                    shape: node.shape.clone(),
                },
            }
        })
        .collect()
}

/// The feeds in the order of `slots`: named feeds by name (an error names a missing, unknown or
/// wrongly sized one and lists what the program takes), masks from `masks`.
pub(super) fn order_feeds<'a>(
    slots: &[Slot],
    feeds: &Feeds<'a>,
    masks: &[&'a [f32]],
) -> Result<Vec<&'a [f32]>> {
    let wanted = || {
        slots
            .iter()
            .filter_map(|s| match s {
                Slot::Feed { name, shape } => Some(format!("'{name}' {shape:?}")),
                Slot::Mask { .. } => None,
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, _) in &feeds.named {
        let known = slots
            .iter()
            .any(|s| matches!(s, Slot::Feed { name: n, .. } if n == name));
        if !known {
            return Err(ModelError::Config(format!(
                "no input named '{name}': the step takes {}",
                wanted()
            )));
        }
    }
    slots
        .iter()
        .map(|s| match s {
            Slot::Mask { k, .. } => masks
                .get(*k)
                .copied()
                .ok_or_else(|| ModelError::Graph("dropout in an evaluation program".into())),
            Slot::Feed { name, shape } => {
                let v = feeds.get(name).ok_or_else(|| {
                    ModelError::Config(format!(
                        "input '{name}' was not fed: the step takes {}",
                        wanted()
                    ))
                })?;
                let n: usize = shape.iter().product();
                if v.len() != n {
                    return Err(ModelError::Config(format!(
                        "input '{name}' has shape {shape:?} ({n} values) but {} values were fed",
                        v.len()
                    )));
                }
                Ok(v)
            }
        })
        .collect()
}
