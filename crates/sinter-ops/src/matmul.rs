//! The batched matrix product C = op(A)·op(B): its shape, with transposed operands and broadcast
//! batch strides.

use std::fmt;

/// The shape of one batched matrix product C = op(A)·op(B).
///
/// op(A) is [m, k] and op(B) is [k, n]; C is dense [batch, m, n]. A batch stride of 0 reuses
/// one matrix for every batch item (a weight shared by a batch of activations).
// a: [batch, m, k], stored [batch, k, m] when trans_a
// b: [batch, k, n], stored [batch, n, k] when trans_b
// c: [batch, m, n]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulShape {
    /// Independent products (1 for a plain matrix product).
    pub batch: usize,
    /// Rows of op(A) and of C.
    pub m: usize,
    /// Columns of op(B) and of C.
    pub n: usize,
    /// The inner (summed) dimension: columns of op(A), rows of op(B).
    pub k: usize,
    /// A is stored [k, m] (its transpose), so dB-style products need no explicit transpose.
    pub trans_a: bool,
    /// B is stored [n, k].
    pub trans_b: bool,
    /// Elements between consecutive batch items of A; 0 broadcasts A.
    pub a_batch_stride: usize,
    /// Elements between consecutive batch items of B; 0 broadcasts B.
    pub b_batch_stride: usize,
}

impl MatmulShape {
    /// A dense, untransposed product: A [batch, m, k] · B [batch, k, n].
    pub fn new(batch: usize, m: usize, n: usize, k: usize) -> Self {
        Self {
            batch,
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            a_batch_stride: m * k,
            b_batch_stride: k * n,
        }
    }

    /// The same product with A and/or B read from their stored transposes.
    pub fn with_trans(self, trans_a: bool, trans_b: bool) -> Self {
        Self {
            trans_a,
            trans_b,
            ..self
        }
    }

    /// One A for every batch item (stride 0).
    pub fn broadcast_a(self) -> Self {
        Self {
            a_batch_stride: 0,
            ..self
        }
    }

    /// One B for every batch item (stride 0).
    pub fn broadcast_b(self) -> Self {
        Self {
            b_batch_stride: 0,
            ..self
        }
    }

    /// Multiply-adds counted as two operations: 2·batch·m·n·k.
    pub fn flops(&self) -> u64 {
        2 * self.batch as u64 * self.m as u64 * self.n as u64 * self.k as u64
    }

    /// Elements of A the product reads: the last batch item ends at (batch−1)·stride + m·k.
    pub fn a_len(&self) -> usize {
        (self.batch.max(1) - 1) * self.a_batch_stride + self.m * self.k
    }

    /// Elements of B the product reads.
    pub fn b_len(&self) -> usize {
        (self.batch.max(1) - 1) * self.b_batch_stride + self.k * self.n
    }

    /// Elements of C the product writes: batch·m·n.
    pub fn c_len(&self) -> usize {
        self.batch * self.m * self.n
    }

    /// Why this shape cannot be computed, if it cannot: a zero-sized axis, or a nonzero batch
    /// stride smaller than one matrix (batch items would overlap, which is never intended).
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.batch == 0 || self.m == 0 || self.n == 0 || self.k == 0 {
            return Err(format!("{self}: every axis must be at least 1"));
        }
        if self.a_batch_stride != 0 && self.a_batch_stride < self.m * self.k {
            return Err(format!(
                "{self}: a_batch_stride {} is neither 0 (broadcast) nor at least m·k = {}",
                self.a_batch_stride,
                self.m * self.k
            ));
        }
        if self.b_batch_stride != 0 && self.b_batch_stride < self.k * self.n {
            return Err(format!(
                "{self}: b_batch_stride {} is neither 0 (broadcast) nor at least k·n = {}",
                self.b_batch_stride,
                self.k * self.n
            ));
        }
        Ok(())
    }
}

impl fmt::Display for MatmulShape {
    /// E.g. `[3] A[7, 5]ᵀ · B[5, 13] → C[7, 13]` (stored shapes of A and B, batch strides when not dense).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ar, ac) = if self.trans_a {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        };
        let (br, bc) = if self.trans_b {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        };
        let t = |x: bool| if x { "ᵀ" } else { "" };
        write!(
            f,
            "[{}] A[{ar}, {ac}]{} · B[{br}, {bc}]{} → C[{}, {}]",
            self.batch,
            t(self.trans_a),
            t(self.trans_b),
            self.m,
            self.n
        )?;
        if self.a_batch_stride != self.m * self.k || self.b_batch_stride != self.k * self.n {
            write!(
                f,
                " (batch strides a {}, b {})",
                self.a_batch_stride, self.b_batch_stride
            )?;
        }
        Ok(())
    }
}
