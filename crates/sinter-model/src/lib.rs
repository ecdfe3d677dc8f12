//! sinter-model: models as graphs. Tensor operations record nodes, `backward` appends gradient
//! nodes, the planner schedules a training step, and a backend (CPU or GPU) runs it.

pub mod cpu;
pub mod error;

pub use error::{ModelError, Result};
