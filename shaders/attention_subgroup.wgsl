// Fused attention, forward and backward, with the streamed rows shared over a subgroup: compiled
// after attention.wgsl (params, bindings, chunk loaders, dropout hash) where the device has subgroups.
//
// attention.wgsl gives each invocation one row and has every invocation of a workgroup load the
// same streamed row (key or query) at the same time. On a software adapter each of those loads is
// a loop over the SIMD lanes. Here a workgroup is one subgroup of SG = 8 rows, and the streamed
// rows come SG at a time: lane t loads chunk c of streamed row t only, and every lane reaches it
// by a subgroup shuffle (a register permute on SIMD lanes), so each chunk is loaded once per
// block instead of once per lane. The arithmetic, the masks and the dropout draws are those of
// attention.wgsl, in the same order within a block of keys.
// Grid: [ceil(T / SG), H, B]; workgroups of SG invocations, which the launcher uses only where
// the adapter's smallest subgroup holds SG lanes (a workgroup is then one subgroup).

const SG: u32 = 8u;

// (x·y_t) for t = lanes 0..3 of the subgroup (`lo`) or 4..7 (`hi`): y is each lane's chunk.
fn dots_lo(x: vec4<f32>, y: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(
        dot(x, subgroupShuffle(y, 0u)),
        dot(x, subgroupShuffle(y, 1u)),
        dot(x, subgroupShuffle(y, 2u)),
        dot(x, subgroupShuffle(y, 3u)),
    );
}

fn dots_hi(x: vec4<f32>, y: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(
        dot(x, subgroupShuffle(y, 4u)),
        dot(x, subgroupShuffle(y, 5u)),
        dot(x, subgroupShuffle(y, 6u)),
        dot(x, subgroupShuffle(y, 7u)),
    );
}

// acc + Σ_t w_t · y_t over the 8 lanes t (weights w_lo for lanes 0..3, w_hi for 4..7).
fn mix8(acc: vec4<f32>, w_lo: vec4<f32>, w_hi: vec4<f32>, y: vec4<f32>) -> vec4<f32> {
    var a = acc;
    a = fma(vec4<f32>(w_lo.x), subgroupShuffle(y, 0u), a);
    a = fma(vec4<f32>(w_lo.y), subgroupShuffle(y, 1u), a);
    a = fma(vec4<f32>(w_lo.z), subgroupShuffle(y, 2u), a);
    a = fma(vec4<f32>(w_lo.w), subgroupShuffle(y, 3u), a);
    a = fma(vec4<f32>(w_hi.x), subgroupShuffle(y, 4u), a);
    a = fma(vec4<f32>(w_hi.y), subgroupShuffle(y, 5u), a);
    a = fma(vec4<f32>(w_hi.z), subgroupShuffle(y, 6u), a);
    a = fma(vec4<f32>(w_hi.w), subgroupShuffle(y, 7u), a);
    return a;
}

// Each lane's scalar x, lanes 0..3 and 4..7.
fn lanes_lo(x: f32) -> vec4<f32> {
    return vec4<f32>(subgroupShuffle(x, 0u), subgroupShuffle(x, 1u), subgroupShuffle(x, 2u), subgroupShuffle(x, 3u));
}

fn lanes_hi(x: f32) -> vec4<f32> {
    return vec4<f32>(subgroupShuffle(x, 4u), subgroupShuffle(x, 5u), subgroupShuffle(x, 6u), subgroupShuffle(x, 7u));
}

fn max8(a: vec4<f32>, b: vec4<f32>) -> f32 {
    let m = max(a, b);
    return max(max(m.x, m.y), max(m.z, m.w));
}

fn sum8(a: vec4<f32>, b: vec4<f32>) -> f32 {
    let s = a + b;
    return (s.x + s.y) + (s.z + s.w);
}

// ---------------------------------------------------------------------------------------------
// Forward (attention_forward's arithmetic), keys eight at a time.

