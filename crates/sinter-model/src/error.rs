//! The model crate's one error type: bad shapes (naming the op, the shapes and the line that
//! recorded it), bad files (naming the file and the problem), device failures and numeric faults.

use std::path::PathBuf;
use thiserror::Error;

/// Why building, compiling, running, loading or saving a model failed. Messages name the thing
/// at fault (op and line, file, node, option) and, where there is one, what to do.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A tensor operation got shapes it cannot combine.
    #[error("{op} at {location}: {detail}")]
    Shape {
        /// The operation (`matmul`, `conv2d`, …).
        op: &'static str,
        /// The shapes and why they do not fit.
        detail: String,
        /// `file:line:column` of the model code that recorded it.
        location: String,
    },
    /// Autodiff or planning was asked for something the graph cannot give.
    #[error("{0}")]
    Graph(String),
    /// A data file (IDX, text) is missing, truncated or inconsistent.
    #[error("{file}: {problem}")]
    Data {
        /// The file (or folder) at fault.
        file: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A parameter or checkpoint file does not match the model or is corrupt.
    #[error("{file}: {problem}")]
    Checkpoint {
        /// The checkpoint or parameter file.
        file: PathBuf,
        /// Which tensor or setting disagrees, and how.
        problem: String,
    },
    /// Reading or writing a file failed at the operating-system level.
    #[error("{file}: {source}")]
    Io {
        /// The file being read or written.
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The GPU side failed (adapter, shader, buffer, device loss).
    #[cfg(feature = "gpu")]
    #[error(transparent)]
    Device(#[from] sinter_device::DeviceError),
    /// A kernel was given a shape it cannot compute.
    #[error(transparent)]
    KernelShape(#[from] sinter_ops::ShapeError),
    /// A device name that is not one of the choices.
    #[error(transparent)]
    UnknownDevice(#[from] sinter_ops::UnknownDevice),
    /// The loss or a gradient became NaN or infinite.
    #[error("step {step}: {what} is not finite ({value})")]
    NonFinite {
        /// The training step: how many steps the trainer had completed before it.
        step: u64,
        /// Which value (`the training loss`).
        what: String,
        /// The value itself (NaN or ±∞).
        value: f32,
    },
    /// Anomaly detection found the first node of a step whose value is not finite.
    #[error("step {step}: {anomaly}")]
    Anomaly {
        /// The training step, counted as in [`ModelError::NonFinite`].
        step: u64,
        /// The node, its tag and source line, and the values that went bad.
        anomaly: Box<crate::backend::Anomaly>,
    },
    /// A training step needs more memory than the adapter allows.
    #[error("the step needs {needed} bytes in one buffer but the adapter's limit is {limit} bytes ({what})")]
    TooLarge {
        /// The node or buffer that is too large.
        what: String,
        /// Bytes it needs.
        needed: u64,
        /// The adapter's limit, in bytes.
        limit: u64,
    },
    /// A program's planned memory does not fit the memory the backend has (see
    /// [`crate::MemoryLimit`]); refused before anything is allocated.
    #[error("{what} needs {} but {origin}", gib(*needed))]
    OutOfMemory {
        /// The program, e.g. `one step of batch 64`.
        what: String,
        /// Bytes of its buffers plus what is already held (variables, other programs).
        needed: u64,
        /// The bytes the backend may use.
        limit: u64,
        /// Where the limit comes from, with its figure: `the CPU backend has 21.3 GiB of RAM
        /// available (MemAvailable)`.
        origin: String,
    },
    /// A bad option or hyperparameter.
    #[error("{0}")]
    Config(String),
    /// The ranks of a data-parallel run disagree, or talking to them failed.
    #[error("distributed training: {0}")]
    Distributed(String),
}

/// The model crate's result type.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Bytes in GiB, for messages: `41.3 GiB`.
pub(crate) fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

impl ModelError {
    /// A [`ModelError::Data`] for `file`.
    pub fn data(file: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Self::Data {
            file: file.into(),
            problem: problem.into(),
        }
    }
    /// A [`ModelError::Checkpoint`] for `file`.
    pub fn checkpoint(file: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Self::Checkpoint {
            file: file.into(),
            problem: problem.into(),
        }
    }
    /// A [`ModelError::Io`] for `file`.
    pub fn io(file: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            file: file.into(),
            source,
        }
    }
}
