// Matrix products C = op(A)·op(B), batched, in numbered variants (v1..v4) kept for the benchmark.
// Transposed operands are override constants, so backward passes read A and B where they lie.

// Shapes of one batched product. A batch stride of 0 broadcasts that operand over the batch.
struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    // Elements between consecutive batch items of A and of B (C is dense: m·n).
    a_stride: u32,
    b_stride: u32,
    _pad0: u32,
    _pad1: u32,
}

// op(A) is [m, k]: A is stored [m, k], or [k, m] when TRANS_A. op(B) is [k, n]: B is stored
// [k, n], or [n, k] when TRANS_B. C is always [m, n].
override TRANS_A: bool = false;
override TRANS_B: bool = false;
// v3 only: the contiguous axis of A, of B and of C and both batch strides are multiples of 4,
// so tiles move as whole vec4s. The launch builder sets it; it is never a guess.
override ALIGNED: bool = false;

@group(0) @binding(0) var<uniform> p: Params;

// a: [batch | 1, m, k] (or [.., k, m]), b: [batch | 1, k, n] (or [.., n, k]), c: [batch, m, n]
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// The same buffers seen as vec4s, for v3's tile loads and stores. Bindings only have to be
// distinct within one entry point, and the buffer pool hands out sizes that are multiples of 16
// bytes (checked by the launch builder), so no element is out of reach of this view.
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c4: array<vec4<f32>>;

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

fn store_c(base: u32, row: u32, col: u32, v: f32) {
    if row < p.m && col < p.n {
        c[base + row * p.n + col] = v;
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
// Grid: [ceil(n / 16), ceil(m / 16), batch].

@compute @workgroup_size(16, 16)
fn matmul_v1_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let row = gid.y;
    let bz = gid.z;
    if row >= p.m || col >= p.n {
        return;
    }
    let ab = bz * p.a_stride;
    let bb = bz * p.b_stride;
    var acc = 0.0;
    for (var kk = 0u; kk < p.k; kk++) {
        acc = fma(a_at(ab, row, kk), b_at(bb, kk, col), acc);
    }
    c[bz * p.m * p.n + row * p.n + col] = acc;
}

// ---------------------------------------------------------------------------------------------
// v2: register-blocked, a 4×4 block of C per invocation, operands read from global memory (no
// shared memory, no barriers). Each loaded value feeds four FMAs instead of one.
// Grid: [ceil(n / 32), ceil(m / 32), batch].

@compute @workgroup_size(8, 8)
fn matmul_v2_blocked(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c0 = gid.x * 4u;
    let r0 = gid.y * 4u;
    let bz = gid.z;
    if r0 >= p.m || c0 >= p.n {
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
// Grid: [ceil(n / 64), ceil(m / 64), batch].

const T3: u32 = 64u;
const K3: u32 = 16u;

// as3[kk * 16 + i] holds op(A)[tile row 4i..4i+3, kk]; bs3[kk * 16 + j] holds op(B)[kk, tile col 4j..4j+3].
var<workgroup> as3: array<vec4<f32>, 256>;
var<workgroup> bs3: array<vec4<f32>, 256>;

// Scalar read through the vec4 view (v3 binds only that view).
fn a4_at(i: u32) -> f32 {
    return a4[i >> 2u][i & 3u];
}

fn b4_at(i: u32) -> f32 {
    return b4[i >> 2u][i & 3u];
}

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
            v[j] = a4_at(i + j);
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
            v[j] = b4_at(i + j);
        }
    }
    return v;
}

@compute @workgroup_size(16, 16)
fn matmul_v3_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let tile_r = wid.y * T3;
    let tile_c = wid.x * T3;
    let bz = wid.z;
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
    if ALIGNED && c0 < p.n {
        // n is a multiple of 4, so the whole row segment is inside C or outside it.
        let i = (cb + r0 * p.n + c0) >> 2u;
        let row4 = p.n >> 2u;
        if r0 < p.m {
            c4[i] = acc0;
        }
        if r0 + 1u < p.m {
            c4[i + row4] = acc1;
        }
        if r0 + 2u < p.m {
            c4[i + 2u * row4] = acc2;
        }
        if r0 + 3u < p.m {
            c4[i + 3u * row4] = acc3;
        }
    } else if !ALIGNED {
        store_c4_row4(cb, r0, c0, acc0);
        store_c4_row4(cb, r0 + 1u, c0, acc1);
        store_c4_row4(cb, r0 + 2u, c0, acc2);
        store_c4_row4(cb, r0 + 3u, c0, acc3);
    }
}

