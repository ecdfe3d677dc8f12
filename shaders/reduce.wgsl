// Reductions of x viewed as [outer, n, inner] over n, to y: [outer, inner]: sum, mean, max, argmax.
// Long rows get a workgroup per output (strided loop, then a tree in shared memory); short rows a thread.

// Invocations per workgroup: 256, or 128 or 64 where the device allows fewer (the device
// crate's Gpu::wide_workgroup). Every kernel here is correct for any power of two.
override WG: u32 = 256u;
// No candidate yet (a thread that saw no element); never a valid index since n < 2^32 - 1.
const NONE: u32 = 0xffffffffu;

// ReduceOp code: 0 sum, 1 mean, 2 max, 3 argmax (first maximum, written as f32).
override OP: u32 = 0u;

struct Params {
    outer: u32,
    n: u32,
    inner: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

var<workgroup> part_v: array<f32, WG>;
var<workgroup> part_i: array<u32, WG>;

// The running state of one reducer: a sum, or the best value and its index.
struct Acc {
    v: f32,
    i: u32,
}

fn is_sum() -> bool {
    return OP < 2u;
}

fn empty() -> Acc {
    return Acc(0.0, NONE);
}

// Folds in element j (value v). Elements arrive in increasing j per reducer, so a strict `>`
// keeps the first maximum.
fn push(acc: Acc, v: f32, j: u32) -> Acc {
    if is_sum() {
        return Acc(acc.v + v, j);
    }
    if acc.i == NONE || v > acc.v {
        return Acc(v, j);
    }
    return acc;
}

// Merges two partial results; ties go to the lower index so the first maximum wins.
fn merge(l: Acc, r: Acc) -> Acc {
    if is_sum() {
        return Acc(l.v + r.v, min(l.i, r.i));
    }
    if r.i == NONE {
        return l;
    }
    if l.i == NONE || r.v > l.v || (r.v == l.v && r.i < l.i) {
        return r;
    }
    return l;
}

fn finish(acc: Acc) -> f32 {
    switch OP {
        case 1u: { return acc.v / f32(p.n); }
        case 3u: { return f32(acc.i); }
        default: { return acc.v; }
    }
}

// Element offset of (outer o, reduced 0, inner i) for output index `out`.
fn base_of(out: u32) -> u32 {
    return (out / p.inner) * p.n * p.inner + out % p.inner;
}

// One workgroup per output. The grid may be 2-D when outputs exceed the per-dimension limit.
@compute @workgroup_size(WG)
fn reduce_tree(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let out = wid.x + wid.y * nwg.x;
    // Uniform across the workgroup, so returning before the barriers is allowed.
    if out >= p.outer * p.inner {
        return;
    }
    let base = base_of(out);
    var acc = empty();
    for (var j = lid; j < p.n; j += WG) {
        acc = push(acc, x[base + j * p.inner], j);
    }
    part_v[lid] = acc.v;
    part_i[lid] = acc.i;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            let m = merge(Acc(part_v[lid], part_i[lid]), Acc(part_v[lid + s], part_i[lid + s]));
            part_v[lid] = m.v;
            part_i[lid] = m.i;
        }
        workgroupBarrier();
    }
    if lid == 0u {
        y[out] = finish(Acc(part_v[0], part_i[0]));
    }
}

// One invocation per output: for short rows, where a workgroup per output would sit mostly idle.
// Neighbouring invocations read neighbouring inner elements, so loads coalesce when inner > 1.
@compute @workgroup_size(WG)
fn reduce_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let out = gid.x + gid.y * (nwg.x * WG);
    if out >= p.outer * p.inner {
        return;
    }
    let base = base_of(out);
    var acc = empty();
    for (var j = 0u; j < p.n; j++) {
        acc = push(acc, x[base + j * p.inner], j);
    }
    y[out] = finish(acc);
}
