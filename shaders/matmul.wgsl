// Matrix products C = op(A)·op(B), batched, in numbered variants (v1..v6; v5 in
// matmul_subgroup.wgsl) kept for the benchmark and the tuner.
// Transposed operands are override constants, so backward passes read A and B where they lie.
// Every variant applies the planner's epilogue (bias, activation) to each output as it stores it,
// with `epilogue` from unary.wgsl, which the shader table prepends.

// Shapes of one batched product. A batch stride of 0 broadcasts that operand over the batch.
struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    // Elements between consecutive batch items of A and of B (C is dense: m·n).
    a_stride: u32,
    b_stride: u32,
    // Row tiles per batch item. The y axis of the grid holds m_tiles row tiles of each of
    // num_workgroups.y / m_tiles batch items, so a batch longer than the dispatch limit folds
    // into y; without folding that is one item and the batch item is workgroup_id.z.
    m_tiles: u32,
    _pad1: u32,
}

// op(A) is [m, k]: A is stored [m, k], or [k, m] when TRANS_A. op(B) is [k, n]: B is stored
// [k, n], or [n, k] when TRANS_B. C is always [m, n].
override TRANS_A: bool = false;
override TRANS_B: bool = false;
// v3, v6: the contiguous axis of A, of B and of C and both batch strides are multiples of 4, so
// tiles move as whole vec4s. v4 has one flag per buffer: A_VEC4 (A's contiguous axis and batch
// stride), B_VEC4 (the same for B), C_VEC4 (n). K_EXACT: k is a multiple of 4, so v4 needs no
// mask on its last k-step. The launch builder sets them from the shape; they are never guesses.
override ALIGNED: bool = false;
override A_VEC4: bool = false;
override B_VEC4: bool = false;
override C_VEC4: bool = false;
override K_EXACT: bool = false;
// The epilogue (fuse.rs): each output v of column col becomes act(v + bias[col]). HAS_BIAS adds
// the bias; ACT is a UnaryOp code (`UnaryOp::code`), or NO_ACT for none.
override HAS_BIAS: bool = false;
override ACT: u32 = NO_ACT;

@group(0) @binding(0) var<uniform> p: Params;

// a: [batch | 1, m, k] (or [.., k, m]), b: [batch | 1, k, n] (or [.., n, k]), c: [batch, m, n]
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
// bias: [n]. Bound by every launch; without HAS_BIAS the launch builder binds A here, never read.
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// The same buffers seen as vec4s, for the vec4 loads and stores of v3 and v4 (which bind only
// these). Bindings only have to be distinct within one entry point, and the buffer pool hands out
// sizes that are multiples of 16 bytes (checked by the launch builder), so no element is out of
// reach of this view.
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c4: array<vec4<f32>>;

// Element i of A, of B, through the vec4 views.
fn a_one(i: u32) -> f32 {
    return a4[i >> 2u][i & 3u];
}

fn b_one(i: u32) -> f32 {
    return b4[i >> 2u][i & 3u];
}

// op(A)[row, kk] of the batch item starting at `base`.
fn a_at(base: u32, row: u32, kk: u32) -> f32 {
    if TRANS_A {
        return a[base + kk * p.m + row];
    }
    return a[base + row * p.k + kk];
}

// op(B)[kk, col] of the batch item starting at `base`.
fn b_at(base: u32, kk: u32, col: u32) -> f32 {
    if TRANS_B {
        return b[base + col * p.k + kk];
    }
    return b[base + kk * p.n + col];
}

// (row tile, batch item) of the workgroup at (wid_y, wid_z) in a grid nwg_y tall.
fn place(wid_y: u32, wid_z: u32, nwg_y: u32) -> vec2<u32> {
    let items_per_layer = nwg_y / p.m_tiles;
    return vec2<u32>(wid_y % p.m_tiles, wid_z * items_per_layer + wid_y / p.m_tiles);
}

// The bias of column col (0 without HAS_BIAS, when nothing is read).
fn bias_at(col: u32) -> f32 {
    if HAS_BIAS {
        return bias[col];
    }
    return 0.0;
}

// The biases of columns col..col+3, each clamped to the last column (outputs past it are dropped).
fn bias_run4(col: u32) -> vec4<f32> {
    let cols = min(vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u));
    return vec4<f32>(bias_at(cols.x), bias_at(cols.y), bias_at(cols.z), bias_at(cols.w));
}

// The epilogue of four outputs of one row, columns col..col+3 with biases bv.
fn epilogue4(v: vec4<f32>, bv: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(
        epilogue(v.x, HAS_BIAS, bv.x, ACT),
        epilogue(v.y, HAS_BIAS, bv.y, ACT),
        epilogue(v.z, HAS_BIAS, bv.z, ACT),
        epilogue(v.w, HAS_BIAS, bv.w, ACT),
    );
}

fn store_c(base: u32, row: u32, col: u32, v: f32) {
    if row < p.m && col < p.n {
        c[base + row * p.n + col] = epilogue(v, HAS_BIAS, bias_at(col), ACT);
    }
}

