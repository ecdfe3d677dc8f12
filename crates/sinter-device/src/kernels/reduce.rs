//! Launch builder for `shaders/reduce.wgsl`: sum, mean, max and argmax over one axis of a tensor
//! viewed as [outer, n, inner], which covers any axis of a row-major tensor and whole-tensor sums.

use super::elementwise::{check_buffer, check_len, grid_for, groups_grid, rows_or_tree};
use super::specializations::EntrySpecializations;
use crate::error::{DeviceError, Result};
use crate::gpu::{Dispatch, Gpu, Launch};
use crate::shaders::Shader;
use sinter_ops::Kernel;

pub use sinter_ops::reduce::{ReduceOp, ReduceShape};

/// y = op over n of x, with the rows or the tree kernel as tuned for the shape
/// ([`crate::tune::reduce_uses_tree`]).
// x: [outer, n, inner], y: [outer, inner]
pub fn reduce(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    op: ReduceOp,
    shape: &ReduceShape,
    tag: &str,
) -> Result<Dispatch> {
    reduce_launch(gpu, None, x, y, op, shape, tag)
}

/// y = op over n of x with the tree kernel (a workgroup per output) when `tree`, else the rows
/// kernel (an invocation per output): the tuner's entry. Both are right for every shape.
// x: [outer, n, inner], y: [outer, inner]
pub fn reduce_with(
    gpu: &Gpu,
    tree: bool,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    op: ReduceOp,
    shape: &ReduceShape,
    tag: &str,
) -> Result<Dispatch> {
    reduce_launch(gpu, Some(tree), x, y, op, shape, tag)
}

fn reduce_launch(
    gpu: &Gpu,
    tree: Option<bool>,
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
    let tree = tree.unwrap_or_else(|| crate::tune::reduce_uses_tree(gpu, op, shape));
    let (entry, workgroups) = if tree {
        ("reduce_tree", groups_grid(gpu, outputs))
    } else {
        ("reduce_rows", grid_for(gpu, outputs))
    };
    let cost = Kernel::Reduce { op, shape: *shape }.cost();
    gpu.prepare(Launch {
        shader: Shader::Reduce,
        entry,
        overrides: &[("OP", op.code() as f64)],
        params: &[outer as u32, n as u32, inner as u32, 0],
        buffers: &[x, y],
        workgroups,
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// Whether the static rule runs the tree kernel for `shape`: the one the shape prefers, or the
/// other where the canary disabled it (see `rows_or_tree`).
pub fn static_uses_tree(gpu: &Gpu, shape: &ReduceShape) -> bool {
    let (entry, _) = rows_or_tree(
        gpu,
        shape.uses_tree(),
        ["reduce_rows", "reduce_tree"],
        shape.output_len(),
    );
    entry == "reduce_tree"
}

/// Both entry points with every reduction (see [`super::specializations`]).
pub(crate) fn specializations() -> Vec<EntrySpecializations> {
    ["reduce_tree", "reduce_rows"]
        .into_iter()
        .map(|entry| {
            let launches = ReduceOp::ALL.map(|op| vec![("OP", op.code() as f64)]);
            EntrySpecializations::from_launches(Shader::Reduce, entry, launches)
        })
        .collect()
}
