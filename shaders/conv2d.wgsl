// 2-D convolution (NCHW, no groups) as three implicit GEMMs that gather their operands on the fly,
// so no im2col buffer is materialized: forward, input gradient (a gather, no atomics), weight
// gradient. The forward applies the planner's epilogue (bias per output channel, activation) as it
// stores, with `epilogue` from unary.wgsl, which the shader table prepends.
//
// Shapes: x [N, C, H, W], w [O, C, KH, KW], y [N, O, OH, OW]; a row of w is ordered (c, ky, kx).
// Every invocation accumulates a TM × 8 register block: TM GEMM rows (channels, the same for the
// whole workgroup) by 8 columns held as two vec4 groups. Each operand loaded from memory feeds 8
// or TM multiply-adds; on CPU adapters (lavapipe) every storage-buffer load is a per-lane loop, so
// this reuse is what sets the speed. Forward and input gradient use no workgroup memory; the weight
// gradient splits its long reduction over the workgroup and sums the partial tiles at the end,
// with a handful of barriers (barriers are expensive on CPU adapters).

struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    o: u32,
    kh: u32,
    kw: u32,
    oh: u32,
    ow: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    unused: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

const WG: u32 = 64u;
// GEMM rows per invocation: 4, 8 or 16, chosen per launch from the row count (kernels/conv.rs).
override TM: u32 = 16u;
const TM_MAX: u32 = 16u;
// Columns 0..3 of an invocation are WG apart, so neighbouring invocations touch neighbouring
// addresses; columns 4..7 follow 4·WG later.
const LANES = vec4<u32>(0u, WG, 2u * WG, 3u * WG);

// `select(vec4<u32>(0u), at, ok)`: the gather index where the lane is inside the image, else 0
// (a valid address, whose value is then dropped). Written as a product, not a select: naga turns a
// select on integer vectors into GLSL's `mix(uvec4, uvec4, bvec4)`, which desktop GL has only from
// 4.50 (older drivers reject it or run it through the float `mix`, wrong past 2^24).
fn index_or_zero(at: vec4<u32>, ok: vec4<bool>) -> vec4<u32> {
    return at * vec4<u32>(ok);
}

// ---- forward: y = W · im2col(x), M = O, N = N·OH·OW, K = C·KH·KW ----

@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;        // x: [N, C, H, W]
@group(0) @binding(2) var<storage, read> fwd_w: array<f32>;        // w: [O, C, KH, KW]
@group(0) @binding(3) var<storage, read_write> fwd_y: array<f32>;  // y: [N, O, OH, OW]
// bias: [O]. Bound by every forward launch; without HAS_BIAS the launch builder binds x here,
// never read.
@group(0) @binding(4) var<storage, read> fwd_bias: array<f32>;

// The forward's epilogue (fuse.rs): each output of channel o becomes act(v + bias[o]). HAS_BIAS
// adds the bias; ACT is a UnaryOp code (`UnaryOp::code`), or NO_ACT for none.
override HAS_BIAS: bool = false;
override ACT: u32 = NO_ACT;

