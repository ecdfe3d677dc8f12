//! `sinter train --model char-transformer|char-rnn|char-lstm|char-gru`: a character-level language
//! model on the built-in tiny-shakespeare text (or `--data FILE`), given to the shared training
//! loop and validated in nats per character.

use super::train::{batch_split, optimizer, settings, ModelName, Ranks, TrainArgs};
use super::train_loop::{self, loss_text, Eval, Pace, Step, Task};
use super::{CliError, Result};
use sinter_device::DeviceChoice;
use sinter_model::checkpoint::{save_safetensors, TrainingCheckpoint};
use sinter_model::data::CharCorpus;
use sinter_model::lm::{CharArch, CharLm, CharModel, LmConfig};
use sinter_model::nn_seq::CellKind;
use sinter_model::trainer::Trainer;
use sinter_model::{Backend, ModelError};
use std::path::Path;

impl Task for CharLm {
    type M = CharModel;
    fn trainer(&self) -> &Trainer<CharModel> {
        &self.trainer
    }
    fn trainer_mut(&mut self) -> &mut Trainer<CharModel> {
        &mut self.trainer
    }
    fn step(&mut self, profile: bool) -> Result<Step, ModelError> {
        let (loss, profile) = if profile {
            let (loss, p) = self.train_step_profiled(None)?;
            (loss, Some(p))
        } else {
            (self.train_step()?, None)
        };
        Ok(Step {
            loss,
            correct: None,
            profile,
        })
    }
    fn submit(&mut self) -> Result<(), ModelError> {
        self.submit_step()
    }
    fn complete(&mut self) -> Result<Step, ModelError> {
        Ok(Step {
            loss: self.complete_step()?,
            correct: None,
            profile: None,
        })
    }
    fn evaluate(&mut self) -> Result<Eval, ModelError> {
        Ok(Eval {
            loss: self.validate()?,
            accuracy: None,
            examples: self.config.batch * self.config.valid_batches,
        })
    }
    fn checkpoint(&self) -> Result<TrainingCheckpoint, ModelError> {
        CharLm::checkpoint(self)
    }
    fn restore(&mut self, ckpt: &TrainingCheckpoint, path: &Path) -> Result<(), ModelError> {
        CharLm::restore(self, ckpt, path)
    }
    fn data_state(&self) -> Vec<(String, String)> {
        vec![(
            "training-window generator".into(),
            self.windows_position().to_string(),
        )]
    }
}

/// The architecture the options describe.
pub fn arch(model: ModelName, width: usize, layers: usize, heads: usize) -> Result<CharArch> {
    // The options refuse these when parsed; a saved model's metadata or shapes may still hold them.
    if width == 0 {
        return Err(CliError::Usage("--width must be at least 1".into()));
    }
    let recurrent = |cell| CharArch::Recurrent {
        cell,
        embed: width.min(64),
        hidden: width,
    };
    Ok(match model {
        ModelName::CharTransformer => {
            if heads == 0 {
                return Err(CliError::Usage("--heads must be at least 1".into()));
            }
            if layers == 0 {
                return Err(CliError::Usage("--layers must be at least 1".into()));
            }
            if width % heads != 0 {
                return Err(CliError::Usage(format!(
                    "--width {width} must be a multiple of --heads {heads}"
                )));
            }
            CharArch::Transformer {
                layers,
                heads,
                width,
            }
        }
        ModelName::CharRnn => recurrent(CellKind::Rnn),
        ModelName::CharLstm => recurrent(CellKind::Lstm),
        ModelName::CharGru => recurrent(CellKind::Gru),
        ModelName::Gpt2 => {
            return Err(CliError::Usage(
                "gpt2 is not a character model: it trains with `sinter train --model gpt2` and is saved as a Hugging Face folder (config.json, model.safetensors), which `sinter sample DIR` reads".into(),
            ))
        }
        ModelName::Cnn | ModelName::Mlp | ModelName::Resnet => unreachable!("image models"),
    })
}

