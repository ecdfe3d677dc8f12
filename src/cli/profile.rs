//! `sinter profile`: runs a few warm-up steps of a model's training step, then profiles some more,
//! and prints every kernel's time, GFLOP/s and GB/s against the device's measured ceilings.

use super::train::ModelName;
use super::{CliError, Result};
use clap::Args;
use sinter::report::ceilings::{self, Fastest};
use sinter::report::{table, trace};
use sinter_device::{AdapterClass, DeviceChoice};
use sinter_model::data::{embedded_mnist, CharCorpus, ImageDataset, TokenCorpus};
use sinter_model::gpt2::{Gpt2Config, Gpt2Lm, WindowOrder};
use sinter_model::lm::{CharLm, LmConfig};
use sinter_model::nn::{default_cnn, mlp};
use sinter_model::optim::{Optimizer, OptimizerKind};
use sinter_model::profile::{StepProfile, TimingMethod};
use sinter_model::train::{Classifier, ClassifierConfig};
use sinter_model::{Backend, Program, VarStore};
use std::path::PathBuf;

/// GPT-2's size for `sinter profile`, `bench step` and `bench soak` (refused for other models).
#[derive(Args, Debug, Clone, Default)]
pub struct Gpt2Size {
    /// --model gpt2: its size, tiny, mini, 124M, 355M, 774M or 1558M (default tiny).
    #[arg(long)]
    pub size: Option<String>,
    /// --model gpt2: tokens per window (default 64, or the size's positions if fewer).
    #[arg(long, value_parser = super::checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub context: Option<usize>,
}

#[derive(Args, Debug)]
pub struct ProfileArgs {
    /// The model whose training step runs (the models of `sinter train`).
    #[arg(long, value_enum, default_value_t = ModelName::Cnn)]
    pub model: ModelName,
    /// Images (image models) or windows of 64 characters (text models) per step; default 64 / 32.
    #[arg(long, value_parser = super::checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub batch: Option<usize>,
    /// auto (hardware GPU, else CPU), gpu, software (lavapipe & co.), cpu, or one adapter:
    /// gpu:N, software:N, gpu:NAME, software:NAME (see `sinter info`); or SINTER_DEVICE.
    #[arg(long)]
    pub device: Option<String>,
    /// Unprofiled steps first (pipelines, caches and clocks warm up).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Profiled steps.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Write a Chrome trace (open in https://ui.perfetto.dev or chrome://tracing).
    #[arg(long, value_name = "FILE.json")]
    pub trace: Option<PathBuf>,
    /// How a GPU times its dispatches: auto (the best it offers), inside (timestamps inside one
    /// compute pass), pass (one pass per dispatch), host (host clock, one submit per dispatch).
    #[arg(long, default_value = "auto")]
    pub timing: String,
    /// Measure the device's ceilings again instead of using the cached ones.
    #[arg(long)]
    pub recalibrate: bool,
    /// Skip the ceilings (no calibration, no cache).
    #[arg(long)]
    pub no_ceilings: bool,
    /// Seed of the initial parameters and the data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub gpt2: Gpt2Size,
}

/// A model's training step ready to run: what `profile` and `bench step` drive.
pub(super) enum Trainer {
    Image {
        c: Box<Classifier>,
        data: ImageDataset,
    },
    Text(Box<CharLm>),
    Gpt2(Box<Gpt2Lm>),
}

