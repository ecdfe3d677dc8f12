//! CPU batch normalization over `x: [N, C, H·W]` in training: forward (batch statistics, then
//! normalize), backward (dx, dweight, dbias) and the running update, as `shaders/batch_norm.wgsl`.

use super::simd;
use super::Real;
use rayon::prelude::*;
use sinter_ops::batch_norm::{BatchNormShape, BatchNormUpdate};

/// Below this many elements a plain loop beats handing work to rayon.
const PAR_MIN: usize = 1 << 15;

fn check(op: &str, shape: &BatchNormShape, bufs: &[(&str, usize, usize)]) {
    if let Err(e) = shape.check(op) {
        panic!("{e}");
    }
    for &(what, len, want) in bufs {
        assert_eq!(
            len, want,
            "{op}: {what} has {len} values for x [N, C, H·W] = [{}, {}, {}]",
            shape.n, shape.channels, shape.hw
        );
    }
}

/// Runs `f(c)` for every channel, in parallel when the tensor is large; the results are in
/// channel order, and each channel's arithmetic does not depend on the scheduling.
fn per_channel<T: Send>(shape: &BatchNormShape, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    if shape.len() < PAR_MIN {
        (0..shape.channels).map(f).collect()
    } else {
        (0..shape.channels).into_par_iter().map(f).collect()
    }
}

/// Σ over the batch of Σ_j term(a[n, c, j], b[n, c, j]), each row's terms summed as
/// [`simd::sum_map2`] (vectorized), the rows added in batch order: one fixed order, whatever the
/// threads.
#[inline(always)]
fn channel_sum<T: Real>(
    a: &[T],
    b: &[T],
    shape: &BatchNormShape,
    c: usize,
    term: impl Fn(T, T) -> T,
) -> T {
    let (cs, hw) = (shape.channels, shape.hw);
    let mut total = T::zero();
    for n in 0..shape.n {
        let row = (n * cs + c) * hw..(n * cs + c + 1) * hw;
        total += simd::sum_map2(&a[row.clone()], &b[row], &term);
    }
    total
}

/// (mean, biased variance) of channel `c`: two passes, so the variance cannot cancel.
fn channel_stats<T: Real>(x: &[T], shape: &BatchNormShape, c: usize) -> (T, T) {
    let count = T::of(shape.count() as f64);
    simd::vectorized(
        #[inline(always)]
        || {
            let mean = channel_sum(x, x, shape, c, |v, _| v) / count;
            let var = channel_sum(x, x, shape, c, |v, _| (v - mean) * (v - mean)) / count;
            (mean, var)
        },
    )
}

/// Runs `f(row, channel)` over the `N·C` rows of `hw` values of `out`, each compiled for the
/// widest SIMD ([`simd::vectorized`]: pass `f` marked `#[inline(always)]`).
fn rows<T: Real>(out: &mut [T], shape: &BatchNormShape, f: impl Fn(&mut [T], usize, usize) + Sync) {
    let (cs, hw) = (shape.channels, shape.hw);
    let row = |(r, o): (usize, &mut [T])| {
        simd::vectorized(
            #[inline(always)]
            || f(o, r, r % cs),
        )
    };
    if out.len() < PAR_MIN {
        out.chunks_mut(hw).enumerate().for_each(row);
    } else {
        out.par_chunks_mut(hw).enumerate().for_each(row);
    }
}

/// y = (x − mean)/√(var + eps) · weight + bias per channel, with the batch's mean and biased
/// variance, which are written to `stats` (row 0 the means, row 1 the variances).
// x, y: [N, C, H·W]; weight, bias: [C]; stats: [2, C]
pub fn batch_norm2d<T: Real>(
    x: &[T],
    weight: &[T],
    bias: &[T],
    y: &mut [T],
    stats: &mut [T],
    shape: &BatchNormShape,
) {
    let (len, cs) = (shape.len(), shape.channels);
    check(
        "batch_norm2d",
        shape,
        &[
            ("x", x.len(), len),
            ("weight", weight.len(), cs),
            ("bias", bias.len(), cs),
            ("y", y.len(), len),
            ("stats", stats.len(), 2 * cs),
        ],
    );
    let eps = T::of(shape.eps as f64);
    let per = per_channel(shape, |c| channel_stats(x, shape, c));
    // y = x·scale + shift with scale = weight·rstd, shift = bias − mean·scale.
    let affine: Vec<(T, T)> = per
        .iter()
        .enumerate()
        .map(|(c, &(mean, var))| {
            let scale = weight[c] / (var + eps).sqrt();
            (scale, bias[c] - mean * scale)
        })
        .collect();
    for (c, &(mean, var)) in per.iter().enumerate() {
        stats[c] = mean;
        stats[cs + c] = var;
    }
    let hw = shape.hw;
    rows(
        y,
        shape,
        #[inline(always)]
        |y, r, c| {
            let (scale, shift) = affine[c];
            for (y, &v) in y.iter_mut().zip(&x[r * hw..(r + 1) * hw]) {
                *y = v * scale + shift;
            }
        },
    );
}

