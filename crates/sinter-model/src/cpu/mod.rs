//! The native CPU backend's kernels: one module per kernel family, mirroring `shaders/`.
//! They are generic over f32 (training) and f64 (gradient checks), and are the reference the WGSL is tested against.

/// A floating-point element type the CPU kernels run in.
pub trait Real:
    num_traits::Float
    + num_traits::FromPrimitive
    + num_traits::NumAssign
    + Default
    + Send
    + Sync
    + std::fmt::Debug
    + std::iter::Sum
    + 'static
{
    /// `x` converted to this type (rounded to nearest for f32; out-of-range values become ±∞).
    fn of(x: f64) -> Self {
        <Self as num_traits::FromPrimitive>::from_f64(x).expect("finite conversion")
    }
    /// This value as f64 (exact).
    fn f64(self) -> f64 {
        num_traits::ToPrimitive::to_f64(&self).expect("finite conversion")
    }
    /// The complementary error function 1 − erf(x), accurate to an ulp or two (libm) also where
    /// it is tiny.
    fn erfc(self) -> Self;
    /// e^x for x ≤ 0 (what sigmoids, GELU and their gradients take: e^−|v|), in a form the
    /// compiler vectorizes. f32: within 2 ulp of e^x, 0 below −87.33 (where e^x is under the
    /// smallest normal f32), NaN for NaN; f64: libm's exp.
    fn exp_nonpositive(self) -> Self;
}
impl Real for f32 {
    fn erfc(self) -> Self {
        libm::erfcf(self)
    }
    fn exp_nonpositive(self) -> Self {
        exp_nonpositive_f32(self)
    }
}
impl Real for f64 {
    fn erfc(self) -> Self {
        libm::erfc(self)
    }
    fn exp_nonpositive(self) -> Self {
        self.exp()
    }
}

/// e^x = 2^n · e^r with n = round(x / ln 2) and |r| ≤ ln 2 / 2, e^r by Cephes' expf polynomial
/// (degree 7, about 1 ulp), 2^n built from its exponent bits. Only adds, multiplies, bit moves
/// and one select, so a loop of it vectorizes (libm's expf is a call per element).
#[inline]
fn exp_nonpositive_f32(x: f32) -> f32 {
    // Below this, e^x is under f32::MIN_POSITIVE (2^−126): n would leave the normal range.
    const LOWEST: f32 = -87.336_55;
    // 1.5·2^23: adding it rounds to an integer (to nearest) held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(LOWEST, 0.0);
    let t = xc * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    // ln 2 in two parts, so n·ln2 is subtracted without rounding error.
    let r = (xc - n * 0.693_359_4) - n * -2.121_944_4e-4;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = (p * r) * r + r + 1.0;
    // n ∈ [−126, 0] sits in t's low bits as n + 2^22.
    let n_bits = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let scale = f32::from_bits(((n_bits + 127) as u32) << 23);
    let y = er * scale;
    if x < LOWEST {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}
pub mod attention;
pub mod batch_norm;
#[cfg(feature = "blas")]
mod blas;
pub mod conv;
pub mod elementwise;
pub mod embedding;
pub mod layout;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod select;
pub mod softmax;

#[cfg(test)]
mod tests {
    use super::Real;

    /// The vectorizable e^x is within 2 ulp of the correctly rounded value over all of
    /// [−87.33, 0] (2^20 points), 0 below, NaN for NaN.
    #[test]
    fn exp_nonpositive_is_within_two_ulp() {
        let n = 1 << 20;
        let mut worst = 0.0f64;
        for i in 0..=n {
            let x = -87.3 * i as f32 / n as f32;
            let want = (x as f64).exp();
            let got = x.exp_nonpositive() as f64;
            let w = want as f32;
            let ulp = (f32::from_bits(w.to_bits() + 1) - w) as f64;
            worst = worst.max((got - want).abs() / ulp);
        }
        assert!(worst <= 2.0, "{worst} ulp");
        assert_eq!((-88.0f32).exp_nonpositive(), 0.0);
        assert_eq!(f32::NEG_INFINITY.exp_nonpositive(), 0.0);
        assert!(f32::NAN.exp_nonpositive().is_nan());
        assert_eq!(0.0f32.exp_nonpositive(), 1.0);
    }
}
