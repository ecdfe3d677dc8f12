//! CPU classification loss: mean softmax cross-entropy over rows of logits, its gradient, and the
//! count of correctly classified rows. Same semantics as `shaders/loss.wgsl`.

use super::simd::{self, vectorized};
use super::Real;
use rayon::prelude::*;
use sinter_ops::loss::CrossEntropyShape;

/// Below this many logits a plain loop beats handing work to rayon.
const PAR_MIN: usize = 1 << 15;
/// Logits per task: a group of whole rows about this long is one dispatch and one rayon task.
const GROUP: usize = 1 << 13;

/// The class a stored target names, or None when it is not an integer in [0, classes).
fn class_of<T: Real>(t: T, classes: usize) -> Option<usize> {
    (t >= T::zero() && t < T::of(classes as f64) && t == t.floor())
        .then(|| t.to_usize().expect("checked range"))
}

/// (max, Σ exp(l − max)) of one row: subtracting the max keeps exp from overflowing (and is
/// what [`Real::exp_nonpositive`] takes).
#[inline(always)]
fn max_and_sum_exp<T: Real>(row: &[T]) -> (T, T) {
    let m = simd::max(row);
    (m, simd::sum_map(row, |l| (l - m).exp_nonpositive()))
}

fn check<T>(op: &str, logits: &[T], targets: &[T], shape: &CrossEntropyShape) {
    let CrossEntropyShape { rows, classes } = *shape;
    assert!(
        rows > 0 && classes > 0,
        "{op}: zero-sized dim in logits [rows, classes] = [{rows}, {classes}]"
    );
    assert!(
        logits.len() == rows * classes && targets.len() == rows,
        "{op}: buffers of {} logits and {} targets for [rows, classes] = [{rows}, {classes}]",
        logits.len(),
        targets.len()
    );
}

/// Per-row results, rows in groups of about [`GROUP`] logits, each group vectorized, in parallel
/// when the logits are large.
fn per_row<T: Real, R: Send + Sync + Copy + Default>(
    logits: &[T],
    targets: &[T],
    classes: usize,
    f: impl Fn(&[T], T) -> R + Sync + Send,
) -> Vec<R> {
    let rows = (GROUP / classes).max(1);
    let mut out = vec![R::default(); targets.len()];
    let run = |((o, l), t): ((&mut [R], &[T]), &[T])| {
        vectorized(
            #[inline(always)]
            || {
                for ((o, l), &t) in o.iter_mut().zip(l.chunks(classes)).zip(t) {
                    *o = f(l, t);
                }
            },
        )
    };
    if logits.len() < PAR_MIN {
        out.chunks_mut(rows)
            .zip(logits.chunks(rows * classes))
            .zip(targets.chunks(rows))
            .for_each(run);
    } else {
        out.par_chunks_mut(rows)
            .zip(logits.par_chunks(rows * classes))
            .zip(targets.par_chunks(rows))
            .for_each(run);
    }
    out
}

/// Mean over rows of `logsumexp(row) − row[target]`; NaN if any target is not a class.
// logits: [rows, classes], targets: [rows]
pub fn cross_entropy<T: Real>(logits: &[T], targets: &[T], shape: &CrossEntropyShape) -> T {
    check("cross_entropy", logits, targets, shape);
    let losses = per_row(
        logits,
        targets,
        shape.classes,
        #[inline(always)]
        |row, t| match class_of(t, shape.classes) {
            Some(c) => {
                let (m, s) = max_and_sum_exp(row);
                s.ln() + m - row[c]
            }
            None => T::nan(),
        },
    );
    simd::sum(&losses) / T::of(shape.rows as f64)
}

/// dlogits = (softmax(row) − onehot(target)) · dloss / rows; a row with a bad target is NaN.
// logits: [rows, classes], targets: [rows], dlogits: [rows, classes]
pub fn cross_entropy_grad<T: Real>(
    logits: &[T],
    targets: &[T],
    dloss: T,
    dlogits: &mut [T],
    shape: &CrossEntropyShape,
) {
    check("cross_entropy_grad", logits, targets, shape);
    assert_eq!(
        dlogits.len(),
        logits.len(),
        "cross_entropy_grad: dlogits length differs from logits [{}, {}]",
        shape.rows,
        shape.classes
    );
    let scale = dloss / T::of(shape.rows as f64);
    let classes = shape.classes;
    let rows = (GROUP / classes).max(1);
    let group = |((d, l), t): ((&mut [T], &[T]), &[T])| {
        vectorized(
            #[inline(always)]
            || {
                for ((d, l), &t) in d.chunks_mut(classes).zip(l.chunks(classes)).zip(t) {
                    let Some(target) = class_of(t, classes) else {
                        d.fill(T::nan());
                        continue;
                    };
                    let (m, s) = max_and_sum_exp(l);
                    let inv = T::one() / s;
                    for (c, (d, &v)) in d.iter_mut().zip(l).enumerate() {
                        let onehot = if c == target { T::one() } else { T::zero() };
                        *d = ((v - m).exp_nonpositive() * inv - onehot) * scale;
                    }
                }
            },
        )
    };
    if logits.len() < PAR_MIN {
        dlogits
            .chunks_mut(rows * classes)
            .zip(logits.chunks(rows * classes))
            .zip(targets.chunks(rows))
            .for_each(group);
    } else {
        dlogits
            .par_chunks_mut(rows * classes)
            .zip(logits.par_chunks(rows * classes))
            .zip(targets.par_chunks(rows))
            .for_each(group);
    }
}

/// Number of rows whose first argmax equals the target.
// logits: [rows, classes], targets: [rows]
pub fn count_correct<T: Real>(logits: &[T], targets: &[T], shape: &CrossEntropyShape) -> usize {
    check("count_correct", logits, targets, shape);
    let hits = per_row(
        logits,
        targets,
        shape.classes,
        #[inline(always)]
        |row, t| {
            // Strict `>` over increasing indices keeps the first maximum.
            let mut best = 0;
            for (c, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = c;
                }
            }
            class_of(t, shape.classes) == Some(best)
        },
    );
    hits.into_iter().filter(|&h| h).count()
}
