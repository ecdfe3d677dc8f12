//! The device crate's one error type: everything that can really fail on the GPU side
//! (no adapter, a shader that does not compile, a buffer over a limit, a failed map, a lost device).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DeviceError {
    #[error("no {wanted} adapter found (adapters seen: {seen}); {hint}")]
    NoAdapter {
        wanted: &'static str,
        seen: String,
        hint: &'static str,
    },
    /// `--device gpu:7` or `software:NAME` names no adapter that was found.
    #[error("--device {wanted}: no such adapter; found {seen} (see `sinter info`)")]
    NoSuchAdapter { wanted: String, seen: String },
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

pub type Result<T, E = DeviceError> = std::result::Result<T, E>;

impl From<sinter_ops::ShapeError> for DeviceError {
    fn from(e: sinter_ops::ShapeError) -> Self {
        DeviceError::BadShape {
            op: e.op,
            detail: e.detail,
        }
    }
}