// Stores one row segment of four outputs starting at (row, col), dropping what falls outside C.
fn store_c_row4(base: u32, row: u32, col: u32, v: vec4<f32>) {
    store_c(base, row, col, v.x);
    store_c(base, row, col + 1u, v.y);
    store_c(base, row, col + 2u, v.z);
    store_c(base, row, col + 3u, v.w);
}

// ---------------------------------------------------------------------------------------------
// v1: one output per invocation, straight from global memory. The baseline the others must beat.
// Grid (unfolded, see Params.m_tiles): [ceil(n / 16), ceil(m / 16), batch].

@compute @workgroup_size(16, 16)
fn matmul_v1_naive(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let at = place(wid.y, wid.z, nwg.y);
    let col = wid.x * 16u + lid.x;
    let row = at.x * 16u + lid.y;
    let bz = at.y;
    if bz >= p.batch || row >= p.m || col >= p.n {
        return;
    }
    let ab = bz * p.a_stride;
    let bb = bz * p.b_stride;
    var acc = 0.0;
    for (var kk = 0u; kk < p.k; kk++) {
        acc = fma(a_at(ab, row, kk), b_at(bb, kk, col), acc);
    }
    c[bz * p.m * p.n + row * p.n + col] = epilogue(acc, HAS_BIAS, bias_at(col), ACT);
}

// ---------------------------------------------------------------------------------------------
// v2: register-blocked, a 4×4 block of C per invocation, operands read from global memory (no
// shared memory, no barriers). Each loaded value feeds four FMAs instead of one.
// Grid (unfolded, see Params.m_tiles): [ceil(n / 32), ceil(m / 32), batch].

@compute @workgroup_size(8, 8)
fn matmul_v2_blocked(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let at = place(wid.y, wid.z, nwg.y);
    let c0 = (wid.x * 8u + lid.x) * 4u;
    let r0 = (at.x * 8u + lid.y) * 4u;
    let bz = at.y;
    if bz >= p.batch || r0 >= p.m || c0 >= p.n {
        return;
    }
    let ab = bz * p.a_stride;
    let bb = bz * p.b_stride;
    // Rows and columns past the edge are clamped to the last one: the loop stays branch-free and
    // the extra results are dropped at the store.
    let rows = min(vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.m - 1u));
    let cols = min(vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u));
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < p.k; kk++) {
        let bv = vec4<f32>(b_at(bb, kk, cols.x), b_at(bb, kk, cols.y), b_at(bb, kk, cols.z), b_at(bb, kk, cols.w));
        acc0 = fma(vec4<f32>(a_at(ab, rows.x, kk)), bv, acc0);
        acc1 = fma(vec4<f32>(a_at(ab, rows.y, kk)), bv, acc1);
        acc2 = fma(vec4<f32>(a_at(ab, rows.z, kk)), bv, acc2);
        acc3 = fma(vec4<f32>(a_at(ab, rows.w, kk)), bv, acc3);
    }
    let cb = bz * p.m * p.n;
    store_c_row4(cb, r0, c0, acc0);
    store_c_row4(cb, r0 + 1u, c0, acc1);
    store_c_row4(cb, r0 + 2u, c0, acc2);
    store_c_row4(cb, r0 + 3u, c0, acc3);
}

// ---------------------------------------------------------------------------------------------
// v3: shared-memory tiling, the classic GPU design. A 64×64 tile of C per workgroup of 16×16
// invocations, each holding a 4×4 block in registers; the k axis advances 16 at a time through
// tiles of A and B staged in workgroup memory, both stored k-major so the inner loop reads vec4s.
// Grid (unfolded, see Params.m_tiles): [ceil(n / 64), ceil(m / 64), batch].

const T3: u32 = 64u;
const K3: u32 = 16u;

// as3[kk * 16 + i] holds op(A)[tile row 4i..4i+3, kk]; bs3[kk * 16 + j] holds op(B)[kk, tile col 4j..4j+3].
var<workgroup> as3: array<vec4<f32>, 256>;
var<workgroup> bs3: array<vec4<f32>, 256>;

// Four consecutive elements of A starting at flat index i, each zero when its own coordinate
// (`first + j` along the contiguous axis) is at or past `limit`. With ALIGNED one vec4 load.
fn a_run4(i: u32, first: u32, limit: u32) -> vec4<f32> {
    if ALIGNED {
        if first < limit {
            return a4[i >> 2u];
        }
        return vec4<f32>(0.0);
    }
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if first + j < limit {
            v[j] = a_one(i + j);
        }
    }
    return v;
}

fn b_run4(i: u32, first: u32, limit: u32) -> vec4<f32> {
    if ALIGNED {
        if first < limit {
            return b4[i >> 2u];
        }
        return vec4<f32>(0.0);
    }
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if first + j < limit {
            v[j] = b_one(i + j);
        }
    }
    return v;
}

