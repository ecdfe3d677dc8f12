//! The split training step (data parallel, gradient accumulation or both): gradients of each
//! micro-batch of this rank's shard, added up, all-reduced in buckets with the loss and
//! metrics, averaged, then applied by an update program on every rank.

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
/// With gradient accumulation the gradient program runs once per micro-batch and the outputs
/// are added up on the host before the all-reduce.
pub(super) struct DataParallel {
    pub(super) collective: Box<dyn Collective>,
    pub(super) gradients: Compiled,
    pub(super) update: Program,
    pub(super) layout: GradientLayout,
    /// Gradients of all parameters, then loss and metrics, as they travel.
    pub(super) flat: Vec<f32>,
    /// Micro-batches per step.
    pub(super) accumulate: usize,
}

impl DataParallel {
    /// Adds the gradient program's outputs (`[loss, metrics…, gradients…]`) of one micro-batch
    /// to the step's sums; `first` starts them over.
    pub(super) fn add_micro_batch(&mut self, out: &[Vec<f32>], first: bool) {
        let layout = &self.layout;
        let extras = layout.extras;
        let at = layout.extras_at();
        let mut put = |range: std::ops::Range<usize>, values: &[f32]| {
            let dst = &mut self.flat[range];
            if first {
                dst.copy_from_slice(values);
            } else {
                dst.iter_mut().zip(values).for_each(|(d, v)| *d += v);
            }
        };
        for (range, grad) in layout.params.iter().zip(&out[extras..]) {
            put(range.clone(), grad);
        }
        for (k, o) in out.iter().take(extras).enumerate() {
            put(at + k..at + k + 1, &o[..1]);
        }
    }

    /// Sums the micro-batches' sums over the ranks bucket by bucket, averages the gradients,
    /// loss and `Mean` metrics over every micro-batch of every rank, and runs the update
    /// program on them. Returns the global loss and metrics.
    pub(super) fn reduce_and_update(
        &mut self,
        backend: &mut Backend,
        scalars: &StepScalars,
    ) -> Result<Vec<f32>> {
        let layout = &self.layout;
        let extras = layout.extras;
        let at = layout.extras_at();
        for bucket in &layout.buckets {
            self.collective
                .all_reduce_sum(&mut self.flat[bucket.clone()])?;
        }
        let parts = self.collective.size() * self.accumulate;
        if parts > 1 {
            // Each micro-batch's loss and gradients are means over its examples; the mean over
            // the global batch is the mean of those (`Sum` metrics stay sums).
            let inv = 1.0 / parts as f32;
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
