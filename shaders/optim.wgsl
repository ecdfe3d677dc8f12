// Optimizer updates with PyTorch semantics, one fused kernel per parameter tensor: SGD (momentum,
// Nesterov, weight decay) and Adam / AdamW. Per-step values come from buffers so plans never change.

// Invocations per workgroup: 256, or 128 or 64 where the device allows fewer (the device
// crate's Gpu::wide_workgroup). Every kernel here is correct for any power of two.
override WG: u32 = 256u;

override NESTEROV: bool = false;
// AdamW: weight decay shrinks the parameter directly instead of being added to the gradient.
override DECOUPLED: bool = false;

struct SgdParams {
    len: u32,
    momentum: f32,
    weight_decay: f32,
    _pad: u32,
}

struct AdamParams {
    len: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> ps: SgdParams;
@group(0) @binding(0) var<uniform> pa: AdamParams;
// grad: [len]; scale: [1], the global-norm clipping factor (1 when not clipping);
// hyper: [lr, 1 - beta1^t, 1 - beta2^t], written by the host every step.
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;
@group(0) @binding(3) var<storage, read> hyper: array<f32>;
@group(0) @binding(4) var<storage, read_write> param: array<f32>;
// SGD: velocity [len]; Adam: first and second moments [len].
@group(0) @binding(5) var<storage, read_write> velocity: array<f32>;
@group(0) @binding(5) var<storage, read_write> m1: array<f32>;
@group(0) @binding(6) var<storage, read_write> m2: array<f32>;

// adam4: the same buffers as vectors of 4 (lengths that are multiples of 4). On a software adapter
// every load of a lane-varying address is a loop over the lanes: one vector load instead of four
// scalar ones takes most of the update's time off.
@group(0) @binding(1) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> m14: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> m24: array<vec4<f32>>;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * (nwg.x * WG);
}

// g = grad·s + wd·p; v = μv + g; g = nesterov ? g + μv : v; p -= lr·g
@compute @workgroup_size(WG)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= ps.len {
        return;
    }
    let lr = hyper[0];
    let w = param[i];
    var g = grad[i] * scale[0] + ps.weight_decay * w;
    let v = ps.momentum * velocity[i] + g;
    velocity[i] = v;
    if NESTEROV {
        g = g + ps.momentum * v;
    } else {
        g = v;
    }
    param[i] = w - lr * g;
}

// One Adam step of one parameter: w the parameter, g its gradient (already scaled), m and v its
// moments; returns the new (w, m, v). g = g (+ wd·w unless decoupled, else w *= 1 - lr·wd);
// m = β1m + (1-β1)g; v = β2v + (1-β2)g²; w -= lr·(m/bc1) / (sqrt(v/bc2) + eps)
fn adam_value(w0: f32, g0: f32, m0: f32, v0: f32) -> vec3<f32> {
    let lr = hyper[0];
    var w = w0;
    var g = g0;
    if DECOUPLED {
        w = w * (1.0 - lr * pa.weight_decay);
    } else {
        g = g + pa.weight_decay * w;
    }
    let m = pa.beta1 * m0 + (1.0 - pa.beta1) * g;
    let v = pa.beta2 * v0 + (1.0 - pa.beta2) * g * g;
    return vec3<f32>(w - lr * (m / hyper[1]) / (sqrt(v / hyper[2]) + pa.eps), m, v);
}

@compute @workgroup_size(WG)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= pa.len {
        return;
    }
    let r = adam_value(param[i], grad[i] * scale[0], m1[i], m2[i]);
    m1[i] = r.y;
    m2[i] = r.z;
    param[i] = r.x;
}

// adam, 4 elements per invocation.
@compute @workgroup_size(WG)
fn adam4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= pa.len / 4u {
        return;
    }
    let w = param4[i];
    let g = grad4[i] * scale[0];
    let m = m14[i];
    let v = m24[i];
    let r0 = adam_value(w.x, g.x, m.x, v.x);
    let r1 = adam_value(w.y, g.y, m.y, v.y);
    let r2 = adam_value(w.z, g.z, m.z, v.z);
    let r3 = adam_value(w.w, g.w, m.w, v.w);
    m14[i] = vec4<f32>(r0.y, r1.y, r2.y, r3.y);
    m24[i] = vec4<f32>(r0.z, r1.z, r2.z, r3.z);
    param4[i] = vec4<f32>(r0.x, r1.x, r2.x, r3.x);
}
