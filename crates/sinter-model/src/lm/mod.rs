//! Character-level language models: a small transformer and recurrent models (RNN, LSTM, GRU),
//! their training on random windows of a text, validation loss in nats per character, and sampling.

use crate::backend::Backend;
use crate::checkpoint::{NamedTensor, TrainingCheckpoint};
use crate::data::CharCorpus;
use crate::error::{ModelError, Result};
use crate::graph::{GraphBuilder, NodeId, Tensor};
use crate::nn::Linear;
use crate::nn::Mode;
use crate::nn_seq::{CellKind, Embedding, LayerNorm, Recurrent, TransformerBlock};
use crate::optim::Optimizer;
use crate::parallel::Collective;
use crate::profile::{StepProfile, TimingMethod};
use crate::trainer::{Evaluator, Feeds, Model, Outputs, TrainConfig, Trainer};
use crate::vars::{Init, VarId, VarStore};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::Path;

mod sampler;
pub(crate) use sampler::sample_next;
pub use sampler::CharSampler;

/// The checkpoint metadata key of the training windows' generator position.
const META_WINDOWS_RNG: &str = "windows_rng_word_pos";

/// The architecture of a character model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CharArch {
    /// Token and learned position embeddings, pre-norm [`TransformerBlock`]s, a final layer
    /// norm and a linear head.
    Transformer {
        /// Transformer blocks.
        layers: usize,
        /// Attention heads per block; must divide `width`.
        heads: usize,
        /// Features per position (C).
        width: usize,
    },
    /// A character embedding, one recurrent layer unrolled over the context, a linear head.
    Recurrent {
        /// RNN, LSTM or GRU.
        cell: CellKind,
        /// Size of each character's embedding.
        embed: usize,
        /// Size of the hidden state.
        hidden: usize,
    },
}

impl CharArch {
    /// `char-transformer`, `char-rnn`, `char-lstm` or `char-gru`: the CLI's `--model` name.
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

    /// Refuses sizes the modules cannot be built with, before any is built: a zero width, or
    /// heads that are zero or do not divide the width.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Config(format!("{}: {m}", self.name())));
        match *self {
            CharArch::Transformer { heads, width, .. } => {
                if width == 0 {
                    return bad("the width must be at least 1".into());
                }
                if heads == 0 || width % heads != 0 {
                    return bad(format!(
                        "the width {width} must be a positive multiple of the {heads} heads"
                    ));
                }
            }
            CharArch::Recurrent { embed, hidden, .. } => {
                if embed == 0 || hidden == 0 {
                    return bad(format!(
                        "embedding ({embed}) and hidden ({hidden}) sizes must be at least 1"
                    ));
                }
            }
        }
        Ok(())
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
    /// Which model and its sizes.
    pub arch: CharArch,
    /// Distinct characters: the embedding's rows and the head's outputs.
    pub vocab: usize,
    /// Characters per window (T): the positions a transformer knows, the steps a recurrent
    /// model is unrolled over.
    pub context: usize,
    body: Body,
    head: Linear,
}

/// A recorded model: its logits nodes (one, or one per time step) and its loss node.
struct Recorded {
    logits: Vec<NodeId>,
    loss: Option<Tensor>,
}

