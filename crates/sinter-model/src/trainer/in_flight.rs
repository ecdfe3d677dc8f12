//! Steps in flight: [`Trainer::submit`] queues a training step on a GPU and returns, and
//! [`Trainer::complete`] waits for the oldest one, so the host prepares step N+1 while N runs.

use super::model::order_feeds;
use super::{Model, StepResult, TrainStep, Trainer};
use crate::backend::PendingOutputs;
use crate::error::{ModelError, Result};
use crate::trainer::Feeds;

/// A submitted training step's results: still on a GPU's queue, or already known (steps that
/// run synchronously: the CPU backend, data-parallel and accumulated steps).
pub(super) enum Pending {
    Outputs(PendingOutputs),
    Values(Vec<f32>),
}

impl<M: Model> Trainer<M> {
    /// Starts the next training step on `feeds` without waiting for it: on a GPU the step is
    /// queued behind the steps already in flight, so the host can prepare the next batch (and
    /// submit it too) while the GPU works; [`Trainer::complete`] returns the oldest step's
    /// result. Steps in flight give bit-for-bit the results of one step at a time: they run in
    /// submission order, each with the dropout masks and optimizer scalars of its own step.
    /// The CPU backend, data-parallel and accumulated steps run here, synchronously.
    ///
    /// While steps are in flight the parameters on the device are ahead of [`Trainer::step`]:
    /// evaluation, checkpoints and parameter reads refuse to run until every step is completed.
    pub fn submit(&mut self, feeds: &Feeds) -> Result<()> {
        let pending = if self.steps_run_asynchronously() {
            self.draw_masks();
            let scalars = self.optimizer.scalars(self.next_step());
            let compiled = match &mut self.train {
                TrainStep::Fused(c) => c,
                TrainStep::Split(_) => unreachable!("split steps run synchronously"),
            };
            let feeds = feeds.micro_batch(&compiled.slots, 0, 1)?;
            let masks: Vec<&[f32]> = self.masks.iter().map(Vec::as_slice).collect();
            let ordered = order_feeds(&compiled.slots, &feeds, &masks)?;
            Pending::Outputs(
                self.backend
                    .submit(&mut compiled.program, &ordered, &scalars)?,
            )
        } else {
            Pending::Values(self.run_values(feeds, None)?.0)
        };
        self.in_flight.push_back(pending);
        Ok(())
    }

    /// Waits for the oldest step from [`Trainer::submit`] and returns its result; the step
    /// counter moves on by one. With `stop_on_nan`, a non-finite loss is an error naming its step
    /// (a step submitted after it is then dropped unread).
    pub fn complete(&mut self) -> Result<StepResult> {
        let pending = self.in_flight.pop_front().ok_or_else(|| {
            ModelError::Config("Trainer::complete: no training step is in flight".into())
        })?;
        let values = match pending {
            Pending::Values(v) => v,
            Pending::Outputs(o) => {
                let metrics = self.train_compiled().metrics.len();
                let out = self.backend.wait(o)?;
                out.iter().take(1 + metrics).map(|v| v[0]).collect()
            }
        };
        self.finish_step(values)
    }

    /// Training steps submitted and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The index of the next step [`Trainer::submit`] starts: [`Trainer::step`] plus the steps
    /// in flight. Per-step draws (data augmentation, …) use it so that a step is the same
    /// however far ahead it was submitted.
    pub fn next_step(&self) -> u64 {
        self.step + self.in_flight.len() as u64
    }

    /// Whether [`Trainer::submit`] queues steps without waiting: one process, no accumulation,
    /// no anomaly detection, on a GPU.
    fn steps_run_asynchronously(&self) -> bool {
        #[cfg(feature = "gpu")]
        let gpu = matches!(self.backend, crate::backend::Backend::Gpu(_));
        #[cfg(not(feature = "gpu"))]
        let gpu = false;
        gpu && matches!(self.train, TrainStep::Fused(_)) && !self.config.detect_anomaly
    }

    /// Refuses `what` while steps are in flight: the device's parameters are ahead of the step
    /// counter until they are completed.
    pub(super) fn settled(&self, what: &str) -> Result<()> {
        match self.in_flight.len() {
            0 => Ok(()),
            n => Err(ModelError::Config(format!(
                "{what} needs every submitted training step completed, but {n} {} in flight: call Trainer::complete first",
                if n == 1 { "is" } else { "are" }
            ))),
        }
    }
}
