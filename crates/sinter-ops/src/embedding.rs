//! Embedding lookup: token ids (stored as f32, like class targets) picking rows of a table; its
//! gradient is a deterministic scatter-add.

use crate::error::{check_len, ShapeError};

/// `tokens` ids, each an integer in [0, vocab) stored as f32, looking up rows of a [vocab, dim]
/// table into [tokens, dim].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EmbeddingShape {
    /// Number of ids looked up.
    pub tokens: usize,
    /// Rows of the table.
    pub vocab: usize,
    /// Columns of the table (and of each output row).
    pub dim: usize,
}

impl EmbeddingShape {
    /// Refuses zero-sized dims and tensors over u32 indexing, naming `op`.
    pub fn check(&self, op: &str) -> Result<(), ShapeError> {
        let EmbeddingShape { tokens, vocab, dim } = *self;
        if tokens == 0 || vocab == 0 || dim == 0 {
            return Err(ShapeError::new(
                op,
                format!(
                    "zero-sized dim in ids [{tokens}], table [{vocab}, {dim}], out [{tokens}, {dim}]"
                ),
            ));
        }
        check_len(op, &format!("table [{vocab}, {dim}]"), vocab * dim)?;
        check_len(op, &format!("out [{tokens}, {dim}]"), tokens * dim)
    }
}
