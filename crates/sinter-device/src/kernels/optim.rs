//! Launch builders for `shaders/optim.wgsl`: fused SGD and Adam/AdamW updates, PyTorch semantics.
//! The learning rate and bias corrections live in a `hyper` buffer the host rewrites each step.

use super::elementwise::{check_buffer, check_len, flat_entry, grid_for};
use super::specializations::EntrySpecializations;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Launch};
use crate::shaders::Shader;
use sinter_ops::Kernel;

pub use sinter_ops::optim::{adam_hyper, AdamConfig, SgdConfig};

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
    let cost = Kernel::Sgd { len, config: *cfg }.cost();
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
        workgroups: grid_for(gpu, len),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
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
    let cost = Kernel::Adam { len, config: *cfg }.cost();
    let (entry, invocations) = flat_entry(len, ["adam", "adam4"]);
    gpu.prepare(Launch {
        shader: Shader::Optim,
        entry,
        overrides: &[("DECOUPLED", cfg.decoupled as u32 as f64)],
        params: &[
            len as u32,
            cfg.beta1.to_bits(),
            cfg.beta2.to_bits(),
            cfg.eps.to_bits(),
            cfg.weight_decay.to_bits(),
        ],
        buffers: &[grad, scale, hyper, param, m, v],
        workgroups: grid_for(gpu, invocations),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// SGD with and without Nesterov momentum, Adam with and without decoupled weight decay (see
/// [`super::specializations`]).
pub(crate) fn specializations() -> Vec<EntrySpecializations> {
    let flag = |name: &'static str| [false, true].map(|on| vec![(name, on as u32 as f64)]);
    vec![
        EntrySpecializations::from_launches(Shader::Optim, "sgd", flag("NESTEROV")),
        EntrySpecializations::from_launches(Shader::Optim, "adam", flag("DECOUPLED")),
        EntrySpecializations::from_launches(Shader::Optim, "adam4", flag("DECOUPLED")),
    ]
}
