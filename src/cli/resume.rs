//! The options a checkpoint was trained with, recorded in its metadata as flags, and their
//! comparison with this run's when resuming: a difference is named in flag terms (`--epochs`,
//! `--lr`, `--batch` …) with the way to go on, never as a dump of two optimizer structs.

use super::{CliError, Result};
use sinter_model::checkpoint::TrainingCheckpoint;
use std::path::Path;

/// Metadata key of the run length ("--epochs 2" or "--steps 500") and of its step count.
const LENGTH: &str = "run length";
const TOTAL: &str = "total steps";
/// The settings `--new-schedule` may change: they only shape the learning rate over the steps.
const SCHEDULE_KEYS: [&str; 5] = [LENGTH, "--lr", "--schedule", "--warmup", "--min-lr"];
/// Settings older checkpoints do not record: compared only when the checkpoint has them.
const NEWER_KEYS: [&str; 5] = ["--beta1", "--beta2", "--eps", "--warmup", "--min-lr"];
/// The settings that say what the model is and where its data order comes from: never
/// changed by a resume, and compared only when the checkpoint records them (older ones do not).
const MODEL_KEYS: [&str; 8] = [
    "--model",
    "--width",
    "--context",
    "--layers",
    "--heads",
    "--seed",
    "--dropout",
    "--shift",
];
/// The weight-decay scope: checkpoints older than the option decayed every parameter.
const DECAY_ON: &str = "--decay-on";
/// The metadata key the trainer keeps its optimizer settings under (compared as a whole).
const OPTIMIZER_KEY: &str = "optimizer";

/// The options that shape a run's optimizer and data order, as (flag, value): `value` is
/// "true"/"false" for switches and "none" for an option not given.
#[derive(Clone, Debug, Default)]
pub struct Settings(pub Vec<(&'static str, String)>);

impl Settings {
    /// Adds them to a checkpoint's metadata.
    pub fn record(&self, ckpt: &mut TrainingCheckpoint) {
        for (k, v) in &self.0 {
            ckpt.meta.insert(k.to_string(), v.clone());
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|s| s.0 == key).map(|s| s.1.as_str())
    }
}

/// A setting as the user would type it.
fn flag(key: &str, value: &str) -> String {
    match value {
        _ if key == LENGTH => value.to_string(),
        "none" | "false" => format!("without {key}"),
        "true" => key.to_string(),
        v => format!("{key} {v}"),
    }
}

/// Checks that `ckpt` can continue under `now` (the settings of this run, whose optimizer
/// prints as `now_optimizer`). With `new_schedule`, differences in the run length, `--lr` and
/// `--schedule` are accepted: the checkpoint's optimizer record is replaced by this run's, so
/// the trainer continues with the new schedule. Returns a line saying what changed, if anything.
pub fn reconcile(
    ckpt: &mut TrainingCheckpoint,
    path: &Path,
    now: &Settings,
    now_optimizer: &str,
    new_schedule: bool,
) -> Result<Option<String>> {
    let saved_optimizer = ckpt.meta.get(OPTIMIZER_KEY).cloned().unwrap_or_default();
    let recorded = ckpt.meta.contains_key(TOTAL);
    let mut diffs = Vec::new();
    for (key, value) in &now.0 {
        let missing = if *key == DECAY_ON { "all" } else { "none" };
        let saved = ckpt.meta.get(*key).map(String::as_str).unwrap_or(missing);
        let differs = match *key {
            // Compared by its step count: --steps 250 and --epochs 2 of 125 steps agree.
            LENGTH => ckpt.meta.get(TOTAL).map(String::as_str) != now.get(TOTAL),
            TOTAL => false,
            k if MODEL_KEYS.contains(&k) || NEWER_KEYS.contains(&k) => {
                ckpt.meta.contains_key(k) && saved != value
            }
            _ => saved != value,
        };
        if recorded && differs {
            let with_steps = |v: &str, total: Option<&str>| match (*key, total) {
                (LENGTH, Some(t)) => format!("{v} ({t} steps)"),
                _ => flag(key, v),
            };
            diffs.push((
                *key,
                with_steps(saved, ckpt.meta.get(TOTAL).map(String::as_str)),
                with_steps(value, now.get(TOTAL)),
                flag(key, saved),
            ));
        }
    }
    let fixed_differs = diffs
        .iter()
        .any(|d| d.0 == "--batch" || MODEL_KEYS.contains(&d.0));
    if saved_optimizer == now_optimizer && !fixed_differs {
        return Ok(None);
    }
    if !recorded {
        return Err(CliError::Usage(format!(
            "--resume {}: this checkpoint was saved with other optimizer settings than this run's \
             (it was written by an older sinter that does not record them); resume with the \
             options it was trained with: --optimizer, --lr, --momentum, --nesterov, \
             --weight-decay, --decay-on, --beta1, --beta2, --eps, --schedule, --warmup, --min-lr, --clip-norm, --batch, and the same --epochs or --steps \
             (the cosine schedule spans the whole run)",
            path.display()
        )));
    }
    let only_schedule = diffs.iter().all(|d| SCHEDULE_KEYS.contains(&d.0));
    if new_schedule && only_schedule && !diffs.is_empty() {
        ckpt.meta
            .insert(OPTIMIZER_KEY.into(), now_optimizer.to_string());
        let changes: Vec<String> = diffs
            .iter()
            .map(|(_, saved, now, _)| format!("{saved} → {now}"))
            .collect();
        return Ok(Some(format!(
            "--new-schedule: continuing from step {} with a new learning-rate schedule ({})",
            ckpt.step,
            changes.join(", ")
        )));
    }
    let mut msg = format!(
        "--resume {}: this run's settings differ from the checkpoint's:",
        path.display()
    );
    for (key, saved, now, _) in &diffs {
        let why = match *key {
            LENGTH => " (the learning-rate schedule spans the whole run)",
            "--batch" => " (the data order is kept per batch size)",
            "--seed" => " (the seed draws the data order and dropout)",
            "--model" | "--width" | "--context" | "--layers" | "--heads" => {
                " (a checkpoint continues the model it was saved from)"
            }
            _ => "",
        };
        msg.push_str(&format!("\n  {saved} when saved, {now} now{why}"));
    }
    if diffs.is_empty() {
        // Recorded, yet the optimizers differ: a setting this list does not cover.
        msg.push_str(&format!(
            "\n  the optimizer settings differ (saved: {saved_optimizer})"
        ));
    }
    let saved_flags: Vec<&str> = diffs.iter().map(|d| d.3.as_str()).collect();
    msg.push_str(&format!(
        "\nto continue the saved run, resume with its settings ({})",
        saved_flags.join(" ")
    ));
    if only_schedule && !diffs.is_empty() {
        msg.push_str(
            "; to continue it with this run's learning-rate schedule instead, add --new-schedule",
        );
    } else if diffs.iter().any(|d| SCHEDULE_KEYS.contains(&d.0)) {
        msg.push_str(
            " (--new-schedule accepts a new --epochs/--steps, --lr, --schedule, --warmup or --min-lr, not the others)",
        );
    }
    Err(CliError::Usage(msg))
}
