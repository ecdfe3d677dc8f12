//! Launch builders for 2-D convolution (NCHW, no groups, no bias; PyTorch semantics): forward, input
//! gradient and weight gradient, each an implicit GEMM in `shaders/conv2d.wgsl` (no im2col buffer).

use crate::{grid_1d, DeviceError, Dispatch, Gpu, Launch, Result, Shader};

/// Invocations per workgroup of every conv2d entry point (`WG` in the WGSL).
const WG: u32 = 64;
/// GEMM columns (pixels, or taps for the weight gradient) one invocation accumulates.
const COLS: u32 = 8;

/// GEMM rows (channels) per invocation, the `TM` override: the smallest of 4, 8, 16 that covers
/// `rows`, so that layers with few channels do not compute padding rows.
fn rows_per_invocation(rows: usize) -> u32 {
    match rows {
        0..=4 => 4,
        5..=8 => 8,
        _ => 16,
    }
}

/// The shape of one 2-D convolution. Bias is not part of it: it is a separate broadcast add.
///
/// x: [N, C, H, W], w: [O, C, KH, KW], y: [N, O, OH, OW] with
/// OH = (H + 2·ph − dh·(KH − 1) − 1) / sh + 1 (and likewise OW).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dShape {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    /// [sh, sw]
    pub stride: [usize; 2],
    /// [ph, pw]: zeros added on both sides of each spatial dimension.
    pub pad: [usize; 2],
    /// [dh, dw]: spacing between kernel taps.
    pub dilation: [usize; 2],
}

impl Conv2dShape {
    /// [OH, OW], or `None` when the dilated kernel does not fit the padded input (or a stride,
    /// dilation or kernel size is zero).
    pub fn out_hw(&self) -> Option<[usize; 2]> {
        let dim = |size: usize, k: usize, s: usize, p: usize, d: usize| {
            if k == 0 || s == 0 || d == 0 {
                return None;
            }
            let span = d * (k - 1) + 1;
            (size + 2 * p).checked_sub(span).map(|room| room / s + 1)
        };
        Some([
            dim(
                self.h,
                self.kh,
                self.stride[0],
                self.pad[0],
                self.dilation[0],
            )?,
            dim(
                self.w,
                self.kw,
                self.stride[1],
                self.pad[1],
                self.dilation[1],
            )?,
        ])
    }

    /// The shapes in words, for error messages.
    pub fn describe(&self) -> String {
        format!(
            "x [N, C, H, W] = [{}, {}, {}, {}], w [O, C, KH, KW] = [{}, {}, {}, {}], stride {:?}, pad {:?}, dilation {:?}",
            self.n, self.c_in, self.h, self.w, self.c_out, self.c_in, self.kh, self.kw,
            self.stride, self.pad, self.dilation
        )
    }

    /// Refuses zero-sized dimensions, zero strides or dilations and kernels that do not fit,
    /// with an error naming `op` and the shapes.
    pub fn check(&self, op: &str) -> Result<()> {
        let bad = |why: String| {
            Err(DeviceError::BadShape {
                op: op.to_string(),
                detail: format!("{why} ({})", self.describe()),
            })
        };
        let dims = [
            self.n, self.c_in, self.h, self.w, self.c_out, self.kh, self.kw,
        ];
        if dims.contains(&0) {
            return bad("zero-sized dimension".into());
        }
        if self.stride.contains(&0) || self.dilation.contains(&0) {
            return bad("stride and dilation must be at least 1".into());
        }
        let Some([oh, ow]) = self.out_hw() else {
            return bad(format!(
                "the dilated kernel {}×{} is larger than the padded input {}×{}",
                self.dilation[0] * (self.kh - 1) + 1,
                self.dilation[1] * (self.kw - 1) + 1,
                self.h + 2 * self.pad[0],
                self.w + 2 * self.pad[1],
            ));
        };
        // The kernels index with u32 and signed i32 coordinates.
        let largest = self
            .x_len()
            .max(self.w_len())
            .max(self.n * self.c_out * oh * ow);
        if largest >= i32::MAX as usize || self.h + 2 * self.pad[0] >= i32::MAX as usize {
            return bad("tensor too large for 32-bit indexing".into());
        }
        if self.w + 2 * self.pad[1] >= i32::MAX as usize {
            return bad("tensor too large for 32-bit indexing".into());
        }
        Ok(())
    }

