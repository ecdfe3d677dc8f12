//! GPT-2: the model ([`Gpt2`]), its sizes ([`Gpt2Config`]), Hugging Face folders both ways
//! ([`hf`]), and the training preset [`Gpt2Lm`] on the generic trainer, with sampling.

pub mod config;
pub mod hf;
pub mod model;

pub use config::{Activation, Gpt2Config, GPT2_VOCAB, PRESETS};
pub use model::{Block, Conv1D, Gpt2};

use crate::backend::{Backend, Program};
use crate::checkpoint::{NamedTensor, TrainingCheckpoint};
use crate::data::TokenCorpus;
use crate::error::{ModelError, Result};
use crate::graph::GraphBuilder;
use crate::lm::LmConfig;
use crate::optim::Optimizer;
use crate::parallel::Collective;
use crate::profile::{StepProfile, TimingMethod};
use crate::trainer::{Feeds, TrainConfig, Trainer};
use crate::vars::{Init, VarStore};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::Path;

/// Checkpoint metadata: the random windows' generator position, or the next batch in file order.
const META_WINDOWS_RNG: &str = "windows_rng_word_pos";
const META_NEXT_BATCH: &str = "next_batch";

/// How the training windows are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowOrder {
    /// At random starts, from a generator seeded by the run's seed.
    Random,
    /// In file order: batch i holds the windows starting at `(i·B + b)·T`, b = 0..B−1.
    Sequential,
}

/// The GPT-2 preset on the generic [`Trainer`]: training windows of a token corpus, validation
/// on fixed windows, sampling. Dereferences to its trainer.
pub struct Gpt2Lm {
    /// The generic trainer that runs the programs.
    pub trainer: Trainer<Gpt2>,
    /// The run's settings.
    pub config: LmConfig,
    /// The training and validation tokens.
    pub corpus: TokenCorpus,
    /// How the training windows are drawn.
    pub order: WindowOrder,
    rng: ChaCha8Rng,
    next_batch: u64,
    sampler: Option<Gpt2Sampler>,
    ids: Vec<f32>,
    targets: Vec<f32>,
}

impl std::ops::Deref for Gpt2Lm {
    type Target = Trainer<Gpt2>;
    fn deref(&self) -> &Self::Target {
        &self.trainer
    }
}

impl std::ops::DerefMut for Gpt2Lm {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.trainer
    }
}