impl Trainer {
    /// The default-size training step of `model` on the shipped data, with Adam at lr 1e-3.
    pub fn build(
        model: ModelName,
        batch: Option<usize>,
        choice: DeviceChoice,
        seed: u64,
        gpt2: &Gpt2Size,
    ) -> Result<Self> {
        if batch == Some(0) {
            return Err(CliError::Usage("--batch must be at least 1".into()));
        }
        if model != ModelName::Gpt2 {
            for (option, given) in [
                ("--size", gpt2.size.is_some()),
                ("--context", gpt2.context.is_some()),
            ] {
                if given {
                    return Err(CliError::Usage(format!(
                        "{option} is for --model gpt2, not --model {}",
                        model_name(model)
                    )));
                }
            }
        }
        let (backend, notice) = Backend::open(choice)?;
        if let Some(n) = notice {
            eprintln!("{n}");
        }
        let opt = Optimizer::new(OptimizerKind::adam(0.0), 1e-3);
        if model == ModelName::Gpt2 {
            return Ok(Trainer::Gpt2(Box::new(gpt2_trainer(
                gpt2,
                batch.unwrap_or(8),
                backend,
                opt,
                seed,
            )?)));
        }
        if model.is_text() {
            let arch = super::train_text::arch(model, 128, 2, 4)?;
            let config = LmConfig {
                batch: batch.unwrap_or(32),
                accumulate: 1,
                seed,
                valid_batches: 1,
                stop_on_nan: true,
                detect_anomaly: false,
                dropout: 0.0,
                memory_limit: None,
            };
            let lm = CharLm::new(arch, 64, CharCorpus::embedded()?, backend, opt, config)?;
            return Ok(Trainer::Text(Box::new(lm)));
        }
        let (data, _) = embedded_mnist()?;
        let batch = batch.unwrap_or(64);
        if batch > data.n {
            return Err(CliError::Usage(format!(
                "--batch {batch} is larger than the {} training examples",
                data.n
            )));
        }
        let mut rng = sinter_model::Init::new(seed);
        let mut store = VarStore::new();
        let image = [data.channels, data.rows, data.cols];
        let (name, net) = match model {
            ModelName::Cnn => (
                "cnn",
                default_cnn(
                    &mut store,
                    image[0],
                    [image[1], image[2]],
                    data.classes,
                    &mut rng,
                ),
            ),
            ModelName::Resnet => (
                "resnet",
                sinter_model::resnet::resnet(&mut store, 20, image[0], data.classes, &mut rng)?,
            ),
            _ => (
                "mlp",
                mlp(
                    &mut store,
                    image.iter().product(),
                    256,
                    data.classes,
                    &mut rng,
                ),
            ),
        };
        let config = ClassifierConfig {
            batch,
            accumulate: 1,
            eval_batch: batch,
            seed,
            shuffle: true,
            stop_on_nan: false,
            detect_anomaly: false,
            memory_limit: None,
        };
        let c = Classifier::new(name, net, store, backend, opt, config, image, data.n)?;
        Ok(Trainer::Image {
            c: Box::new(c),
            data,
        })
    }

    pub fn backend(&self) -> &Backend {
        match self {
            Trainer::Image { c, .. } => &c.backend,
            Trainer::Text(lm) => &lm.backend,
            Trainer::Gpt2(lm) => &lm.backend,
        }
    }

    pub fn program(&self) -> &Program {
        match self {
            Trainer::Image { c, .. } => c.train_program(),
            Trainer::Text(lm) => lm.train_program(),
            Trainer::Gpt2(lm) => lm.train_program(),
        }
    }

    /// Examples (images or windows) per step.
    pub fn batch(&self) -> usize {
        match self {
            Trainer::Image { c, .. } => c.config.batch,
            Trainer::Text(lm) => lm.config.batch,
            Trainer::Gpt2(lm) => lm.config.batch,
        }
    }

    pub fn step(&mut self) -> Result<()> {
        match self {
            Trainer::Image { c, data } => {
                c.train_step(data)?;
            }
            Trainer::Text(lm) => {
                lm.train_step()?;
            }
            Trainer::Gpt2(lm) => {
                lm.train_step()?;
            }
        }
        Ok(())
    }

    pub fn step_profiled(&mut self, timing: Option<TimingMethod>) -> Result<StepProfile> {
        Ok(match self {
            Trainer::Image { c, data } => c.train_step_profiled(data, timing)?.1,
            Trainer::Text(lm) => lm.train_step_profiled(timing)?.1,
            Trainer::Gpt2(lm) => lm.train_step_profiled(timing)?.1,
        })
    }
}

