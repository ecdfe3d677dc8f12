//! Fused scaled-dot-product attention as a tensor operation: plain, or with its attention weights
//! dropped inside the kernels from per-row seeds (the trainer's, or the caller's).

use super::tensor::shape_err;
use super::{Op, Tensor};
use crate::error::Result;
use std::panic::Location;

impl Tensor {
    /// Fused scaled-dot-product attention; `self` is q and all of q, k, v are `[B, T, H, D]`.
    #[track_caller]
    pub fn attention(&self, k: &Tensor, v: &Tensor, causal: bool) -> Result<Tensor> {
        self.attention_op(k, v, causal, None, Location::caller())
    }

    /// [`Tensor::attention`] whose attention weights are dropped with probability `p` in
    /// training (`Mode::Train`; kept weights scaled by 1/(1−p)), inside the fused kernel: the
    /// trainer feeds one seed per batch row, from which both backends draw the same masks and
    /// the backward redraws them. In evaluation, or with `p` = 0, plain attention. `p` must lie
    /// in `[0, 1)`, else [`crate::ModelError::Shape`] names the probability.
    #[track_caller]
    pub fn attention_dropout(
        &self,
        k: &Tensor,
        v: &Tensor,
        causal: bool,
        p: f32,
        mode: crate::nn::Mode,
    ) -> Result<Tensor> {
        let loc = Location::caller();
        if !(0.0..1.0).contains(&p) {
            return Err(shape_err(
                "attention",
                format!("dropout probability {p} is outside [0, 1)"),
                loc,
            ));
        }
        if mode == crate::nn::Mode::Eval || p == 0.0 {
            return self.attention_op(k, v, causal, None, loc);
        }
        let seeds = self.builder().dropout_seeds(self.shape()[0]);
        self.attention_op(k, v, causal, Some((p, &seeds)), loc)
    }

    /// [`Tensor::attention`] with its weights dropped with probability `p` (in `(0, 1)`) by
    /// masks drawn from `seeds: [B]`, one whole number below 2²⁴ per batch row (what
    /// [`Tensor::attention_dropout`] has the trainer draw at every step). The same seeds give
    /// the same masks on every backend.
    #[track_caller]
    pub fn attention_with_seeds(
        &self,
        k: &Tensor,
        v: &Tensor,
        causal: bool,
        p: f32,
        seeds: &Tensor,
    ) -> Result<Tensor> {
        let loc = Location::caller();
        if !(p > 0.0 && p < 1.0) {
            return Err(shape_err(
                "attention",
                format!("dropout probability {p} is outside (0, 1)"),
                loc,
            ));
        }
        self.attention_op(k, v, causal, Some((p, seeds)), loc)
    }

    fn attention_op(
        &self,
        k: &Tensor,
        v: &Tensor,
        causal: bool,
        dropout: Option<(f32, &Tensor)>,
        loc: &'static Location<'static>,
    ) -> Result<Tensor> {
        self.same_graph(k, "attention", loc)?;
        self.same_graph(v, "attention", loc)?;
        let (qs, ks, vs) = (self.shape(), k.shape(), v.shape());
        if qs.len() != 4 || qs != ks || qs != vs {
            return Err(shape_err(
                "attention",
                format!("q, k, v must share one [B, T, H, D] shape, got {qs:?}, {ks:?}, {vs:?}"),
                loc,
            ));
        }
        let scale = 1.0 / (qs[3] as f32).sqrt();
        let mut inputs = vec![self.id, k.id, v.id];
        // The lse rows [B, H, T]; with dropout, flat with the B row seeds behind them.
        let (lse, dropout) = match dropout {
            Some((p, seeds)) => {
                self.same_graph(seeds, "attention", loc)?;
                if seeds.shape() != [qs[0]] {
                    return Err(shape_err(
                        "attention",
                        format!(
                            "the dropout seeds must be [B] = [{}], one per batch row, got {:?}",
                            qs[0],
                            seeds.shape()
                        ),
                        loc,
                    ));
                }
                inputs.push(seeds.id);
                (vec![qs[0] * qs[2] * qs[1] + qs[0]], p)
            }
            None => (vec![qs[0], qs[2], qs[1]], 0.0),
        };
        let op = Op::Attention {
            causal,
            scale,
            dropout,
        };
        let outs = self.builder().push_multi(op, &inputs, vec![qs, lse], "");
        Ok(outs[0].clone())
    }
}
