// 2-D max and average pooling (NCHW, PyTorch semantics, floor mode) and their gradients. Every
// output element has exactly one writer, so the backward passes need no atomics.
//
// Shapes: x [N, C, H, W], y [N, C, OH, OW]. Padding counts as −∞ for max pooling and as zeros
// for average pooling, which always divides by KH·KW (count_include_pad = true). The max gradient
// recomputes each window's argmax from x; on ties the first maximum in row-major window order wins.
// Each gradient has two forms: a gather over the windows holding each input element (any stride),
// and, when windows do not overlap (stride ≥ kernel, as in the usual 2×2/2 pooling), one invocation
// per window that writes its whole cell, several times cheaper.

struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    oh: u32,
    ow: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// The forward passes and the max gradient read x at binding 1; forward passes write y at binding 2.
@group(0) @binding(1) var<storage, read> x: array<f32>;          // x: [N, C, H, W]
@group(0) @binding(2) var<storage, read_write> y: array<f32>;    // y: [N, C, OH, OW]

const WG: u32 = 64u;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// The flat index, within plane `plane` of x, of the first maximum of window (oh, ow).
fn window_argmax(plane: u32, oh: u32, ow: u32) -> u32 {
    let h0 = i32(oh * p.sh) - i32(p.ph);
    let w0 = i32(ow * p.sw) - i32(p.pw);
    let base = plane * p.h * p.w;
    var best = 0.0;
    var arg = 0xffffffffu;
    for (var ky = 0u; ky < p.kh; ky++) {
        let ih = h0 + i32(ky);
        if (ih < 0 || ih >= i32(p.h)) {
            continue;
        }
        for (var kx = 0u; kx < p.kw; kx++) {
            let iw = w0 + i32(kx);
            if (iw < 0 || iw >= i32(p.w)) {
                continue;
            }
            let at = u32(ih) * p.w + u32(iw);
            let v = x[base + at];
            if (arg == 0xffffffffu || v > best) {
                best = v;
                arg = at;
            }
        }
    }
    return arg;
}

// The range [lo, hi) of output rows whose windows (size k, stride s, padding pad) contain input
// row i; out is the number of output rows.
fn windows_over(i: u32, k: u32, s: u32, pad: u32, out: u32) -> vec2<u32> {
    // o·s − pad ≤ i ≤ o·s − pad + k − 1
    let t = i + pad;
    let lo = select(0u, (t - k + 1u + s - 1u) / s, t + 1u > k);
    let hi = min(t / s + 1u, out);
    return vec2<u32>(lo, max(lo, hi));
}

// The input rows [lo, hi) of cell o: [o·s − pad, (o + 1)·s − pad) clipped to [0, size), the last
// cell extended to the end. With s ≥ k the cells tile the input and each holds its window.
fn cell(o: u32, s: u32, pad: u32, out: u32, size: u32) -> vec2<u32> {
    let lo = max(o * s, pad) - pad;
    let hi = select(min((o + 1u) * s - pad, size), size, o + 1u == out);
    return vec2<u32>(lo, max(lo, hi));
}

// ---- max pooling ----


@compute @workgroup_size(WG)
fn max_pool2d(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    if (i >= p.n * p.c * p.oh * p.ow) {
        return;
    }
    let t = i / p.ow;
    let plane = t / p.oh;
    let arg = window_argmax(plane, t % p.oh, i % p.ow);
    y[i] = x[plane * p.h * p.w + arg];
}

@group(0) @binding(2) var<storage, read> mpg_dy: array<f32>;        // dy: [N, C, OH, OW]
@group(0) @binding(3) var<storage, read_write> mpg_dx: array<f32>;  // dx: [N, C, H, W]

