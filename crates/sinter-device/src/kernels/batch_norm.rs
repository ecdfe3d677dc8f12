//! Launch builders for `shaders/batch_norm.wgsl`: batch normalization in training (statistics,
//! then normalization), its backward pass (channel sums, then dx) and the running update.

use super::elementwise::{check_buffer, grid_for, groups_grid};
use super::specializations::EntrySpecializations;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Launch};
use crate::shaders::Shader;
use sinter_ops::{Cost, Kernel};

pub use sinter_ops::batch_norm::{BatchNormShape, BatchNormUpdate};

/// The params uniform (the `Params` struct in batch_norm.wgsl).
fn params(s: &BatchNormShape) -> [u32; 4] {
    [s.n as u32, s.channels as u32, s.hw as u32, s.eps.to_bits()]
}

/// One workgroup per channel.
fn channel_grid(gpu: &Gpu, s: &BatchNormShape) -> [u32; 3] {
    groups_grid(gpu, s.channels)
}

/// A launch's cost split over its two dispatches: the first (the channel reductions) carries
/// `first`, the second (the elementwise pass) the rest, so that the two sum to the launch's cost.
fn split(total: Cost, first: Cost) -> (Cost, Cost) {
    let rest = Cost {
        flops: total.flops.saturating_sub(first.flops),
        bytes: total.bytes.saturating_sub(first.bytes),
    };
    (first, rest)
}

/// y = (x − mean)/√(var + eps) · weight + bias with the batch's per-channel mean and biased
/// variance, which are written to `stats` (`[2, C]`): two dispatches, statistics then
/// normalization.
// x, y: [N, C, H·W]; weight, bias: [C]; stats: [2, C]
#[allow(clippy::too_many_arguments)]
pub fn batch_norm2d(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    weight: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    y: &wgpu::Buffer,
    stats: &wgpu::Buffer,
    shape: &BatchNormShape,
    tag: &str,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "batch_norm2d";
    shape.check(OP)?;
    let (len, c) = (shape.len(), shape.channels);
    check_buffer(OP, "x", x, len)?;
    check_buffer(OP, "weight", weight, c)?;
    check_buffer(OP, "bias", bias, c)?;
    check_buffer(OP, "y", y, len)?;
    check_buffer(OP, "stats", stats, 2 * c)?;
    let (first, rest) = split(
        Kernel::BatchNorm2d(*shape).cost(),
        Cost {
            flops: 4 * len as u64,
            bytes: 4 * (len + 2 * c) as u64,
        },
    );
    let p = params(shape);
    Ok(vec![
        gpu.prepare(Launch {
            shader: Shader::BatchNorm,
            entry: "batch_norm_stats",
            overrides: &[],
            params: &p,
            buffers: &[x, stats],
            workgroups: channel_grid(gpu, shape),
            tag: tag.to_string(),
            flops: first.flops,
            bytes: first.bytes,
        })?,
        gpu.prepare(Launch {
            shader: Shader::BatchNorm,
            entry: "batch_norm_apply",
            overrides: &[],
            params: &p,
            buffers: &[x, weight, bias, stats, y],
            workgroups: grid_for(gpu, len),
            tag: tag.to_string(),
            flops: rest.flops,
            bytes: rest.bytes,
        })?,
    ])
}

/// The backward pass of [`batch_norm2d`]: dbias = Σ dy, dweight = Σ dy·x̂ per channel, then
/// dx = weight·rstd·(dy − dbias/m − x̂·dweight/m) with m = N·H·W: two dispatches.
// x, dy, dx: [N, C, H·W]; weight, dweight, dbias: [C]; stats: [2, C]
#[allow(clippy::too_many_arguments)]
pub fn batch_norm2d_grad(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    weight: &wgpu::Buffer,
    stats: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    dweight: &wgpu::Buffer,
    dbias: &wgpu::Buffer,
    shape: &BatchNormShape,
    tag: &str,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "batch_norm2d_grad";
    shape.check(OP)?;
    let (len, c) = (shape.len(), shape.channels);
    check_buffer(OP, "x", x, len)?;
    check_buffer(OP, "weight", weight, c)?;
    check_buffer(OP, "stats", stats, 2 * c)?;
    check_buffer(OP, "dy", dy, len)?;
    check_buffer(OP, "dx", dx, len)?;
    check_buffer(OP, "dweight", dweight, c)?;
    check_buffer(OP, "dbias", dbias, c)?;
    let (first, rest) = split(
        Kernel::BatchNorm2dGrad(*shape).cost(),
        Cost {
            flops: 5 * len as u64,
            bytes: 4 * (2 * len + 4 * c) as u64,
        },
    );
    let p = params(shape);
    Ok(vec![
        gpu.prepare(Launch {
            shader: Shader::BatchNorm,
            entry: "batch_norm_grad_sums",
            overrides: &[],
            params: &p,
            buffers: &[x, dy, stats, dweight, dbias],
            workgroups: channel_grid(gpu, shape),
            tag: tag.to_string(),
            flops: first.flops,
            bytes: first.bytes,
        })?,
        gpu.prepare(Launch {
            shader: Shader::BatchNorm,
            entry: "batch_norm_grad_input",
            overrides: &[],
            params: &p,
            buffers: &[x, weight, stats, dy, dweight, dbias, dx],
            workgroups: grid_for(gpu, len),
            tag: tag.to_string(),
            flops: rest.flops,
            bytes: rest.bytes,
        })?,
    ])
}

/// running = (1 − momentum)·running + momentum·batch per channel in place, the variance
/// unbiased (× count/(count − 1)), and `num_batches_tracked` (one value) plus one.
// stats: [2, C]; running_mean, running_var: [C]; num_batches_tracked: [1]
pub fn batch_norm_update(
    gpu: &Gpu,
    stats: &wgpu::Buffer,
    running_mean: &wgpu::Buffer,
    running_var: &wgpu::Buffer,
    num_batches_tracked: &wgpu::Buffer,
    update: &BatchNormUpdate,
    tag: &str,
) -> Result<Dispatch> {
    const OP: &str = "batch_norm_update";
    update.check(OP)?;
    let c = update.channels;
    check_buffer(OP, "stats", stats, 2 * c)?;
    check_buffer(OP, "running_mean", running_mean, c)?;
    check_buffer(OP, "running_var", running_var, c)?;
    check_buffer(OP, "num_batches_tracked", num_batches_tracked, 1)?;
    let cost = Kernel::BatchNormUpdate(*update).cost();
    gpu.prepare(Launch {
        shader: Shader::BatchNorm,
        entry: "batch_norm_update",
        overrides: &[],
        params: &[
            c as u32,
            update.momentum.to_bits(),
            (update.unbiased_factor() as f32).to_bits(),
            0,
        ],
        buffers: &[stats, running_mean, running_var, num_batches_tracked],
        workgroups: grid_for(gpu, c),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// Its entry points, none with override constants (see [`super::specializations`]).
pub(crate) fn specializations() -> Vec<EntrySpecializations> {
    [
        "batch_norm_stats",
        "batch_norm_apply",
        "batch_norm_grad_sums",
        "batch_norm_grad_input",
        "batch_norm_update",
    ]
    .into_iter()
    .map(|entry| EntrySpecializations::plain(Shader::BatchNorm, entry))
    .collect()
}