impl Gpt2Lm {
    /// Builds a GPT-2 of `model` sizes (seeded by `config.seed`) for windows of `context`
    /// tokens and compiles its training step; with a `collective`, data parallel as
    /// [`Trainer::data_parallel`]. [`ModelError::Config`] for sizes the model refuses, a
    /// corpus whose ids do not fit the vocabulary, or splits no longer than the context.
    #[allow(clippy::too_many_arguments)] // the model, its data and how it trains
    pub fn new(
        model: Gpt2Config,
        context: usize,
        corpus: TokenCorpus,
        order: WindowOrder,
        backend: Backend,
        optimizer: Optimizer,
        config: LmConfig,
        collective: Option<Box<dyn Collective>>,
    ) -> Result<Self> {
        if corpus.vocab_size > model.vocab_size {
            return Err(ModelError::Config(format!(
                "the data's vocabulary has {} ids but the model's vocab_size is {}",
                corpus.vocab_size, model.vocab_size
            )));
        }
        if corpus.train.len() <= context + 1 || corpus.valid.len() <= context + 1 {
            return Err(ModelError::Config(format!(
                "context {context} is longer than the data's splits ({} training, {} validation tokens)",
                corpus.train.len(),
                corpus.valid.len()
            )));
        }
        let mut init = Init::new(config.seed);
        let mut store = VarStore::new();
        let mut gpt = Gpt2::new(&mut store, model, context, &mut init)?;
        if !(0.0..1.0).contains(&config.dropout) {
            return Err(ModelError::Config(format!(
                "gpt2: the dropout {} must lie in [0, 1)",
                config.dropout
            )));
        }
        gpt.dropout = config.dropout;
        // The head and loss in chunks that each fit the device's binding limit.
        gpt.head_rows = gpt.head_rows_for(backend.max_buffer_bytes());
        let train = TrainConfig {
            batch: config.batch,
            accumulate: config.accumulate,
            seed: config.seed,
            stop_on_nan: config.stop_on_nan,
            detect_anomaly: config.detect_anomaly,
            memory_limit: config.memory_limit.clone(),
        };
        let trainer = match collective {
            None => Trainer::new(gpt, store, backend, optimizer, train)?,
            Some(c) => {
                let settings: Vec<(String, String)> = model_meta(&gpt)
                    .into_iter()
                    .map(|(k, v)| (format!("gpt2 {k}"), v))
                    .chain([
                        (
                            "training tokens".to_string(),
                            corpus.train.len().to_string(),
                        ),
                        ("window order".to_string(), format!("{order:?}")),
                    ])
                    .collect();
                Trainer::data_parallel(gpt, store, backend, optimizer, train, c, &settings)?
            }
        };
        Ok(Self {
            trainer,
            corpus,
            order,
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x7e47),
            next_batch: 0,
            sampler: None,
            ids: Vec::new(),
            targets: Vec::new(),
            config,
        })
    }

    /// One step on the next training windows; returns the training loss (nats per token).
    pub fn train_step(&mut self) -> Result<f32> {
        Ok(self.step_on(None)?.0)
    }

    /// [`Gpt2Lm::train_step`] with every kernel timed (see [`Backend::run_profiled`]).
    pub fn train_step_profiled(
        &mut self,
        timing: Option<TimingMethod>,
    ) -> Result<(f32, StepProfile)> {
        let (loss, p) = self.step_on(Some(timing))?;
        Ok((loss, p.expect("a profiled step returns its profile")))
    }

    /// [`Self::train_step`] without waiting for it (see [`Trainer::submit`]): the windows are
    /// drawn and the step queued; [`Self::complete_step`] returns its loss.
    pub fn submit_step(&mut self) -> Result<()> {
        let mine = self.next_windows();
        let feeds = Feeds::new()
            .with("ids", &self.ids[mine.clone()])
            .with("targets", &self.targets[mine]);
        self.trainer.submit(&feeds)
    }

    /// The training loss of the oldest step from [`Self::submit_step`], once it has run.
    pub fn complete_step(&mut self) -> Result<f32> {
        Ok(self.trainer.complete()?.loss)
    }

    fn step_on(
        &mut self,
        profile: Option<Option<TimingMethod>>,
    ) -> Result<(f32, Option<StepProfile>)> {
        let mine = self.next_windows();
        let feeds = Feeds::new()
            .with("ids", &self.ids[mine.clone()])
            .with("targets", &self.targets[mine]);
        Ok(match profile {
            None => (self.trainer.step(&feeds)?.loss, None),
            Some(timing) => {
                let (r, p) = self.trainer.step_profiled(&feeds, timing)?;
                (r.loss, Some(p))
            }
        })
    }

    /// Draws the next training windows into `ids` and `targets`; returns this rank's range of
    /// them.
    fn next_windows(&mut self) -> std::ops::Range<usize> {
        let (b, t) = (self.config.batch, self.trainer.model.context);
        let split = &self.corpus.train;
        match self.order {
            WindowOrder::Random => TokenCorpus::random_windows(
                split,
                b,
                t,
                &mut self.rng,
                &mut self.ids,
                &mut self.targets,
            ),
            WindowOrder::Sequential => {
                TokenCorpus::sequential_windows(
                    split,
                    self.next_batch,
                    b,
                    t,
                    &mut self.ids,
                    &mut self.targets,
                );
                self.next_batch += 1;
            }
        }
        // Data parallel: this rank's contiguous shard of the global batch.
        let (rank, _) = self.trainer.rank_and_size();
        let local = self.trainer.local_batch();
        rank * local * t..(rank + 1) * local * t
    }

    /// Mean loss in nats per token over fixed, evenly spaced validation windows.
    pub fn validate(&mut self) -> Result<f64> {
        let (b, t) = (self.config.batch, self.trainer.model.context);
        let batches = self.config.valid_batches.max(1);
        let span = self.corpus.valid.len() - t - 1;
        let mut total = 0.0;
        for k in 0..batches {
            let starts: Vec<usize> = (0..b).map(|j| (k * b + j) * span / (b * batches)).collect();
            TokenCorpus::windows_at(
                &self.corpus.valid,
                &starts,
                t,
                &mut self.ids,
                &mut self.targets,
            );
            let feeds = Feeds::new()
                .with("ids", &self.ids)
                .with("targets", &self.targets);
            total += self.trainer.evaluate_batch(b, &feeds)?.loss as f64;
        }
        Ok(total / batches as f64)
    }

    /// `tokens` ids sampled after `prompt` with `temperature` from `seed`.
    pub fn sample(
        &mut self,
        prompt: &[u32],
        tokens: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<u32>> {
        if self.sampler.is_none() {
            let t = &self.trainer;
            self.sampler = Some(Gpt2Sampler::compile(&t.model, &t.store, &t.backend)?);
        }
        let s = self.sampler.as_mut().expect("compiled above");
        s.sample(
            &self.trainer.model,
            &mut self.trainer.backend,
            prompt,
            tokens,
            temperature,
            seed,
        )
    }

    /// The parameters under `GPT2LMHeadModel`'s names.
    pub fn params(&self) -> Result<Vec<NamedTensor>> {
        self.trainer.params()
    }

    /// Everything needed to continue this run exactly: the trainer's checkpoint, the model's
    /// sizes and the position of the training windows.
    pub fn checkpoint(&self) -> Result<TrainingCheckpoint> {
        let mut meta = model_meta(&self.trainer.model);
        meta.insert(META_WINDOWS_RNG.into(), self.rng.get_word_pos().to_string());
        meta.insert(META_NEXT_BATCH.into(), self.next_batch.to_string());
        self.trainer.checkpoint(meta)
    }

    /// Continues from a checkpoint of the same model sizes and context (`file` names it).
    pub fn restore(&mut self, ckpt: &TrainingCheckpoint, file: &Path) -> Result<()> {
        let now = model_meta(&self.trainer.model);
        for (key, mine) in &now {
            // Checkpoints from before dropout existed trained without it.
            let absent = if key == "dropout" { "0" } else { "?" };
            let saved = ckpt.meta.get(key).map(String::as_str).unwrap_or(absent);
            if saved != mine {
                return Err(ModelError::checkpoint(
                    file,
                    format!("was saved with gpt2 {key} {saved} but this run has {mine}"),
                ));
            }
        }
        let number = |key: &str| -> Result<u128> {
            ckpt.meta
                .get(key)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ModelError::checkpoint(file, format!("has no {key}")))
        };
        let (word_pos, next) = (number(META_WINDOWS_RNG)?, number(META_NEXT_BATCH)?);
        self.trainer.restore(ckpt, file)?;
        self.rng.set_word_pos(word_pos);
        self.next_batch = next as u64;
        Ok(())
    }

    /// Where the training windows stand (ranks compare it): the generator's position and the
    /// next batch in file order.
    pub fn windows_position(&self) -> String {
        format!("{} / {}", self.rng.get_word_pos(), self.next_batch)
    }
}