    /// Elements of x: N·C·H·W.
    pub fn x_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }

    /// Elements of w: O·C·KH·KW.
    pub fn w_len(&self) -> usize {
        self.c_out * self.c_in * self.kh * self.kw
    }

    /// Elements of y: N·O·OH·OW (0 when the kernel does not fit).
    pub fn y_len(&self) -> usize {
        self.out_hw()
            .map_or(0, |[oh, ow]| self.n * self.c_out * oh * ow)
    }

    /// Multiply-adds ×2 of one of the three passes (each is the same GEMM, M·N·K).
    pub fn flops(&self) -> u64 {
        2 * self.y_len() as u64 * (self.c_in * self.kh * self.kw) as u64
    }

    /// The params uniform shared by the three entry points (the `Params` struct in conv2d.wgsl).
    fn params(&self) -> [u32; 16] {
        let [oh, ow] = self.out_hw().expect("checked shape");
        [
            self.n,
            self.c_in,
            self.h,
            self.w,
            self.c_out,
            self.kh,
            self.kw,
            oh,
            ow,
            self.stride[0],
            self.stride[1],
            self.pad[0],
            self.pad[1],
            self.dilation[0],
            self.dilation[1],
            0,
        ]
        .map(|v| v as u32)
    }
}

/// Refuses a buffer too small for the `len` f32 values the shape says it holds. Pooled buffers may
/// be larger than the tensor, so only the lower bound is a mismatch.
pub(crate) fn check_buffer(
    op: &str,
    name: &str,
    buffer: &wgpu::Buffer,
    len: usize,
    shape: &str,
) -> Result<()> {
    if buffer.size() < (len * 4) as u64 {
        return Err(DeviceError::BadShape {
            op: op.to_string(),
            detail: format!(
                "{name} holds {} f32 values but the shape needs {len} ({shape})",
                buffer.size() / 4
            ),
        });
    }
    Ok(())
}

/// Which of the three GEMMs a launch computes.
#[derive(Clone, Copy)]
enum Pass {
    Forward,
    GradInput,
    GradWeight,
}

fn launch(
    gpu: &Gpu,
    pass: Pass,
    buffers: [&wgpu::Buffer; 3],
    shape: &Conv2dShape,
    tag: &str,
) -> Result<Dispatch> {
    let entry = match pass {
        Pass::Forward => "conv2d_forward",
        Pass::GradInput => "conv2d_grad_input",
        Pass::GradWeight => "conv2d_grad_weight",
    };
    shape.check(entry)?;
    let (x, w, y) = (shape.x_len(), shape.w_len(), shape.y_len());
    let lens = match pass {
        Pass::Forward => [("x", x), ("w", w), ("y", y)],
        Pass::GradInput => [("dy", y), ("w", w), ("dx", x)],
        Pass::GradWeight => [("x", x), ("dy", y), ("dw", w)],
    };
    let described = shape.describe();
    for (buffer, (name, len)) in buffers.iter().zip(lens) {
        check_buffer(entry, name, buffer, len, &described)?;
    }
    let limit = gpu.limits.max_compute_workgroups_per_dimension;
    let k_taps = shape.c_in * shape.kh * shape.kw;
    // Forward: M = O, N = N·OH·OW. Input gradient: M = C, N = N·H·W. An invocation owns TM rows
    // and COLS columns WG apart. Weight gradient: M = O, N = C·KH·KW; a workgroup owns a TM × COLS
    // tile of dw and its invocations split the N·OH·OW reduction.
    let (rows, cols, cols_per_group) = match pass {
        Pass::Forward => (shape.c_out, y / shape.c_out, WG * COLS),
        Pass::GradInput => (shape.c_in, x / shape.c_in, WG * COLS),
        Pass::GradWeight => (shape.c_out, k_taps, COLS),
    };
    let tm = rows_per_invocation(rows);
    let [gx, gy, _] = grid_1d((cols as u32).div_ceil(cols_per_group), limit);
    let workgroups = [gx, gy, (rows as u32).div_ceil(tm)];
    let bytes = 4 * (x + w + y) as u64;
    gpu.prepare(Launch {
        shader: Shader::Conv2d,
        entry,
        overrides: &[("TM", tm as f64)],
        params: &shape.params(),
        buffers: &buffers,
        workgroups,
        tag: tag.to_string(),
        flops: shape.flops(),
        bytes,
    })
}

