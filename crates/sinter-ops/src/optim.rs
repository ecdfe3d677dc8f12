//! Optimizer settings (PyTorch semantics): SGD with momentum, Nesterov and weight decay; Adam and
//! AdamW. The learning rate and bias corrections change per step and travel separately.

/// SGD's static settings (the learning rate is per step, in `hyper`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Velocity decay μ: v = μ·v + g (0 is plain SGD).
    pub momentum: f32,
    /// L2 penalty added to the gradient: g += weight_decay · p.
    pub weight_decay: f32,
    /// Step along g + μ·v instead of v (PyTorch's Nesterov form).
    pub nesterov: bool,
}

/// Adam's static settings (learning rate and bias corrections are per step, in `hyper`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Decay of the first-moment (mean) estimate m.
    pub beta1: f32,
    /// Decay of the second-moment (uncentered variance) estimate v.
    pub beta2: f32,
    /// Added to √v̂ in the denominator, for stability.
    pub eps: f32,
    /// Weight-decay factor; how it applies depends on `decoupled`.
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
