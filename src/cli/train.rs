//! `sinter train`: trains the default CNN (or an MLP) on the shipped MNIST digits or on IDX files,
//! with a progress bar, evaluation each epoch, checkpoints, and a final accuracy and throughput;
//! data-parallel over MPI ranks with `--distributed`, where rank 0 alone prints, evaluates and saves.

use super::metrics::Record;
use super::resume::Settings;
use super::{checks, CliError, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use sinter_device::DeviceChoice;
use sinter_model::checkpoint::{
    load_safetensors, save_safetensors, NamedTensor, TrainingCheckpoint,
};
use sinter_model::data::{embedded_mnist, load_dir, ImageDataset};
use sinter_model::nn::{default_cnn, mlp};
use sinter_model::optim::{Optimizer, OptimizerKind, Schedule};
use sinter_model::parallel::{any_rank, Collective};
use sinter_model::train::{Classifier, ClassifierConfig};
use sinter_model::{Backend, ModelError, VarStore};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    /// The model to train: image models (cnn, mlp) learn the digits, character models the text.
    #[arg(long, value_enum, default_value_t = ModelName::Cnn)]
    pub model: ModelName,
    /// Image models: a folder of IDX files (train-images-idx3-ubyte[.gz], … or
    /// images/labels-idx?-ubyte.gz); default: the 10,000 MNIST digits built into the binary.
    /// Text models: a UTF-8 text file; default: the tiny-shakespeare text built in.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Passes over the training images (image models; at least 1, default 5).
    #[arg(long, value_parser = checks::at_least_one::<u64>, allow_negative_numbers = true)]
    pub epochs: Option<u64>,
    /// Train for this many steps instead of whole epochs (at least 1).
    #[arg(long, value_parser = checks::at_least_one::<u64>, allow_negative_numbers = true)]
    pub steps: Option<u64>,
    /// Images per step (image models, default 64) or windows per step (text models, default 32);
    /// at least 1.
    #[arg(long, value_parser = checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub batch: Option<usize>,
    /// Characters of context (text models; at least 1).
    #[arg(long, default_value_t = 64, value_parser = checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub context: usize,
    /// Model width: embedding size of the transformer, hidden units of recurrent models (at
    /// least 1; a multiple of --heads for the transformer).
    #[arg(long, default_value_t = 128, value_parser = checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub width: usize,
    /// Transformer blocks (at least 1).
    #[arg(long, default_value_t = 2, value_parser = checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub layers: usize,
    /// Attention heads of the transformer (at least 1, dividing --width).
    #[arg(long, default_value_t = 4, value_parser = checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub heads: usize,
    /// After training a text model, print this many sampled characters.
    #[arg(long, default_value_t = 0)]
    pub sample: usize,
    /// Learning rate, greater than 0 (default: 2e-3 for adam/adamw on images, 3e-3 on text,
    /// 0.05 for sgd).
    #[arg(long, value_parser = checks::positive, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// The optimizer that applies the gradients.
    #[arg(long, value_enum, default_value_t = OptimizerName::Adam)]
    pub optimizer: OptimizerName,
    /// Momentum of --optimizer sgd, in [0, 1).
    #[arg(long, default_value_t = 0.9, value_parser = checks::momentum, allow_negative_numbers = true)]
    pub momentum: f32,
    /// Nesterov momentum for --optimizer sgd (looks ahead along the momentum before the gradient).
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay, at least 0 (default: 0.01 for adamw, 0 otherwise).
    #[arg(long, value_parser = checks::weight_decay, allow_negative_numbers = true)]
    pub weight_decay: Option<f32>,
    /// Learning-rate schedule (default: cosine with a 5% warm-up).
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleName>,
    /// Clip the global gradient norm to this value (greater than 0).
    #[arg(long, value_parser = checks::positive, allow_negative_numbers = true)]
    pub clip_norm: Option<f64>,
    /// auto (hardware GPU, else CPU), gpu, software (lavapipe & co.), cpu, or one adapter:
    /// gpu:N, software:N, gpu:NAME, software:NAME (see `sinter info`); or SINTER_DEVICE.
    #[arg(long)]
    pub device: Option<String>,
    /// Seed of the initial parameters, the data order and dropout: the same seed, device and
    /// thread count give the same run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Take the training images in file order instead of a new random order each epoch.
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
    /// Also write the checkpoint every N steps (at least 1).
    #[arg(long, value_parser = checks::at_least_one::<u64>, allow_negative_numbers = true)]
    pub checkpoint_every: Option<u64>,
    /// Continue from a training checkpoint (parameters, optimizer state, step, data order).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// With --resume: continue a run whose length (--epochs, --steps), --lr or --schedule
    /// differs from the checkpoint's, with the learning-rate schedule of this run's settings
    /// (e.g. extend a finished run: --epochs 3 --resume run.ckpt --new-schedule).
    #[arg(long, requires = "resume")]
    pub new_schedule: bool,
    /// Draw the loss and accuracy curves into this file (.svg, or .png without text).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Write the run's metrics to this file, one record per step and per evaluation (step,
    /// epoch, loss, accuracy or nats/char, learning rate, samples/s, seconds): JSON lines
    /// (.jsonl) or CSV (.csv).
    #[arg(long, value_name = "FILE.jsonl")]
    pub log: Option<PathBuf>,
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
    #[arg(long, help = DISTRIBUTED_HELP)]
    pub distributed: bool,
}

