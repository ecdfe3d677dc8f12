//! Profiling vocabulary shared by both backends: how a GPU times its dispatches, and the ceilings
//! (best FLOP rate and bandwidth) that a profile compares each kernel against.

use std::fmt;

/// How a GPU profile measures each dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimingMethod {
    /// A timestamp before the first dispatch and after each one, all in one compute pass
    /// (`TIMESTAMP_QUERY_INSIDE_PASSES`): the step is recorded exactly as it runs unprofiled.
    InsidePasses,
    /// Each dispatch in a compute pass of its own with begin and end timestamps
    /// (`TIMESTAMP_QUERY`): adds a pass boundary between dispatches.
    PassPerDispatch,
    /// Each dispatch submitted and waited for on its own, timed by the host clock: includes the
    /// submit and wake-up latency, so small kernels look slower than they are.
    HostTimed,
}

impl TimingMethod {
    /// `requested` when `supported` says the adapter offers it, else the most faithful method it
    /// does offer, with a note for the user saying what was asked for and what is used instead.
    /// `None` asks for the best method and never needs a note.
    pub fn resolve(
        requested: Option<Self>,
        supported: impl Fn(Self) -> bool,
    ) -> (Self, Option<String>) {
        let best = [Self::InsidePasses, Self::PassPerDispatch]
            .into_iter()
            .find(|&m| supported(m))
            .unwrap_or(Self::HostTimed);
        match requested {
            Some(m) if supported(m) => (m, None),
            Some(m) => (
                best,
                Some(format!(
                    "timing '{m}' needs {}, which this adapter does not offer; using '{best}' ({}) instead",
                    m.needs(),
                    best.label()
                )),
            ),
            None => (best, None),
        }
    }

    /// The adapter features the method needs, in words.
    pub fn needs(self) -> &'static str {
        match self {
            Self::InsidePasses => "TIMESTAMP_QUERY | TIMESTAMP_QUERY_INSIDE_PASSES",
            Self::PassPerDispatch => "TIMESTAMP_QUERY",
            Self::HostTimed => "no feature",
        }
    }

    /// What a report prints: `host-timed` is spelled out because those figures include latency.
    pub fn label(self) -> &'static str {
        match self {
            Self::InsidePasses => "GPU timestamps inside one compute pass",
            Self::PassPerDispatch => "GPU timestamps, one compute pass per dispatch",
            Self::HostTimed => "host-timed (one submit per dispatch; includes submit latency)",
        }
    }

    /// `inside`, `pass` or `host` (as the command line spells them).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "inside" | "inside-passes" => Some(Self::InsidePasses),
            "pass" | "pass-per-dispatch" => Some(Self::PassPerDispatch),
            "host" | "host-timed" => Some(Self::HostTimed),
            _ => None,
        }
    }
}

impl fmt::Display for TimingMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InsidePasses => "inside",
            Self::PassPerDispatch => "pass",
            Self::HostTimed => "host",
        })
    }
}

/// The best arithmetic rate and memory bandwidth measured on one device: what a profile
/// compares each kernel against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ceilings {
    /// FLOP/s of a large matrix product, in GFLOP/s.
    pub gflops: f64,
    /// Bytes moved per second by a large copy (read + write), in GB/s.
    pub gbps: f64,
}

/// Square size of the calibration matrix product.
pub const CALIBRATION_MATMUL: usize = 1024;
/// Bytes of the calibration copy (less where the adapter's binding limit is smaller).
pub const CALIBRATION_COPY_BYTES: u64 = 64 << 20;
