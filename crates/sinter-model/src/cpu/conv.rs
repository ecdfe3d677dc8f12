//! CPU 2-D convolution (NCHW, no groups; bias and activation only as a fused epilogue): forward, input gradient and weight gradient as
//! im2col + GEMM (the `gemm` crate) and col2im, parallel over the batch. The CPU backend trains with these.

use super::elementwise::{epilogue_row, RowBias};
use super::Real;
use gemm::Parallelism;
use rayon::prelude::*;
use sinter_ops::conv::Conv2dShape;

/// Panics, naming the op and the shapes, when a shape is invalid or a slice is shorter than the
/// shape needs: callers check shapes when the graph is built, so reaching here with a bad one is a
/// bug. Longer slices are fine (the kernels use their prefix, like the pooled GPU buffers).
pub(crate) fn check_lens(
    op: &str,
    shape: Result<(), sinter_ops::ShapeError>,
    described: &str,
    lens: &[(&str, usize, usize)],
) {
    if let Err(e) = shape {
        panic!("{e}");
    }
    for &(name, got, want) in lens {
        assert!(
            got >= want,
            "{op}: {name} has {got} elements but the shape needs {want} ({described})"
        );
    }
}

/// The checked sizes of one convolution, per image.
#[derive(Clone, Copy)]
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
}

impl Geometry {
    /// Checks the shape and the three slice lengths (x, w, y in the forward roles).
    fn new(op: &str, s: &Conv2dShape, lens: [(&str, usize); 3]) -> Self {
        let want = [s.x_len(), s.w_len(), s.y_len()];
        let lens: Vec<_> = lens
            .iter()
            .zip(want)
            .map(|(&(n, got), want)| (n, got, want))
            .collect();
        check_lens(op, s.check(op), &s.describe(), &lens);
        let [oh, ow] = s.out_hw().expect("checked shape");
        Self {
            c: s.c_in,
            h: s.h,
            w: s.w,
            o: s.c_out,
            kh: s.kh,
            kw: s.kw,
            oh,
            ow,
            stride: s.stride,
            pad: s.pad,
            dilation: s.dilation,
        }
    }

    /// Rows of the im2col matrix: C·KH·KW.
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Columns of the im2col matrix: OH·OW.
    fn p(&self) -> usize {
        self.oh * self.ow
    }

    fn x_img(&self) -> usize {
        self.c * self.h * self.w
    }

    fn y_img(&self) -> usize {
        self.o * self.p()
    }

    /// A 1×1, stride-1, unpadded convolution's im2col matrix is the image itself.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == [1, 1] && self.pad == [0, 0]
    }

    /// For tap `kx`, the output columns [lo, hi) whose input column ox·sw − pw + kx·dw lies in
    /// [0, W), and that input column's offset (−pw + kx·dw).
    fn valid_cols(&self, kx: usize) -> (usize, usize, isize) {
        valid_range(
            kx * self.dilation[1],
            self.pad[1],
            self.stride[1],
            self.w,
            self.ow,
        )
    }

    /// Likewise for tap `ky`: the output rows whose input row is not padding, and its offset.
    fn valid_rows(&self, ky: usize) -> (usize, usize, isize) {
        valid_range(
            ky * self.dilation[0],
            self.pad[0],
            self.stride[0],
            self.h,
            self.oh,
        )
    }

    /// With stride 1 and OW = W ("same" width, like the default model's layers), one tap's im2col
    /// row is a single shifted copy of the input plane, apart from the columns that wrap around
    /// an edge, so it can be copied in one piece instead of OH pieces.
    fn rows_are_contiguous(&self) -> bool {
        self.stride == [1, 1] && self.ow == self.w
    }
}

/// The outputs [lo, hi) (of `out`) at which input index o·stride + tap − pad lies in [0, size),
/// and the offset tap − pad.
fn valid_range(
    tap: usize,
    pad: usize,
    stride: usize,
    size: usize,
    out: usize,
) -> (usize, usize, isize) {
    let off = tap as isize - pad as isize;
    let s = stride as isize;
    let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
    let room = size as isize - off;
    let hi = if room <= 0 { 0 } else { (room + s - 1) / s };
    let hi = (hi as usize).min(out);
    ((lo as usize).min(hi), hi, off)
}

