//! CPU matrix products: the CPU backend's GEMM and the reference the WGSL matmul kernels are tested
//! against. The `gemm` crate packs and vectorizes like a BLAS and reads transposes through strides.

use super::elementwise::{epilogue_row, RowBias};
use super::Real;
use gemm::Parallelism;
use rayon::prelude::*;
use sinter_ops::elementwise::UnaryOp;
use sinter_ops::matmul::MatmulShape;

/// Below this many multiply-adds a product runs on one thread: splitting it costs more than it saves.
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// C = op(A)·op(B) for every batch item, overwriting C (same semantics as the WGSL kernels).
///
/// Panics with the shape when it is invalid or a slice is too short: callers check shapes when
/// the graph is built, so reaching here with a bad one is a bug.
// a: [batch | 1, m, k] (stored [.., k, m] when trans_a), b: [batch | 1, k, n] (stored [.., n, k]
// when trans_b), c: [batch, m, n]
pub fn matmul<T: Real>(a: &[T], b: &[T], c: &mut [T], s: &MatmulShape) {
    if let Err(e) = s.check() {
        panic!("matmul: {e}");
    }
    assert!(
        a.len() >= s.a_len() && b.len() >= s.b_len() && c.len() >= s.c_len(),
        "matmul: {s}: slices hold a {}, b {}, c {} values but the shape needs {}, {}, {}",
        a.len(),
        b.len(),
        c.len(),
        s.a_len(),
        s.b_len(),
        s.c_len()
    );
    let macs = s.m * s.n * s.k;
    let c = &mut c[..s.c_len()];
    let item = |i: usize, ci: &mut [T], par: Parallelism| {
        let ai = &a[i * s.a_batch_stride..][..s.m * s.k];
        let bi = &b[i * s.b_batch_stride..][..s.k * s.n];
        gemm_one(ai, bi, ci, s, par);
    };
    if macs >= PARALLEL_MIN_MACS && (s.batch == 1 || macs >= 8 * PARALLEL_MIN_MACS) {
        // Large items: gemm splits each one over all threads.
        for (i, ci) in c.chunks_mut(s.m * s.n).enumerate() {
            item(i, ci, Parallelism::Rayon(0));
        }
    } else if s.batch > 1 && macs * s.batch >= PARALLEL_MIN_MACS {
        // Many small items: one thread per item.
        c.par_chunks_mut(s.m * s.n)
            .enumerate()
            .for_each(|(i, ci)| item(i, ci, Parallelism::None));
    } else {
        for (i, ci) in c.chunks_mut(s.m * s.n).enumerate() {
            item(i, ci, Parallelism::None);
        }
    }
}

/// C = activation(op(A)·op(B) + bias), the bias one value per column of C and both optional:
/// the planner's fused product (`fuse.rs`), the epilogue applied row by row as the product ends.
// a, b, c as in `matmul`; bias: [n]
pub fn matmul_epilogue<T: Real>(
    a: &[T],
    b: &[T],
    bias: Option<&[T]>,
    activation: Option<UnaryOp>,
    c: &mut [T],
    s: &MatmulShape,
) {
    matmul(a, b, c, s);
    if let Some(bias) = bias {
        assert!(
            bias.len() >= s.n,
            "matmul: {} bias values for {s}",
            bias.len()
        );
    }
    if bias.is_none() && activation.is_none() {
        return;
    }
    let c = &mut c[..s.c_len()];
    let bias = match bias {
        Some(b) => RowBias::PerElement(&b[..s.n]),
        None => RowBias::None,
    };
    let epilogue = |row: &mut [T]| epilogue_row(row, bias, activation);
    if c.len() >= 1 << 15 {
        c.par_chunks_mut(s.n).for_each(epilogue);
    } else {
        c.chunks_mut(s.n).for_each(epilogue);
    }
}

