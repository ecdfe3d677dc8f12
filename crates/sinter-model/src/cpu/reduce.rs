//! CPU reductions over one axis of a tensor viewed as [outer, n, inner]: sum, mean, max, argmax.
//! Same semantics as `shaders/reduce.wgsl`; sums are pairwise or blocked so f32 stays accurate.

use super::Real;
use rayon::prelude::*;
use sinter_ops::reduce::{ReduceOp, ReduceShape};

/// Below this many input elements a plain loop beats handing work to rayon.
const PAR_MIN: usize = 1 << 15;
/// Rows summed into a block accumulator before it is added to the total: the rounding error
/// then grows with BLOCK + n / BLOCK instead of n.
const BLOCK: usize = 256;

/// Pairwise (cascade) sum: error grows with log(n) instead of n, at the speed of a plain loop.
pub fn pairwise_sum<T: Real>(x: &[T]) -> T {
    if x.len() <= 128 {
        x.iter().fold(T::zero(), |s, &v| s + v)
    } else {
        let (l, r) = x.split_at(x.len() / 2);
        pairwise_sum(l) + pairwise_sum(r)
    }
}

/// The sum of a long contiguous slice, split across rayon tasks when it pays.
fn sum_contiguous<T: Real>(x: &[T]) -> T {
    if x.len() < PAR_MIN {
        pairwise_sum(x)
    } else {
        let parts: Vec<T> = x.par_chunks(PAR_MIN).map(pairwise_sum).collect();
        pairwise_sum(&parts)
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
fn sum_rows<T: Real>(x: &[T], n: usize, inner: usize, y: &mut [T]) {
    y.fill(T::zero());
    let mut block = vec![T::zero(); inner];
    for rows in x[..n * inner].chunks(BLOCK * inner) {
        block.fill(T::zero());
        for row in rows.chunks(inner) {
            block.iter_mut().zip(row).for_each(|(b, &v)| *b += v);
        }
        y.iter_mut().zip(&block).for_each(|(s, &b)| *s += b);
    }
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
            } else {
                sum_rows(xo, n, inner, yo);
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
