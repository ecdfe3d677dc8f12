//! The training loop every `sinter train` model runs, over the library's generic `Trainer<M>`:
//! --init and --resume, the progress bar, evaluations, checkpoints (every N steps, at each
//! evaluation, on Ctrl-C), the NaN policy, --profile, the metrics log, the plot and the ranks.

use super::metrics::{MetricsLog, Record};
use super::plot::History;
use super::resume::Settings;
use super::train::{interrupt_flag, load_init, load_resume, resume_hint, TrainArgs};
use super::{CliError, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sinter_model::checkpoint::TrainingCheckpoint;
use sinter_model::parallel::any_rank;
use sinter_model::profile::StepProfile;
use sinter_model::trainer::{Model, Trainer};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

type ModelResult<T> = std::result::Result<T, sinter_model::ModelError>;

/// An evaluation: the mean loss, the accuracy where the model has one, and the examples seen.
#[derive(Clone, Copy, Debug)]
pub(super) struct Eval {
    pub loss: f64,
    pub accuracy: Option<f64>,
    pub examples: usize,
}

/// One training step's loss, and the correct examples of its batch where the model counts them.
pub(super) struct Step {
    pub loss: f32,
    pub correct: Option<usize>,
    pub profile: Option<StepProfile>,
}

/// Training steps the loop keeps submitted ahead of the one it reads (see `Trainer::submit`).
const STEPS_IN_FLIGHT: usize = 2;

/// What the loop trains: a preset of the model crate around a `Trainer<M>`, with its data.
pub(super) trait Task {
    type M: Model;
    fn trainer(&self) -> &Trainer<Self::M>;
    fn trainer_mut(&mut self) -> &mut Trainer<Self::M>;
    /// `--init PATH`: the initial parameters (a parameter file written by `--save`, unless the
    /// model reads another format).
    fn init_from(&mut self, path: &Path) -> Result<()> {
        let tensors = load_init(path)?;
        self.trainer_mut().set_params(&tensors, path)?;
        Ok(())
    }
    /// One training step on the next batch, with every kernel timed when `profile`.
    fn step(&mut self, profile: bool) -> ModelResult<Step>;
    /// Draws the next batch and starts its step without waiting (see `Trainer::submit`).
    fn submit(&mut self) -> ModelResult<()>;
    /// The oldest submitted step's result, once it has run (see `Trainer::complete`).
    fn complete(&mut self) -> ModelResult<Step>;
    fn evaluate(&mut self) -> ModelResult<Eval>;
    fn checkpoint(&self) -> ModelResult<TrainingCheckpoint>;
    fn restore(&mut self, ckpt: &TrainingCheckpoint, path: &Path) -> ModelResult<()>;
    /// What the ranks of a data-parallel run must agree on besides the step: the data order.
    fn data_state(&self) -> Vec<(String, String)>;
}

/// How the loop presents and paces one kind of model.
pub(super) struct Pace {
    pub total_steps: u64,
    /// Evaluate (and checkpoint) every this many steps, and after the last.
    pub eval_every: u64,
    /// Image models count epochs; text models draw random windows and have none.
    pub steps_per_epoch: Option<u64>,
    /// Examples per step, and the things per step the progress rate counts (images,
    /// characters) with its unit.
    pub batch: usize,
    pub rate_per_step: usize,
    pub rate_unit: &'static str,
    /// The progress bar's message while evaluating.
    pub evaluating: String,
    /// The rank of this process and the number of ranks.
    pub rank: usize,
    pub ranks: usize,
}

impl Pace {
    /// What a text model's loss is measured per: its tokens (`tok/s`) or characters.
    fn per(&self) -> &'static str {
        if self.rate_unit == "tok/s" {
            "token"
        } else {
            "char"
        }
    }
}

/// What a finished run reports (rank 0 only).
pub(super) struct Finished {
    pub eval: Eval,
    pub last_loss: f32,
    pub steps: u64,
    pub examples: usize,
    pub train_secs: f64,
    pub profiles: Vec<StepProfile>,
}