pub(super) fn run(args: &TrainArgs, choice: DeviceChoice, ranks: Ranks) -> Result<()> {
    let root = ranks.rank == 0;
    let corpus = match &args.data {
        Some(path) => CharCorpus::load(path)?,
        None => CharCorpus::embedded()?,
    };
    let arch = arch(
        args.model,
        args.width_or_default(),
        args.layers_or_default(),
        args.heads_or_default(),
    )?;
    let context = args.context_or_default();
    let batch = args.batch.unwrap_or(32);
    let accumulate = args.accumulate_over(batch, ranks.size)?;
    let steps = args.steps.unwrap_or(600);
    let (backend, notice) = Backend::open_nth(choice, ranks.local_rank)?;
    if let (Some(n), true) = (notice, root) {
        eprintln!("{n}");
    }
    let opt = optimizer(args, steps, (steps / 4).max(1))?;
    let config = LmConfig {
        batch,
        accumulate,
        seed: args.seed,
        valid_batches: args.eval_batches.unwrap_or(16),
        stop_on_nan: args.stop_on_nan,
        detect_anomaly: args.detect_anomaly,
        dropout: 0.0,
        memory_limit: super::memory::limit_for(&backend)?,
    };
    let vocab = corpus.vocab_size();
    let lower = [("--batch", batch), ("--context", context)];
    let too_big = |e| super::memory::explain(e, &lower);
    let mut lm = match ranks.collective {
        None => CharLm::new(arch, context, corpus, backend, opt, config).map_err(too_big)?,
        Some(collective) => {
            CharLm::data_parallel(arch, context, corpus, backend, opt, config, collective)
                .map_err(too_big)?
        }
    };
    let settings = settings(args, batch, steps, &lm.optimizer);
    if root {
        eprintln!(
            "training {} ({} parameters, vocabulary {vocab}, context {}) on {} for {steps} steps, batch {batch}{}",
            arch.name(),
            lm.parameter_count(),
            context,
            lm.backend.describe(),
            batch_split(batch, ranks.size, accumulate, lm.gradient_bytes()),
        );
    }
    let pace = Pace {
        total_steps: steps,
        eval_every: (steps / 6).max(1),
        steps_per_epoch: None,
        batch,
        rate_per_step: batch * context,
        rate_unit: "chars/s",
        evaluating: "validating…".into(),
        rank: ranks.rank,
        ranks: ranks.size,
    };
    let save_model = |lm: &CharLm, path: &Path| -> Result<()> {
        let (tensors, meta) = lm.params()?;
        Ok(save_safetensors(path, &tensors, &meta)?)
    };
    let Some(done) = train_loop::train(&mut lm, args, &settings, &pace, &save_model)? else {
        return Ok(());
    };
    if let Some(path) = &args.save {
        save_model(&lm, path)?;
        eprintln!("saved parameters to {}", path.display());
    }
    if args.sample > 0 {
        let text = lm.sample("\n", args.sample, 0.8, args.seed)?;
        println!("---\n{text}\n---");
    }
    println!(
        "validation loss {} nats/char after {} steps · final train loss {} · {:.1} ms/step · {:.1} s · {}",
        // Three decimals, as `sinter eval` prints it; a diverged run's in scientific notation.
        if done.eval.loss.abs() < 1e4 {
            format!("{:.3}", done.eval.loss)
        } else {
            loss_text(done.eval.loss)
        },
        done.steps,
        loss_text(done.last_loss as f64),
        done.train_secs * 1000.0 / done.steps.max(1) as f64,
        done.train_secs,
        lm.backend.describe()
    );
    if args.profile {
        println!();
        super::profile::report(
            &lm.backend,
            &done.profiles,
            true,
            false,
            args.trace.as_ref(),
        )?;
    }
    Ok(())
}