/// y = conv2d(x, w). x: [N, C, H, W], w: [O, C, KH, KW] → y: [N, O, OH, OW].
pub fn conv2d_forward(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    y: &wgpu::Buffer,
    shape: &Conv2dShape,
    tag: &str,
) -> Result<Dispatch> {
    launch(gpu, Pass::Forward, [x, w, y], shape, tag)
}

/// dx = ∂L/∂x given dy = ∂L/∂y. dy: [N, O, OH, OW], w: [O, C, KH, KW] → dx: [N, C, H, W]
/// (overwritten, not accumulated).
pub fn conv2d_grad_input(
    gpu: &Gpu,
    dy: &wgpu::Buffer,
    w: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    shape: &Conv2dShape,
    tag: &str,
) -> Result<Dispatch> {
    launch(gpu, Pass::GradInput, [dy, w, dx], shape, tag)
}

/// dw = ∂L/∂w given dy = ∂L/∂y. x: [N, C, H, W], dy: [N, O, OH, OW] → dw: [O, C, KH, KW]
/// (overwritten, not accumulated).
pub fn conv2d_grad_weight(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dw: &wgpu::Buffer,
    shape: &Conv2dShape,
    tag: &str,
) -> Result<Dispatch> {
    launch(gpu, Pass::GradWeight, [x, dy, dw], shape, tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Conv2dShape {
        Conv2dShape {
            n: 2,
            c_in: 3,
            h: 7,
            w: 9,
            c_out: 4,
            kh: 3,
            kw: 5,
            stride: [2, 1],
            pad: [1, 2],
            dilation: [1, 2],
        }
    }

    #[test]
    fn out_hw_follows_pytorch() {
        // OH = (7 + 2 − 2 − 1)/2 + 1 = 4, OW = (9 + 4 − 8 − 1)/1 + 1 = 5
        assert_eq!(shape().out_hw(), Some([4, 5]));
        let s = Conv2dShape { kh: 10, ..shape() };
        assert_eq!(s.out_hw(), None);
        assert!(s.check("conv2d_forward").is_err());
        assert_eq!(s.y_len(), 0);
    }

    #[test]
    fn check_names_op_and_shapes() {
        let s = Conv2dShape { c_in: 0, ..shape() };
        let e = s.check("conv2d_grad_weight").unwrap_err().to_string();
        assert!(
            e.contains("conv2d_grad_weight") && e.contains("[2, 0, 7, 9]"),
            "{e}"
        );
        let s = Conv2dShape {
            stride: [0, 1],
            ..shape()
        };
        assert!(s.check("conv2d_forward").is_err());
        assert!(shape().check("conv2d_forward").is_ok());
    }

    #[test]
    fn flops_is_two_mnk() {
        // 2 · (N·O·OH·OW) · (C·KH·KW)
        assert_eq!(shape().flops(), 2 * (2 * 4 * 4 * 5) * (3 * 3 * 5));
    }
}