impl CharModel {
    /// The modules of `arch` for `vocab` characters and windows of `context`, their parameters
    /// added to `store` (names as in PyTorch: `tok.weight`, `blocks.0.attn.q.weight`, …).
    ///
    /// # Panics
    ///
    /// If the transformer's heads are zero or do not divide its width ([`CharArch::check`]
    /// returns that as an error; [`CharLm::new`] calls it first).
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
    fn record(
        &self,
        g: &GraphBuilder,
        store: &VarStore,
        batch: usize,
        with_loss: bool,
    ) -> Result<Recorded> {
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
                    Some(tg) => Some(g.scoped("loss", || logits.cross_entropy(&tg))?),
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
                    let total = total.ok_or_else(|| {
                        ModelError::Config("a recurrent model needs a context of at least 1".into())
                    })?;
                    Some(total.scale(1.0 / t as f64))
                } else {
                    None
                };
                (logits.iter().map(|l| l.id).collect(), loss)
            }
        };
        Ok(Recorded { logits, loss })
    }

    /// The names of the recorded graph's inputs, in the order [`CharModel::feeds`] lays them out.
    fn feed_names(&self, with_targets: bool) -> Vec<String> {
        let mut names = Vec::new();
        match self.body {
            Body::Transformer { .. } => {
                names.push("ids".to_string());
                if with_targets {
                    names.push("targets".to_string());
                }
            }
            Body::Recurrent { .. } => {
                names.extend((0..self.context).map(|s| format!("ids_{s}")));
                if with_targets {
                    names.extend((0..self.context).map(|s| format!("targets_{s}")));
                }
            }
        }
        names
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

impl Model for CharModel {
    fn forward(
        &self,
        vars: &VarStore,
        g: &GraphBuilder,
        batch: usize,
        _mode: Mode,
    ) -> Result<Outputs> {
        let rec = self.record(g, vars, batch, true)?;
        Ok(Outputs::loss(rec.loss.expect("recorded with a loss")))
    }
}

/// Settings of a language-model run.
#[derive(Clone, Debug)]
pub struct LmConfig {
    /// Windows per training step.
    pub batch: usize,
    /// Micro-batches per step (gradient accumulation, see [`TrainConfig::accumulate`]); 1: none.
    pub accumulate: usize,
    /// Seeds the parameters, the training windows and dropout.
    pub seed: u64,
    /// Validation windows per evaluation (in batches of `batch`).
    pub valid_batches: usize,
    /// Stop with an error when the training loss is NaN or infinite (otherwise the trainer
    /// counts such steps, see [`Trainer::non_finite_steps`]).
    pub stop_on_nan: bool,
    /// Check every value of every training step and stop at the first non-finite one, naming
    /// its node (see [`Backend::run_checked`]); costs nothing when off.
    pub detect_anomaly: bool,
    /// Drop probability of the model's dropout in training, in `[0, 1)`: GPT-2's embeddings,
    /// attention weights and residual branches ([`crate::gpt2::Gpt2::dropout`]). The character models have no
    /// dropout layers and refuse any other value than 0.
    pub dropout: f32,
    /// The memory the backend has (see [`TrainConfig::memory_limit`]); `None`: not checked.
    pub memory_limit: Option<crate::backend::MemoryLimit>,
}

/// The character-model preset on the generic [`Trainer`]: random training windows of the corpus,
/// validation on fixed windows, sampling. Dereferences to its trainer (step, backend, store…).
pub struct CharLm {
    /// The generic trainer that runs the programs.
    pub trainer: Trainer<CharModel>,
    /// The run's settings.
    pub config: LmConfig,
    /// The text, split into training and validation characters.
    pub corpus: CharCorpus,
    sampler: Option<CharSampler>,
    rng: ChaCha8Rng,
    names: Vec<String>,
    ids: Vec<f32>,
    targets: Vec<f32>,
}

impl std::ops::Deref for CharLm {
    type Target = Trainer<CharModel>;
    fn deref(&self) -> &Self::Target {
        &self.trainer
    }
}

impl std::ops::DerefMut for CharLm {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.trainer
    }
}

impl CharLm {
    /// Builds the model (seeded by `config.seed`) and compiles its training step.
    /// [`ModelError::Config`] for sizes [`CharArch::check`] refuses, a context of 0, or a
    /// context as long as the corpus's training or validation split.
    pub fn new(
        arch: CharArch,
        context: usize,
        corpus: CharCorpus,
        backend: Backend,
        optimizer: Optimizer,
        config: LmConfig,
    ) -> Result<Self> {
        Self::build(arch, context, corpus, backend, optimizer, config, None)
    }