/// `--distributed`'s help says whether this build can use it.
const DISTRIBUTED_HELP: &str = if cfg!(feature = "mpi") {
    "Data-parallel training over MPI, one process per device: launch with `mpirun -np N sinter \
     train --distributed …`; --batch is the global batch, split over the ranks (image models)"
} else {
    "Data-parallel training over MPI (`mpirun -np N sinter train --distributed`): not built into \
     this sinter; rebuild with `cargo build --release --features mpi` (needs Open MPI or MPICH)"
};

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

/// A `ValueEnum`'s name on the command line (`adamw`, `char-rnn`).
pub(super) fn value_name<T: ValueEnum>(v: T) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_string())
}

/// The options behind this run's optimizer and data order, as recorded in its checkpoints.
fn settings(args: &TrainArgs, batch: usize, total_steps: u64, opt: &Optimizer) -> Settings {
    let mut s = vec![("--optimizer", value_name(args.optimizer))];
    s.push(("--lr", opt.lr.to_string()));
    if let OptimizerKind::Sgd(sgd) = opt.kind {
        s.push(("--momentum", sgd.momentum.to_string()));
        s.push(("--nesterov", sgd.nesterov.to_string()));
    }
    let decay = match opt.kind {
        OptimizerKind::Sgd(c) => c.weight_decay,
        OptimizerKind::Adam(c) => c.weight_decay,
    };
    s.push(("--weight-decay", decay.to_string()));
    let schedule = args.schedule.unwrap_or(ScheduleName::Cosine);
    s.push(("--schedule", value_name(schedule)));
    s.push((
        "--clip-norm",
        opt.clip_norm.map_or("none".into(), |c| c.to_string()),
    ));
    s.push(("--batch", batch.to_string()));
    let length = match args.steps {
        Some(n) => format!("--steps {n}"),
        None => format!("--epochs {}", args.epochs.unwrap_or(5)),
    };
    s.push(("run length", length));
    s.push(("total steps", total_steps.to_string()));
    Settings(s)
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
    let choice = match &args.device {
        Some(d) => DeviceChoice::parse(d).map_err(|e| CliError::Usage(format!("--device: {e}")))?,
        None => DeviceChoice::from_env()?,
    };
    if args.model.is_text() {
        refuse_image_only_options(&args)?;
    }
    check_files(&args)?;
    if args.distributed {
        return run_distributed(args, choice);
    }
    if args.model.is_text() {
        return super::train_text::run(&args, choice);
    }
    train_images(&args, choice, Ranks::alone())
}

/// Options the character models do not take yet, refused by name rather than ignored.
fn refuse_image_only_options(args: &TrainArgs) -> Result<()> {
    let given = [
        ("--epochs", args.epochs.is_some()),
        ("--no-shuffle", args.no_shuffle),
        ("--checkpoint", args.checkpoint.is_some()),
        ("--checkpoint-every", args.checkpoint_every.is_some()),
        ("--resume", args.resume.is_some()),
        ("--plot", args.plot.is_some()),
        ("--stop-on-nan", args.stop_on_nan),
        ("--profile", args.profile),
        ("--distributed", args.distributed),
    ];
    if let Some((option, _)) = given.iter().find(|g| g.1) {
        let hint = match *option {
            "--epochs" => " (they train for --steps, default 600)",
            "--profile" => "; use `sinter profile --model <char-model>`",
            "--stop-on-nan" => " (they always stop at a non-finite loss)",
            _ => "",
        };
        return Err(CliError::Usage(format!(
            "{option} is not supported for --model {} (image models only){hint}",
            value_name(args.model)
        )));
    }
    Ok(())
}

