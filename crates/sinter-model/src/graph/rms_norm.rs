//! RMS normalization as a tensor operation (`Tensor::rms_norm`): checks the scale's shape and the
//! epsilon, and records one [`Op::RmsNorm`] node.

use super::tensor::shape_err;
use super::{Op, Tensor};
use crate::error::Result;
use std::panic::Location;

impl Tensor {
    /// RMS normalization over the last axis, `x / sqrt(mean(x²) + eps) · gamma` with `gamma:
    /// [d]` (PyTorch's `RMSNorm`; PyTorch's default eps is `f32::EPSILON`). [`crate::ModelError::Shape`]
    /// when gamma is not `[d]`, eps is negative or not finite, or the operands belong to
    /// different graphs.
    #[track_caller]
    pub fn rms_norm(&self, gamma: &Tensor, eps: f32) -> Result<Tensor> {
        let loc = Location::caller();
        self.same_graph(gamma, "rms_norm", loc)?;
        let d = self.last_axis("rms_norm")?;
        if gamma.shape() != [d] {
            return Err(shape_err(
                "rms_norm",
                format!(
                    "x {:?} needs gamma of shape [{d}], got {:?}",
                    self.shape(),
                    gamma.shape()
                ),
                loc,
            ));
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(shape_err(
                "rms_norm",
                format!("eps {eps}: expected finite and ≥ 0"),
                loc,
            ));
        }
        Ok(self.record(Op::RmsNorm { eps }, &[self.id, gamma.id], self.shape(), loc))
    }
}
