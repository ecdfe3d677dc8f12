// Elementwise kernels: unary activations and their gradients, affine maps, broadcasting binary ops
// and broadcast copies. The op is an override constant, so each op is its own branch-free pipeline.

const WG: u32 = 256u;

// UnaryOp / BinaryOp code, as in kernels::elementwise (`UnaryOp::code`, `BinaryOp::code`).
override OP: u32 = 0u;

// sqrt(2/pi) and the cubic coefficient of the tanh approximation of GELU.
const GELU_K: f32 = 0.7978845608028654;
const GELU_C: f32 = 0.044715;

// Flat kernels (unary, unary_grad, affine): one element per invocation.
struct Params {
    len: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

// Broadcasting kernels (binary, broadcast_to): the output shape and, per operand, the element
// stride of each output axis (0 where the operand broadcasts). Axis k lives at [k / 4][k % 4].
struct BroadcastParams {
    len: u32,
    rank: u32,
    _pad0: u32,
    _pad1: u32,
    shape: array<vec4<u32>, 2>,
    stride_a: array<vec4<u32>, 2>,
    stride_b: array<vec4<u32>, 2>,
}

// Epilogues the planner fuses after a product (fuse.rs), in place: element i belongs to channel
// (i / inner) % channels; relu is 0 or 1.
struct EpilogueParams {
    len: u32,
    inner: u32,
    channels: u32,
    relu: u32,
}

// Entry points bind different sets of buffers, so each set has its own globals; bindings only
// have to be distinct within one entry point.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(0) var<uniform> pb: BroadcastParams;
@group(0) @binding(0) var<uniform> pe: EpilogueParams;

// unary, affine: x -> y. bias_act: bias (as x) -> y in place; relu_mask: x -> dx (as y) in place.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// unary_grad: (x, dy) -> dx
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// binary: (a, b) -> out; broadcast_to: a -> bcast
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> bcast: array<f32>;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * (nwg.x * WG);
}

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

fn unary_op(v: f32) -> f32 {
    switch OP {
        case 0u: { return select(v, 0.0, v < 0.0); } // NaN passes through
        case 1u: { return gelu(v); }
        case 2u: { return tanh_safe(v); }
        case 3u: { return sigmoid(v); }
        case 4u: { return exp(v); }
        case 5u: { return log(v); }
        case 6u: { return -v; }
        case 7u: { return sqrt(v); }
        case 8u: { return abs(v); }
        case 9u: { return v * v; }
        default: { return 1.0 / v; }
    }
}

// f'(v), recomputed from the forward input. relu'(0) = 0 and abs'(0) = 0.
fn unary_deriv(v: f32) -> f32 {
    switch OP {
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
        default: { return -1.0 / (v * v); }
    }
}

fn binary_op(u: f32, v: f32) -> f32 {
    switch OP {
        case 0u: { return u + v; }
        case 1u: { return u - v; }
        case 2u: { return u * v; }
        case 3u: { return u / v; }
        case 4u: { return max(u, v); }
        case 5u: { return min(u, v); }
        case 6u: { return select(0.0, 1.0, u >= v); }
        default: { return select(0.0, 1.0, u == v); }
    }
}

// y = f(x)
@compute @workgroup_size(WG)
fn unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= p.len {
        return;
    }
    y[i] = unary_op(x[i]);
}

// dx = dy · f'(x)
@compute @workgroup_size(WG)
fn unary_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= p.len {
        return;
    }
    dx[i] = dy[i] * unary_deriv(x[i]);
}

// y = alpha · x + beta
@compute @workgroup_size(WG)
fn affine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= p.len {
        return;
    }
    y[i] = p.alpha * x[i] + p.beta;
}

// Equal shapes: no index arithmetic at all.
@compute @workgroup_size(WG)
fn binary_flat(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= pb.len {
        return;
    }
    out[i] = binary_op(a[i], b[i]);
}

// Offsets of output element i in a and b: peel coordinates off from the last (fastest) axis.
fn operand_offsets(i: u32) -> vec2<u32> {
    var rem = i;
    var off = vec2<u32>(0u, 0u);
    for (var k = i32(pb.rank) - 1; k >= 0; k--) {
        let q = u32(k) / 4u;
        let r = u32(k) % 4u;
        let d = pb.shape[q][r];
        let c = rem % d;
        rem = rem / d;
        off += c * vec2<u32>(pb.stride_a[q][r], pb.stride_b[q][r]);
    }
    return off;
}

// out = a op b with numpy broadcasting.
@compute @workgroup_size(WG)
fn binary_bcast(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= pb.len {
        return;
    }
    let off = operand_offsets(i);
    out[i] = binary_op(a[off.x], b[off.y]);
}

// bcast = a broadcast to the output shape (stride_b unused).
@compute @workgroup_size(WG)
fn broadcast_to(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= pb.len {
        return;
    }
    bcast[i] = a[operand_offsets(i).x];
}

// y = relu?(y + bias[channel]) in place: the bias add and ReLU after a convolution or a matrix
// product, computed as the separate add and ReLU kernels would.
@compute @workgroup_size(WG)
fn bias_act(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= pe.len {
        return;
    }
    let v = y[i] + x[(i / pe.inner) % pe.channels];
    y[i] = select(v, select(v, 0.0, v < 0.0), pe.relu != 0u);
}

// dx = dx · relu'(x) in place (dx bound as y): the ReLU gradient folded into the max-pooling
// gradient before it.
@compute @workgroup_size(WG)
fn relu_mask(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= pe.len {
        return;
    }
    y[i] = y[i] * select(0.0, 1.0, x[i] > 0.0);
}