/// Every file the run reads must exist and every file it writes must be writable, checked
/// before the data is loaded, so that no run ends by failing to save its result.
fn check_files(args: &TrainArgs) -> Result<()> {
    use checks::Output;
    for (option, path) in [
        ("--data", &args.data),
        ("--init", &args.init),
        ("--resume", &args.resume),
    ] {
        if let Some(path) = path {
            checks::input(option, path)?;
        }
    }
    let outputs: Vec<Output> = [
        ("--save", &args.save, &[][..], false),
        ("--checkpoint", &args.checkpoint, &[], false),
        ("--plot", &args.plot, &["svg", "png"], true),
        ("--trace", &args.trace, &[], true),
        ("--log", &args.log, &["jsonl", "csv"], true),
    ]
    .into_iter()
    .filter_map(|(option, path, extensions, in_place)| {
        Some(Output {
            option,
            path: path.as_deref()?,
            extensions,
            in_place,
        })
    })
    .collect();
    checks::outputs(&outputs)
}

/// Parameters for `--init`: a safetensors file of parameters, not a training checkpoint.
pub(super) fn load_init(path: &Path) -> Result<Vec<NamedTensor>> {
    let (tensors, meta) = load_safetensors(path)?;
    if meta.contains_key("sinter-checkpoint")
        || tensors.iter().any(|t| t.name.starts_with("param/"))
    {
        return Err(CliError::Usage(format!(
            "--init {}: this is a training checkpoint, use --resume {} to continue its run (--init takes parameters written by --save)",
            path.display(),
            path.display()
        )));
    }
    Ok(tensors)
}

