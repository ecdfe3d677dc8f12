//! CPU elementwise kernels: unary activations and their gradients, affine maps, and binary ops and
//! copies with numpy broadcasting. Same semantics as `shaders/elementwise.wgsl`.

use super::simd::vectorized;
use super::Real;
use rayon::prelude::*;
use sinter_ops::elementwise::{broadcast_shape, broadcast_strides, BinaryOp, UnaryOp};

/// Below this many elements a plain loop beats handing work to rayon.
const PAR_MIN: usize = 1 << 15;
/// Elements per rayon task.
const CHUNK: usize = 1 << 13;

/// f(v) for one element. Gelu is the tanh approximation 0.5v(1 + tanh(√(2/π)(v + 0.044715v³))),
/// matching the WGSL (which has no erf). In f32, exp, tanh and Φ are the vectorizable ones of
/// [`super::fast_math`] (2 ulp, 2 ulp and 10⁻⁶ relative); each op's bound is in the tests below.
#[inline(always)]
pub fn unary_value<T: Real>(op: UnaryOp, v: T) -> T {
    let (zero, one) = (T::zero(), T::one());
    match op {
        // NaN passes through (as in PyTorch), so a diverged run is seen at the loss.
        UnaryOp::Relu => {
            if v < zero {
                zero
            } else {
                v
            }
        }
        UnaryOp::Gelu => v * sigmoid(T::of(2.0) * gelu_u(v)),
        UnaryOp::Tanh => v.tanh_fast(),
        UnaryOp::Sigmoid => sigmoid(v),
        UnaryOp::Exp => v.exp_fast(),
        UnaryOp::Log => v.ln(),
        UnaryOp::Neg => -v,
        UnaryOp::Sqrt => v.sqrt(),
        UnaryOp::Abs => v.abs(),
        UnaryOp::Square => v * v,
        UnaryOp::Recip => one / v,
        UnaryOp::Silu => v * sigmoid(v),
        UnaryOp::Rsqrt => one / v.sqrt(),
        UnaryOp::GeluErf => v * v.normal_cdf(),
    }
}

/// The epilogue the planner fuses into a product (`fuse.rs`) on one output: `v + bias` when there
/// is a bias, then the activation, computed exactly as the separate add and unary nodes would.
#[inline]
pub fn epilogue_value<T: Real>(v: T, bias: Option<T>, activation: Option<UnaryOp>) -> T {
    let v = match bias {
        Some(b) => v + b,
        None => v,
    };
    match activation {
        Some(op) => unary_value(op, v),
        None => v,
    }
}

/// The bias of a row of product outputs: one value for the whole row (a convolution's output
/// channel) or one per element (a matrix product's output columns).
#[derive(Clone, Copy)]
pub enum RowBias<'a, T> {
    /// No bias.
    None,
    /// The same bias for every element of the row.
    Scalar(T),
    /// `bias[j]` for element j.
    PerElement(&'a [T]),
}

/// [`epilogue_value`] over a row, with the choice of activation made once per row rather than
/// per element, so the common ReLU epilogue compiles to a plain loop.
pub fn epilogue_row<T: Real>(row: &mut [T], bias: RowBias<T>, activation: Option<UnaryOp>) {
    #[inline(always)]
    fn each<T: Real>(row: &mut [T], bias: RowBias<T>, f: impl Fn(T) -> T) {
        match bias {
            RowBias::None => row.iter_mut().for_each(|v| *v = f(*v)),
            RowBias::Scalar(b) => row.iter_mut().for_each(|v| *v = f(*v + b)),
            RowBias::PerElement(b) => row.iter_mut().zip(b).for_each(|(v, &b)| *v = f(*v + b)),
        }
    }
    match activation {
        None => each(row, bias, |v| v),
        Some(UnaryOp::Relu) => each(row, bias, |v| unary_value(UnaryOp::Relu, v)),
        Some(op) => each(row, bias, |v| unary_value(op, v)),
    }
}

