//! The `sinter` command line: `train` a model, `eval` or `predict` with a saved one, `sample`
//! text, list adapters with `info`, `profile` a training step's kernels, `bench` kernels and
//! `tune` kernel variants ahead of time.
//! Each subcommand lives in `src/cli/`; this file parses arguments and reports errors.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sinter",
    version,
    about = "Train neural networks with WGSL kernels on any GPU, or on the CPU"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
    /// Choose kernel variants by the static rule instead of by measurement (no tuning, no tuned
    /// choices used); the same as setting SINTER_NO_TUNE=1.
    #[arg(long, global = true)]
    no_tune: bool,
}

// Parsed once per run: the size of the largest variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Train a model on the shipped MNIST digits (or on IDX files with --data).
    Train(cli::train::TrainArgs),
    /// Loss and accuracy of a saved image model on the test images, or nats per character of a
    /// character model on the validation text (no training).
    Eval(cli::eval::EvalArgs),
    /// Class probabilities of PNG images (or of test images by --index) under a saved image model.
    Predict(cli::eval::PredictArgs),
    /// Generate text with a character model saved by `sinter train --model char-… --save FILE`,
    /// or a GPT-2 folder (`--model gpt2 --save DIR`, or one `transformers` wrote).
    Sample(cli::sample::SampleArgs),
    /// List the adapters found and say which one `--device auto` (or `--device …`) would use.
    Info(cli::info::InfoArgs),
    /// Profile a training step: every kernel's time, GFLOP/s and GB/s against the device's ceilings.
    Profile(cli::profile::ProfileArgs),
    /// Benchmarks: matmul, conv, attention kernels (checked against the CPU first) and whole steps.
    Bench(cli::bench::BenchArgs),
    /// Tune the kernel variants of models' training steps ahead of time and print the choices.
    Tune(cli::tune::TuneArgs),
}

/// Mesa's implicit Vulkan layer VK_LAYER_MESA_device_select connects to a Wayland display while
/// the adapters are listed, and on a headless machine that prints `error: XDG_RUNTIME_DIR is
/// invalid or not set in the environment.` to stderr for every listing. sinter orders adapters
/// itself, so the layer is switched off (its own `NODEVICE_SELECT` switch) unless the user
/// set that switch or chose a device through the layer (`MESA_VK_DEVICE_SELECT`).
fn quiet_vulkan_device_select() {
    if std::env::var_os("NODEVICE_SELECT").is_none()
        && std::env::var_os("MESA_VK_DEVICE_SELECT").is_none()
    {
        // Before any thread exists, so no other thread reads the environment meanwhile.
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so a write to a closed pipe (`sinter train | head`) fails and
    // println! panics with a backtrace; the default action ends the process quietly instead.
    #[cfg(unix)]
    // SAFETY: called first in main, before any thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    quiet_vulkan_device_select();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    if args.no_tune {
        // Still one thread: nothing reads the environment meanwhile.
        std::env::set_var(sinter_device::tune::NO_TUNE_ENV, "1");
    }
    let result = match args.command {
        Command::Train(a) => cli::train::run(a),
        Command::Eval(a) => cli::eval::run_eval(a),
        Command::Predict(a) => cli::eval::run_predict(a),
        Command::Sample(a) => cli::sample::run(a),
        Command::Info(a) => cli::info::run(a),
        Command::Profile(a) => cli::profile::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Tune(a) => cli::tune::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Exiting 0 lets mpirun wait for rank 0, whose message and status speak for the job
        // (a non-zero exit here would make mpirun end rank 0 before it could report).
        #[cfg(feature = "mpi")]
        Err(cli::CliError::StoppedWithRankZero) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::message(&e));
            ExitCode::FAILURE
        }
    }
}