/// What identifies a GPT-2 run's model in its checkpoints.
fn model_meta(m: &Gpt2) -> BTreeMap<String, String> {
    let c = &m.config;
    BTreeMap::from([
        ("model".into(), "gpt2".into()),
        (
            "gpt2".into(),
            format!(
                "n_layer {} n_head {} n_embd {} n_positions {} vocab_size {} eps {} {}",
                c.n_layer,
                c.n_head,
                c.n_embd,
                c.n_positions,
                c.vocab_size,
                c.layer_norm_epsilon,
                c.activation.hf_name()
            ),
        ),
        ("context".into(), m.context.to_string()),
        ("dropout".into(), m.dropout.to_string()),
    ])
}

/// A compiled logits-only program of one window, to generate tokens.
pub struct Gpt2Sampler {
    program: Program,
}

impl Gpt2Sampler {
    /// Compiles `model`'s logits for one window on `backend`, which must hold `store`'s variables.
    pub fn compile(model: &Gpt2, store: &VarStore, backend: &Backend) -> Result<Self> {
        let g = GraphBuilder::new();
        let logits = model.record_logits(store, &g, 1)?;
        Ok(Self {
            program: backend.compile(&g.finish(), &[logits.id])?,
        })
    }

    /// The logits `[context · vocab]` of one window of ids (at most `context`, left-aligned).
    pub fn logits(
        &mut self,
        model: &Gpt2,
        backend: &mut Backend,
        window: &[u32],
    ) -> Result<Vec<f32>> {
        let mut ids = vec![0f32; model.context];
        for (d, &s) in ids.iter_mut().zip(window) {
            *d = s as f32;
        }
        let out = backend.run(&mut self.program, &[&ids], &Default::default())?;
        Ok(out.into_iter().next().unwrap_or_default())
    }

    /// `tokens` ids after `prompt` (an empty prompt starts from id 0), sampled with
    /// `temperature` (> 0; small values approach greedy decoding) from `seed`.
    pub fn sample(
        &mut self,
        model: &Gpt2,
        backend: &mut Backend,
        prompt: &[u32],
        tokens: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<u32>> {
        let (t, v) = (model.context, model.config.vocab_size);
        let mut text = prompt.to_vec();
        if text.is_empty() {
            text.push(0);
        }
        if let Some(&bad) = text.iter().find(|&&i| i as usize >= v) {
            return Err(ModelError::Config(format!(
                "the prompt holds id {bad}, outside the model's vocabulary of {v}"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let start = text.len();
        for _ in 0..tokens {
            // The last `t` ids; a causal model ignores the padding after them.
            let from = text.len().saturating_sub(t);
            let window = &text[from..];
            let pos = window.len() - 1;
            let logits = self.logits(model, backend, window)?;
            let row = &logits[pos * v..(pos + 1) * v];
            text.push(crate::lm::sample_next(row, temperature, &mut rng)? as u32);
        }
        Ok(text.split_off(start))
    }
}
