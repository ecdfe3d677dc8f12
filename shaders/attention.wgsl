// Fused scaled-dot-product attention, forward and backward, flash-style: each invocation owns one
// query row (forward, dq) or one key row (dk, dv) and streams the other side through registers.
// The T×T score matrix never exists in memory: the forward keeps an online softmax (running max,
// running sum, rescaled accumulator) and the backward recomputes probabilities from the saved
// log-sum-exp, p_ij = exp(scale·q_i·k_j − lse_i).
//
// q, k, v, o, do, dq, dk, dv: [B, T, H, D] (heads interleaved, as a [B, T, H·D] projection lays
// them out); delta: [B, H, T]; lse: [B, H, T], then with DROPOUT the [B] row seeds.
//
// Dropout of the attention weights (DROPOUT): weight (i, j) of head h of batch row b is kept, and
// scaled by 1/(1 − p), when mix32((i·T + j) ^ key) ≥ p·2³², key = mix32(seed_b ^ mix32(h ^
// 0x9e3779b9)) — integer arithmetic, so the CPU backend (sinter-ops attention.rs) draws the same
// mask. The forward copies the seeds behind the lse rows; the backward redraws the masks from
// there. The softmax's normalizer is the undropped one: o_i = Σ_j p_ij z_ij v_j.
//
// A workgroup holds WG consecutive rows of one (batch, head), so every invocation of it reads the
// same key (or query) row at the same time: on a hardware GPU those loads are broadcasts from
// cache. Loop bounds are uniform over the workgroup; rows past the end, and pairs past the
// diagonal when causal, are masked rather than skipped.
// Grid: [ceil(T / WG), H, B].
//
// Why one row per invocation: lavapipe turns every buffer load inside a loop into a loop over its
// SIMD lanes, so holding four rows per invocation (each loaded k, v chunk feeding four rows) made
// the forward about 2.5× faster there; but the private arrays that needs are indexed dynamically,
// and lavapipe's compile time for them grew from about 1 s to 7–25 s per pipeline.

const WG: u32 = 64u;
// Private rows are fixed-size arrays of vec4: HEAD_DIM ≤ 128 (checked by the launch builder).
const MAX_D4: u32 = 32u;
// Stands in for −∞ as a running max and for masked scores: exp of it minus any real score is 0,
// and unlike −∞ it never makes (−∞) − (−∞) = NaN.
const NEG_BIG: f32 = -3.0e38;

// Row length D. A constant per pipeline, so the loops over a row have fixed trip counts.
override HEAD_DIM: u32 = 64u;
// Query i sees only keys j ≤ i.
override CAUSAL: bool = false;
// Attention weights are dropped (see above).
override DROPOUT: bool = false;

