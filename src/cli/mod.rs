//! Subcommands of the `sinter` binary, one module each.
//! They turn options into calls on the model and device crates and print what happened.

pub mod bench;
pub mod checks;
pub mod eval;
pub mod info;
pub mod memory;
pub mod metrics;
pub mod plot;
pub mod profile;
pub mod resume;
pub mod sample;
pub mod saved;
pub mod train;
pub mod train_text;

/// Errors of the command line: those of the crates, plus bad options.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Model(#[from] sinter_model::ModelError),
    #[error(transparent)]
    Device(#[from] sinter_device::DeviceError),
    /// `--device` or `SINTER_DEVICE` names no device (the option is added where it is known).
    #[error("{0}")]
    UnknownDevice(#[from] sinter_ops::UnknownDevice),
    #[error("{0}")]
    Usage(String),
    #[error("interrupted at step {step}; {}", match saved {
        Some(p) => format!("checkpoint saved to {} (continue with --resume {})", p.display(), p.display()),
        None => "no --checkpoint given, nothing saved".to_string(),
    })]
    Interrupted {
        step: u64,
        saved: Option<std::path::PathBuf>,
    },
    /// A rank other than 0 that stopped together with rank 0, which says why.
    #[cfg(feature = "mpi")]
    #[error("stopped together with rank 0")]
    StoppedWithRankZero,
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;
