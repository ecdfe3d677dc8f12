// Layer and RMS normalization over the last axis of x viewed as [rows, dim]: forward, input
// gradient and gamma gradient. Mean and variance are two passes over the row, so the variance
// cannot cancel; RMS normalization has no mean (y = x·rstd·gamma, rstd = 1/sqrt(mean(x²) + eps)).

// Invocations per workgroup: 256, or 128 or 64 where the device allows fewer (the device
// crate's Gpu::wide_workgroup). Every kernel here is correct for any power of two.
override WG: u32 = 256u;

struct Params {
    rows: u32,
    dim: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// layer_norm: (x, gamma, beta) -> y; layer_norm_grad_input: (x, gamma, dy) -> dx.
// x, y, dy, dx: [rows, dim]; gamma, beta: [dim]
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

// layer_norm_grad_gamma: (x, dyw) -> dgamma; dyw: [rows, dim], dgamma: [dim] or, with more
// than WG rows, [ceil(rows / WG), dim] partial sums (one row per chunk of rows)
@group(0) @binding(2) var<storage, read> dyw: array<f32>;
@group(0) @binding(3) var<storage, read_write> dgamma: array<f32>;

var<workgroup> part: array<vec2<f32>, WG>;

fn row_of_thread(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * (nwg.x * WG);
}

fn row_of_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// (row chunk, column block) of a gamma-gradient workgroup: the flat group index, column blocks
// fastest.
fn chunk_of_group(wid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
    let g = row_of_group(wid, nwg);
    let blocks = (p.dim + WG - 1u) / WG;
    return vec2<u32>(g / blocks, g % blocks);
}

// (mean, 1/sqrt(var + eps)) of the row at `base`, read by one invocation.
fn row_stats(base: u32) -> vec2<f32> {
    var s = 0.0;
    for (var j = 0u; j < p.dim; j++) {
        s += x[base + j];
    }
    let mean = s / f32(p.dim);
    var q = 0.0;
    for (var j = 0u; j < p.dim; j++) {
        let d = x[base + j] - mean;
        q += d * d;
    }
    return vec2<f32>(mean, inverseSqrt(q / f32(p.dim) + p.eps));
}

// Sums v over the workgroup; every invocation gets the total. Call from uniform control flow.
fn tree_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
    part[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            part[lid] += part[lid + s];
        }
        workgroupBarrier();
    }
    let total = part[0];
    // Everyone must have read the total before the next reduction overwrites part.
    workgroupBarrier();
    return total;
}

// row_stats with the row spread over the workgroup.
fn row_stats_tree(base: u32, lid: u32) -> vec2<f32> {
    var s = 0.0;
    for (var j = lid; j < p.dim; j += WG) {
        s += x[base + j];
    }
    let mean = tree_sum(lid, vec2<f32>(s, 0.0)).x / f32(p.dim);
    var q = 0.0;
    for (var j = lid; j < p.dim; j += WG) {
        let d = x[base + j] - mean;
        q += d * d;
    }
    let var_ = tree_sum(lid, vec2<f32>(q, 0.0)).x / f32(p.dim);
    return vec2<f32>(mean, inverseSqrt(var_ + p.eps));
}

// y = (x − mean)·rstd·gamma + beta, one invocation per row (rows shorter than a workgroup).
@compute @workgroup_size(WG)
fn layer_norm_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = row_of_thread(gid, nwg);
    if r >= p.rows {
        return;
    }
    let base = r * p.dim;
    let st = row_stats(base);
    for (var j = 0u; j < p.dim; j++) {
        y[base + j] = (x[base + j] - st.x) * st.y * gamma[j] + beta[j];
    }
}

// The same with one workgroup per row: coalesced loads for long rows.
@compute @workgroup_size(WG)
fn layer_norm_tree(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = row_of_group(wid, nwg);
    // Uniform across the workgroup, so returning before the barriers is allowed.
    if r >= p.rows {
        return;
    }
    let base = r * p.dim;
    let st = row_stats_tree(base, lid);
    for (var j = lid; j < p.dim; j += WG) {
        y[base + j] = (x[base + j] - st.x) * st.y * gamma[j] + beta[j];
    }
}