@compute @workgroup_size(WG)
fn max_pool2d_grad(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    let hw = p.h * p.w;
    if (i >= p.n * p.c * hw) {
        return;
    }
    let plane = i / hw;
    let at = i % hw;
    let rows = windows_over(at / p.w, p.kh, p.sh, p.ph, p.oh);
    let cols = windows_over(at % p.w, p.kw, p.sw, p.pw, p.ow);
    let dy_plane = plane * p.oh * p.ow;
    var g = 0.0;
    for (var oh = rows.x; oh < rows.y; oh++) {
        for (var ow = cols.x; ow < cols.y; ow++) {
            if (window_argmax(plane, oh, ow) == at) {
                g += mpg_dy[dy_plane + oh * p.ow + ow];
            }
        }
    }
    mpg_dx[i] = g;
}

@compute @workgroup_size(WG)
fn max_pool2d_grad_cells(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    if (i >= p.n * p.c * p.oh * p.ow) {
        return;
    }
    let t = i / p.ow;
    let plane = t / p.oh;
    let oh = t % p.oh;
    let ow = i % p.ow;
    let arg = window_argmax(plane, oh, ow);
    let g = mpg_dy[i];
    let rows = cell(oh, p.sh, p.ph, p.oh, p.h);
    let cols = cell(ow, p.sw, p.pw, p.ow, p.w);
    let base = plane * p.h * p.w;
    for (var r = rows.x; r < rows.y; r++) {
        for (var c = cols.x; c < cols.y; c++) {
            let at = r * p.w + c;
            mpg_dx[base + at] = select(0.0, g, at == arg);
        }
    }
}

// ---- average pooling ----


@compute @workgroup_size(WG)
fn avg_pool2d(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    if (i >= p.n * p.c * p.oh * p.ow) {
        return;
    }
    let t = i / p.ow;
    let plane = t / p.oh;
    let h0 = i32((t % p.oh) * p.sh) - i32(p.ph);
    let w0 = i32((i % p.ow) * p.sw) - i32(p.pw);
    let base = plane * p.h * p.w;
    var s = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let ih = h0 + i32(ky);
        if (ih < 0 || ih >= i32(p.h)) {
            continue;
        }
        for (var kx = 0u; kx < p.kw; kx++) {
            let iw = w0 + i32(kx);
            if (iw >= 0 && iw < i32(p.w)) {
                s += x[base + u32(ih) * p.w + u32(iw)];
            }
        }
    }
    y[i] = s / f32(p.kh * p.kw);
}

@group(0) @binding(1) var<storage, read> apg_dy: array<f32>;        // dy: [N, C, OH, OW]
@group(0) @binding(2) var<storage, read_write> apg_dx: array<f32>;  // dx: [N, C, H, W]

@compute @workgroup_size(WG)
fn avg_pool2d_grad(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    let hw = p.h * p.w;
    if (i >= p.n * p.c * hw) {
        return;
    }
    let plane = i / hw;
    let at = i % hw;
    let rows = windows_over(at / p.w, p.kh, p.sh, p.ph, p.oh);
    let cols = windows_over(at % p.w, p.kw, p.sw, p.pw, p.ow);
    let dy_plane = plane * p.oh * p.ow;
    var g = 0.0;
    for (var oh = rows.x; oh < rows.y; oh++) {
        for (var ow = cols.x; ow < cols.y; ow++) {
            g += apg_dy[dy_plane + oh * p.ow + ow];
        }
    }
    apg_dx[i] = g / f32(p.kh * p.kw);
}

@compute @workgroup_size(WG)
fn avg_pool2d_grad_cells(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    if (i >= p.n * p.c * p.oh * p.ow) {
        return;
    }
    let t = i / p.ow;
    let plane = t / p.oh;
    let oh = t % p.oh;
    let ow = i % p.ow;
    let g = apg_dy[i] / f32(p.kh * p.kw);
    let rows = cell(oh, p.sh, p.ph, p.oh, p.h);
    let cols = cell(ow, p.sw, p.pw, p.ow, p.w);
    // The window's end in input coordinates; its start is the cell's start.
    let row_end = oh * p.sh + p.kh - p.ph;
    let col_end = ow * p.sw + p.kw - p.pw;
    let base = plane * p.h * p.w;
    for (var r = rows.x; r < rows.y; r++) {
        for (var c = cols.x; c < cols.y; c++) {
            apg_dx[base + r * p.w + c] = select(0.0, g, r < row_end && c < col_end);
        }
    }
}
