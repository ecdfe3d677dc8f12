//! Launch builders for `shaders/softmax.wgsl`: softmax and log-softmax along the last axis, and
//! their gradients from the forward output. Rows up to vocabulary size (~50k columns) are supported.

use super::elementwise::{check_buffer, rows_or_tree};
use super::specializations::EntrySpecializations;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Launch};
use crate::shaders::Shader;
use sinter_ops::Kernel;

pub use sinter_ops::softmax::RowsShape;

/// The params uniform (the `Params` struct in softmax.wgsl).
fn params(s: &RowsShape) -> [u32; 4] {
    [s.rows as u32, s.cols as u32, 0, 0]
}

/// Which of the two functions an entry point computes (the WGSL override `LOG`).
fn log_code(log: bool) -> f64 {
    if log {
        1.0
    } else {
        0.0
    }
}

fn forward(
    gpu: &Gpu,
    op: &str,
    log: bool,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    shape: &RowsShape,
    tag: &str,
) -> Result<Dispatch> {
    shape.check(op)?;
    let len = shape.len();
    check_buffer(op, "x", x, len)?;
    check_buffer(op, "y", y, len)?;
    let cost = if log {
        Kernel::LogSoftmax(*shape)
    } else {
        Kernel::Softmax(*shape)
    }
    .cost();
    let (entry, workgroups) = rows_or_tree(
        gpu,
        shape.uses_tree(),
        ["softmax_rows", "softmax_tree"],
        shape.rows,
    );
    gpu.prepare(Launch {
        shader: Shader::Softmax,
        entry,
        overrides: &[("LOG", log_code(log))],
        params: &params(shape),
        buffers: &[x, y],
        workgroups,
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

#[allow(clippy::too_many_arguments)]
fn backward(
    gpu: &Gpu,
    op: &str,
    log: bool,
    y: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    shape: &RowsShape,
    tag: &str,
) -> Result<Dispatch> {
    shape.check(op)?;
    let len = shape.len();
    check_buffer(op, "y", y, len)?;
    check_buffer(op, "dy", dy, len)?;
    check_buffer(op, "dx", dx, len)?;
    let cost = if log {
        Kernel::LogSoftmaxGrad(*shape)
    } else {
        Kernel::SoftmaxGrad(*shape)
    }
    .cost();
    let (entry, workgroups) = rows_or_tree(
        gpu,
        shape.uses_tree(),
        ["softmax_grad_rows", "softmax_grad_tree"],
        shape.rows,
    );
    gpu.prepare(Launch {
        shader: Shader::Softmax,
        entry,
        overrides: &[("LOG", log_code(log))],
        params: &params(shape),
        buffers: &[y, dy, dx],
        workgroups,
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// y = exp(x − max) / Σ exp(x − max) along each row.
// x, y: [rows, cols]
pub fn softmax(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    shape: &RowsShape,
    tag: &str,
) -> Result<Dispatch> {
    forward(gpu, "softmax", false, x, y, shape, tag)
}

/// y = (x − max) − log Σ exp(x − max) along each row.
// x, y: [rows, cols]
pub fn log_softmax(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    shape: &RowsShape,
    tag: &str,
) -> Result<Dispatch> {
    forward(gpu, "log_softmax", true, x, y, shape, tag)
}

/// dx = y ∘ (dy − Σ_j dy_j·y_j), with y the softmax output.
// y, dy, dx: [rows, cols]
pub fn softmax_grad(
    gpu: &Gpu,
    y: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    shape: &RowsShape,
    tag: &str,
) -> Result<Dispatch> {
    backward(gpu, "softmax_grad", false, y, dy, dx, shape, tag)
}

/// dx = dy − exp(y)·Σ_j dy_j, with y the log-softmax output.
// y, dy, dx: [rows, cols]
pub fn log_softmax_grad(
    gpu: &Gpu,
    y: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    shape: &RowsShape,
    tag: &str,
) -> Result<Dispatch> {
    backward(gpu, "log_softmax_grad", true, y, dy, dx, shape, tag)
}

/// The four entry points, each as softmax and as log-softmax (see [`super::specializations`]).
pub(crate) fn specializations() -> Vec<EntrySpecializations> {
    [
        "softmax_rows",
        "softmax_tree",
        "softmax_grad_rows",
        "softmax_grad_tree",
    ]
    .into_iter()
    .map(|entry| {
        let launches = [false, true].map(|log| vec![("LOG", log_code(log))]);
        EntrySpecializations::from_launches(Shader::Softmax, entry, launches)
    })
    .collect()
}
