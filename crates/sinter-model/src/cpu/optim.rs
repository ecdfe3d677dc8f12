//! CPU optimizer updates with PyTorch semantics: SGD (momentum, Nesterov, weight decay) and
//! Adam / AdamW, in place on the parameter and its state. The arithmetic of `shaders/optim.wgsl`,
//! with Adam's bias corrections applied as reciprocals (within an ulp of its divisions).

use super::simd::vectorized;
use super::Real;
use rayon::prelude::*;
use sinter_ops::optim::{AdamConfig, SgdConfig};

/// Below this many parameters a plain loop beats handing work to rayon.
const PAR_MIN: usize = 1 << 15;
/// Parameters per rayon task.
const CHUNK: usize = 1 << 13;

fn check_lengths(op: &str, len: usize, others: &[(&str, usize)]) {
    for &(what, n) in others {
        assert_eq!(n, len, "{op}: {what} has {n} elements but param has {len}");
    }
}

/// One SGD step in place: g = grad·s + wd·p; v = μv + g; g = nesterov ? g + μv : v; p −= lr·g.
// param, grad, velocity: [len]
pub fn sgd<T: Real>(
    param: &mut [T],
    grad: &[T],
    velocity: &mut [T],
    scale: T,
    lr: T,
    cfg: &SgdConfig,
) {
    check_lengths(
        "sgd",
        param.len(),
        &[("grad", grad.len()), ("velocity", velocity.len())],
    );
    let mu = T::of(cfg.momentum as f64);
    let wd = T::of(cfg.weight_decay as f64);
    let nesterov = cfg.nesterov;
    let step = |p: &mut [T], v: &mut [T], g: &[T]| {
        vectorized(
            #[inline(always)]
            || {
                for ((p, v), &g) in p.iter_mut().zip(v.iter_mut()).zip(g) {
                    let g = g * scale + wd * *p;
                    *v = mu * *v + g;
                    let g = if nesterov { g + mu * *v } else { *v };
                    *p -= lr * g;
                }
            },
        )
    };
    if param.len() < PAR_MIN {
        step(param, velocity, grad);
    } else {
        param
            .par_chunks_mut(CHUNK)
            .zip(velocity.par_chunks_mut(CHUNK))
            .zip(grad.par_chunks(CHUNK))
            .for_each(|((p, v), g)| step(p, v, g));
    }
}

/// One Adam (AdamW when `cfg.decoupled`) step in place; bc1 = 1 − β1^t, bc2 = 1 − β2^t.
// param, grad, m, v: [len]
#[allow(clippy::too_many_arguments)]
pub fn adam<T: Real>(
    param: &mut [T],
    grad: &[T],
    m: &mut [T],
    v: &mut [T],
    scale: T,
    lr: T,
    bc1: T,
    bc2: T,
    cfg: &AdamConfig,
) {
    check_lengths(
        "adam",
        param.len(),
        &[("grad", grad.len()), ("m", m.len()), ("v", v.len())],
    );
    let one = T::one();
    let (b1, b2) = (T::of(cfg.beta1 as f64), T::of(cfg.beta2 as f64));
    let (eps, wd) = (T::of(cfg.eps as f64), T::of(cfg.weight_decay as f64));
    let decoupled = cfg.decoupled;
    // Two reciprocals per step instead of two divisions per element (the divider bounds this
    // loop, vectorized or not); m·(1/bc1) is within an ulp of m/bc1, the WGSL's form.
    let (inv_bc1, inv_bc2) = (one / bc1, one / bc2);
    let step = |p: &mut [T], m: &mut [T], v: &mut [T], g: &[T]| {
        vectorized(
            #[inline(always)]
            || {
                for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                    let mut g = g * scale;
                    if decoupled {
                        *p *= one - lr * wd;
                    } else {
                        g += wd * *p;
                    }
                    *m = b1 * *m + (one - b1) * g;
                    *v = b2 * *v + (one - b2) * g * g;
                    *p -= lr * (*m * inv_bc1) / ((*v * inv_bc2).sqrt() + eps);
                }
            },
        )
    };
    if param.len() < PAR_MIN {
        step(param, m, v, grad);
    } else {
        param
            .par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(grad.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| step(p, m, v, g));
    }
}
