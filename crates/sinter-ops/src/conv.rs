//! 2-D convolution (NCHW, no groups, PyTorch semantics): the shape of one convolution, its output
//! size and its checks. Bias is not part of it: it is an epilogue or a broadcast add.

use crate::error::ShapeError;

/// The shape of one 2-D convolution. Bias is not part of it: it is a separate broadcast add.
///
/// x: [N, C, H, W], w: [O, C, KH, KW], y: [N, O, OH, OW] with
/// OH = (H + 2·ph − dh·(KH − 1) − 1) / sh + 1 (and likewise OW).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dShape {
    /// N: batch size.
    pub n: usize,
    /// C: input channels (also the weight's second axis).
    pub c_in: usize,
    /// H: input height.
    pub h: usize,
    /// W: input width.
    pub w: usize,
    /// O: output channels (the weight's first axis).
    pub c_out: usize,
    /// KH: kernel height.
    pub kh: usize,
    /// KW: kernel width.
    pub kw: usize,
    /// `[sh, sw]`: steps between consecutive outputs, in input pixels.
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
    pub fn check(&self, op: &str) -> Result<(), ShapeError> {
        let bad = |why: String| Err(ShapeError::new(op, format!("{why} ({})", self.describe())));
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
}
