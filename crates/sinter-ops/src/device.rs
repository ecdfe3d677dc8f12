//! Which device the user asked for (`auto`, `gpu`, `software`, `cpu`, or one adapter: `gpu:1`,
//! `software:llvmpipe`): GPU-free, so that a CPU-only engine parses the same choices and the GPU
//! side resolves them to an adapter.

use std::fmt;
use thiserror::Error;

/// A device name that is not one of the choices.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("unknown device '{name}'{}: expected one of auto, gpu, software, cpu, or one adapter as gpu:N or software:N (its index among those kinds in `sinter info`) or gpu:NAME, software:NAME (part of its name)", source_var.map(|v| format!(" (from {v})")).unwrap_or_default())]
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
    /// One adapter among several of a kind: `gpu:1`, `software:0`, `gpu:rtx`.
    One {
        /// Hardware GPUs (`gpu:`) or software adapters (`software:`).
        kind: AdapterKind,
        /// Which of them.
        pick: AdapterPick,
    },
}

/// The kind of adapter a [`DeviceChoice::One`] picks among.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterKind {
    /// Discrete, integrated or other hardware GPUs.
    Hardware,
    /// Adapters of device type CPU: lavapipe, llvmpipe GL, WARP.
    Software,
}

/// How a [`DeviceChoice::One`] names its adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterPick {
    /// The n-th adapter of the kind, counting from 0 in the order `sinter info` lists them.
    Index(usize),
    /// The first adapter of the kind whose name contains this text (any case).
    Name(NamePart),
}

/// Part of an adapter's name, stored inline (at most [`NamePart::MAX`] bytes) so that a
/// [`DeviceChoice`] stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NamePart {
    bytes: [u8; NamePart::MAX],
    len: u8,
}

impl NamePart {
    /// The longest name part: adapter names are shorter than this.
    pub const MAX: usize = 64;

    /// `text` lowercased, or `None` when it is empty or longer than [`NamePart::MAX`] bytes.
    pub fn new(text: &str) -> Option<Self> {
        let lower = text.to_lowercase();
        if lower.is_empty() || lower.len() > Self::MAX {
            return None;
        }
        let mut bytes = [0u8; Self::MAX];
        bytes[..lower.len()].copy_from_slice(lower.as_bytes());
        Some(Self {
            bytes,
            len: lower.len() as u8,
        })
    }

    /// The text (lowercase).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).expect("stored from a str")
    }

    /// Whether `name` contains this part, ignoring case.
    pub fn matches(&self, name: &str) -> bool {
        name.to_lowercase().contains(self.as_str())
    }
}

impl fmt::Debug for NamePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl DeviceChoice {
    /// The environment variable that chooses the device when no option does.
    pub const ENV: &'static str = "SINTER_DEVICE";

    /// Parses `auto`, `gpu`, `software` (or `sw`, `lavapipe`) and `cpu`, in any case, and one
    /// adapter: `gpu:N` / `software:N` (the n-th of that kind, from 0) or `gpu:NAME` /
    /// `software:NAME` (the first of that kind whose name contains NAME, any case).
    pub fn parse(s: &str) -> Result<Self, UnknownDevice> {
        let unknown = || UnknownDevice {
            name: s.to_string(),
            source_var: None,
        };
        let t = s.trim();
        if let Some((kind, which)) = t.split_once(':') {
            let kind = match kind.trim().to_ascii_lowercase().as_str() {
                "gpu" => AdapterKind::Hardware,
                "software" | "sw" => AdapterKind::Software,
                _ => return Err(unknown()),
            };
            let which = which.trim();
            let pick = match which.parse::<usize>() {
                Ok(n) => AdapterPick::Index(n),
                Err(_) => AdapterPick::Name(NamePart::new(which).ok_or_else(unknown)?),
            };
            return Ok(Self::One { kind, pick });
        }
        match t.to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Self::Auto),
            "gpu" => Ok(Self::Gpu),
            "software" | "sw" | "lavapipe" => Ok(Self::Software),
            "cpu" => Ok(Self::Cpu),
            _ => Err(unknown()),
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
            Self::One { kind, pick } => {
                let kind = match kind {
                    AdapterKind::Hardware => "gpu",
                    AdapterKind::Software => "software",
                };
                return match pick {
                    AdapterPick::Index(n) => write!(f, "{kind}:{n}"),
                    AdapterPick::Name(part) => write!(f, "{kind}:{}", part.as_str()),
                };
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_adapter_is_chosen_by_index_or_name_part() {
        let one = |kind, pick| DeviceChoice::One { kind, pick };
        assert_eq!(
            DeviceChoice::parse("gpu:1"),
            Ok(one(AdapterKind::Hardware, AdapterPick::Index(1)))
        );
        assert_eq!(
            DeviceChoice::parse(" Software:0 "),
            Ok(one(AdapterKind::Software, AdapterPick::Index(0)))
        );
        let c = DeviceChoice::parse("gpu:GeForce RTX").unwrap();
        let DeviceChoice::One {
            pick: AdapterPick::Name(part),
            ..
        } = c
        else {
            panic!("{c:?}")
        };
        assert!(part.matches("NVIDIA GeForce RTX 4090") && !part.matches("llvmpipe"));
        assert_eq!(c.to_string(), "gpu:geforce rtx");
        assert_eq!(
            DeviceChoice::parse("software:3").unwrap().to_string(),
            "software:3"
        );
        for bad in [
            "gpu:",
            "cpu:0",
            "banana:1",
            &format!("gpu:{}", "x".repeat(65)),
        ] {
            assert!(DeviceChoice::parse(bad).is_err(), "{bad}");
        }
    }
}