struct Params {
    batch: u32,
    seq: u32,
    heads: u32,
    scale: f32,
    // Weights whose hash is below this are dropped; kept ones are multiplied by keep_scale.
    drop_threshold: u32,
    keep_scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Every entry point reads q, k, v through vec4 views (buffers from the pool are multiples of 16
// bytes; the launch builder checks).
@group(0) @binding(1) var<storage, read> q4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v4: array<vec4<f32>>;

// attention_forward: (q, k, v, seeds) -> (o, lse)
@group(0) @binding(4) var<storage, read_write> o_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> lse_out: array<f32>;
@group(0) @binding(6) var<storage, read> seeds_in: array<f32>;

// attention_backward_dq: (q, k, v, do, lse, o) -> (delta, dq)
// attention_backward_dkdv: (q, k, v, do, lse, delta) -> (dk, dv)
// Bindings only have to be distinct within one entry point.
@group(0) @binding(4) var<storage, read> do4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> lse_in: array<f32>;
@group(0) @binding(6) var<storage, read> o4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> delta_out: array<f32>;
@group(0) @binding(8) var<storage, read_write> dq_out: array<f32>;
@group(0) @binding(6) var<storage, read> delta_in: array<f32>;
@group(0) @binding(7) var<storage, read_write> dk_out: array<f32>;
@group(0) @binding(8) var<storage, read_write> dv_out: array<f32>;

// The lowbias32 integer hash (C. Wellons' hash-prospector constants), on four values at once.
fn mix32(v: vec4<u32>) -> vec4<u32> {
    var x = v;
    x ^= x >> vec4<u32>(16u);
    x *= vec4<u32>(0x7feb352du);
    x ^= x >> vec4<u32>(15u);
    x *= vec4<u32>(0x846ca68bu);
    x ^= x >> vec4<u32>(16u);
    return x;
}

// The dropout key of head h of the batch row whose seed (a whole number below 2^24) is `seed`.
fn head_key(seed: f32, h: u32) -> u32 {
    return mix32(vec4<u32>(u32(seed) ^ mix32(vec4<u32>(h ^ 0x9e3779b9u)).x)).x;
}

// What weights (i[e], j[e]) are multiplied by: 0 if dropped, keep_scale if kept.
fn keep4(key: u32, i: vec4<u32>, j: vec4<u32>) -> vec4<f32> {
    let bits = mix32((i * vec4<u32>(p.seq) + j) ^ vec4<u32>(key));
    return select(vec4<f32>(0.0), vec4<f32>(p.keep_scale), bits >= vec4<u32>(p.drop_threshold));
}

// Where the forward leaves the row seeds: behind the B·H·T lse rows.
fn seeds_at() -> u32 {
    return p.batch * p.heads * p.seq;
}

// vec4 chunks per row.
fn d4() -> u32 {
    return (HEAD_DIM + 3u) / 4u;
}

// First element of row (b, t, h) in a [B, T, H, D] tensor.
fn row_base(b: u32, t: u32, h: u32) -> u32 {
    return ((b * p.seq + t) * p.heads + h) * HEAD_DIM;
}

// Element indices of chunk c of the row at `base`, clamped to the row so that every load stays
// inside it; `chunk_mask` zeroes the components past the end.
fn chunk_index(base: u32, c: u32) -> vec4<u32> {
    let d = vec4<u32>(4u * c) + vec4<u32>(0u, 1u, 2u, 3u);
    return vec4<u32>(base) + min(d, vec4<u32>(HEAD_DIM - 1u));
}

fn chunk_mask(c: u32) -> vec4<bool> {
    return vec4<u32>(4u * c) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(HEAD_DIM);
}

// Chunk c (elements 4c..4c+3) of the row starting at `base`, zero past HEAD_DIM. When D is a
// multiple of 4 every row starts on a vec4 boundary and the chunk is one load.
fn q_chunk(base: u32, c: u32) -> vec4<f32> {
    if HEAD_DIM % 4u == 0u {
        return q4[(base >> 2u) + c];
    }
    let i = chunk_index(base, c);
    let v = vec4<f32>(q4[i.x >> 2u][i.x & 3u], q4[i.y >> 2u][i.y & 3u], q4[i.z >> 2u][i.z & 3u], q4[i.w >> 2u][i.w & 3u]);
    return select(vec4<f32>(0.0), v, chunk_mask(c));
}

fn k_chunk(base: u32, c: u32) -> vec4<f32> {
    if HEAD_DIM % 4u == 0u {
        return k4[(base >> 2u) + c];
    }
    let i = chunk_index(base, c);
    let v = vec4<f32>(k4[i.x >> 2u][i.x & 3u], k4[i.y >> 2u][i.y & 3u], k4[i.z >> 2u][i.z & 3u], k4[i.w >> 2u][i.w & 3u]);
    return select(vec4<f32>(0.0), v, chunk_mask(c));
}

fn v_chunk(base: u32, c: u32) -> vec4<f32> {
    if HEAD_DIM % 4u == 0u {
        return v4[(base >> 2u) + c];
    }
    let i = chunk_index(base, c);
    let v = vec4<f32>(v4[i.x >> 2u][i.x & 3u], v4[i.y >> 2u][i.y & 3u], v4[i.z >> 2u][i.z & 3u], v4[i.w >> 2u][i.w & 3u]);
    return select(vec4<f32>(0.0), v, chunk_mask(c));
}

fn do_chunk(base: u32, c: u32) -> vec4<f32> {
    if HEAD_DIM % 4u == 0u {
        return do4[(base >> 2u) + c];
    }
    let i = chunk_index(base, c);
    let v = vec4<f32>(do4[i.x >> 2u][i.x & 3u], do4[i.y >> 2u][i.y & 3u], do4[i.z >> 2u][i.z & 3u], do4[i.w >> 2u][i.w & 3u]);
    return select(vec4<f32>(0.0), v, chunk_mask(c));
}

fn o_chunk(base: u32, c: u32) -> vec4<f32> {
    if HEAD_DIM % 4u == 0u {
        return o4[(base >> 2u) + c];
    }
    let i = chunk_index(base, c);
    let v = vec4<f32>(o4[i.x >> 2u][i.x & 3u], o4[i.y >> 2u][i.y & 3u], o4[i.z >> 2u][i.z & 3u], o4[i.w >> 2u][i.w & 3u]);
    return select(vec4<f32>(0.0), v, chunk_mask(c));
}

// Bases of four consecutive rows starting at t0 of (b, h), clamped to the last row `last` so the
// loads stay in the tensor; the caller masks the clamped ones.
fn rows4(b: u32, t0: u32, h: u32, last: u32) -> vec4<u32> {
    let t = min(vec4<u32>(t0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
    let stride = p.heads * HEAD_DIM;
    return vec4<u32>(row_base(b, 0u, h)) + t * stride;
}

// ---------------------------------------------------------------------------------------------
// Forward: o_i = Σ_j softmax_j(scale·q_i·k_j) v_j and lse_i = log Σ_j exp(scale·q_i·k_j), keys
// four at a time so one rescale of the accumulator serves four keys.

@compute @workgroup_size(WG)
fn attention_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let h = wid.y;
    let b = wid.z;
    let i0 = wid.x * WG;
    let i = i0 + lid.x;
    // Invocations past the last row compute a copy of it (so every load is in range) and store
    // nothing; they also keep the loop bounds below uniform over the workgroup.
    let live = i < p.seq;
    let iq = min(i, p.seq - 1u);
    let base = row_base(b, iq, h);

    // The scale is folded into q once, so a score is one dot product.
    var q: array<vec4<f32>, MAX_D4>;
    var acc: array<vec4<f32>, MAX_D4>;
    for (var c = 0u; c < d4(); c++) {
        q[c] = q_chunk(base, c) * p.scale;
        acc[c] = vec4<f32>(0.0);
    }
    var m = NEG_BIG;
    var l = 0.0;
    var key = 0u;
    if DROPOUT {
        key = head_key(seeds_in[b], h);
    }
    // Keys this workgroup needs: all, or up to its last query when causal.
    let kv_end = select(p.seq, min(p.seq, i0 + WG), CAUSAL);
    for (var j0 = 0u; j0 < kv_end; j0 += 4u) {
        let kr = rows4(b, j0, h, kv_end - 1u);
        var s = vec4<f32>(0.0);
        for (var c = 0u; c < d4(); c++) {
            let qc = q[c];
            s += vec4<f32>(
                dot(qc, k_chunk(kr.x, c)),
                dot(qc, k_chunk(kr.y, c)),
                dot(qc, k_chunk(kr.z, c)),
                dot(qc, k_chunk(kr.w, c)),
            );
        }
        let j = vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u);
        var valid = j < vec4<u32>(kv_end);
        if CAUSAL {
            valid = valid & (j <= vec4<u32>(iq));
        }
        s = select(vec4<f32>(NEG_BIG), s, valid);
        let m_new = max(m, max(max(s.x, s.y), max(s.z, s.w)));
        // Key 0 is valid for every row, so m_new is a real score from the first step on and
        // corr is exactly 0 there: the NEG_BIG start never leaks into l or acc.
        let corr = exp(m - m_new);
        var pr = select(vec4<f32>(0.0), exp(s - vec4<f32>(m_new)), valid);
        l = l * corr + (pr.x + pr.y + pr.z + pr.w);
        if DROPOUT {
            pr *= keep4(key, vec4<u32>(iq), j);
        }
        for (var c = 0u; c < d4(); c++) {
            var a = acc[c] * corr;
            a = fma(vec4<f32>(pr.x), v_chunk(kr.x, c), a);
            a = fma(vec4<f32>(pr.y), v_chunk(kr.y, c), a);
            a = fma(vec4<f32>(pr.z), v_chunk(kr.z, c), a);
            a = fma(vec4<f32>(pr.w), v_chunk(kr.w, c), a);
            acc[c] = a;
        }
        m = m_new;
    }
    if !live {
        return;
    }
    let inv = 1.0 / l;
    for (var c = 0u; c < d4(); c++) {
        let v = acc[c] * inv;
        for (var e = 0u; e < 4u; e++) {
            if 4u * c + e < HEAD_DIM {
                o_out[base + 4u * c + e] = v[e];
            }
        }
    }
    lse_out[(b * p.heads + h) * p.seq + i] = m + log(l);
    if DROPOUT && h == 0u && i == 0u {
        lse_out[seeds_at() + b] = seeds_in[b];
    }
}

// ---------------------------------------------------------------------------------------------
// Backward, step 1, one invocation per query row: Δ_i = do_i·o_i (stored for step 2), then
// dq_i = scale · Σ_j p_ij (do_i·v_j − Δ_i) k_j.

@compute @workgroup_size(WG)
fn attention_backward_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let h = wid.y;
    let b = wid.z;
    let i0 = wid.x * WG;
    let i = i0 + lid.x;
    let live = i < p.seq;
    let iq = min(i, p.seq - 1u);
    let base = row_base(b, iq, h);
    let li = (b * p.heads + h) * p.seq + iq;

    var q: array<vec4<f32>, MAX_D4>;
    var g: array<vec4<f32>, MAX_D4>;
    var dq: array<vec4<f32>, MAX_D4>;
    var delta = 0.0;
    for (var c = 0u; c < d4(); c++) {
        q[c] = q_chunk(base, c) * p.scale;
        g[c] = do_chunk(base, c);
        delta += dot(g[c], o_chunk(base, c));
        dq[c] = vec4<f32>(0.0);
    }
    let lse = lse_in[li];
    var key = 0u;
    if DROPOUT {
        key = head_key(lse_in[seeds_at() + b], h);
    }
    let kv_end = select(p.seq, min(p.seq, i0 + WG), CAUSAL);
    for (var j0 = 0u; j0 < kv_end; j0 += 4u) {
        let kr = rows4(b, j0, h, kv_end - 1u);
        var s = vec4<f32>(0.0);
        var dp = vec4<f32>(0.0);
        for (var c = 0u; c < d4(); c++) {
            let qc = q[c];
            let gc = g[c];
            s += vec4<f32>(
                dot(qc, k_chunk(kr.x, c)),
                dot(qc, k_chunk(kr.y, c)),
                dot(qc, k_chunk(kr.z, c)),
                dot(qc, k_chunk(kr.w, c)),
            );
            dp += vec4<f32>(
                dot(gc, v_chunk(kr.x, c)),
                dot(gc, v_chunk(kr.y, c)),
                dot(gc, v_chunk(kr.z, c)),
                dot(gc, v_chunk(kr.w, c)),
            );
        }
        let j = vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u);
        var valid = j < vec4<u32>(kv_end);
        if CAUSAL {
            valid = valid & (j <= vec4<u32>(iq));
        }
        let pr = select(vec4<f32>(0.0), exp(s - vec4<f32>(lse)), valid);
        if DROPOUT {
            dp *= keep4(key, vec4<u32>(iq), j);
        }
        let ds = pr * (dp - vec4<f32>(delta));
        for (var c = 0u; c < d4(); c++) {
            var a = dq[c];
            a = fma(vec4<f32>(ds.x), k_chunk(kr.x, c), a);
            a = fma(vec4<f32>(ds.y), k_chunk(kr.y, c), a);
            a = fma(vec4<f32>(ds.z), k_chunk(kr.z, c), a);
            a = fma(vec4<f32>(ds.w), k_chunk(kr.w, c), a);
            dq[c] = a;
        }
    }
    if !live {
        return;
    }
    delta_out[li] = delta;
    for (var c = 0u; c < d4(); c++) {
        let v = dq[c] * p.scale;
        for (var e = 0u; e < 4u; e++) {
            if 4u * c + e < HEAD_DIM {
                dq_out[base + 4u * c + e] = v[e];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backward, step 2, one invocation per key row (a gather: no atomics): with
// ds_ij = p_ij (do_i·v_j − Δ_i), dk_j = scale · Σ_i ds_ij q_i and dv_j = Σ_i p_ij do_i.

@compute @workgroup_size(WG)
fn attention_backward_dkdv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let h = wid.y;
    let b = wid.z;
    let j0 = wid.x * WG;
    let j = j0 + lid.x;
    let live = j < p.seq;
    let jk = min(j, p.seq - 1u);
    let base = row_base(b, jk, h);
    let lrow = (b * p.heads + h) * p.seq;

    // The scale is folded into k, so a score is one dot product.
    var k: array<vec4<f32>, MAX_D4>;
    var v: array<vec4<f32>, MAX_D4>;
    var dk: array<vec4<f32>, MAX_D4>;
    var dv: array<vec4<f32>, MAX_D4>;
    for (var c = 0u; c < d4(); c++) {
        k[c] = k_chunk(base, c) * p.scale;
        v[c] = v_chunk(base, c);
        dk[c] = vec4<f32>(0.0);
        dv[c] = vec4<f32>(0.0);
    }
    var key = 0u;
    if DROPOUT {
        key = head_key(lse_in[seeds_at() + b], h);
    }
    // Queries that see this workgroup's keys: all, or from its first key on when causal.
    let q_start = select(0u, j0, CAUSAL);
    for (var i0 = q_start; i0 < p.seq; i0 += 4u) {
        let qr = rows4(b, i0, h, p.seq - 1u);
        var s = vec4<f32>(0.0);
        var dp = vec4<f32>(0.0);
        for (var c = 0u; c < d4(); c++) {
            let kc = k[c];
            let vc = v[c];
            s += vec4<f32>(
                dot(q_chunk(qr.x, c), kc),
                dot(q_chunk(qr.y, c), kc),
                dot(q_chunk(qr.z, c), kc),
                dot(q_chunk(qr.w, c), kc),
            );
            dp += vec4<f32>(
                dot(do_chunk(qr.x, c), vc),
                dot(do_chunk(qr.y, c), vc),
                dot(do_chunk(qr.z, c), vc),
                dot(do_chunk(qr.w, c), vc),
            );
        }
        let iv = vec4<u32>(i0) + vec4<u32>(0u, 1u, 2u, 3u);
        let ic = min(iv, vec4<u32>(p.seq - 1u));
        var valid = iv < vec4<u32>(p.seq);
        if CAUSAL {
            valid = valid & (iv >= vec4<u32>(jk));
        }
        let lse = vec4<f32>(lse_in[lrow + ic.x], lse_in[lrow + ic.y], lse_in[lrow + ic.z], lse_in[lrow + ic.w]);
        let delta = vec4<f32>(delta_in[lrow + ic.x], delta_in[lrow + ic.y], delta_in[lrow + ic.z], delta_in[lrow + ic.w]);
        let pr = select(vec4<f32>(0.0), exp(s - lse), valid);
        // With dropout, dS takes the dropped do·v and dv the dropped weights (z = 1 without).
        var z = vec4<f32>(1.0);
        if DROPOUT {
            z = keep4(key, ic, vec4<u32>(jk));
        }
        let ds = pr * (dp * z - delta);
        let pz = pr * z;
        for (var c = 0u; c < d4(); c++) {
            var a = dv[c];
            a = fma(vec4<f32>(pz.x), do_chunk(qr.x, c), a);
            a = fma(vec4<f32>(pz.y), do_chunk(qr.y, c), a);
            a = fma(vec4<f32>(pz.z), do_chunk(qr.z, c), a);
            a = fma(vec4<f32>(pz.w), do_chunk(qr.w, c), a);
            dv[c] = a;
            var e = dk[c];
            e = fma(vec4<f32>(ds.x), q_chunk(qr.x, c), e);
            e = fma(vec4<f32>(ds.y), q_chunk(qr.y, c), e);
            e = fma(vec4<f32>(ds.z), q_chunk(qr.z, c), e);
            e = fma(vec4<f32>(ds.w), q_chunk(qr.w, c), e);
            dk[c] = e;
        }
    }
    if !live {
        return;
    }
    for (var c = 0u; c < d4(); c++) {
        let gk = dk[c] * p.scale;
        let gv = dv[c];
        for (var e = 0u; e < 4u; e++) {
            if 4u * c + e < HEAD_DIM {
                dk_out[base + 4u * c + e] = gk[e];
                dv_out[base + 4u * c + e] = gv[e];
            }
        }
    }
}
