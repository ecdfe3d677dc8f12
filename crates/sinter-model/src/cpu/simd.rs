//! Runtime SIMD dispatch for the CPU kernels, and the lane-parallel sums and maxima they share.
//! The build targets baseline x86-64 (SSE2); `vectorized` recompiles a loop for AVX2 or AVX-512.

use super::Real;
use rayon::prelude::*;

/// Runs `f` compiled for the widest instruction set this CPU has (AVX-512, AVX2 + FMA, or the
/// build's baseline), chosen at run time by pulp. A loop the compiler vectorizes inside `f` then
/// uses the wide registers. Only what is inlined into `f` is recompiled: `f` is called from one
/// arm per instruction set, so mark it, and every closure it calls per element or per row,
/// `#[inline(always)]` (closures in argument position can be), and call only `#[inline]`
/// functions from it; a closure left out of line runs compiled for the baseline. Rayon tasks
/// each call this for their own part. Rust never fuses a multiply and an add on its own, so every
/// path rounds alike: the results do not depend on the CPU.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// Independent partial sums per sum: two AVX-512 registers of f32, so the adds of one sum run
/// side by side instead of each waiting on the last (floats do not reassociate on their own).
const LANES: usize = 32;
/// Elements summed lane-wise into one block total; block totals are then added pairwise.
const BLOCK: usize = 1024;

/// The lanes of `acc` added as a tree: acc\[k\] += acc[k + w] for w = 16, 8, 4, 2, 1.
#[inline(always)]
fn collapse<T: Real>(mut acc: [T; LANES]) -> T {
    let mut w = LANES / 2;
    while w > 0 {
        for k in 0..w {
            let upper = acc[k + w];
            acc[k] += upper;
        }
        w /= 2;
    }
    acc[0]
}

/// Σ f(a\[i\], b\[i\]) over one block, in `LANES` interleaved partial sums added as a tree.
#[inline(always)]
fn block_total<T: Real, F: Fn(T, T) -> T>(a: &[T], b: &[T], f: &F) -> T {
    let mut acc = [T::zero(); LANES];
    let whole = a.len() / LANES * LANES;
    let (body_a, rest_a) = a.split_at(whole);
    let (body_b, rest_b) = b[..a.len()].split_at(whole);
    for (ca, cb) in body_a.chunks_exact(LANES).zip(body_b.chunks_exact(LANES)) {
        let ca: &[T; LANES] = ca.try_into().expect("exact chunk");
        let cb: &[T; LANES] = cb.try_into().expect("exact chunk");
        for k in 0..LANES {
            acc[k] += f(ca[k], cb[k]);
        }
    }
    // The last terms go through a zero-padded array: a variable index into acc itself would
    // keep it out of vector registers.
    let mut tail = [T::zero(); LANES];
    for k in 0..rest_a.len() {
        tail[k] = f(rest_a[k], rest_b[k]);
    }
    for k in 0..LANES {
        acc[k] += tail[k];
    }
    collapse(acc)
}

/// Σ f(a\[i\], b\[i\]): each block of `BLOCK` terms is summed in `LANES` interleaved partial
/// sums (which vectorize) added as a tree, and the block totals are added pairwise by a binary
/// counter (`stack\[k\]` holds the sum of 2^k consecutive blocks). The error is at most about
/// (BLOCK/LANES + log₂ LANES + log₂(n/BLOCK))·ε·Σ|terms|, comparable to a pairwise sum, and the
/// order is fixed, so the result is the same on every run and every CPU.
#[inline(always)]
pub fn sum_map2<T: Real, F: Fn(T, T) -> T>(a: &[T], b: &[T], f: F) -> T {
    assert_eq!(a.len(), b.len(), "sum_map2: lengths differ");
    if a.len() <= BLOCK {
        return block_total(a, b, &f);
    }
    let mut stack = [T::zero(); 64];
    let mut depth = 0;
    for block in 0..a.len().div_ceil(BLOCK) {
        let range = block * BLOCK..((block + 1) * BLOCK).min(a.len());
        let mut s = block_total(&a[range.clone()], &b[range], &f);
        // Block i completes one pair for each trailing 1 bit of i.
        let mut carry = block;
        while carry & 1 == 1 {
            depth -= 1;
            s = stack[depth] + s;
            carry >>= 1;
        }
        stack[depth] = s;
        depth += 1;
    }
    let mut total = T::zero();
    while depth > 0 {
        depth -= 1;
        total = stack[depth] + total;
    }
    total
}

/// Σ f(x\[i\]), summed as [`sum_map2`].
#[inline(always)]
pub fn sum_map<T: Real>(x: &[T], f: impl Fn(T) -> T) -> T {
    sum_map2(
        x,
        x,
        #[inline(always)]
        |v, _| f(v),
    )
}

/// Σ x\[i\], summed as [`sum_map2`].
#[inline(always)]
pub fn sum<T: Real>(x: &[T]) -> T {
    sum_map2(x, x, |v, _| v)
}

