//! Launch builders for `shaders/norm.wgsl`: layer and RMS normalization over the last axis, their
//! input gradients and gamma gradients. (The beta gradient is a column sum: the reduce kernel does it.)

use super::elementwise::{check_buffer, grid_for, groups_grid};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Launch};
use crate::shaders::Shader;
use sinter_ops::Kernel;

pub use sinter_ops::norm::LayerNormShape;

/// The params uniform (the `Params` struct in norm.wgsl).
fn params(s: &LayerNormShape) -> [u32; 4] {
    [s.rows as u32, s.dim as u32, s.eps.to_bits(), 0]
}

fn row_grid(s: &LayerNormShape, gpu: &Gpu) -> [u32; 3] {
    if s.uses_tree() {
        groups_grid(gpu, s.rows)
    } else {
        grid_for(gpu, s.rows)
    }
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
    gpu.prepare(Launch {
        shader: Shader::Norm,
        entry: if shape.uses_tree() {
            "layer_norm_tree"
        } else {
            "layer_norm_rows"
        },
        overrides: &[],
        params: &params(shape),
        buffers: &[x, gamma, beta, y],
        workgroups: row_grid(shape, gpu),
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
    gpu.prepare(Launch {
        shader: Shader::Norm,
        entry: if shape.uses_tree() {
            "layer_norm_grad_input_tree"
        } else {
            "layer_norm_grad_input_rows"
        },
        overrides: &[],
        params: &params(shape),
        buffers: &[x, gamma, dy, dx],
        workgroups: row_grid(shape, gpu),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// `dgamma[j] = Σ_rows dy·x̂`, with the row statistics recomputed from x.
// x, dy: [rows, dim], dgamma: [dim]
pub fn layer_norm_grad_gamma(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dgamma: &wgpu::Buffer,
    shape: &LayerNormShape,
    tag: &str,
) -> Result<Dispatch> {
    const OP: &str = "layer_norm_grad_gamma";
    shape.check(OP)?;
    let len = shape.len();
    check_buffer(OP, "x", x, len)?;
    check_buffer(OP, "dy", dy, len)?;
    check_buffer(OP, "dgamma", dgamma, shape.dim)?;
    let cost = Kernel::LayerNormGradGamma(*shape).cost();
    gpu.prepare(Launch {
        shader: Shader::Norm,
        entry: "layer_norm_grad_gamma",
        overrides: &[],
        params: &params(shape),
        buffers: &[x, dy, dgamma],
        workgroups: grid_for(gpu, shape.dim),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
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
    gpu.prepare(Launch {
        shader: Shader::Norm,
        entry: if shape.uses_tree() {
            "rms_norm_tree"
        } else {
            "rms_norm_rows"
        },
        overrides: &[],
        params: &params(shape),
        buffers: &[x, gamma, y],
        workgroups: row_grid(shape, gpu),
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
    gpu.prepare(Launch {
        shader: Shader::Norm,
        entry: if shape.uses_tree() {
            "rms_norm_grad_input_tree"
        } else {
            "rms_norm_grad_input_rows"
        },
        overrides: &[],
        params: &params(shape),
        buffers: &[x, gamma, dy, dx],
        workgroups: row_grid(shape, gpu),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// `dgamma[j] = Σ_rows dy·x·rstd`, with rstd recomputed from x; rows added in order.
// x, dy: [rows, dim], dgamma: [dim]
pub fn rms_norm_grad_gamma(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dgamma: &wgpu::Buffer,
    shape: &LayerNormShape,
    tag: &str,
) -> Result<Dispatch> {
    const OP: &str = "rms_norm_grad_gamma";
    shape.check(OP)?;
    let len = shape.len();
    check_buffer(OP, "x", x, len)?;
    check_buffer(OP, "dy", dy, len)?;
    check_buffer(OP, "dgamma", dgamma, shape.dim)?;
    let cost = Kernel::RmsNormGradGamma(*shape).cost();
    gpu.prepare(Launch {
        shader: Shader::Norm,
        entry: "rms_norm_grad_gamma",
        overrides: &[],
        params: &params(shape),
        buffers: &[x, dy, dgamma],
        workgroups: grid_for(gpu, shape.dim),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}
