//! sinter-device: the GPU side of sinter. It finds and chooses adapters, owns the wgpu device,
//! compiles and caches the WGSL kernels in `shaders/`, pools buffers, and prepares kernel launches.

#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod adapter;
pub mod cache_file;
pub mod canary;
#[cfg(test)]
mod driver_errors;
pub mod error;
pub mod gpu;
pub mod kernels;
pub mod limits;
pub mod pipeline_cache;
pub mod pool;
pub mod profiler;
pub mod readback;
pub mod shaders;
pub mod testing;
pub mod tune;

pub use adapter::{
    adapters_of, enumerate_adapters, pick_adapter, pick_adapter_nth, AdapterClass, AdapterReport,
    DeviceChoice,
};
pub use error::{DeviceError, Result};
pub use gpu::{Dispatch, Gpu, Launch};
pub use kernels::grid_1d;
pub use pool::PoolStats;
pub use readback::Submitted;
pub use shaders::{Shader, UNARY_LIBRARY};
pub use wgpu;
