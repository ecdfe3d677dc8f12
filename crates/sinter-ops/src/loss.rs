//! Classification losses and metrics: softmax cross-entropy over rows of logits against class
//! indices (stored as f32), and the count of correctly classified rows.

use crate::error::{check_len, ShapeError};

/// Row length from which the GPU's cross-entropy gradient runs a workgroup per row (the kernels'
/// workgroup size: a row that fills one).
pub const CROSS_ENTROPY_TREE_MIN_CLASSES: usize = 256;

/// Logits `[rows, classes]` scored against targets `[rows]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CrossEntropyShape {
    /// Rows of logits (samples).
    pub rows: usize,
    /// Classes per row.
    pub classes: usize,
}

impl CrossEntropyShape {
    /// Refuses zero-sized dims and tensors over u32 indexing, naming `op`.
    pub fn check(&self, op: &str) -> Result<(), ShapeError> {
        let CrossEntropyShape { rows, classes } = *self;
        if rows == 0 || classes == 0 {
            return Err(ShapeError::new(
                op,
                format!("zero-sized dim in logits [rows, classes] = [{rows}, {classes}]"),
            ));
        }
        check_len(op, &format!("logits [{rows}, {classes}]"), rows * classes)
    }

    /// A workgroup per row pays off once a row has as many classes as the workgroup has invocations.
    pub fn grad_uses_tree(&self) -> bool {
        self.classes >= CROSS_ENTROPY_TREE_MIN_CLASSES
    }
}
