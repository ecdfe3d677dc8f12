//! `sinter train --model gpt2`: GPT-2 from a preset, from sizes, or from a Hugging Face folder
//! (`--init DIR`), on a text (characters or `--tokenizer`) or nanoGPT token files; `--save DIR`.

use super::train::{batch_split, optimizer, settings, Ranks, TrainArgs};
use super::train_loop::{self, loss_text, Eval, Pace, Step, Task};
use super::{CliError, Result};
use sinter_device::DeviceChoice;
use sinter_model::checkpoint::TrainingCheckpoint;
use sinter_model::data::{CharCorpus, TokenCorpus, Tokenizer};
use sinter_model::gpt2::hf::{self, CONFIG_FILE, WEIGHTS_FILE};
use sinter_model::gpt2::{Gpt2, Gpt2Config, Gpt2Lm, WindowOrder, GPT2_VOCAB};
use sinter_model::lm::LmConfig;
use sinter_model::trainer::Trainer;
use sinter_model::{Backend, ModelError};
use std::path::{Path, PathBuf};

/// The tokenizer file a folder written by `--save` carries, read by `sinter sample DIR`.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

impl Task for Gpt2Lm {
    type M = Gpt2;
    fn trainer(&self) -> &Trainer<Gpt2> {
        &self.trainer
    }
    fn trainer_mut(&mut self) -> &mut Trainer<Gpt2> {
        &mut self.trainer
    }
    fn init_from(&mut self, dir: &Path) -> Result<()> {
        let (_, tensors) = hf::read_dir(dir)?;
        self.trainer.set_params(&tensors, &dir.join(WEIGHTS_FILE))?;
        Ok(())
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
        Gpt2Lm::checkpoint(self)
    }
    fn restore(&mut self, ckpt: &TrainingCheckpoint, path: &Path) -> Result<(), ModelError> {
        Gpt2Lm::restore(self, ckpt, path)
    }
    fn data_state(&self) -> Vec<(String, String)> {
        vec![("training windows".into(), self.windows_position())]
    }
}

