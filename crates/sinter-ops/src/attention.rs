//! Fused scaled-dot-product attention: the shape of one call (q, k, v, their gradients and the
//! saved log-sum-exp rows), the limits of the kernels, and the rule that drops attention weights.

use std::fmt;

/// The longest head the kernels hold in registers (`MAX_D4 · 4` in the WGSL).
pub const MAX_HEAD_DIM: usize = 128;

/// One attention call: `batch` sequences of `seq` tokens, `heads` heads of `head_dim` each.
/// Queries attend to the keys of their own batch item and head; with `causal`, query i sees
/// keys j ≤ i. Scores are `scale · q_i·k_j` (scale is usually 1/√head_dim). With `dropout`, each
/// weight p_ij is dropped (or kept and scaled by 1/(1−dropout)) by [`AttentionShape::keeps`], a
/// hash of its batch row's seed, head, query and key: the kernels draw the same mask on every
/// backend, and the backward redraws it instead of storing it.
// q, k, v, o, do, dq, dk, dv: [batch, seq, heads, head_dim]; delta: [batch, heads, seq];
// lse: [batch, heads, seq], then with dropout the [batch] row seeds; seeds: [batch]
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
    /// Drop probability of each attention weight, in `[0, 1)`; 0: no dropout (and no seeds).
    pub dropout: f32,
}

/// A 32-bit integer hash that mixes every input bit into every output bit (the `lowbias32`
/// constants of C. Wellons' hash-prospector). Integer arithmetic only: WGSL and Rust compute the
/// same bits, so both backends drop the same attention weights.
pub fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

impl AttentionShape {
    /// Elements of q, k, v, o and their gradients: batch · seq · heads · head_dim.
    pub fn qkv_len(&self) -> usize {
        self.batch * self.seq * self.heads * self.head_dim
    }

    /// Query rows over all heads, the elements of the backward's delta scratch: batch · heads ·
    /// seq.
    pub fn rows(&self) -> usize {
        self.batch * self.heads * self.seq
    }

    /// Elements of the saved lse: one per query row, then with dropout the batch's row seeds
    /// (copied there by the forward, so that the backward redraws the same masks).
    pub fn lse_len(&self) -> usize {
        self.rows() + if self.has_dropout() { self.batch } else { 0 }
    }

    /// Whether weights are dropped (a drop probability above 0).
    pub fn has_dropout(&self) -> bool {
        self.dropout > 0.0
    }

    /// Weights whose hash falls below this are dropped: dropout · 2³², so a weight is dropped
    /// with probability `dropout` (to within 2⁻³²).
    pub fn drop_threshold(&self) -> u32 {
        (self.dropout as f64 * 4_294_967_296.0).min(u32::MAX as f64) as u32
    }

    /// What a kept weight is multiplied by: 1/(1 − dropout), as inverted dropout does.
    pub fn keep_scale(&self) -> f32 {
        1.0 / (1.0 - self.dropout)
    }

    /// The key of head `h` of the batch row whose seed is `seed` (a whole number below 2²⁴,
    /// stored as f32): [`AttentionShape::keeps`] hashes each pair under it.
    pub fn head_key(seed: u32, h: usize) -> u32 {
        mix32(seed ^ mix32(h as u32 ^ 0x9e37_79b9))
    }

    /// Whether weight (i, j) of the head whose key is `key` is kept: the hash of the pair's
    /// index i·T + j under the key ([`AttentionShape::pair_hash`]) is at least
    /// [`AttentionShape::drop_threshold`].
    pub fn keeps(&self, key: u32, i: usize, j: usize) -> bool {
        self.pair_hash(key, i, j) >= self.drop_threshold()
    }

    /// The hash that decides weight (i, j) of the head whose key is `key`: mix32((i·T + j) ^ key).
    pub fn pair_hash(&self, key: u32, i: usize, j: usize) -> u32 {
        let pair = (i as u32)
            .wrapping_mul(self.seq as u32)
            .wrapping_add(j as u32);
        mix32(pair ^ key)
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
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("{self}: dropout must lie in [0, 1)"));
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
        )?;
        if self.has_dropout() {
            write!(f, " dropout {}", self.dropout)?;
        }
        Ok(())
    }
}
