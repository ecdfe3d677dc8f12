//! Launch builder for `shaders/reduce.wgsl`: sum, mean, max and argmax over one axis of a tensor
//! viewed as [outer, n, inner], which covers any axis of a row-major tensor and whole-tensor sums.

use super::elementwise::{check_buffer, check_len, grid_for, groups_grid, rows_or_tree};
use super::specializations::EntrySpecializations;
use crate::error::{DeviceError, Result};
use crate::gpu::{Dispatch, Gpu, Launch};
use crate::shaders::Shader;
use sinter_ops::Kernel;

pub use sinter_ops::reduce::{ReduceOp, ReduceShape};

/// The reduction kernels: all compute the same thing for every shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKernel {
    /// An invocation per output (`reduce_rows`): short rows, many outputs.
    Rows,
    /// A workgroup per output, merged through workgroup memory (`reduce_tree`): long rows.
    Tree,
    /// A subgroup of 8 per output, merged by shuffles (`reduce_subgroup`): long rows, no
    /// barriers. Only where every subgroup holds 8 lanes.
    Subgroup,
}

impl ReduceKernel {
    /// Every kernel, for the canary and the tuner.
    pub const ALL: [ReduceKernel; 3] = [
        ReduceKernel::Rows,
        ReduceKernel::Tree,
        ReduceKernel::Subgroup,
    ];

    /// The WGSL entry point (also the canary's and the tuner's name for it).
    pub fn entry(self) -> &'static str {
        match self {
            ReduceKernel::Rows => "reduce_rows",
            ReduceKernel::Tree => "reduce_tree",
            ReduceKernel::Subgroup => "reduce_subgroup",
        }
    }

    fn shader(self) -> Shader {
        match self {
            ReduceKernel::Subgroup => Shader::ReduceSubgroup,
            _ => Shader::Reduce,
        }
    }

    /// Whether `gpu` can run it (the subgroup kernel needs subgroups of at least 8 lanes).
    pub fn runs_on(self, gpu: &Gpu) -> bool {
        self != ReduceKernel::Subgroup || gpu.report.subgroups_of_at_least(8)
    }
}

/// y = op over n of x, with the kernel tuned for the shape ([`crate::tune::reduce_kernel`]).
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

/// y = op over n of x with a chosen kernel: the tuner's and the canary's entry. Every kernel is
/// right for every shape.
// x: [outer, n, inner], y: [outer, inner]
pub fn reduce_with(
    gpu: &Gpu,
    kernel: ReduceKernel,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    op: ReduceOp,
    shape: &ReduceShape,
    tag: &str,
) -> Result<Dispatch> {
    reduce_launch(gpu, Some(kernel), x, y, op, shape, tag)
}

fn reduce_launch(
    gpu: &Gpu,
    kernel: Option<ReduceKernel>,
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
    let kernel = kernel.unwrap_or_else(|| crate::tune::reduce_kernel(gpu, op, shape));
    if !kernel.runs_on(gpu) {
        let what = format!("{name} ({})", kernel.entry());
        return Err(super::needs_subgroups(gpu, what));
    }
    let workgroups = match kernel {
        ReduceKernel::Rows => grid_for(gpu, outputs),
        ReduceKernel::Tree | ReduceKernel::Subgroup => groups_grid(gpu, outputs),
    };
    let cost = Kernel::Reduce { op, shape: *shape }.cost();
    gpu.prepare(Launch {
        shader: kernel.shader(),
        entry: kernel.entry(),
        overrides: &[("OP", op.code() as f64)],
        params: &[outer as u32, n as u32, inner as u32, 0],
        buffers: &[x, y],
        workgroups,
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// The static rule's kernel for `shape`: rows or tree, the one the shape prefers, or the other
/// where the canary disabled it (see `rows_or_tree`). The subgroup kernel is left to the tuner.
pub fn static_kernel(gpu: &Gpu, shape: &ReduceShape) -> ReduceKernel {
    let (entry, _) = rows_or_tree(
        gpu,
        shape.uses_tree(),
        ["reduce_rows", "reduce_tree"],
        shape.output_len(),
    );
    if entry == "reduce_tree" {
        ReduceKernel::Tree
    } else {
        ReduceKernel::Rows
    }
}

/// Every kernel's entry point with every reduction (see [`super::specializations`]).
pub(crate) fn specializations() -> Vec<EntrySpecializations> {
    ReduceKernel::ALL
        .into_iter()
        .map(|kernel| {
            let launches = ReduceOp::ALL.map(|op| vec![("OP", op.code() as f64)]);
            EntrySpecializations::from_launches(kernel.shader(), kernel.entry(), launches)
        })
        .collect()
}
