//! CPU 2-D max and average pooling (NCHW, PyTorch semantics, floor mode) and their gradients,
//! parallel over the N·C planes. The CPU backend trains with these; the WGSL is tested against them.

use super::conv::check_lens;
use super::elementwise::unary_deriv;
use super::Real;
use rayon::prelude::*;
use sinter_ops::elementwise::UnaryOp;
use sinter_ops::pool::Pool2dShape;

/// Checked sizes of one pooling, per plane.
#[derive(Clone, Copy)]
struct Geometry {
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    stride: [usize; 2],
    pad: [usize; 2],
}

impl Geometry {
    /// Checks the shape and slice lengths; `lens` are (name, length, is-input-sized).
    fn new(op: &str, s: &Pool2dShape, lens: &[(&str, usize, bool)]) -> Self {
        let lens: Vec<_> = lens
            .iter()
            .map(|&(n, got, input)| (n, got, if input { s.x_len() } else { s.y_len() }))
            .collect();
        check_lens(op, s.check(op), &s.describe(), &lens);
        let [oh, ow] = s.out_hw().expect("checked shape");
        Self {
            h: s.h,
            w: s.w,
            kh: s.kh,
            kw: s.kw,
            oh,
            ow,
            stride: s.stride,
            pad: s.pad,
        }
    }

    /// The common 2×2 window with stride 2 and no padding, which has a fast path.
    fn is_2x2(&self) -> bool {
        self.kh == 2 && self.kw == 2 && self.stride == [2, 2] && self.pad == [0, 0]
    }

    /// Input rows 2·oy and 2·oy + 1 of a plane (2×2 windows).
    #[inline]
    fn row_pair<'a, T>(&self, plane: &'a [T], oy: usize) -> (&'a [T], &'a [T]) {
        let r0 = 2 * oy * self.w;
        (
            &plane[r0..r0 + self.w],
            &plane[r0 + self.w..r0 + 2 * self.w],
        )
    }

    fn x_plane(&self) -> usize {
        self.h * self.w
    }

    fn y_plane(&self) -> usize {
        self.oh * self.ow
    }

    /// The input rows [lo, hi) of window row `oy` that are not padding, and likewise columns.
    fn rows(&self, oy: usize) -> (usize, usize) {
        clip(oy * self.stride[0], self.pad[0], self.kh, self.h)
    }

    fn cols(&self, ox: usize) -> (usize, usize) {
        clip(ox * self.stride[1], self.pad[1], self.kw, self.w)
    }

    /// The flat index in its plane of the first maximum of window (oy, ox); padding is −∞, and
    /// ties go to the first maximum in row-major window order.
    #[inline]
    fn argmax<T: Real>(&self, plane: &[T], oy: usize, ox: usize) -> usize {
        if self.pad == [0, 0] {
            // Without padding every window lies inside the plane (floor mode): no clipping.
            let (r0, c0) = (oy * self.stride[0], ox * self.stride[1]);
            let mut arg = r0 * self.w + c0;
            let mut best = plane[arg];
            for r in r0..r0 + self.kh {
                let row = &plane[r * self.w + c0..r * self.w + c0 + self.kw];
                for (c, &v) in row.iter().enumerate() {
                    if v > best {
                        best = v;
                        arg = r * self.w + c0 + c;
                    }
                }
            }
            return arg;
        }
        let ((r0, r1), (c0, c1)) = (self.rows(oy), self.cols(ox));
        let mut arg = r0 * self.w + c0;
        for r in r0..r1 {
            for c in c0..c1 {
                let i = r * self.w + c;
                if plane[i] > plane[arg] {
                    arg = i;
                }
            }
        }
        arg
    }
}

/// Planes handed to one rayon task: a 28×28 plane alone is too little work to be worth a task.
const PLANES_PER_TASK: usize = 8;

/// Which of the 2×2 window at column `c` of rows `r0`, `r1` is its first maximum, in row-major
/// order (0 = top left … 3 = bottom right), with the same comparisons as the general path.
#[inline]
fn first_max4<T: Real>(r0: &[T], r1: &[T], c: usize) -> usize {
    let mut arg = 0;
    let mut best = r0[c];
    for (k, v) in [r0[c + 1], r1[c], r1[c + 1]].into_iter().enumerate() {
        if v > best {
            best = v;
            arg = k + 1;
        }
    }
    arg
}

/// The window [start − pad, start − pad + k) clipped to [0, size).
fn clip(start: usize, pad: usize, k: usize, size: usize) -> (usize, usize) {
    let lo = start.saturating_sub(pad);
    let hi = (start + k).saturating_sub(pad).min(size);
    (lo, hi.max(lo))
}