/// The sizes the options give (`vocab_size` is set from the data later): `--init DIR`'s
/// config.json, a `--size` preset, or `--layers/--heads/--width` with `--context` positions.
/// A size option that disagrees with `--init`'s folder or with `--size` is an error.
pub fn architecture(args: &TrainArgs) -> Result<Gpt2Config> {
    let given = [
        ("--layers", args.layers),
        ("--heads", args.heads),
        ("--width", args.width),
    ];
    let check = |config: &Gpt2Config, from: &str| -> Result<()> {
        for ((option, value), has) in
            given
                .iter()
                .zip([config.n_layer, config.n_head, config.n_embd])
        {
            if let Some(v) = value {
                if *v != has {
                    return Err(CliError::Usage(format!(
                        "{option} {v} conflicts with {from}, which has {has}; leave {option} out"
                    )));
                }
            }
        }
        Ok(())
    };
    if let Some(dir) = &args.init {
        let path = dir.join(CONFIG_FILE);
        if !dir.is_dir() {
            return Err(CliError::Usage(format!(
                "--init {}: --model gpt2 starts from a folder holding {CONFIG_FILE} and {WEIGHTS_FILE} (as `save_pretrained` or `sinter train --save DIR` write it)",
                dir.display()
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let config = Gpt2Config::from_json(&text, &path)?;
        let from = format!("--init {}", dir.display());
        if let Some(size) = &args.size {
            let preset =
                Gpt2Config::preset(size).map_err(|e| CliError::Usage(format!("--size: {e}")))?;
            if (
                preset.n_layer,
                preset.n_head,
                preset.n_embd,
                preset.n_positions,
            ) != (
                config.n_layer,
                config.n_head,
                config.n_embd,
                config.n_positions,
            ) {
                return Err(CliError::Usage(format!(
                    "--size {size} conflicts with {from}: its {CONFIG_FILE} has n_layer {}, n_head {}, n_embd {}, n_positions {}; leave --size out",
                    config.n_layer, config.n_head, config.n_embd, config.n_positions
                )));
            }
        }
        check(&config, &from)?;
        return Ok(config);
    }
    let config = match &args.size {
        Some(size) => {
            let preset =
                Gpt2Config::preset(size).map_err(|e| CliError::Usage(format!("--size: {e}")))?;
            check(&preset, &format!("--size {size}"))?;
            preset
        }
        None => {
            let mut c = Gpt2Config::preset("tiny").expect("a preset");
            c.n_layer = args.layers.unwrap_or(2);
            c.n_head = args.heads.unwrap_or(4);
            c.n_embd = args.width.unwrap_or(128);
            c.n_positions = args.context.unwrap_or(64);
            c
        }
    };
    config
        .check()
        .map_err(|e| CliError::Usage(format!("{e} (--heads must divide --width)")))?;
    Ok(config)
}

/// The tokenizer: `--tokenizer FILE`, else the `tokenizer.json` of `--init DIR`, else none
/// (characters of the text).
fn tokenizer(args: &TrainArgs) -> Result<Option<Tokenizer>> {
    let from_init = args
        .init
        .as_ref()
        .map(|d| d.join(TOKENIZER_FILE))
        .filter(|p| p.exists());
    match args.tokenizer.clone().or(from_init) {
        Some(path) => Ok(Some(Tokenizer::load(path)?)),
        None => Ok(None),
    }
}

/// The training data and the tokenizer that reads it: `--data` a folder of nanoGPT token
/// files or a text file, else the built-in tiny-shakespeare text; without a tokenizer, a text
/// is numbered by its characters.
fn data(
    args: &TrainArgs,
    tokenizer: Option<Tokenizer>,
    vocab: Option<usize>,
) -> Result<(TokenCorpus, Option<Tokenizer>)> {
    let builtin = Path::new("data/tinyshakespeare/input.txt");
    match (&args.data, tokenizer) {
        (Some(dir), tok) if dir.is_dir() => {
            let v = vocab
                .or(tok.as_ref().map(Tokenizer::vocab_size))
                .unwrap_or(GPT2_VOCAB);
            Ok((TokenCorpus::from_bin_dir(dir, v)?, tok))
        }
        (path, Some(tok)) => {
            let corpus = match path {
                Some(p) => TokenCorpus::from_text_file(p, &tok)?,
                None => {
                    let ids = tok.encode(sinter_model::data::text::embedded_text())?;
                    TokenCorpus::split(ids, tok.vocab_size(), builtin)?
                }
            };
            Ok((corpus, Some(tok)))
        }
        (path, None) => {
            let chars = match path {
                Some(p) => CharCorpus::load(p)?,
                None => CharCorpus::embedded()?,
            };
            let tok = Tokenizer::chars(&chars);
            let corpus = TokenCorpus {
                vocab_size: chars.vocab_size(),
                train: chars.train,
                valid: chars.valid,
            };
            Ok((corpus, Some(tok)))
        }
    }
}

pub(super) fn run(args: &TrainArgs, choice: DeviceChoice, ranks: Ranks) -> Result<()> {
    let root = ranks.rank == 0;
    let mut config = architecture(args)?;
    let from_init = args.init.is_some();
    let (corpus, tok) = data(
        args,
        tokenizer(args)?,
        from_init.then_some(config.vocab_size),
    )?;
    if from_init {
        if corpus.vocab_size > config.vocab_size {
            let what = match &tok {
                Some(Tokenizer::Chars(_)) => "characters of the text".to_string(),
                Some(Tokenizer::Json { path, .. }) => path.display().to_string(),
                None => "data".into(),
            };
            return Err(CliError::Usage(format!(
                "the {what} give {} token ids but --init {} has vocab_size {}: give the model's tokenizer with --tokenizer",
                corpus.vocab_size,
                args.init.as_deref().unwrap_or(Path::new("")).display(),
                config.vocab_size
            )));
        }
    } else {
        config.vocab_size = corpus.vocab_size;
    }
    let context = args.context.unwrap_or(config.n_positions);
    if context > config.n_positions {
        return Err(CliError::Usage(format!(
            "--context {context} is longer than the model's {} positions (n_positions)",
            config.n_positions
        )));
    }
    let batch = args.batch.unwrap_or(8);
    let accumulate = args.accumulate_over(batch, ranks.size)?;
    let steps = args.steps.unwrap_or(600);
    let (backend, notice) = Backend::open_nth(choice, ranks.local_rank)?;
    if let (Some(n), true) = (notice, root) {
        eprintln!("{n}");
    }
    let opt = optimizer(args, steps, (steps / 4).max(1))?;
    let lm_config = LmConfig {
        batch,
        accumulate,
        seed: args.seed,
        valid_batches: args.eval_batches.unwrap_or(16),
        stop_on_nan: args.stop_on_nan,
        detect_anomaly: args.detect_anomaly,
        dropout: args.dropout,
        memory_limit: super::memory::limit_for(&backend)?,
    };
    let order = if args.no_shuffle {
        WindowOrder::Sequential
    } else {
        WindowOrder::Random
    };
    let lower = [("--batch", batch), ("--context", context)];
    let too_big = |e| super::memory::explain(e, &lower);
    let mut lm = Gpt2Lm::new(
        config,
        context,
        corpus,
        order,
        backend,
        opt,
        lm_config,
        ranks.collective,
    )
    .map_err(too_big)?;
    let mut settings = settings(args, batch, steps, &lm.optimizer);
    // What the model is, resolved from --size, --init or the options: a checkpoint continues it.
    for (key, value) in [
        ("--layers", config.n_layer),
        ("--heads", config.n_head),
        ("--width", config.n_embd),
        ("--context", context),
    ] {
        settings.0.retain(|s| s.0 != key);
        settings.0.push((key, value.to_string()));
    }
    if root {
        eprintln!(
            "training gpt2 ({} parameters: {} layers, {} heads, width {}, vocabulary {}, context {context}) on {} for {steps} steps, batch {batch}{}",
            lm.parameter_count(),
            config.n_layer,
            config.n_head,
            config.n_embd,
            config.vocab_size,
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
        rate_unit: "tok/s",
        evaluating: "validating…".into(),
        rank: ranks.rank,
        ranks: ranks.size,
    };
    let save_model = |lm: &Gpt2Lm, dir: &Path| save(dir, &config, lm, tok.as_ref());
    let Some(done) = train_loop::train(&mut lm, args, &settings, &pace, &save_model)? else {
        return Ok(());
    };
    if let Some(dir) = &args.save {
        save_model(&lm, dir)?;
        eprintln!(
            "saved the model to {} ({CONFIG_FILE}, {WEIGHTS_FILE}{})",
            dir.display(),
            if tok.is_some() {
                ", tokenizer.json"
            } else {
                ""
            }
        );
    }
    if args.sample > 0 {
        let ids = lm.sample(&[], args.sample, 0.8, args.seed)?;
        let text = match &tok {
            Some(t) => t.decode(&ids)?,
            None => format!("{ids:?}"),
        };
        println!("---\n{text}\n---");
    }
    println!(
        "validation loss {} nats/token after {} steps · final train loss {} · {:.1} ms/step · {:.1} s · {}",
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

/// Writes the Hugging Face folder and, when there is one, the tokenizer beside it.
fn save(dir: &Path, config: &Gpt2Config, lm: &Gpt2Lm, tok: Option<&Tokenizer>) -> Result<()> {
    hf::write_dir(dir, config, &lm.params()?)?;
    if let Some(t) = tok {
        let json = t.to_json();
        sinter_model::checkpoint::write_atomic(dir.join(TOKENIZER_FILE), |w| {
            w.write_all(json.as_bytes())
        })?;
    }
    Ok(())
}

/// `--save DIR` (or `--save-best DIR`, named by `option`) for a GPT-2: a folder that exists, or whose parent does, and can be written.
pub fn check_save_dir(option: &str, dir: &Path) -> Result<()> {
    let bad = |p: String| CliError::Usage(format!("{option} {}: {p}", dir.display()));
    if dir.exists() && !dir.is_dir() {
        return Err(bad(
            "is a file; --model gpt2 saves a folder (config.json, model.safetensors)".into(),
        ));
    }
    let at: PathBuf = if dir.is_dir() {
        dir.to_path_buf()
    } else {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    };
    if !at.is_dir() {
        return Err(bad(format!("the folder {} does not exist", at.display())));
    }
    let probe = at.join(format!(".sinter-write-test-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(bad(format!("cannot write into {}: {e}", at.display()))),
    }
}