@compute @workgroup_size(SG)
fn attention_forward_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let h = wid.y;
    let b = wid.z;
    let i0 = wid.x * SG;
    let i = i0 + lane;
    let live = i < p.seq;
    let iq = min(i, p.seq - 1u);
    let base = row_base(b, iq, h);

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
    let kv_end = select(p.seq, min(p.seq, i0 + SG), CAUSAL);
    for (var j0 = 0u; j0 < kv_end; j0 += SG) {
        // This lane's key of the block, clamped into range (masked below).
        let kb = row_base(b, min(j0 + lane, kv_end - 1u), h);
        var s_lo = vec4<f32>(0.0);
        var s_hi = vec4<f32>(0.0);
        for (var c = 0u; c < d4(); c++) {
            let kc = k_chunk(kb, c);
            s_lo += dots_lo(q[c], kc);
            s_hi += dots_hi(q[c], kc);
        }
        let j_lo = vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u);
        let j_hi = j_lo + vec4<u32>(4u);
        var v_lo = j_lo < vec4<u32>(kv_end);
        var v_hi = j_hi < vec4<u32>(kv_end);
        if CAUSAL {
            v_lo = v_lo & (j_lo <= vec4<u32>(iq));
            v_hi = v_hi & (j_hi <= vec4<u32>(iq));
        }
        s_lo = select(vec4<f32>(NEG_BIG), s_lo, v_lo);
        s_hi = select(vec4<f32>(NEG_BIG), s_hi, v_hi);
        // Key 0 is valid for every row: m_new is a real score from the first block on.
        let m_new = max(m, max8(s_lo, s_hi));
        let corr = exp(m - m_new);
        var p_lo = select(vec4<f32>(0.0), exp(s_lo - vec4<f32>(m_new)), v_lo);
        var p_hi = select(vec4<f32>(0.0), exp(s_hi - vec4<f32>(m_new)), v_hi);
        l = l * corr + sum8(p_lo, p_hi);
        if DROPOUT {
            p_lo *= keep4(key, vec4<u32>(iq), j_lo);
            p_hi *= keep4(key, vec4<u32>(iq), j_hi);
        }
        for (var c = 0u; c < d4(); c++) {
            acc[c] = mix8(acc[c] * corr, p_lo, p_hi, v_chunk(kb, c));
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
// Backward, step 1 (attention_backward_dq's arithmetic), keys eight at a time.

@compute @workgroup_size(SG)
fn attention_backward_dq_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let h = wid.y;
    let b = wid.z;
    let i0 = wid.x * SG;
    let i = i0 + lane;
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
    let kv_end = select(p.seq, min(p.seq, i0 + SG), CAUSAL);
    for (var j0 = 0u; j0 < kv_end; j0 += SG) {
        let kb = row_base(b, min(j0 + lane, kv_end - 1u), h);
        var s_lo = vec4<f32>(0.0);
        var s_hi = vec4<f32>(0.0);
        var dp_lo = vec4<f32>(0.0);
        var dp_hi = vec4<f32>(0.0);
        for (var c = 0u; c < d4(); c++) {
            let kc = k_chunk(kb, c);
            let vc = v_chunk(kb, c);
            s_lo += dots_lo(q[c], kc);
            s_hi += dots_hi(q[c], kc);
            dp_lo += dots_lo(g[c], vc);
            dp_hi += dots_hi(g[c], vc);
        }
        let j_lo = vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u);
        let j_hi = j_lo + vec4<u32>(4u);
        var v_lo = j_lo < vec4<u32>(kv_end);
        var v_hi = j_hi < vec4<u32>(kv_end);
        if CAUSAL {
            v_lo = v_lo & (j_lo <= vec4<u32>(iq));
            v_hi = v_hi & (j_hi <= vec4<u32>(iq));
        }
        let p_lo = select(vec4<f32>(0.0), exp(s_lo - vec4<f32>(lse)), v_lo);
        let p_hi = select(vec4<f32>(0.0), exp(s_hi - vec4<f32>(lse)), v_hi);
        if DROPOUT {
            dp_lo *= keep4(key, vec4<u32>(iq), j_lo);
            dp_hi *= keep4(key, vec4<u32>(iq), j_hi);
        }
        let ds_lo = p_lo * (dp_lo - vec4<f32>(delta));
        let ds_hi = p_hi * (dp_hi - vec4<f32>(delta));
        for (var c = 0u; c < d4(); c++) {
            dq[c] = mix8(dq[c], ds_lo, ds_hi, k_chunk(kb, c));
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
// Backward, step 2 (attention_backward_dkdv's arithmetic), queries eight at a time.

@compute @workgroup_size(SG)
fn attention_backward_dkdv_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let h = wid.y;
    let b = wid.z;
    let j0 = wid.x * SG;
    let j = j0 + lane;
    let live = j < p.seq;
    let jk = min(j, p.seq - 1u);
    let base = row_base(b, jk, h);
    let lrow = (b * p.heads + h) * p.seq;

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
    let q_start = select(0u, j0, CAUSAL);
    for (var i0 = q_start; i0 < p.seq; i0 += SG) {
        // This lane's query of the block, clamped into range (masked below), with its lse and Δ.
        let mine = min(i0 + lane, p.seq - 1u);
        let qb = row_base(b, mine, h);
        var s_lo = vec4<f32>(0.0);
        var s_hi = vec4<f32>(0.0);
        var dp_lo = vec4<f32>(0.0);
        var dp_hi = vec4<f32>(0.0);
        for (var c = 0u; c < d4(); c++) {
            let qc = q_chunk(qb, c);
            let gc = do_chunk(qb, c);
            s_lo += dots_lo(k[c], qc);
            s_hi += dots_hi(k[c], qc);
            dp_lo += dots_lo(v[c], gc);
            dp_hi += dots_hi(v[c], gc);
        }
        let i_lo = vec4<u32>(i0) + vec4<u32>(0u, 1u, 2u, 3u);
        let i_hi = i_lo + vec4<u32>(4u);
        var v_lo = i_lo < vec4<u32>(p.seq);
        var v_hi = i_hi < vec4<u32>(p.seq);
        if CAUSAL {
            v_lo = v_lo & (i_lo >= vec4<u32>(jk));
            v_hi = v_hi & (i_hi >= vec4<u32>(jk));
        }
        let my_lse = lse_in[lrow + mine];
        let my_delta = delta_in[lrow + mine];
        let p_lo = select(vec4<f32>(0.0), exp(s_lo - lanes_lo(my_lse)), v_lo);
        let p_hi = select(vec4<f32>(0.0), exp(s_hi - lanes_hi(my_lse)), v_hi);
        var z_lo = vec4<f32>(1.0);
        var z_hi = vec4<f32>(1.0);
        if DROPOUT {
            let last = vec4<u32>(p.seq - 1u);
            z_lo = keep4(key, min(i_lo, last), vec4<u32>(jk));
            z_hi = keep4(key, min(i_hi, last), vec4<u32>(jk));
        }
        let ds_lo = p_lo * (dp_lo * z_lo - lanes_lo(my_delta));
        let ds_hi = p_hi * (dp_hi * z_hi - lanes_hi(my_delta));
        let pz_lo = p_lo * z_lo;
        let pz_hi = p_hi * z_hi;
        for (var c = 0u; c < d4(); c++) {
            dv[c] = mix8(dv[c], pz_lo, pz_hi, do_chunk(qb, c));
            dk[c] = mix8(dk[c], ds_lo, ds_hi, q_chunk(qb, c));
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
