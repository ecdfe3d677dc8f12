//! Launch builders for `shaders/norm.wgsl`: layer and RMS normalization over the last axis, their
//! input gradients and gamma gradients. (The beta gradient is a column sum: the reduce kernel does it.)

use super::elementwise::{check_buffer, groups_grid, rows_or_tree};
use super::reduce::{reduce, ReduceOp, ReduceShape};
use super::specializations::EntrySpecializations;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Launch};
use crate::shaders::Shader;
use sinter_ops::Kernel;

pub use sinter_ops::norm::LayerNormShape;

/// The params uniform (the `Params` struct in norm.wgsl).
fn params(s: &LayerNormShape) -> [u32; 4] {
    [s.rows as u32, s.dim as u32, s.eps.to_bits(), 0]
}

/// The entry point and grid of a per-row norm kernel with a rows and a tree variant.
fn row_kernel(
    gpu: &Gpu,
    s: &LayerNormShape,
    variants: [&'static str; 2],
) -> (&'static str, [u32; 3]) {
    rows_or_tree(gpu, s.uses_tree(), variants, s.rows)
}

/// y = (x − mean)/sqrt(var + eps) · gamma + beta, per row.
// x, y: [rows, dim], gamma, beta: [dim]
pub fn layer_norm(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    gamma: &wgpu::Buffer,
    beta: &wgpu::Buffer,
    y: &wgpu::Buffer,
    shape: &LayerNormShape,
    tag: &str,
) -> Result<Dispatch> {
    const OP: &str = "layer_norm";
    shape.check(OP)?;
    let len = shape.len();
    check_buffer(OP, "x", x, len)?;
    check_buffer(OP, "gamma", gamma, shape.dim)?;
    check_buffer(OP, "beta", beta, shape.dim)?;
    check_buffer(OP, "y", y, len)?;
    let cost = Kernel::LayerNorm(*shape).cost();
    let (entry, workgroups) = row_kernel(gpu, shape, ["layer_norm_rows", "layer_norm_tree"]);
    gpu.prepare(Launch {
        shader: Shader::Norm,
        entry,
        overrides: &[],
        params: &params(shape),
        buffers: &[x, gamma, beta, y],
        workgroups,
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) with x̂ = (x − mean)·rstd and g = dy·gamma; the row
/// statistics are recomputed from x.
// x, dy, dx: [rows, dim], gamma: [dim]
pub fn layer_norm_grad_input(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    gamma: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    shape: &LayerNormShape,
    tag: &str,
) -> Result<Dispatch> {
    const OP: &str = "layer_norm_grad_input";
    shape.check(OP)?;
    let len = shape.len();
    check_buffer(OP, "x", x, len)?;
    check_buffer(OP, "gamma", gamma, shape.dim)?;
    check_buffer(OP, "dy", dy, len)?;
    check_buffer(OP, "dx", dx, len)?;
    let cost = Kernel::LayerNormGradInput(*shape).cost();
    let (entry, workgroups) = row_kernel(
        gpu,
        shape,
        ["layer_norm_grad_input_rows", "layer_norm_grad_input_tree"],
    );
    gpu.prepare(Launch {
        shader: Shader::Norm,
        entry,
        overrides: &[],
        params: &params(shape),
        buffers: &[x, gamma, dy, dx],
        workgroups,
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// `dgamma[j] = Σ_rows dy·x̂`, with the row statistics recomputed from x, in two passes: a
/// workgroup per chunk of rows writes the chunk's column sums to a scratch buffer of the
/// kernel's own, then the reduce kernel sums the chunks (deterministic, no atomics).
// x, dy: [rows, dim], dgamma: [dim]
pub fn layer_norm_grad_gamma(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dgamma: &wgpu::Buffer,
    shape: &LayerNormShape,
    tag: &str,
) -> Result<Vec<Dispatch>> {
    let cost = Kernel::LayerNormGradGamma(*shape).cost();
    gamma_grad(
        gpu,
        "layer_norm_grad_gamma",
        cost,
        [x, dy, dgamma],
        shape,
        tag,
    )
}

/// The rows of a gamma gradient's chunk: one workgroup of the device's `WG` invocations.
fn chunk_rows(gpu: &Gpu) -> usize {
    gpu.wide_workgroup() as usize
}

/// A gamma gradient (`entry`: layer or RMS norm) in two passes, so that a tall [rows, dim] input
/// spreads over workgroups on every GPU: pass 1 has workgroup (c, b) sum row chunk c of the
/// column block b into row c of a [chunks, dim] scratch buffer (the kernel's own, made here),
/// pass 2 sums the chunks with the reduce kernel. Rows are added in order within a chunk and the
/// chunks in order, so the result is deterministic. With a single chunk pass 1 writes dgamma.
fn gamma_grad(
    gpu: &Gpu,
    entry: &'static str,
    cost: sinter_ops::Cost,
    [x, dy, dgamma]: [&wgpu::Buffer; 3],
    shape: &LayerNormShape,
    tag: &str,
) -> Result<Vec<Dispatch>> {
    shape.check(entry)?;
    let len = shape.len();
    check_buffer(entry, "x", x, len)?;
    check_buffer(entry, "dy", dy, len)?;
    check_buffer(entry, "dgamma", dgamma, shape.dim)?;
    let chunks = shape.rows.div_ceil(chunk_rows(gpu));
    let blocks = shape.dim.div_ceil(gpu.wide_workgroup() as usize);
    let scratch = if chunks > 1 {
        Some(gpu.buffer(entry, chunks * shape.dim)?)
    } else {
        None
    };
    let partials = scratch.as_ref().unwrap_or(dgamma);
    let mut dispatches = vec![gpu.prepare(Launch {
        shader: Shader::Norm,
        entry,
        overrides: &[],
        params: &params(shape),
        buffers: &[x, dy, partials],
        workgroups: groups_grid(gpu, chunks * blocks),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })?];
    if let Some(scratch) = &scratch {
        let sum = ReduceShape {
            outer: 1,
            n: chunks,
            inner: shape.dim,
        };
        dispatches.push(reduce(gpu, scratch, dgamma, ReduceOp::Sum, &sum, tag)?);
    }
    Ok(dispatches)
}

/// y = x / sqrt(mean(x²) + eps) · gamma, per row (PyTorch's RMSNorm).
// x, y: [rows, dim], gamma: [dim]
pub fn rms_norm(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    gamma: &wgpu::Buffer,
    y: &wgpu::Buffer,
    shape: &LayerNormShape,
    tag: &str,
) -> Result<Dispatch> {
    const OP: &str = "rms_norm";
    shape.check(OP)?;
    let len = shape.len();
    check_buffer(OP, "x", x, len)?;
    check_buffer(OP, "gamma", gamma, shape.dim)?;
    check_buffer(OP, "y", y, len)?;
    let cost = Kernel::RmsNorm(*shape).cost();
    let (entry, workgroups) = row_kernel(gpu, shape, ["rms_norm_rows", "rms_norm_tree"]);
    gpu.prepare(Launch {
        shader: Shader::Norm,
        entry,
        overrides: &[],
        params: &params(shape),
        buffers: &[x, gamma, y],
        workgroups,
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// dx = rstd·(g − x̂·mean(g·x̂)) with x̂ = x·rstd and g = dy·gamma; rstd is recomputed from x.
// x, dy, dx: [rows, dim], gamma: [dim]
pub fn rms_norm_grad_input(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    gamma: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    shape: &LayerNormShape,
    tag: &str,
) -> Result<Dispatch> {
    const OP: &str = "rms_norm_grad_input";
    shape.check(OP)?;
    let len = shape.len();
    check_buffer(OP, "x", x, len)?;
    check_buffer(OP, "gamma", gamma, shape.dim)?;
    check_buffer(OP, "dy", dy, len)?;
    check_buffer(OP, "dx", dx, len)?;
    let cost = Kernel::RmsNormGradInput(*shape).cost();
    let (entry, workgroups) = row_kernel(
        gpu,
        shape,
        ["rms_norm_grad_input_rows", "rms_norm_grad_input_tree"],
    );
    gpu.prepare(Launch {
        shader: Shader::Norm,
        entry,
        overrides: &[],
        params: &params(shape),
        buffers: &[x, gamma, dy, dx],
        workgroups,
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// `dgamma[j] = Σ_rows dy·x·rstd`, with rstd recomputed from x, in two passes as
/// [`layer_norm_grad_gamma`].
// x, dy: [rows, dim], dgamma: [dim]
pub fn rms_norm_grad_gamma(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dgamma: &wgpu::Buffer,
    shape: &LayerNormShape,
    tag: &str,
) -> Result<Vec<Dispatch>> {
    let cost = Kernel::RmsNormGradGamma(*shape).cost();
    gamma_grad(
        gpu,
        "rms_norm_grad_gamma",
        cost,
        [x, dy, dgamma],
        shape,
        tag,
    )
}

/// Its entry points, none with override constants (see [`super::specializations`]).
pub(crate) fn specializations() -> Vec<EntrySpecializations> {
    [
        "layer_norm_rows",
        "layer_norm_tree",
        "layer_norm_grad_input_rows",
        "layer_norm_grad_input_tree",
        "layer_norm_grad_gamma",
        "rms_norm_rows",
        "rms_norm_tree",
        "rms_norm_grad_input_rows",
        "rms_norm_grad_input_tree",
        "rms_norm_grad_gamma",
    ]
    .into_iter()
    .map(|entry| EntrySpecializations::plain(Shader::Norm, entry))
    .collect()
}