/// f'(v) for one element; relu'(0) = 0 and abs'(0) = 0.
#[inline(always)]
pub fn unary_deriv<T: Real>(op: UnaryOp, v: T) -> T {
    let (zero, one) = (T::zero(), T::one());
    match op {
        UnaryOp::Relu => {
            if v > zero {
                one
            } else {
                zero
            }
        }
        UnaryOp::Gelu => {
            // d/dv v·σ(2u) = σ(2u) + 2v·σ'(2u)·k(1 + 3cv²)
            let z = T::of(2.0) * gelu_u(v);
            let du = T::of(GELU_K) * (one + T::of(3.0 * GELU_C) * v * v);
            sigmoid(z) + T::of(2.0) * v * sigmoid_grad(z) * du
        }
        UnaryOp::Tanh => {
            // 1 − tanh²(v) = 4e / (1 + e)², e = exp(−2|v|): no cancellation near tanh = ±1.
            let e = (T::of(-2.0) * v.abs()).exp_nonpositive();
            T::of(4.0) * e / ((one + e) * (one + e))
        }
        UnaryOp::Sigmoid => sigmoid_grad(v),
        UnaryOp::Exp => v.exp_fast(),
        UnaryOp::Log => one / v,
        UnaryOp::Neg => -one,
        UnaryOp::Sqrt => T::of(0.5) / v.sqrt(),
        UnaryOp::Abs => {
            if v > zero {
                one
            } else if v < zero {
                -one
            } else {
                zero
            }
        }
        UnaryOp::Square => T::of(2.0) * v,
        UnaryOp::Recip => -one / (v * v),
        // d/dv v·σ(v) = σ(v) + v·σ'(v)
        UnaryOp::Silu => sigmoid(v) + v * sigmoid_grad(v),
        UnaryOp::Rsqrt => T::of(-0.5) / (v * v.sqrt()),
        // d/dv v·Φ(v) = Φ(v) + v·φ(v)
        UnaryOp::GeluErf => v.normal_cdf() + v * v.normal_pdf(),
    }
}

const GELU_K: f64 = 0.797_884_560_802_865_4; // √(2/π)
const GELU_C: f64 = 0.044715;

/// u = k(v + cv³), the argument of tanh in GELU; 0.5(1 + tanh u) = σ(2u) avoids cancelling in
/// the negative tail.
#[inline(always)]
fn gelu_u<T: Real>(v: T) -> T {
    T::of(GELU_K) * (v + T::of(GELU_C) * v * v * v)
}

/// exp(−|v|) never overflows, so both branches stay finite.
#[inline(always)]
fn sigmoid<T: Real>(v: T) -> T {
    let e = (-v.abs()).exp_nonpositive();
    let s = T::one() / (T::one() + e);
    if v >= T::zero() {
        s
    } else {
        e * s
    }
}

/// σ'(v) = e / (1 + e)², e = exp(−|v|): equal to σ(1 − σ) without its cancellation near σ = 1.
#[inline(always)]
fn sigmoid_grad<T: Real>(v: T) -> T {
    let e = (-v.abs()).exp_nonpositive();
    e / ((T::one() + e) * (T::one() + e))
}

/// out[i] = f(a[i]), vectorized, in parallel for large slices.
#[inline(always)]
fn map1<T: Real>(a: &[T], out: &mut [T], f: impl Fn(T) -> T + Sync) {
    assert_eq!(
        a.len(),
        out.len(),
        "elementwise: input and output lengths differ"
    );
    let run = |o: &mut [T], a: &[T]| {
        vectorized(
            #[inline(always)]
            || {
                for (o, &v) in o.iter_mut().zip(a) {
                    *o = f(v);
                }
            },
        )
    };
    if out.len() < PAR_MIN {
        run(out, a);
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .for_each(|(o, a)| run(o, a));
    }
}

/// out[i] = f(a[i], b[i]), vectorized, in parallel for large slices.
#[inline(always)]
fn map2<T: Real>(a: &[T], b: &[T], out: &mut [T], f: impl Fn(T, T) -> T + Sync) {
    assert!(
        a.len() == out.len() && b.len() == out.len(),
        "elementwise: lengths {} and {} do not match the output's {}",
        a.len(),
        b.len(),
        out.len()
    );
    let run = |o: &mut [T], a: &[T], b: &[T]| {
        vectorized(
            #[inline(always)]
            || {
                for ((o, &u), &v) in o.iter_mut().zip(a).zip(b) {
                    *o = f(u, v);
                }
            },
        )
    };
    if out.len() < PAR_MIN {
        run(out, a, b);
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(o, (a, b))| run(o, a, b));
    }
}