// With x̂ = (x − mean)·rstd and g = dy·gamma: dx = rstd·(g − mean(g) − x̂·mean(g·x̂)).
fn grad_input_value(i: u32, j: u32, st: vec2<f32>, sums: vec2<f32>) -> f32 {
    let n = f32(p.dim);
    let xh = (x[i] - st.x) * st.y;
    return st.y * (dy[i] * gamma[j] - sums.x / n - xh * (sums.y / n));
}

@compute @workgroup_size(WG)
fn layer_norm_grad_input_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = row_of_thread(gid, nwg);
    if r >= p.rows {
        return;
    }
    let base = r * p.dim;
    let st = row_stats(base);
    // (Σ g, Σ g·x̂) over the row.
    var sums = vec2<f32>(0.0, 0.0);
    for (var j = 0u; j < p.dim; j++) {
        let g = dy[base + j] * gamma[j];
        sums += vec2<f32>(g, g * (x[base + j] - st.x) * st.y);
    }
    for (var j = 0u; j < p.dim; j++) {
        dx[base + j] = grad_input_value(base + j, j, st, sums);
    }
}

@compute @workgroup_size(WG)
fn layer_norm_grad_input_tree(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = row_of_group(wid, nwg);
    if r >= p.rows {
        return;
    }
    let base = r * p.dim;
    let st = row_stats_tree(base, lid);
    var sums = vec2<f32>(0.0, 0.0);
    for (var j = lid; j < p.dim; j += WG) {
        let g = dy[base + j] * gamma[j];
        sums += vec2<f32>(g, g * (x[base + j] - st.x) * st.y);
    }
    let total = tree_sum(lid, sums);
    for (var j = lid; j < p.dim; j += WG) {
        dx[base + j] = grad_input_value(base + j, j, st, total);
    }
}

// dgamma[j] = Σ_rows dy·x̂, in two passes so that every row chunk runs in its own workgroup: here
// workgroup (c, b) sums chunk c (rows c·WG..) of the columns of block b (b·WG..) into
// dgamma[c·dim + j]: first each invocation computes one row's stats into part, then each sums its
// column over the chunk, rows in order. With one chunk that is dgamma itself; otherwise the
// launcher sums the [chunks, dim] partials with the reduce kernel: deterministic, no atomics.
@compute @workgroup_size(WG)
fn layer_norm_grad_gamma(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let at = chunk_of_group(wid, nwg);
    // Uniform: a spare workgroup of a rounded-up 2-D grid.
    if at.x * WG >= p.rows {
        return;
    }
    let r = at.x * WG + lid;
    if r < p.rows {
        part[lid] = row_stats(r * p.dim);
    }
    workgroupBarrier();
    let j = at.y * WG + lid;
    if j < p.dim {
        let n = min(WG, p.rows - at.x * WG);
        var acc = 0.0;
        for (var k = 0u; k < n; k++) {
            let i = (at.x * WG + k) * p.dim + j;
            let st = part[k];
            acc += dyw[i] * ((x[i] - st.x) * st.y);
        }
        dgamma[at.x * p.dim + j] = acc;
    }
}

// ---- RMS normalization (PyTorch's RMSNorm): no mean, no beta ---------------------------------

// rms_norm: (x, gamma) -> rms_y: [rows, dim]. The gradients bind as layer norm's: (x, gamma,
// dy) -> dx and (x, dyw) -> dgamma.
@group(0) @binding(3) var<storage, read_write> rms_y: array<f32>;

// 1/sqrt(mean(x²) + eps) of the row at `base`, read by one invocation.
fn rms_rstd(base: u32) -> f32 {
    var q = 0.0;
    for (var j = 0u; j < p.dim; j++) {
        let v = x[base + j];
        q += v * v;
    }
    return inverseSqrt(q / f32(p.dim) + p.eps);
}