    /// A character model that trains data-parallel with the other ranks of `collective`:
    /// `config.batch` is the global batch of windows, which must divide evenly over the ranks.
    /// Every rank draws the windows of the whole global batch (so the generator stays where one
    /// process would have it) and trains on its contiguous shard; the ranks check that they were
    /// started with the same model, context and text, then take rank 0's parameters.
    pub fn data_parallel(
        arch: CharArch,
        context: usize,
        corpus: CharCorpus,
        backend: Backend,
        optimizer: Optimizer,
        config: LmConfig,
        collective: Box<dyn Collective>,
    ) -> Result<Self> {
        Self::build(
            arch,
            context,
            corpus,
            backend,
            optimizer,
            config,
            Some(collective),
        )
    }

    fn build(
        arch: CharArch,
        context: usize,
        corpus: CharCorpus,
        backend: Backend,
        optimizer: Optimizer,
        config: LmConfig,
        collective: Option<Box<dyn Collective>>,
    ) -> Result<Self> {
        arch.check()?;
        if context == 0 {
            return Err(ModelError::Config(
                "the context must be at least 1 character".into(),
            ));
        }
        if config.dropout != 0.0 {
            return Err(ModelError::Config(format!(
                "dropout {}: the character models have no dropout layers (GPT-2 has)",
                config.dropout
            )));
        }
        if corpus.train.len() <= context + 1 || corpus.valid.len() <= context + 1 {
            return Err(ModelError::Config(format!(
                "context {context} is longer than the text's splits ({} training, {} validation characters)",
                corpus.train.len(),
                corpus.valid.len()
            )));
        }
        let mut init = Init::new(config.seed);
        let mut store = VarStore::new();
        let model = CharModel::new(&mut store, arch, corpus.vocab_size(), context, &mut init);
        let names = model.feed_names(true);
        let train = TrainConfig {
            batch: config.batch,
            accumulate: config.accumulate,
            seed: config.seed,
            stop_on_nan: config.stop_on_nan,
            detect_anomaly: config.detect_anomaly,
            memory_limit: config.memory_limit.clone(),
        };
        let trainer = match collective {
            None => Trainer::new(model, store, backend, optimizer, train)?,
            Some(collective) => {
                let settings: Vec<(String, String)> = model_meta(&model, &corpus)
                    .into_iter()
                    .map(|(k, v)| (format!("character model {k}"), v))
                    .collect();
                Trainer::data_parallel(
                    model, store, backend, optimizer, train, collective, &settings,
                )?
            }
        };
        Ok(Self {
            trainer,
            corpus,
            sampler: None,
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x7e47),
            names,
            ids: Vec::new(),
            targets: Vec::new(),
            config,
        })
    }

    /// One step on random training windows; returns the training loss (nats per character).
    pub fn train_step(&mut self) -> Result<f32> {
        Ok(self.step_on(None)?.0)
    }

    /// [`CharLm::train_step`] without waiting for it (see [`Trainer::submit`]): the windows are
    /// drawn and the step queued; [`CharLm::complete_step`] returns its loss.
    pub fn submit_step(&mut self) -> Result<()> {
        let laid = self.next_windows();
        let feeds = named(&self.names, &laid);
        self.trainer.submit(&feeds)
    }

    /// The training loss of the oldest step from [`CharLm::submit_step`], once it has run.
    pub fn complete_step(&mut self) -> Result<f32> {
        Ok(self.trainer.complete()?.loss)
    }

    /// [`CharLm::train_step`] with every kernel timed and tagged (see
    /// [`Backend::run_profiled`]); `timing` picks how a GPU times its dispatches.
    pub fn train_step_profiled(
        &mut self,
        timing: Option<TimingMethod>,
    ) -> Result<(f32, StepProfile)> {
        let (loss, profile) = self.step_on(Some(timing))?;
        Ok((loss, profile.expect("a profiled step returns its profile")))
    }

    /// One step; profiled when `profile` is `Some(timing)`.
    fn step_on(
        &mut self,
        profile: Option<Option<TimingMethod>>,
    ) -> Result<(f32, Option<StepProfile>)> {
        let laid = self.next_windows();
        let feeds = named(&self.names, &laid);
        Ok(match profile {
            None => (self.trainer.step(&feeds)?.loss, None),
            Some(timing) => {
                let (r, p) = self.trainer.step_profiled(&feeds, timing)?;
                (r.loss, Some(p))
            }
        })
    }

    /// Draws the next random training windows: this rank's feeds, laid out for the model.
    fn next_windows(&mut self) -> Vec<Vec<f32>> {
        let (b, t) = (self.config.batch, self.trainer.model.context);
        CharCorpus::windows(
            &self.corpus.train,
            b,
            t,
            &mut self.rng,
            &mut self.ids,
            &mut self.targets,
        );
        // Data parallel: this rank's contiguous shard of the global batch's windows.
        let (rank, _) = self.trainer.rank_and_size();
        let local = self.trainer.local_batch();
        let mine = rank * local * t..(rank + 1) * local * t;
        self.trainer
            .model
            .feeds(local, &self.ids[mine.clone()], Some(&self.targets[mine]))
    }

    /// Mean loss in nats per character over fixed, evenly spaced validation windows.
    pub fn validate(&mut self) -> Result<f64> {
        let (b, t) = (self.config.batch, self.trainer.model.context);
        let mut total = 0.0;
        for starts in window_starts(self.corpus.valid.len(), t, b, self.config.valid_batches) {
            CharCorpus::windows_at(
                &self.corpus.valid,
                &starts,
                t,
                &mut self.ids,
                &mut self.targets,
            );
            let laid = self.trainer.model.feeds(b, &self.ids, Some(&self.targets));
            let feeds = named(&self.names, &laid);
            total += self.trainer.evaluate_batch(b, &feeds)?.loss as f64;
        }
        Ok(total / self.config.valid_batches.max(1) as f64)
    }

    /// Generates `chars` characters after `prompt`, sampling with `temperature` from `seed`.
    pub fn sample(
        &mut self,
        prompt: &str,
        chars: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<String> {
        if self.sampler.is_none() {
            let t = &self.trainer;
            self.sampler = Some(CharSampler::compile(&t.model, &t.store, &t.backend)?);
        }
        let sampler = self.sampler.as_mut().expect("compiled above");
        sampler.sample(
            &self.trainer.model,
            &mut self.trainer.backend,
            &self.corpus,
            prompt,
            chars,
            temperature,
            seed,
        )
    }

    /// The parameters and what is needed to rebuild the model (architecture, context, vocabulary).
    pub fn params(&self) -> Result<(Vec<NamedTensor>, BTreeMap<String, String>)> {
        let tensors = self.trainer.params()?;
        Ok((tensors, model_meta(&self.trainer.model, &self.corpus)))
    }

    /// Everything needed to continue this run exactly: the trainer's checkpoint (parameters,
    /// optimizer state, step, dropout generator), the model's description and the position of
    /// the generator that draws the training windows.
    pub fn checkpoint(&self) -> Result<TrainingCheckpoint> {
        let mut meta = model_meta(&self.trainer.model, &self.corpus);
        meta.insert(META_WINDOWS_RNG.into(), self.rng.get_word_pos().to_string());
        self.trainer.checkpoint(meta)
    }

    /// Continues from a checkpoint of the same model, context and text (`file` names it in
    /// errors): a resumed run draws the windows an uninterrupted one would have drawn.
    pub fn restore(&mut self, ckpt: &TrainingCheckpoint, file: &Path) -> Result<()> {
        let now = model_meta(&self.trainer.model, &self.corpus);
        for (key, what) in [
            ("model", "model"),
            ("arch", "architecture"),
            ("context", "context"),
            ("vocab", "text's characters"),
        ] {
            let saved = ckpt.meta.get(key).map(String::as_str).unwrap_or("?");
            let mine = now.get(key).map(String::as_str).unwrap_or("?");
            if saved != mine {
                let shown = |v: &str| {
                    if key == "vocab" {
                        format!("{} distinct characters", v.chars().count())
                    } else {
                        v.to_string()
                    }
                };
                return Err(ModelError::checkpoint(
                    file,
                    format!(
                        "was saved with {what} {} but this run has {}",
                        shown(saved),
                        shown(mine)
                    ),
                ));
            }
        }
        let word_pos: u128 = ckpt
            .meta
            .get(META_WINDOWS_RNG)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                ModelError::checkpoint(file, "has no position of the training-window generator")
            })?;
        self.trainer.restore(ckpt, file)?;
        self.rng.set_word_pos(word_pos);
        Ok(())
    }

    /// The position of the generator that draws the training windows (ranks compare it).
    pub fn windows_position(&self) -> u128 {
        self.rng.get_word_pos()
    }
}