/// Runs `$run` with `$op` bound to each `UnaryOp` as a constant, so that every op gets its own
/// loop with the op's arm inlined (and vectorized), not a `match` per element.
macro_rules! for_each_unary_op {
    ($op:expr, |$c:ident| $run:expr) => {
        match $op {
            UnaryOp::Relu => {
                const $c: UnaryOp = UnaryOp::Relu;
                $run
            }
            UnaryOp::Gelu => {
                const $c: UnaryOp = UnaryOp::Gelu;
                $run
            }
            UnaryOp::Tanh => {
                const $c: UnaryOp = UnaryOp::Tanh;
                $run
            }
            UnaryOp::Sigmoid => {
                const $c: UnaryOp = UnaryOp::Sigmoid;
                $run
            }
            UnaryOp::Exp => {
                const $c: UnaryOp = UnaryOp::Exp;
                $run
            }
            UnaryOp::Log => {
                const $c: UnaryOp = UnaryOp::Log;
                $run
            }
            UnaryOp::Neg => {
                const $c: UnaryOp = UnaryOp::Neg;
                $run
            }
            UnaryOp::Sqrt => {
                const $c: UnaryOp = UnaryOp::Sqrt;
                $run
            }
            UnaryOp::Abs => {
                const $c: UnaryOp = UnaryOp::Abs;
                $run
            }
            UnaryOp::Square => {
                const $c: UnaryOp = UnaryOp::Square;
                $run
            }
            UnaryOp::Recip => {
                const $c: UnaryOp = UnaryOp::Recip;
                $run
            }
            UnaryOp::Silu => {
                const $c: UnaryOp = UnaryOp::Silu;
                $run
            }
            UnaryOp::Rsqrt => {
                const $c: UnaryOp = UnaryOp::Rsqrt;
                $run
            }
            UnaryOp::GeluErf => {
                const $c: UnaryOp = UnaryOp::GeluErf;
                $run
            }
        }
    };
}

/// y = f(x), elementwise.
// x, y: [len]
pub fn unary<T: Real>(op: UnaryOp, x: &[T], y: &mut [T]) {
    for_each_unary_op!(op, |OP| map1(
        x,
        y,
        #[inline(always)]
        |v| unary_value(OP, v)
    ))
}

/// dx = dy · f'(x), with f' recomputed from the forward input x.
// x, dy, dx: [len]
pub fn unary_grad<T: Real>(op: UnaryOp, x: &[T], dy: &[T], dx: &mut [T]) {
    for_each_unary_op!(op, |OP| map2(
        x,
        dy,
        dx,
        #[inline(always)]
        |v, g| g * unary_deriv(OP, v)
    ))
}

/// y = alpha · x + beta, elementwise.
// x, y: [len]
pub fn affine<T: Real>(x: &[T], y: &mut [T], alpha: T, beta: T) {
    map1(
        x,
        y,
        #[inline(always)]
        |v| alpha * v + beta,
    );
}

/// a op b for one pair of elements.
#[inline(always)]
pub fn binary_value<T: Real>(op: BinaryOp, a: T, b: T) -> T {
    let flag = |c: bool| if c { T::one() } else { T::zero() };
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Max => a.max(b),
        BinaryOp::Min => a.min(b),
        BinaryOp::Ge => flag(a >= b),
        BinaryOp::Eq => flag(a == b),
        // Rust's powf follows C's pow: a negative base with an integer exponent keeps the
        // parity's sign, with a fractional one it is NaN, and x⁰ = 1, as PyTorch.
        BinaryOp::Pow => a.powf(b),
    }
}

/// Calls `f(out_row, a_offset, b_offset)` for every row of the output's last axis, where the
/// offsets are the operands' elements at the start of that row. Rows go in groups of about
/// [`CHUNK`] elements, each group vectorized, in parallel when the output is large.
#[inline(always)]
fn for_each_row<T: Real>(
    out: &mut [T],
    shape: &[usize],
    sa: &[usize],
    sb: &[usize],
    f: impl Fn(&mut [T], usize, usize) + Sync,
) {
    let rank = shape.len();
    let last = shape.last().copied().unwrap_or(1);
    if out.is_empty() || last == 0 {
        return;
    }
    let offsets = |row: usize| {
        let (mut rem, mut oa, mut ob) = (row, 0, 0);
        for k in (0..rank.saturating_sub(1)).rev() {
            let c = rem % shape[k];
            rem /= shape[k];
            oa += c * sa[k];
            ob += c * sb[k];
        }
        (oa, ob)
    };
    let rows_per_group = (CHUNK / last).max(1);
    let group = |(g, o): (usize, &mut [T])| {
        vectorized(
            #[inline(always)]
            || {
                for (r, o) in o.chunks_mut(last).enumerate() {
                    let (oa, ob) = offsets(g * rows_per_group + r);
                    f(o, oa, ob);
                }
            },
        )
    };
    if out.len() < PAR_MIN {
        out.chunks_mut(rows_per_group * last)
            .enumerate()
            .for_each(group);
    } else {
        out.par_chunks_mut(rows_per_group * last)
            .enumerate()
            .for_each(group);
    }
}

