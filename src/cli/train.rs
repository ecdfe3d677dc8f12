//! `sinter train`: trains the default CNN (or an MLP) on the shipped MNIST digits or on IDX files,
//! with a progress bar, evaluation each epoch, checkpoints, and a final accuracy and throughput;
//! data-parallel over MPI ranks with `--distributed`, where rank 0 alone prints, evaluates and saves.

use super::{CliError, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use sinter_device::DeviceChoice;
use sinter_model::checkpoint::{load_safetensors, save_safetensors, TrainingCheckpoint};
use sinter_model::data::{embedded_mnist, load_dir, ImageDataset};
use sinter_model::nn::{default_cnn, mlp};
use sinter_model::optim::{Optimizer, OptimizerKind, Schedule};
use sinter_model::parallel::{any_rank, Collective};
use sinter_model::train::{Classifier, ClassifierConfig};
use sinter_model::{Backend, VarStore};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelName {
    /// conv 3×3 (→32) · ReLU · max-pool 2 · conv 3×3 (→64) · ReLU · max-pool 2 · fc 128 · ReLU · fc
    Cnn,
    /// A perceptron with two hidden layers of 256 units.
    Mlp,
    /// A pre-norm transformer over characters (--layers, --heads, --width, --context).
    CharTransformer,
    /// A character-level Elman RNN (--width hidden units).
    CharRnn,
    /// A character-level LSTM.
    CharLstm,
    /// A character-level GRU.
    CharGru,
}

impl ModelName {
    pub fn is_text(self) -> bool {
        !matches!(self, ModelName::Cnn | ModelName::Mlp)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerName {
    /// SGD with momentum (0.9 by default).
    Sgd,
    Adam,
    Adamw,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScheduleName {
    Constant,
    /// Linear warm-up over 5% of the steps, then cosine decay to zero.
    Cosine,
    /// Halve the learning rate at each epoch.
    Step,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[arg(long, value_enum, default_value_t = ModelName::Cnn)]
    pub model: ModelName,
    /// Image models: a folder of IDX files (train-images-idx3-ubyte[.gz], … or
    /// images/labels-idx?-ubyte.gz); default: the 10,000 MNIST digits built into the binary.
    /// Text models: a UTF-8 text file; default: the tiny-shakespeare text built in.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Passes over the training images (image models).
    #[arg(long, default_value_t = 5)]
    pub epochs: u64,
    /// Train for this many steps instead of whole epochs.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Images per step (image models) or windows per step (text models, default 32).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Characters of context (text models).
    #[arg(long, default_value_t = 64)]
    pub context: usize,
    /// Model width: embedding size of the transformer, hidden units of recurrent models.
    #[arg(long, default_value_t = 128)]
    pub width: usize,
    /// Transformer blocks.
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// After training a text model, print this many sampled characters.
    #[arg(long, default_value_t = 0)]
    pub sample: usize,
    /// Learning rate (default: 2e-3 for adam/adamw on images, 3e-3 on text, 0.05 for sgd).
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, value_enum, default_value_t = OptimizerName::Adam)]
    pub optimizer: OptimizerName,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay (default: 0.01 for adamw, 0 otherwise).
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Learning-rate schedule (default: cosine with a 5% warm-up).
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleName>,
    /// Clip the global gradient norm to this value.
    #[arg(long)]
    pub clip_norm: Option<f64>,
    /// auto (hardware GPU, else CPU), gpu, software (lavapipe & co.), cpu; or SINTER_DEVICE.
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub no_shuffle: bool,
    /// Initial parameters from a safetensors file (names as PyTorch's state_dict).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Write the trained parameters to this safetensors file.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Write a full training checkpoint here at the end of each epoch, every
    /// --checkpoint-every steps, on Ctrl-C, and at the end of the run.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Also write the checkpoint every N steps.
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Continue from a training checkpoint (parameters, optimizer state, step, data order).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Draw the loss and accuracy curves into this file (.svg, or .png without text).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Stop with an error when the loss becomes NaN or infinite.
    #[arg(long)]
    pub stop_on_nan: bool,
    /// Check every value of every step for NaN and infinity and stop at the first, naming the
    /// node (op, tag, shape) that produced it. Slower; on a GPU every value keeps its own buffer.
    #[arg(long, conflicts_with = "profile")]
    pub detect_anomaly: bool,
    /// No progress bar (for logs).
    #[arg(long)]
    pub quiet: bool,
    /// Time every kernel of every step and print the profile table at the end (image models;
    /// `sinter profile` profiles any model without training it).
    #[arg(long)]
    pub profile: bool,
    /// With --profile: write a Chrome trace of the profiled steps (Perfetto, chrome://tracing).
    #[arg(long, value_name = "FILE.json", requires = "profile")]
    pub trace: Option<PathBuf>,
    /// Data-parallel training over MPI, one process per device: launch with
    /// `mpirun -np N sinter train --distributed …`; --batch is the global batch, split over the
    /// ranks. Needs a sinter built with `--features mpi`.
    #[arg(long)]
    pub distributed: bool,
}

/// Where this process trains in a data-parallel job (one process alone: rank 0 of 1).
struct Ranks {
    pub rank: usize,
    pub size: usize,
    /// Index of this process among the job's processes on this machine: picks its GPU.
    pub local_rank: usize,
    pub collective: Option<Box<dyn Collective>>,
}

impl Ranks {
    fn alone() -> Self {
        Ranks {
            rank: 0,
            size: 1,
            local_rank: 0,
            collective: None,
        }
    }
}

fn load_data(args: &TrainArgs) -> Result<(ImageDataset, ImageDataset)> {
    Ok(match &args.data {
        Some(dir) => load_dir(dir)?,
        None => embedded_mnist()?,
    })
}

pub(super) fn optimizer(
    args: &TrainArgs,
    total_steps: u64,
    steps_per_epoch: u64,
) -> Result<Optimizer> {
    let kind = match args.optimizer {
        OptimizerName::Sgd => OptimizerKind::sgd(
            args.momentum,
            args.nesterov,
            args.weight_decay.unwrap_or(0.0),
        ),
        OptimizerName::Adam => OptimizerKind::adam(args.weight_decay.unwrap_or(0.0)),
        OptimizerName::Adamw => OptimizerKind::adamw(args.weight_decay.unwrap_or(0.01)),
    };
    let lr = args
        .lr
        .unwrap_or(match (args.optimizer, args.model.is_text()) {
            (OptimizerName::Sgd, _) => 0.05,
            (_, false) => 2e-3,
            (_, true) => 3e-3,
        });
    if !(lr.is_finite() && lr > 0.0) {
        return Err(CliError::Usage(format!(
            "--lr must be a positive number, got {lr}"
        )));
    }
    let mut opt = Optimizer::new(kind, lr);
    opt.clip_norm = args.clip_norm;
    opt.schedule = match args.schedule.unwrap_or(ScheduleName::Cosine) {
        ScheduleName::Constant => Schedule::Constant,
        ScheduleName::Cosine => Schedule::Cosine {
            warmup: total_steps / 20,
            total: total_steps,
            min_factor: 0.0,
        },
        ScheduleName::Step => Schedule::Step {
            every: steps_per_epoch,
            gamma: 0.5,
        },
    };
    Ok(opt)
}

/// Set when the user presses Ctrl-C: the loop saves a checkpoint and stops between steps.
pub(super) fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler = flag.clone();
    if let Err(e) = ctrlc::set_handler(move || handler.store(true, Ordering::SeqCst)) {
        log::warn!("Ctrl-C will stop without saving: {e}");
    }
    flag
}

/// A device failure during training keeps the last checkpoint and says how to go on.
pub(super) fn resume_hint(e: sinter_model::ModelError, checkpoint: &Option<PathBuf>) -> CliError {
    match (&e, checkpoint) {
        (sinter_model::ModelError::Device(_), Some(path)) if path.exists() => CliError::Usage(format!(
            "{e}\nthe last checkpoint in {} is intact: continue with `sinter train --resume {} --device cpu` (or another device)",
            path.display(),
            path.display()
        )),
        _ => e.into(),
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    if args.batch == Some(0) {
        return Err(CliError::Usage("--batch must be at least 1".into()));
    }
    let choice = match &args.device {
        Some(d) => DeviceChoice::parse(d)?,
        None => DeviceChoice::from_env()?,
    };
    if args.distributed {
        if args.model.is_text() {
            return Err(CliError::Usage(
                "--distributed trains the image models (cnn, mlp); text models train in one process".into(),
            ));
        }
        return run_distributed(args, choice);
    }
    if args.model.is_text() {
        if args.profile {
            return Err(CliError::Usage(
                "--profile is for image models; use `sinter profile --model <char-model>`".into(),
            ));
        }
        return super::train_text::run(&args, choice);
    }
    train_images(&args, choice, Ranks::alone())
}

#[cfg(not(feature = "mpi"))]
fn run_distributed(_args: TrainArgs, _choice: DeviceChoice) -> Result<()> {
    Err(CliError::Usage(
        "this sinter was built without MPI; rebuild with `cargo build --release --features mpi` (needs an MPI library such as Open MPI, and libclang) to use --distributed".into(),
    ))
}

/// One rank of `mpirun -np N sinter train --distributed`. An error on one rank ends the whole
/// job (MPI_Abort) after printing it, so no rank waits forever for a rank that has stopped.
#[cfg(feature = "mpi")]
fn run_distributed(args: TrainArgs, choice: DeviceChoice) -> Result<()> {
    let mpi = sinter::distributed::Mpi::start()?;
    // The CPU backend's ranks on one machine split its cores between them.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / mpi.local_size.max(1)).max(1);
    // Mesa's software adapters (lavapipe, llvmpipe) size their own thread pools from
    // LP_NUM_THREADS: give each rank its share unless the user chose.
    if std::env::var_os("LP_NUM_THREADS").is_none() {
        std::env::set_var("LP_NUM_THREADS", threads.to_string());
    }
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
    {
        log::warn!("could not size the CPU thread pool to {threads} threads: {e}");
    }
    if mpi.rank == 0 {
        eprintln!(
            "distributed: {} ranks ({} on this machine, {threads} CPU threads each) over {}",
            mpi.size,
            mpi.local_size,
            mpi.library()
        );
    }
    let ranks = Ranks {
        rank: mpi.rank,
        size: mpi.size,
        local_rank: mpi.local_rank,
        collective: Some(Box::new(mpi.collective())),
    };
    match train_images(&args, choice, ranks) {
        // Every rank agrees on an interrupt, so all of them stop together without aborting;
        // rank 0 alone says so.
        Err(e @ CliError::Interrupted { .. }) if mpi.rank == 0 => Err(e),
        Err(CliError::Interrupted { .. }) => Err(CliError::StoppedWithRankZero),
        Err(e) => {
            eprintln!("error on rank {} of {}: {e}", mpi.rank, mpi.size);
            eprintln!("sinter: stopping all ranks (MPI_Abort)");
            mpi.abort(1)
        }
        Ok(()) => Ok(()),
    }
}

fn train_images(args: &TrainArgs, choice: DeviceChoice, ranks: Ranks) -> Result<()> {
    let root = ranks.rank == 0;
    let batch = args.batch.unwrap_or(64);
    let (train_set, test_set) = load_data(args)?;
    if batch > train_set.n {
        return Err(CliError::Usage(format!(
            "--batch {} is larger than the {} training examples",
            batch, train_set.n
        )));
    }
    let (backend, notice) = Backend::open_nth(choice, ranks.local_rank)?;
    if let (Some(n), true) = (notice, root) {
        eprintln!("{n}");
    }

    let mut rng = sinter_model::Init::new(args.seed);
    let mut store = VarStore::new();
    let image = [train_set.channels, train_set.rows, train_set.cols];
    if args.model == ModelName::Cnn && (image[1] < 4 || image[2] < 4) {
        return Err(CliError::Usage(format!(
            "the cnn pools twice by 2, so it needs images of at least 4×4 pixels; these are {}×{} (try --model mlp)",
            image[1], image[2]
        )));
    }
    let (name, model) = match args.model {
        ModelName::Cnn => (
            "cnn",
            default_cnn(
                &mut store,
                image[0],
                [image[1], image[2]],
                train_set.classes,
                &mut rng,
            ),
        ),
        ModelName::Mlp => (
            "mlp",
            mlp(
                &mut store,
                image.iter().product(),
                256,
                train_set.classes,
                &mut rng,
            ),
        ),
        _ => unreachable!("text models are trained by train_text"),
    };
    let steps_per_epoch = (train_set.n / batch) as u64;
    let total_steps = args.steps.unwrap_or(args.epochs * steps_per_epoch);
    let config = ClassifierConfig {
        batch,
        eval_batch: 200,
        seed: args.seed,
        shuffle: !args.no_shuffle,
        stop_on_nan: args.stop_on_nan,
        detect_anomaly: args.detect_anomaly,
    };
    let opt = optimizer(args, total_steps, steps_per_epoch)?;
    let mut c = match ranks.collective {
        None => Classifier::new(name, model, store, backend, opt, config, image, train_set.n)?,
        Some(collective) => Classifier::data_parallel(
            name,
            model,
            store,
            backend,
            opt,
            config,
            image,
            train_set.n,
            collective,
        )?,
    };
    if let Some(path) = &args.init {
        let (tensors, _) = load_safetensors(path)?;
        c.set_params(&tensors, path)?;
    }
    if let Some(path) = &args.resume {
        // Every rank reads the same checkpoint: parameters, optimizer state and data order.
        let ckpt = TrainingCheckpoint::load(path)?;
        c.restore(&ckpt, path)?;
        if root {
            eprintln!("resumed from {} at step {}", path.display(), c.step);
        }
    }
    if ranks.size > 1 {
        // Whatever each rank read, they must agree on where the run stands and how long it
        // lasts, and then start from rank 0's state.
        c.agree_on(&[
            ("total steps".into(), total_steps.to_string()),
            ("step".into(), c.step.to_string()),
            ("data order".into(), c.batcher.state().to_string()),
            ("test examples".into(), test_set.n.to_string()),
        ])?;
        c.broadcast_state()?;
    }
    let mem = c.train_memory();
    log::info!(
        "training step plan: {:.1} MiB in {} buffers (peak live {:.1} MiB, {:.1} MiB without reuse)",
        mem.planned_bytes as f64 / 1048576.0,
        mem.buffers,
        mem.peak_live_bytes as f64 / 1048576.0,
        mem.unshared_bytes as f64 / 1048576.0
    );
    if root {
        eprintln!(
            "training {name} on {} ({} train / {} test images) for {} steps, batch {}{}, {} lr {}",
            c.backend.describe(),
            train_set.n,
            test_set.n,
            total_steps,
            batch,
            if ranks.size > 1 {
                format!(
                    " ({} per rank; {:.2} MB of gradients all-reduced per step)",
                    batch / ranks.size,
                    c.gradient_bytes() as f64 / 1e6
                )
            } else {
                String::new()
            },
            c.optimizer.kind.name(),
            c.optimizer.lr
        );
    }

    let bar = if args.quiet || !root {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total_steps)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .expect("valid template"),
    );
    bar.set_position(c.step);
    let started = Instant::now();
    let first_step = c.step;
    let mut seen = 0usize;
    let mut last_loss = f32::NAN;
    let mut history = super::plot::History::default();
    let interrupted = interrupt_flag();
    let mut profiles = Vec::new();
    let mut eval_secs = 0.0;
    // Only rank 0 writes checkpoints; the ranks hold the same state.
    let save = |c: &Classifier| -> Result<()> {
        if let (Some(path), true) = (&args.checkpoint, root) {
            // Reading the state back needs the device: if it is lost, the file on disk stays.
            let state = c
                .checkpoint()
                .map_err(|e| resume_hint(e, &args.checkpoint))?;
            state.save(path)?;
        }
        Ok(())
    };
    while c.step < total_steps {
        let mut stop = interrupted.load(Ordering::SeqCst);
        if let Some(collective) = c.collective() {
            stop = any_rank(collective, stop)?;
        }
        if stop {
            bar.finish_and_clear();
            save(&c)?;
            return Err(CliError::Interrupted {
                step: c.step,
                saved: args.checkpoint.clone(),
            });
        }
        let s = if args.profile {
            let (s, p) = c
                .train_step_profiled(&train_set, None)
                .map_err(|e| resume_hint(e, &args.checkpoint))?;
            profiles.push(p);
            s
        } else {
            c.train_step(&train_set)
                .map_err(|e| resume_hint(e, &args.checkpoint))?
        };
        if args
            .checkpoint_every
            .is_some_and(|n| n > 0 && c.step % n == 0)
        {
            save(&c)?;
        }
        seen += batch;
        last_loss = s.loss;
        history.train_loss.push((c.step, s.loss));
        let rate = seen as f64 / started.elapsed().as_secs_f64();
        bar.set_message(format!("loss {:.4} · {:.0} img/s", s.loss, rate));
        bar.inc(1);
        let end_of_epoch = c.step % steps_per_epoch.max(1) == 0;
        if root && (end_of_epoch || c.step == total_steps) {
            let eval_started = Instant::now();
            let eval = c
                .evaluate(&test_set)
                .map_err(|e| resume_hint(e, &args.checkpoint))?;
            eval_secs += eval_started.elapsed().as_secs_f64();
            history.evals.push((c.step, eval.loss, eval.accuracy));
            let line = format!(
                "step {:>5} (epoch {:.2}): train loss {:.4}, test loss {:.4}, test accuracy {:.2}%",
                c.step,
                c.step as f64 / steps_per_epoch.max(1) as f64,
                s.loss,
                eval.loss,
                eval.accuracy * 100.0
            );
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
            save(&c)?;
        }
    }
    bar.finish_and_clear();
    // Images per second of training: the evaluations in between are not training.
    let train_secs = started.elapsed().as_secs_f64() - eval_secs;
    // A collective: every rank takes part before rank 0 alone goes on to evaluate and save.
    let divergence = c.rank_divergence()?;
    if !root {
        return Ok(());
    }
    if ranks.size > 1 {
        eprintln!(
            "ranks in sync: the largest parameter difference between any rank and rank 0 is {divergence:e} ({} ranks)",
            ranks.size
        );
    }
    let eval = c.evaluate(&test_set)?;
    if let Some(path) = &args.save {
        let mut meta = BTreeMap::new();
        meta.insert("model".to_string(), name.to_string());
        save_safetensors(path, &c.params()?, &meta)?;
        eprintln!("saved parameters to {}", path.display());
    }
    if let Some(path) = &args.plot {
        super::plot::write(path, &history)?;
        eprintln!("plotted the run to {}", path.display());
    }
    let images_per_sec = seen as f64 / train_secs.max(1e-9);
    println!(
        "test accuracy {:.2}% ({} images) after {} steps · final train loss {:.4} · {:.0} images/s · {:.1} s · {}",
        eval.accuracy * 100.0,
        eval.examples,
        c.step - first_step,
        last_loss,
        images_per_sec,
        train_secs,
        c.backend.describe()
    );
    if args.profile {
        println!();
        super::profile::report(&c.backend, &profiles, true, false, args.trace.as_ref())?;
    }
    Ok(())
}
