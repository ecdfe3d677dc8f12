//! Character-level language models: a small transformer and recurrent models (RNN, LSTM, GRU),
//! their training on random windows of a text, validation loss in nats per character, and sampling.

use crate::backend::{Backend, Program};
use crate::backward::{backward, param_gradients};
use crate::checkpoint::NamedTensor;
use crate::data::CharCorpus;
use crate::error::{ModelError, Result};
use crate::graph::{GraphBuilder, NodeId, Tensor};
use crate::nn::Linear;
use crate::nn_seq::{CellKind, Embedding, LayerNorm, Recurrent, TransformerBlock};
use crate::optim::Optimizer;
use crate::profile::{StepProfile, TimingMethod};
use crate::vars::{Init, VarId, VarKind, VarStore};
use rand::distr::{weighted::WeightedIndex, Distribution};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// The architecture of a character model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CharArch {
    Transformer {
        layers: usize,
        heads: usize,
        width: usize,
    },
    Recurrent {
        cell: CellKind,
        embed: usize,
        hidden: usize,
    },
}

impl CharArch {
    pub fn name(&self) -> &'static str {
        match self {
            CharArch::Transformer { .. } => "char-transformer",
            CharArch::Recurrent {
                cell: CellKind::Rnn,
                ..
            } => "char-rnn",
            CharArch::Recurrent {
                cell: CellKind::Lstm,
                ..
            } => "char-lstm",
            CharArch::Recurrent {
                cell: CellKind::Gru,
                ..
            } => "char-gru",
        }
    }
}

enum Body {
    Transformer {
        tok: Embedding,
        pos: VarId,
        blocks: Vec<TransformerBlock>,
        ln_f: LayerNorm,
    },
    Recurrent {
        embed: Embedding,
        cell: Recurrent,
    },
}

/// A character model's modules; `forward` records it for a batch of windows.
pub struct CharModel {
    pub arch: CharArch,
    pub vocab: usize,
    pub context: usize,
    body: Body,
    head: Linear,
}

/// A recorded model: where to feed ids and targets, and the logits and loss nodes.
struct Recorded {
    g: GraphBuilder,
    logits: Vec<NodeId>,
    loss: Option<NodeId>,
}

impl CharModel {
    pub fn new(
        store: &mut VarStore,
        arch: CharArch,
        vocab: usize,
        context: usize,
        rng: &mut Init,
    ) -> Self {
        let (body, width) = match arch {
            CharArch::Transformer {
                layers,
                heads,
                width,
            } => {
                let tok = Embedding::new(store, "tok", vocab, width, 0.02, rng);
                let pos = Embedding::new(store, "pos", context, width, 0.02, rng).weight;
                let blocks = (0..layers)
                    .map(|l| {
                        TransformerBlock::new(store, &format!("blocks.{l}"), width, heads, rng)
                    })
                    .collect();
                let ln_f = LayerNorm::new(store, "ln_f", width);
                (
                    Body::Transformer {
                        tok,
                        pos,
                        blocks,
                        ln_f,
                    },
                    width,
                )
            }
            CharArch::Recurrent {
                cell,
                embed,
                hidden,
            } => {
                let e = Embedding::new(store, "embed", vocab, embed, 1.0, rng);
                let c = Recurrent::new(store, "rnn", cell, embed, hidden, rng);
                (Body::Recurrent { embed: e, cell: c }, hidden)
            }
        };
        let head = Linear::new(store, "head", width, vocab, rng);
        Self {
            arch,
            vocab,
            context,
            body,
            head,
        }
    }