@compute @workgroup_size(WG)
fn conv2d_forward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let npix = p.n * p.oh * p.ow;
    let first = (wg.x + wg.y * nwg.x) * WG * 8u + lid;
    let o0 = wg.z * TM;
    let hw = p.h * p.w;
    let k_len = p.c * p.kh * p.kw;
    // Per output pixel: its image's offset in x and the top-left corner of its receptive field,
    // which may lie in the padding. Pixels past the end are clamped and not written.
    let q0 = min(vec4<u32>(first) + LANES, vec4<u32>(npix - 1u));
    let q1 = min(vec4<u32>(first + 4u * WG) + LANES, vec4<u32>(npix - 1u));
    let t0 = q0 / p.ow;
    let t1 = q1 / p.ow;
    let img0 = vec4<i32>((t0 / p.oh) * p.c * hw);
    let img1 = vec4<i32>((t1 / p.oh) * p.c * hw);
    let top0 = vec4<i32>((t0 % p.oh) * p.sh) - vec4<i32>(i32(p.ph));
    let top1 = vec4<i32>((t1 % p.oh) * p.sh) - vec4<i32>(i32(p.ph));
    let left0 = vec4<i32>((q0 % p.ow) * p.sw) - vec4<i32>(i32(p.pw));
    let left1 = vec4<i32>((q1 % p.ow) * p.sw) - vec4<i32>(i32(p.pw));
    // Rows past O read row O − 1 (valid memory); their results are dropped.
    var wrow: array<u32, TM_MAX>;
    for (var i = 0u; i < TM; i++) {
        wrow[i] = min(o0 + i, p.o - 1u) * k_len;
    }
    let hv = vec4<i32>(i32(p.h));
    let wv = vec4<i32>(i32(p.w));
    var acc0: array<vec4<f32>, TM_MAX>;
    var acc1: array<vec4<f32>, TM_MAX>;
    var k = 0u;
    for (var c = 0u; c < p.c; c++) {
        let plane = vec4<i32>(i32(c * hw));
        for (var ky = 0u; ky < p.kh; ky++) {
            let ih0 = top0 + vec4<i32>(i32(ky * p.dh));
            let ih1 = top1 + vec4<i32>(i32(ky * p.dh));
            let row_ok0 = (ih0 >= vec4<i32>(0)) & (ih0 < hv);
            let row_ok1 = (ih1 >= vec4<i32>(0)) & (ih1 < hv);
            let row0 = img0 + plane + ih0 * wv;
            let row1 = img1 + plane + ih1 * wv;
            for (var kx = 0u; kx < p.kw; kx++) {
                let iw0 = left0 + vec4<i32>(i32(kx * p.dw));
                let iw1 = left1 + vec4<i32>(i32(kx * p.dw));
                let ok0 = row_ok0 & (iw0 >= vec4<i32>(0)) & (iw0 < wv);
                let ok1 = row_ok1 & (iw1 >= vec4<i32>(0)) & (iw1 < wv);
                let at0 = index_or_zero(vec4<u32>(row0 + iw0), ok0);
                let at1 = index_or_zero(vec4<u32>(row1 + iw1), ok1);
                let v0 = select(
                    vec4<f32>(0.0),
                    vec4<f32>(fwd_x[at0.x], fwd_x[at0.y], fwd_x[at0.z], fwd_x[at0.w]),
                    ok0,
                );
                let v1 = select(
                    vec4<f32>(0.0),
                    vec4<f32>(fwd_x[at1.x], fwd_x[at1.y], fwd_x[at1.z], fwd_x[at1.w]),
                    ok1,
                );
                for (var i = 0u; i < TM; i++) {
                    let wt = vec4<f32>(fwd_w[wrow[i] + k]);
                    acc0[i] = fma(wt, v0, acc0[i]);
                    acc1[i] = fma(wt, v1, acc1[i]);
                }
                k++;
            }
        }
    }
    // The biases of this invocation's channels, loaded once for its 8 pixels.
    var brow: array<f32, TM_MAX>;
    if (HAS_BIAS) {
        for (var i = 0u; i < TM; i++) {
            brow[i] = fwd_bias[min(o0 + i, p.o - 1u)];
        }
    }
    let plane_len = p.oh * p.ow;
    for (var j = 0u; j < 4u; j++) {
        let qa = first + j * WG;
        if (qa < npix) {
            let at = (qa / plane_len) * p.o * plane_len + qa % plane_len;
            for (var i = 0u; i < TM; i++) {
                if (o0 + i < p.o) {
                    fwd_y[at + (o0 + i) * plane_len] = epilogue(acc0[i][j], HAS_BIAS, brow[i], ACT);
                }
            }
        }
        let qb = first + (4u + j) * WG;
        if (qb < npix) {
            let at = (qb / plane_len) * p.o * plane_len + qb % plane_len;
            for (var i = 0u; i < TM; i++) {
                if (o0 + i < p.o) {
                    fwd_y[at + (o0 + i) * plane_len] = epilogue(acc1[i][j], HAS_BIAS, brow[i], ACT);
                }
            }
        }
    }
}

// ---- input gradient: dx = Wᵀ · dy gathered per dx element, M = C, N = N·H·W, K = O·KH·KW ----
// dx[n, c, ih, iw] = Σ_{o, ky, kx} w[o, c, ky, kx] · dy[n, o, oh, ow] over the taps with
// oh·sh − ph + ky·dh = ih (and likewise for ow); taps where the division by the stride is not
// exact or lands outside dy contribute nothing.