@compute @workgroup_size(16, 16)
fn matmul_v3_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let at = place(wid.y, wid.z, nwg.y);
    let tile_r = at.x * T3;
    let tile_c = wid.x * T3;
    let bz = at.y;
    // Past the last batch item of a folded grid; the whole workgroup leaves together.
    if bz >= p.batch {
        return;
    }
    let ab = bz * p.a_stride;
    let bb = bz * p.b_stride;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += K3) {
        // Stage op(A)[tile rows, k0..k0+16): 1024 values, four per invocation, read along
        // whichever axis is contiguous in memory.
        if TRANS_A {
            // A stored [k, m]: invocation reads 4 consecutive rows at one kk.
            let kk = tid / 16u;
            let rq = (tid % 16u) * 4u;
            let row = tile_r + rq;
            var v = vec4<f32>(0.0);
            if k0 + kk < p.k {
                v = a_run4(ab + (k0 + kk) * p.m + row, row, p.m);
            }
            as3[kk * 16u + rq / 4u] = v;
        } else {
            // A stored [m, k]: invocation reads 4 consecutive kk of one row, stores them k-major.
            let rr = tid / 4u;
            let kq = (tid % 4u) * 4u;
            let row = tile_r + rr;
            var v = vec4<f32>(0.0);
            if row < p.m {
                v = a_run4(ab + row * p.k + k0 + kq, k0 + kq, p.k);
            }
            as3[(kq + 0u) * 16u + rr / 4u][rr % 4u] = v.x;
            as3[(kq + 1u) * 16u + rr / 4u][rr % 4u] = v.y;
            as3[(kq + 2u) * 16u + rr / 4u][rr % 4u] = v.z;
            as3[(kq + 3u) * 16u + rr / 4u][rr % 4u] = v.w;
        }
        // Stage op(B)[k0..k0+16, tile cols] the same way.
        if TRANS_B {
            // B stored [n, k]: invocation reads 4 consecutive kk of one column.
            let cc = tid / 4u;
            let kq = (tid % 4u) * 4u;
            let col = tile_c + cc;
            var v = vec4<f32>(0.0);
            if col < p.n {
                v = b_run4(bb + col * p.k + k0 + kq, k0 + kq, p.k);
            }
            bs3[(kq + 0u) * 16u + cc / 4u][cc % 4u] = v.x;
            bs3[(kq + 1u) * 16u + cc / 4u][cc % 4u] = v.y;
            bs3[(kq + 2u) * 16u + cc / 4u][cc % 4u] = v.z;
            bs3[(kq + 3u) * 16u + cc / 4u][cc % 4u] = v.w;
        } else {
            // B stored [k, n]: invocation reads 4 consecutive columns at one kk.
            let kk = tid / 16u;
            let cq = (tid % 16u) * 4u;
            let col = tile_c + cq;
            var v = vec4<f32>(0.0);
            if k0 + kk < p.k {
                v = b_run4(bb + (k0 + kk) * p.n + col, col, p.n);
            }
            bs3[kk * 16u + cq / 4u] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < K3; kk++) {
            let av = as3[kk * 16u + lid.y];
            let bv = bs3[kk * 16u + lid.x];
            acc0 = fma(vec4<f32>(av.x), bv, acc0);
            acc1 = fma(vec4<f32>(av.y), bv, acc1);
            acc2 = fma(vec4<f32>(av.z), bv, acc2);
            acc3 = fma(vec4<f32>(av.w), bv, acc3);
        }
        workgroupBarrier();
    }
    let r0 = tile_r + lid.y * 4u;
    let c0 = tile_c + lid.x * 4u;
    let cb = bz * p.m * p.n;
    let bv = bias_run4(c0);
    if ALIGNED && c0 < p.n {
        // n is a multiple of 4, so the whole row segment is inside C or outside it.
        let i = (cb + r0 * p.n + c0) >> 2u;
        let row4 = p.n >> 2u;
        if r0 < p.m {
            c4[i] = epilogue4(acc0, bv);
        }
        if r0 + 1u < p.m {
            c4[i + row4] = epilogue4(acc1, bv);
        }
        if r0 + 2u < p.m {
            c4[i + 2u * row4] = epilogue4(acc2, bv);
        }
        if r0 + 3u < p.m {
            c4[i + 3u * row4] = epilogue4(acc3, bv);
        }
    } else if !ALIGNED {
        store_c4_row4(cb, r0, c0, acc0, bv);
        store_c4_row4(cb, r0 + 1u, c0, acc1, bv);
        store_c4_row4(cb, r0 + 2u, c0, acc2, bv);
        store_c4_row4(cb, r0 + 3u, c0, acc3, bv);
    }
}