/// A GPT-2 of `size` training on uniformly random tokens of its whole vocabulary (the data's
/// content does not change a step's time): the step `bench step --model gpt2` times.
fn gpt2_trainer(
    size: &Gpt2Size,
    batch: usize,
    backend: Backend,
    opt: Optimizer,
    seed: u64,
) -> Result<Gpt2Lm> {
    let config = Gpt2Config::preset(size.size.as_deref().unwrap_or("tiny"))
        .map_err(|e| CliError::Usage(format!("--size: {e}")))?;
    let context = size.context.unwrap_or(config.n_positions.min(64));
    if context > config.n_positions {
        return Err(CliError::Usage(format!(
            "--context {context} is longer than the model's {} positions",
            config.n_positions
        )));
    }
    let mut rng = sinter_model::Init::new(seed ^ 0x7e57);
    let mut tokens = |n: usize| -> Vec<u32> {
        let vocab = config.vocab_size as f32;
        rng.uniform(n, 0.5)
            .into_iter()
            .map(|x| (((x + 0.5) * vocab) as u32).min(config.vocab_size as u32 - 1))
            .collect()
    };
    let windows = (batch * (context + 1)).max(4096);
    let corpus = TokenCorpus {
        train: tokens(4 * windows),
        valid: tokens(windows),
        vocab_size: config.vocab_size,
    };
    let lm_config = LmConfig {
        batch,
        accumulate: 1,
        seed,
        valid_batches: 1,
        stop_on_nan: false,
        detect_anomaly: false,
        dropout: 0.0,
        memory_limit: None,
    };
    Ok(Gpt2Lm::new(
        config,
        context,
        corpus,
        WindowOrder::Random,
        backend,
        opt,
        lm_config,
        None,
    )?)
}

/// `cpu`, `software` or `gpu`: the device a backend runs on, in `--device` terms.
pub(super) fn device_label(backend: &Backend) -> &'static str {
    match backend {
        Backend::Cpu(_) => "cpu",
        Backend::Gpu(g) if g.gpu.report.class == AdapterClass::Software => "software",
        Backend::Gpu(_) => "gpu",
    }
}

pub(super) fn device_choice(device: &Option<String>) -> Result<DeviceChoice> {
    Ok(match device {
        Some(d) => DeviceChoice::parse(d)?,
        None => DeviceChoice::from_env()?,
    })
}

pub(super) fn model_name(model: ModelName) -> &'static str {
    match model {
        ModelName::Cnn => "cnn",
        ModelName::Mlp => "mlp",
        ModelName::CharTransformer => "char-transformer",
        ModelName::CharRnn => "char-rnn",
        ModelName::CharLstm => "char-lstm",
        ModelName::CharGru => "char-gru",
        ModelName::Resnet => "resnet",
        ModelName::Gpt2 => "gpt2",
    }
}

/// The median of `v` (0 for none).
pub(super) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn parse_timing(s: &str) -> Result<Option<TimingMethod>> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    TimingMethod::parse(s).map(Some).ok_or_else(|| {
        CliError::Usage(format!(
            "--timing '{s}': expected one of auto, inside, pass, host"
        ))
    })
}

