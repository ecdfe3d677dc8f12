//! Selection ops: slices picked along one axis by integer ids stored as f32 (index_select,
//! gather) with their deterministic scatter-add gradients, and the three-way broadcast of `where`.
//!
//! An id that is not an integer in `[0, n)` (negative, too large, fractional, NaN) selects
//! nothing: its output values are NaN, like an embedding's invalid token, and its gradient adds
//! nothing. Both backends follow this rule, so a bad id shows up at the loss, never as a read out
//! of bounds.

use crate::elementwise::{broadcast_shape, MAX_RANK};
use crate::error::{check_len, ShapeError};

/// x seen as `[outer, n, inner]` around the selected axis (of length `n`), picked at `k`
/// positions into `[outer, k, inner]`.
///
/// - index_select: the ids are one list `[k]` shared by every `(outer, inner)` column.
/// - gather (`torch.gather`): the index has the output's shape `[outer, k, inner]`, one id per
///   output element, and `y[o, t, i] = x[o, index[o, t, i], i]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SelectShape {
    /// Product of the axes before the selected one.
    pub outer: usize,
    /// Length of the selected axis of x.
    pub n: usize,
    /// Positions picked along it (the selected axis of the output).
    pub k: usize,
    /// Product of the axes after the selected one.
    pub inner: usize,
}

impl SelectShape {
    /// x seen around `axis`, picking `k` positions along it.
    pub fn along(x: &[usize], axis: usize, k: usize) -> Self {
        SelectShape {
            outer: x[..axis].iter().product(),
            n: x[axis],
            k,
            inner: x[axis + 1..].iter().product(),
        }
    }

    /// Elements of x: outer · n · inner.
    pub fn x_len(&self) -> usize {
        self.outer * self.n * self.inner
    }

    /// Elements of the output (and of gather's index): outer · k · inner.
    pub fn y_len(&self) -> usize {
        self.outer * self.k * self.inner
    }

    /// Refuses zero-sized dims and tensors over u32 indexing, naming `op`.
    pub fn check(&self, op: &str) -> Result<(), ShapeError> {
        let SelectShape { outer, n, k, inner } = *self;
        let what = format!("x [outer, n, inner] = [{outer}, {n}, {inner}] picked at {k} positions");
        if outer == 0 || n == 0 || k == 0 || inner == 0 {
            return Err(ShapeError::new(op, format!("zero-sized dim in {what}")));
        }
        check_len(op, &what, self.x_len())?;
        check_len(op, &what, self.y_len())
    }
}

/// The output shape of `where(mask, a, b)`: the numpy broadcast of all three shapes, or `None`
/// when they do not broadcast or the result has more than [`MAX_RANK`] axes.
pub fn where_shape(mask: &[usize], a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let out = broadcast_shape(&broadcast_shape(mask, a)?, b)?;
    (out.len() <= MAX_RANK).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn along_splits_around_the_axis() {
        let s = SelectShape::along(&[2, 3, 4, 5], 1, 7);
        assert_eq!(
            s,
            SelectShape {
                outer: 2,
                n: 3,
                k: 7,
                inner: 20
            }
        );
        assert_eq!((s.x_len(), s.y_len()), (120, 280));
        assert_eq!(SelectShape::along(&[6], 0, 2).inner, 1);
        assert!(SelectShape::along(&[0, 3], 1, 2).check("t").is_err());
    }

    #[test]
    fn where_broadcasts_all_three() {
        assert_eq!(where_shape(&[3, 1], &[4], &[]), Some(vec![3, 4]));
        assert_eq!(
            where_shape(&[2, 1, 1], &[5, 1], &[1, 6]),
            Some(vec![2, 5, 6])
        );
        assert_eq!(where_shape(&[3], &[4], &[1]), None);
        assert_eq!(where_shape(&[1; 7], &[1], &[1]), None);
    }
}