/// Writes the model as `--save` does: `--save-best` writes it through this at each evaluation
/// that improves on the best so far.
pub(super) type SaveModel<'a, T> = &'a dyn Fn(&T, &Path) -> Result<()>;

/// Runs `task` to `pace.total_steps`. Returns `None` on ranks other than 0.
pub(super) fn train<T: Task>(
    task: &mut T,
    args: &TrainArgs,
    settings: &Settings,
    pace: &Pace,
    save_model: SaveModel<T>,
) -> Result<Option<Finished>> {
    let root = pace.rank == 0;
    let total_steps = pace.total_steps;
    if let Some(path) = &args.init {
        task.init_from(path)?;
    }
    let mut history = History {
        nats_per_char: pace.steps_per_epoch.is_none(),
        ..History::default()
    };
    if let Some(path) = &args.resume {
        // Every rank reads the same checkpoint: parameters, optimizer state and data order.
        let mut ckpt = load_resume(path)?;
        let optimizer = &task.trainer().optimizer;
        // A checkpoint from before --decay-on describes its optimizer without it.
        let now = match optimizer.description_before_decay_on() {
            Some(older) if !ckpt.meta.contains_key("--decay-on") => older,
            _ => format!("{optimizer:?}"),
        };
        let change = super::resume::reconcile(&mut ckpt, path, settings, &now, args.new_schedule)?;
        if let (Some(change), true) = (change, root) {
            eprintln!("{change}");
        }
        task.restore(&ckpt, path)?;
        history = History {
            nats_per_char: history.nats_per_char,
            ..History::restore(&ckpt.meta, path, ckpt.step)?
        };
        if root {
            eprintln!(
                "resumed from {} at step {}",
                path.display(),
                task.trainer().step
            );
        }
    }
    if pace.ranks > 1 {
        // Whatever each rank read, they must agree on where the run stands and how long it
        // lasts, and then start from rank 0's state.
        let mut agree = vec![
            ("total steps".into(), total_steps.to_string()),
            ("step".into(), task.trainer().step.to_string()),
        ];
        agree.extend(task.data_state());
        task.trainer().agree_on(&agree)?;
        task.trainer_mut().broadcast_state()?;
    }
    if root && !args.quiet {
        let t = task.trainer();
        eprintln!("{}", memory_report(t.variable_bytes(), &t.train_memory()));
    }

    let bar = if args.quiet || !root {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total_steps)
    };
    bar.set_style(ProgressStyle::with_template(PROGRESS_TEMPLATE).expect("valid template"));
    bar.set_position(task.trainer().step);
    let started = Instant::now();
    let first_step = task.trainer().step;
    let mut seen = 0usize;
    // A resumed run that is already finished reports the loss its checkpoint recorded.
    let mut last_loss = history.train_loss.last().map_or(f32::NAN, |l| l.1);
    let interrupted = interrupt_flag();
    let mut profiles = Vec::new();
    let mut eval_secs = 0.0;
    let mut non_finite = NonFinite::default();
    let mut means = EvalMeans::new();
    // `--eval-every` overrides the model's own pace.
    let eval_every = args.eval_every.unwrap_or(pace.eval_every).max(1);
    // The lowest evaluation loss so far: a resumed run continues from its history's, unless the
    // --save-best file is not there yet (an option the interrupted run did not have).
    let mut best = match &args.save_best {
        Some(path) if path.exists() => history
            .evals
            .iter()
            .map(|e| e.1)
            .filter(|l| l.is_finite())
            .fold(f64::INFINITY, f64::min),
        _ => f64::INFINITY,
    };
    // The evaluation of the last step, so that the final report does not evaluate it again.
    let mut last_eval = None;
    let mut metrics = match (&args.log, root) {
        (Some(path), true) => Some(MetricsLog::create(path)?),
        _ => None,
    };
    // Only rank 0 writes checkpoints; the ranks hold the same state.
    let save = |task: &T, history: &History| -> Result<()> {
        if let (Some(path), true) = (&args.checkpoint, root) {
            // Reading the state back needs the device: if it is lost, the file on disk stays.
            let mut state = task
                .checkpoint()
                .map_err(|e| resume_hint(e, &args.checkpoint))?;
            settings.record(&mut state);
            history.record(&mut state.meta);
            state.save(path)?;
        }
        Ok(())
    };
    let say = |bar: &ProgressBar, line: String| {
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    };
    let epoch = |step: u64| pace.steps_per_epoch.map(|e| step as f64 / e.max(1) as f64);
    let text = pace.steps_per_epoch.is_none();
    // Steps in flight: while a GPU runs one step, the host draws and submits the next, so the
    // GPU does not idle while the host reads a loss back and prepares a batch. Nothing is
    // submitted past a step that evaluates or checkpoints (those read the parameters), nor after
    // a stop is asked for: the steps in flight then complete and count. Profiled steps run one
    // at a time, so their timings are the step's own.
    let window = if args.profile { 1 } else { STEPS_IN_FLIGHT };
    let pauses_after = |step: u64| {
        step >= total_steps
            || step % eval_every == 0
            || args.checkpoint_every.is_some_and(|n| step % n == 0)
    };
    let mut stopping = false;
    while task.trainer().step < total_steps {
        if !stopping {
            stopping = interrupted.load(Ordering::SeqCst);
            if let Some(collective) = task.trainer().collective() {
                stopping = any_rank(collective, stopping)?;
            }
        }
        if stopping && task.trainer().in_flight() == 0 {
            bar.finish_and_clear();
            save(task, &history)?;
            return Err(CliError::Interrupted {
                step: task.trainer().step,
                saved: args.checkpoint.clone(),
            });
        }
        let step_started = Instant::now();
        let lr = {
            let t = task.trainer();
            t.optimizer.lr * t.optimizer.schedule.factor(t.step)
        };
        let s = if args.profile {
            task.step(true)
        } else {
            let mut submitted = Ok(());
            while submitted.is_ok() && !stopping && task.trainer().in_flight() < window {
                let (next, queued) = (task.trainer().next_step(), task.trainer().in_flight());
                if next >= total_steps || (queued > 0 && pauses_after(next)) {
                    break;
                }
                submitted = task.submit();
            }
            submitted.and_then(|()| task.complete())
        }
        .map_err(|e| resume_hint(e, &args.checkpoint))?;
        profiles.extend(s.profile);
        let step = task.trainer().step;
        seen += pace.batch;
        last_loss = s.loss;
        if let (Some(first), true) = (non_finite.record(step, s.loss), root) {
            say(&bar, first);
        }
        means.add(s.loss, s.correct.unwrap_or(0), pace.batch);
        history.train_loss.push((step, s.loss));
        if args.checkpoint_every.is_some_and(|n| step % n == 0) {
            save(task, &history)?;
        }
        let rate = (seen / pace.batch.max(1) * pace.rate_per_step) as f64
            / started.elapsed().as_secs_f64();
        bar.set_message(progress_message(s.loss, rate, pace.rate_unit));
        bar.inc(1);
        if let Some(m) = &mut metrics {
            m.write(&Record {
                kind: "train",
                step,
                epoch: epoch(step),
                loss: s.loss as f64,
                accuracy: s.correct.map(|c| c as f64 / pace.batch as f64),
                nats_per_char: text.then_some(s.loss as f64),
                lr: Some(lr),
                samples_per_sec: Some(pace.batch as f64 / step_started.elapsed().as_secs_f64()),
                seconds: started.elapsed().as_secs_f64(),
            })?;
        }
        if root && (step % eval_every == 0 || step == total_steps) {
            let eval_started = Instant::now();
            bar.set_message(pace.evaluating.clone());
            let eval = task
                .evaluate()
                .map_err(|e| resume_hint(e, &args.checkpoint))?;
            eval_secs += eval_started.elapsed().as_secs_f64();
            history.evals.push((step, eval.loss, eval.accuracy));
            if let Some(m) = &mut metrics {
                m.write(&Record {
                    kind: "eval",
                    step,
                    epoch: epoch(step),
                    loss: eval.loss,
                    accuracy: eval.accuracy,
                    nats_per_char: text.then_some(eval.loss),
                    samples_per_sec: Some(
                        eval.examples as f64 / eval_started.elapsed().as_secs_f64(),
                    ),
                    seconds: started.elapsed().as_secs_f64(),
                    ..Record::default()
                })?;
            }
            let (train_loss, train_acc, secs) = means.take();
            let mut line = match (pace.steps_per_epoch, eval.accuracy) {
                (Some(per_epoch), Some(accuracy)) => format!(
                    "step {step:>5} (epoch {:.2}, {secs:.1} s): train loss {}, train accuracy {:.2}%, test loss {}, test accuracy {:.2}%",
                    step as f64 / per_epoch.max(1) as f64,
                    loss_text(train_loss),
                    train_acc * 100.0,
                    loss_text(eval.loss),
                    accuracy * 100.0
                ),
                _ => format!(
                    "step {step:>5} ({secs:.1} s): train loss {}, validation loss {} nats/{}",
                    loss_text(train_loss),
                    loss_text(eval.loss),
                    pace.per()
                ),
            };
            if let (Some(path), true) = (&args.save_best, eval.loss < best) {
                best = eval.loss;
                save_model(task, path)?;
                line.push_str(&format!(" · best so far, saved to {}", path.display()));
            }
            say(&bar, line);
            last_eval = Some((step, eval));
            save(task, &history)?;
        }
    }
    bar.finish_and_clear();
    // Examples per second of training: the evaluations in between are not training.
    let train_secs = started.elapsed().as_secs_f64() - eval_secs;
    // A collective: every rank takes part before rank 0 alone goes on to evaluate and save.
    let divergence = task.trainer().rank_divergence()?;
    if !root {
        return Ok(None);
    }
    let step = task.trainer().step;
    if let Some(summary) = non_finite.summary(step - first_step) {
        eprintln!("{summary}");
    }
    if pace.ranks > 1 {
        eprintln!(
            "ranks in sync: the largest parameter difference between any rank and rank 0 is {divergence:e} ({} ranks)",
            pace.ranks
        );
    }
    let eval = match last_eval {
        Some((at, eval)) if at == step => eval,
        _ => {
            if !args.quiet {
                eprintln!("{}", pace.evaluating);
            }
            task.evaluate()?
        }
    };
    if let Some(path) = &args.plot {
        super::plot::write(path, &history)?;
        eprintln!("plotted the run to {}", path.display());
    }
    Ok(Some(Finished {
        eval,
        last_loss,
        steps: step - first_step,
        examples: seen,
        train_secs,
        profiles,
    }))
}

