//! `sinter tune`: tunes ahead of time the kernel variants that models' training steps use (the
//! shapes their plans meet) on the chosen adapter, and prints each choice with its timings.

use super::profile::{device_choice, model_name, Gpt2Size, Trainer};
use super::train::ModelName;
use super::{CliError, Result};
use clap::Args;
use sinter_device::tune::{self, Choice};
use sinter_model::Backend;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct TuneArgs {
    /// The models whose training steps are tuned (the models of `sinter train`, comma-separated);
    /// default cnn, mlp and char-transformer.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub model: Vec<ModelName>,
    /// Images (image models) or windows (text models) per step; default 64 / 32. Choices are
    /// kept per shape class (sizes rounded up to a power of two), so nearby batches share them.
    #[arg(long, value_parser = super::checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub batch: Option<usize>,
    /// gpu, software (lavapipe & co.), one adapter (gpu:N, software:N, gpu:NAME, software:NAME),
    /// or auto (a hardware GPU); or SINTER_DEVICE. The CPU backend has nothing to tune.
    #[arg(long)]
    pub device: Option<String>,
    #[command(flatten)]
    pub gpt2: Gpt2Size,
}

pub fn run(args: TuneArgs) -> Result<()> {
    if !tune::enabled_by_env() {
        return Err(CliError::Usage(format!(
            "tuning is off (--no-tune or {}): `sinter tune` would have nothing to do",
            tune::NO_TUNE_ENV
        )));
    }
    let choice = device_choice(&args.device)?;
    let models = if args.model.is_empty() {
        vec![ModelName::Cnn, ModelName::Mlp, ModelName::CharTransformer]
    } else {
        args.model
    };
    for model in models {
        let started = Instant::now();
        // Building the trainer compiles its programs, and compiling tunes the new shape classes.
        let t = Trainer::build(model, args.batch, choice, 0, &args.gpt2)?;
        let Backend::Gpu(g) = t.backend() else {
            return Err(CliError::Usage(
                "sinter tune needs a GPU or a software adapter (--device gpu or --device \
                 software): the CPU backend has no kernel variants to choose between"
                    .into(),
            ));
        };
        let kernels = t.program().plan().launches.iter().map(|l| &l.kernel);
        let met = tune::tune_kernels(&g.gpu, kernels);
        let stats = g.gpu.tuner().stats();
        println!(
            "{} on {} · batch {}: {} tunable shape classes, {} tuned now in {:.2} s \
             ({} timed variants), the rest from the cache; {:.2} s in all",
            model_name(model),
            g.gpu.report.name,
            t.batch(),
            met.len(),
            stats.tuned,
            stats.tuning_us as f64 / 1e6,
            stats.timing_runs,
            started.elapsed().as_secs_f64()
        );
        let choices = g.gpu.tuner().choices();
        for (key, variant) in &met {
            println!("  {key:<56} {variant:<22} {}", timings(choices.get(key)));
        }
    }
    match sinter_device::cache_file::cache_dir() {
        Some(dir) => println!("choices kept in {}", dir.join(tune::CACHE_FILE).display()),
        None => println!("no cache folder on this platform: choices are not kept"),
    }
    Ok(())
}

/// The timings behind a choice, fastest first: `matmul_v4_wide 120 µs, matmul_v2_blocked 340 µs`,
/// and the variants passed over.
pub(super) fn timings(choice: Option<&Choice>) -> String {
    let Some(c) = choice else {
        return "(the only variant enabled: not timed)".into();
    };
    let mut times: Vec<(&String, &f64)> = c.median_us.iter().collect();
    times.sort_by(|a, b| a.1.total_cmp(b.1));
    let mut parts: Vec<String> = times
        .iter()
        .map(|(v, us)| format!("{} {us:.0} µs", short(v)))
        .collect();
    parts.extend(
        c.rejected
            .keys()
            .map(|v| format!("{} passed over", short(v))),
    );
    parts.join(", ")
}

/// A variant's name without its family: `v4_wide`, `TM=8`.
fn short(variant: &str) -> &str {
    variant
        .strip_prefix("matmul_")
        .or_else(|| variant.rsplit(' ').next())
        .unwrap_or(variant)
}
