// Softmax and log-softmax along the last axis of x viewed as [rows, cols], and their gradients.
// Short rows get one invocation each; long rows (vocabulary-sized) a workgroup with a tree reduction.

// Invocations per workgroup: 256, or 128 or 64 where the device allows fewer (the device
// crate's Gpu::wide_workgroup). Every kernel here is correct for any power of two.
override WG: u32 = 256u;
// The lowest finite f32: the running max of a reducer that has seen no value yet.
const LOWEST: f32 = -3.4028234663852886e38;

// 1 selects the log-softmax variant of an entry point, 0 plain softmax.
override LOG: u32 = 0u;

struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// softmax_*: x -> y, both [rows, cols]
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// softmax_grad_*: (yf, dy) -> dx, all [rows, cols]; yf is the forward output.
@group(0) @binding(1) var<storage, read> yf: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

var<workgroup> part: array<vec2<f32>, WG>;

// Online softmax state (max m, Σ exp(v − m)) with one more value folded in. Rescaling only when
// the max moves keeps it at one exp per value, and every exponent is ≤ 0 so nothing overflows.
fn push(a: vec2<f32>, v: f32) -> vec2<f32> {
    if v > a.x {
        return vec2<f32>(v, a.y * exp(a.x - v) + 1.0);
    }
    return vec2<f32>(a.x, a.y + exp(v - a.x));
}

fn merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let m = max(a.x, b.x);
    return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

// y from x and the row's (max, sum of exponentials). (v − m) − log s keeps log-softmax exact
// for the max element, where v − (m + log s) would round.
fn finish(v: f32, st: vec2<f32>) -> f32 {
    if LOG == 1u {
        return (v - st.x) - log(st.y);
    }
    return exp(v - st.x) / st.y;
}

// The per-row sum the gradient needs: Σ dy·y for softmax, Σ dy for log-softmax.
fn grad_term(i: u32) -> f32 {
    if LOG == 1u {
        return dy[i];
    }
    return dy[i] * yf[i];
}

// softmax: dx = y ∘ (dy − s); log-softmax: dx = dy − exp(y)·s.
fn grad_value(i: u32, s: f32) -> f32 {
    if LOG == 1u {
        return dy[i] - exp(yf[i]) * s;
    }
    return yf[i] * (dy[i] - s);
}

fn row_of_thread(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * (nwg.x * WG);
}

fn row_of_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Sums part over the workgroup; every invocation gets the total. Call from uniform control flow.
fn tree_sum(lid: u32, v: f32) -> f32 {
    part[lid] = vec2<f32>(v, 0.0);
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            part[lid] += part[lid + s];
        }
        workgroupBarrier();
    }
    return part[0].x;
}

// One invocation per row, for rows shorter than a workgroup.
@compute @workgroup_size(WG)
fn softmax_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = row_of_thread(gid, nwg);
    if r >= p.rows {
        return;
    }
    let base = r * p.cols;
    var st = vec2<f32>(LOWEST, 0.0);
    for (var c = 0u; c < p.cols; c++) {
        st = push(st, x[base + c]);
    }
    for (var c = 0u; c < p.cols; c++) {
        y[base + c] = finish(x[base + c], st);
    }
}

// One workgroup per row: each invocation folds a strided slice, then the states merge in a tree.
// Neighbouring invocations read neighbouring columns, so loads coalesce.
@compute @workgroup_size(WG)
fn softmax_tree(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = row_of_group(wid, nwg);
    // Uniform across the workgroup, so returning before the barriers is allowed.
    if r >= p.rows {
        return;
    }
    let base = r * p.cols;
    var st = vec2<f32>(LOWEST, 0.0);
    for (var c = lid; c < p.cols; c += WG) {
        st = push(st, x[base + c]);
    }
    part[lid] = st;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            part[lid] = merge(part[lid], part[lid + s]);
        }
        workgroupBarrier();
    }
    let row = part[0];
    for (var c = lid; c < p.cols; c += WG) {
        y[base + c] = finish(x[base + c], row);
    }
}

@compute @workgroup_size(WG)
fn softmax_grad_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = row_of_thread(gid, nwg);
    if r >= p.rows {
        return;
    }
    let base = r * p.cols;
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        s += grad_term(base + c);
    }
    for (var c = 0u; c < p.cols; c++) {
        dx[base + c] = grad_value(base + c, s);
    }
}

@compute @workgroup_size(WG)
fn softmax_grad_tree(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = row_of_group(wid, nwg);
    if r >= p.rows {
        return;
    }
    let base = r * p.cols;
    var s = 0.0;
    for (var c = lid; c < p.cols; c += WG) {
        s += grad_term(base + c);
    }
    let total = tree_sum(lid, s);
    for (var c = lid; c < p.cols; c += WG) {
        dx[base + c] = grad_value(base + c, total);
    }
}
