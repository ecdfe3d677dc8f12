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
}
impl Real for f32 {
    fn erfc(self) -> Self {
        libm::erfcf(self)
    }
}
impl Real for f64 {
    fn erfc(self) -> Self {
        libm::erfc(self)
    }
}
pub mod attention;
pub mod batch_norm;
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
