//! Selection as tensor operations: `index_select` and `gather` (slices or elements picked along an
//! axis by integer ids stored as floats), `where_` (a choice by mask) and `masked_fill` on it.
//!
//! An id that is not an integer in `[0, n)` for an axis of length n selects nothing: its outputs
//! are NaN on both backends and its gradient adds nothing, so a bad id shows at the loss (as an
//! embedding's invalid token does) instead of reading out of bounds.

use super::tensor::shape_err;
use super::{Op, Tensor};
use crate::error::Result;
use sinter_ops::elementwise::MAX_RANK;
use sinter_ops::select::where_shape;
use std::panic::Location;

impl Tensor {
    /// Refuses an axis past the rank or a shape with a zero-sized axis, naming `op`.
    #[track_caller]
    fn check_select_axis(&self, op: &'static str, axis: usize) -> Result<()> {
        let s = self.shape();
        if axis >= s.len() || s.contains(&0) {
            return Err(shape_err(
                op,
                format!("axis {axis} of x {s:?}: expected an axis of a tensor with no empty axis"),
                Location::caller(),
            ));
        }
        Ok(())
    }

    /// The slices of `self` at positions `ids` along `axis` (`torch.index_select`): ids are a
    /// `[k]` list of integers stored as floats, and the result has `self`'s shape with `axis`
    /// of length k. Repeated ids are allowed; their gradients add up, deterministically.
    /// [`crate::ModelError::Shape`] when `axis` is past the rank, a shape has an empty axis, ids
    /// are not one-dimensional, or the operands belong to different graphs.
    #[track_caller]
    pub fn index_select(&self, axis: usize, ids: &Tensor) -> Result<Tensor> {
        let loc = Location::caller();
        self.same_graph(ids, "index_select", loc)?;
        self.check_select_axis("index_select", axis)?;
        let is = ids.shape();
        if is.len() != 1 || is[0] == 0 {
            return Err(shape_err(
                "index_select",
                format!("ids must be a non-empty [k] list, got {is:?}"),
                loc,
            ));
        }
        let mut shape = self.shape();
        shape[axis] = is[0];
        Ok(self.record(Op::IndexSelect { axis }, &[self.id, ids.id], shape, loc))
    }

    /// `y[.., t, ..] = self[.., index[.., t, ..], ..]` along `axis` (`torch.gather`): index holds
    /// integers stored as floats and has `self`'s shape on every axis but `axis` (PyTorch also
    /// allows smaller ones; this does not); the result has the index's shape. Gradients of
    /// repeated positions add up, deterministically. [`crate::ModelError::Shape`] for another
    /// rank or another size off `axis`, an empty axis, or operands of different graphs.
    #[track_caller]
    pub fn gather(&self, axis: usize, index: &Tensor) -> Result<Tensor> {
        let loc = Location::caller();
        self.same_graph(index, "gather", loc)?;
        self.check_select_axis("gather", axis)?;
        let (xs, is) = (self.shape(), index.shape());
        let fits = is.len() == xs.len()
            && is[axis] > 0
            && (0..xs.len()).all(|d| d == axis || is[d] == xs[d]);
        if !fits {
            return Err(shape_err(
                "gather",
                format!(
                    "index {is:?} must match x {xs:?} on every axis but {axis} (and not be empty)"
                ),
                loc,
            ));
        }
        Ok(self.record(Op::Gather { axis }, &[self.id, index.id], is, loc))
    }

    /// `a` where `mask` is nonzero, else `b`, elementwise with numpy broadcasting of all three
    /// (`torch.where(mask, a, b)`); the result has the broadcast shape. A NaN mask value counts
    /// as nonzero; the mask gets no gradient. [`crate::ModelError::Shape`] when the shapes do not
    /// broadcast, the result has more than [`MAX_RANK`] axes, or the operands belong to
    /// different graphs.
    #[track_caller]
    pub fn where_(mask: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let loc = Location::caller();
        mask.same_graph(a, "where", loc)?;
        mask.same_graph(b, "where", loc)?;
        let (ms, as_, bs) = (mask.shape(), a.shape(), b.shape());
        let shape = where_shape(&ms, &as_, &bs).ok_or_else(|| {
            shape_err(
                "where",
                format!(
                    "mask {ms:?}, a {as_:?} and b {bs:?} do not broadcast to at most {MAX_RANK} axes"
                ),
                loc,
            )
        })?;
        Ok(mask.record(Op::Where, &[mask.id, a.id, b.id], shape, loc))
    }

