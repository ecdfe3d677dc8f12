//! `sinter train --model char-transformer|char-rnn|char-lstm|char-gru`: a character-level language
//! model on the built-in tiny-shakespeare text (or `--data FILE`), validated in nats per character.

use super::metrics::{MetricsLog, Record};
use super::train::{
    loss_text, optimizer, progress_message, ModelName, TrainArgs, PROGRESS_TEMPLATE,
};
use super::{CliError, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sinter_device::DeviceChoice;
use sinter_model::checkpoint::save_safetensors;
use sinter_model::data::CharCorpus;
use sinter_model::lm::{CharArch, CharLm, LmConfig};
use sinter_model::nn_seq::CellKind;
use sinter_model::Backend;
use std::time::Instant;

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
        ModelName::Cnn | ModelName::Mlp => unreachable!("image models"),
    })
}

pub fn run(args: &TrainArgs, choice: DeviceChoice) -> Result<()> {
    let corpus = match &args.data {
        Some(path) => CharCorpus::load(path)?,
        None => CharCorpus::embedded()?,
    };
    let arch = arch(args.model, args.width, args.layers, args.heads)?;
    let batch = args.batch.unwrap_or(32);
    let steps = args.steps.unwrap_or(600);
    let (backend, notice) = Backend::open(choice)?;
    if let Some(n) = notice {
        eprintln!("{n}");
    }
    let opt = optimizer(args, steps, (steps / 4).max(1))?;
    let config = LmConfig {
        batch,
        seed: args.seed,
        valid_batches: 16,
        detect_anomaly: args.detect_anomaly,
        memory_limit: super::memory::limit_for(&backend)?,
    };
    let vocab = corpus.vocab_size();
    let lower = [("--batch", batch), ("--context", args.context)];
    let mut lm = CharLm::new(arch, args.context, corpus, backend, opt, config)
        .map_err(|e| super::memory::explain(e, &lower))?;
    eprintln!(
        "training {} ({} parameters, vocabulary {vocab}, context {}) on {} for {steps} steps, batch {batch}",
        arch.name(),
        lm.parameter_count(),
        args.context,
        lm.backend.describe()
    );
    if let Some(path) = &args.init {
        let tensors = super::train::load_init(path)?;
        lm.set_params(&tensors, path)?;
    }
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(steps)
    };
    bar.set_style(ProgressStyle::with_template(PROGRESS_TEMPLATE).expect("valid template"));
    let mut metrics = match &args.log {
        Some(path) => Some(MetricsLog::create(path)?),
        None => None,
    };
    let started = Instant::now();
    let every = (steps / 6).max(1);
    let mut last = f32::NAN;
    let mut last_valid = None;
    while lm.step < steps {
        let step_started = Instant::now();
        let lr = lm.optimizer.lr * lm.optimizer.schedule.factor(lm.step);
        last = lm.train_step()?;
        bar.inc(1);
        let chars = lm.step as f64 * (batch * args.context) as f64;
        bar.set_message(progress_message(
            last,
            chars / started.elapsed().as_secs_f64(),
            "chars/s",
        ));
        if let Some(m) = &mut metrics {
            m.write(&Record {
                kind: "train",
                step: lm.step,
                loss: last as f64,
                nats_per_char: Some(last as f64),
                lr: Some(lr),
                samples_per_sec: Some(batch as f64 / step_started.elapsed().as_secs_f64()),
                seconds: started.elapsed().as_secs_f64(),
                ..Record::default()
            })?;
        }
        if lm.step % every == 0 || lm.step == steps {
            bar.set_message("validating…");
            let valid_started = Instant::now();
            let valid = lm.validate()?;
            if let Some(m) = &mut metrics {
                let windows = batch * lm.config.valid_batches;
                m.write(&Record {
                    kind: "eval",
                    step: lm.step,
                    loss: valid,
                    nats_per_char: Some(valid),
                    samples_per_sec: Some(windows as f64 / valid_started.elapsed().as_secs_f64()),
                    seconds: started.elapsed().as_secs_f64(),
                    ..Record::default()
                })?;
            }
            last_valid = Some((lm.step, valid));
            let line = format!(
                "step {:>5}: train loss {}, validation loss {} nats/char",
                lm.step,
                loss_text(last as f64),
                loss_text(valid)
            );
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        }
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let valid = match last_valid {
        Some((step, valid)) if step == lm.step => valid,
        _ => lm.validate()?,
    };
    if let Some(path) = &args.save {
        let (tensors, meta) = lm.params()?;
        save_safetensors(path, &tensors, &meta)?;
        eprintln!("saved parameters to {}", path.display());
    }
    if args.sample > 0 {
        let text = lm.sample("\n", args.sample, 0.8, args.seed)?;
        println!("---\n{text}\n---");
    }
    println!(
        "validation loss {valid:.3} nats/char after {} steps · final train loss {} · {:.1} ms/step · {:.1} s · {}",
        lm.step,
        loss_text(last as f64),
        secs * 1000.0 / steps.max(1) as f64,
        secs,
        lm.backend.describe()
    );
    Ok(())
}
