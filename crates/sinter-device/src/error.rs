//! The device crate's one error type: everything that can really fail on the GPU side
//! (no adapter, a shader that does not compile, a buffer over a limit, a failed map, a lost device).

use sinter_ops::DeviceChoice;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DeviceError {
    /// The device choice asked for an adapter of a kind that is not there. The text says what
    /// else exists; a program with options names its own (the `sinter` binary adds `--device`).
    #[error("no {} adapter found (adapters seen: {seen}); {}", no_adapter_kind(*wanted), no_adapter_alternative(*wanted))]
    NoAdapter {
        /// [`DeviceChoice::Gpu`] (a hardware GPU) or [`DeviceChoice::Software`].
        wanted: DeviceChoice,
        /// The adapters found, `name [API, class]` joined by `; `, or `none`.
        seen: String,
    },
    #[error(transparent)]
    UnknownDevice(#[from] sinter_ops::UnknownDevice),
    #[error("could not open a device on adapter '{adapter}': {source}")]
    RequestDevice {
        adapter: String,
        source: wgpu::RequestDeviceError,
    },
    #[error("shader {shader}.wgsl, entry point '{entry}': {message}")]
    ShaderCompile {
        shader: &'static str,
        entry: &'static str,
        message: String,
    },
    #[error("{op}: a buffer of {bytes} bytes exceeds the adapter's max_storage_buffer_binding_size of {limit} bytes")]
    BufferTooLarge { op: String, bytes: u64, limit: u64 },
    #[error("{op}: dispatch of {groups:?} workgroups exceeds the adapter's limit of {limit} workgroups per dimension")]
    DispatchTooLarge {
        op: String,
        groups: [u32; 3],
        limit: u32,
    },
    #[error("{op}: {detail}")]
    BadShape { op: String, detail: String },
    #[error("reading a buffer back from the GPU failed: {0}")]
    Map(String),
    #[error("the GPU reported an error: {0}")]
    Gpu(String),
    #[error("the GPU device was lost ({0}); its buffers and results are gone")]
    DeviceLost(String),
}

/// What [`DeviceError::NoAdapter`] looked for.
fn no_adapter_kind(wanted: DeviceChoice) -> &'static str {
    match wanted {
        DeviceChoice::Software => "software",
        _ => "hardware GPU",
    }
}

/// What can be used instead of the missing adapter, in library terms.
fn no_adapter_alternative(wanted: DeviceChoice) -> &'static str {
    match wanted {
        DeviceChoice::Software => {
            "a software adapter is a CPU-type Vulkan or GL driver such as Mesa's lavapipe or llvmpipe"
        }
        _ => "the CPU backend or a software adapter (lavapipe) can be used instead",
    }
}

pub type Result<T, E = DeviceError> = std::result::Result<T, E>;

impl From<sinter_ops::ShapeError> for DeviceError {
    fn from(e: sinter_ops::ShapeError) -> Self {
        DeviceError::BadShape {
            op: e.op,
            detail: e.detail,
        }
    }
}
