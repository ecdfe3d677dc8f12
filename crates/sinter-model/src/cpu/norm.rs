//! CPU layer and RMS normalization over the last axis: forward, input gradient and gamma gradient,
//! with the row statistics recomputed from x as in `shaders/norm.wgsl`.

use super::simd::{self, vectorized, vectorized_rows};
use super::Real;
use rayon::prelude::*;
use sinter_ops::norm::LayerNormShape;

/// Below this many elements a plain loop beats handing work to rayon.
const PAR_MIN: usize = 1 << 15;
/// Rows per rayon task of the gamma gradient; each task returns one partial row of sums.
const GAMMA_ROWS: usize = 64;

fn check(op: &str, shape: &LayerNormShape, bufs: &[(&str, usize, usize)]) {
    let LayerNormShape { rows, dim, eps } = *shape;
    assert!(
        rows > 0 && dim > 0,
        "{op}: zero-sized dim in x [rows, dim] = [{rows}, {dim}]"
    );
    assert!(
        eps.is_finite() && eps >= 0.0,
        "{op}: eps {eps} for x [{rows}, {dim}]: expected finite and ≥ 0"
    );
    for &(what, len, want) in bufs {
        assert_eq!(
            len, want,
            "{op}: {what} has {len} values for x [rows, dim] = [{rows}, {dim}]"
        );
    }
}

/// (mean, 1/sqrt(var + eps)) of one row, var biased. Two passes, so the variance cannot cancel;
/// both sums are [`simd::sum`]'s blocked pairwise ones.
#[inline(always)]
fn row_stats<T: Real>(x: &[T], eps: T) -> (T, T) {
    let n = T::of(x.len() as f64);
    let mean = simd::sum(x) / n;
    let var = simd::sum_map(x, |v| (v - mean) * (v - mean)) / n;
    (mean, T::one() / (var + eps).sqrt())
}

