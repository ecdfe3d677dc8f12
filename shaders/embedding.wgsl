// Embedding lookup (out[t] = table[ids[t]]) and its gradient, a deterministic scatter-add into the
// table. Token ids are stored as f32; one that is not an integer in [0, vocab) is never dereferenced.

// Invocations per workgroup: 256, or 128 or 64 where the device allows fewer (the device
// crate's Gpu::wide_workgroup). Every kernel here is correct for any power of two.
override WG: u32 = 256u;
// The id of a token whose stored value is not an integer in [0, vocab).
const NONE: u32 = 0xffffffffu;

struct Params {
    tokens: u32,
    vocab: u32,
    dim: u32,
    // The bit pattern of a quiet NaN, written for a bad id: stored, never computed, so the
    // result is NaN however the driver treats NaN arithmetic.
    nan_bits: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// ids: [tokens]; table, dtable: [vocab, dim]; out, dout: [tokens, dim]
@group(0) @binding(1) var<storage, read> ids: array<f32>;
// embedding: (ids, table) -> out
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// embedding_grad: (ids, dout) -> dtable
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dtable: array<f32>;

// Inclusive prefix sums of the match flags, then the matching tokens of one chunk in order.
var<workgroup> scan: array<u32, WG>;
var<workgroup> hits: array<u32, WG>;

fn id_of(t: u32) -> u32 {
    let f = ids[t];
    // Decided on the bits first: WGSL lets a driver assume NaN never occurs (Metal compiles with
    // fast math, DX12 without IEEE strictness), and then a NaN may pass float comparisons. Bits
    // below 0x7f800000 are +0 up to the largest finite float, 0x80000000 is −0: no NaN, no
    // infinity, no negative number, so the comparisons after it see ordinary values only.
    let bits = bitcast<u32>(f);
    // u32(f) saturates for huge values, and the integer bound keeps reads in range.
    if (bits < 0x7f800000u || bits == 0x80000000u) && f == floor(f) && u32(f) < p.vocab {
        return u32(f);
    }
    return NONE;
}

// out[t, j] = table[ids[t], j]; NaN for every j of a bad id. One invocation per output element.
@compute @workgroup_size(WG)
fn embedding(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * (nwg.x * WG);
    if i >= p.tokens * p.dim {
        return;
    }
    let t = i / p.dim;
    let j = i % p.dim;
    let v = id_of(t);
    // A branch, not select(): select would evaluate the out-of-bounds read too.
    if v == NONE {
        out[i] = bitcast<f32>(p.nan_bits);
    } else {
        out[i] = table[v * p.dim + j];
    }
}

// dtable[v, j] = Σ_{t: ids[t] == v} dout[t, j]. One workgroup per (v, block of WG columns) walks
// the tokens in chunks of WG: each invocation tests one id, a prefix sum packs the matches in
// token order, then each invocation adds its column of the matching rows. Every (v, j) is
// written by one invocation and summed in token order: deterministic, no atomics, and the id
// tests cost vocab·tokens, not vocab·tokens·dim.
@compute @workgroup_size(WG)
fn embedding_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = wid.x + wid.y * nwg.x;
    let blocks = (p.dim + WG - 1u) / WG;
    let v = g / blocks;
    // Uniform across the workgroup, so returning before the barriers is allowed.
    if v >= p.vocab {
        return;
    }
    let j = (g % blocks) * WG + lid;
    var acc = 0.0;
    for (var c = 0u; c < p.tokens; c += WG) {
        let t = c + lid;
        var hit = 0u;
        if t < p.tokens && id_of(t) == v {
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
        if j < p.dim {
            for (var k = 0u; k < count; k++) {
                acc += dout[hits[k] * p.dim + j];
            }
        }
        // The next chunk overwrites scan and hits.
        workgroupBarrier();
    }
    if j < p.dim {
        dtable[v * p.dim + j] = acc;
    }
}
