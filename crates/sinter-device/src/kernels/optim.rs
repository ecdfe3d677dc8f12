//! Launch builders for `shaders/optim.wgsl`: fused SGD and Adam/AdamW updates, PyTorch semantics.
//! The learning rate and bias corrections live in a `hyper` buffer the host rewrites each step.

use super::elementwise::{check_buffer, check_len, grid_for};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Launch};
use crate::shaders::Shader;

/// Invocations per workgroup of the optimizer kernels (`WG` in the WGSL).
const WG: usize = 256;

/// SGD's static settings (the learning rate is per step, in `hyper`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub momentum: f32,
    /// L2 penalty added to the gradient: g += weight_decay · p.
    pub weight_decay: f32,
    pub nesterov: bool,
}

/// Adam's static settings (learning rate and bias corrections are per step, in `hyper`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW: decay the parameter directly (p *= 1 − lr·wd) instead of adding wd·p to the gradient.
    pub decoupled: bool,
}

/// The `hyper` buffer's contents for step `t` (1-based): [lr, 1 − β1^t, 1 − β2^t].
pub fn adam_hyper(lr: f32, cfg: &AdamConfig, t: u64) -> [f32; 3] {
    let t = t.min(i32::MAX as u64) as i32;
    [
        lr,
        1.0 - (cfg.beta1 as f64).powi(t) as f32,
        1.0 - (cfg.beta2 as f64).powi(t) as f32,
    ]
}

fn check_step(op: &str, len: usize, bufs: &[(&str, &wgpu::Buffer, usize)]) -> Result<()> {
    check_len(op, "param", len)?;
    for &(what, buf, n) in bufs {
        check_buffer(op, what, buf, n)?;
    }
    Ok(())
}

/// One SGD step in place: g = grad·s + wd·p; v = μv + g; g = nesterov ? g + μv : v; p −= lr·g.
// grad, param, velocity: [len]; scale: [1]; hyper: [lr, ..]
#[allow(clippy::too_many_arguments)]
pub fn sgd(
    gpu: &Gpu,
    grad: &wgpu::Buffer,
    scale: &wgpu::Buffer,
    hyper: &wgpu::Buffer,
    param: &wgpu::Buffer,
    velocity: &wgpu::Buffer,
    len: usize,
    cfg: &SgdConfig,
    tag: &str,
) -> Result<Dispatch> {
    check_step(
        "sgd",
        len,
        &[
            ("grad", grad, len),
            ("scale", scale, 1),
            ("hyper", hyper, 1),
            ("param", param, len),
            ("velocity", velocity, len),
        ],
    )?;
    gpu.prepare(Launch {
        shader: Shader::Optim,
        entry: "sgd",
        overrides: &[("NESTEROV", cfg.nesterov as u32 as f64)],
        params: &[
            len as u32,
            cfg.momentum.to_bits(),
            cfg.weight_decay.to_bits(),
            0,
        ],
        buffers: &[grad, scale, hyper, param, velocity],
        workgroups: grid_for(gpu, len, WG),
        tag: tag.to_string(),
        flops: 8 * len as u64,
        // read grad, param, velocity; write param, velocity
        bytes: 20 * len as u64,
    })
}

/// One Adam (or AdamW when `cfg.decoupled`) step in place, PyTorch semantics.
// grad, param, m, v: [len]; scale: [1]; hyper: [lr, 1 − β1^t, 1 − β2^t]
#[allow(clippy::too_many_arguments)]
pub fn adam(
    gpu: &Gpu,
    grad: &wgpu::Buffer,
    scale: &wgpu::Buffer,
    hyper: &wgpu::Buffer,
    param: &wgpu::Buffer,
    m: &wgpu::Buffer,
    v: &wgpu::Buffer,
    len: usize,
    cfg: &AdamConfig,
    tag: &str,
) -> Result<Dispatch> {
    check_step(
        "adam",
        len,
        &[
            ("grad", grad, len),
            ("scale", scale, 1),
            ("hyper", hyper, 3),
            ("param", param, len),
            ("m", m, len),
            ("v", v, len),
        ],
    )?;
    gpu.prepare(Launch {
        shader: Shader::Optim,
        entry: "adam",
        overrides: &[("DECOUPLED", cfg.decoupled as u32 as f64)],
        params: &[
            len as u32,
            cfg.beta1.to_bits(),
            cfg.beta2.to_bits(),
            cfg.eps.to_bits(),
            cfg.weight_decay.to_bits(),
        ],
        buffers: &[grad, scale, hyper, param, m, v],
        workgroups: grid_for(gpu, len, WG),
        tag: tag.to_string(),
        flops: 18 * len as u64,
        // read grad, param, m, v; write param, m, v
        bytes: 28 * len as u64,
    })
}