/// The largest element of a non-empty slice, ignoring NaNs unless all are NaN (as a fold with
/// `max` from x\[0\]), in interleaved lanes so that it vectorizes.
#[inline(always)]
pub fn max<T: Real>(x: &[T]) -> T {
    assert!(!x.is_empty(), "max of an empty slice");
    let mut acc = [x[0]; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        let c: &[T; LANES] = c.try_into().expect("exact chunk");
        for k in 0..LANES {
            acc[k] = acc[k].max(c[k]);
        }
    }
    // x[0] pads the last chunk: it is already in every lane.
    let mut tail = [x[0]; LANES];
    tail[..rest.len()].copy_from_slice(rest);
    for k in 0..LANES {
        acc[k] = acc[k].max(tail[k]);
    }
    // The lanes merged as a tree, as `collapse` adds them: a fold over 32 lanes would be 32
    // dependent NaN-aware maxima, most of the time of a short row (attention's score rows).
    // `max` ignores a NaN operand, so the tree also gives NaN only when every element is NaN.
    let mut w = LANES / 2;
    while w > 0 {
        for k in 0..w {
            let upper = acc[k + w];
            acc[k] = acc[k].max(upper);
        }
        w /= 2;
    }
    acc[0]
}

/// Elements per task of [`vectorized_rows`]: a group of whole rows about this long is one
/// dispatch and one rayon task.
const GROUP: usize = 1 << 13;

/// Runs `f(out_row, a_row, b_row)` over the `cols`-long rows of three equally long buffers.
/// Rows go in groups of about `GROUP` elements, each group [`vectorized`] (so `f` and what it
/// inlines use the wide registers); groups run in parallel when there are `par_min` elements or more.
#[inline(always)]
pub fn vectorized_rows<T: Real>(
    out: &mut [T],
    a: &[T],
    b: &[T],
    cols: usize,
    par_min: usize,
    f: impl Fn(&mut [T], &[T], &[T]) + Sync + Send,
) {
    assert!(
        cols > 0 && a.len() == out.len() && b.len() == out.len(),
        "vectorized_rows: buffers of {}, {} and {} for rows of {cols}",
        out.len(),
        a.len(),
        b.len()
    );
    let group = (GROUP / cols).max(1) * cols;
    let run = |(o, (a, b)): (&mut [T], (&[T], &[T]))| {
        vectorized(
            #[inline(always)]
            || {
                for (o, (a, b)) in o.chunks_mut(cols).zip(a.chunks(cols).zip(b.chunks(cols))) {
                    f(o, a, b);
                }
            },
        )
    };
    if out.len() < par_min {
        out.chunks_mut(group)
            .zip(a.chunks(group).zip(b.chunks(group)))
            .for_each(run);
    } else {
        out.par_chunks_mut(group)
            .zip(a.par_chunks(group).zip(b.par_chunks(group)))
            .for_each(run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact sums (small integers) of every length from 0 to 3 blocks, vectorized or not, and a
    /// sum of 10⁶ f32 terms within 2·10⁻⁶ of the f64 sum (a running f32 sum is off by ~10⁻⁴).
    #[test]
    fn sums_are_exact_on_integers_and_accurate_on_long_f32_rows() {
        for n in 0..3 * BLOCK + 7 {
            let x: Vec<f32> = (0..n).map(|i| (i % 13) as f32 - 6.0).collect();
            let want: f32 = x.iter().sum();
            assert_eq!(sum(&x), want, "n = {n}");
            assert_eq!(vectorized(|| sum(&x)), want, "n = {n}");
            assert_eq!(sum_map(&x, |v| 2.0 * v), 2.0 * want, "n = {n}");
        }
        let x: Vec<f32> = (0..1_000_000)
            .map(|i| 1.0 + (i % 1000) as f32 * 1e-3)
            .collect();
        let want: f64 = x.iter().map(|&v| v as f64).sum();
        let got = vectorized(|| sum(&x)) as f64;
        assert!((got / want - 1.0).abs() < 2e-6, "{got} against {want}");
    }

    /// max matches a fold from x\[0\] for every length, including NaNs ignored and all-NaN rows.
    #[test]
    fn max_matches_a_fold_and_skips_nans() {
        for n in 1..2 * LANES + 5 {
            let x: Vec<f64> = (0..n).map(|i| ((i * 37) % 11) as f64 - 3.0).collect();
            let want = x.iter().copied().fold(x[0], f64::max);
            assert_eq!(vectorized(|| max(&x)), want, "n = {n}");
        }
        assert_eq!(max(&[f32::NAN, 1.0, 3.0, f32::NAN]), 3.0);
        assert!(max(&[f32::NAN, f32::NAN]).is_nan());
        assert_eq!(max(&[f32::NEG_INFINITY, -5.0]), -5.0);
    }
}
