//! CPU softmax and log-softmax along the last axis, and their gradients from the forward output.
//! Same semantics as `shaders/softmax.wgsl`.

use super::simd::{self, vectorized_rows};
use super::Real;
use sinter_ops::softmax::RowsShape;

/// Below this many elements a plain loop beats handing work to rayon.
const PAR_MIN: usize = 1 << 15;

fn check(op: &str, shape: &RowsShape, bufs: &[(&str, usize)]) {
    let RowsShape { rows, cols } = *shape;
    assert!(
        rows > 0 && cols > 0,
        "{op}: zero-sized dim in [rows, cols] = [{rows}, {cols}]"
    );
    for &(what, len) in bufs {
        assert_eq!(
            len,
            rows * cols,
            "{op}: {what} has {len} values for [rows, cols] = [{rows}, {cols}]"
        );
    }
}

/// y = exp(x − max) for one row, and returns (max, Σ y): subtracting the max keeps exp from
/// overflowing (and is what [`Real::exp_nonpositive`] takes), and y doubles as scratch for the sum.
#[inline(always)]
fn shifted_exp<T: Real>(x: &[T], y: &mut [T]) -> (T, T) {
    let m = simd::max(x);
    for (y, &v) in y.iter_mut().zip(x) {
        *y = (v - m).exp_nonpositive();
    }
    (m, simd::sum(y))
}

/// y = exp(x − max) / Σ exp(x − max) along each row.
// x, y: [rows, cols]
pub fn softmax<T: Real>(x: &[T], y: &mut [T], shape: &RowsShape) {
    check("softmax", shape, &[("x", x.len()), ("y", y.len())]);
    vectorized_rows(
        y,
        x,
        x,
        shape.cols,
        PAR_MIN,
        #[inline(always)]
        |y, x, _| {
            let (_, s) = shifted_exp(x, y);
            let inv = T::one() / s;
            for y in y.iter_mut() {
                *y *= inv;
            }
        },
    );
}

/// y = (x − max) − log Σ exp(x − max) along each row.
// x, y: [rows, cols]
pub fn log_softmax<T: Real>(x: &[T], y: &mut [T], shape: &RowsShape) {
    check("log_softmax", shape, &[("x", x.len()), ("y", y.len())]);
    vectorized_rows(
        y,
        x,
        x,
        shape.cols,
        PAR_MIN,
        #[inline(always)]
        |y, x, _| {
            let (m, s) = shifted_exp(x, y);
            let ls = s.ln();
            for (y, &v) in y.iter_mut().zip(x) {
                *y = (v - m) - ls;
            }
        },
    );
}

/// dx = y ∘ (dy − Σ_j dy_j·y_j), with y the softmax output.
// y, dy, dx: [rows, cols]
pub fn softmax_grad<T: Real>(y: &[T], dy: &[T], dx: &mut [T], shape: &RowsShape) {
    check(
        "softmax_grad",
        shape,
        &[("y", y.len()), ("dy", dy.len()), ("dx", dx.len())],
    );
    vectorized_rows(
        dx,
        y,
        dy,
        shape.cols,
        PAR_MIN,
        #[inline(always)]
        |dx, y, dy| {
            let s = simd::sum_map2(y, dy, |y, d| y * d);
            for ((dx, &y), &d) in dx.iter_mut().zip(y).zip(dy) {
                *dx = y * (d - s);
            }
        },
    );
}

/// dx = dy − exp(y)·Σ_j dy_j, with y the log-softmax output.
// y, dy, dx: [rows, cols]
pub fn log_softmax_grad<T: Real>(y: &[T], dy: &[T], dx: &mut [T], shape: &RowsShape) {
    check(
        "log_softmax_grad",
        shape,
        &[("y", y.len()), ("dy", dy.len()), ("dx", dx.len())],
    );
    vectorized_rows(
        dx,
        y,
        dy,
        shape.cols,
        PAR_MIN,
        #[inline(always)]
        |dx, y, dy| {
            let s = simd::sum(dy);
            // y = log-softmax ≤ 0: what exp_nonpositive takes.
            for ((dx, &y), &d) in dx.iter_mut().zip(y).zip(dy) {
                *dx = d - y.exp_nonpositive() * s;
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_sum_to_one_and_survive_large_logits() {
        let shape = RowsShape { rows: 3, cols: 5 };
        let x = [
            1.0, 2.0, 3.0, 4.0, 5.0, //
            -80.0, 80.0, 0.0, 79.0, -1.0, //
            1000.0, 1000.0, 1000.0, 1000.0, 1000.0,
        ];
        let mut y = [0.0f64; 15];
        softmax(&x, &mut y, &shape);
        for row in y.chunks(5) {
            let s: f64 = row.iter().sum();
            assert!((s - 1.0).abs() < 1e-12, "row {row:?} sums to {s}");
            assert!(row.iter().all(|v| v.is_finite() && *v >= 0.0));
        }
        assert!((y[10] - 0.2).abs() < 1e-12);
        let mut ly = [0.0f64; 15];
        log_softmax(&x, &mut ly, &shape);
        for (l, s) in ly.iter().zip(&y) {
            assert!(
                (l.exp() - s).abs() < 1e-12,
                "exp(log_softmax) {l} vs softmax {s}"
            );
        }
    }

    #[test]
    fn softmax_grad_matches_finite_differences() {
        let shape = RowsShape { rows: 2, cols: 4 };
        let x = [0.3, -1.2, 2.0, 0.7, 5.0, 4.0, -3.0, 0.0];
        let dy = [1.0, -0.5, 0.25, 2.0, -1.0, 0.5, 3.0, 0.1];
        for log in [false, true] {
            let f = |x: &[f64]| {
                let mut y = [0.0; 8];
                if log {
                    log_softmax(x, &mut y, &shape);
                } else {
                    softmax(x, &mut y, &shape);
                }
                y
            };
            let y = f(&x);
            let mut dx = [0.0; 8];
            if log {
                log_softmax_grad(&y, &dy, &mut dx, &shape);
            } else {
                softmax_grad(&y, &dy, &mut dx, &shape);
            }
            let h = 1e-6;
            for i in 0..8 {
                let (mut xp, mut xm) = (x, x);
                xp[i] += h;
                xm[i] -= h;
                let (yp, ym) = (f(&xp), f(&xm));
                let fd: f64 = (0..8).map(|k| dy[k] * (yp[k] - ym[k]) / (2.0 * h)).sum();
                assert!(
                    (fd - dx[i]).abs() < 1e-6,
                    "log {log}: dx[{i}] = {} but finite difference {fd}",
                    dx[i]
                );
            }
        }
    }
}