/// y = (x − mean)/sqrt(var + eps) · gamma + beta, per row.
// x, y: [rows, dim], gamma, beta: [dim]
pub fn layer_norm<T: Real>(x: &[T], gamma: &[T], beta: &[T], y: &mut [T], shape: &LayerNormShape) {
    let (len, dim) = (shape.rows * shape.dim, shape.dim);
    check(
        "layer_norm",
        shape,
        &[
            ("x", x.len(), len),
            ("gamma", gamma.len(), dim),
            ("beta", beta.len(), dim),
            ("y", y.len(), len),
        ],
    );
    let eps = T::of(shape.eps as f64);
    vectorized_rows(
        y,
        x,
        x,
        dim,
        PAR_MIN,
        #[inline(always)]
        |y, x, _| {
            let (mean, rstd) = row_stats(x, eps);
            for (((y, &v), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
                *y = (v - mean) * rstd * g + b;
            }
        },
    );
}

/// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) with x̂ = (x − mean)·rstd and g = dy·gamma.
// x, dy, dx: [rows, dim], gamma: [dim]
pub fn layer_norm_grad_input<T: Real>(
    x: &[T],
    gamma: &[T],
    dy: &[T],
    dx: &mut [T],
    shape: &LayerNormShape,
) {
    let (len, dim) = (shape.rows * shape.dim, shape.dim);
    check(
        "layer_norm_grad_input",
        shape,
        &[
            ("x", x.len(), len),
            ("gamma", gamma.len(), dim),
            ("dy", dy.len(), len),
            ("dx", dx.len(), len),
        ],
    );
    let eps = T::of(shape.eps as f64);
    let n = T::of(dim as f64);
    vectorized_rows(
        dx,
        x,
        dy,
        dim,
        PAR_MIN,
        #[inline(always)]
        |dx, x, dy| {
            let (mean, rstd) = row_stats(x, eps);
            // dx holds g = dy·gamma until it receives the gradient.
            for ((g, &d), &w) in dx.iter_mut().zip(dy).zip(gamma) {
                *g = d * w;
            }
            let mg = simd::sum(dx) / n;
            let mgx = simd::sum_map2(dx, x, |g, v| g * ((v - mean) * rstd)) / n;
            for (g, &v) in dx.iter_mut().zip(x) {
                let xh = (v - mean) * rstd;
                *g = rstd * (*g - mg - xh * mgx);
            }
        },
    );
}

/// `dgamma[j] = Σ_rows dy·x̂`. Blocks of rows are summed in parallel into partial rows, which are
/// then added in block order, so the result does not depend on scheduling.
// x, dy: [rows, dim], dgamma: [dim]
pub fn layer_norm_grad_gamma<T: Real>(x: &[T], dy: &[T], dgamma: &mut [T], shape: &LayerNormShape) {
    let (len, dim) = (shape.rows * shape.dim, shape.dim);
    check(
        "layer_norm_grad_gamma",
        shape,
        &[
            ("x", x.len(), len),
            ("dy", dy.len(), len),
            ("dgamma", dgamma.len(), dim),
        ],
    );
    let eps = T::of(shape.eps as f64);
    let block = |(x, dy): (&[T], &[T])| {
        let mut acc = vec![T::zero(); dim];
        vectorized(
            #[inline(always)]
            || {
                for (x, dy) in x.chunks(dim).zip(dy.chunks(dim)) {
                    let (mean, rstd) = row_stats(x, eps);
                    for ((a, &v), &d) in acc.iter_mut().zip(x).zip(dy) {
                        *a += d * ((v - mean) * rstd);
                    }
                }
            },
        );
        acc
    };
    let chunk = GAMMA_ROWS * dim;
    let parts: Vec<Vec<T>> = if len < PAR_MIN {
        vec![block((x, dy))]
    } else {
        x.par_chunks(chunk)
            .zip(dy.par_chunks(chunk))
            .map(block)
            .collect()
    };
    dgamma.fill(T::zero());
    for part in parts {
        dgamma.iter_mut().zip(part).for_each(|(g, p)| *g += p);
    }
}

/// 1/sqrt(mean(x²) + eps) of one row, the sum [`simd::sum`]'s blocked pairwise one.
#[inline(always)]
fn row_rstd<T: Real>(x: &[T], eps: T) -> T {
    let ms = simd::sum_map(x, |v| v * v) / T::of(x.len() as f64);
    T::one() / (ms + eps).sqrt()
}

/// y = x / sqrt(mean(x²) + eps) · gamma, per row (PyTorch's RMSNorm).
// x, y: [rows, dim], gamma: [dim]
pub fn rms_norm<T: Real>(x: &[T], gamma: &[T], y: &mut [T], shape: &LayerNormShape) {
    let (len, dim) = (shape.rows * shape.dim, shape.dim);
    check(
        "rms_norm",
        shape,
        &[
            ("x", x.len(), len),
            ("gamma", gamma.len(), dim),
            ("y", y.len(), len),
        ],
    );
    let eps = T::of(shape.eps as f64);
    vectorized_rows(
        y,
        x,
        x,
        dim,
        PAR_MIN,
        #[inline(always)]
        |y, x, _| {
            let rstd = row_rstd(x, eps);
            for ((y, &v), &g) in y.iter_mut().zip(x).zip(gamma) {
                *y = v * rstd * g;
            }
        },
    );
}

/// dx = rstd·(g − x̂·mean(g·x̂)) with x̂ = x·rstd and g = dy·gamma.
// x, dy, dx: [rows, dim], gamma: [dim]
pub fn rms_norm_grad_input<T: Real>(
    x: &[T],
    gamma: &[T],
    dy: &[T],
    dx: &mut [T],
    shape: &LayerNormShape,
) {
    let (len, dim) = (shape.rows * shape.dim, shape.dim);
    check(
        "rms_norm_grad_input",
        shape,
        &[
            ("x", x.len(), len),
            ("gamma", gamma.len(), dim),
            ("dy", dy.len(), len),
            ("dx", dx.len(), len),
        ],
    );
    let eps = T::of(shape.eps as f64);
    let n = T::of(dim as f64);
    vectorized_rows(
        dx,
        x,
        dy,
        dim,
        PAR_MIN,
        #[inline(always)]
        |dx, x, dy| {
            let rstd = row_rstd(x, eps);
            // dx holds g = dy·gamma until it receives the gradient.
            for ((g, &d), &w) in dx.iter_mut().zip(dy).zip(gamma) {
                *g = d * w;
            }
            let mgx = simd::sum_map2(dx, x, |g, v| g * (v * rstd)) / n;
            for (g, &v) in dx.iter_mut().zip(x) {
                *g = rstd * (*g - v * rstd * mgx);
            }
        },
    );
}

/// `dgamma[j] = Σ_rows dy·x̂` with x̂ = x·rstd, summed in blocks of rows added in block order
/// (deterministic), as [`layer_norm_grad_gamma`].
// x, dy: [rows, dim], dgamma: [dim]
pub fn rms_norm_grad_gamma<T: Real>(x: &[T], dy: &[T], dgamma: &mut [T], shape: &LayerNormShape) {
    let (len, dim) = (shape.rows * shape.dim, shape.dim);
    check(
        "rms_norm_grad_gamma",
        shape,
        &[
            ("x", x.len(), len),
            ("dy", dy.len(), len),
            ("dgamma", dgamma.len(), dim),
        ],
    );
    let eps = T::of(shape.eps as f64);
    let block = |(x, dy): (&[T], &[T])| {
        let mut acc = vec![T::zero(); dim];
        vectorized(
            #[inline(always)]
            || {
                for (x, dy) in x.chunks(dim).zip(dy.chunks(dim)) {
                    let rstd = row_rstd(x, eps);
                    for ((a, &v), &d) in acc.iter_mut().zip(x).zip(dy) {
                        *a += d * (v * rstd);
                    }
                }
            },
        );
        acc
    };
    let chunk = GAMMA_ROWS * dim;
    let parts: Vec<Vec<T>> = if len < PAR_MIN {
        vec![block((x, dy))]
    } else {
        x.par_chunks(chunk)
            .zip(dy.par_chunks(chunk))
            .map(block)
            .collect()
    };
    dgamma.fill(T::zero());
    for part in parts {
        dgamma.iter_mut().zip(part).for_each(|(g, p)| *g += p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grads_match_finite_differences() {
        let shape = LayerNormShape {
            rows: 3,
            dim: 5,
            eps: 1e-5,
        };
        let x: Vec<f64> = (0..15).map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.3).collect();
        let gamma = [0.5, -1.0, 2.0, 1.5, 0.25];
        let beta = [0.1, 0.2, -0.3, 0.0, 1.0];
        let dy: Vec<f64> = (0..15).map(|i| ((i * 5 % 13) as f64 - 6.0) * 0.2).collect();
        // loss = Σ dy·y, so dloss/dx = dx and dloss/dgamma = dgamma.
        let loss = |x: &[f64], gamma: &[f64]| {
            let mut y = vec![0.0; 15];
            layer_norm(x, gamma, &beta, &mut y, &shape);
            y.iter().zip(&dy).map(|(y, d)| y * d).sum::<f64>()
        };
        let mut dx = vec![0.0; 15];
        layer_norm_grad_input(&x, &gamma, &dy, &mut dx, &shape);
        let mut dgamma = vec![0.0; 5];
        layer_norm_grad_gamma(&x, &dy, &mut dgamma, &shape);
        let h = 1e-6;
        for i in 0..15 {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += h;
            xm[i] -= h;
            let fd = (loss(&xp, &gamma) - loss(&xm, &gamma)) / (2.0 * h);
            assert!((fd - dx[i]).abs() < 1e-6, "dx[{i}] = {} but fd {fd}", dx[i]);
        }
        for j in 0..5 {
            let (mut gp, mut gm) = (gamma, gamma);
            gp[j] += h;
            gm[j] -= h;
            let fd = (loss(&x, &gp) - loss(&x, &gm)) / (2.0 * h);
            assert!(
                (fd - dgamma[j]).abs() < 1e-6,
                "dgamma[{j}] = {} but fd {fd}",
                dgamma[j]
            );
        }
    }

    #[test]
    fn rms_grads_match_finite_differences() {
        let shape = LayerNormShape {
            rows: 3,
            dim: 5,
            eps: 1e-6,
        };
        let x: Vec<f64> = (0..15).map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.3).collect();
        let gamma = [0.5, -1.0, 2.0, 1.5, 0.25];
        let dy: Vec<f64> = (0..15).map(|i| ((i * 5 % 13) as f64 - 6.0) * 0.2).collect();
        let loss = |x: &[f64], gamma: &[f64]| {
            let mut y = vec![0.0; 15];
            rms_norm(x, gamma, &mut y, &shape);
            y.iter().zip(&dy).map(|(y, d)| y * d).sum::<f64>()
        };
        let mut dx = vec![0.0; 15];
        rms_norm_grad_input(&x, &gamma, &dy, &mut dx, &shape);
        let mut dgamma = vec![0.0; 5];
        rms_norm_grad_gamma(&x, &dy, &mut dgamma, &shape);
        let h = 1e-6;
        for i in 0..15 {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += h;
            xm[i] -= h;
            let fd = (loss(&xp, &gamma) - loss(&xm, &gamma)) / (2.0 * h);
            assert!((fd - dx[i]).abs() < 1e-6, "dx[{i}] = {} but fd {fd}", dx[i]);
        }
        for j in 0..5 {
            let (mut gp, mut gm) = (gamma, gamma);
            gp[j] += h;
            gm[j] -= h;
            let fd = (loss(&x, &gp) - loss(&x, &gm)) / (2.0 * h);
            assert!(
                (fd - dgamma[j]).abs() < 1e-6,
                "dgamma[{j}] = {} but fd {fd}",
                dgamma[j]
            );
        }
        // Each output row has mean square 1 / (1 + eps / ms) with gamma = 1.
        let mut y = vec![0.0; 15];
        rms_norm(&x, &[1.0; 5], &mut y, &shape);
        for row in y.chunks(5) {
            let ms = row.iter().map(|v| v * v).sum::<f64>() / 5.0;
            assert!((ms - 1.0).abs() < 1e-5, "mean square {ms}");
        }
    }
}
