//! CPU selection kernels: index_select and gather along one axis with their scatter-add gradients
//! (summed in id order, as `shaders/select.wgsl`), and where with three-way numpy broadcasting.
//!
//! Ids are integers stored as floats; one that is not an integer in `[0, n)` selects nothing:
//! its outputs are NaN and its gradient adds nothing (see `sinter_ops::select`).

use super::embedding::row_of;
use super::Real;
use rayon::prelude::*;
use sinter_ops::elementwise::broadcast_strides;
use sinter_ops::select::{where_shape, SelectShape};

/// Below this many elements a plain loop beats handing work to rayon.
const PAR_MIN: usize = 1 << 15;

fn check(op: &str, shape: &SelectShape, bufs: &[(&str, usize, usize)]) {
    let SelectShape { outer, n, k, inner } = *shape;
    assert!(
        outer > 0 && n > 0 && k > 0 && inner > 0,
        "{op}: zero-sized dim in x [{outer}, {n}, {inner}] picked at {k} positions"
    );
    for &(what, len, want) in bufs {
        assert_eq!(
            len, want,
            "{op}: {what} has {len} values for x [{outer}, {n}, {inner}] picked at {k} positions"
        );
    }
}

/// Runs `f(chunk_index, chunk)` over chunks of `out`, in parallel when it is large.
fn chunks<T: Real>(out: &mut [T], size: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if out.len() < PAR_MIN {
        out.chunks_mut(size).enumerate().for_each(|(r, c)| f(r, c));
    } else {
        out.par_chunks_mut(size)
            .enumerate()
            .for_each(|(r, c)| f(r, c));
    }
}

/// `y[o, t, :] = x[o, ids[t], :]`; NaN for an invalid id.
// x: [outer, n, inner], ids: [k], y: [outer, k, inner]
pub fn index_select<T: Real>(x: &[T], ids: &[T], y: &mut [T], shape: &SelectShape) {
    let SelectShape { n, k, inner, .. } = *shape;
    check(
        "index_select",
        shape,
        &[
            ("x", x.len(), shape.x_len()),
            ("ids", ids.len(), k),
            ("y", y.len(), shape.y_len()),
        ],
    );
    // Row r of y (length inner) is (o, t) = (r / k, r % k).
    chunks(y, inner, |r, row| {
        let (o, t) = (r / k, r % k);
        match row_of(ids[t], n) {
            Some(v) => row.copy_from_slice(&x[(o * n + v) * inner..(o * n + v + 1) * inner]),
            None => row.fill(T::nan()),
        }
    });
}

/// `dx[o, v, :] = Σ_{t: ids[t] = v} dy[o, t, :]`, added in increasing t from zero; invalid ids
/// add nothing.
// ids: [k], dy: [outer, k, inner], dx: [outer, n, inner]
pub fn index_select_grad<T: Real>(ids: &[T], dy: &[T], dx: &mut [T], shape: &SelectShape) {
    let SelectShape { n, k, inner, .. } = *shape;
    check(
        "index_select_grad",
        shape,
        &[
            ("ids", ids.len(), k),
            ("dy", dy.len(), shape.y_len()),
            ("dx", dx.len(), shape.x_len()),
        ],
    );
    // The positions picking each row, in order: rows are then independent.
    let mut uses: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (t, &id) in ids.iter().enumerate() {
        if let Some(v) = row_of(id, n) {
            uses[v].push(t);
        }
    }
    // Row r of dx is (o, v) = (r / n, r % n).
    chunks(dx, inner, |r, row| {
        let (o, v) = (r / n, r % n);
        row.fill(T::zero());
        for &t in &uses[v] {
            let src = &dy[(o * k + t) * inner..(o * k + t + 1) * inner];
            row.iter_mut().zip(src).for_each(|(d, &g)| *d += g);
        }
    });
}

/// `y[o, t, i] = x[o, index[o, t, i], i]` (`torch.gather`); NaN for an invalid id.
// x: [outer, n, inner], index, y: [outer, k, inner]
pub fn gather<T: Real>(x: &[T], index: &[T], y: &mut [T], shape: &SelectShape) {
    let SelectShape { n, k, inner, .. } = *shape;
    check(
        "gather",
        shape,
        &[
            ("x", x.len(), shape.x_len()),
            ("index", index.len(), shape.y_len()),
            ("y", y.len(), shape.y_len()),
        ],
    );
    // Row r of y (length inner) is (o, t) = (r / k, r % k).
    chunks(y, inner, |r, row| {
        let o = r / k;
        for (i, y) in row.iter_mut().enumerate() {
            *y = match row_of(index[r * inner + i], n) {
                Some(v) => x[(o * n + v) * inner + i],
                None => T::nan(),
            };
        }
    });
}

/// `dx[o, v, i] = Σ_{t: index[o, t, i] = v} dy[o, t, i]`, added in increasing t from zero;
/// invalid ids add nothing.
// index, dy: [outer, k, inner], dx: [outer, n, inner]
pub fn gather_grad<T: Real>(index: &[T], dy: &[T], dx: &mut [T], shape: &SelectShape) {
    let SelectShape { n, k, inner, .. } = *shape;
    check(
        "gather_grad",
        shape,
        &[
            ("index", index.len(), shape.y_len()),
            ("dy", dy.len(), shape.y_len()),
            ("dx", dx.len(), shape.x_len()),
        ],
    );
    // Block o of dx ([n, inner]) takes only block o of dy: blocks are independent.
    chunks(dx, n * inner, |o, block| {
        block.fill(T::zero());
        for t in 0..k {
            let at = (o * k + t) * inner;
            for i in 0..inner {
                if let Some(v) = row_of(index[at + i], n) {
                    block[v * inner + i] += dy[at + i];
                }
            }
        }
    });
}

