//! CPU reductions over one axis of a tensor viewed as [outer, n, inner]: sum, mean, max, argmax.
//! Same semantics as `shaders/reduce.wgsl`; sums are pairwise or blocked so f32 stays accurate.

use super::simd::{self, vectorized};
use super::Real;
use rayon::prelude::*;
use sinter_ops::reduce::{ReduceOp, ReduceShape};

/// Below this many input elements a plain loop beats handing work to rayon.
const PAR_MIN: usize = 1 << 15;
/// Below this many input elements a one-output-row sum stays on one thread: in the
/// char-transformer's profile (2 cores, shared) a 1 MB bias gradient lost to the sequential loop
/// when split, a 4 MB one did not.
const PAR_COLUMN_SUM_MIN: usize = 1 << 19;
/// Rows summed into a block accumulator before it is added to the total: the rounding error
/// then grows with BLOCK + n / BLOCK instead of n.
const BLOCK: usize = 256;

/// The sum of a long contiguous slice ([`simd::sum`], vectorized), split across rayon tasks
/// when it pays.
fn sum_contiguous<T: Real>(x: &[T]) -> T {
    if x.len() < PAR_MIN {
        vectorized(
            #[inline(always)]
            || simd::sum(x),
        )
    } else {
        let parts: Vec<T> = x
            .par_chunks(PAR_MIN)
            .map(|x| {
                vectorized(
                    #[inline(always)]
                    || simd::sum(x),
                )
            })
            .collect();
        simd::sum(&parts)
    }
}

/// (value, index) of the first maximum of `n` elements starting at `base`, `step` apart.
/// A strict `>` over increasing indices keeps the first maximum.
fn first_max<T: Real>(x: &[T], base: usize, n: usize, step: usize) -> (T, usize) {
    let mut best = (x[base], 0);
    for j in 1..n {
        let v = x[base + j * step];
        if v > best.0 {
            best = (v, j);
        }
    }
    best
}

/// y[i] (one output row of `inner` values) = Σ_j x[j, i] over the n rows of a [n, inner] block.
#[inline(always)]
fn sum_rows<T: Real>(x: &[T], n: usize, inner: usize, y: &mut [T], block: &mut [T]) {
    y.fill(T::zero());
    for rows in x[..n * inner].chunks(BLOCK * inner) {
        block.fill(T::zero());
        for row in rows.chunks_exact(inner) {
            for (b, &v) in block.iter_mut().zip(row) {
                *b += v;
            }
        }
        for (s, &b) in y.iter_mut().zip(&*block) {
            *s += b;
        }
    }
}

/// [`sum_rows`] with its blocks of rows summed in parallel, then added to y in block order: the
/// same additions in the same order as [`sum_rows`], so the same result. The one-output-row sums
/// of backward (a bias gradient over every token) have nothing else to split.
fn sum_rows_parallel<T: Real>(x: &[T], n: usize, inner: usize, y: &mut [T]) {
    let blocks: Vec<Vec<T>> = x[..n * inner]
        .par_chunks(BLOCK * inner)
        .map(|rows| {
            let mut block = vec![T::zero(); inner];
            vectorized(
                #[inline(always)]
                || {
                    for row in rows.chunks_exact(inner) {
                        for (b, &v) in block.iter_mut().zip(row) {
                            *b += v;
                        }
                    }
                },
            );
            block
        })
        .collect();
    y.fill(T::zero());
    vectorized(
        #[inline(always)]
        || {
            for block in &blocks {
                for (s, &b) in y.iter_mut().zip(block) {
                    *s += b;
                }
            }
        },
    );
}

/// y = op over n of x; Argmax writes the index of the first maximum as a float.
// x: [outer, n, inner], y: [outer, inner]
pub fn reduce<T: Real>(op: ReduceOp, x: &[T], y: &mut [T], shape: &ReduceShape) {
    let ReduceShape { outer, n, inner } = *shape;
    assert!(
        outer > 0 && n > 0 && inner > 0,
        "reduce {}: zero-sized dim in [outer, n, inner] = [{outer}, {n}, {inner}]",
        op.name()
    );
    assert!(
        x.len() == outer * n * inner && y.len() == outer * inner,
        "reduce {}: buffers of {} and {} elements for [outer, n, inner] = [{outer}, {n}, {inner}]",
        op.name(),
        x.len(),
        y.len()
    );
    let scale = match op {
        ReduceOp::Mean => T::one() / T::of(n as f64),
        _ => T::one(),
    };
    // One task per outer slice: x[o] is [n, inner], y[o] is [inner].
    let slice = |(xo, yo): (&[T], &mut [T])| match op {
        ReduceOp::Sum | ReduceOp::Mean => {
            if inner == 1 {
                yo[0] = sum_contiguous(xo);
            } else if outer == 1 && x.len() >= PAR_COLUMN_SUM_MIN && n > BLOCK {
                sum_rows_parallel(xo, n, inner, yo);
            } else {
                let mut block = vec![T::zero(); inner];
                vectorized(
                    #[inline(always)]
                    || sum_rows(xo, n, inner, yo, &mut block),
                );
            }
            yo.iter_mut().for_each(|v| *v *= scale);
        }
        ReduceOp::Max | ReduceOp::Argmax => {
            for (i, v) in yo.iter_mut().enumerate() {
                let (m, j) = first_max(xo, i, n, inner);
                *v = if op == ReduceOp::Max {
                    m
                } else {
                    T::of(j as f64)
                };
            }
        }
    };
    if x.len() < PAR_MIN || outer == 1 {
        x.chunks(n * inner).zip(y.chunks_mut(inner)).for_each(slice);
    } else {
        x.par_chunks(n * inner)
            .zip(y.par_chunks_mut(inner))
            .for_each(slice);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A column sum over many rows takes the parallel path and still equals the sequential
    /// blocked sum bit for bit (same additions, same order), and the f64 sum closely.
    #[test]
    fn parallel_column_sums_equal_the_sequential_ones() {
        let (n, inner) = (9000, 64);
        let x: Vec<f32> = (0..n * inner)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.4)
            .collect();
        let mut y = vec![0f32; inner];
        reduce(
            ReduceOp::Sum,
            &x,
            &mut y,
            &ReduceShape { outer: 1, n, inner },
        );
        let mut want = vec![0f32; inner];
        let mut block = vec![0f32; inner];
        sum_rows(&x, n, inner, &mut want, &mut block);
        assert_eq!(y, want);
        for (c, &got) in y.iter().enumerate() {
            let exact: f64 = (0..n).map(|r| x[r * inner + c] as f64).sum();
            assert!(
                (got as f64 - exact).abs() < 1e-3,
                "column {c}: {got} against {exact}"
            );
        }
    }
}
