//! sinter: a neural-network training engine whose kernels are WGSL compute shaders run through
//! wgpu, with a native CPU backend. This facade is the one dependency a user needs: it re-exports
//! what a model and its training need at the top level, and the three crates whole.
//!
//! The README's "Define your own model" section, compiled and run as a test:
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

#[cfg(feature = "mpi")]
pub mod distributed;
pub mod report;

pub use sinter_device;
pub use sinter_model;
pub use sinter_ops;

pub use sinter_model::backend::Backend;
pub use sinter_model::checkpoint::{NamedTensor, TrainingCheckpoint};
pub use sinter_model::data::{embedded_mnist, ImageDataset};
pub use sinter_model::graph::{ConvConfig, GraphBuilder, PoolConfig, Tensor};
pub use sinter_model::nn::{Conv2d, Linear, Mode, Sequential};
pub use sinter_model::nn_seq::{Embedding, LayerNorm};
pub use sinter_model::optim::{Optimizer, OptimizerKind, Schedule};
pub use sinter_model::{
    backward, Combine, Feeds, Init, Metric, Model, ModelError, Outputs, Result, StepResult,
    StepScalars, TrainConfig, Trainer, VarStore,
};
pub use sinter_ops::elementwise::{BinaryOp, UnaryOp};
pub use sinter_ops::DeviceChoice;
