//! sinter: a neural-network training engine whose kernels are WGSL compute shaders run through wgpu.
//! This facade re-exports the two crates; the `sinter` binary (src/main.rs) is the command line.

pub use sinter_device;
pub use sinter_model;