/// What a saved character model needs besides its tensors: architecture, context, vocabulary.
fn model_meta(model: &CharModel, corpus: &CharCorpus) -> BTreeMap<String, String> {
    let mut meta = BTreeMap::new();
    meta.insert("model".into(), model.arch.name().to_string());
    meta.insert("arch".into(), format!("{:?}", model.arch));
    if let CharArch::Transformer { heads, .. } = model.arch {
        meta.insert("heads".into(), heads.to_string());
    }
    meta.insert("context".into(), model.context.to_string());
    meta.insert("vocab".into(), corpus.vocab.iter().collect());
    meta
}

/// The starts of `batches` batches of `batch` windows of `context + 1` characters spread evenly
/// over a text of `len` characters (longer than `context + 1`): the same windows every time.
fn window_starts(len: usize, context: usize, batch: usize, batches: usize) -> Vec<Vec<usize>> {
    let windows = batch * batches;
    let span = len - context - 1;
    (0..batches)
        .map(|k| {
            (0..batch)
                .map(|j| (k * batch + j) * span / windows)
                .collect()
        })
        .collect()
}

/// A saved character model compiled for evaluation only (no training program, gradients or
/// optimizer state): what `sinter eval` runs on a character model.
impl Evaluator<CharModel> {
    /// Mean loss in nats per character over `batches` batches of `batch` windows spread evenly
    /// over `text` (ids in the model's vocabulary): with the training's `--batch` and 16
    /// batches, the windows [`CharLm::validate`] reports on.
    pub fn nats_per_char(&mut self, text: &[u32], batch: usize, batches: usize) -> Result<f64> {
        let t = self.model.context;
        if text.len() <= t + 1 || batch == 0 || batches == 0 {
            return Err(ModelError::Config(format!(
                "{} characters of text, {batch} windows per batch and {batches} batches: need at least one window of context {t} + 1 characters",
                text.len()
            )));
        }
        let names = self.model.feed_names(true);
        let (mut ids, mut targets) = (Vec::new(), Vec::new());
        let mut total = 0.0;
        for starts in window_starts(text.len(), t, batch, batches) {
            CharCorpus::windows_at(text, &starts, t, &mut ids, &mut targets);
            let laid = self.model.feeds(batch, &ids, Some(&targets));
            let feeds = named(&names, &laid);
            total += self.evaluate_batch(batch, &feeds)?.loss as f64;
        }
        Ok(total / batches as f64)
    }
}

/// Pairs input names with laid-out feeds.
fn named<'a>(names: &'a [String], laid: &'a [Vec<f32>]) -> Feeds<'a> {
    names
        .iter()
        .zip(laid)
        .fold(Feeds::new(), |f, (n, v)| f.with(n, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_the_modules_cannot_build_are_config_errors() {
        let t = |heads, width| CharArch::Transformer {
            layers: 1,
            heads,
            width,
        };
        assert!(t(4, 64).check().is_ok());
        for (heads, width) in [(0, 64), (5, 64), (4, 0)] {
            let e = t(heads, width).check().unwrap_err();
            assert!(matches!(e, ModelError::Config(_)), "{e}");
            assert!(e.to_string().starts_with("char-transformer: "), "{e}");
        }
        let r = CharArch::Recurrent {
            cell: CellKind::Lstm,
            embed: 0,
            hidden: 8,
        };
        assert!(r.check().unwrap_err().to_string().contains("at least 1"));
    }
}
