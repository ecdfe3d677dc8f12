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
pub mod train_gpt2;
pub mod train_images;
pub mod train_loop;
pub mod train_text;
pub mod tune;

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

impl CliError {
    /// The device crate's error inside, whether it came up directly or through the model crate.
    fn device(&self) -> Option<&sinter_device::DeviceError> {
        match self {
            CliError::Device(e) | CliError::Model(sinter_model::ModelError::Device(e)) => Some(e),
            _ => None,
        }
    }
}

/// What `sinter` prints after `error: `: the libraries describe the problem, and where an option
/// of this command line (or an install step) resolves it, the message names that instead.
pub fn message(e: &CliError) -> String {
    use sinter_device::{DeviceChoice, DeviceError};
    match e.device() {
        Some(DeviceError::NoAdapter {
            wanted: DeviceChoice::Software,
            seen,
        }) => format!(
            "no software adapter found (adapters seen: {seen}); \
             install Mesa's lavapipe (apt-get install mesa-vulkan-drivers)"
        ),
        Some(DeviceError::NoAdapter { seen, .. }) => format!(
            "no hardware GPU adapter found (adapters seen: {seen}); \
             use --device cpu for the CPU backend or --device software for a software adapter"
        ),
        Some(DeviceError::NoSuchAdapter { wanted, seen }) => {
            format!("--device {wanted}: no such adapter; found {seen} (see `sinter info`)")
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sinter_device::{DeviceChoice, DeviceError};

    #[test]
    fn a_missing_adapter_is_described_by_the_library_and_named_by_its_option_here() {
        let no_gpu = || DeviceError::NoAdapter {
            wanted: DeviceChoice::Gpu,
            seen: "none".into(),
        };
        let library = no_gpu().to_string();
        assert!(!library.contains("--"), "{library}");
        assert!(library.contains("CPU backend"), "{library}");
        for e in [
            CliError::Device(no_gpu()),
            CliError::Model(sinter_model::ModelError::Device(no_gpu())),
        ] {
            let m = message(&e);
            assert!(
                m.contains("--device cpu") && m.contains("--device software"),
                "{m}"
            );
            assert!(
                m.starts_with("no hardware GPU adapter found (adapters seen: none)"),
                "{m}"
            );
        }
        let no_software = DeviceError::NoAdapter {
            wanted: DeviceChoice::Software,
            seen: "none".into(),
        };
        let library = no_software.to_string();
        assert!(!library.contains("apt-get"), "{library}");
        let m = message(&CliError::Device(no_software));
        assert!(m.contains("apt-get install mesa-vulkan-drivers"), "{m}");
    }

    #[test]
    fn other_errors_keep_the_library_text() {
        let e = CliError::Usage("--steps must be at least 1".into());
        assert_eq!(message(&e), e.to_string());
    }
}
