//! Launch builders for 2-D convolution (NCHW, no groups; PyTorch semantics): forward, input
//! gradient and weight gradient, each an implicit GEMM in `shaders/conv2d.wgsl` (no im2col buffer).
//! The forward runs an epilogue (bias per output channel, any unary activation) inside the kernel.

use super::specializations::EntrySpecializations;
use super::EpilogueArgs;
use super::{epilogue_overrides, every_epilogue};
use crate::{grid_1d, DeviceError, Dispatch, Gpu, Launch, Result, Shader};
use sinter_ops::Kernel;

/// Invocations per workgroup of every conv2d entry point (`WG` in the WGSL).
const WG: u32 = 64;
/// GEMM columns (pixels, or taps for the weight gradient) one invocation accumulates.
const COLS: u32 = 8;

/// How the start-up canary names `entry` at `tm` rows per invocation: `conv2d_forward TM=8`.
pub fn tm_variant(entry: &str, tm: u32) -> String {
    format!("{entry} TM={tm}")
}

/// The `TM` of an `entry` launch with `rows` GEMM rows: [`rows_per_invocation`], or the next
/// wider one where the start-up canary disabled it on this device (a wider `TM` computes rows
/// past the last as padding and stores only real ones: the same result).
fn tm_for(gpu: &Gpu, entry: &str, rows: usize) -> u32 {
    let first = rows_per_invocation(rows);
    [4, 8, 16]
        .into_iter()
        .filter(|&tm| tm >= first)
        .find(|&tm| !gpu.is_disabled(&tm_variant(entry, tm)))
        .unwrap_or(first)
}

/// GEMM rows (channels) per invocation, the `TM` override: the smallest of 4, 8, 16 that covers
/// `rows`, so that layers with few channels do not compute padding rows.
pub(crate) fn rows_per_invocation(rows: usize) -> u32 {
    match rows {
        0..=4 => 4,
        5..=8 => 8,
        _ => 16,
    }
}

pub use sinter_ops::conv::Conv2dShape;

/// The params uniform shared by the three entry points (the `Params` struct in conv2d.wgsl).
fn params(s: &Conv2dShape) -> [u32; 16] {
    let [oh, ow] = s.out_hw().expect("checked shape");
    [
        s.n,
        s.c_in,
        s.h,
        s.w,
        s.c_out,
        s.kh,
        s.kw,
        oh,
        ow,
        s.stride[0],
        s.stride[1],
        s.pad[0],
        s.pad[1],
        s.dilation[0],
        s.dilation[1],
        0,
    ]
    .map(|v| v as u32)
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConvPass {
    /// y = conv2d(x, w): M = O, N = N·OH·OW.
    Forward,
    /// dx from dy and w: M = C, N = N·H·W.
    GradInput,
    /// dw from x and dy: M = O, N = C·KH·KW.
    GradWeight,
}

impl ConvPass {
    /// The WGSL entry point.
    pub fn entry(self) -> &'static str {
        match self {
            ConvPass::Forward => "conv2d_forward",
            ConvPass::GradInput => "conv2d_grad_input",
            ConvPass::GradWeight => "conv2d_grad_weight",
        }
    }

    /// The GEMM rows (channels) of the pass, which `TM` tiles.
    fn rows(self, shape: &Conv2dShape) -> usize {
        match self {
            ConvPass::Forward | ConvPass::GradWeight => shape.c_out,
            ConvPass::GradInput => shape.c_in,
        }
    }
}

/// The rows per invocation a convolution pass may run with: every one is right for every shape.
pub const TMS: [u32; 3] = [4, 8, 16];

/// The `TM` of a `pass` launch over `shape` by the static rule (the smallest of [`TMS`] that
/// covers the rows, past variants the canary disabled): what runs when tuning is off.
pub fn static_tm(gpu: &Gpu, pass: ConvPass, shape: &Conv2dShape) -> u32 {
    tm_for(gpu, pass.entry(), pass.rows(shape))
}

/// One convolution `pass` with `tm` rows per invocation (one of [`TMS`]): the tuner's entry.
/// Buffers as the pass's launcher takes them: forward `[x, w, y]`, input gradient
/// `[dy, w, dx]`, weight gradient `[x, dy, dw]`.
pub fn conv2d_with_tm(
    gpu: &Gpu,
    pass: ConvPass,
    tm: u32,
    buffers: [&wgpu::Buffer; 3],
    shape: &Conv2dShape,
    tag: &str,
) -> Result<Dispatch> {
    if !TMS.contains(&tm) {
        return Err(DeviceError::BadShape {
            op: pass.entry().to_string(),
            detail: format!("TM={tm}: rows per invocation must be one of {TMS:?}"),
        });
    }
    launch(gpu, pass, Some(tm), buffers, shape, EpilogueArgs::NONE, tag)
}

