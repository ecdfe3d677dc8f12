// 2-D convolution (NCHW, no groups, no bias) as three implicit GEMMs that gather their operands on
// the fly, so no im2col buffer is materialized: forward, input gradient (a gather, no atomics), weight gradient.
//
// Shapes: x [N, C, H, W], w [O, C, KH, KW], y [N, O, OH, OW]; K-order of w's row is (c, ky, kx).
// Every invocation accumulates a TM×TN register block. The TM rows (channels) come from
// workgroup_id only, so weight loads are uniform across the workgroup: a software adapter turns them
// into one scalar load each instead of a gather. Forward and input gradient need no workgroup
// memory at all; the weight gradient splits its long reduction over the workgroup and combines the
// partial sums behind a single barrier (barriers are expensive on CPU adapters).

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
// Output rows (channels) per invocation; must match TM in kernels/conv.rs.
const TM: u32 = 4u;
// Output columns (pixels, or taps for the weight gradient) per invocation; the vec4 width.
const TN: u32 = 4u;

// ---- forward: y = W · im2col(x), M = O, N = N·OH·OW, K = C·KH·KW ----

@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;        // x: [N, C, H, W]
@group(0) @binding(2) var<storage, read> fwd_w: array<f32>;        // w: [O, C, KH, KW]
@group(0) @binding(3) var<storage, read_write> fwd_y: array<f32>;  // y: [N, O, OH, OW]

