//! Launch builders for `shaders/norm.wgsl`: layer normalization over the last axis, its input
//! gradient and its gamma gradient. (The beta gradient is a column sum: the reduce kernel does it.)

use super::elementwise::{check_buffer, check_len, grid_for};
use crate::error::{DeviceError, Result};
use crate::gpu::{Dispatch, Gpu, Launch};
use crate::shaders::Shader;

/// Invocations per workgroup of every norm kernel (`WG` in the WGSL).
const WG: usize = 256;

/// x seen as [rows, dim], normalized over dim with the biased variance (as PyTorch's LayerNorm);
/// gamma and beta are [dim].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNormShape {
    pub rows: usize,
    pub dim: usize,
    pub eps: f32,
}

impl LayerNormShape {
    pub fn len(&self) -> usize {
        self.rows * self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A workgroup per row pays off once a row is as long as the workgroup; shorter rows get one
    /// invocation each.
    pub fn uses_tree(&self) -> bool {
        self.dim >= WG
    }

    fn check(&self, op: &str) -> Result<()> {
        let LayerNormShape { rows, dim, eps } = *self;
        if rows == 0 || dim == 0 {
            return Err(DeviceError::BadShape {
                op: op.to_string(),
                detail: format!("zero-sized dim in x [rows, dim] = [{rows}, {dim}]"),
            });
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(DeviceError::BadShape {
                op: op.to_string(),
                detail: format!("eps {eps} for x [{rows}, {dim}]: expected finite and ≥ 0"),
            });
        }
        check_len(op, &format!("x [rows, dim] = [{rows}, {dim}]"), rows * dim)
    }

    fn params(&self) -> [u32; 4] {
        [self.rows as u32, self.dim as u32, self.eps.to_bits(), 0]
    }

    fn row_grid(&self, gpu: &Gpu) -> [u32; 3] {
        if self.uses_tree() {
            grid_for(gpu, self.rows, 1)
        } else {
            grid_for(gpu, self.rows, WG)
        }
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
    gpu.prepare(Launch {
        shader: Shader::Norm,
        entry: if shape.uses_tree() {
            "layer_norm_tree"
        } else {
            "layer_norm_rows"
        },
        overrides: &[],
        params: &shape.params(),
        buffers: &[x, gamma, beta, y],
        workgroups: shape.row_grid(gpu),
        tag: tag.to_string(),
        // Sum; subtract, square, add; subtract, two multiplies, add.
        flops: 8 * len as u64,
        // x three times, gamma and beta once per row, y once.
        bytes: 4 * 6 * len as u64,
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
    gpu.prepare(Launch {
        shader: Shader::Norm,
        entry: if shape.uses_tree() {
            "layer_norm_grad_input_tree"
        } else {
            "layer_norm_grad_input_rows"
        },
        overrides: &[],
        params: &shape.params(),
        buffers: &[x, gamma, dy, dx],
        workgroups: shape.row_grid(gpu),
        tag: tag.to_string(),
        // Statistics (4), the two sums (6), the gradient (8) per element.
        flops: 18 * len as u64,
        // x four times, dy and gamma twice, dx once.
        bytes: 4 * 9 * len as u64,
    })
}

/// dgamma[j] = Σ_rows dy·x̂, with the row statistics recomputed from x.
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
    // Each workgroup owns WG columns and recomputes every row's statistics (2 reads of x per
    // element), so the statistics are paid once per column block.
    let blocks = shape.dim.div_ceil(WG) as u64;
    gpu.prepare(Launch {
        shader: Shader::Norm,
        entry: "layer_norm_grad_gamma",
        overrides: &[],
        params: &shape.params(),
        buffers: &[x, dy, dgamma],
        workgroups: grid_for(gpu, shape.dim, WG),
        tag: tag.to_string(),
        flops: (4 * blocks + 4) * len as u64,
        bytes: 4 * ((2 * blocks + 2) * len as u64 + shape.dim as u64),
    })
}