/// A training checkpoint for `--resume`; a parameter file gets a pointer to `--init`.
fn load_resume(path: &Path) -> Result<TrainingCheckpoint> {
    TrainingCheckpoint::load(path).map_err(|e| match e {
        ModelError::Checkpoint { ref problem, .. }
            if problem.starts_with("is not a sinter training checkpoint") =>
        {
            CliError::Usage(format!(
                "--resume {e}; a parameter file written by --save starts a new run with --init {}",
                path.display()
            ))
        }
        e => e.into(),
    })
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
            eprintln!(
                "error on rank {} of {}: {}",
                mpi.rank,
                mpi.size,
                super::message(&e)
            );
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
    let total_steps = args
        .steps
        .unwrap_or(args.epochs.unwrap_or(5) * steps_per_epoch);
    let config = ClassifierConfig {
        batch,
        eval_batch: 200,
        seed: args.seed,
        shuffle: !args.no_shuffle,
        stop_on_nan: args.stop_on_nan,
        detect_anomaly: args.detect_anomaly,
        memory_limit: super::memory::limit_for(&backend)?,
    };
    let opt = optimizer(args, total_steps, steps_per_epoch)?;
    let too_big = |e| super::memory::explain(e, &[("--batch", batch)]);
    let mut c = match ranks.collective {
        None => Classifier::new(name, model, store, backend, opt, config, image, train_set.n)
            .map_err(too_big)?,
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
        )
        .map_err(too_big)?,
    };
    if let Some(path) = &args.init {
        let tensors = load_init(path)?;
        c.set_params(&tensors, path)?;
    }
    let settings = settings(args, batch, total_steps, &c.optimizer);
    if let Some(path) = &args.resume {
        // Every rank reads the same checkpoint: parameters, optimizer state and data order.
        let mut ckpt = load_resume(path)?;
        let now = format!("{:?}", c.optimizer);
        let change = super::resume::reconcile(&mut ckpt, path, &settings, &now, args.new_schedule)?;
        if let (Some(change), true) = (change, root) {
            eprintln!("{change}");
        }
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
    bar.set_style(ProgressStyle::with_template(PROGRESS_TEMPLATE).expect("valid template"));
    bar.set_position(c.step);
    let started = Instant::now();
    let first_step = c.step;
    let mut seen = 0usize;
    let mut last_loss = f32::NAN;
    let mut history = super::plot::History::default();
    let interrupted = interrupt_flag();
    let mut profiles = Vec::new();
    let mut eval_secs = 0.0;
    let mut non_finite = NonFinite::default();
    let mut epoch = EpochMeans::new();
    // The evaluation of the last step, so that the final report does not evaluate it again.
    let mut last_eval = None;
    let mut metrics = match (&args.log, root) {
        (Some(path), true) => Some(super::metrics::MetricsLog::create(path)?),
        _ => None,
    };
    // Only rank 0 writes checkpoints; the ranks hold the same state.
    let save = |c: &Classifier| -> Result<()> {
        if let (Some(path), true) = (&args.checkpoint, root) {
            // Reading the state back needs the device: if it is lost, the file on disk stays.
            let mut state = c
                .checkpoint()
                .map_err(|e| resume_hint(e, &args.checkpoint))?;
            settings.record(&mut state);
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
        let step_started = Instant::now();
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
        if args.checkpoint_every.is_some_and(|n| c.step % n == 0) {
            save(&c)?;
        }
        seen += batch;
        last_loss = s.loss;
        if let (Some(first), true) = (non_finite.record(c.step, s.loss), root) {
            say(&bar, first);
        }
        epoch.add(s.loss, s.correct, batch);
        history.train_loss.push((c.step, s.loss));
        let rate = seen as f64 / started.elapsed().as_secs_f64();
        bar.set_message(progress_message(s.loss, rate, "img/s"));
        bar.inc(1);
        if let Some(m) = &mut metrics {
            m.write(&Record {
                kind: "train",
                step: c.step,
                epoch: Some(c.step as f64 / steps_per_epoch.max(1) as f64),
                loss: s.loss as f64,
                accuracy: Some(s.correct as f64 / batch as f64),
                lr: Some(c.optimizer.lr * c.optimizer.schedule.factor(c.step - 1)),
                samples_per_sec: Some(batch as f64 / step_started.elapsed().as_secs_f64()),
                seconds: started.elapsed().as_secs_f64(),
                ..Record::default()
            })?;
        }
        let end_of_epoch = c.step % steps_per_epoch.max(1) == 0;
        if root && (end_of_epoch || c.step == total_steps) {
            let eval_started = Instant::now();
            bar.set_message(format!("evaluating {} test images…", test_set.n));
            let eval = c
                .evaluate(&test_set)
                .map_err(|e| resume_hint(e, &args.checkpoint))?;
            eval_secs += eval_started.elapsed().as_secs_f64();
            history.evals.push((c.step, eval.loss, eval.accuracy));
            if let Some(m) = &mut metrics {
                m.write(&Record {
                    kind: "eval",
                    step: c.step,
                    epoch: Some(c.step as f64 / steps_per_epoch.max(1) as f64),
                    loss: eval.loss,
                    accuracy: Some(eval.accuracy),
                    samples_per_sec: Some(
                        eval.examples as f64 / eval_started.elapsed().as_secs_f64(),
                    ),
                    seconds: started.elapsed().as_secs_f64(),
                    ..Record::default()
                })?;
            }
            let (train_loss, train_acc, secs) = epoch.take();
            say(
                &bar,
                format!(
                    "step {:>5} (epoch {:.2}, {secs:.1} s): train loss {}, train accuracy {:.2}%, test loss {}, test accuracy {:.2}%",
                    c.step,
                    c.step as f64 / steps_per_epoch.max(1) as f64,
                    loss_text(train_loss),
                    train_acc * 100.0,
                    loss_text(eval.loss),
                    eval.accuracy * 100.0
                ),
            );
            last_eval = Some((c.step, eval));
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
    if let Some(summary) = non_finite.summary(c.step - first_step) {
        eprintln!("{summary}");
    }
    if ranks.size > 1 {
        eprintln!(
            "ranks in sync: the largest parameter difference between any rank and rank 0 is {divergence:e} ({} ranks)",
            ranks.size
        );
    }
    let eval = match last_eval {
        Some((step, eval)) if step == c.step => eval,
        _ => {
            if !args.quiet {
                eprintln!("evaluating {} test images…", test_set.n);
            }
            c.evaluate(&test_set)?
        }
    };
    if let Some(path) = &args.save {
        let mut meta = BTreeMap::new();
        meta.insert("model".to_string(), name.to_string());
        // What `sinter eval` and `sinter predict` need to rebuild the network without the data.
        meta.insert("image".to_string(), super::saved::image_text(image));
        meta.insert("classes".to_string(), train_set.classes.to_string());
        save_safetensors(path, &c.params()?, &meta)?;
        eprintln!("saved parameters to {}", path.display());
    }
    if let Some(path) = &args.plot {
        super::plot::write(path, &history)?;
        eprintln!("plotted the run to {}", path.display());
    }
    let images_per_sec = seen as f64 / train_secs.max(1e-9);
    println!(
        "test accuracy {:.2}% ({} images) after {} steps · final train loss {} · {:.0} images/s · {:.1} s · {}",
        eval.accuracy * 100.0,
        eval.examples,
        c.step - first_step,
        loss_text(last_loss as f64),
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
struct EpochMeans {
    loss: f64,
    correct: usize,
    examples: usize,
    steps: usize,
    started: Instant,
}

impl EpochMeans {
    fn new() -> Self {
        EpochMeans {
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
        *self = EpochMeans::new();
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