/// Prints the report of `profiles` (and writes the trace when asked): shared by `sinter profile`
/// and `sinter train --profile`.
pub fn report(
    backend: &Backend,
    profiles: &[StepProfile],
    with_ceilings: bool,
    recalibrate: bool,
    trace: Option<&PathBuf>,
) -> Result<()> {
    let Some(first) = profiles.first() else {
        return Ok(());
    };
    let walls: Vec<f64> = profiles.iter().map(|p| p.wall_us).collect();
    let kernels: Vec<f64> = profiles.iter().map(StepProfile::kernel_us).collect();
    let (wall, kern) = (median(&walls), median(&kernels));
    println!("timing: {}", first.timing);
    if first.host_timed {
        println!("note: host-timed figures include a submit and a wait per kernel: an upper bound");
    }
    println!(
        "step: {:.3} ms wall (median of {}), kernels {:.3} ms ({:.0}% of the wall time); \
         '% step' below is each row's share of the kernel time",
        wall / 1e3,
        profiles.len(),
        kern / 1e3,
        100.0 * kern / wall.max(1e-9)
    );
    if let Some(line) = host_line(profiles) {
        println!("{line}");
    }
    let ceil = if with_ceilings {
        // Never below the fastest row, so no row shows more than 100%.
        let fastest = Fastest::of(&table::summarize(profiles));
        let c = ceilings::ceilings(backend, recalibrate, &fastest)?;
        println!("{}", c.describe(ceilings::now_unix()));
        Some(c.ceilings)
    } else {
        None
    };
    println!();
    print!("{}", table::table(profiles, ceil.as_ref()));
    if let Some(path) = trace {
        let text = trace::chrome_trace(profiles, &backend.describe());
        std::fs::write(path, text).map_err(|e| {
            CliError::Usage(format!("cannot write the trace {}: {e}", path.display()))
        })?;
        let events: usize = profiles.iter().map(|p| p.kernels.len()).sum();
        println!(
            "\ntrace: {} kernel events in {} (open in https://ui.perfetto.dev or chrome://tracing)",
            events,
            path.display()
        );
    }
    Ok(())
}

/// The host's phases of a step, medians over `profiles` in the order they ran: what the host
/// spends besides waiting for the GPU (writing feeds, recording, submitting, reading back) is
/// time a GPU idles unless steps are in flight (see `sinter train`). `None` on the CPU backend.
fn host_line(profiles: &[StepProfile]) -> Option<String> {
    let first = profiles.first()?;
    if first.host.is_empty() {
        return None;
    }
    // Phases by name, in the order they first ran; a phase that runs per dispatch (host timing)
    // is summed over the step.
    let mut names: Vec<&str> = Vec::new();
    for h in &first.host {
        if !names.contains(&h.name.as_str()) {
            names.push(&h.name);
        }
    }
    let mut busy = Vec::new();
    let phases: Vec<String> = names
        .iter()
        .map(|&name| {
            let per_step = |p: &StepProfile| -> f64 {
                p.host
                    .iter()
                    .filter(|h| h.name == name)
                    .map(|h| h.duration_us)
                    .sum()
            };
            let times: Vec<f64> = profiles.iter().map(per_step).collect();
            let t = median(&times);
            if !name.contains("wait") {
                busy.push(t);
            }
            let count = first.host.iter().filter(|h| h.name == name).count();
            match count {
                1 => format!("{name} {:.3} ms", t / 1e3),
                n => format!("{name} {:.3} ms ({n}×)", t / 1e3),
            }
        })
        .collect();
    Some(format!(
        "host: {} (medians); host work per step besides waiting: {:.3} ms",
        phases.join(" · "),
        busy.iter().sum::<f64>() / 1e3
    ))
}

pub fn run(args: ProfileArgs) -> Result<()> {
    if args.steps == 0 {
        return Err(CliError::Usage("--steps must be at least 1".into()));
    }
    let mut timing = parse_timing(&args.timing)?;
    let choice = device_choice(&args.device)?;
    let mut t = Trainer::build(args.model, args.batch, choice, args.seed, &args.gpt2)?;
    if let Backend::Gpu(g) = t.backend() {
        // An adapter without the asked-for timestamps is profiled the best way it can be.
        let (method, note) = TimingMethod::resolve(timing, |m| {
            sinter_device::profiler::timing_supported(m, &g.gpu)
        });
        if let Some(note) = note {
            eprintln!("note: {}: {note}", g.gpu.report.name);
        }
        timing = Some(method);
    }
    println!(
        "profiling {} on {} · batch {} · {} kernels per step · {} warm-up + {} profiled steps",
        model_name(args.model),
        t.backend().describe(),
        t.batch(),
        t.program().kernel_count(),
        args.warmup,
        args.steps
    );
    for _ in 0..args.warmup {
        t.step()?;
    }
    let profiles = (0..args.steps)
        .map(|_| t.step_profiled(timing))
        .collect::<Result<Vec<_>>>()?;
    report(
        t.backend(),
        &profiles,
        !args.no_ceilings,
        args.recalibrate,
        args.trace.as_ref(),
    )
}
