//! Reductions over one axis of a tensor viewed as [outer, n, inner], which covers any axis of a
//! row-major tensor and whole-tensor sums.

/// What a reduction computes over its axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Σ over the axis.
    Sum,
    /// Σ over the axis divided by its length.
    Mean,
    /// The largest element along the axis.
    Max,
    /// The index of the first maximum, written as f32.
    Argmax,
}

impl ReduceOp {
    /// Every reduction, in `code` order (for tests that cover them all).
    pub const ALL: [ReduceOp; 4] = [
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Max,
        ReduceOp::Argmax,
    ];

    /// The value of the WGSL override `OP` that selects this op.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The lower-case name used in node tags and profiles (`sum`, `argmax`, …).
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
            ReduceOp::Argmax => "argmax",
        }
    }
}

/// x viewed as [outer, n, inner], reduced over n to y: [outer, inner].
/// Axis k of a shape d is `outer = d[..k].product()`, `n = d[k]`, `inner = d[k+1..].product()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReduceShape {
    /// Product of the axes before the reduced one.
    pub outer: usize,
    /// Length of the reduced axis.
    pub n: usize,
    /// Product of the axes after the reduced one.
    pub inner: usize,
}

impl ReduceShape {
    /// The view that reduces axis `axis` of `shape`.
    pub fn along(shape: &[usize], axis: usize) -> Self {
        assert!(axis < shape.len(), "axis {axis} out of range for {shape:?}");
        Self {
            outer: shape[..axis].iter().product(),
            n: shape[axis],
            inner: shape[axis + 1..].iter().product(),
        }
    }

    /// Elements read: outer · n · inner.
    pub fn input_len(&self) -> usize {
        self.outer * self.n * self.inner
    }

    /// Elements written: outer · inner.
    pub fn output_len(&self) -> usize {
        self.outer * self.inner
    }

    /// The rule that picks the kernel: a workgroup per output when rows are long, or when there
    /// are too few outputs to keep a GPU busy with one invocation each.
    pub fn uses_tree(&self) -> bool {
        self.n >= 1024 || (self.n >= 64 && self.output_len() < 1024)
    }
}
