//! `sinter train`: its options, their checks, and the pieces every model's run shares (the
//! optimizer, the settings a checkpoint records, Ctrl-C, --init/--resume files, MPI ranks); the
//! loop is in train_loop.rs, the image and text models in train_images.rs and train_text.rs.

use super::resume::Settings;
use super::{checks, CliError, Result};
use clap::{Args, ValueEnum};
use sinter_device::DeviceChoice;
use sinter_model::checkpoint::{load_safetensors, NamedTensor, TrainingCheckpoint};
use sinter_model::optim::{DecayOn, Optimizer, OptimizerKind, Schedule};
use sinter_model::parallel::Collective;
use sinter_model::ModelError;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
    /// A CIFAR-style ResNet (He et al. 2016) of --depth layers: conv 3×3 (→16) · BN · ReLU ·
    /// three stages of basic blocks (16/32/64 channels) · global average pool · fc.
    Resnet,
    /// GPT-2 (--size, or --layers/--heads/--width/--context; --init and --save take Hugging
    /// Face folders; --tokenizer FILE, or characters).
    Gpt2,
}

impl ModelName {
    pub fn is_text(self) -> bool {
        !matches!(self, ModelName::Cnn | ModelName::Mlp | ModelName::Resnet)
    }
}

impl TrainArgs {
    /// `--accumulate`, checked against the batch and the ranks before anything is loaded: the
    /// batch must split evenly into ranks × micro-batches.
    pub(super) fn accumulate_over(&self, batch: usize, ranks: usize) -> Result<usize> {
        let parts = ranks * self.accumulate;
        if batch % parts == 0 {
            return Ok(self.accumulate);
        }
        let over = match (ranks, self.accumulate) {
            (r, 1) => format!("{r} ranks"),
            (1, a) => format!("--accumulate {a} micro-batches"),
            (r, a) => format!("{r} ranks × --accumulate {a} micro-batches"),
        };
        Err(CliError::Usage(format!(
            "--batch {batch} does not split evenly over {over}: use a --batch that is a multiple of {parts}"
        )))
    }