fn store_c4_row4(base: u32, row: u32, col: u32, v: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        if row < p.m && col + j < p.n {
            let i = base + row * p.n + col + j;
            c4[i >> 2u][i & 3u] = v[j];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// v4: one SIMD-width strip per workgroup, for software adapters (lavapipe, llvmpipe). They run a
// workgroup on one CPU thread with invocations as SIMD lanes, load a value whose address is the
// same in every lane once and broadcast it, but fetch a per-lane address lane by lane. So here
// every load is workgroup-uniform: the 8 lanes share 16 rows of A, and the B value each lane
// needs is picked out of 16 broadcast columns with selects. No shared memory, no barriers
// (a barrier is a coroutine switch there). On a hardware GPU this shape wastes most of a warp;
// the launch builder prefers v3 there.
// Each workgroup computes C[16 rows, 16 cols]; lane l owns columns l and 8 + l.
// Grid: [ceil(n / 16), ceil(m / 16), batch].

// Element `lane` (0..8) of the eight values (lo, hi).
fn pick8(lane: u32, lo: vec4<f32>, hi: vec4<f32>) -> f32 {
    let v = select(lo, hi, lane >= 4u);
    let h = select(v.xy, v.zw, (lane & 2u) != 0u);
    return select(h.x, h.y, (lane & 1u) != 0u);
}

fn a_rows4(base: u32, rows: vec4<u32>, kk: u32) -> vec4<f32> {
    return vec4<f32>(a_at(base, rows.x, kk), a_at(base, rows.y, kk), a_at(base, rows.z, kk), a_at(base, rows.w, kk));
}

fn b_cols4(base: u32, kk: u32, cols: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(b_at(base, kk, cols.x), b_at(base, kk, cols.y), b_at(base, kk, cols.z), b_at(base, kk, cols.w));
}

@compute @workgroup_size(8)
fn matmul_v4_strip(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let r0 = wid.y * 16u;
    let c0 = wid.x * 16u;
    let bz = wid.z;
    let ab = bz * p.a_stride;
    let bb = bz * p.b_stride;
    // Clamped like v2; all of these depend only on the workgroup, so they stay uniform.
    let step = vec4<u32>(0u, 1u, 2u, 3u);
    let ml = vec4<u32>(p.m - 1u);
    let nl = vec4<u32>(p.n - 1u);
    let ra0 = min(vec4<u32>(r0) + step, ml);
    let ra1 = min(vec4<u32>(r0 + 4u) + step, ml);
    let ra2 = min(vec4<u32>(r0 + 8u) + step, ml);
    let ra3 = min(vec4<u32>(r0 + 12u) + step, ml);
    let cb0 = min(vec4<u32>(c0) + step, nl);
    let cb1 = min(vec4<u32>(c0 + 4u) + step, nl);
    let cb2 = min(vec4<u32>(c0 + 8u) + step, nl);
    let cb3 = min(vec4<u32>(c0 + 12u) + step, nl);
    // lo_i: rows 4i..4i+3 at column l; hi_i: the same rows at column 8 + l.
    var lo0 = vec4<f32>(0.0);
    var lo1 = vec4<f32>(0.0);
    var lo2 = vec4<f32>(0.0);
    var lo3 = vec4<f32>(0.0);
    var hi0 = vec4<f32>(0.0);
    var hi1 = vec4<f32>(0.0);
    var hi2 = vec4<f32>(0.0);
    var hi3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < p.k; kk++) {
        let blo = vec4<f32>(pick8(lane, b_cols4(bb, kk, cb0), b_cols4(bb, kk, cb1)));
        let bhi = vec4<f32>(pick8(lane, b_cols4(bb, kk, cb2), b_cols4(bb, kk, cb3)));
        let a0 = a_rows4(ab, ra0, kk);
        let a1 = a_rows4(ab, ra1, kk);
        let a2 = a_rows4(ab, ra2, kk);
        let a3 = a_rows4(ab, ra3, kk);
        lo0 = fma(a0, blo, lo0);
        lo1 = fma(a1, blo, lo1);
        lo2 = fma(a2, blo, lo2);
        lo3 = fma(a3, blo, lo3);
        hi0 = fma(a0, bhi, hi0);
        hi1 = fma(a1, bhi, hi1);
        hi2 = fma(a2, bhi, hi2);
        hi3 = fma(a3, bhi, hi3);
    }
    let cb = bz * p.m * p.n;
    let col_lo = c0 + lane;
    let col_hi = c0 + 8u + lane;
    for (var i = 0u; i < 4u; i++) {
        store_c(cb, r0 + i, col_lo, lo0[i]);
        store_c(cb, r0 + 4u + i, col_lo, lo1[i]);
        store_c(cb, r0 + 8u + i, col_lo, lo2[i]);
        store_c(cb, r0 + 12u + i, col_lo, lo3[i]);
        store_c(cb, r0 + i, col_hi, hi0[i]);
        store_c(cb, r0 + 4u + i, col_hi, hi1[i]);
        store_c(cb, r0 + 8u + i, col_hi, hi2[i]);
        store_c(cb, r0 + 12u + i, col_hi, hi3[i]);
    }
}
