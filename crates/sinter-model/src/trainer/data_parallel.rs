//! The data-parallel training step: gradients of this rank's shard, all-reduced in buckets with
//! the loss and metrics, averaged, then applied by an update program on every rank.

use super::model::Combine;
use super::Compiled;
use crate::backend::{Backend, Program, StepScalars};
use crate::error::Result;
use crate::parallel::{Collective, GradientLayout};

/// A data-parallel step: this rank's shard of the global batch runs the gradient program (forward
/// and backward; outputs loss, metrics and every parameter's gradient), the gradients are summed
/// over all ranks in a few flat buckets and divided by the number of ranks, and the update
/// program (gradients as inputs → clipping and the optimizer's updates) applies them. Every rank
/// applies the same averaged gradient to the same parameters, so the parameters stay identical.
pub(super) struct DataParallel {
    pub(super) collective: Box<dyn Collective>,
    pub(super) gradients: Compiled,
    pub(super) update: Program,
    pub(super) layout: GradientLayout,
    /// Gradients of all parameters, then loss and metrics, as they travel.
    pub(super) flat: Vec<f32>,
}

impl DataParallel {
    /// Sums the gradient program's outputs (`[loss, metrics…, gradients…]`) over the ranks
    /// bucket by bucket, averages the gradients, loss and `Mean` metrics, and runs the update
    /// program on them. Returns the global loss and metrics.
    pub(super) fn reduce_and_update(
        &mut self,
        backend: &mut Backend,
        out: &[Vec<f32>],
        scalars: &StepScalars,
    ) -> Result<Vec<f32>> {
        let layout = &self.layout;
        let extras = layout.extras;
        for (range, grad) in layout.params.iter().zip(&out[extras..]) {
            self.flat[range.clone()].copy_from_slice(grad);
        }
        let at = layout.extras_at();
        for (k, o) in out.iter().take(extras).enumerate() {
            self.flat[at + k] = o[0];
        }
        for bucket in &layout.buckets {
            self.collective
                .all_reduce_sum(&mut self.flat[bucket.clone()])?;
        }
        let ranks = self.collective.size();
        if ranks > 1 {
            // Each rank's loss and gradients are means over its shard; the mean over the global
            // batch is the mean of those (`Sum` metrics stay sums).
            let inv = 1.0 / ranks as f32;
            for v in &mut self.flat[..=at] {
                *v *= inv;
            }
            for (k, (_, how)) in self.gradients.metrics.iter().enumerate() {
                if *how == Combine::Mean {
                    self.flat[at + 1 + k] *= inv;
                }
            }
        }
        let feeds: Vec<&[f32]> = layout
            .params
            .iter()
            .map(|r| &self.flat[r.clone()])
            .collect();
        backend.run(&mut self.update, &feeds, scalars)?;
        Ok(self.flat[at..at + extras].to_vec())
    }
}