/// Runs `$run` with `$op` bound to each `BinaryOp` as a constant, so that every op gets its own
/// loop with the op inlined (and vectorized), not a `match` per element.
macro_rules! for_each_binary_op {
    ($op:expr, |$c:ident| $run:expr) => {
        match $op {
            BinaryOp::Add => {
                const $c: BinaryOp = BinaryOp::Add;
                $run
            }
            BinaryOp::Sub => {
                const $c: BinaryOp = BinaryOp::Sub;
                $run
            }
            BinaryOp::Mul => {
                const $c: BinaryOp = BinaryOp::Mul;
                $run
            }
            BinaryOp::Div => {
                const $c: BinaryOp = BinaryOp::Div;
                $run
            }
            BinaryOp::Max => {
                const $c: BinaryOp = BinaryOp::Max;
                $run
            }
            BinaryOp::Min => {
                const $c: BinaryOp = BinaryOp::Min;
                $run
            }
            BinaryOp::Ge => {
                const $c: BinaryOp = BinaryOp::Ge;
                $run
            }
            BinaryOp::Eq => {
                const $c: BinaryOp = BinaryOp::Eq;
                $run
            }
            BinaryOp::Pow => {
                const $c: BinaryOp = BinaryOp::Pow;
                $run
            }
        }
    };
}

/// out = a op b, with numpy broadcasting; out has `broadcast_shape(a_shape, b_shape)`.
// a: a_shape, b: b_shape, out: broadcast of both
pub fn binary<T: Real>(
    op: BinaryOp,
    a: &[T],
    a_shape: &[usize],
    b: &[T],
    b_shape: &[usize],
    out: &mut [T],
) {
    let shape = broadcast_shape(a_shape, b_shape).unwrap_or_else(|| {
        panic!(
            "binary {}: shapes a {a_shape:?} and b {b_shape:?} do not broadcast",
            op.name()
        )
    });
    let len: usize = shape.iter().product();
    assert!(
        a.len() == a_shape.iter().product::<usize>()
            && b.len() == b_shape.iter().product::<usize>()
            && out.len() == len,
        "binary {}: buffers of {}, {} and {} elements for shapes a {a_shape:?}, b {b_shape:?}, out {shape:?}",
        op.name(),
        a.len(),
        b.len(),
        out.len()
    );
    if a_shape == b_shape {
        return for_each_binary_op!(op, |OP| map2(
            a,
            b,
            out,
            #[inline(always)]
            |u, v| binary_value(OP, u, v)
        ));
    }
    let sa = broadcast_strides(a_shape, &shape);
    let sb = broadcast_strides(b_shape, &shape);
    let (la, lb) = (
        sa.last().copied().unwrap_or(0),
        sb.last().copied().unwrap_or(0),
    );
    // Each operand's row is either contiguous (stride 1) or one value repeated (stride 0).
    for_each_binary_op!(op, |OP| for_each_row(
        out,
        &shape,
        &sa,
        &sb,
        #[inline(always)]
        |o, oa, ob| {
            let n = o.len();
            match (la, lb) {
                (1, 1) => {
                    for ((o, &u), &v) in o.iter_mut().zip(&a[oa..oa + n]).zip(&b[ob..ob + n]) {
                        *o = binary_value(OP, u, v);
                    }
                }
                (1, _) => {
                    let v = b[ob];
                    for (o, &u) in o.iter_mut().zip(&a[oa..oa + n]) {
                        *o = binary_value(OP, u, v);
                    }
                }
                (_, 1) => {
                    let u = a[oa];
                    for (o, &v) in o.iter_mut().zip(&b[ob..ob + n]) {
                        *o = binary_value(OP, u, v);
                    }
                }
                _ => o.fill(binary_value(OP, a[oa], b[ob])),
            }
        }
    ))
}

