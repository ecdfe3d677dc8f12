//! Softmax and log-softmax along the last axis: a tensor seen as [rows, cols], and the rule that
//! picks the per-row or per-workgroup kernel.

use crate::error::{check_len, ShapeError};

/// Row length from which a workgroup per row pays off (the kernels' workgroup size).
pub const ROWS_TREE_MIN_COLS: usize = 256;

/// A tensor seen as [rows, cols]: the op runs along cols, the last axis; rows is the product of
/// the other axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RowsShape {
    /// Product of every axis but the last.
    pub rows: usize,
    /// The last axis.
    pub cols: usize,
}

impl RowsShape {
    /// Elements: rows · cols.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A workgroup per row pays off once a row has as many columns as the workgroup has
    /// invocations; shorter rows get one invocation each.
    pub fn uses_tree(&self) -> bool {
        self.cols >= ROWS_TREE_MIN_COLS
    }

    /// Refuses zero-sized dims and tensors over u32 indexing, naming `op`.
    pub fn check(&self, op: &str) -> Result<(), ShapeError> {
        let RowsShape { rows, cols } = *self;
        if rows == 0 || cols == 0 {
            return Err(ShapeError::new(
                op,
                format!("zero-sized dim in [rows, cols] = [{rows}, {cols}]"),
            ));
        }
        check_len(op, &format!("[rows, cols] = [{rows}, {cols}]"), rows * cols)
    }
}