// Stores one row segment through the vec4 view of C, with the epilogue (biases bv).
fn store_c4_row4(base: u32, row: u32, col: u32, v: vec4<f32>, bv: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        if row < p.m && col + j < p.n {
            let i = base + row * p.n + col + j;
            c4[i >> 2u][i & 3u] = epilogue(v[j], HAS_BIAS, bv[j], ACT);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// v6: v3's design with larger register tiles, for hardware GPUs: a 128×128 tile of C per
// workgroup of 16×16 invocations, each holding an 8×8 block (four 4×4 sub-blocks, rows 4·ty and
// 64 + 4·ty, columns 4·tx and 64 + 4·tx, so neighbouring invocations read neighbouring vec4s of
// workgroup memory); k advances 8 at a time through k-major tiles of A and B (8 KiB), each
// invocation staging one vec4 run of each. Per k index an invocation reads 4 vec4s for 64
// multiply-adds (v3: 2 for 16): the register tiling of the WGSL kernels that reach 67–72% of f32
// peak on Apple M2 (see issue 17). Never timed on hardware here: the tuner decides where it runs.
// Grid (unfolded, see Params.m_tiles): [ceil(n / 128), ceil(m / 128), batch].

const T6: u32 = 128u;
const K6: u32 = 8u;

// as6[kk * 32 + i] holds op(A)[tile row 4i..4i+3, kk]; bs6[kk * 32 + j] holds op(B)[kk, tile col 4j..4j+3].
var<workgroup> as6: array<vec4<f32>, 256>;
var<workgroup> bs6: array<vec4<f32>, 256>;

// acc + the outer product of a (4 rows) and b (4 columns): row i of the block is acc[i].
fn outer_add(acc: mat4x4<f32>, a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(
        fma(vec4<f32>(a.x), b, acc[0]),
        fma(vec4<f32>(a.y), b, acc[1]),
        fma(vec4<f32>(a.z), b, acc[2]),
        fma(vec4<f32>(a.w), b, acc[3]),
    );
}

// Stores a 4×4 block (row i: acc[i]) at rows r.., columns c.. with the epilogue, as v3 stores.
fn store_block(base: u32, r: u32, c: u32, acc: mat4x4<f32>) {
    let bv = bias_run4(c);
    if ALIGNED {
        // n is a multiple of 4, so the whole row segment is inside C or outside it.
        if c < p.n {
            for (var i = 0u; i < 4u; i++) {
                if r + i < p.m {
                    c4[(base + (r + i) * p.n + c) >> 2u] = epilogue4(acc[i], bv);
                }
            }
        }
        return;
    }
    for (var i = 0u; i < 4u; i++) {
        store_c4_row4(base, r + i, c, acc[i], bv);
    }
}

@compute @workgroup_size(16, 16)
fn matmul_v6_tiled8(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let at = place(wid.y, wid.z, nwg.y);
    let tile_r = at.x * T6;
    let tile_c = wid.x * T6;
    let bz = at.y;
    // Past the last batch item of a folded grid; the whole workgroup leaves together.
    if bz >= p.batch {
        return;
    }
    let ab = bz * p.a_stride;
    let bb = bz * p.b_stride;
    // acc<rows><cols>: l = the first 64, h = the second 64 of the tile.
    var acc_ll = mat4x4<f32>();
    var acc_lh = mat4x4<f32>();
    var acc_hl = mat4x4<f32>();
    var acc_hh = mat4x4<f32>();
    for (var k0 = 0u; k0 < p.k; k0 += K6) {
        // Stage op(A)[tile rows, k0..k0+8): 1024 values, one run of four per invocation, read
        // along whichever axis is contiguous in memory.
        if TRANS_A {
            // A stored [k, m]: 4 consecutive rows at one kk.
            let kk = tid / 32u;
            let rq = (tid % 32u) * 4u;
            let row = tile_r + rq;
            var v = vec4<f32>(0.0);
            if k0 + kk < p.k {
                v = a_run4(ab + (k0 + kk) * p.m + row, row, p.m);
            }
            as6[kk * 32u + rq / 4u] = v;
        } else {
            // A stored [m, k]: 4 consecutive kk of one row, stored k-major.
            let rr = tid / 2u;
            let kq = (tid % 2u) * 4u;
            let row = tile_r + rr;
            var v = vec4<f32>(0.0);
            if row < p.m {
                v = a_run4(ab + row * p.k + k0 + kq, k0 + kq, p.k);
            }
            for (var j = 0u; j < 4u; j++) {
                as6[(kq + j) * 32u + rr / 4u][rr % 4u] = v[j];
            }
        }
        // Stage op(B)[k0..k0+8, tile cols] the same way.
        if TRANS_B {
            // B stored [n, k]: 4 consecutive kk of one column.
            let cc = tid / 2u;
            let kq = (tid % 2u) * 4u;
            let col = tile_c + cc;
            var v = vec4<f32>(0.0);
            if col < p.n {
                v = b_run4(bb + col * p.k + k0 + kq, k0 + kq, p.k);
            }
            for (var j = 0u; j < 4u; j++) {
                bs6[(kq + j) * 32u + cc / 4u][cc % 4u] = v[j];
            }
        } else {
            // B stored [k, n]: 4 consecutive columns at one kk.
            let kk = tid / 32u;
            let cq = (tid % 32u) * 4u;
            let col = tile_c + cq;
            var v = vec4<f32>(0.0);
            if k0 + kk < p.k {
                v = b_run4(bb + (k0 + kk) * p.n + col, col, p.n);
            }
            bs6[kk * 32u + cq / 4u] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < K6; kk++) {
            let a_l = as6[kk * 32u + lid.y];
            let a_h = as6[kk * 32u + 16u + lid.y];
            let b_l = bs6[kk * 32u + lid.x];
            let b_h = bs6[kk * 32u + 16u + lid.x];
            acc_ll = outer_add(acc_ll, a_l, b_l);
            acc_lh = outer_add(acc_lh, a_l, b_h);
            acc_hl = outer_add(acc_hl, a_h, b_l);
            acc_hh = outer_add(acc_hh, a_h, b_h);
        }
        workgroupBarrier();
    }
    let cb = bz * p.m * p.n;
    let r_l = tile_r + lid.y * 4u;
    let c_l = tile_c + lid.x * 4u;
    store_block(cb, r_l, c_l, acc_ll);
    store_block(cb, r_l, c_l + 64u, acc_lh);
    store_block(cb, r_l + 64u, c_l, acc_hl);
    store_block(cb, r_l + 64u, c_l + 64u, acc_hh);
}

// ---------------------------------------------------------------------------------------------
// v4: wide register blocks for software adapters (lavapipe, llvmpipe). They run a workgroup on
// one CPU thread with invocations as SIMD lanes: arithmetic is cheap, but every load from a
// storage buffer (or from shared memory) becomes a loop over the lanes, whatever the address. So
// each invocation holds a 32×16 block of C (32 mat4x4 accumulators: one per 4×4 sub-block), and
// each k-step of 4 loads 8 + 4 vec4 runs of A and B for 2048 multiply-adds. Matrices make the
// inner step a single `acc += a * b` per sub-block, and `transpose` is free in SIMD-of-lanes
// code, so either storage order of A and B is loaded along its contiguous axis. No shared memory,
// no barriers (a barrier there is a coroutine switch). On a hardware GPU this many registers per
// invocation would spill; the launch builder uses v3 there.
// Grid (unfolded, see Params.m_tiles): [ceil(n / 128), ceil(m / 32), batch]; workgroup of 8 along n.

// op(A)[r..r+4, k0..k0+4] as a matrix whose column j is k index k0 + j (components: the rows).
// Rows and k indices past the edge are clamped: their products are masked or dropped later.
fn a_tile(base: u32, r: u32, k0: u32) -> mat4x4<f32> {
    let step = vec4<u32>(0u, 1u, 2u, 3u);
    let rows = min(vec4<u32>(r) + step, vec4<u32>(p.m - 1u));
    let ks = min(vec4<u32>(k0) + step, vec4<u32>(p.k - 1u));
    if TRANS_A {
        // Stored [k, m]: each k index holds the 4 rows side by side.
        if A_VEC4 {
            // m is a multiple of 4, so a run starting at r is all inside or all past the edge.
            let rr = min(r, p.m - 4u);
            return mat4x4<f32>(
                a4[(base + ks.x * p.m + rr) >> 2u],
                a4[(base + ks.y * p.m + rr) >> 2u],
                a4[(base + ks.z * p.m + rr) >> 2u],
                a4[(base + ks.w * p.m + rr) >> 2u],
            );
        }
        return mat4x4<f32>(
            vec4<f32>(a_one(base + ks.x * p.m + rows.x), a_one(base + ks.x * p.m + rows.y), a_one(base + ks.x * p.m + rows.z), a_one(base + ks.x * p.m + rows.w)),
            vec4<f32>(a_one(base + ks.y * p.m + rows.x), a_one(base + ks.y * p.m + rows.y), a_one(base + ks.y * p.m + rows.z), a_one(base + ks.y * p.m + rows.w)),
            vec4<f32>(a_one(base + ks.z * p.m + rows.x), a_one(base + ks.z * p.m + rows.y), a_one(base + ks.z * p.m + rows.z), a_one(base + ks.z * p.m + rows.w)),
            vec4<f32>(a_one(base + ks.w * p.m + rows.x), a_one(base + ks.w * p.m + rows.y), a_one(base + ks.w * p.m + rows.z), a_one(base + ks.w * p.m + rows.w)),
        );
    }
    // Stored [m, k]: each row holds the 4 k indices side by side.
    if A_VEC4 {
        // k is a multiple of 4, so k0..k0+4 is inside.
        return transpose(mat4x4<f32>(
            a4[(base + rows.x * p.k + k0) >> 2u],
            a4[(base + rows.y * p.k + k0) >> 2u],
            a4[(base + rows.z * p.k + k0) >> 2u],
            a4[(base + rows.w * p.k + k0) >> 2u],
        ));
    }
    return transpose(mat4x4<f32>(
        vec4<f32>(a_one(base + rows.x * p.k + ks.x), a_one(base + rows.x * p.k + ks.y), a_one(base + rows.x * p.k + ks.z), a_one(base + rows.x * p.k + ks.w)),
        vec4<f32>(a_one(base + rows.y * p.k + ks.x), a_one(base + rows.y * p.k + ks.y), a_one(base + rows.y * p.k + ks.z), a_one(base + rows.y * p.k + ks.w)),
        vec4<f32>(a_one(base + rows.z * p.k + ks.x), a_one(base + rows.z * p.k + ks.y), a_one(base + rows.z * p.k + ks.z), a_one(base + rows.z * p.k + ks.w)),
        vec4<f32>(a_one(base + rows.w * p.k + ks.x), a_one(base + rows.w * p.k + ks.y), a_one(base + rows.w * p.k + ks.z), a_one(base + rows.w * p.k + ks.w)),
    ));
}

// op(B)[k0..k0+4, c..c+4] as a matrix whose column j is output column c + j (components: the k
// indices). Past the last k index the components are zero, so clamped A values add nothing.
fn b_tile(base: u32, k0: u32, c: u32) -> mat4x4<f32> {
    let step = vec4<u32>(0u, 1u, 2u, 3u);
    let cols = min(vec4<u32>(c) + step, vec4<u32>(p.n - 1u));
    let ks = min(vec4<u32>(k0) + step, vec4<u32>(p.k - 1u));
    var t: mat4x4<f32>;
    if TRANS_B {
        // Stored [n, k]: each column holds the 4 k indices side by side.
        if B_VEC4 {
            t = mat4x4<f32>(
                b4[(base + cols.x * p.k + k0) >> 2u],
                b4[(base + cols.y * p.k + k0) >> 2u],
                b4[(base + cols.z * p.k + k0) >> 2u],
                b4[(base + cols.w * p.k + k0) >> 2u],
            );
        } else {
            t = mat4x4<f32>(
                vec4<f32>(b_one(base + cols.x * p.k + ks.x), b_one(base + cols.x * p.k + ks.y), b_one(base + cols.x * p.k + ks.z), b_one(base + cols.x * p.k + ks.w)),
                vec4<f32>(b_one(base + cols.y * p.k + ks.x), b_one(base + cols.y * p.k + ks.y), b_one(base + cols.y * p.k + ks.z), b_one(base + cols.y * p.k + ks.w)),
                vec4<f32>(b_one(base + cols.z * p.k + ks.x), b_one(base + cols.z * p.k + ks.y), b_one(base + cols.z * p.k + ks.z), b_one(base + cols.z * p.k + ks.w)),
                vec4<f32>(b_one(base + cols.w * p.k + ks.x), b_one(base + cols.w * p.k + ks.y), b_one(base + cols.w * p.k + ks.z), b_one(base + cols.w * p.k + ks.w)),
            );
        }
    } else {
        // Stored [k, n]: each k index holds the 4 columns side by side.
        if B_VEC4 {
            let cc = min(c, p.n - 4u);
            t = transpose(mat4x4<f32>(
                b4[(base + ks.x * p.n + cc) >> 2u],
                b4[(base + ks.y * p.n + cc) >> 2u],
                b4[(base + ks.z * p.n + cc) >> 2u],
                b4[(base + ks.w * p.n + cc) >> 2u],
            ));
        } else {
            t = transpose(mat4x4<f32>(
                vec4<f32>(b_one(base + ks.x * p.n + cols.x), b_one(base + ks.x * p.n + cols.y), b_one(base + ks.x * p.n + cols.z), b_one(base + ks.x * p.n + cols.w)),
                vec4<f32>(b_one(base + ks.y * p.n + cols.x), b_one(base + ks.y * p.n + cols.y), b_one(base + ks.y * p.n + cols.z), b_one(base + ks.y * p.n + cols.w)),
                vec4<f32>(b_one(base + ks.z * p.n + cols.x), b_one(base + ks.z * p.n + cols.y), b_one(base + ks.z * p.n + cols.z), b_one(base + ks.z * p.n + cols.w)),
                vec4<f32>(b_one(base + ks.w * p.n + cols.x), b_one(base + ks.w * p.n + cols.y), b_one(base + ks.w * p.n + cols.z), b_one(base + ks.w * p.n + cols.w)),
            ));
        }
    }
    if !K_EXACT {
        let live = vec4<u32>(k0) + step < vec4<u32>(p.k);
        let zero = vec4<f32>(0.0);
        t = mat4x4<f32>(select(zero, t[0], live), select(zero, t[1], live), select(zero, t[2], live), select(zero, t[3], live));
    }
    return t;
}

// Stores the 4×4 sub-block `acc` (column j: output column c + j) at rows r.., columns c..,
// with the epilogue (bv: the biases of columns c..c+3).
fn store_tile(base: u32, r: u32, c: u32, acc: mat4x4<f32>, bv: vec4<f32>) {
    if C_VEC4 {
        // n is a multiple of 4 and c is too: the row segment is all inside or all outside.
        if c < p.n {
            let rows = transpose(acc);
            for (var i = 0u; i < 4u; i++) {
                if r + i < p.m {
                    c4[(base + (r + i) * p.n + c) >> 2u] = epilogue4(rows[i], bv);
                }
            }
        }
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        for (var i = 0u; i < 4u; i++) {
            if r + i < p.m && c + j < p.n {
                let at = base + (r + i) * p.n + c + j;
                c4[at >> 2u][at & 3u] = epilogue(acc[j][i], HAS_BIAS, bv[j], ACT);
            }
        }
    }
}

@compute @workgroup_size(8)
fn matmul_v4_wide(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    // One workgroup per row tile along y: gid.y is the workgroup's y.
    let at = place(gid.y, gid.z, nwg.y);
    let c0 = gid.x * 16u;
    let r0 = at.x * 32u;
    let bz = at.y;
    if bz >= p.batch {
        return;
    }
    let ab = bz * p.a_stride;
    let bb = bz * p.b_stride;
    // acc<i><t>: rows r0 + 4i.., columns c0 + 4t...
    var acc00 = mat4x4<f32>();
    var acc01 = mat4x4<f32>();
    var acc02 = mat4x4<f32>();
    var acc03 = mat4x4<f32>();
    var acc10 = mat4x4<f32>();
    var acc11 = mat4x4<f32>();
    var acc12 = mat4x4<f32>();
    var acc13 = mat4x4<f32>();
    var acc20 = mat4x4<f32>();
    var acc21 = mat4x4<f32>();
    var acc22 = mat4x4<f32>();
    var acc23 = mat4x4<f32>();
    var acc30 = mat4x4<f32>();
    var acc31 = mat4x4<f32>();
    var acc32 = mat4x4<f32>();
    var acc33 = mat4x4<f32>();
    var acc40 = mat4x4<f32>();
    var acc41 = mat4x4<f32>();
    var acc42 = mat4x4<f32>();
    var acc43 = mat4x4<f32>();
    var acc50 = mat4x4<f32>();
    var acc51 = mat4x4<f32>();
    var acc52 = mat4x4<f32>();
    var acc53 = mat4x4<f32>();
    var acc60 = mat4x4<f32>();
    var acc61 = mat4x4<f32>();
    var acc62 = mat4x4<f32>();
    var acc63 = mat4x4<f32>();
    var acc70 = mat4x4<f32>();
    var acc71 = mat4x4<f32>();
    var acc72 = mat4x4<f32>();
    var acc73 = mat4x4<f32>();
    for (var k0 = 0u; k0 < p.k; k0 += 4u) {
        let b0 = b_tile(bb, k0, c0);
        let b1 = b_tile(bb, k0, c0 + 4u);
        let b2 = b_tile(bb, k0, c0 + 8u);
        let b3 = b_tile(bb, k0, c0 + 12u);
        let a0 = a_tile(ab, r0, k0);
        acc00 += a0 * b0;
        acc01 += a0 * b1;
        acc02 += a0 * b2;
        acc03 += a0 * b3;
        let a1 = a_tile(ab, r0 + 4u, k0);
        acc10 += a1 * b0;
        acc11 += a1 * b1;
        acc12 += a1 * b2;
        acc13 += a1 * b3;
        let a2 = a_tile(ab, r0 + 8u, k0);
        acc20 += a2 * b0;
        acc21 += a2 * b1;
        acc22 += a2 * b2;
        acc23 += a2 * b3;
        let a3 = a_tile(ab, r0 + 12u, k0);
        acc30 += a3 * b0;
        acc31 += a3 * b1;
        acc32 += a3 * b2;
        acc33 += a3 * b3;
        let a4_ = a_tile(ab, r0 + 16u, k0);
        acc40 += a4_ * b0;
        acc41 += a4_ * b1;
        acc42 += a4_ * b2;
        acc43 += a4_ * b3;
        let a5 = a_tile(ab, r0 + 20u, k0);
        acc50 += a5 * b0;
        acc51 += a5 * b1;
        acc52 += a5 * b2;
        acc53 += a5 * b3;
        let a6 = a_tile(ab, r0 + 24u, k0);
        acc60 += a6 * b0;
        acc61 += a6 * b1;
        acc62 += a6 * b2;
        acc63 += a6 * b3;
        let a7 = a_tile(ab, r0 + 28u, k0);
        acc70 += a7 * b0;
        acc71 += a7 * b1;
        acc72 += a7 * b2;
        acc73 += a7 * b3;
    }
    let cb = bz * p.m * p.n;
    // The biases of this invocation's 16 columns, loaded once for its 32 rows.
    let bv0 = bias_run4(c0);
    let bv1 = bias_run4(c0 + 4u);
    let bv2 = bias_run4(c0 + 8u);
    let bv3 = bias_run4(c0 + 12u);
    // The 8 row groups are stored by one loop that stores group 0 and moves the others up: one
    // inlined copy of the stores and their epilogue instead of eight keeps the pipeline quick to
    // compile (lavapipe creates it in ~0.1 s instead of 0.5–1.7 s), and registers move without
    // indexing (an array of the 32 blocks, indexed in a loop, ran at half speed there).
    for (var i = 0u; i < 8u; i++) {
        let r = r0 + 4u * i;
        store_tile(cb, r, c0, acc00, bv0);
        store_tile(cb, r, c0 + 4u, acc01, bv1);
        store_tile(cb, r, c0 + 8u, acc02, bv2);
        store_tile(cb, r, c0 + 12u, acc03, bv3);
        acc00 = acc10;
        acc01 = acc11;
        acc02 = acc12;
        acc03 = acc13;
        acc10 = acc20;
        acc11 = acc21;
        acc12 = acc22;
        acc13 = acc23;
        acc20 = acc30;
        acc21 = acc31;
        acc22 = acc32;
        acc23 = acc33;
        acc30 = acc40;
        acc31 = acc41;
        acc32 = acc42;
        acc33 = acc43;
        acc40 = acc50;
        acc41 = acc51;
        acc42 = acc52;
        acc43 = acc53;
        acc50 = acc60;
        acc51 = acc61;
        acc52 = acc62;
        acc53 = acc63;
        acc60 = acc70;
        acc61 = acc71;
        acc62 = acc72;
        acc63 = acc73;
    }
}

// ---------------------------------------------------------------------------------------------
// f16 storage: A and B hold IEEE half-precision values two to a 32-bit word (element i in word
// i / 2, the even one in the low half: WGSL's pack2x16float), products accumulate in f32 and C is
// f32. It halves the bytes A and B take and move, the building block of mixed precision. Core
// WGSL (unpack2x16float), so every adapter runs it, with or without the `shader-f16` feature.
// v2's design: a 4×4 block of C per invocation, operands from global memory.
// Grid (unfolded, see Params.m_tiles): [ceil(n / 32), ceil(m / 32), batch].

@group(0) @binding(1) var<storage, read> a_half: array<u32>;
@group(0) @binding(2) var<storage, read> b_half: array<u32>;

// Element i of a packed f16 buffer whose word i / 2 is `word`, as f32 (exact).
fn half_at(word: u32, i: u32) -> f32 {
    let pair = unpack2x16float(word);
    return select(pair.x, pair.y, (i & 1u) == 1u);
}

// op(A)[row, kk] and op(B)[kk, col] of the batch item starting at `base`, from the packed views.
fn a_half_at(base: u32, row: u32, kk: u32) -> f32 {
    var i = base + row * p.k + kk;
    if TRANS_A {
        i = base + kk * p.m + row;
    }
    return half_at(a_half[i >> 1u], i);
}

fn b_half_at(base: u32, kk: u32, col: u32) -> f32 {
    var i = base + kk * p.n + col;
    if TRANS_B {
        i = base + col * p.k + kk;
    }
    return half_at(b_half[i >> 1u], i);
}

@compute @workgroup_size(8, 8)
fn matmul_f16_blocked(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let at = place(wid.y, wid.z, nwg.y);
    let c0 = (wid.x * 8u + lid.x) * 4u;
    let r0 = (at.x * 8u + lid.y) * 4u;
    let bz = at.y;
    if bz >= p.batch || r0 >= p.m || c0 >= p.n {
        return;
    }
    let ab = bz * p.a_stride;
    let bb = bz * p.b_stride;
    // Rows and columns past the edge are clamped to the last one, as in v2.
    let rows = min(vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.m - 1u));
    let cols = min(vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u));
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < p.k; kk++) {
        let bv = vec4<f32>(b_half_at(bb, kk, cols.x), b_half_at(bb, kk, cols.y), b_half_at(bb, kk, cols.z), b_half_at(bb, kk, cols.w));
        acc0 = fma(vec4<f32>(a_half_at(ab, rows.x, kk)), bv, acc0);
        acc1 = fma(vec4<f32>(a_half_at(ab, rows.y, kk)), bv, acc1);
        acc2 = fma(vec4<f32>(a_half_at(ab, rows.z, kk)), bv, acc2);
        acc3 = fma(vec4<f32>(a_half_at(ab, rows.w, kk)), bv, acc3);
    }
    let cb = bz * p.m * p.n;
    store_c_row4(cb, r0, c0, acc0);
    store_c_row4(cb, r0 + 1u, c0, acc1);
    store_c_row4(cb, r0 + 2u, c0, acc2);
    store_c_row4(cb, r0 + 3u, c0, acc3);
}

// f32 → packed f16: word w of `packed` (bound at B's binding) holds elements 2w and 2w + 1 of
// `a` (0 past the end), rounded to a neighbouring f16 (WGSL lets an implementation round to
// either one). p.m holds the element count. One word per invocation; grid: 1-D over ceil(count / 2) words (`grid_1d`).
@group(0) @binding(2) var<storage, read_write> packed: array<u32>;

@compute @workgroup_size(64)
fn pack_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = gid.x + gid.y * (nwg.x * 64u);
    let count = p.m;
    if 2u * w >= count {
        return;
    }
    let lo = a[2u * w];
    var hi = 0.0;
    if 2u * w + 1u < count {
        hi = a[2u * w + 1u];
    }
    packed[w] = pack2x16float(vec2<f32>(lo, hi));
}