    /// `--context`, or its default for the character models.
    pub fn context_or_default(&self) -> usize {
        self.context.unwrap_or(64)
    }
    /// `--width`, or its default for the character models.
    pub fn width_or_default(&self) -> usize {
        self.width.unwrap_or(128)
    }
    /// `--layers`, or its default for the character models.
    pub fn layers_or_default(&self) -> usize {
        self.layers.unwrap_or(2)
    }
    /// `--heads`, or its default for the character models.
    pub fn heads_or_default(&self) -> usize {
        self.heads.unwrap_or(4)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerName {
    /// SGD with momentum (0.9 by default).
    Sgd,
    Adam,
    Adamw,
}

/// `--decay-on`: see [`DecayOn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DecayOnName {
    Matrices,
    All,
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
    /// The model to train: image models (cnn, mlp, resnet) learn the digits (or the images of
    /// --data), character models the text.
    #[arg(long, value_enum, default_value_t = ModelName::Cnn)]
    pub model: ModelName,
    /// Image models: a folder of IDX files (train-images-idx3-ubyte[.gz], … or
    /// images/labels-idx?-ubyte.gz) or of CIFAR-10 binary batches (data_batch_1.bin …
    /// data_batch_5.bin, test_batch.bin); default: the 10,000 MNIST digits built into the binary.
    /// Text models: a UTF-8 text file; default: the tiny-shakespeare text built in.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Passes over the training images (image models, which count epochs; at least 1,
    /// default 5).
    #[arg(long, value_parser = checks::at_least_one::<u64>, allow_negative_numbers = true)]
    pub epochs: Option<u64>,
    /// Train for this many steps instead of whole epochs (at least 1).
    #[arg(long, value_parser = checks::at_least_one::<u64>, allow_negative_numbers = true)]
    pub steps: Option<u64>,
    /// Images per step (image models, default 64) or windows per step (text models, default 32);
    /// at least 1.
    #[arg(long, value_parser = checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub batch: Option<usize>,
    /// Gradient accumulation: split each step's batch into this many micro-batches, run one
    /// after another, their gradients summed before one optimizer step (the same update as the
    /// whole batch at once, in a micro-batch's memory; at least 1, default 1; with
    /// --distributed, each rank's share is split).
    #[arg(long, default_value_t = 1, value_parser = checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub accumulate: usize,
    /// Tokens of context (text models; at least 1; default 64, or gpt2's n_positions with
    /// --size or --init, which it may undercut).
    #[arg(long, value_parser = checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub context: Option<usize>,
    /// Model width: embedding size of the transformers, hidden units of recurrent models (at
    /// least 1, default 128; a multiple of --heads for the transformers).
    #[arg(long, value_parser = checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub width: Option<usize>,
    /// Transformer blocks (at least 1, default 2).
    #[arg(long, value_parser = checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub layers: Option<usize>,
    /// Attention heads of the transformers (at least 1, dividing --width; default 4).
    #[arg(long, value_parser = checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub heads: Option<usize>,
    /// GPT-2's size: tiny, mini, 124M, 355M, 774M or 1558M (instead of --layers, --heads,
    /// --width; --context may be shorter than the preset's positions).
    #[arg(long)]
    pub size: Option<String>,
    /// gpt2: a Hugging Face tokenizer.json (byte-level BPE …) that turns the --data text into
    /// token ids; without one, the text's characters are the tokens.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// gpt2: drop probability in training of the embeddings, the attention weights and each
    /// residual branch (the attention's and the MLP's outputs), in [0, 1) (default 0, as
    /// nanoGPT pretrains).
    #[arg(long, default_value_t = 0.0, value_parser = checks::probability, allow_negative_numbers = true)]
    pub dropout: f32,
    /// Image models: augment the training images by translating each by up to N pixels each
    /// way (zero fill), a fresh random draw at every step (torchvision's RandomCrop with padding
    /// N; default 0, none). Evaluation sees the images as they are.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub shift: usize,
    /// Layers of --model resnet: 6n+2 (20, 32, 44, 56, 110, …), n basic blocks per stage
    /// (default 20).
    #[arg(long)]
    pub depth: Option<usize>,
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
    /// Which parameters the weight decay applies to: matrices (linear and convolution weights;
    /// not biases, norms or embeddings, as GPT-2 is trained) or all (PyTorch's optimizers given
    /// `model.parameters()`).
    #[arg(long, value_enum, default_value_t = DecayOnName::Matrices)]
    pub decay_on: DecayOnName,
    /// Learning-rate schedule (default: cosine with a 5% warm-up).
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleName>,
    /// Warm-up steps of the cosine schedule, at most the run's steps (default: 5% of the run).
    #[arg(long)]
    pub warmup: Option<u64>,
    /// The learning rate the cosine schedule ends at, in [0, --lr] (default 0).
    #[arg(long, value_parser = checks::non_negative, allow_negative_numbers = true)]
    pub min_lr: Option<f64>,
    /// β1 of --optimizer adam/adamw, the first moment's decay, in [0, 1) (default 0.9).
    #[arg(long, value_parser = checks::beta, allow_negative_numbers = true)]
    pub beta1: Option<f32>,
    /// β2 of --optimizer adam/adamw, the second moment's decay, in [0, 1) (default 0.999).
    #[arg(long, value_parser = checks::beta, allow_negative_numbers = true)]
    pub beta2: Option<f32>,
    /// ε of --optimizer adam/adamw, added to the root of the second moment, greater than 0
    /// (default 1e-8).
    #[arg(long, value_parser = checks::positive_f32, allow_negative_numbers = true)]
    pub eps: Option<f32>,
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
    /// Take the training images in file order instead of a new random order each epoch (image
    /// models; text models draw random windows).
    #[arg(long)]
    pub no_shuffle: bool,
    /// Initial parameters from a safetensors file (names as PyTorch's state_dict); for gpt2, a
    /// Hugging Face folder (config.json, model.safetensors, tokenizer.json if any) that also
    /// gives the architecture.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Write the trained parameters to this safetensors file; gpt2 writes a folder that
    /// `GPT2LMHeadModel.from_pretrained` loads (and `sinter sample DIR`).
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Write a full training checkpoint here at each evaluation (every epoch of an image model,
    /// every sixth of a text model's run), every --checkpoint-every steps, on Ctrl-C, and at
    /// the end of the run.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Also write the checkpoint every N steps (at least 1).
    #[arg(long, value_parser = checks::at_least_one::<u64>, allow_negative_numbers = true)]
    pub checkpoint_every: Option<u64>,
    /// Evaluate every N steps, and after the last (at least 1; default: every epoch for image
    /// models, every sixth of the run for text models).
    #[arg(long, value_name = "N", value_parser = checks::at_least_one::<u64>, allow_negative_numbers = true)]
    pub eval_every: Option<u64>,
    /// Text models: batches of --batch windows, spread evenly over the validation split, that
    /// each evaluation averages (the same windows every time; at least 1, default 16).
    #[arg(long, value_name = "N", value_parser = checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub eval_batches: Option<usize>,
    /// Keep the model of the best evaluation so far (lowest test or validation loss) at PATH,
    /// written as --save writes it (a parameter file, or a Hugging Face folder for gpt2), each
    /// time an evaluation improves on it.
    #[arg(long, value_name = "PATH")]
    pub save_best: Option<PathBuf>,
    /// Continue from a training checkpoint (parameters, optimizer state, step, data order, and
    /// the history --plot draws).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// With --resume: continue a run whose length (--epochs, --steps), --lr or --schedule
    /// differs from the checkpoint's, with the learning-rate schedule of this run's settings
    /// (e.g. extend a finished run: --epochs 3 --resume run.ckpt --new-schedule).
    #[arg(long, requires = "resume")]
    pub new_schedule: bool,
    /// Draw the loss curves and the test accuracy (image models) or validation loss (text
    /// models) into this file (.svg or .png); a resumed run draws its whole history.
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
    /// Time every kernel of every step and print the profile table at the end (`sinter
    /// profile` profiles a model without training it).
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
     train --distributed …`; --batch is the global batch, split over the ranks"
} else {
    "Data-parallel training over MPI (`mpirun -np N sinter train --distributed`): not built into \
     this sinter; rebuild with `cargo build --release --features mpi` (needs Open MPI or MPICH)"
};

/// Where this process trains in a data-parallel job (one process alone: rank 0 of 1).
pub(super) struct Ranks {
    pub rank: usize,
    pub size: usize,
    /// Index of this process among the job's processes on this machine: picks its GPU.
    pub local_rank: usize,
    pub collective: Option<Box<dyn Collective>>,
}

impl TrainArgs {
    /// The depth of --model resnet: --depth, or 20.
    pub fn resnet_depth(&self) -> usize {
        self.depth.unwrap_or(20)
    }
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
    let mut kind = kind;
    match &mut kind {
        OptimizerKind::Adam(c) => {
            c.beta1 = args.beta1.unwrap_or(c.beta1);
            c.beta2 = args.beta2.unwrap_or(c.beta2);
            c.eps = args.eps.unwrap_or(c.eps);
        }
        OptimizerKind::Sgd(_) => {
            let given = [
                ("--beta1", args.beta1.is_some()),
                ("--beta2", args.beta2.is_some()),
                ("--eps", args.eps.is_some()),
            ];
            if let Some((flag, _)) = given.iter().find(|g| g.1) {
                return Err(CliError::Usage(format!(
                    "{flag} applies to --optimizer adam and adamw, not sgd"
                )));
            }
        }
    }
    let lr = args
        .lr
        .unwrap_or(match (args.optimizer, args.model.is_text()) {
            (OptimizerName::Sgd, _) => 0.05,
            _ if args.model == ModelName::Gpt2 => 6e-4,
            (_, false) => 2e-3,
            (_, true) => 3e-3,
        });
    let mut opt = Optimizer::new(kind, lr);
    opt.clip_norm = args.clip_norm;
    opt.decay_on = match args.decay_on {
        DecayOnName::Matrices => DecayOn::Matrices,
        DecayOnName::All => DecayOn::All,
    };
    let schedule = args.schedule.unwrap_or(ScheduleName::Cosine);
    if schedule != ScheduleName::Cosine {
        let given = [
            ("--warmup", args.warmup.is_some()),
            ("--min-lr", args.min_lr.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|g| g.1) {
            return Err(CliError::Usage(format!(
                "{flag} applies to --schedule cosine, not {}",
                value_name(schedule)
            )));
        }
    }
    let warmup = args.warmup.unwrap_or(total_steps / 20);
    if warmup > total_steps {
        return Err(CliError::Usage(format!(
            "--warmup {warmup} is longer than the run ({total_steps} steps)"
        )));
    }
    let min_lr = args.min_lr.unwrap_or(0.0);
    if min_lr > lr {
        return Err(CliError::Usage(format!(
            "--min-lr {min_lr} is above the learning rate {lr}: expected a value in [0, {lr}]"
        )));
    }
    opt.schedule = match schedule {
        ScheduleName::Constant => Schedule::Constant,
        ScheduleName::Cosine => Schedule::Cosine {
            warmup,
            total: total_steps,
            min_factor: min_lr / lr,
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
pub(super) fn settings(
    args: &TrainArgs,
    batch: usize,
    total_steps: u64,
    opt: &Optimizer,
) -> Settings {
    // What the model is: a checkpoint continues only the model it was written by.
    let mut s = vec![("--model", value_name(args.model))];
    if args.model.is_text() {
        s.push(("--width", args.width_or_default().to_string()));
        s.push(("--context", args.context_or_default().to_string()));
        if args.model == ModelName::CharTransformer {
            s.push(("--layers", args.layers_or_default().to_string()));
            s.push(("--heads", args.heads_or_default().to_string()));
        }
    }
    if args.model == ModelName::Resnet {
        s.push(("--depth", args.resnet_depth().to_string()));
    }
    if args.model == ModelName::Gpt2 {
        s.push(("--dropout", args.dropout.to_string()));
    }
    if !args.model.is_text() {
        s.push(("--shift", args.shift.to_string()));
    }
    // The seed draws the data order and dropout, which a resumed run continues.
    s.push(("--seed", args.seed.to_string()));
    s.push(("--optimizer", value_name(args.optimizer)));
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
    s.push(("--decay-on", value_name(args.decay_on)));
    if let OptimizerKind::Adam(adam) = opt.kind {
        s.push(("--beta1", adam.beta1.to_string()));
        s.push(("--beta2", adam.beta2.to_string()));
        s.push(("--eps", adam.eps.to_string()));
    }
    let schedule = args.schedule.unwrap_or(ScheduleName::Cosine);
    s.push(("--schedule", value_name(schedule)));
    if let Schedule::Cosine {
        warmup, min_factor, ..
    } = opt.schedule
    {
        s.push(("--warmup", warmup.to_string()));
        s.push(("--min-lr", (min_factor * opt.lr).to_string()));
    }
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

/// How the step's batch is split, for the line that opens a run: empty for one process
/// without accumulation, else the share of each rank, the micro-batches and the gradients
/// all-reduced per step.
pub(super) fn batch_split(
    batch: usize,
    ranks: usize,
    accumulate: usize,
    gradient_bytes: usize,
) -> String {
    let micro = batch / (ranks * accumulate);
    let mut parts = Vec::new();
    if ranks > 1 {
        parts.push(format!("{} per rank", batch / ranks));
    }
    if accumulate > 1 {
        parts.push(format!("{accumulate} micro-batches of {micro} accumulated"));
    }
    if ranks > 1 {
        parts.push(format!(
            "{:.2} MB of gradients all-reduced per step",
            gradient_bytes as f64 / 1e6
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join("; "))
    }
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
    } else {
        refuse_text_only_options(&args)?;
    }
    if let (Some(d), false) = (args.depth, args.model == ModelName::Resnet) {
        return Err(CliError::Usage(format!(
            "--depth {d} is for --model resnet; --model {} has no depth option",
            value_name(args.model)
        )));
    }
    if args.dropout != 0.0 && args.model != ModelName::Gpt2 {
        return Err(CliError::Usage(format!(
            "--dropout {} is for --model gpt2; --model {} has no dropout option",
            args.dropout,
            value_name(args.model)
        )));
    }
    check_files(&args)?;
    if args.distributed {
        return run_distributed(args, choice);
    }
    train(&args, choice, Ranks::alone())
}

/// Trains the model `args` names, on this process's share of the ranks.
fn train(args: &TrainArgs, choice: DeviceChoice, ranks: Ranks) -> Result<()> {
    if args.model == ModelName::Gpt2 {
        super::train_gpt2::run(args, choice, ranks)
    } else if args.model.is_text() {
        super::train_text::run(args, choice, ranks)
    } else {
        super::train_images::run(args, choice, ranks)
    }
}

/// Options of the text models that an image model would ignore, refused by name.
fn refuse_text_only_options(args: &TrainArgs) -> Result<()> {
    let given = [
        ("--context", args.context.is_some()),
        ("--width", args.width.is_some()),
        ("--layers", args.layers.is_some()),
        ("--heads", args.heads.is_some()),
        ("--size", args.size.is_some()),
        ("--tokenizer", args.tokenizer.is_some()),
        ("--eval-batches", args.eval_batches.is_some()),
        ("--sample", args.sample > 0),
    ];
    match given.iter().find(|g| g.1) {
        Some((option, _)) => Err(CliError::Usage(format!(
            "{option} is for the text models (char-transformer, gpt2 …), not --model {}",
            value_name(args.model)
        ))),
        None => Ok(()),
    }
}

/// Options that have no meaning for the text models, refused by name rather than ignored.
fn refuse_image_only_options(args: &TrainArgs) -> Result<()> {
    if args.model != ModelName::Gpt2 {
        for (option, given) in [
            ("--size", args.size.is_some()),
            ("--tokenizer", args.tokenizer.is_some()),
        ] {
            if given {
                return Err(CliError::Usage(format!(
                    "{option} is for --model gpt2, not --model {}",
                    value_name(args.model)
                )));
            }
        }
    }
    let given = [
        (
            "--shift",
            args.shift > 0,
            "it moves the pixels of images, and a text has none",
        ),
        (
            "--epochs",
            args.epochs.is_some(),
            "they draw random windows of the text at every step, so there are no passes over it \
             to count: give the length with --steps (default 600)",
        ),
        (
            "--no-shuffle",
            args.no_shuffle && args.model != ModelName::Gpt2,
            "they draw random windows of the text at every step (seeded by --seed), so there is \
             no file order to keep",
        ),
    ];
    if let Some((option, _, why)) = given.iter().find(|g| g.1) {
        return Err(CliError::Usage(format!(
            "{option} is not supported for --model {}: {why}",
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
        ("--tokenizer", &args.tokenizer),
    ] {
        if let Some(path) = path {
            checks::input(option, path)?;
        }
    }
    // GPT-2 saves a Hugging Face folder, not a file.
    let gpt2 = args.model == ModelName::Gpt2;
    for (option, dir) in [("--save", &args.save), ("--save-best", &args.save_best)] {
        if let (Some(dir), true) = (dir, gpt2) {
            super::train_gpt2::check_save_dir(option, dir)?;
        }
    }
    if let (Some(a), Some(b)) = (&args.save, &args.save_best) {
        if a == b {
            return Err(CliError::Usage(format!(
                "--save and --save-best are both {}: the final model would overwrite the best one; give --save-best another path",
                a.display()
            )));
        }
    }
    let (save_file, best_file) = if gpt2 {
        (&None, &None)
    } else {
        (&args.save, &args.save_best)
    };
    let outputs: Vec<Output> = [
        ("--save", save_file, &[][..], false),
        ("--save-best", best_file, &[][..], false),
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
pub(super) fn load_resume(path: &Path) -> Result<TrainingCheckpoint> {
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
    match train(&args, choice, ranks) {
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