    /// Records the model for `batch` windows. Inputs, in feed order: the transformer takes
    /// `ids [B, T]` then `targets [B·T]`; a recurrent model takes `ids_t [B]` for every step,
    /// then `targets_t [B]` for every step. Without targets only the logits are recorded.
    fn record(&self, store: &VarStore, batch: usize, with_loss: bool) -> Result<Recorded> {
        let g = GraphBuilder::new();
        let t = self.context;
        let (logits, loss) = match &self.body {
            Body::Transformer {
                tok,
                pos,
                blocks,
                ln_f,
            } => {
                let ids = g.input("ids", &[batch, t]);
                let targets = with_loss.then(|| g.input("targets", &[batch * t]));
                let info = store.get(*pos);
                let pos = g.var(*pos, &info.shape, "pos");
                let mut x = g.scoped("tok", || tok.forward(store, &ids))?.add(&pos)?;
                for (l, block) in blocks.iter().enumerate() {
                    x = g.scoped(&format!("blocks.{l}"), || block.forward(store, &x))?;
                }
                let x = g.scoped("ln_f", || ln_f.forward(store, &x))?;
                let logits = g
                    .scoped("head", || self.head.forward(store, &x))?
                    .reshape(&[batch * t, self.vocab])?;
                let loss = match targets {
                    Some(tg) => Some(g.scoped("loss", || logits.cross_entropy(&tg))?.id),
                    None => None,
                };
                (vec![logits.id], loss)
            }
            Body::Recurrent { embed, cell } => {
                let ids: Vec<Tensor> = (0..t)
                    .map(|s| g.input(&format!("ids_{s}"), &[batch]))
                    .collect();
                let targets: Vec<Tensor> = if with_loss {
                    (0..t)
                        .map(|s| g.input(&format!("targets_{s}"), &[batch]))
                        .collect()
                } else {
                    Vec::new()
                };
                let xs = g.scoped("embed", || {
                    ids.iter()
                        .map(|i| embed.forward(store, i))
                        .collect::<Result<Vec<_>>>()
                })?;
                let hs = g.scoped("rnn", || cell.forward(store, &xs))?;
                let logits = g.scoped("head", || {
                    hs.iter()
                        .map(|h| self.head.forward(store, h))
                        .collect::<Result<Vec<_>>>()
                })?;
                let loss = if with_loss {
                    // Mean over steps of each step's mean cross-entropy: the mean over all B·T.
                    let mut total: Option<Tensor> = None;
                    for (l, tg) in logits.iter().zip(&targets) {
                        let ce = g.scoped("loss", || l.cross_entropy(tg))?;
                        total = Some(match total {
                            None => ce,
                            Some(acc) => acc.add(&ce)?,
                        });
                    }
                    Some(total.expect("context ≥ 1").scale(1.0 / t as f64).id)
                } else {
                    None
                };
                (logits.iter().map(|l| l.id).collect(), loss)
            }
        };
        Ok(Recorded { g, logits, loss })
    }

    /// Lays out `[B, T]` ids and targets (row-major) as the recorded graph's feeds.
    fn feeds(&self, batch: usize, ids: &[f32], targets: Option<&[f32]>) -> Vec<Vec<f32>> {
        match self.body {
            Body::Transformer { .. } => {
                let mut f = vec![ids.to_vec()];
                f.extend(targets.map(<[f32]>::to_vec));
                f
            }
            Body::Recurrent { .. } => {
                let t = self.context;
                let column =
                    |v: &[f32], s: usize| (0..batch).map(|b| v[b * t + s]).collect::<Vec<f32>>();
                let mut f: Vec<Vec<f32>> = (0..t).map(|s| column(ids, s)).collect();
                if let Some(tg) = targets {
                    f.extend((0..t).map(|s| column(tg, s)));
                }
                f
            }
        }
    }
}

/// Settings of a language-model run.
#[derive(Clone, Debug)]
pub struct LmConfig {
    pub batch: usize,
    pub seed: u64,
    /// Validation windows per evaluation (in batches of `batch`).
    pub valid_batches: usize,
    /// Check every value of every training step and stop at the first non-finite one, naming
    /// its node (see [`Backend::run_checked`]); costs nothing when off.
    pub detect_anomaly: bool,
}

/// A character model on a backend with its compiled training and validation programs.
pub struct CharLm {
    pub model: CharModel,
    pub store: VarStore,
    pub backend: Backend,
    pub optimizer: Optimizer,
    pub config: LmConfig,
    pub corpus: CharCorpus,
    pub step: u64,
    train: Program,
    valid: Program,
    sample: Option<Program>,
    rng: ChaCha8Rng,
    ids: Vec<f32>,
    targets: Vec<f32>,
}

