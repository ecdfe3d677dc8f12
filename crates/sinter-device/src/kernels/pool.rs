//! Launch builders for 2-D max and average pooling (NCHW, PyTorch semantics, floor mode) and their
//! gradients, in `shaders/pool.wgsl`. One invocation per output element; backward gathers, no atomics.

use super::conv::check_buffer;
use super::specializations::EntrySpecializations;
use crate::{grid_1d, Dispatch, Gpu, Launch, Result, Shader};
use sinter_ops::Kernel;

/// Invocations per workgroup (`WG` in pool.wgsl).
const WG: u32 = 64;

pub use sinter_ops::pool::Pool2dShape;

/// The params uniform (the `Params` struct in pool.wgsl).
fn params(s: &Pool2dShape) -> [u32; 12] {
    let [oh, ow] = s.out_hw().expect("checked shape");
    [
        s.n,
        s.c,
        s.h,
        s.w,
        s.kh,
        s.kw,
        s.stride[0],
        s.stride[1],
        s.pad[0],
        s.pad[1],
        oh,
        ow,
    ]
    .map(|v| v as u32)
}

/// Checks the buffers (errors name `op`), then prepares `entry` with one invocation per element
/// of a tensor of `threads` elements.
#[allow(clippy::too_many_arguments)]
fn launch(
    gpu: &Gpu,
    op: &str,
    entry: &'static str,
    buffers: &[(&str, &wgpu::Buffer, usize)],
    threads: usize,
    shape: &Pool2dShape,
    tag: &str,
    kernel: Kernel,
) -> Result<Dispatch> {
    let described = shape.describe();
    for &(name, buffer, len) in buffers {
        check_buffer(op, name, buffer, len, &described)?;
    }
    let bufs: Vec<&wgpu::Buffer> = buffers.iter().map(|b| b.1).collect();
    let cost = kernel.cost();
    gpu.prepare(Launch {
        shader: Shader::Pool,
        entry,
        overrides: &[],
        params: &params(shape),
        buffers: &bufs,
        workgroups: grid_1d(
            (threads as u32).div_ceil(WG),
            gpu.limits.max_compute_workgroups_per_dimension,
        ),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// y = max over each window of x. x: [N, C, H, W] → y: [N, C, OH, OW].
pub fn max_pool2d(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    shape: &Pool2dShape,
    tag: &str,
) -> Result<Dispatch> {
    let op = "max_pool2d";
    shape.check(op)?;
    let kernel = Kernel::MaxPool2d(*shape);
    let (xl, yl) = (shape.x_len(), shape.y_len());
    launch(
        gpu,
        op,
        op,
        &[("x", x, xl), ("y", y, yl)],
        yl,
        shape,
        tag,
        kernel,
    )
}

/// dx = ∂L/∂x of max pooling: each window's dy goes to its first maximum in x.
/// x: [N, C, H, W], dy: [N, C, OH, OW] → dx: [N, C, H, W] (overwritten).
pub fn max_pool2d_grad(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    shape: &Pool2dShape,
    tag: &str,
) -> Result<Dispatch> {
    let op = "max_pool2d_grad";
    shape.check(op)?;
    let kernel = Kernel::MaxPool2dGrad {
        shape: *shape,
        relu: false,
    };
    let (xl, yl) = (shape.x_len(), shape.y_len());
    let bufs = [("x", x, xl), ("dy", dy, yl), ("dx", dx, xl)];
    if shape.disjoint_windows() {
        // One invocation per window: its argmax, then its whole cell of dx.
        return launch(
            gpu,
            op,
            "max_pool2d_grad_cells",
            &bufs,
            yl,
            shape,
            tag,
            kernel,
        );
    }
    // One invocation per input element, recomputing the argmax of every window that holds it.
    launch(gpu, op, op, &bufs, xl, shape, tag, kernel)
}

/// y = mean over each window of x, padding counted as zeros (divides by KH·KW).
/// x: [N, C, H, W] → y: [N, C, OH, OW].
pub fn avg_pool2d(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    shape: &Pool2dShape,
    tag: &str,
) -> Result<Dispatch> {
    let op = "avg_pool2d";
    shape.check(op)?;
    let kernel = Kernel::AvgPool2d(*shape);
    let (xl, yl) = (shape.x_len(), shape.y_len());
    launch(
        gpu,
        op,
        op,
        &[("x", x, xl), ("y", y, yl)],
        yl,
        shape,
        tag,
        kernel,
    )
}

/// dx = ∂L/∂x of average pooling: each window spreads dy / (KH·KW) over its elements.
/// dy: [N, C, OH, OW] → dx: [N, C, H, W] (overwritten).
pub fn avg_pool2d_grad(
    gpu: &Gpu,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    shape: &Pool2dShape,
    tag: &str,
) -> Result<Dispatch> {
    let op = "avg_pool2d_grad";
    shape.check(op)?;
    let kernel = Kernel::AvgPool2dGrad(*shape);
    let (xl, yl) = (shape.x_len(), shape.y_len());
    let bufs = [("dy", dy, yl), ("dx", dx, xl)];
    if shape.disjoint_windows() {
        // One invocation per window, writing its whole cell of dx.
        return launch(
            gpu,
            op,
            "avg_pool2d_grad_cells",
            &bufs,
            yl,
            shape,
            tag,
            kernel,
        );
    }
    // One invocation per input element, summing the windows that hold it.
    launch(gpu, op, op, &bufs, xl, shape, tag, kernel)
}

/// Its entry points, none with override constants (see [`super::specializations`]).
pub(crate) fn specializations() -> Vec<EntrySpecializations> {
    [
        "max_pool2d",
        "max_pool2d_grad",
        "max_pool2d_grad_cells",
        "avg_pool2d",
        "avg_pool2d_grad",
        "avg_pool2d_grad_cells",
    ]
    .into_iter()
    .map(|entry| EntrySpecializations::plain(Shader::Pool, entry))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Pool2dShape {
        Pool2dShape {
            n: 1,
            c: 2,
            h: 7,
            w: 6,
            kh: 3,
            kw: 2,
            stride: [2, 2],
            pad: [1, 0],
        }
    }

    #[test]
    fn out_hw_follows_pytorch() {
        // OH = (7 + 2 − 3)/2 + 1 = 4, OW = (6 − 2)/2 + 1 = 3
        assert_eq!(shape().out_hw(), Some([4, 3]));
        assert_eq!(Pool2dShape { kh: 10, ..shape() }.out_hw(), None);
    }

    #[test]
    fn check_refuses_bad_shapes() {
        assert!(shape().check("max_pool2d").is_ok());
        let e = Pool2dShape {
            pad: [2, 0],
            ..shape()
        }
        .check("max_pool2d")
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("max_pool2d") && e.contains("[1, 2, 7, 6]"),
            "{e}"
        );
        assert!(Pool2dShape { h: 0, ..shape() }.check("avg_pool2d").is_err());
        assert!(Pool2dShape {
            stride: [1, 0],
            ..shape()
        }
        .check("avg_pool2d")
        .is_err());
        assert!(Pool2dShape { kw: 9, ..shape() }
            .check("avg_pool2d")
            .is_err());
    }
}
