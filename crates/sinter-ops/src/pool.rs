//! 2-D max and average pooling (NCHW, PyTorch semantics, floor mode): the shape of one pooling,
//! its output size and its checks.

use crate::error::ShapeError;

/// The shape of one 2-D pooling. x: [N, C, H, W] → y: [N, C, OH, OW] with
/// OH = (H + 2·ph − KH) / sh + 1 (floor mode, no dilation; likewise OW).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dShape {
    /// N: batch size.
    pub n: usize,
    /// C: channels (pooled independently).
    pub c: usize,
    /// H: input height.
    pub h: usize,
    /// W: input width.
    pub w: usize,
    /// KH: window height.
    pub kh: usize,
    /// KW: window width.
    pub kw: usize,
    /// `[sh, sw]`: steps between consecutive outputs, in input pixels.
    pub stride: [usize; 2],
    /// [ph, pw]: at most half the kernel, as in PyTorch, so every window holds a real element.
    pub pad: [usize; 2],
}

impl Pool2dShape {
    /// [OH, OW], or `None` when the window does not fit the padded input (or a kernel size or
    /// stride is zero).
    pub fn out_hw(&self) -> Option<[usize; 2]> {
        let dim = |size: usize, k: usize, s: usize, p: usize| {
            if k == 0 || s == 0 {
                return None;
            }
            (size + 2 * p).checked_sub(k).map(|room| room / s + 1)
        };
        Some([
            dim(self.h, self.kh, self.stride[0], self.pad[0])?,
            dim(self.w, self.kw, self.stride[1], self.pad[1])?,
        ])
    }

    /// The shapes in words, for error messages.
    pub fn describe(&self) -> String {
        format!(
            "x [N, C, H, W] = [{}, {}, {}, {}], kernel [{}, {}], stride {:?}, pad {:?}",
            self.n, self.c, self.h, self.w, self.kh, self.kw, self.stride, self.pad
        )
    }

    /// Refuses zero-sized dimensions, zero strides, padding over half the kernel and windows
    /// that do not fit, with an error naming `op` and the shapes.
    pub fn check(&self, op: &str) -> Result<(), ShapeError> {
        let bad = |why: &str| Err(ShapeError::new(op, format!("{why} ({})", self.describe())));
        if [self.n, self.c, self.h, self.w, self.kh, self.kw].contains(&0) {
            return bad("zero-sized dimension");
        }
        if self.stride.contains(&0) {
            return bad("stride must be at least 1");
        }
        if 2 * self.pad[0] > self.kh || 2 * self.pad[1] > self.kw {
            return bad("padding must be at most half the kernel");
        }
        if self.out_hw().is_none() {
            return bad("the kernel is larger than the padded input");
        }
        if self.x_len().max(self.y_len()) >= i32::MAX as usize || self.h.max(self.w) >= 1 << 30 {
            return bad("tensor too large for 32-bit indexing");
        }
        Ok(())
    }

    /// Elements of x (and dx): N·C·H·W.
    pub fn x_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }

    /// Elements of y (and dy): N·C·OH·OW (0 when the window does not fit).
    pub fn y_len(&self) -> usize {
        self.out_hw()
            .map_or(0, |[oh, ow]| self.n * self.c * oh * ow)
    }

    /// Windows do not overlap (stride ≥ kernel in both directions), so each input element lies in
    /// at most one window and the gradients can be written window by window.
    pub fn disjoint_windows(&self) -> bool {
        self.stride[0] >= self.kh && self.stride[1] >= self.kw
    }
}