/// Each function panics with the shapes when the shape is invalid or a slice is too short
/// (callers check shapes when the graph is built); longer slices are used up to the shape's length.
///
/// y = max over each window of x. x: [N, C, H, W] → y: [N, C, OH, OW].
pub fn max_pool2d<T: Real>(x: &[T], y: &mut [T], s: &Pool2dShape) {
    let g = Geometry::new(
        "max_pool2d",
        s,
        &[("x", x.len(), true), ("y", y.len(), false)],
    );
    let (x, y) = (&x[..s.x_len()], &mut y[..s.y_len()]);
    y.par_chunks_mut(g.y_plane())
        .zip(x.par_chunks(g.x_plane()))
        .with_min_len(PLANES_PER_TASK)
        .for_each(|(y, x)| {
            if g.is_2x2() {
                for (oy, y_row) in y.chunks_exact_mut(g.ow).enumerate() {
                    let (r0, r1) = g.row_pair(x, oy);
                    for (ox, v) in y_row.iter_mut().enumerate() {
                        let c = 2 * ox;
                        *v = [r0[c], r0[c + 1], r1[c], r1[c + 1]][first_max4(r0, r1, c)];
                    }
                }
                return;
            }
            for (oy, y_row) in y.chunks_exact_mut(g.ow).enumerate() {
                for (ox, v) in y_row.iter_mut().enumerate() {
                    *v = x[g.argmax(x, oy, ox)];
                }
            }
        });
}

/// dx = ∂L/∂x of max pooling: each window's dy goes to its first maximum in x (recomputed).
/// x: [N, C, H, W], dy: [N, C, OH, OW] → dx: [N, C, H, W] (overwritten).
pub fn max_pool2d_grad<T: Real>(x: &[T], dy: &[T], dx: &mut [T], s: &Pool2dShape) {
    max_pool2d_grad_relu(x, dy, dx, s, false)
}

/// [`max_pool2d_grad`], followed when `relu_mask` by the gradient of the ReLU that produced `x`
/// (`dx · relu'(x)`): the planner's fused form, one pass instead of two.
pub fn max_pool2d_grad_relu<T: Real>(
    x: &[T],
    dy: &[T],
    dx: &mut [T],
    s: &Pool2dShape,
    relu_mask: bool,
) {
    let g = Geometry::new(
        "max_pool2d_grad",
        s,
        &[
            ("x", x.len(), true),
            ("dy", dy.len(), false),
            ("dx", dx.len(), true),
        ],
    );
    let (x, dy, dx) = (&x[..s.x_len()], &dy[..s.y_len()], &mut dx[..s.x_len()]);
    let mask = |d: T, v: T| {
        if relu_mask {
            d * unary_deriv(UnaryOp::Relu, v)
        } else {
            d
        }
    };
    dx.par_chunks_mut(g.x_plane())
        .zip(x.par_chunks(g.x_plane()))
        .zip(dy.par_chunks(g.y_plane()))
        .with_min_len(PLANES_PER_TASK)
        .for_each(|((dx, x), dy)| {
            if g.is_2x2() {
                // Every element of a window is written once (zero, or dy at the first maximum);
                // rows and columns no window covers (odd sizes) are zeroed.
                dx[2 * g.oh * g.w..].fill(T::zero());
                for (oy, dy_row) in dy.chunks_exact(g.ow).enumerate() {
                    let (r0, r1) = g.row_pair(x, oy);
                    let (d0, d1) = dx[2 * oy * g.w..(2 * oy + 2) * g.w].split_at_mut(g.w);
                    d0[2 * g.ow..].fill(T::zero());
                    d1[2 * g.ow..].fill(T::zero());
                    for (ox, &d) in dy_row.iter().enumerate() {
                        let c = 2 * ox;
                        let arg = first_max4(r0, r1, c);
                        let v = [r0[c], r0[c + 1], r1[c], r1[c + 1]][arg];
                        let mut out = [T::zero(); 4];
                        out[arg] = mask(d, v);
                        d0[c] = out[0];
                        d0[c + 1] = out[1];
                        d1[c] = out[2];
                        d1[c + 1] = out[3];
                    }
                }
                return;
            }
            dx.fill(T::zero());
            for (oy, dy_row) in dy.chunks_exact(g.ow).enumerate() {
                for (ox, &d) in dy_row.iter().enumerate() {
                    let arg = g.argmax(x, oy, ox);
                    dx[arg] += mask(d, x[arg]);
                }
            }
        });
}

/// y = mean over each window of x, padding counted as zeros (divides by KH·KW).
/// x: [N, C, H, W] → y: [N, C, OH, OW].
pub fn avg_pool2d<T: Real>(x: &[T], y: &mut [T], s: &Pool2dShape) {
    let g = Geometry::new(
        "avg_pool2d",
        s,
        &[("x", x.len(), true), ("y", y.len(), false)],
    );
    let scale = T::one() / T::of((g.kh * g.kw) as f64);
    let (x, y) = (&x[..s.x_len()], &mut y[..s.y_len()]);
    y.par_chunks_mut(g.y_plane())
        .zip(x.par_chunks(g.x_plane()))
        .for_each(|(y, x)| {
            for (i, v) in y.iter_mut().enumerate() {
                let ((r0, r1), (c0, c1)) = (g.rows(i / g.ow), g.cols(i % g.ow));
                let mut sum = T::zero();
                for r in r0..r1 {
                    sum += x[r * g.w + c0..r * g.w + c1].iter().copied().sum::<T>();
                }
                *v = sum * scale;
            }
        });
}

