// Selection kernels: index_select and gather along one axis of x viewed as [outer, n, inner], with
// their gradients (deterministic scatter-adds: each output summed by one invocation in id order,
// no atomics), and where (mask ? a : b) with numpy broadcasting of all three operands.
// Ids are f32; one that is not an integer in [0, n) is never dereferenced: its outputs are NaN
// and its gradient adds nothing.

// Invocations per workgroup: 256, or 128 or 64 where the device allows fewer (the device
// crate's Gpu::wide_workgroup). Every kernel here is correct for any power of two.
override WG: u32 = 256u;
// The id of a position whose stored value is not an integer in [0, n).
const NONE: u32 = 0xffffffffu;

struct Params {
    outer: u32,
    n: u32,
    k: u32,
    inner: u32,
    // A quiet NaN's bit pattern, stored for a bad id (WGSL has no NaN constant).
    nan_bits: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// where: the output shape and, per operand, the element stride of each output axis (0 where it
// broadcasts). Axis d lives at [d / 4][d % 4].
struct WhereParams {
    len: u32,
    rank: u32,
    _pad0: u32,
    _pad1: u32,
    shape: array<vec4<u32>, 2>,
    stride_m: array<vec4<u32>, 2>,
    stride_a: array<vec4<u32>, 2>,
    stride_b: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(0) var<uniform> pw: WhereParams;

// index_select: (x, ids) -> y; gather: (x, ids = the index) -> y.
// x: [outer, n, inner]; ids: [k] (index_select) or [outer, k, inner] (gather); y: [outer, k, inner]
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// index_select_grad, gather_grad: (gids, dy) -> dx, with dy: [outer, k, inner], dx: x's shape.
@group(0) @binding(1) var<storage, read> gids: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// where: (mask, a, b) -> out
@group(0) @binding(1) var<storage, read> mask: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// Prefix sums of the match flags, then the matching positions of one chunk in order.
var<workgroup> scan: array<u32, WG>;
var<workgroup> hits: array<u32, WG>;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * (nwg.x * WG);
}

fn position(f: f32) -> u32 {
    // Decided on the bits first: WGSL lets a driver assume NaN never occurs (Metal compiles with
    // fast math, DX12 without IEEE strictness), and then a NaN may pass float comparisons. Bits
    // below 0x7f800000 are +0 up to the largest finite float, 0x80000000 is −0: no NaN, no
    // infinity, no negative number, so the comparisons after it see ordinary values only.
    let bits = bitcast<u32>(f);
    // u32(f) saturates for huge values, and the integer bound keeps reads in range.
    if (bits < 0x7f800000u || bits == 0x80000000u) && f == floor(f) && u32(f) < p.n {
        return u32(f);
    }
    return NONE;
}

// y[o, t, j] = x[o, ids[t], j]. One invocation per output element.
@compute @workgroup_size(WG)
fn index_select(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= p.outer * p.k * p.inner {
        return;
    }
    let j = i % p.inner;
    let r = i / p.inner;
    let v = position(ids[r % p.k]);
    // A branch, not select(): select would evaluate the out-of-bounds read too.
    if v == NONE {
        y[i] = bitcast<f32>(p.nan_bits);
    } else {
        y[i] = x[((r / p.k) * p.n + v) * p.inner + j];
    }
}

// dx[o, v, j] = Σ_{t: ids[t] == v} dy[o, t, j]. The columns c = o·inner + j of one row v of dx
// are independent: one workgroup per (v, block of WG columns) walks the ids in chunks of WG, a
// prefix sum packs the chunk's matches in order, then each invocation adds its column of the
// matching dy rows. Every dx value is summed by one invocation in increasing t.
@compute @workgroup_size(WG)
fn index_select_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = wid.x + wid.y * nwg.x;
    let cols = p.outer * p.inner;
    let blocks = (cols + WG - 1u) / WG;
    let v = g / blocks;
    // Uniform across the workgroup, so returning before the barriers is allowed.
    if v >= p.n {
        return;
    }
    let c = (g % blocks) * WG + lid;
    let o = c / p.inner;
    let j = c % p.inner;
    var acc = 0.0;
    for (var c0 = 0u; c0 < p.k; c0 += WG) {
        let t = c0 + lid;
        var hit = 0u;
        if t < p.k && position(gids[t]) == v {
            hit = 1u;
        }
        scan[lid] = hit;
        workgroupBarrier();
        // Hillis–Steele inclusive scan: log2(WG) steps.
        for (var s = 1u; s < WG; s <<= 1u) {
            var sum = scan[lid];
            if lid >= s {
                sum += scan[lid - s];
            }
            workgroupBarrier();
            scan[lid] = sum;
            workgroupBarrier();
        }
        if hit == 1u {
            hits[scan[lid] - 1u] = t;
        }
        // Also the barrier that publishes hits.
        let count = workgroupUniformLoad(&scan[WG - 1u]);
        if count == 0u {
            continue;
        }
        if c < cols {
            for (var h = 0u; h < count; h++) {
                acc += dy[(o * p.k + hits[h]) * p.inner + j];
            }
        }
        // The next chunk overwrites scan and hits.
        workgroupBarrier();
    }
    if c < cols {
        dx[(o * p.n + v) * p.inner + j] = acc;
    }
}

// y[o, t, j] = x[o, index[o, t, j], j] (torch.gather). One invocation per output element.
@compute @workgroup_size(WG)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= p.outer * p.k * p.inner {
        return;
    }
    let j = i % p.inner;
    let o = i / (p.k * p.inner);
    let v = position(ids[i]);
    if v == NONE {
        y[i] = bitcast<f32>(p.nan_bits);
    } else {
        y[i] = x[(o * p.n + v) * p.inner + j];
    }
}

// dx[o, v, j] = Σ_{t: index[o, t, j] == v} dy[o, t, j]. One invocation per dx element walks its
// column of the index in increasing t: k tests per element, so this suits gathers of a few
// positions per column (picking a class's logit, top-k), not permutations of long axes.
@compute @workgroup_size(WG)
fn gather_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= p.outer * p.n * p.inner {
        return;
    }
    let j = i % p.inner;
    let r = i / p.inner;
    let v = r % p.n;
    let o = r / p.n;
    var acc = 0.0;
    for (var t = 0u; t < p.k; t++) {
        let at = (o * p.k + t) * p.inner + j;
        if position(gids[at]) == v {
            acc += dy[at];
        }
    }
    dx[i] = acc;
}

// out = mask ≠ 0 ? a : b with numpy broadcasting. The mask test is on the bits (any value but ±0,
// NaN included), so it holds however the driver treats NaN comparisons.
@compute @workgroup_size(WG)
fn where_select(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= pw.len {
        return;
    }
    // Offsets of output element i in mask, a and b: peel coordinates off from the last axis.
    var rem = i;
    var off = vec3<u32>(0u, 0u, 0u);
    for (var d = i32(pw.rank) - 1; d >= 0; d--) {
        let q = u32(d) / 4u;
        let r = u32(d) % 4u;
        let size = pw.shape[q][r];
        let c = rem % size;
        rem = rem / size;
        off += c * vec3<u32>(pw.stride_m[q][r], pw.stride_a[q][r], pw.stride_b[q][r]);
    }
    let take_a = (bitcast<u32>(mask[off.x]) & 0x7fffffffu) != 0u;
    out[i] = select(b[off.z], a[off.y], take_a);
}
