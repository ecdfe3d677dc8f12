//! The op crate's one error: a shape that no kernel can compute, naming the op and the shapes.
//! Backends wrap it in their own error types.

use thiserror::Error;

/// A shape that no kernel can compute: the op, and what is wrong with which shapes.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{op}: {detail}")]
pub struct ShapeError {
    /// The op that refused the shape (`conv2d`, `max_pool2d_grad`, …).
    pub op: String,
    /// What is wrong, with the shapes involved.
    pub detail: String,
}

impl ShapeError {
    /// An error for `op` with `detail`.
    pub fn new(op: &str, detail: impl Into<String>) -> Self {
        Self {
            op: op.to_string(),
            detail: detail.into(),
        }
    }
}

/// Refuses an empty tensor or one that does not fit the kernels' u32 indexing.
pub fn check_len(op: &str, what: &str, len: usize) -> Result<(), ShapeError> {
    if len == 0 || len > u32::MAX as usize {
        return Err(ShapeError::new(
            op,
            format!(
                "{what} has {len} elements; expected between 1 and {}",
                u32::MAX
            ),
        ));
    }
    Ok(())
}