fn launch(
    gpu: &Gpu,
    pass: ConvPass,
    tm: Option<u32>,
    buffers: [&wgpu::Buffer; 3],
    shape: &Conv2dShape,
    epilogue: EpilogueArgs<'_>,
    tag: &str,
) -> Result<Dispatch> {
    let entry = pass.entry();
    shape.check(entry)?;
    let (x, w, y) = (shape.x_len(), shape.w_len(), shape.y_len());
    let lens = match pass {
        ConvPass::Forward => [("x", x), ("w", w), ("y", y)],
        ConvPass::GradInput => [("dy", y), ("w", w), ("dx", x)],
        ConvPass::GradWeight => [("x", x), ("dy", y), ("dw", w)],
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
        ConvPass::Forward => (shape.c_out, y / shape.c_out, WG * COLS),
        ConvPass::GradInput => (shape.c_in, x / shape.c_in, WG * COLS),
        ConvPass::GradWeight => (shape.c_out, k_taps, COLS),
    };
    let tm = tm.unwrap_or_else(|| crate::tune::conv_tm(gpu, pass, shape));
    let [gx, gy, _] = grid_1d((cols as u32).div_ceil(cols_per_group), limit);
    let workgroups = [gx, gy, (rows as u32).div_ceil(tm)];
    let e = epilogue.epilogue();
    if let Some(bias) = epilogue.bias {
        check_buffer(entry, "bias", bias, shape.c_out, &described)?;
    }
    let cost = match pass {
        ConvPass::Forward => Kernel::Conv2d {
            shape: *shape,
            epilogue: e,
        },
        ConvPass::GradInput => Kernel::Conv2dGradInput(*shape),
        ConvPass::GradWeight => Kernel::Conv2dGradWeight(*shape),
    }
    .cost();
    let mut overrides = vec![("TM", tm as f64)];
    let mut bound = buffers.to_vec();
    // Only the forward has an epilogue (and the bias binding).
    if pass == ConvPass::Forward {
        overrides.extend(epilogue.overrides());
        bound.push(epilogue.bias_or(buffers[0]));
    }
    gpu.prepare(Launch {
        shader: Shader::Conv2d,
        entry,
        overrides: &overrides,
        params: &params(shape),
        buffers: &bound,
        workgroups,
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
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
    launch(
        gpu,
        ConvPass::Forward,
        None,
        [x, w, y],
        shape,
        EpilogueArgs::NONE,
        tag,
    )
}

/// y = epilogue(conv2d(x, w)), the bias one value per output channel: the planner's fused
/// convolution, one dispatch.
/// `x: [N, C, H, W]`, `w: [O, C, KH, KW]`, `bias: [O]` → `y: [N, O, OH, OW]`.
pub fn conv2d_forward_epilogue(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    y: &wgpu::Buffer,
    shape: &Conv2dShape,
    epilogue: EpilogueArgs<'_>,
    tag: &str,
) -> Result<Dispatch> {
    launch(
        gpu,
        ConvPass::Forward,
        None,
        [x, w, y],
        shape,
        epilogue,
        tag,
    )
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
    launch(
        gpu,
        ConvPass::GradInput,
        None,
        [dy, w, dx],
        shape,
        EpilogueArgs::NONE,
        tag,
    )
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
    launch(
        gpu,
        ConvPass::GradWeight,
        None,
        [x, dy, dw],
        shape,
        EpilogueArgs::NONE,
        tag,
    )
}

/// The three passes with every `TM` [`rows_per_invocation`] picks, the forward with every
/// epilogue (see [`super::specializations`]).
pub(crate) fn specializations() -> Vec<EntrySpecializations> {
    let tms = || (1..=17).map(rows_per_invocation);
    let forward = tms().flat_map(|tm| {
        every_epilogue().map(move |e| {
            let mut overrides = vec![("TM", tm as f64)];
            overrides.extend(epilogue_overrides(e));
            overrides
        })
    });
    let mut out = vec![EntrySpecializations::from_launches(
        Shader::Conv2d,
        "conv2d_forward",
        forward,
    )];
    for entry in ["conv2d_grad_input", "conv2d_grad_weight"] {
        let launches = tms().map(|tm| vec![("TM", tm as f64)]);
        out.push(EntrySpecializations::from_launches(
            Shader::Conv2d,
            entry,
            launches,
        ));
    }
    out
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