/// One [m, k]·[k, n] product into `c`, transposes read through strides (no copies).
fn gemm_one<T: Real>(a: &[T], b: &[T], c: &mut [T], s: &MatmulShape, par: Parallelism) {
    // Element strides (row, column) of op(A) and op(B) as they lie in memory.
    let (a_rs, a_cs) = if s.trans_a { (1, s.m) } else { (s.k, 1) };
    let (b_rs, b_cs) = if s.trans_b { (1, s.k) } else { (s.n, 1) };
    debug_assert!(a.len() >= s.m * s.k && b.len() >= s.k * s.n && c.len() >= s.m * s.n);
    // SAFETY: the slices hold m·k, k·n and m·n elements (checked by the caller), and every
    // (row, column) the strides reach lies inside them. `gemm` dispatches on the element type
    // and supports f32 and f64, the only `Real` types. With read_dst false C is only written;
    // it computes dst = alpha·dst + beta·lhs·rhs, so beta = 1 and alpha is unused.
    unsafe {
        gemm::gemm(
            s.m,
            s.n,
            s.k,
            c.as_mut_ptr(),
            1,
            s.n as isize,
            false,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            T::zero(),
            T::one(),
            false,
            false,
            false,
            par,
        );
    }
}

/// A matrix in memory: its first element and the element strides between rows and columns
/// (a transpose is the same memory with the strides swapped).
#[derive(Clone, Copy)]
pub(crate) struct Strided<'a, T> {
    pub data: &'a [T],
    pub row_stride: usize,
    pub col_stride: usize,
}

/// c = beta·a·b (or c += beta·a·b when `accumulate`) on one thread, for a [m, k] and b [k, n]
/// read through their strides and c [m, n] row-major: the small products of fused kernels
/// (attention's score tiles), which run inside a rayon task of their own.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_strided<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    a: Strided<T>,
    b: Strided<T>,
    c: &mut [T],
    beta: T,
    accumulate: bool,
) {
    let last = |x: &Strided<T>, rows: usize, cols: usize| {
        (rows - 1) * x.row_stride + (cols - 1) * x.col_stride
    };
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        c.len() >= m * n
            && (k == 0 || (a.data.len() > last(&a, m, k) && b.data.len() > last(&b, k, n))),
        "gemm_strided: [{m}, {k}]·[{k}, {n}] reaches past its slices"
    );
    // SAFETY: the assert above keeps every (row, column) the strides reach inside the slices;
    // `gemm` supports f32 and f64, the only `Real` types. It computes
    // dst = alpha·dst + beta·lhs·rhs, reading dst only when `accumulate`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            T::one(),
            beta,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product by its definition, in f64, for the checks below.
    fn naive(a: &[f64], b: &[f64], s: &MatmulShape) -> Vec<f64> {
        let mut c = vec![0.0; s.c_len()];
        for z in 0..s.batch {
            for i in 0..s.m {
                for j in 0..s.n {
                    let mut acc = 0.0;
                    for p in 0..s.k {
                        let av = if s.trans_a {
                            a[z * s.a_batch_stride + p * s.m + i]
                        } else {
                            a[z * s.a_batch_stride + i * s.k + p]
                        };
                        let bv = if s.trans_b {
                            b[z * s.b_batch_stride + j * s.k + p]
                        } else {
                            b[z * s.b_batch_stride + p * s.n + j]
                        };
                        acc += av * bv;
                    }
                    c[z * s.m * s.n + i * s.n + j] = acc;
                }
            }
        }
        c
    }

    #[test]
    fn f64_matches_definition_for_every_transpose_and_broadcast() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for bcast in 0..3 {
                let mut s = MatmulShape::new(3, 5, 7, 4).with_trans(ta, tb);
                if bcast == 1 {
                    s = s.broadcast_a();
                } else if bcast == 2 {
                    s = s.broadcast_b();
                }
                let a: Vec<f64> = (0..s.a_len()).map(|i| (i as f64 * 0.37).sin()).collect();
                let b: Vec<f64> = (0..s.b_len()).map(|i| (i as f64 * 0.61).cos()).collect();
                let mut c = vec![f64::NAN; s.c_len()];
                matmul(&a, &b, &mut c, &s);
                let want = naive(&a, &b, &s);
                for (i, (g, w)) in c.iter().zip(&want).enumerate() {
                    assert!((g - w).abs() < 1e-12, "{s}: index {i}: got {g}, want {w}");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "matmul")]
    fn zero_axis_panics_naming_the_op() {
        let s = MatmulShape::new(1, 0, 2, 2);
        matmul::<f32>(&[], &[0.0; 4], &mut [], &s);
    }
}
