//! Layout operations: permuting axes, slicing along an axis, splitting and concatenating. Each
//! records one copy node (see `sinter_ops::layout` for the shape rules and the strided copy).

use super::tensor::shape_err;
use super::{Op, Tensor};
use crate::error::{ModelError, Result};
use sinter_ops::error::ShapeError;
use sinter_ops::layout::{concat_shape, permute_shape, slice_shape};
use std::panic::Location;

/// The op crate's shape error as this crate's, at the caller's line.
fn located(op: &'static str, e: ShapeError, loc: &'static Location<'static>) -> ModelError {
    shape_err(op, e.detail, loc)
}

impl Tensor {
    /// Reorders the axes: axis k of the result is axis `perm[k]` of `self` (PyTorch's
    /// `permute`). The result is a new, contiguous tensor. An error unless `perm` names each
    /// axis once.
    #[track_caller]
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let loc = Location::caller();
        let shape = permute_shape(&self.shape(), perm).map_err(|e| located("permute", e, loc))?;
        if perm.iter().enumerate().all(|(k, &p)| k == p) {
            return Ok(self.clone());
        }
        Ok(self.record(Op::Permute(perm.to_vec()), &[self.id], shape, loc))
    }

    /// Swaps axes `a` and `b` (PyTorch's `transpose`).
    #[track_caller]
    pub fn transpose(&self, a: usize, b: usize) -> Result<Tensor> {
        let loc = Location::caller();
        let rank = self.rank();
        if a >= rank || b >= rank {
            return Err(shape_err(
                "transpose",
                format!("axes {a} and {b} of {:?}: out of range", self.shape()),
                loc,
            ));
        }
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.swap(a, b);
        let shape =
            permute_shape(&self.shape(), &perm).map_err(|e| located("transpose", e, loc))?;
        if a == b {
            return Ok(self.clone());
        }
        Ok(self.record(Op::Permute(perm), &[self.id], shape, loc))
    }

    /// `len` elements from `start` along `axis` (PyTorch's `narrow`, `x[.., start..start+len, ..]`).
    /// An error when the axis or the range lies outside the tensor, or the range is empty.
    #[track_caller]
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        let loc = Location::caller();
        let from = self.shape();
        let shape = slice_shape(&from, axis, start, len).map_err(|e| located("slice", e, loc))?;
        if shape == from {
            return Ok(self.clone());
        }
        Ok(self.record(Op::Slice { axis, start }, &[self.id], shape, loc))
    }

    /// Cuts `self` along `axis` into consecutive pieces of the given sizes, which must add up to
    /// the axis (PyTorch's `split` with a list): a fused q/k/v projection splits into three.
    #[track_caller]
    pub fn split(&self, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>> {
        let loc = Location::caller();
        let shape = self.shape();
        let total: usize = sizes.iter().sum();
        if shape.get(axis) != Some(&total) {
            return Err(shape_err(
                "split",
                format!("sizes {sizes:?} (sum {total}) do not cover axis {axis} of {shape:?}"),
                loc,
            ));
        }
        let mut start = 0;
        let mut parts = Vec::with_capacity(sizes.len());
        for &len in sizes {
            let piece =
                slice_shape(&shape, axis, start, len).map_err(|e| located("split", e, loc))?;
            parts.push(if piece == shape {
                self.clone()
            } else {
                self.record(Op::Slice { axis, start }, &[self.id], piece, loc)
            });
            start += len;
        }
        Ok(parts)
    }

    /// Joins `parts` along `axis` in order (PyTorch's `cat`): they share one graph, one rank and
    /// every other axis.
    #[track_caller]
    pub fn concat(parts: &[&Tensor], axis: usize) -> Result<Tensor> {
        let loc = Location::caller();
        let Some(first) = parts.first() else {
            return Err(shape_err("concat", "needs at least one tensor".into(), loc));
        };
        for p in &parts[1..] {
            first.same_graph(p, "concat", loc)?;
        }
        let shapes: Vec<Vec<usize>> = parts.iter().map(|p| p.shape()).collect();
        let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        let shape = concat_shape(&refs, axis).map_err(|e| located("concat", e, loc))?;
        if parts.len() == 1 {
            return Ok((*first).clone());
        }
        let ids: Vec<_> = parts.iter().map(|p| p.id).collect();
        Ok(first.record(Op::Concat { axis }, &ids, shape, loc))
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::GraphBuilder;
    use crate::Tensor;

    #[test]
    fn layout_shapes_and_errors_name_the_op_and_the_line() {
        let g = GraphBuilder::new();
        let x = g.input("x", &[2, 3, 4]);
        assert_eq!(x.permute(&[2, 0, 1]).unwrap().shape(), vec![4, 2, 3]);
        assert_eq!(x.transpose(0, 2).unwrap().shape(), vec![4, 3, 2]);
        assert_eq!(x.narrow(1, 1, 2).unwrap().shape(), vec![2, 2, 4]);
        let parts = x.split(2, &[1, 3]).unwrap();
        assert_eq!(parts[1].shape(), vec![2, 3, 3]);
        let y = Tensor::concat(&[&parts[1], &parts[0]], 2).unwrap();
        assert_eq!(y.shape(), vec![2, 3, 4]);

        let e = x.permute(&[0, 0, 1]).unwrap_err().to_string();
        assert!(e.contains("permute") && e.contains("layout.rs"), "{e}");
        let e = x.narrow(2, 3, 2).unwrap_err().to_string();
        assert!(e.contains("slice") && e.contains("3..5"), "{e}");
        let e = x.split(1, &[1, 1]).unwrap_err().to_string();
        assert!(e.contains("split") && e.contains("[1, 1]"), "{e}");
        let other = GraphBuilder::new().input("z", &[2, 3, 4]);
        let e = Tensor::concat(&[&x, &other], 0).unwrap_err().to_string();
        assert!(e.contains("different graphs"), "{e}");
        let e = Tensor::concat(&[&x, &parts[0]], 0).unwrap_err().to_string();
        assert!(e.contains("concat") && e.contains("[2, 3, 1]"), "{e}");
    }
}