@group(0) @binding(1) var<storage, read> gin_dy: array<f32>;        // dy: [N, O, OH, OW]
@group(0) @binding(2) var<storage, read> gin_w: array<f32>;         // w: [O, C, KH, KW]
@group(0) @binding(3) var<storage, read_write> gin_dx: array<f32>;  // dx: [N, C, H, W]

@compute @workgroup_size(WG)
fn conv2d_grad_input(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let hw = p.h * p.w;
    let npix = p.n * hw;
    let first = (wg.x + wg.y * nwg.x) * WG * 8u + lid;
    let c0 = wg.z * TM;
    let plane_len = p.oh * p.ow;
    let taps = p.kh * p.kw;
    let q0 = min(vec4<u32>(first) + LANES, vec4<u32>(npix - 1u));
    let q1 = min(vec4<u32>(first + 4u * WG) + LANES, vec4<u32>(npix - 1u));
    let t0 = q0 / p.w;
    let t1 = q1 / p.w;
    let img0 = (t0 / p.h) * p.o * plane_len;
    let img1 = (t1 / p.h) * p.o * plane_len;
    // ih + ph and iw + pw: the padded coordinates the taps are subtracted from.
    let ph0 = vec4<i32>(t0 % p.h) + vec4<i32>(i32(p.ph));
    let ph1 = vec4<i32>(t1 % p.h) + vec4<i32>(i32(p.ph));
    let pw0 = vec4<i32>(q0 % p.w) + vec4<i32>(i32(p.pw));
    let pw1 = vec4<i32>(q1 % p.w) + vec4<i32>(i32(p.pw));
    var wcol: array<u32, TM_MAX>;
    for (var i = 0u; i < TM; i++) {
        wcol[i] = min(c0 + i, p.c - 1u) * taps;
    }
    let sh = vec4<u32>(p.sh);
    let sw = vec4<u32>(p.sw);
    let zero = vec4<i32>(0);
    let w_o_stride = p.c * taps;
    var acc0: array<vec4<f32>, TM_MAX>;
    var acc1: array<vec4<f32>, TM_MAX>;
    for (var ky = 0u; ky < p.kh; ky++) {
        let th0 = ph0 - vec4<i32>(i32(ky * p.dh));
        let th1 = ph1 - vec4<i32>(i32(ky * p.dh));
        let oh0 = vec4<u32>(max(th0, zero)) / sh;
        let oh1 = vec4<u32>(max(th1, zero)) / sh;
        let row_ok0 = (th0 >= zero) & (vec4<u32>(max(th0, zero)) == oh0 * sh)
            & (oh0 < vec4<u32>(p.oh));
        let row_ok1 = (th1 >= zero) & (vec4<u32>(max(th1, zero)) == oh1 * sh)
            & (oh1 < vec4<u32>(p.oh));
        for (var kx = 0u; kx < p.kw; kx++) {
            let tw0 = pw0 - vec4<i32>(i32(kx * p.dw));
            let tw1 = pw1 - vec4<i32>(i32(kx * p.dw));
            let ow0 = vec4<u32>(max(tw0, zero)) / sw;
            let ow1 = vec4<u32>(max(tw1, zero)) / sw;
            let ok0 = row_ok0 & (tw0 >= zero) & (vec4<u32>(max(tw0, zero)) == ow0 * sw)
                & (ow0 < vec4<u32>(p.ow));
            let ok1 = row_ok1 & (tw1 >= zero) & (vec4<u32>(max(tw1, zero)) == ow1 * sw)
                & (ow1 < vec4<u32>(p.ow));
            if (!any(ok0 | ok1)) {
                continue;
            }
            let base0 = index_or_zero(img0 + oh0 * p.ow + ow0, ok0);
            let base1 = index_or_zero(img1 + oh1 * p.ow + ow1, ok1);
            var wi = ky * p.kw + kx;
            var off = 0u;
            for (var o = 0u; o < p.o; o++) {
                let at0 = base0 + vec4<u32>(off);
                let at1 = base1 + vec4<u32>(off);
                let v0 = select(
                    vec4<f32>(0.0),
                    vec4<f32>(gin_dy[at0.x], gin_dy[at0.y], gin_dy[at0.z], gin_dy[at0.w]),
                    ok0,
                );
                let v1 = select(
                    vec4<f32>(0.0),
                    vec4<f32>(gin_dy[at1.x], gin_dy[at1.y], gin_dy[at1.z], gin_dy[at1.w]),
                    ok1,
                );
                for (var i = 0u; i < TM; i++) {
                    let wt = vec4<f32>(gin_w[wi + wcol[i]]);
                    acc0[i] = fma(wt, v0, acc0[i]);
                    acc1[i] = fma(wt, v1, acc1[i]);
                }
                off += plane_len;
                wi += w_o_stride;
            }
        }
    }
    for (var j = 0u; j < 4u; j++) {
        let qa = first + j * WG;
        if (qa < npix) {
            let at = (qa / hw) * p.c * hw + qa % hw;
            for (var i = 0u; i < TM; i++) {
                if (c0 + i < p.c) {
                    gin_dx[at + (c0 + i) * hw] = acc0[i][j];
                }
            }
        }
        let qb = first + (4u + j) * WG;
        if (qb < npix) {
            let at = (qb / hw) * p.c * hw + qb % hw;
            for (var i = 0u; i < TM; i++) {
                if (c0 + i < p.c) {
                    gin_dx[at + (c0 + i) * hw] = acc1[i][j];
                }
            }
        }
    }
}

