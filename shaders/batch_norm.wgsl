// Batch normalization over x: [N, C, H·W] in training: per-channel batch statistics (mean, then
// biased variance: two passes), normalization, the backward pass and the running-statistics update.
// A channel's sums are taken by one workgroup in a fixed order (strided partial sums, then a fixed
// tree), without atomics, so every run gives the same bits.

// Invocations per workgroup: 256, or 128 or 64 where the device allows fewer (the device
// crate's Gpu::wide_workgroup). Every kernel here is correct for any power of two.
override WG: u32 = 256u;

struct Params {
    n: u32,
    channels: u32,
    hw: u32,
    eps: f32,
}

struct UpdateParams {
    channels: u32,
    momentum: f32,
    // count / (count − 1): the biased batch variance to the unbiased one.
    unbiased: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(0) var<uniform> pu: UpdateParams;

// batch_norm_stats: (x) -> stats. x: [N, C, H·W]; stats: [2, C] (means, then biased variances)
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats_out: array<f32>;

// batch_norm_apply: (x, weight, bias, stats) -> y. weight, bias: [C]; y: [N, C, H·W]
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// batch_norm_grad_sums: (x, dy, stats) -> (dweight, dbias). dweight, dbias: [C]
@group(0) @binding(2) var<storage, read> sums_dy: array<f32>;
@group(0) @binding(3) var<storage, read> sums_stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> dweight_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> dbias_out: array<f32>;

// batch_norm_grad_input: (x, weight, stats, dy, dweight, dbias) -> dx. dx: [N, C, H·W]
@group(0) @binding(3) var<storage, read> input_stats: array<f32>;
@group(0) @binding(4) var<storage, read> input_dy: array<f32>;
@group(0) @binding(5) var<storage, read> dweight: array<f32>;
@group(0) @binding(6) var<storage, read> dbias: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;

// batch_norm_update: (stats) -> running_mean, running_var, num_batches_tracked, in place.
@group(0) @binding(1) var<storage, read> update_stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(4) var<storage, read_write> num_batches_tracked: array<f32>;

var<workgroup> part: array<vec2<f32>, WG>;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * (nwg.x * WG);
}

fn channel_of_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// The offset in x of the j-th of channel c's N·H·W values (image j / hw, pixel j % hw).
fn offset(c: u32, j: u32) -> u32 {
    let n = j / p.hw;
    return (n * p.channels + c) * p.hw + (j - n * p.hw);
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

// One workgroup per channel: mean, then the biased variance around it.
@compute @workgroup_size(WG)
fn batch_norm_stats(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let c = channel_of_group(wid, nwg);
    // Uniform across the workgroup, so returning before the barriers is allowed.
    if c >= p.channels {
        return;
    }
    let m = p.n * p.hw;
    var s = 0.0;
    for (var j = lid; j < m; j += WG) {
        s += x[offset(c, j)];
    }
    let mean = tree_sum(lid, vec2<f32>(s, 0.0)).x / f32(m);
    var q = 0.0;
    for (var j = lid; j < m; j += WG) {
        let d = x[offset(c, j)] - mean;
        q += d * d;
    }
    let var_ = tree_sum(lid, vec2<f32>(q, 0.0)).x / f32(m);
    if lid == 0u {
        stats_out[c] = mean;
        stats_out[p.channels + c] = var_;
    }
}

// y = x·scale + shift with scale = weight·rstd and shift = bias − mean·scale (as the CPU does).
@compute @workgroup_size(WG)
fn batch_norm_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= p.n * p.channels * p.hw {
        return;
    }
    let c = (i / p.hw) % p.channels;
    let scale = weight[c] * inverseSqrt(stats[p.channels + c] + p.eps);
    y[i] = x[i] * scale + (bias[c] - stats[c] * scale);
}

// One workgroup per channel: dbias = Σ dy and dweight = Σ dy·x̂ with x̂ = (x − mean)·rstd.
@compute @workgroup_size(WG)
fn batch_norm_grad_sums(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let c = channel_of_group(wid, nwg);
    if c >= p.channels {
        return;
    }
    let m = p.n * p.hw;
    let mean = sums_stats[c];
    let rstd = inverseSqrt(sums_stats[p.channels + c] + p.eps);
    var acc = vec2<f32>(0.0, 0.0);
    for (var j = lid; j < m; j += WG) {
        let i = offset(c, j);
        let d = sums_dy[i];
        acc += vec2<f32>(d, d * ((x[i] - mean) * rstd));
    }
    let total = tree_sum(lid, acc);
    if lid == 0u {
        dbias_out[c] = total.x;
        dweight_out[c] = total.y;
    }
}

// dx = weight·rstd·(dy − dbias/m − x̂·dweight/m) over a channel's m = N·H·W values.
@compute @workgroup_size(WG)
fn batch_norm_grad_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= p.n * p.channels * p.hw {
        return;
    }
    let c = (i / p.hw) % p.channels;
    let m = f32(p.n * p.hw);
    let rstd = inverseSqrt(input_stats[p.channels + c] + p.eps);
    let xh = (x[i] - input_stats[c]) * rstd;
    dx[i] = weight[c] * rstd * (input_dy[i] - dbias[c] / m - xh * (dweight[c] / m));
}

// running = (1 − momentum)·running + momentum·batch, the variance unbiased; one invocation per
// channel, and the first also counts the batch.
@compute @workgroup_size(WG)
fn batch_norm_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = flat_index(gid, nwg);
    if c >= pu.channels {
        return;
    }
    let keep = 1.0 - pu.momentum;
    running_mean[c] = keep * running_mean[c] + pu.momentum * update_stats[c];
    let unbiased = update_stats[pu.channels + c] * pu.unbiased;
    running_var[c] = keep * running_var[c] + pu.momentum * unbiased;
    if c == 0u {
        num_batches_tracked[0] = num_batches_tracked[0] + 1.0;
    }
}
