//! sinter-ops: what each kernel computes, with no GPU in sight. The op enums (unary, binary,
//! reduce), the shape struct of every kernel family with its shape rules and checks, the optimizer
//! settings, and the one cost model (FLOPs and bytes) that the CPU kernels and WGSL launchers share.

#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod attention;
pub mod batch_norm;
pub mod conv;
pub mod device;
pub mod elementwise;
pub mod embedding;
pub mod error;
pub mod kernel;
pub mod layout;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod select;
pub mod softmax;
pub mod timing;

pub use device::{AdapterKind, AdapterPick, DeviceChoice, NamePart, UnknownDevice};
pub use error::ShapeError;
pub use kernel::{Cost, Kernel};