/// The memory a training step needs, printed before step 1: the `variable_bytes` of the
/// parameters, buffers and optimizer state, the step's planned buffers, and what the plan's
/// reuse saves.
pub(super) fn memory_report(variable_bytes: u64, mem: &sinter_model::plan::MemoryReport) -> String {
    let mib = |b: u64| b as f64 / 1048576.0;
    format!(
        "memory: {:.1} MiB for a training step = {:.1} MiB of parameters and optimizer state + {:.1} MiB in {} step buffers (largest {:.1} MiB; {:.1} MiB without reuse, {:.1} MiB live at the peak)",
        mib(variable_bytes + mem.planned_bytes),
        mib(variable_bytes),
        mib(mem.planned_bytes),
        mem.buffers,
        mib(mem.largest_buffer_bytes),
        mib(mem.unshared_bytes),
        mib(mem.peak_live_bytes),
    )
}

/// The progress bar: 12 + 1 + 13 + 1 + 19 + 1 + the message (at most 32) = 79 columns with
/// six-digit step counts (`progress_line_fits_80_columns` checks it).
pub(super) const PROGRESS_TEMPLATE: &str =
    "{bar:12} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}";

/// The progress bar's message during training: "loss 2.3031 · 1234 img/s" (`unit` is img/s or
/// chars/s; rates from 100,000 on are written in thousands or millions, "512k", "31M").
pub(super) fn progress_message(loss: f32, rate: f64, unit: &str) -> String {
    let rate = if rate >= 1e7 {
        format!("{:.0}M", rate / 1e6)
    } else if rate >= 1e5 {
        format!("{:.0}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    };
    format!("loss {} · {rate} {unit}", loss_text(loss as f64))
}

/// A loss for people: four decimals, or scientific notation when it is large (a diverging run
/// reaches 1e28, which would print as 29 digits).
pub(super) fn loss_text(loss: f64) -> String {
    if loss.is_finite() && loss.abs() >= 1e4 {
        format!("{loss:.3e}")
    } else {
        format!("{loss:.4}")
    }
}

/// Non-finite training losses of a run that goes on through them (no --stop-on-nan): one
/// warning at the first, and a count at the end.
#[derive(Default)]
struct NonFinite {
    first: Option<(u64, f32)>,
    count: u64,
}

impl NonFinite {
    /// Notes the loss of `step`; returns the warning for the first non-finite one.
    fn record(&mut self, step: u64, loss: f32) -> Option<String> {
        if loss.is_finite() {
            return None;
        }
        self.count += 1;
        if self.first.is_some() {
            return None;
        }
        self.first = Some((step, loss));
        Some(format!(
            "warning: step {step}: the training loss is {loss}; training goes on (--stop-on-nan stops at the first non-finite loss; lower --lr or set --clip-norm)"
        ))
    }

    fn summary(&self, steps: u64) -> Option<String> {
        let (step, _) = self.first?;
        Some(format!(
            "warning: {} of {steps} steps had a non-finite training loss (the first at step {step})",
            self.count
        ))
    }
}

/// The mean training loss and accuracy since the last evaluation, and its time.
struct EvalMeans {
    loss: f64,
    correct: usize,
    examples: usize,
    steps: usize,
    started: Instant,
}

impl EvalMeans {
    fn new() -> Self {
        EvalMeans {
            loss: 0.0,
            correct: 0,
            examples: 0,
            steps: 0,
            started: Instant::now(),
        }
    }

    fn add(&mut self, loss: f32, correct: usize, batch: usize) {
        self.loss += loss as f64;
        self.correct += correct;
        self.examples += batch;
        self.steps += 1;
    }

    /// (mean loss, accuracy, seconds) since the last call, and starts over.
    fn take(&mut self) -> (f64, f64, f64) {
        let out = (
            self.loss / self.steps.max(1) as f64,
            self.correct as f64 / self.examples.max(1) as f64,
            self.started.elapsed().as_secs_f64(),
        );
        *self = EvalMeans::new();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The widest line the bar draws (six-digit step counts, the widest message) fits 80 columns.
    #[test]
    fn progress_line_fits_80_columns() {
        let widest = PROGRESS_TEMPLATE
            .replace("{bar:12}", &"#".repeat(12))
            .replace("{pos}", "999999")
            .replace("{len}", "999999")
            .replace("{elapsed_precise}", "00:00:00")
            .replace("{eta_precise}", "00:00:00")
            .replace(
                "{msg}",
                &progress_message(-1.2345e30, 9_999_999.0, "chars/s"),
            );
        assert!(!widest.contains('{'), "{widest}");
        assert!(
            widest.chars().count() <= 80,
            "{} columns: {widest}",
            widest.chars().count()
        );
        assert_eq!(
            progress_message(2.5, 123456.0, "img/s"),
            "loss 2.5000 · 123k img/s"
        );
        assert_eq!(loss_text(2.30314), "2.3031");
        assert_eq!(loss_text(1.5e28), "1.500e28");
    }
}