/// With x̂ = (x − mean)·rstd over a channel's m = N·H·W values:
/// dbias = Σ dy, dweight = Σ dy·x̂, dx = weight·rstd·(dy − dbias/m − x̂·dweight/m).
// x, dy, dx: [N, C, H·W]; weight, dweight, dbias: [C]; stats: [2, C]
#[allow(clippy::too_many_arguments)]
pub fn batch_norm2d_grad<T: Real>(
    x: &[T],
    weight: &[T],
    stats: &[T],
    dy: &[T],
    dx: &mut [T],
    dweight: &mut [T],
    dbias: &mut [T],
    shape: &BatchNormShape,
) {
    let (len, cs) = (shape.len(), shape.channels);
    check(
        "batch_norm2d_grad",
        shape,
        &[
            ("x", x.len(), len),
            ("weight", weight.len(), cs),
            ("stats", stats.len(), 2 * cs),
            ("dy", dy.len(), len),
            ("dx", dx.len(), len),
            ("dweight", dweight.len(), cs),
            ("dbias", dbias.len(), cs),
        ],
    );
    let eps = T::of(shape.eps as f64);
    let rstd: Vec<T> = (0..cs)
        .map(|c| T::one() / (stats[cs + c] + eps).sqrt())
        .collect();
    let sums = per_channel(shape, |c| {
        let (mean, r) = (stats[c], rstd[c]);
        simd::vectorized(
            #[inline(always)]
            || {
                let sdy = channel_sum(dy, dy, shape, c, |d, _| d);
                let sdyx = channel_sum(x, dy, shape, c, |v, d| d * ((v - mean) * r));
                (sdy, sdyx)
            },
        )
    });
    let m = T::of(shape.count() as f64);
    for (c, &(sdy, sdyx)) in sums.iter().enumerate() {
        dbias[c] = sdy;
        dweight[c] = sdyx;
    }
    let hw = shape.hw;
    rows(
        dx,
        shape,
        #[inline(always)]
        |dx, r, c| {
            let (mean, rs) = (stats[c], rstd[c]);
            let (mdy, mdyx) = (sums[c].0 / m, sums[c].1 / m);
            let k = weight[c] * rs;
            let span = r * hw..(r + 1) * hw;
            for ((dx, &v), &d) in dx.iter_mut().zip(&x[span.clone()]).zip(&dy[span]) {
                let xh = (v - mean) * rs;
                *dx = k * (d - mdy - xh * mdyx);
            }
        },
    );
}

/// running = (1 − momentum)·running + momentum·batch per channel, the variance unbiased
/// (× count/(count − 1)); `num_batches_tracked` (one value) goes up by one.
// stats: [2, C]; running_mean, running_var: [C]; num_batches_tracked: [1]
pub fn batch_norm_update<T: Real>(
    stats: &[T],
    running_mean: &mut [T],
    running_var: &mut [T],
    num_batches_tracked: &mut [T],
    update: &BatchNormUpdate,
) {
    if let Err(e) = update.check("batch_norm_update") {
        panic!("{e}");
    }
    let cs = update.channels;
    for (what, len, want) in [
        ("stats", stats.len(), 2 * cs),
        ("running_mean", running_mean.len(), cs),
        ("running_var", running_var.len(), cs),
        ("num_batches_tracked", num_batches_tracked.len(), 1),
    ] {
        assert_eq!(
            len, want,
            "batch_norm_update: {what} has {len} values for {cs} channels"
        );
    }
    let m = T::of(update.momentum as f64);
    let keep = T::one() - m;
    let unbiased = T::of(update.unbiased_factor());
    for c in 0..cs {
        running_mean[c] = keep * running_mean[c] + m * stats[c];
        running_var[c] = keep * running_var[c] + m * (stats[cs + c] * unbiased);
    }
    num_batches_tracked[0] += T::one();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> BatchNormShape {
        BatchNormShape {
            n: 3,
            channels: 2,
            hw: 5,
            eps: 1e-5,
        }
    }

    #[test]
    fn forward_normalizes_each_channel_with_the_biased_variance() {
        let s = shape();
        let x: Vec<f64> = (0..30).map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.3).collect();
        let (mut y, mut stats) = (vec![0.0; 30], vec![0.0; 4]);
        batch_norm2d(&x, &[1.0, 2.0], &[0.0, 0.5], &mut y, &mut stats, &s);
        for c in 0..2 {
            let vals: Vec<f64> = (0..3)
                .flat_map(|n| x[(n * 2 + c) * 5..(n * 2 + c + 1) * 5].to_vec())
                .collect();
            let mean = vals.iter().sum::<f64>() / 15.0;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 15.0;
            assert!((stats[c] - mean).abs() < 1e-12 && (stats[2 + c] - var).abs() < 1e-12);
            let ys: Vec<f64> = (0..3)
                .flat_map(|n| y[(n * 2 + c) * 5..(n * 2 + c + 1) * 5].to_vec())
                .collect();
            let ym = ys.iter().sum::<f64>() / 15.0;
            let yv = ys.iter().map(|v| (v - ym).powi(2)).sum::<f64>() / 15.0;
            let (w, b) = ([1.0, 2.0][c], [0.0, 0.5][c]);
            assert!((ym - b).abs() < 1e-12, "channel {c}: mean {ym}");
            assert!(
                (yv - w * w * var / (var + 1e-5)).abs() < 1e-9,
                "channel {c}: var {yv}"
            );
        }
    }

    #[test]
    fn the_running_update_follows_pytorch() {
        let u = BatchNormUpdate {
            channels: 2,
            count: 5,
            momentum: 0.1,
        };
        let (mut rm, mut rv, mut nb): (Vec<f64>, Vec<f64>, Vec<f64>) =
            (vec![0.0, 1.0], vec![1.0, 2.0], vec![3.0]);
        batch_norm_update(&[0.5, -1.0, 4.0, 0.8], &mut rm, &mut rv, &mut nb, &u);
        // The momentum is an f32: 0.1 is 0.1 + 1.5e-9, so the values are off by ~1e-8.
        let close = |a: f64, b: f64| (a - b).abs() < 1e-7;
        assert!(close(rm[0], 0.05) && close(rm[1], 0.8), "{rm:?}");
        assert!(
            close(rv[0], 0.9 + 0.1 * 5.0) && close(rv[1], 1.8 + 0.1 * 1.0),
            "{rv:?}"
        );
        assert_eq!(nb[0], 4.0);
    }
}
