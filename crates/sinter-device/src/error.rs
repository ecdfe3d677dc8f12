//! The device crate's one error type: everything that can really fail on the GPU side
//! (no adapter, a shader that does not compile, a buffer over a limit, a failed map, a lost device).

use sinter_ops::DeviceChoice;
use thiserror::Error;

/// Why a GPU operation failed. Every message names what was asked for and, where there is one,
/// what to do about it.
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
    /// A specific adapter (`gpu:7`, `software:NAME`) was asked for and none such was found.
    #[error("device {wanted}: no such adapter; found {seen}")]
    NoSuchAdapter {
        /// The choice as written.
        wanted: String,
        /// The adapters that were found, one summary each.
        seen: String,
    },
    /// A device name (`--device`, `SINTER_DEVICE`) that is not one of the known choices.
    #[error(transparent)]
    UnknownDevice(#[from] sinter_ops::UnknownDevice),
    /// The adapter refused to open a device (missing feature or limit, driver failure).
    #[error("could not open a device on adapter '{adapter}': {source}")]
    RequestDevice {
        /// The adapter's name as the driver reports it.
        adapter: String,
        /// wgpu's reason.
        source: wgpu::RequestDeviceError,
    },
    /// A WGSL module or pipeline failed validation, or the backend's compiler (the driver's, or
    /// naga's translation for it) rejected it: wgpu's validation, out-of-memory and internal errors.
    #[error("shader {shader}.wgsl, entry point '{entry}', on {backend}: {message}")]
    ShaderCompile {
        /// The file's stem under `shaders/`.
        shader: &'static str,
        /// The entry point being compiled.
        entry: &'static str,
        /// The adapter's API and name, e.g. `Gl (llvmpipe (LLVM 15.0.6, 256 bits))`.
        backend: String,
        /// The compiler's message.
        message: String,
    },
    /// A buffer larger than one storage binding may be; the planner splits or refuses such ops.
    #[error("{op}: a buffer of {bytes} bytes exceeds the adapter's max_storage_buffer_binding_size of {limit} bytes")]
    BufferTooLarge {
        /// The op (or node tag) that asked for the buffer.
        op: String,
        /// The size asked for, in bytes.
        bytes: u64,
        /// The adapter's `max_storage_buffer_binding_size`, in bytes.
        limit: u64,
    },
    /// A grid with more workgroups in one dimension than the adapter allows.
    #[error("{op}: dispatch of {groups:?} workgroups exceeds the adapter's limit of {limit} workgroups per dimension")]
    DispatchTooLarge {
        /// The op (or node tag) being launched.
        op: String,
        /// The grid asked for, `[x, y, z]` workgroups.
        groups: [u32; 3],
        /// The adapter's `max_compute_workgroups_per_dimension`.
        limit: u32,
    },
    /// A device limit below what a kernel needs: the kernel (or device) and the limit named.
    #[error("{what}, but the device allows {need}")]
    Limit {
        /// What needs more: the kernel (`norm.wgsl::layer_norm_rows (ln1)`) and how much.
        what: String,
        /// The device's limit, named.
        need: String,
    },
    /// A kernel shape the kernels cannot run (from the sinter-ops shape checks).
    #[error("{op}: {detail}")]
    BadShape {
        /// The kernel family (`conv2d`, `attention`, …).
        op: String,
        /// Which dimension is wrong and why.
        detail: String,
    },
    /// Mapping a staging buffer for readback failed.
    #[error("reading a buffer back from the GPU failed: {0}")]
    Map(String),
    /// A validation, out-of-memory or internal error caught in an error scope, or reported
    /// uncaptured.
    #[error("the GPU reported an error: {0}")]
    Gpu(String),
    /// The driver lost the device (reset, hang, removal); nothing on it can be used again.
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

/// The device crate's result type.
pub type Result<T, E = DeviceError> = std::result::Result<T, E>;

impl From<sinter_ops::ShapeError> for DeviceError {
    fn from(e: sinter_ops::ShapeError) -> Self {
        DeviceError::BadShape {
            op: e.op,
            detail: e.detail,
        }
    }
}
