//! Helpers shared by the kernel tests: seeded random inputs and a tolerance check whose failure
//! message names the kernel, the shape, the index and both values.
#![allow(dead_code)] // each test binary uses a different subset of these helpers

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A deterministic generator, so a failing case reproduces exactly.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `len` values drawn uniformly from `[lo, hi)`.
pub fn rand_vec(rng: &mut ChaCha8Rng, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// `len` class indices in `[0, classes)`, stored as f32 the way the loss kernels read them.
pub fn rand_classes(rng: &mut ChaCha8Rng, len: usize, classes: usize) -> Vec<f32> {
    (0..len)
        .map(|_| rng.random_range(0..classes) as f32)
        .collect()
}

/// Widens f32 data to f64, to run a CPU reference in f64.
pub fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// Checks `|got - want| <= atol + rtol·|want|` element by element. `what` names the kernel and
/// shape; the panic message adds the first failing index, both values and the worst error seen.
/// NaN matches NaN and infinities must match exactly.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: got {} values, want {}",
        got.len(),
        want.len()
    );
    let mut worst = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            let err = (g - w).abs();
            worst = worst.max(err);
            err <= atol + rtol * w.abs()
        };
        assert!(
            ok,
            "{what}: index {i}: got {g:e}, want {w:e} (|diff| {:e} > atol {atol:e} + rtol {rtol:e}·|want|)",
            (g - w).abs()
        );
    }
}