impl CharLm {
    pub fn new(
        arch: CharArch,
        context: usize,
        corpus: CharCorpus,
        mut backend: Backend,
        optimizer: Optimizer,
        config: LmConfig,
    ) -> Result<Self> {
        if corpus.train.len() <= context + 1 || corpus.valid.len() <= context + 1 {
            return Err(ModelError::Config(format!(
                "context {context} is longer than the text's splits ({} training, {} validation characters)",
                corpus.train.len(),
                corpus.valid.len()
            )));
        }
        let mut rng = Init::new(config.seed);
        let mut store = VarStore::new();
        let model = CharModel::new(&mut store, arch, corpus.vocab_size(), context, &mut rng);
        optimizer.add_state(&mut store);
        backend.load_vars(&store)?;

        let rec = model.record(&store, config.batch, true)?;
        let loss = rec.loss.expect("recorded with a loss");
        let grads = backward(&rec.g.tensor(loss), &[])?;
        let params: Vec<(VarId, NodeId, String)> = store
            .ids(VarKind::Param)
            .into_iter()
            .map(|id| {
                (
                    id,
                    rec.g.var_leaf(id).unwrap_or(usize::MAX),
                    store.get(id).name.clone(),
                )
            })
            .collect();
        let grad_nodes = param_gradients(&grads, &params)?;
        let pairs: Vec<_> = params.iter().map(|p| p.0).zip(grad_nodes).collect();
        optimizer.append_updates(&rec.g, &store, &pairs)?;
        let train = if config.detect_anomaly {
            backend.compile_checked(&rec.g.finish(), &[loss])?
        } else {
            backend.compile(&rec.g.finish(), &[loss])?
        };
        let rec = model.record(&store, config.batch, true)?;
        let valid = backend.compile(&rec.g.finish(), &[rec.loss.expect("with loss")])?;
        Ok(Self {
            model,
            store,
            backend,
            optimizer,
            corpus,
            step: 0,
            train,
            valid,
            sample: None,
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x7e47),
            ids: Vec::new(),
            targets: Vec::new(),
            config,
        })
    }

    /// One step on random training windows; returns the training loss (nats per character).
    pub fn train_step(&mut self) -> Result<f32> {
        Ok(self.step_on(None)?.0)
    }

    /// [`CharLm::train_step`] with every kernel timed and tagged (see
    /// [`Backend::run_profiled`]); `timing` picks how a GPU times its dispatches.
    pub fn train_step_profiled(
        &mut self,
        timing: Option<TimingMethod>,
    ) -> Result<(f32, StepProfile)> {
        let (loss, profile) = self.step_on(Some(timing))?;
        Ok((loss, profile.expect("profiled step")))
    }

    /// The compiled training step.
    pub fn train_program(&self) -> &Program {
        &self.train
    }

    /// One step; profiled when `profile` is `Some(timing)`.
    fn step_on(
        &mut self,
        profile: Option<Option<TimingMethod>>,
    ) -> Result<(f32, Option<StepProfile>)> {
        let (b, t) = (self.config.batch, self.model.context);
        CharCorpus::windows(
            &self.corpus.train,
            b,
            t,
            &mut self.rng,
            &mut self.ids,
            &mut self.targets,
        );
        let feeds = self.model.feeds(b, &self.ids, Some(&self.targets));
        let refs: Vec<&[f32]> = feeds.iter().map(Vec::as_slice).collect();
        let scalars = self.optimizer.scalars(self.step);
        let (out, profile) = match profile {
            None if self.config.detect_anomaly => {
                let out =
                    self.backend
                        .run_detecting(&mut self.train, &refs, &scalars, self.step)?;
                (out, None)
            }
            None => (self.backend.run(&mut self.train, &refs, &scalars)?, None),
            Some(timing) => {
                let (out, p) =
                    self.backend
                        .run_profiled(&mut self.train, &refs, &scalars, timing)?;
                (out, Some(p))
            }
        };
        let loss = out[0][0];
        if !loss.is_finite() {
            return Err(ModelError::NonFinite {
                step: self.step,
                what: "the training loss".into(),
                value: loss,
            });
        }
        self.step += 1;
        Ok((loss, profile))
    }

    /// Mean loss in nats per character over fixed, evenly spaced validation windows.
    pub fn validate(&mut self) -> Result<f64> {
        let (b, t) = (self.config.batch, self.model.context);
        let windows = b * self.config.valid_batches;
        let span = self.corpus.valid.len() - t - 1;
        let mut total = 0.0;
        for k in 0..self.config.valid_batches {
            let starts: Vec<usize> = (0..b).map(|j| (k * b + j) * span / windows).collect();
            CharCorpus::windows_at(
                &self.corpus.valid,
                &starts,
                t,
                &mut self.ids,
                &mut self.targets,
            );
            let feeds = self.model.feeds(b, &self.ids, Some(&self.targets));
            let refs: Vec<&[f32]> = feeds.iter().map(Vec::as_slice).collect();
            total +=
                self.backend
                    .run(&mut self.valid, &refs, &Default::default())?[0][0] as f64;
        }
        Ok(total / self.config.valid_batches as f64)
    }

    /// Generates `chars` characters after `prompt`, sampling with `temperature` from `seed`.
    pub fn sample(
        &mut self,
        prompt: &str,
        chars: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<String> {
        let t = self.model.context;
        let mut text = self.corpus.encode(prompt)?;
        if text.is_empty() {
            text.push(0);
        }
        if self.sample.is_none() {
            let rec = self.model.record(&self.store, 1, false)?;
            self.sample = Some(self.backend.compile(&rec.g.finish(), &rec.logits)?);
        }
        let prog = self.sample.as_mut().expect("compiled above");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let start_len = text.len();
        for _ in 0..chars {
            // The last `t` characters, left-aligned; causal models ignore what follows them.
            let from = text.len().saturating_sub(t);
            let window = &text[from..];
            let mut ids = vec![0f32; t];
            for (d, &s) in ids.iter_mut().zip(window) {
                *d = s as f32;
            }
            let pos = window.len() - 1;
            let feeds = self.model.feeds(1, &ids, None);
            let refs: Vec<&[f32]> = feeds.iter().map(Vec::as_slice).collect();
            let out = self.backend.run(prog, &refs, &Default::default())?;
            let v = self.model.vocab;
            let row: &[f32] = if out.len() == 1 {
                &out[0][pos * v..(pos + 1) * v]
            } else {
                &out[pos]
            };
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let weights: Vec<f64> = row
                .iter()
                .map(|&l| ((l as f64 - max) / temperature.max(1e-3)).exp())
                .collect();
            let next = WeightedIndex::new(&weights)
                .map_err(|e| ModelError::Graph(format!("sampling from the logits failed: {e}")))?
                .sample(&mut rng);
            text.push(next as u32);
        }
        Ok(self.corpus.decode(&text[start_len..]))
    }

    /// The parameters and what is needed to rebuild the model (architecture, context, vocabulary).
    pub fn params(&self) -> Result<(Vec<NamedTensor>, BTreeMap<String, String>)> {
        let tensors = self
            .store
            .ids(VarKind::Param)
            .into_iter()
            .map(|id| {
                let info = self.store.get(id);
                Ok(NamedTensor::new(
                    info.name.clone(),
                    info.shape.clone(),
                    self.backend.read_var(id)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut meta = BTreeMap::new();
        meta.insert("model".into(), self.model.arch.name().to_string());
        meta.insert("arch".into(), format!("{:?}", self.model.arch));
        if let CharArch::Transformer { heads, .. } = self.model.arch {
            meta.insert("heads".into(), heads.to_string());
        }
        meta.insert("context".into(), self.model.context.to_string());
        meta.insert("vocab".into(), self.corpus.vocab.iter().collect());
        Ok((tensors, meta))
    }

    /// Number of trainable values.
    pub fn parameter_count(&self) -> usize {
        self.store
            .ids(VarKind::Param)
            .iter()
            .map(|&id| self.store.get(id).numel())
            .sum()
    }

    /// Replaces the parameters (e.g. from a saved file), checking names and shapes.
    pub fn set_params(&mut self, tensors: &[NamedTensor], file: &std::path::Path) -> Result<()> {
        let expected: Vec<(String, Vec<usize>)> = self
            .store
            .ids(VarKind::Param)
            .into_iter()
            .map(|id| {
                (
                    self.store.get(id).name.clone(),
                    self.store.get(id).shape.clone(),
                )
            })
            .collect();
        crate::checkpoint::check_against(tensors, &expected, file)?;
        for t in tensors {
            let id = self.store.find(&t.name).expect("checked");
            self.backend.write_var(id, &t.data);
        }
        Ok(())
    }
}