// ---- weight gradient: dw = dy · im2col(x)ᵀ, M = O, N = C·KH·KW, K = N·OH·OW ----
// A workgroup owns a TM × 8 tile of dw (TM output channels by 8 taps); its invocations stride
// through the N·OH·OW pixels, and the WG partial tiles are summed at the end, 4 rows at a time.

@group(0) @binding(1) var<storage, read> gw_x: array<f32>;         // x: [N, C, H, W]
@group(0) @binding(2) var<storage, read> gw_dy: array<f32>;        // dy: [N, O, OH, OW]
@group(0) @binding(3) var<storage, read_write> gw_dw: array<f32>;  // dw: [O, C, KH, KW]

// One round of partial tiles: 4 rows × 2 tap groups per invocation (8 KiB).
var<workgroup> partial_tiles: array<vec4<f32>, 512>;

@compute @workgroup_size(WG)
fn conv2d_grad_weight(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let k0 = (wg.x + wg.y * nwg.x) * 8u;
    let o0 = wg.z * TM;
    let taps = p.kh * p.kw;
    let k_len = p.c * taps;
    let hw = p.h * p.w;
    let plane_len = p.oh * p.ow;
    let npix = p.n * plane_len;
    // The tile's 8 taps (c, ky, kx) as an offset into an image of x and a shift of the receptive
    // field's corner. Taps past the end are clamped and not written.
    let k_0 = min(vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(k_len - 1u));
    let k_1 = min(vec4<u32>(k0 + 4u) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(k_len - 1u));
    let r0 = k_0 % taps;
    let r1 = k_1 % taps;
    let xoff0 = vec4<i32>((k_0 / taps) * hw);
    let xoff1 = vec4<i32>((k_1 / taps) * hw);
    let shift_h0 = vec4<i32>((r0 / p.kw) * p.dh) - vec4<i32>(i32(p.ph));
    let shift_h1 = vec4<i32>((r1 / p.kw) * p.dh) - vec4<i32>(i32(p.ph));
    let shift_w0 = vec4<i32>((r0 % p.kw) * p.dw) - vec4<i32>(i32(p.pw));
    let shift_w1 = vec4<i32>((r1 % p.kw) * p.dw) - vec4<i32>(i32(p.pw));
    var dyrow: array<u32, TM_MAX>;
    for (var i = 0u; i < TM; i++) {
        dyrow[i] = min(o0 + i, p.o - 1u) * plane_len;
    }
    // This invocation's pixel as (n, oh, ow), advanced by WG pixels per step without dividing.
    var ow = lid % p.ow;
    var oh = (lid / p.ow) % p.oh;
    var n = lid / plane_len;
    let step_ow = WG % p.ow;
    let step_oh = (WG / p.ow) % p.oh;
    let step_n = WG / plane_len;
    let hv = vec4<i32>(i32(p.h));
    let wv = vec4<i32>(i32(p.w));
    let x_img = p.c * hw;
    let dy_img = p.o * plane_len;
    var acc0: array<vec4<f32>, TM_MAX>;
    var acc1: array<vec4<f32>, TM_MAX>;
    for (var q = lid; q < npix; q += WG) {
        let ih0 = vec4<i32>(i32(oh * p.sh)) + shift_h0;
        let ih1 = vec4<i32>(i32(oh * p.sh)) + shift_h1;
        let iw0 = vec4<i32>(i32(ow * p.sw)) + shift_w0;
        let iw1 = vec4<i32>(i32(ow * p.sw)) + shift_w1;
        let ok0 = (ih0 >= vec4<i32>(0)) & (ih0 < hv) & (iw0 >= vec4<i32>(0)) & (iw0 < wv);
        let ok1 = (ih1 >= vec4<i32>(0)) & (ih1 < hv) & (iw1 >= vec4<i32>(0)) & (iw1 < wv);
        let img = vec4<i32>(i32(n * x_img));
        let at0 = index_or_zero(vec4<u32>(img + xoff0 + ih0 * wv + iw0), ok0);
        let at1 = index_or_zero(vec4<u32>(img + xoff1 + ih1 * wv + iw1), ok1);
        let v0 = select(
            vec4<f32>(0.0),
            vec4<f32>(gw_x[at0.x], gw_x[at0.y], gw_x[at0.z], gw_x[at0.w]),
            ok0,
        );
        let v1 = select(
            vec4<f32>(0.0),
            vec4<f32>(gw_x[at1.x], gw_x[at1.y], gw_x[at1.z], gw_x[at1.w]),
            ok1,
        );
        let d = n * dy_img + oh * p.ow + ow;
        for (var i = 0u; i < TM; i++) {
            let g = vec4<f32>(gw_dy[d + dyrow[i]]);
            acc0[i] = fma(g, v0, acc0[i]);
            acc1[i] = fma(g, v1, acc1[i]);
        }
        ow += step_ow;
        let wrap_w = ow >= p.ow;
        ow = select(ow, ow - p.ow, wrap_w);
        oh += step_oh + u32(wrap_w);
        let wrap_h = oh >= p.oh;
        oh = select(oh, oh - p.oh, wrap_h);
        n += step_n + u32(wrap_h);
    }
    // Constant indices only: indexing the accumulators with a loop variable here would keep them
    // in memory for the whole main loop on some compilers.
    sum_tiles(lid, o0, k0, k_len, array(acc0[0], acc0[1], acc0[2], acc0[3], acc1[0], acc1[1], acc1[2], acc1[3]));
    if (TM > 4u) {
        sum_tiles(lid, o0 + 4u, k0, k_len, array(acc0[4], acc0[5], acc0[6], acc0[7], acc1[4], acc1[5], acc1[6], acc1[7]));
    }
    if (TM > 8u) {
        sum_tiles(lid, o0 + 8u, k0, k_len, array(acc0[8], acc0[9], acc0[10], acc0[11], acc1[8], acc1[9], acc1[10], acc1[11]));
        sum_tiles(lid, o0 + 12u, k0, k_len, array(acc0[12], acc0[13], acc0[14], acc0[15], acc1[12], acc1[13], acc1[14], acc1[15]));
    }
}

// Sums the WG invocations' partial tiles of 4 rows (o_first..o_first+3) by 8 taps and writes them:
// invocation l < 32 owns row l / 8, tap l % 8. Must be called from uniform control flow.
fn sum_tiles(lid: u32, o_first: u32, k0: u32, k_len: u32, tile: array<vec4<f32>, 8>) {
    for (var i = 0u; i < 8u; i++) {
        partial_tiles[lid * 8u + i] = tile[i];
    }
    workgroupBarrier();
    if (lid < 32u) {
        let row = lid / 8u;
        let tap = lid % 8u;
        let slot = row + 4u * (tap / 4u);
        var s = 0.0;
        for (var t = 0u; t < WG; t++) {
            s += partial_tiles[t * 8u + slot][tap % 4u];
        }
        let o = o_first + row;
        if (o < p.o && k0 + tap < k_len) {
            gw_dw[o * k_len + k0 + tap] = s;
        }
    }
    workgroupBarrier();
}
