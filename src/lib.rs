//! sinter: a neural-network training engine whose kernels are WGSL compute shaders run through wgpu.
//! This facade re-exports the two crates (and MPI support); the `sinter` binary is the command line.

#[cfg(feature = "mpi")]
pub mod distributed;

pub use sinter_device;
pub use sinter_model;
pub use sinter_ops;
