//! Branch-free f32 e^x, tanh and the normal CDF and density (adds, multiplies, one division, bit
//! moves), so that loops of them vectorize where libm's are a call per element. Each states its
//! largest error; the tests check it over a dense sweep against the f64 functions.

// The polynomials were fitted for this file (least squares on Chebyshev nodes, then checked in
// f32), except e^r's, which is Cephes' expf polynomial.

/// 1.5·2^23: adding it to a float in (−2^22, 2^22) rounds it to an integer (to nearest) held in
/// the low mantissa bits.
const ROUND: f32 = 12_582_912.0;
/// ln 2 in two parts: n·LN2_HI is exact for |n| < 2^15, so x − n·ln 2 loses nothing.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// e^r for |r| ≤ ln 2 / 2 (and a little beyond), by Cephes' expf polynomial (about 1 ulp).
#[inline(always)]
fn exp_poly(r: f32) -> f32 {
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    (p * r) * r + r + 1.0
}

/// The integer n held in `t` = n + [`ROUND`] (|n| < 2^22): it sits in t's low bits as n + 2^22.
#[inline(always)]
fn integer_of_rounded(t: f32) -> i32 {
    (t.to_bits() as i32).wrapping_sub(0x4B40_0000)
}

/// 2^n for an integer n ∈ [−126, 127], built from its exponent bits.
#[inline(always)]
fn pow2(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

/// e^(hi + lo) for hi ∈ [−174, 88.72] and |lo| ≤ 0.04: hi is reduced exactly (hi − n·ln 2)
/// before lo is added, so a sum hi + lo that f32 cannot hold loses nothing. 2^n is applied as
/// two halves, so results below the smallest normal f32 round once, to the nearest subnormal
/// (0 below hi = −103.97).
#[inline(always)]
fn exp_of_sum(hi: f32, lo: f32) -> f32 {
    let t = hi * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (hi - n * LN2_HI) - n * LN2_LO + lo;
    let whole = integer_of_rounded(t);
    let half = whole >> 1;
    exp_poly(r) * pow2(half) * pow2(whole - half)
}

/// e^x for x ≤ 0 (what sigmoids and softmax take: e^−|v|, e^(x − max)): e^x = 2^n·e^r with
/// n = round(x / ln 2) and |r| ≤ ln 2 / 2. Within 2 ulp of e^x; 0 below −87.33 (where e^x is under
/// the smallest normal f32); NaN for NaN.
#[inline(always)]
pub fn exp_nonpositive_f32(x: f32) -> f32 {
    // Below this, e^x is under f32::MIN_POSITIVE (2^−126): n would leave the normal range.
    const LOWEST: f32 = -87.336_55;
    let xc = x.clamp(LOWEST, 0.0);
    let t = xc * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let y = exp_poly(r) * pow2(integer_of_rounded(t));
    if x < LOWEST {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// e^x for any x: within 2 ulp of e^x where that is a normal f32 (x ∈ [−87.33, 88.72]), within
/// one subnormal step below, 0 under −103.97, +∞ above 88.72, NaN for NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // e^x rounds to 0 below LOWEST and overflows above HIGHEST.
    const LOWEST: f32 = -103.972_08;
    const HIGHEST: f32 = 88.722_84;
    let y = exp_of_sum(x.clamp(LOWEST, HIGHEST), 0.0);
    if x > HIGHEST {
        f32::INFINITY
    } else if x < LOWEST {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// tanh v: an odd polynomial v + v³·P(v²) for |v| < 0.625, (1 − e)/(1 + e) with e = e^(−2|v|)
/// above (where 1 − e cannot cancel). Within 2 ulp of tanh v; NaN for NaN.
#[inline(always)]
pub fn tanh_f32(v: f32) -> f32 {
    const SMALL: f32 = 0.625;
    let s = v * v;
    let p = -5.718_98e-3_f32;
    let p = p * s + 2.065_314e-2;
    let p = p * s - 5.374_466e-2;
    let p = p * s + 1.333_151_3e-1;
    let p = p * s - 3.333_328_7e-1;
    let near_zero = v + v * s * p;
    let e = exp_nonpositive_f32(-2.0 * v.abs());
    let far = ((1.0 - e) / (1.0 + e)).copysign(v);
    if v.abs() < SMALL || v.is_nan() {
        near_zero
    } else {
        far
    }
}

/// e^(−v²/2) with v² split exactly into hi + lo (Veltkamp), so the large exponents of the normal
/// tails keep f32's relative accuracy: an f32 v² alone would be off by up to 6 ppm there.
#[inline(always)]
fn exp_neg_half_square(v: f32) -> f32 {
    // Past 14.5, e^(−v²/2) rounds to 0 in f32; clamping also keeps v·4097 finite.
    let a = v.abs().min(16.0);
    // a = ah + al with ah holding a's top 12 bits, so ah², 2·ah·al and al² are exact.
    let c = a * 4097.0;
    let ah = c - (c - a);
    let al = a - ah;
    let hi = ah * ah;
    let lo = (ah + ah) * al + al * al;
    exp_of_sum(-0.5 * hi, -0.5 * lo)
}

/// Φ(−a)·e^(a²/2) for a ≥ 0 (a Mills ratio, smooth and slowly falling from 0.5), as t·P(t) with
/// t = 1/(1 + 0.35a): relative error under 3·10⁻⁷ for a ∈ [0, 13.5].
#[inline(always)]
fn scaled_lower_tail(a: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.35 * a);
    let p = -2.956_099_6e-2_f32;
    let p = p * t + 1.459_327_6e-1;
    let p = p * t - 2.596_291e-1;
    let p = p * t + 1.634_700_1e-1;
    let p = p * t - 2.593_165_3e-2;
    let p = p * t + 1.066_389_5e-1;
    let p = p * t + 1.195_640_5e-1;
    let p = p * t + 1.398_963_6e-1;
    let p = p * t + 1.396_195_7e-1;
    p * t
}

/// Φ(v), the standard normal CDF: Φ(−|v|) = e^(−v²/2)·[Φ(−a)e^(a²/2)] holds its relative
/// accuracy into the lower tail, and Φ(|v|) = 1 − Φ(−|v|) cannot cancel (Φ(−|v|) ≤ 0.5).
/// Relative error under 10⁻⁶ wherever Φ(v) is a normal f32 (v ≥ −12.9), 0 below −14.2; NaN for NaN.
#[inline(always)]
pub fn normal_cdf_f32(v: f32) -> f32 {
    let lower = exp_neg_half_square(v) * scaled_lower_tail(v.abs().min(16.0));
    if v.is_nan() {
        v
    } else if v < 0.0 {
        lower
    } else {
        1.0 - lower
    }
}

/// φ(v) = e^(−v²/2)/√(2π), the standard normal density: relative error under 4·10⁻⁷ wherever
/// it is a normal f32 (|v| ≤ 13.2), 0 past |v| = 14.5; NaN for NaN.
#[inline(always)]
pub fn normal_pdf_f32(v: f32) -> f32 {
    let d = exp_neg_half_square(v) * 0.398_942_3;
    if v.is_nan() {
        v
    } else {
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// |got − want| in units of the spacing of f32 at want (the ulp of the correctly rounded value).
    fn ulps(got: f32, want: f64) -> f64 {
        let w = (want as f32).abs();
        let ulp = (f32::from_bits(w.to_bits() + 1) - w) as f64;
        (got as f64 - want).abs() / ulp
    }

    /// x₀, x₀ + step, … up to x₁, in f32.
    fn sweep(x0: f64, x1: f64, n: usize) -> impl Iterator<Item = f32> {
        (0..=n).map(move |i| (x0 + (x1 - x0) * i as f64 / n as f64) as f32)
    }

    /// The vectorizable e^x for x ≤ 0 is within 2 ulp of the correctly rounded value over all of
    /// [−87.33, 0] (2^20 points), 0 below, NaN for NaN.
    #[test]
    fn exp_nonpositive_is_within_two_ulp() {
        let worst = sweep(-87.3, 0.0, 1 << 20)
            .map(|x| ulps(exp_nonpositive_f32(x), (x as f64).exp()))
            .fold(0.0, f64::max);
        assert!(worst <= 2.0, "{worst} ulp");
        assert_eq!(exp_nonpositive_f32(-88.0), 0.0);
        assert_eq!(exp_nonpositive_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive_f32(f32::NAN).is_nan());
        assert_eq!(exp_nonpositive_f32(0.0), 1.0);
    }

    /// e^x is within 2 ulp over the normal range [−87.33, 88.72] (2^21 points), within one
    /// subnormal step below it, and saturates to 0 and +∞ beyond.
    #[test]
    fn exp_is_within_two_ulp() {
        let worst = sweep(-87.33, 88.72, 1 << 21)
            .map(|x| ulps(exp_f32(x), (x as f64).exp()))
            .fold(0.0, f64::max);
        assert!(worst <= 2.0, "{worst} ulp");
        let smallest = f32::from_bits(1) as f64;
        for x in sweep(-103.9, -87.4, 1 << 16) {
            let err = (exp_f32(x) as f64 - (x as f64).exp()).abs();
            assert!(
                err <= smallest,
                "e^{x}: {} against {}",
                exp_f32(x),
                (x as f64).exp()
            );
        }
        assert_eq!(exp_f32(-104.0), 0.0);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(0.0), 1.0);
    }

    /// tanh is within 2 ulp everywhere (2^21 points over [−10, 10], where it is not yet ±1, and
    /// a log-spaced sweep down to 10⁻³⁰, where it is v), odd, and ±1 far out.
    #[test]
    fn tanh_is_within_two_ulp() {
        let linear = sweep(-10.0, 10.0, 1 << 21);
        let tiny = (0..4000).map(|i| 10f64.powf(-30.0 + i as f64 * 0.0075) as f32);
        let worst = linear
            .chain(tiny)
            .map(|v| ulps(tanh_f32(v), (v as f64).tanh()))
            .fold(0.0, f64::max);
        assert!(worst <= 2.0, "{worst} ulp");
        for v in [0.1f32, 0.7, 3.0, 20.0] {
            assert_eq!(tanh_f32(-v), -tanh_f32(v));
        }
        assert_eq!(tanh_f32(50.0), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
        assert_eq!(tanh_f32(0.0), 0.0);
        assert!(tanh_f32(f32::NAN).is_nan());
    }

    /// Φ(v) for the f32 v against libm's f64 erfc: relative error under 10⁻⁶ over [−12.9, 9]
    /// (2^21 points; Φ is 1 in f32 beyond 5.4), 0 below −14.2.
    #[test]
    fn normal_cdf_is_within_a_millionth() {
        let worst = sweep(-12.9, 9.0, 1 << 21)
            .map(|v| {
                let want = 0.5 * libm::erfc(-(v as f64) * std::f64::consts::FRAC_1_SQRT_2);
                (normal_cdf_f32(v) as f64 / want - 1.0).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "relative error {worst:e}");
        assert_eq!(normal_cdf_f32(-15.0), 0.0);
        assert_eq!(normal_cdf_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(normal_cdf_f32(f32::INFINITY), 1.0);
        assert!(normal_cdf_f32(f32::NAN).is_nan());
    }

    /// φ(v) against the f64 density: relative error under 4·10⁻⁷ over [−13.2, 13.2] (2^21 points).
    #[test]
    fn normal_pdf_is_within_four_ten_millionths() {
        let worst = sweep(-13.2, 13.2, 1 << 21)
            .map(|v| {
                let v = v as f64;
                let want = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
                (normal_pdf_f32(v as f32) as f64 / want - 1.0).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst < 4e-7, "relative error {worst:e}");
        assert_eq!(normal_pdf_f32(15.0), 0.0);
        assert!(normal_pdf_f32(f32::NAN).is_nan());
    }
}