    /// `value` where `mask` is nonzero, `self` elsewhere (`torch.Tensor.masked_fill`): the mask
    /// broadcasts to `self`'s shape, which the result keeps. [`crate::ModelError::Shape`] when
    /// it does not, or it belongs to another graph. A fill of −∞ before a softmax (an attention
    /// mask) gives those positions zero weight, but the anomaly check of
    /// [`crate::Backend::run_checked`] reports the infinite values; a large finite value such as
    /// −1e9 gives the same weights without that.
    #[track_caller]
    pub fn masked_fill(&self, mask: &Tensor, value: f64) -> Result<Tensor> {
        let loc = Location::caller();
        let (xs, ms) = (self.shape(), mask.shape());
        if where_shape(&ms, &xs, &[]).as_deref() != Some(xs.as_slice()) {
            return Err(shape_err(
                "masked_fill",
                format!("mask {ms:?} does not broadcast to x {xs:?}"),
                loc,
            ));
        }
        let fill = self.builder().fill(value, &[]);
        Tensor::where_(mask, &fill, self)
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::GraphBuilder;

    #[test]
    fn shapes_follow_torch_and_bad_ones_are_named() {
        let g = GraphBuilder::new();
        let x = g.input("x", &[2, 5, 3]);
        let ids = g.input("ids", &[4]);
        assert_eq!(x.index_select(1, &ids).unwrap().shape(), vec![2, 4, 3]);
        assert_eq!(x.index_select(2, &ids).unwrap().shape(), vec![2, 5, 4]);
        let err = x.index_select(3, &ids).unwrap_err().to_string();
        assert!(
            err.contains("index_select") && err.contains("axis 3"),
            "{err}"
        );
        let err = x.index_select(0, &x).unwrap_err().to_string();
        assert!(err.contains("[k]") && err.contains("[2, 5, 3]"), "{err}");

        let index = g.input("index", &[2, 7, 3]);
        assert_eq!(x.gather(1, &index).unwrap().shape(), vec![2, 7, 3]);
        let err = x.gather(0, &index).unwrap_err().to_string();
        assert!(err.contains("gather") && err.contains("[2, 7, 3]"), "{err}");

        let mask = g.input("mask", &[5, 1]);
        let b = g.input("b", &[3]);
        let w = crate::graph::Tensor::where_(&mask, &x, &b).unwrap();
        assert_eq!(w.shape(), vec![2, 5, 3]);
        let err = crate::graph::Tensor::where_(&ids, &x, &b)
            .unwrap_err()
            .to_string();
        assert!(err.contains("where") && err.contains("[4]"), "{err}");
        assert_eq!(x.masked_fill(&mask, -1e9).unwrap().shape(), vec![2, 5, 3]);
        // A mask larger than x would change x's shape: refused.
        let err = b.masked_fill(&mask, 0.0).unwrap_err().to_string();
        assert!(
            err.contains("masked_fill") && err.contains("[5, 1]"),
            "{err}"
        );

        let other = GraphBuilder::new().input("y", &[4]);
        assert!(x.index_select(0, &other).is_err());
    }

    #[test]
    fn masked_fill_with_minus_infinity_gives_softmax_zero_weight() {
        let g = GraphBuilder::new();
        let scores = g.input("scores", &[2, 3]);
        let mask = g.input("mask", &[3]);
        let p = scores
            .masked_fill(&mask, f64::NEG_INFINITY)
            .unwrap()
            .softmax()
            .unwrap();
        let plan = crate::Plan::new(&g.finish(), &[p.id]).unwrap();
        let mut cpu = crate::backend::CpuBackend::<f32>::new();
        let mut prog = cpu.compile(plan);
        let feeds: [&[f32]; 2] = [&[1.0, 2.0, 3.0, 0.5, 0.5, 9.0], &[0.0, 0.0, 1.0]];
        let out = cpu
            .run(&mut prog, &feeds, &crate::StepScalars::default())
            .unwrap();
        // Row 0: softmax of [1, 2] over the unmasked positions; row 1: of [0.5, 0.5].
        let e = 1.0f32.exp();
        let want = [1.0 / (1.0 + e), e / (1.0 + e), 0.0, 0.5, 0.5, 0.0];
        for (i, (&got, want)) in out[0].iter().zip(want).enumerate() {
            assert!((got - want).abs() < 1e-6, "p[{i}] = {got}, want {want}");
        }
    }
}
