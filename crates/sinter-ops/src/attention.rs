//! Fused scaled-dot-product attention: the shape of one call (q, k, v, their gradients and the
//! saved log-sum-exp rows), and the limits of the kernels.

use std::fmt;

/// The longest head the kernels hold in registers (`MAX_D4 · 4` in the WGSL).
pub const MAX_HEAD_DIM: usize = 128;

/// One attention call: `batch` sequences of `seq` tokens, `heads` heads of `head_dim` each.
/// Queries attend to the keys of their own batch item and head; with `causal`, query i sees
/// keys j ≤ i. Scores are `scale · q_i·k_j` (scale is usually 1/√head_dim).
// q, k, v, o, do, dq, dk, dv: [batch, seq, heads, head_dim]; lse, delta: [batch, heads, seq]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionShape {
    /// B: independent sequences.
    pub batch: usize,
    /// T: tokens per sequence (queries and keys alike).
    pub seq: usize,
    /// H: heads; each attends over its own `head_dim` slice.
    pub heads: usize,
    /// D: features per head, at most [`MAX_HEAD_DIM`].
    pub head_dim: usize,
    /// Query i sees only keys j ≤ i.
    pub causal: bool,
    /// Multiplies every score `q_i·k_j` before the softmax.
    pub scale: f32,
}

impl AttentionShape {
    /// Elements of q, k, v, o and their gradients: batch · seq · heads · head_dim.
    pub fn qkv_len(&self) -> usize {
        self.batch * self.seq * self.heads * self.head_dim
    }

    /// Elements of lse and of the backward's delta scratch: batch · heads · seq.
    pub fn lse_len(&self) -> usize {
        self.batch * self.heads * self.seq
    }

    /// (query, key) pairs that take part: seq² per head, or seq(seq+1)/2 when causal.
    pub fn pairs(&self) -> u64 {
        let t = self.seq as u64;
        let per_head = if self.causal { t * (t + 1) / 2 } else { t * t };
        per_head * (self.batch * self.heads) as u64
    }

    /// Why this shape cannot run, if it cannot: a zero dim, a head longer than
    /// [`MAX_HEAD_DIM`], a non-finite scale, or more elements than u32 indexing reaches.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.batch == 0 || self.seq == 0 || self.heads == 0 || self.head_dim == 0 {
            return Err(format!("{self}: every dim must be at least 1"));
        }
        if self.head_dim > MAX_HEAD_DIM {
            return Err(format!(
                "{self}: head_dim {} exceeds the maximum of {MAX_HEAD_DIM}",
                self.head_dim
            ));
        }
        if !self.scale.is_finite() {
            return Err(format!("{self}: scale must be finite"));
        }
        let len = self
            .batch
            .checked_mul(self.seq)
            .and_then(|n| n.checked_mul(self.heads))
            .and_then(|n| n.checked_mul(self.head_dim));
        if len.is_none_or(|n| n > u32::MAX as usize) {
            return Err(format!("{self}: more than 2^32 elements per tensor"));
        }
        Ok(())
    }
}

impl fmt::Display for AttentionShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "q/k/v [B {}, T {}, H {}, D {}]{} scale {}",
            self.batch,
            self.seq,
            self.heads,
            self.head_dim,
            if self.causal { " causal" } else { "" },
            self.scale
        )
    }
}
