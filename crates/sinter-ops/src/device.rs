//! Which device the user asked for (`auto`, `gpu`, `software`, `cpu`): GPU-free, so that a
//! CPU-only engine parses the same choices and the GPU side resolves them to an adapter.

use std::fmt;
use thiserror::Error;

/// A device name that is not one of the choices.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("unknown device '{name}'{}: expected one of auto, gpu, software, cpu", source_var.map(|v| format!(" (from {v})")).unwrap_or_default())]
pub struct UnknownDevice {
    /// What was given.
    pub name: String,
    /// The environment variable it came from, if it came from one.
    pub source_var: Option<&'static str>,
}

/// What the user asked for, with `--device` or `SINTER_DEVICE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The best hardware GPU; the CPU backend when there is none.
    #[default]
    Auto,
    /// A hardware GPU, or an error.
    Gpu,
    /// A software adapter (device type CPU): how shaders are tested on a machine with no GPU.
    Software,
    /// The native CPU backend.
    Cpu,
}

impl DeviceChoice {
    /// The environment variable that chooses the device when no option does.
    pub const ENV: &'static str = "SINTER_DEVICE";

    /// Parses `auto`, `gpu`, `software` (or `sw`, `lavapipe`) and `cpu`, in any case.
    pub fn parse(s: &str) -> Result<Self, UnknownDevice> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Self::Auto),
            "gpu" => Ok(Self::Gpu),
            "software" | "sw" | "lavapipe" => Ok(Self::Software),
            "cpu" => Ok(Self::Cpu),
            _ => Err(UnknownDevice {
                name: s.to_string(),
                source_var: None,
            }),
        }
    }

    /// The choice in `SINTER_DEVICE`, or `Auto` when it is unset; a bad value names the variable.
    pub fn from_env() -> Result<Self, UnknownDevice> {
        match std::env::var(Self::ENV) {
            Ok(v) => Self::parse(&v).map_err(|e| UnknownDevice {
                source_var: Some(Self::ENV),
                ..e
            }),
            Err(_) => Ok(Self::Auto),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Gpu => "gpu",
            Self::Software => "software",
            Self::Cpu => "cpu",
        })
    }
}
