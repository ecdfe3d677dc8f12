// Classification loss kernels: mean softmax cross-entropy over rows of logits, its gradient, and
// the count of rows whose argmax is the target. Targets are class indices stored as f32.

// Invocations per workgroup: 256, or 128 or 64 where the device allows fewer (the device
// crate's Gpu::wide_workgroup). Every kernel here is correct for any power of two.
override WG: u32 = 256u;
// Target of a row whose stored class is not an integer in [0, classes).
const NONE: u32 = 0xffffffffu;

struct Params {
    rows: u32,
    classes: u32,
    // The bit pattern of a quiet NaN: WGSL has no NaN constant, and a bad target must make the
    // result NaN however the driver treats NaN arithmetic, so it is stored, never computed.
    nan_bits: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// logits: [rows, classes], targets: [rows]
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<f32>;
// cross_entropy: loss [1]; count_correct: the count [1].
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
// cross_entropy_grad: dloss [1] -> dlogits [rows, classes]
@group(0) @binding(3) var<storage, read> dloss: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;

var<workgroup> part_f: array<f32, WG>;
var<workgroup> part_u: array<u32, WG>;

fn target_of(r: u32) -> u32 {
    let t = targets[r];
    // Decided on the bits first: WGSL lets a driver assume NaN never occurs (Metal compiles with
    // fast math, DX12 without IEEE strictness), and then a NaN may pass float comparisons. Bits
    // below 0x7f800000 are +0 up to the largest finite float, 0x80000000 is −0: no NaN, no
    // infinity, no negative number, so the comparisons after it see ordinary values only.
    let bits = bitcast<u32>(t);
    if (bits < 0x7f800000u || bits == 0x80000000u) && t == floor(t) && u32(t) < p.classes {
        return u32(t);
    }
    return NONE;
}

fn row_max(base: u32) -> f32 {
    var m = logits[base];
    for (var c = 1u; c < p.classes; c++) {
        m = max(m, logits[base + c]);
    }
    return m;
}

// Σ exp(l - m): at least 1 (the max term), so its log is finite.
fn row_sum_exp(base: u32, m: f32) -> f32 {
    var s = 0.0;
    for (var c = 0u; c < p.classes; c++) {
        s += exp(logits[base + c] - m);
    }
    return s;
}

// Index of the first maximum of a row.
fn row_argmax(base: u32) -> u32 {
    var best = 0u;
    var m = logits[base];
    for (var c = 1u; c < p.classes; c++) {
        let v = logits[base + c];
        if v > m {
            m = v;
            best = c;
        }
    }
    return best;
}

// Sums part_f and part_u over the workgroup into element 0. Call from uniform control flow.
fn tree_sum(lid: u32) {
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            part_f[lid] += part_f[lid + s];
            part_u[lid] += part_u[lid + s];
        }
        workgroupBarrier();
    }
}

// loss[0] = mean over rows of logsumexp(row) - row[target]. One workgroup: invocations stride
// over rows, then a tree sum. part_u counts bad targets.
@compute @workgroup_size(WG)
fn cross_entropy(@builtin(local_invocation_index) lid: u32) {
    var sum = 0.0;
    var bad = 0u;
    for (var r = lid; r < p.rows; r += WG) {
        let t = target_of(r);
        if t == NONE {
            bad += 1u;
            continue;
        }
        let base = r * p.classes;
        let m = row_max(base);
        sum += log(row_sum_exp(base, m)) + m - logits[base + t];
    }
    part_f[lid] = sum;
    part_u[lid] = bad;
    tree_sum(lid);
    if lid == 0u {
        loss[0] = select(part_f[0] / f32(p.rows), bitcast<f32>(p.nan_bits), part_u[0] > 0u);
    }
}

// dlogits = (softmax(row) - onehot(target)) · dloss[0] / rows; a row with a bad target is NaN.
// One invocation per row: for few classes, where a workgroup per row would sit mostly idle.
@compute @workgroup_size(WG)
fn cross_entropy_grad_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * (nwg.x * WG);
    if r >= p.rows {
        return;
    }
    let base = r * p.classes;
    let t = target_of(r);
    let scale = dloss[0] / f32(p.rows);
    let m = row_max(base);
    let inv = 1.0 / row_sum_exp(base, m);
    for (var c = 0u; c < p.classes; c++) {
        let g = exp(logits[base + c] - m) * inv - select(0.0, 1.0, c == t);
        dlogits[base + c] = select(g * scale, bitcast<f32>(p.nan_bits), t == NONE);
    }
}

// The same gradient with one workgroup per row, for many classes: the row max and the sum of
// exponentials are tree reductions, and neighbouring invocations touch neighbouring classes.
@compute @workgroup_size(WG)
fn cross_entropy_grad_tree(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = wid.x + wid.y * nwg.x;
    // Uniform across the workgroup, so returning before the barriers is allowed.
    if r >= p.rows {
        return;
    }
    let base = r * p.classes;
    var m = logits[base];
    for (var c = lid; c < p.classes; c += WG) {
        m = max(m, logits[base + c]);
    }
    part_f[lid] = m;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            part_f[lid] = max(part_f[lid], part_f[lid + s]);
        }
        workgroupBarrier();
    }
    let row_m = part_f[0];
    // Everyone must have read the max before part_f is reused for the sum.
    workgroupBarrier();
    var sum = 0.0;
    for (var c = lid; c < p.classes; c += WG) {
        sum += exp(logits[base + c] - row_m);
    }
    part_f[lid] = sum;
    part_u[lid] = 0u;
    tree_sum(lid);
    let inv = 1.0 / part_f[0];
    let t = target_of(r);
    let scale = dloss[0] / f32(p.rows);
    for (var c = lid; c < p.classes; c += WG) {
        let g = exp(logits[base + c] - row_m) * inv - select(0.0, 1.0, c == t);
        dlogits[base + c] = select(g * scale, bitcast<f32>(p.nan_bits), t == NONE);
    }
}

// loss[0] = number of rows whose first argmax equals the target, as f32. One workgroup.
@compute @workgroup_size(WG)
fn count_correct(@builtin(local_invocation_index) lid: u32) {
    var hits = 0u;
    for (var r = lid; r < p.rows; r += WG) {
        if row_argmax(r * p.classes) == target_of(r) {
            hits += 1u;
        }
    }
    part_f[lid] = 0.0;
    part_u[lid] = hits;
    tree_sum(lid);
    if lid == 0u {
        loss[0] = f32(part_u[0]);
    }
}