/// Whether a mask value selects `a`: any value but ±0 (NaN included, as numpy's `bool(nan)`).
pub fn is_set<T: Real>(m: T) -> bool {
    m != T::zero() || m.is_nan()
}

/// `out = mask ≠ 0 ? a : b`, with numpy broadcasting of the three shapes.
// mask, a, b: their shapes; out: the broadcast of all three (rank ≤ MAX_RANK)
#[allow(clippy::too_many_arguments)]
pub fn where_select<T: Real>(
    mask: &[T],
    mask_shape: &[usize],
    a: &[T],
    a_shape: &[usize],
    b: &[T],
    b_shape: &[usize],
    out: &mut [T],
) {
    let shape = where_shape(mask_shape, a_shape, b_shape).unwrap_or_else(|| {
        panic!("where: mask {mask_shape:?}, a {a_shape:?} and b {b_shape:?} do not broadcast")
    });
    let numel = |s: &[usize]| s.iter().product::<usize>();
    assert!(
        mask.len() == numel(mask_shape)
            && a.len() == numel(a_shape)
            && b.len() == numel(b_shape)
            && out.len() == numel(&shape),
        "where: buffers of {}, {}, {} and {} values for mask {mask_shape:?}, a {a_shape:?}, b {b_shape:?}, out {shape:?}",
        mask.len(),
        a.len(),
        b.len(),
        out.len()
    );
    let strides = [
        broadcast_strides(mask_shape, &shape),
        broadcast_strides(a_shape, &shape),
        broadcast_strides(b_shape, &shape),
    ];
    let rank = shape.len();
    let last = shape.last().copied().unwrap_or(1);
    // Steps along the last axis.
    let [sm, sa, sb] = strides.each_ref().map(|s| s.last().copied().unwrap_or(0));
    chunks(out, last, |row, o| {
        // The operands' offsets at the start of this row of the last axis.
        let (mut rem, mut off) = (row, [0usize; 3]);
        for d in (0..rank.saturating_sub(1)).rev() {
            let c = rem % shape[d];
            rem /= shape[d];
            for (off, s) in off.iter_mut().zip(&strides) {
                *off += c * s[d];
            }
        }
        for (j, o) in o.iter_mut().enumerate() {
            *o = if is_set(mask[off[0] + j * sm]) {
                a[off[1] + j * sa]
            } else {
                b[off[2] + j * sb]
            };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_select_picks_slices_and_sums_repeats() {
        // x: [2, 3, 2]; ids pick rows 2, 0, 2 and an invalid 3 along axis 1.
        let s = SelectShape {
            outer: 2,
            n: 3,
            k: 4,
            inner: 2,
        };
        let x: Vec<f64> = (0..12).map(|v| v as f64).collect();
        let ids = [2.0, 0.0, 2.0, 3.0];
        let mut y = vec![0.0; 16];
        index_select(&x, &ids, &mut y, &s);
        assert_eq!(&y[..6], &[4.0, 5.0, 0.0, 1.0, 4.0, 5.0]);
        assert!(y[6..8].iter().all(|v| v.is_nan()));
        assert_eq!(&y[8..14], &[10.0, 11.0, 6.0, 7.0, 10.0, 11.0]);
        let dy: Vec<f64> = (0..16).map(|v| v as f64).collect();
        let mut dx = vec![9.0; 12];
        index_select_grad(&ids, &dy, &mut dx, &s);
        // Row 0 gets t = 1; row 1 nothing; row 2 gets t = 0 and 2.
        assert_eq!(
            dx,
            [2.0, 3.0, 0.0, 0.0, 4.0, 6.0, 10.0, 11.0, 0.0, 0.0, 20.0, 22.0]
        );
    }

    #[test]
    fn gather_follows_torch() {
        // torch.gather(x, 1, index) for x [2, 3], index [2, 2].
        let s = SelectShape {
            outer: 2,
            n: 3,
            k: 2,
            inner: 1,
        };
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let index = [2.0, 2.0, 0.0, -1.0];
        let mut y = [0.0f64; 4];
        gather(&x, &index, &mut y, &s);
        assert_eq!(&y[..3], &[3.0, 3.0, 4.0]);
        assert!(y[3].is_nan());
        let mut dx = [7.0f64; 6];
        gather_grad(&index, &[1.0, 10.0, 100.0, 1000.0], &mut dx, &s);
        assert_eq!(dx, [0.0, 0.0, 11.0, 100.0, 0.0, 0.0]);
    }

    #[test]
    fn where_broadcasts_and_treats_nan_as_set() {
        let mask = [1.0, 0.0, f64::NAN, -0.0];
        let a = [10.0, 20.0];
        let b = [-1.0];
        let mut out = [0.0; 8];
        where_select(&mask, &[4, 1], &a, &[2], &b, &[], &mut out);
        assert_eq!(out, [10.0, 20.0, -1.0, -1.0, 10.0, 20.0, -1.0, -1.0]);
    }
}
