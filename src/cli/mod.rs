//! Subcommands of the `sinter` binary, one module each.
//! They turn options into calls on the model and device crates and print what happened.

pub mod info;
pub mod sample;
pub mod train;
pub mod train_text;

/// Errors of the command line: those of the crates, plus bad options.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Model(#[from] sinter_model::ModelError),
    #[error(transparent)]
    Device(#[from] sinter_device::DeviceError),
    #[error("{0}")]
    Usage(String),
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;
