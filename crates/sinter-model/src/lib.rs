//! sinter-model: models as graphs. Tensor operations record nodes, `backward` appends gradient
//! nodes, the planner schedules a training step, and a backend (CPU or GPU) runs it.

#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod backend;
pub mod backward;
pub mod checkpoint;
pub mod cpu;
pub mod data;
pub mod error;
pub mod fuse;
pub mod gpt2;
pub mod graph;
pub mod lm;
pub mod lower;
pub mod nn;
pub mod nn_seq;
pub mod optim;
pub mod parallel;
pub mod plan;
pub mod profile;
pub mod resnet;
pub mod train;
pub mod trainer;
pub mod vars;

pub use backend::{Anomaly, Backend, MemoryLimit, PendingOutputs, Program, StepScalars};
pub use backward::{backward, Gradients};
pub use error::{ModelError, Result};
pub use graph::{ConvConfig, Graph, GraphBuilder, NodeId, Op, PoolConfig, Tensor};
pub use plan::{MemoryReport, Plan};
pub use trainer::{
    Combine, Evaluator, Feeds, Metric, Model, Outputs, StepResult, TrainConfig, Trainer,
};
pub use vars::{Init, VarId, VarKind, VarStore};
