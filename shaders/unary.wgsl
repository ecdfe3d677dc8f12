// The unary functions, by `UnaryOp::code`, and the epilogue of a product: one definition shared by
// the elementwise kernels and the epilogues inside matmul.wgsl and conv2d.wgsl. No bindings, no
// entry points: the device crate's shader table prepends this file to the files that use it.

// The `ACT` override of a product kernel that has no activation in its epilogue.
const NO_ACT: u32 = 0xffffffffu;

// sqrt(2/pi) and the cubic coefficient of the tanh approximation of GELU.
const GELU_K: f32 = 0.7978845608028654;
const GELU_C: f32 = 0.044715;

// Built-in tanh may be computed as (e^2x - 1) / (e^2x + 1), which is inf/inf = NaN for large |x|
// on some drivers; tanh(±15) is ±1 in f32 already.
fn tanh_safe(v: f32) -> f32 {
    return tanh(clamp(v, -15.0, 15.0));
}

// exp(-|v|) never overflows, so both branches stay finite.
fn sigmoid(v: f32) -> f32 {
    let e = exp(-abs(v));
    let s = 1.0 / (1.0 + e);
    return select(e * s, s, v >= 0.0);
}

// σ'(v) = σ(v)(1 - σ(v)) = e / (1 + e)² with e = exp(-|v|): no cancellation where σ is near 1.
fn sigmoid_grad(v: f32) -> f32 {
    let e = exp(-abs(v));
    let d = 1.0 + e;
    return e / (d * d);
}

// 1 - tanh²(v) = 4e / (1 + e)² with e = exp(-2|v|): no cancellation where tanh is near ±1.
fn tanh_grad(v: f32) -> f32 {
    let e = exp(-2.0 * abs(v));
    let d = 1.0 + e;
    return 4.0 * e / (d * d);
}

// WGSL has no erf, so GELU is the tanh approximation 0.5·v·(1 + tanh(u)), u = k·(v + c·v³).
// 0.5·(1 + tanh(u)) = sigmoid(2u), which stays accurate in the negative tail where 1 + tanh(u)
// would cancel.
fn gelu(v: f32) -> f32 {
    return v * sigmoid(2.0 * GELU_K * (v + GELU_C * v * v * v));
}

// d/dv v·σ(2u) = σ(2u) + 2v·σ'(2u)·k(1 + 3c·v²)
fn gelu_grad(v: f32) -> f32 {
    let z = 2.0 * GELU_K * (v + GELU_C * v * v * v);
    return sigmoid(z) + 2.0 * v * sigmoid_grad(z) * GELU_K * (1.0 + 3.0 * GELU_C * v * v);
}

// erfc(x) for x ≥ 0 as t·exp(−x² + P(t)), t = 1 / (1 + x/2), with the Chebyshev-fitted
// polynomial P of Numerical Recipes' `erfcc`: relative error below 1.2e-7 everywhere, so the
// tail keeps its accuracy. WGSL has no erf.
fn erfc_nonneg(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * x);
    let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(-x * x + p);
}

// Φ(v) = 0.5·(1 + erf(v/√2)), the standard normal CDF. For v < 0 it is 0.5·erfc(|v|/√2)
// directly, so the negative tail does not cancel.
fn normal_cdf(v: f32) -> f32 {
    let c = 0.5 * erfc_nonneg(abs(v) * 0.7071067811865476);
    return select(1.0 - c, c, v < 0.0);
}

// The exact GELU v·Φ(v) and its derivative Φ(v) + v·φ(v), φ the standard normal density.
fn gelu_erf(v: f32) -> f32 {
    return v * normal_cdf(v);
}

fn gelu_erf_grad(v: f32) -> f32 {
    return normal_cdf(v) + v * 0.3989422804014327 * exp(-0.5 * v * v);
}

// max(v, 0), with NaN passed through. Decided on the bits: a driver may assume NaN never occurs
// (fast math) and turn a comparison into a max that returns 0 for NaN, hiding it. Bits in
// (0x80000000, 0xff800000] are the numbers below 0, −∞ included; −0 and every NaN lie outside.
fn relu(v: f32) -> f32 {
    let bits = bitcast<u32>(v);
    return select(v, 0.0, bits > 0x80000000u && bits <= 0xff800000u);
}

// f(v) for the UnaryOp with code `op`. Callers pass an override constant, so the switch folds away.
fn unary_value(op: u32, v: f32) -> f32 {
    switch op {
        case 0u: { return relu(v); }
        case 1u: { return gelu(v); }
        case 2u: { return tanh_safe(v); }
        case 3u: { return sigmoid(v); }
        case 4u: { return exp(v); }
        case 5u: { return log(v); }
        case 6u: { return -v; }
        case 7u: { return sqrt(v); }
        case 8u: { return abs(v); }
        case 9u: { return v * v; }
        case 10u: { return 1.0 / v; }
        case 11u: { return v * sigmoid(v); }
        case 12u: { return 1.0 / sqrt(v); } // +inf at 0, as PyTorch (inverseSqrt(0) is undefined)
        case 13u: { return gelu_erf(v); }
        default: { return v; }
    }
}

// f'(v), recomputed from the forward input. relu'(0) = 0 and abs'(0) = 0.
fn unary_deriv(op: u32, v: f32) -> f32 {
    switch op {
        case 0u: { return select(0.0, 1.0, v > 0.0); }
        case 1u: { return gelu_grad(v); }
        case 2u: { return tanh_grad(v); }
        case 3u: { return sigmoid_grad(v); }
        case 4u: { return exp(v); }
        case 5u: { return 1.0 / v; }
        case 6u: { return -1.0; }
        case 7u: { return 0.5 / sqrt(v); }
        case 8u: { return sign(v); }
        case 9u: { return 2.0 * v; }
        case 10u: { return -1.0 / (v * v); }
        case 11u: { return sigmoid(v) + v * sigmoid_grad(v); } // d/dv v·σ(v) = σ(v) + v·σ'(v)
        case 12u: { return -0.5 / (v * sqrt(v)); }
        case 13u: { return gelu_erf_grad(v); }
        default: { return 1.0; }
    }
}

// The epilogue of a product (fuse.rs): act(v + bias), computed as the separate bias add and unary
// kernels would. `act` is a UnaryOp code or NO_ACT; `bias` is read only when `has_bias`.
fn epilogue(v: f32, has_bias: bool, bias: f32, act: u32) -> f32 {
    var r = v;
    if has_bias {
        r = r + bias;
    }
    if act != NO_ACT {
        r = unary_value(act, r);
    }
    return r;
}