/// dx = ∂L/∂x of average pooling: each window spreads dy / (KH·KW) over its elements.
/// dy: [N, C, OH, OW] → dx: [N, C, H, W] (overwritten).
pub fn avg_pool2d_grad<T: Real>(dy: &[T], dx: &mut [T], s: &Pool2dShape) {
    let g = Geometry::new(
        "avg_pool2d_grad",
        s,
        &[("dy", dy.len(), false), ("dx", dx.len(), true)],
    );
    let scale = T::one() / T::of((g.kh * g.kw) as f64);
    let (dy, dx) = (&dy[..s.y_len()], &mut dx[..s.x_len()]);
    dx.par_chunks_mut(g.x_plane())
        .zip(dy.par_chunks(g.y_plane()))
        .for_each(|(dx, dy)| {
            dx.fill(T::zero());
            for (i, &d) in dy.iter().enumerate() {
                let ((r0, r1), (c0, c1)) = (g.rows(i / g.ow), g.cols(i % g.ow));
                let d = d * scale;
                for r in r0..r1 {
                    for v in &mut dx[r * g.w + c0..r * g.w + c1] {
                        *v += d;
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(h: usize, w: usize) -> Pool2dShape {
        Pool2dShape {
            n: 1,
            c: 1,
            h,
            w,
            kh: 2,
            kw: 2,
            stride: [2, 2],
            pad: [0, 0],
        }
    }

    #[test]
    fn max_grad_goes_to_the_first_of_tied_maxima() {
        // One 2×2 window of equal values: only the top-left one gets the gradient.
        let s = shape(2, 2);
        let mut dx = vec![9.0; 4];
        max_pool2d_grad(&[1.0f64; 4], &[5.0], &mut dx, &s);
        assert_eq!(dx, [5.0, 0.0, 0.0, 0.0]);
        // A tie between the bottom two: the bottom-left (earlier in row-major order) wins.
        max_pool2d_grad(&[0.0f64, -1.0, 3.0, 3.0], &[2.0], &mut dx, &s);
        assert_eq!(dx, [0.0, 0.0, 2.0, 0.0]);
    }

    #[test]
    fn the_2x2_fast_path_matches_a_direct_computation() {
        // Odd sizes leave a row and a column outside every window; values from a small set make
        // ties common, and negative values exercise the ReLU mask.
        let s = Pool2dShape {
            n: 2,
            c: 3,
            ..shape(7, 5)
        };
        let x: Vec<f64> = (0..s.x_len())
            .map(|i| ((i * 7919) % 5) as f64 - 2.0)
            .collect();
        let dy: Vec<f64> = (0..s.y_len()).map(|i| i as f64 + 1.0).collect();
        let (mut y, mut dx, mut dx_relu) = (
            vec![0.0; s.y_len()],
            vec![9.0; s.x_len()],
            vec![9.0; s.x_len()],
        );
        max_pool2d(&x, &mut y, &s);
        max_pool2d_grad(&x, &dy, &mut dx, &s);
        max_pool2d_grad_relu(&x, &dy, &mut dx_relu, &s, true);
        let (mut want_dx, mut want_relu) = (vec![0.0; s.x_len()], vec![0.0; s.x_len()]);
        for plane in 0..s.n * s.c {
            for oy in 0..3 {
                for ox in 0..2 {
                    let at = |r: usize, c: usize| plane * 35 + (2 * oy + r) * 5 + 2 * ox + c;
                    let window = [at(0, 0), at(0, 1), at(1, 0), at(1, 1)];
                    let mut arg = window[0];
                    for &i in &window[1..] {
                        if x[i] > x[arg] {
                            arg = i;
                        }
                    }
                    let o = plane * 6 + oy * 2 + ox;
                    assert_eq!(y[o], x[arg], "y[{o}]");
                    want_dx[arg] = dy[o];
                    want_relu[arg] = if x[arg] > 0.0 { dy[o] } else { 0.0 };
                }
            }
        }
        assert_eq!(dx, want_dx);
        assert_eq!(dx_relu, want_relu);
    }

    #[test]
    fn padding_is_minus_infinity_for_max_and_zero_for_avg() {
        let s = Pool2dShape {
            kh: 3,
            kw: 3,
            stride: [2, 2],
            pad: [1, 1],
            ..shape(2, 2)
        };
        let x = [-4.0f64, -3.0, -2.0, -1.0];
        let mut y = vec![0.0; 1];
        max_pool2d(&x, &mut y, &s);
        assert_eq!(y, [-1.0]);
        avg_pool2d(&x, &mut y, &s);
        assert_eq!(y, [-10.0 / 9.0]);
    }
}