// rms_rstd with the row spread over the workgroup.
fn rms_rstd_tree(base: u32, lid: u32) -> f32 {
    var q = 0.0;
    for (var j = lid; j < p.dim; j += WG) {
        let v = x[base + j];
        q += v * v;
    }
    return inverseSqrt(tree_sum(lid, vec2<f32>(q, 0.0)).x / f32(p.dim) + p.eps);
}

// y = x·rstd·gamma, one invocation per row (rows shorter than a workgroup).
@compute @workgroup_size(WG)
fn rms_norm_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = row_of_thread(gid, nwg);
    if r >= p.rows {
        return;
    }
    let base = r * p.dim;
    let rstd = rms_rstd(base);
    for (var j = 0u; j < p.dim; j++) {
        rms_y[base + j] = x[base + j] * rstd * gamma[j];
    }
}

// The same with one workgroup per row.
@compute @workgroup_size(WG)
fn rms_norm_tree(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = row_of_group(wid, nwg);
    // Uniform across the workgroup, so returning before the barriers is allowed.
    if r >= p.rows {
        return;
    }
    let base = r * p.dim;
    let rstd = rms_rstd_tree(base, lid);
    for (var j = lid; j < p.dim; j += WG) {
        rms_y[base + j] = x[base + j] * rstd * gamma[j];
    }
}

// With x̂ = x·rstd and g = dy·gamma: dx = rstd·(g − x̂·mean(g·x̂)); `sgx` is Σ g·x̂ over the row.
fn rms_grad_input_value(i: u32, j: u32, rstd: f32, sgx: f32) -> f32 {
    return rstd * (dy[i] * gamma[j] - x[i] * rstd * (sgx / f32(p.dim)));
}

@compute @workgroup_size(WG)
fn rms_norm_grad_input_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = row_of_thread(gid, nwg);
    if r >= p.rows {
        return;
    }
    let base = r * p.dim;
    let rstd = rms_rstd(base);
    var sgx = 0.0;
    for (var j = 0u; j < p.dim; j++) {
        sgx += dy[base + j] * gamma[j] * (x[base + j] * rstd);
    }
    for (var j = 0u; j < p.dim; j++) {
        dx[base + j] = rms_grad_input_value(base + j, j, rstd, sgx);
    }
}

@compute @workgroup_size(WG)
fn rms_norm_grad_input_tree(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = row_of_group(wid, nwg);
    if r >= p.rows {
        return;
    }
    let base = r * p.dim;
    let rstd = rms_rstd_tree(base, lid);
    var sgx = 0.0;
    for (var j = lid; j < p.dim; j += WG) {
        sgx += dy[base + j] * gamma[j] * (x[base + j] * rstd);
    }
    let total = tree_sum(lid, vec2<f32>(sgx, 0.0)).x;
    for (var j = lid; j < p.dim; j += WG) {
        dx[base + j] = rms_grad_input_value(base + j, j, rstd, total);
    }
}

// dgamma[j] = Σ_rows dy·x̂ over one chunk of rows per workgroup, as layer_norm_grad_gamma (each
// invocation first computing one row's rstd); the launcher sums the chunks.
@compute @workgroup_size(WG)
fn rms_norm_grad_gamma(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let at = chunk_of_group(wid, nwg);
    // Uniform: a spare workgroup of a rounded-up 2-D grid.
    if at.x * WG >= p.rows {
        return;
    }
    let r = at.x * WG + lid;
    if r < p.rows {
        part[lid] = vec2<f32>(rms_rstd(r * p.dim), 0.0);
    }
    workgroupBarrier();
    let j = at.y * WG + lid;
    if j < p.dim {
        let n = min(WG, p.rows - at.x * WG);
        var acc = 0.0;
        for (var k = 0u; k < n; k++) {
            let i = (at.x * WG + k) * p.dim + j;
            acc += dyw[i] * (x[i] * part[k].x);
        }
        dgamma[at.x * p.dim + j] = acc;
    }
}