@compute @workgroup_size(WG)
fn conv2d_forward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let npix = p.n * p.oh * p.ow;
    // Pixels j·WG apart, so neighbouring invocations read neighbouring addresses.
    let first = (wg.x + wg.y * nwg.x) * WG * TN + lid;
    let o0 = wg.z * TM;
    let hw = p.h * p.w;
    let k_len = p.c * p.kh * p.kw;
    // Per pixel: its image's offset in x and the top-left corner of its receptive field, which
    // may lie in the padding (negative). Pixels past the end are clamped and not written.
    var img: vec4<i32>;
    var top: vec4<i32>;
    var left: vec4<i32>;
    for (var j = 0u; j < TN; j++) {
        let q = min(first + j * WG, npix - 1u);
        let t = q / p.ow;
        img[j] = i32((t / p.oh) * p.c * hw);
        top[j] = i32((t % p.oh) * p.sh) - i32(p.ph);
        left[j] = i32((q % p.ow) * p.sw) - i32(p.pw);
    }
    // Rows past O read row O−1 (valid memory); their results are dropped.
    var wrow: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        wrow[i] = min(o0 + i, p.o - 1u) * k_len;
    }
    let hv = vec4<i32>(i32(p.h));
    let wv = vec4<i32>(i32(p.w));
    var acc: array<vec4<f32>, TM>;
    var k = 0u;
    for (var c = 0u; c < p.c; c++) {
        let plane = img + vec4<i32>(i32(c * hw));
        for (var ky = 0u; ky < p.kh; ky++) {
            let ih = top + vec4<i32>(i32(ky * p.dh));
            let row_ok = (ih >= vec4<i32>(0)) & (ih < hv);
            let row = plane + ih * wv;
            for (var kx = 0u; kx < p.kw; kx++) {
                let iw = left + vec4<i32>(i32(kx * p.dw));
                let ok = row_ok & (iw >= vec4<i32>(0)) & (iw < wv);
                let at = vec4<u32>(select(vec4<i32>(0), row + iw, ok));
                let v = select(
                    vec4<f32>(0.0),
                    vec4<f32>(fwd_x[at.x], fwd_x[at.y], fwd_x[at.z], fwd_x[at.w]),
                    ok,
                );
                for (var i = 0u; i < TM; i++) {
                    acc[i] = fma(vec4<f32>(fwd_w[wrow[i] + k]), v, acc[i]);
                }
                k++;
            }
        }
    }
    let plane_len = p.oh * p.ow;
    for (var j = 0u; j < TN; j++) {
        let q = first + j * WG;
        if (q < npix) {
            let n = q / plane_len;
            let pix = q % plane_len;
            for (var i = 0u; i < TM; i++) {
                if (o0 + i < p.o) {
                    fwd_y[(n * p.o + o0 + i) * plane_len + pix] = acc[i][j];
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
    let first = (wg.x + wg.y * nwg.x) * WG * TN + lid;
    let c0 = wg.z * TM;
    let plane_len = p.oh * p.ow;
    let taps = p.kh * p.kw;
    var img: vec4<u32>;
    var ih: vec4<i32>;
    var iw: vec4<i32>;
    for (var j = 0u; j < TN; j++) {
        let q = min(first + j * WG, npix - 1u);
        let t = q / p.w;
        img[j] = (t / p.h) * p.o * plane_len;
        ih[j] = i32(t % p.h);
        iw[j] = i32(q % p.w);
    }
    var wcol: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        wcol[i] = min(c0 + i, p.c - 1u) * taps;
    }
    let sh = vec4<u32>(p.sh);
    let sw = vec4<u32>(p.sw);
    let w_o_stride = p.c * taps;
    var acc: array<vec4<f32>, TM>;
    for (var ky = 0u; ky < p.kh; ky++) {
        let th = ih + vec4<i32>(i32(p.ph) - i32(ky * p.dh));
        let thu = vec4<u32>(max(th, vec4<i32>(0)));
        let oh = thu / sh;
        let row_ok = (th >= vec4<i32>(0)) & (thu - oh * sh == vec4<u32>(0u)) & (oh < vec4<u32>(p.oh));
        for (var kx = 0u; kx < p.kw; kx++) {
            let tw = iw + vec4<i32>(i32(p.pw) - i32(kx * p.dw));
            let twu = vec4<u32>(max(tw, vec4<i32>(0)));
            let ow = twu / sw;
            let ok = row_ok & (tw >= vec4<i32>(0)) & (twu - ow * sw == vec4<u32>(0u))
                & (ow < vec4<u32>(p.ow));
            if (!any(ok)) {
                continue;
            }
            let base = select(vec4<u32>(0u), img + oh * p.ow + ow, ok);
            var wi = ky * p.kw + kx;
            var off = 0u;
            for (var o = 0u; o < p.o; o++) {
                let at = base + vec4<u32>(off);
                let v = select(
                    vec4<f32>(0.0),
                    vec4<f32>(gin_dy[at.x], gin_dy[at.y], gin_dy[at.z], gin_dy[at.w]),
                    ok,
                );
                for (var i = 0u; i < TM; i++) {
                    acc[i] = fma(vec4<f32>(gin_w[wi + wcol[i]]), v, acc[i]);
                }
                off += plane_len;
                wi += w_o_stride;
            }
        }
    }
    for (var j = 0u; j < TN; j++) {
        let q = first + j * WG;
        if (q < npix) {
            let n = q / hw;
            let pix = q % hw;
            for (var i = 0u; i < TM; i++) {
                if (c0 + i < p.c) {
                    gin_dx[(n * p.c + c0 + i) * hw + pix] = acc[i][j];
                }
            }
        }
    }
}

// ---- weight gradient: dw = dy · im2col(x)ᵀ, M = O, N = C·KH·KW, K = N·OH·OW ----
// A workgroup owns a TM×TN tile of dw; its invocations stride through the N·OH·OW pixels, and the
// WG partial tiles are summed once at the end.

@group(0) @binding(1) var<storage, read> gw_x: array<f32>;         // x: [N, C, H, W]
@group(0) @binding(2) var<storage, read> gw_dy: array<f32>;        // dy: [N, O, OH, OW]
@group(0) @binding(3) var<storage, read_write> gw_dw: array<f32>;  // dw: [O, C, KH, KW]

var<workgroup> tile_sums: array<array<vec4<f32>, TM>, WG>;

@compute @workgroup_size(WG)
fn conv2d_grad_weight(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let k0 = (wg.x + wg.y * nwg.x) * TN;
    let o0 = wg.z * TM;
    let taps = p.kh * p.kw;
    let k_len = p.c * taps;
    let hw = p.h * p.w;
    let plane_len = p.oh * p.ow;
    let npix = p.n * plane_len;
    // The tile's TN taps (c, ky, kx) as an offset into an image of x and a shift of the receptive
    // field's corner. Taps past the end are clamped and not written.
    var xoff: vec4<i32>;
    var shift_h: vec4<i32>;
    var shift_w: vec4<i32>;
    for (var j = 0u; j < TN; j++) {
        let k = min(k0 + j, k_len - 1u);
        let r = k % taps;
        xoff[j] = i32((k / taps) * hw);
        shift_h[j] = i32((r / p.kw) * p.dh) - i32(p.ph);
        shift_w[j] = i32((r % p.kw) * p.dw) - i32(p.pw);
    }
    var dyrow: array<u32, TM>;
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
    var acc: array<vec4<f32>, TM>;
    for (var q = lid; q < npix; q += WG) {
        let ih = vec4<i32>(i32(oh * p.sh)) + shift_h;
        let iw = vec4<i32>(i32(ow * p.sw)) + shift_w;
        let ok = (ih >= vec4<i32>(0)) & (ih < hv) & (iw >= vec4<i32>(0)) & (iw < wv);
        let at = vec4<u32>(select(vec4<i32>(0), vec4<i32>(i32(n * x_img)) + xoff + ih * wv + iw, ok));
        let v = select(
            vec4<f32>(0.0),
            vec4<f32>(gw_x[at.x], gw_x[at.y], gw_x[at.z], gw_x[at.w]),
            ok,
        );
        let d = n * dy_img + oh * p.ow + ow;
        for (var i = 0u; i < TM; i++) {
            acc[i] = fma(vec4<f32>(gw_dy[d + dyrow[i]]), v, acc[i]);
        }
        ow += step_ow;
        let wrap_w = ow >= p.ow;
        ow = select(ow, ow - p.ow, wrap_w);
        oh += step_oh + u32(wrap_w);
        let wrap_h = oh >= p.oh;
        oh = select(oh, oh - p.oh, wrap_h);
        n += step_n + u32(wrap_h);
    }
    tile_sums[lid] = acc;
    workgroupBarrier();
    if (lid < TM * TN) {
        let i = lid / TN;
        let j = lid % TN;
        var s = 0.0;
        for (var t = 0u; t < WG; t++) {
            s += tile_sums[t][i][j];
        }
        if (o0 + i < p.o && k0 + j < k_len) {
            gw_dw[(o0 + i) * k_len + k0 + j] = s;
        }
    }
}