/// out = x repeated along the axes where x has 1 (or no axis); x_shape must broadcast to out_shape.
// x: x_shape, out: out_shape
pub fn broadcast_to<T: Real>(x: &[T], x_shape: &[usize], out: &mut [T], out_shape: &[usize]) {
    assert!(
        broadcast_shape(x_shape, out_shape).as_deref() == Some(out_shape),
        "broadcast_to: x {x_shape:?} does not broadcast to {out_shape:?}"
    );
    let len: usize = out_shape.iter().product();
    assert!(
        x.len() == x_shape.iter().product::<usize>() && out.len() == len,
        "broadcast_to: buffers of {} and {} elements for x {x_shape:?} and out {out_shape:?}",
        x.len(),
        out.len()
    );
    let sx = broadcast_strides(x_shape, out_shape);
    let last = out_shape.last().copied().unwrap_or(1);
    let lx = sx.last().copied().unwrap_or(0);
    for_each_row(
        out,
        out_shape,
        &sx,
        &sx,
        #[inline(always)]
        |o, ox, _| {
            if lx == 0 {
                o.fill(x[ox]);
            } else {
                o.copy_from_slice(&x[ox..ox + last]);
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each smooth activation and its derivative through the f32 kernels (vectorized, in rayon
    /// tasks) against the f64 kernels, over 2^20 inputs in [−20, 20]: |f32 − f64| ≤ atol +
    /// rtol·c(v)·|f64|, with rtol a few f32 ulp (2^−24 ≈ 6·10⁻⁸ relative each) and atol 10⁻³⁰
    /// (only where the value underflows f32) or, for derivatives that cross 0, 10⁻⁷ (their terms
    /// are of order 1, so 10⁻⁷ is an ulp or two of them). c(v) = 1, except for the tanh-form GELU:
    /// c(v) = 1 + |2u| with u = √(2/π)(v + 0.044715v³), because σ(2u) = 1/(1 + e^(−2u)) turns
    /// f32's rounding of u into a relative error |2u| times larger in the lower tail (about
    /// 10⁻⁵ at v = −9, where GELU is −10⁻²⁵; the scalar kernel before vectorizing did the same).
    #[test]
    fn activations_in_f32_are_within_their_bounds_of_f64() {
        let n = 1 << 20;
        let x32: Vec<f32> = (0..n)
            .map(|i| (-20.0 + 40.0 * i as f64 / n as f64) as f32)
            .collect();
        let x64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
        let ones32 = vec![1.0f32; n];
        let ones64 = vec![1.0f64; n];
        let condition = |op: UnaryOp, v: f64| match op {
            UnaryOp::Gelu => 1.0 + (2.0 * gelu_u(v)).abs(),
            _ => 1.0,
        };
        // (op, forward rtol, derivative rtol, derivative atol)
        let bounds = [
            (UnaryOp::Gelu, 6e-7, 6e-7, 1e-7),
            (UnaryOp::GeluErf, 1.2e-6, 1.2e-6, 1e-7),
            (UnaryOp::Silu, 4e-7, 4e-7, 1e-7),
            (UnaryOp::Sigmoid, 4e-7, 6e-7, 1e-30),
            (UnaryOp::Tanh, 2.4e-7, 6e-7, 1e-30),
            (UnaryOp::Exp, 2.4e-7, 2.4e-7, 1e-30),
        ];
        for (op, rtol, drtol, datol) in bounds {
            let (mut y32, mut y64) = (vec![0f32; n], vec![0f64; n]);
            unary(op, &x32, &mut y32);
            unary(op, &x64, &mut y64);
            let (mut d32, mut d64) = (vec![0f32; n], vec![0f64; n]);
            unary_grad(op, &x32, &ones32, &mut d32);
            unary_grad(op, &x64, &ones64, &mut d64);
            for i in 0..n {
                let c = condition(op, x64[i]);
                // Past f32's range (e^v above v = 88.7) both are +∞.
                let (y, w) = (y32[i] as f64, y64[i].min(f64::from(f32::MAX) * 2.0));
                let ok = y == w || (y - w).abs() <= 1e-30 + rtol * c * w.abs();
                assert!(ok, "{op:?}({}) = {y:e} against {w:e}", x64[i]);
                let (d, w) = (d32[i] as f64, d64[i].min(f64::from(f32::MAX) * 2.0));
                let ok = d == w || (d - w).abs() <= datol + drtol * c * w.abs();
                assert!(ok, "{op:?}'({}) = {d:e} against {w:e}", x64[i]);
            }
        }
    }
}
