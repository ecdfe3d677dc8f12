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
    /// e^x for x ≤ 0 (what sigmoids, GELU, softmax and their gradients take: e^−|v|, e^(x − max)),
    /// in a form the compiler vectorizes. f32: within 2 ulp of e^x, 0 below −87.33 (where e^x is
    /// under the smallest normal f32), NaN for NaN; f64: libm's exp.
    fn exp_nonpositive(self) -> Self;
    /// e^x for any x, in a form the compiler vectorizes. f32: within 2 ulp where e^x is a normal
    /// f32, 0 and +∞ where it under- and overflows ([`fast_math::exp_f32`]); f64: libm's exp.
    fn exp_fast(self) -> Self;
    /// tanh x in a form the compiler vectorizes. f32: within 2 ulp ([`fast_math::tanh_f32`]);
    /// f64: libm's tanh.
    fn tanh_fast(self) -> Self;
    /// Φ(x), the standard normal CDF, with its relative accuracy kept in the lower tail. f32:
    /// relative error under 10⁻⁶ where Φ(x) is a normal f32, vectorizable
    /// ([`fast_math::normal_cdf_f32`]); f64: 0.5·erfc(−x/√2) with libm's erfc (an ulp or two).
    fn normal_cdf(self) -> Self;
    /// φ(x) = e^(−x²/2)/√(2π), the standard normal density. f32: relative error under 4·10⁻⁷
    /// where φ(x) is a normal f32, vectorizable ([`fast_math::normal_pdf_f32`]); f64: libm's exp.
    fn normal_pdf(self) -> Self;
}
impl Real for f32 {
    #[inline(always)]
    fn exp_nonpositive(self) -> Self {
        fast_math::exp_nonpositive_f32(self)
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        fast_math::exp_f32(self)
    }
    #[inline(always)]
    fn tanh_fast(self) -> Self {
        fast_math::tanh_f32(self)
    }
    #[inline(always)]
    fn normal_cdf(self) -> Self {
        fast_math::normal_cdf_f32(self)
    }
    #[inline(always)]
    fn normal_pdf(self) -> Self {
        fast_math::normal_pdf_f32(self)
    }
}
impl Real for f64 {
    fn exp_nonpositive(self) -> Self {
        self.exp()
    }
    fn exp_fast(self) -> Self {
        self.exp()
    }
    fn tanh_fast(self) -> Self {
        self.tanh()
    }
    fn normal_cdf(self) -> Self {
        0.5 * libm::erfc(-self * std::f64::consts::FRAC_1_SQRT_2)
    }
    fn normal_pdf(self) -> Self {
        (-0.5 * self * self).exp() * 0.398_942_280_401_432_7
    }
}

pub mod attention;
pub mod batch_norm;
#[cfg(feature = "blas")]
mod blas;
pub mod conv;
pub mod elementwise;
pub mod embedding;
pub mod fast_math;
pub mod layout;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod select;
pub mod simd;
pub mod softmax;
