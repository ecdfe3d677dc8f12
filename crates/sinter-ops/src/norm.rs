//! Layer and RMS normalization over the last axis: the shape of one call, and the rule that picks
//! the per-row or per-workgroup kernel.

use crate::error::{check_len, ShapeError};

/// Row length from which a workgroup per row pays off (the kernels' workgroup size).
pub const NORM_TREE_MIN_DIM: usize = 256;

/// x seen as [rows, dim], normalized over dim with the biased variance (as PyTorch's LayerNorm);
/// gamma and beta are `[dim]`. RMS normalization (PyTorch's RMSNorm: no mean, no beta) uses the
/// same shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNormShape {
    /// Product of every axis but the last.
    pub rows: usize,
    /// The normalized (last) axis.
    pub dim: usize,
    /// Added to the variance before the square root.
    pub eps: f32,
}

impl LayerNormShape {
    /// Elements of x: rows · dim.
    pub fn len(&self) -> usize {
        self.rows * self.dim
    }

    /// Whether x has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A workgroup per row pays off once a row is as long as the workgroup; shorter rows get one
    /// invocation each.
    pub fn uses_tree(&self) -> bool {
        self.dim >= NORM_TREE_MIN_DIM
    }

    /// Refuses zero-sized dims, a negative or non-finite eps, and tensors over u32 indexing.
    pub fn check(&self, op: &str) -> Result<(), ShapeError> {
        let LayerNormShape { rows, dim, eps } = *self;
        if rows == 0 || dim == 0 {
            return Err(ShapeError::new(
                op,
                format!("zero-sized dim in x [rows, dim] = [{rows}, {dim}]"),
            ));
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(ShapeError::new(
                op,
                format!("eps {eps} for x [{rows}, {dim}]: expected finite and ≥ 0"),
            ));
        }
        check_len(op, &format!("x [rows, dim] = [{rows}, {dim}]"), rows * dim)
    }
}
