//! Batch normalization over `x: [N, C, H, W]`: the shape of one call (statistics per channel over
//! N·H·W values) and the settings of the running-statistics update, with their checks.

use crate::error::{check_len, ShapeError};

/// `x: [n, channels, hw]` (H·W folded into `hw`), normalized per channel over its `n · hw`
/// values with the biased variance, as PyTorch's `BatchNorm2d` does in training.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormShape {
    /// Images in the batch (N).
    pub n: usize,
    /// Channels (C): weight, bias and the statistics have one value per channel.
    pub channels: usize,
    /// Pixels of one channel of one image (H·W).
    pub hw: usize,
    /// Added to the variance before the square root.
    pub eps: f32,
}

impl BatchNormShape {
    /// Elements of x: n · channels · hw.
    pub fn len(&self) -> usize {
        self.n * self.channels * self.hw
    }

    /// Whether x has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values each channel's statistics are taken over: n · hw.
    pub fn count(&self) -> usize {
        self.n * self.hw
    }

    /// Refuses zero-sized dims, a channel with a single value (its variance is undefined, as
    /// PyTorch refuses in training), a negative or non-finite eps, and tensors over u32 indexing.
    pub fn check(&self, op: &str) -> Result<(), ShapeError> {
        let BatchNormShape {
            n,
            channels,
            hw,
            eps,
        } = *self;
        let x = format!("x [N, C, H·W] = [{n}, {channels}, {hw}]");
        if n == 0 || channels == 0 || hw == 0 {
            return Err(ShapeError::new(op, format!("zero-sized dim in {x}")));
        }
        if n * hw < 2 {
            return Err(ShapeError::new(
                op,
                format!("{x}: batch statistics need more than 1 value per channel (N·H·W ≥ 2)"),
            ));
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(ShapeError::new(
                op,
                format!("eps {eps} for {x}: expected finite and ≥ 0"),
            ));
        }
        check_len(op, &x, self.len())
    }
}

/// How the running statistics follow the batch's: PyTorch's
/// `running = (1 − momentum)·running + momentum·batch`, with the unbiased variance
/// (`var · count/(count − 1)`) for `running_var`, and `num_batches_tracked += 1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormUpdate {
    /// Channels (the length of each running statistic).
    pub channels: usize,
    /// Values each batch statistic was taken over (N·H·W), for the unbiased variance.
    pub count: usize,
    /// Weight of the new batch (PyTorch's default 0.1).
    pub momentum: f32,
}

impl BatchNormUpdate {
    /// `count / (count − 1)`: turns the biased batch variance into the unbiased one.
    pub fn unbiased_factor(&self) -> f64 {
        self.count as f64 / (self.count as f64 - 1.0)
    }

    /// Refuses no channels, a count below 2, and a momentum outside `[0, 1]`.
    pub fn check(&self, op: &str) -> Result<(), ShapeError> {
        let BatchNormUpdate {
            channels,
            count,
            momentum,
        } = *self;
        if channels == 0 || count < 2 {
            return Err(ShapeError::new(
                op,
                format!(
                    "{channels} channels of {count} values each: expected at least 1 channel of 2 values"
                ),
            ));
        }
        if !(0.0..=1.0).contains(&momentum) {
            return Err(ShapeError::new(
                op,
                format!("momentum {momentum}: expected a value in [0, 1]"),
            ));
        }
        check_len(op, "the running statistics", channels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_name_the_shape() {
        let s = BatchNormShape {
            n: 1,
            channels: 3,
            hw: 1,
            eps: 1e-5,
        };
        let e = s.check("batch_norm2d").unwrap_err().to_string();
        assert!(
            e.contains("[1, 3, 1]") && e.contains("more than 1 value"),
            "{e}"
        );
        assert!(BatchNormShape { n: 2, ..s }.check("batch_norm2d").is_ok());
        let u = BatchNormUpdate {
            channels: 3,
            count: 2,
            momentum: 1.5,
        };
        assert!(u.check("batch_norm_update").is_err());
        assert_eq!(
            BatchNormUpdate { count: 4, ..u }.unbiased_factor(),
            4.0 / 3.0
        );
    }
}
