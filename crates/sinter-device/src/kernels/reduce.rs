//! Launch builder for `shaders/reduce.wgsl`: sum, mean, max and argmax over one axis of a tensor
//! viewed as [outer, n, inner], which covers any axis of a row-major tensor and whole-tensor sums.

use super::elementwise::{check_buffer, check_len, grid_for};
use crate::error::{DeviceError, Result};
use crate::gpu::{Dispatch, Gpu, Launch};
use crate::shaders::Shader;

/// Invocations per workgroup of both reduce kernels (`WG` in the WGSL).
const WG: usize = 256;

/// What a reduction computes over its axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    /// The index of the first maximum, written as f32.
    Argmax,
}

impl ReduceOp {
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
/// Axis k of a shape d is outer = d[..k].product(), n = d[k], inner = d[k+1..].product().
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReduceShape {
    pub outer: usize,
    pub n: usize,
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

    pub fn input_len(&self) -> usize {
        self.outer * self.n * self.inner
    }

    pub fn output_len(&self) -> usize {
        self.outer * self.inner
    }

    /// The rule that picks the kernel: a workgroup per output when rows are long, or when there
    /// are too few outputs to keep a GPU busy with one invocation each.
    pub fn uses_tree(&self) -> bool {
        self.n >= 1024 || (self.n >= 64 && self.output_len() < 1024)
    }
}

/// y = op over n of x.
// x: [outer, n, inner], y: [outer, inner]
pub fn reduce(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    op: ReduceOp,
    shape: &ReduceShape,
    tag: &str,
) -> Result<Dispatch> {
    let name = format!("reduce {}", op.name());
    let ReduceShape { outer, n, inner } = *shape;
    if outer == 0 || n == 0 || inner == 0 {
        return Err(DeviceError::BadShape {
            op: name,
            detail: format!("zero-sized dim in [outer, n, inner] = [{outer}, {n}, {inner}]"),
        });
    }
    let (len, outputs) = (shape.input_len(), shape.output_len());
    check_len(&name, &format!("x [{outer}, {n}, {inner}]"), len)?;
    check_buffer(&name, "x", x, len)?;
    check_buffer(&name, "y", y, outputs)?;
    let (entry, workgroups) = if shape.uses_tree() {
        ("reduce_tree", grid_for(gpu, outputs, 1))
    } else {
        ("reduce_rows", grid_for(gpu, outputs, WG))
    };
    gpu.prepare(Launch {
        shader: Shader::Reduce,
        entry,
        overrides: &[("OP", op.code() as f64)],
        params: &[outer as u32, n as u32, inner as u32, 0],
        buffers: &[x, y],
        workgroups,
        tag: tag.to_string(),
        flops: len as u64,
        bytes: 4 * (len + outputs) as u64,
    })
}
