// Elementwise kernels: unary activations and their gradients, affine maps, broadcasting binary ops,
// broadcast copies and strided copies (permute, slice, concat). The op is an override constant, so each op is its own branch-free pipeline.
// The unary functions themselves are in unary.wgsl (prepended by the shader table), shared with
// the epilogues of the product kernels.

// Invocations per workgroup: 256, or 128 or 64 where the device allows fewer (the device
// crate's Gpu::wide_workgroup). Every kernel here is correct for any power of two.
override WG: u32 = 256u;

// UnaryOp / BinaryOp code, as in kernels::elementwise (`UnaryOp::code`, `BinaryOp::code`).
override OP: u32 = 0u;

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
    // A quiet NaN's bit pattern: stored, never computed (WGSL has no NaN constant).
    nan_bits: u32,
    // +∞'s bit pattern, likewise (pow of a zero base under a negative exponent).
    inf_bits: u32,
    shape: array<vec4<u32>, 2>,
    stride_a: array<vec4<u32>, 2>,
    stride_b: array<vec4<u32>, 2>,
}

// strided_copy: a region of `shape` read from a at src_offset + Σ c·src_stride and written to
// bcast at dst_offset + Σ c·dst_stride. Axis k lives at [k / 4][k % 4].
struct CopyParams {
    len: u32,
    rank: u32,
    src_offset: u32,
    dst_offset: u32,
    shape: array<vec4<u32>, 2>,
    src_stride: array<vec4<u32>, 2>,
    dst_stride: array<vec4<u32>, 2>,
}

// Entry points bind different sets of buffers, so each set has its own globals; bindings only
// have to be distinct within one entry point.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(0) var<uniform> pb: BroadcastParams;
@group(0) @binding(0) var<uniform> pc: CopyParams;

// unary, affine: x -> y. relu_mask: x -> dx (as y) in place.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// unary_grad: (x, dy) -> dx
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// binary: (a, b) -> out; broadcast_to and strided_copy: a -> bcast
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> bcast: array<f32>;
// The flat kernels' 4-wide forms (lengths that are multiples of 4), their operands as vectors:
// binary_flat4: (a4, b4) -> out4; unary4: a4 -> y4; unary_grad4: (x = a4, dy = b4) -> dx = out4.
// On a software adapter every load of a lane-varying address is a loop over the lanes, so one
// vector load per invocation instead of four scalar ones takes most of a flat kernel's time off.
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y4: array<vec4<f32>>;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * (nwg.x * WG);
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
        case 7u: { return select(0.0, 1.0, u == v); }
        default: { return pow_torch(u, v); }
    }
}

// u^v as PyTorch (and C's pow) define it. WGSL's pow is undefined for a base ≤ 0, so the
// magnitude is exp2(v·log2|u|) for u ≠ 0 and 0 or +∞ for u = ±0; a negative base (−0 included)
// keeps its sign under an odd integer exponent, a negative base under a fractional exponent is
// NaN, and u^0 = 1 for every u. NaN and ∞ come from bit patterns in the uniform: WGSL has no
// constants for them.
fn pow_torch(u: f32, v: f32) -> f32 {
    if v == 0.0 {
        return 1.0;
    }
    let negative = (bitcast<u32>(u) >> 31u) == 1u;
    let integer = floor(v) == v;
    let odd = integer && abs(v) < 16777216.0 && (i32(v) & 1) != 0;
    var m: f32;
    if u == 0.0 {
        m = select(bitcast<f32>(pb.inf_bits), 0.0, v > 0.0);
    } else {
        if negative && !integer {
            return bitcast<f32>(pb.nan_bits);
        }
        m = exp2(v * log2(abs(u)));
    }
    return select(m, -m, negative && odd);
}

// y = f(x)
@compute @workgroup_size(WG)
fn unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= p.len {
        return;
    }
    y[i] = unary_value(OP, x[i]);
}

// y = f(x), 4 elements per invocation.
@compute @workgroup_size(WG)
fn unary4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= p.len / 4u {
        return;
    }
    let v = a4[i];
    y4[i] = vec4<f32>(unary_value(OP, v.x), unary_value(OP, v.y), unary_value(OP, v.z), unary_value(OP, v.w));
}

// dx = dy · f'(x)
@compute @workgroup_size(WG)
fn unary_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= p.len {
        return;
    }
    dx[i] = dy[i] * unary_deriv(OP, x[i]);
}

// dx = dy · f'(x), 4 elements per invocation.
@compute @workgroup_size(WG)
fn unary_grad4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= p.len / 4u {
        return;
    }
    let v = a4[i];
    out4[i] = b4[i] * vec4<f32>(unary_deriv(OP, v.x), unary_deriv(OP, v.y), unary_deriv(OP, v.z), unary_deriv(OP, v.w));
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

// binary_flat, 4 elements per invocation.
@compute @workgroup_size(WG)
fn binary_flat4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= pb.len / 4u {
        return;
    }
    let u = a4[i];
    let v = b4[i];
    out4[i] = vec4<f32>(binary_op(u.x, v.x), binary_op(u.y, v.y), binary_op(u.z, v.z), binary_op(u.w, v.w));
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

// One region of a permute, slice or concat: bcast[dst] = a[src] for every coordinate of the region.
@compute @workgroup_size(WG)
fn strided_copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= pc.len {
        return;
    }
    var rem = i;
    var src = pc.src_offset;
    var dst = pc.dst_offset;
    for (var k = i32(pc.rank) - 1; k >= 0; k--) {
        let q = u32(k) / 4u;
        let r = u32(k) % 4u;
        let d = pc.shape[q][r];
        let c = rem % d;
        rem = rem / d;
        src += c * pc.src_stride[q][r];
        dst += c * pc.dst_stride[q][r];
    }
    bcast[dst] = a[src];
}

// dx = dx · relu'(x) in place (dx bound as y): the ReLU gradient folded into the max-pooling
// gradient before it.
@compute @workgroup_size(WG)
fn relu_mask(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= p.len {
        return;
    }
    y[i] = y[i] * select(0.0, 1.0, x[i] > 0.0);
}