/// One tap's row of the im2col matrix when `rows_are_contiguous`: row[q] = plane[q + shift] for q
/// in [a, b), and zero elsewhere and in the wrapped columns outside [lo, hi) of every output row.
struct Span {
    a: usize,
    b: usize,
    shift: isize,
    /// Valid output rows.
    rows: (usize, usize),
    /// Valid output columns.
    cols: (usize, usize),
}

impl Span {
    fn of(g: &Geometry, ky: usize, kx: usize) -> Option<Self> {
        let (ylo, yhi, offy) = g.valid_rows(ky);
        let (lo, hi, offx) = g.valid_cols(kx);
        if ylo >= yhi || lo >= hi {
            return None;
        }
        let shift = offy * g.w as isize + offx;
        // Only the wrapped columns of the first and last valid rows can fall outside the plane.
        let a = ((ylo * g.ow) as isize).max(-shift) as usize;
        let b = ((yhi * g.ow) as isize).min((g.h * g.w) as isize - shift) as usize;
        Some(Self {
            a,
            b: b.max(a),
            shift,
            rows: (ylo, yhi),
            cols: (lo, hi),
        })
    }

    fn source(&self) -> std::ops::Range<usize> {
        (self.a as isize + self.shift) as usize..(self.b as isize + self.shift) as usize
    }

    /// Zeroes the wrapped columns of the valid rows of `row`.
    fn clear_wrapped<T: Real>(&self, row: &mut [T], ow: usize) {
        let (lo, hi) = self.cols;
        if lo == 0 && hi == ow {
            return;
        }
        for out in row[self.rows.0 * ow..self.rows.1 * ow].chunks_exact_mut(ow) {
            out[..lo].fill(T::zero());
            out[hi..].fill(T::zero());
        }
    }
}

/// col: [C·KH·KW, OH·OW] ← the receptive fields of one image x: [C, H, W] (zeros for padding).
fn im2col<T: Real>(g: &Geometry, x: &[T], col: &mut [T]) {
    let (p, hw) = (g.p(), g.h * g.w);
    let mut rows = col.chunks_exact_mut(p);
    for plane in x.chunks_exact(hw) {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = rows.next().expect("col has C·KH·KW rows");
                if g.rows_are_contiguous() {
                    let Some(span) = Span::of(g, ky, kx) else {
                        row.fill(T::zero());
                        continue;
                    };
                    row[..span.a].fill(T::zero());
                    row[span.b..].fill(T::zero());
                    row[span.a..span.b].copy_from_slice(&plane[span.source()]);
                    span.clear_wrapped(row, g.ow);
                    continue;
                }
                let (lo, hi, off) = g.valid_cols(kx);
                let (ylo, yhi, offy) = g.valid_rows(ky);
                for (oy, out) in row.chunks_exact_mut(g.ow).enumerate() {
                    if lo >= hi || oy < ylo || oy >= yhi {
                        out.fill(T::zero());
                        continue;
                    }
                    let ih = (oy * g.stride[0]) as isize + offy;
                    out[..lo].fill(T::zero());
                    out[hi..].fill(T::zero());
                    let src = &plane[ih as usize * g.w..(ih as usize + 1) * g.w];
                    let first = (lo as isize * g.stride[1] as isize + off) as usize;
                    if g.stride[1] == 1 {
                        out[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
                    } else {
                        let taps = src[first..].iter().step_by(g.stride[1]);
                        for (v, &s) in out[lo..hi].iter_mut().zip(taps) {
                            *v = s;
                        }
                    }
                }
            }
        }
    }
}

/// dx: [C, H, W] += col2im(dcol), the adjoint of `im2col`: every tap adds back to the pixel it
/// read. dcol is scratch: its entries for padding taps may be zeroed on the way.
fn col2im<T: Real>(g: &Geometry, dcol: &mut [T], dx: &mut [T]) {
    let (p, hw) = (g.p(), g.h * g.w);
    let mut rows = dcol.chunks_exact_mut(p);
    for plane in dx.chunks_exact_mut(hw) {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = rows.next().expect("dcol has C·KH·KW rows");
                if g.rows_are_contiguous() {
                    let Some(span) = Span::of(g, ky, kx) else {
                        continue;
                    };
                    span.clear_wrapped(row, g.ow);
                    for (d, &s) in plane[span.source()].iter_mut().zip(&row[span.a..span.b]) {
                        *d += s;
                    }
                    continue;
                }
                let (lo, hi, off) = g.valid_cols(kx);
                let (ylo, yhi, offy) = g.valid_rows(ky);
                if lo >= hi {
                    continue;
                }
                for oy in ylo..yhi {
                    let src = &row[oy * g.ow..(oy + 1) * g.ow];
                    let ih = ((oy * g.stride[0]) as isize + offy) as usize;
                    let dst = &mut plane[ih * g.w..(ih + 1) * g.w];
                    let first = (lo as isize * g.stride[1] as isize + off) as usize;
                    let taps = dst[first..].iter_mut().step_by(g.stride[1]);
                    for (d, &s) in taps.zip(&src[lo..hi]) {
                        *d += s;
                    }
                }
            }
        }
    }
}

