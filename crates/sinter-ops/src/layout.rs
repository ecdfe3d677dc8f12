//! Layout ops: permuting axes, slicing along an axis and concatenating along one. Each is a
//! strided copy (a region of one tensor to a region of another), the one kernel both backends run.

use crate::error::ShapeError;

/// Row-major element strides of a contiguous tensor of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * shape[k + 1];
    }
    strides
}

/// Copies a region of `shape` elements: element at coordinates c is read at
/// `src_offset + Σ c[k]·src_strides[k]` and written at `dst_offset + Σ c[k]·dst_strides[k]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StridedCopy {
    /// Extent of the copied region, axis by axis.
    pub shape: Vec<usize>,
    /// First source element.
    pub src_offset: usize,
    /// Source stride of each axis of `shape`.
    pub src_strides: Vec<usize>,
    /// First destination element.
    pub dst_offset: usize,
    /// Destination stride of each axis of `shape`.
    pub dst_strides: Vec<usize>,
}

impl StridedCopy {
    /// Elements copied.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// `y = x.permute(perm)`: axis k of the result is axis `perm[k]` of `x`.
    pub fn permute(x: &[usize], perm: &[usize]) -> Self {
        let sx = contiguous_strides(x);
        let shape: Vec<usize> = perm.iter().map(|&p| x[p]).collect();
        Self {
            src_offset: 0,
            src_strides: perm.iter().map(|&p| sx[p]).collect(),
            dst_offset: 0,
            dst_strides: contiguous_strides(&shape),
            shape,
        }
    }

    /// `y = x[.., start..start + len, ..]` along `axis`.
    pub fn slice(x: &[usize], axis: usize, start: usize, len: usize) -> Self {
        let sx = contiguous_strides(x);
        let mut shape = x.to_vec();
        shape[axis] = len;
        Self {
            src_offset: start * sx[axis],
            src_strides: sx,
            dst_offset: 0,
            dst_strides: contiguous_strides(&shape),
            shape,
        }
    }

    /// The part of a concatenation `out` (along `axis`) that input `part` fills, starting at
    /// index `at` of that axis.
    pub fn concat_part(out: &[usize], axis: usize, at: usize, part: &[usize]) -> Self {
        let so = contiguous_strides(out);
        Self {
            shape: part.to_vec(),
            src_offset: 0,
            src_strides: contiguous_strides(part),
            dst_offset: at * so[axis],
            dst_strides: so,
        }
    }
}

/// The shape of `x.permute(perm)`; an error unless `perm` holds each axis of `x` once.
pub fn permute_shape(x: &[usize], perm: &[usize]) -> Result<Vec<usize>, ShapeError> {
    let mut seen = vec![false; x.len()];
    let valid = perm.len() == x.len()
        && perm
            .iter()
            .all(|&p| p < x.len() && !std::mem::replace(&mut seen[p], true));
    if !valid {
        return Err(ShapeError::new(
            "permute",
            format!(
                "{perm:?} is not a permutation of the {} axes of {x:?}",
                x.len()
            ),
        ));
    }
    Ok(perm.iter().map(|&p| x[p]).collect())
}

/// The shape of `len` elements from `start` along `axis` of `x`; an error when the axis or the
/// range is outside `x`, or the range is empty.
pub fn slice_shape(
    x: &[usize],
    axis: usize,
    start: usize,
    len: usize,
) -> Result<Vec<usize>, ShapeError> {
    let Some(&n) = x.get(axis) else {
        return Err(ShapeError::new(
            "slice",
            format!("axis {axis} is out of range for {x:?}"),
        ));
    };
    if len == 0 || start.checked_add(len).is_none_or(|end| end > n) {
        return Err(ShapeError::new(
            "slice",
            format!(
                "{start}..{} along axis {axis} of {x:?} is empty or past its size {n}",
                start.saturating_add(len)
            ),
        ));
    }
    let mut shape = x.to_vec();
    shape[axis] = len;
    Ok(shape)
}

/// The shape of the concatenation of `parts` along `axis`: every part has the same rank and the
/// same size on every other axis.
pub fn concat_shape(parts: &[&[usize]], axis: usize) -> Result<Vec<usize>, ShapeError> {
    let Some(first) = parts.first() else {
        return Err(ShapeError::new("concat", "needs at least one tensor"));
    };
    if axis >= first.len() {
        return Err(ShapeError::new(
            "concat",
            format!("axis {axis} is out of range for {first:?}"),
        ));
    }
    let mut out = first.to_vec();
    for (k, p) in parts.iter().enumerate().skip(1) {
        let agrees = p.len() == first.len() && (0..p.len()).all(|j| j == axis || p[j] == first[j]);
        if !agrees {
            return Err(ShapeError::new(
                "concat",
                format!("tensor {k} {p:?} does not match tensor 0 {first:?} outside axis {axis}"),
            ));
        }
        out[axis] += p[axis];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transpose_reads_along_the_columns() {
        let c = StridedCopy::permute(&[2, 3], &[1, 0]);
        assert_eq!(c.shape, vec![3, 2]);
        assert_eq!(c.src_strides, vec![1, 3]);
        assert_eq!(c.dst_strides, vec![2, 1]);
    }

    #[test]
    fn slices_and_concat_parts_address_their_region() {
        let s = StridedCopy::slice(&[4, 5, 6], 1, 2, 3);
        assert_eq!((s.shape.clone(), s.src_offset), (vec![4, 3, 6], 12));
        let p = StridedCopy::concat_part(&[4, 9, 6], 1, 5, &[4, 4, 6]);
        assert_eq!((p.dst_offset, p.dst_strides.clone()), (30, vec![54, 6, 1]));
    }

    #[test]
    fn bad_layouts_are_errors_naming_the_shapes() {
        assert!(permute_shape(&[2, 3], &[0, 0]).is_err());
        assert!(permute_shape(&[2, 3], &[1]).is_err());
        assert_eq!(
            permute_shape(&[2, 3, 4], &[2, 0, 1]).unwrap(),
            vec![4, 2, 3]
        );
        let e = slice_shape(&[4, 5], 1, 3, 3).unwrap_err().to_string();
        assert!(e.contains("3..6") && e.contains("[4, 5]"), "{e}");
        assert!(slice_shape(&[4, 5], 2, 0, 1).is_err());
        assert!(slice_shape(&[4, 5], 0, 1, 0).is_err());
        let e = concat_shape(&[&[2, 3], &[2, 4], &[3, 4]], 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tensor 2 [3, 4]"), "{e}");
        assert_eq!(concat_shape(&[&[2, 3], &[2, 4]], 1).unwrap(), vec![2, 7]);
    }
}