/// A row-major matrix view: element (i, j) is at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
struct View<'a, T> {
    data: &'a [T],
    rs: usize,
    cs: usize,
}

impl<'a, T> View<'a, T> {
    fn rows(data: &'a [T], cols: usize) -> Self {
        Self {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    fn transposed(data: &'a [T], cols: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: cols,
        }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// dst: [m, n] (row-major, contiguous) = (dst if `accumulate`, else 0) + lhs: [m, k] · rhs: [k, n].
#[allow(clippy::too_many_arguments)]
fn matmul<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    accumulate: bool,
    lhs: View<'_, T>,
    rhs: View<'_, T>,
    parallelism: Parallelism,
) {
    assert!(
        dst.len() >= m * n,
        "matmul: dst holds {} < {m}×{n}",
        dst.len()
    );
    assert!(
        lhs.fits(m, k) && rhs.fits(k, n),
        "matmul: operand out of bounds"
    );
    // SAFETY: the asserts above keep every index gemm forms inside the three slices, and dst is
    // borrowed mutably, so it cannot alias lhs or rhs. T is f32 or f64, which gemm supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// How to spread a batch of `n` images over the thread pool: one image per task when there are
/// enough images, otherwise sequential images with a multi-threaded GEMM each.
fn spread(n: usize) -> (bool, Parallelism) {
    let threads = rayon::current_num_threads();
    if threads > 1 && n >= threads {
        (true, Parallelism::None)
    } else if threads > 1 {
        (false, Parallelism::Rayon(threads))
    } else {
        (false, Parallelism::None)
    }
}

/// y = conv2d(x, w). Panics with the shapes when the shape is invalid or a slice is too short. x: [N, C, H, W], w: [O, C, KH, KW] → y: [N, O, OH, OW] (overwritten).
pub fn conv2d_forward<T: Real>(x: &[T], w: &[T], y: &mut [T], s: &Conv2dShape) {
    conv2d_forward_epilogue(x, w, None, None, y, s)
}

/// y = activation(conv2d(x, w) + bias), the bias one value per output channel and both optional:
/// the planner's fused convolution (`fuse.rs`), the epilogue applied to each image while its
/// output is still in cache. `x: [N, C, H, W]`, `w: [O, C, KH, KW]`,
/// `bias: [O]` → `y: [N, O, OH, OW]`.
pub fn conv2d_forward_epilogue<T: Real>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    activation: Option<sinter_ops::elementwise::UnaryOp>,
    y: &mut [T],
    s: &Conv2dShape,
) {
    let g = Geometry::new(
        "conv2d_forward",
        s,
        [("x", x.len()), ("w", w.len()), ("y", y.len())],
    );
    if let Some(b) = bias {
        assert!(
            b.len() >= g.o,
            "conv2d_forward: {} bias values for {} channels",
            b.len(),
            g.o
        );
    }
    let y = &mut y[..s.y_len()];
    let (k, p) = (g.k(), g.p());
    // y_n: [O, P] = w: [O, K] · col_n: [K, P]
    let image = |col: &mut Vec<T>, n: usize, yn: &mut [T], par: Parallelism| {
        let xn = &x[n * g.x_img()..(n + 1) * g.x_img()];
        let col = if g.is_pointwise() {
            xn
        } else {
            col.resize(k * p, T::zero());
            im2col(&g, xn, col);
            col
        };
        let (w, col) = (View::rows(w, k), View::rows(col, p));
        matmul(g.o, p, k, yn, false, w, col, par);
        if bias.is_some() || activation.is_some() {
            for (o, row) in yn.chunks_exact_mut(p).enumerate() {
                let b = bias.map_or(RowBias::None, |b| RowBias::Scalar(b[o]));
                epilogue_row(row, b, activation);
            }
        }
    };
    match spread(s.n) {
        (true, par) => y
            .par_chunks_mut(g.y_img())
            .enumerate()
            .for_each_init(Vec::new, |col, (n, yn)| image(col, n, yn, par)),
        (false, par) => {
            let mut col = Vec::new();
            for (n, yn) in y.chunks_mut(g.y_img()).enumerate() {
                image(&mut col, n, yn, par);
            }
        }
    }
}

/// dx = ∂L/∂x given dy. dy: [N, O, OH, OW], w: [O, C, KH, KW] → dx: [N, C, H, W] (overwritten).
pub fn conv2d_grad_input<T: Real>(dy: &[T], w: &[T], dx: &mut [T], s: &Conv2dShape) {
    let g = Geometry::new(
        "conv2d_grad_input",
        s,
        [("dx", dx.len()), ("w", w.len()), ("dy", dy.len())],
    );
    let dx = &mut dx[..s.x_len()];
    let (k, p) = (g.k(), g.p());
    // dcol_n: [K, P] = wᵀ: [K, O] · dy_n: [O, P], then dx_n = col2im(dcol_n)
    let image = |dcol: &mut Vec<T>, n: usize, dxn: &mut [T], par: Parallelism| {
        let dyn_ = View::rows(&dy[n * g.y_img()..(n + 1) * g.y_img()], p);
        let wt = View::transposed(w, k);
        if g.is_pointwise() {
            matmul(k, p, g.o, dxn, false, wt, dyn_, par);
            return;
        }
        dcol.resize(k * p, T::zero());
        matmul(k, p, g.o, dcol, false, wt, dyn_, par);
        dxn.fill(T::zero());
        col2im(&g, dcol, dxn);
    };
    match spread(s.n) {
        (true, par) => dx
            .par_chunks_mut(g.x_img())
            .enumerate()
            .for_each_init(Vec::new, |dcol, (n, dxn)| image(dcol, n, dxn, par)),
        (false, par) => {
            let mut dcol = Vec::new();
            for (n, dxn) in dx.chunks_mut(g.x_img()).enumerate() {
                image(&mut dcol, n, dxn, par);
            }
        }
    }
}

/// Images summed into one partial weight gradient by `conv2d_grad_weight`. A fixed count (not one
/// per thread) fixes the order of the sum, so equal inputs give bit-identical gradients.
const GRAD_WEIGHT_GROUP: usize = 4;

/// dw = ∂L/∂w given dy. x: [N, C, H, W], dy: [N, O, OH, OW] → dw: [O, C, KH, KW] (overwritten).
pub fn conv2d_grad_weight<T: Real>(x: &[T], dy: &[T], dw: &mut [T], s: &Conv2dShape) {
    let g = Geometry::new(
        "conv2d_grad_weight",
        s,
        [("x", x.len()), ("dw", dw.len()), ("dy", dy.len())],
    );
    let dw = &mut dw[..s.w_len()];
    let (k, p) = (g.k(), g.p());
    // dw: [O, K] = Σ_n dy_n: [O, P] · col_nᵀ: [P, K]
    let image = |col: &mut Vec<T>, n: usize, acc: &mut [T], first: bool, par: Parallelism| {
        let xn = &x[n * g.x_img()..(n + 1) * g.x_img()];
        let col = if g.is_pointwise() {
            xn
        } else {
            col.resize(k * p, T::zero());
            im2col(&g, xn, col);
            col
        };
        let dyn_ = View::rows(&dy[n * g.y_img()..(n + 1) * g.y_img()], p);
        matmul(g.o, k, p, acc, !first, dyn_, View::transposed(col, p), par);
    };
    // Images are summed in fixed groups, each into its own partial, and the partials are added
    // to dw in group order: the rounding is then the same whichever thread ran which group
    // (a rayon `fold` splits where work stealing happens to, so its sums differ run to run).
    let groups = s.n.div_ceil(GRAD_WEIGHT_GROUP);
    let threads = rayon::current_num_threads();
    let (wave, par) = if threads > 1 && groups >= threads {
        (2 * threads, Parallelism::None)
    } else if threads > 1 {
        (1, Parallelism::Rayon(threads))
    } else {
        (1, Parallelism::None)
    };
    let group = |gi: usize, acc: &mut [T], col: &mut Vec<T>| {
        let first = gi * GRAD_WEIGHT_GROUP;
        for n in first..s.n.min(first + GRAD_WEIGHT_GROUP) {
            image(col, n, acc, n == first, par);
        }
    };
    if groups <= 1 {
        group(0, dw, &mut Vec::new());
        return;
    }
    let mut partials: Vec<(Vec<T>, Vec<T>)> = (0..wave.min(groups))
        .map(|_| (vec![T::zero(); g.o * k], Vec::new()))
        .collect();
    dw.fill(T::zero());
    for start in (0..groups).step_by(wave) {
        let count = wave.min(groups - start);
        let run = |(i, (acc, col)): (usize, &mut (Vec<T>, Vec<T>))| group(start + i, acc, col);
        if count > 1 {
            partials[..count].par_iter_mut().enumerate().for_each(run);
        } else {
            partials[..count].iter_mut().enumerate().for_each(run);
        }
        for (acc, _) in &partials[..count] {
            dw.iter_mut().zip(acc).for_each(|(d, &a)| *d += a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The weight gradient sums over images in a fixed order: repeated runs on a pool of several
    /// threads (where work stealing differs run to run) agree bit for bit.
    #[test]
    fn weight_gradient_is_bit_identical_across_runs() {
        let s = Conv2dShape {
            n: 37,
            c_in: 3,
            h: 9,
            w: 9,
            c_out: 5,
            kh: 3,
            kw: 3,
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
        };
        let x: Vec<f32> = (0..s.x_len())
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let dy: Vec<f32> = (0..s.y_len())
            .map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.021)
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let grad = || {
            let mut dw = vec![0.0f32; s.w_len()];
            pool.install(|| conv2d_grad_weight(&x, &dy, &mut dw, &s));
            dw
        };
        let first = grad();
        for _ in 0..20 {
            assert!(grad() == first, "the weight gradient changed between runs");
        }
        // One thread sums the same groups in the same order.
        let mut serial = vec![0.0f32; s.w_len()];
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| conv2d_grad_weight(&x, &dy, &mut serial, &s));
        assert!(serial == first, "one thread and four threads differ");
    }

    /// The definition, summed directly in f64: y[n,o,oy,ox] = Σ x[n,c,oy·sh−ph+ky·dh, ox·sw−pw+kx·dw] · w[o,c,ky,kx].
    fn direct(x: &[f64], w: &[f64], s: &Conv2dShape) -> Vec<f64> {
        let [oh, ow] = s.out_hw().unwrap();
        let mut y = vec![0.0; s.y_len()];
        for n in 0..s.n {
            for o in 0..s.c_out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0.0;
                        for c in 0..s.c_in {
                            for ky in 0..s.kh {
                                for kx in 0..s.kw {
                                    let ih = (oy * s.stride[0] + ky * s.dilation[0]) as isize
                                        - s.pad[0] as isize;
                                    let iw = (ox * s.stride[1] + kx * s.dilation[1]) as isize
                                        - s.pad[1] as isize;
                                    if ih < 0 || iw < 0 || ih >= s.h as isize || iw >= s.w as isize
                                    {
                                        continue;
                                    }
                                    let xi =
                                        ((n * s.c_in + c) * s.h + ih as usize) * s.w + iw as usize;
                                    acc += x[xi] * w[((o * s.c_in + c) * s.kh + ky) * s.kw + kx];
                                }
                            }
                        }
                        y[((n * s.c_out + o) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn forward_matches_definition_on_a_small_case() {
        let s = Conv2dShape {
            n: 2,
            c_in: 2,
            h: 5,
            w: 6,
            c_out: 3,
            kh: 2,
            kw: 3,
            stride: [2, 1],
            pad: [1, 2],
            dilation: [2, 1],
        };
        let x: Vec<f64> = (0..s.x_len()).map(|i| (i as f64 * 0.37).sin()).collect();
        let w: Vec<f64> = (0..s.w_len()).map(|i| (i as f64 * 0.91).cos()).collect();
        let mut y = vec![0.0; s.y_len()];
        conv2d_forward(&x, &w, &mut y, &s);
        for (i, (a, b)) in y.iter().zip(direct(&x, &w, &s)).enumerate() {
            assert!((a - b).abs() < 1e-12, "index {i}: {a} vs {b}");
        }
    }
}
