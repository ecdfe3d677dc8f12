//! Optimizers as graph nodes: SGD (momentum, Nesterov, weight decay), Adam and AdamW append one
//! fused update per parameter; learning-rate schedules and global-norm clipping live here too.

use crate::backend::StepScalars;
use crate::error::{ModelError, Result};
use crate::graph::{GraphBuilder, NodeId, Op, Tensor};
use crate::vars::{VarId, VarInfo, VarKind, VarStore};
use sinter_ops::elementwise::BinaryOp;
use sinter_ops::optim::{AdamConfig, SgdConfig};

/// Which update rule an [`Optimizer`] applies, with its static settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// SGD with optional momentum, Nesterov and (L2) weight decay.
    Sgd(SgdConfig),
    /// Adam, or AdamW when `decoupled`.
    Adam(AdamConfig),
}

impl OptimizerKind {
    /// SGD with `momentum` (0 for none), Nesterov's form if `nesterov`, and L2 `weight_decay`
    /// added to the gradient (PyTorch's `torch.optim.SGD`).
    pub fn sgd(momentum: f32, nesterov: bool, weight_decay: f32) -> Self {
        Self::Sgd(SgdConfig {
            momentum,
            weight_decay,
            nesterov,
        })
    }

    /// Adam with PyTorch's defaults (β = 0.9, 0.999; ε = 1e-8).
    pub fn adam(weight_decay: f32) -> Self {
        Self::Adam(AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            decoupled: false,
        })
    }

    /// AdamW with PyTorch's β and ε; `weight_decay` is decoupled (PyTorch's default is 0.01).
    pub fn adamw(weight_decay: f32) -> Self {
        Self::Adam(AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            decoupled: true,
        })
    }

    /// `sgd`, `adam` or `adamw`: the CLI's and the checkpoints' name for it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sgd(_) => "sgd",
            Self::Adam(c) if c.decoupled => "adamw",
            Self::Adam(_) => "adam",
        }
    }
}

/// How the learning rate changes with the step (0-based).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// The base learning rate at every step.
    Constant,
    /// Multiply by `gamma` every `every` steps.
    Step {
        /// Steps between decays (0 behaves as 1).
        every: u64,
        /// Factor applied at each decay.
        gamma: f64,
    },
    /// Linear warm-up over `warmup` steps, then cosine decay to `min_factor`·lr at `total`.
    Cosine {
        /// Steps of linear warm-up from lr/warmup up to lr.
        warmup: u64,
        /// The step at which the decay reaches its floor (and stays there).
        total: u64,
        /// The floor, as a fraction of the base learning rate.
        min_factor: f64,
    },
}

impl Schedule {
    /// The multiplier of the base learning rate at 0-based `step`.
    pub fn factor(&self, step: u64) -> f64 {
        match *self {
            Schedule::Constant => 1.0,
            Schedule::Step { every, gamma } => gamma.powi((step / every.max(1)) as i32),
            Schedule::Cosine {
                warmup,
                total,
                min_factor,
            } => {
                if step < warmup {
                    (step + 1) as f64 / warmup as f64
                } else {
                    let span = total.saturating_sub(warmup).max(1) as f64;
                    let t = ((step - warmup) as f64 / span).min(1.0);
                    min_factor + (1.0 - min_factor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
                }
            }
        }
    }
}

/// Which parameters take the optimizer's weight decay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecayOn {
    /// Every parameter (PyTorch's optimizers given `model.parameters()`).
    All,
    /// Only the parameters marked [`crate::vars::VarInfo::decay`]: linear and convolution
    /// weights, not biases, norms' scales and shifts or embeddings (GPT-2's and nanoGPT's two
    /// parameter groups).
    Matrices,
}

/// An optimizer over every parameter of a store.
#[derive(Clone, Debug, PartialEq)]
pub struct Optimizer {
    /// The update rule and its static settings.
    pub kind: OptimizerKind,
    /// The base learning rate, before the schedule's factor.
    pub lr: f64,
    /// How the learning rate changes with the step.
    pub schedule: Schedule,
    /// Clip the global gradient norm to this value.
    pub clip_norm: Option<f64>,
    /// Which parameters the weight decay applies to (the others are updated without it).
    pub decay_on: DecayOn,
}

impl Optimizer {
    /// A constant learning rate `lr` and no clipping.
    pub fn new(kind: OptimizerKind, lr: f64) -> Self {
        Self {
            kind,
            lr,
            schedule: Schedule::Constant,
            clip_norm: None,
            decay_on: DecayOn::All,
        }
    }

    /// How checkpoints written before [`Optimizer::decay_on`] existed describe this optimizer,
    /// if it is one they could have held (decay on every parameter); `None` otherwise.
    pub fn description_before_decay_on(&self) -> Option<String> {
        (self.decay_on == DecayOn::All).then(|| {
            format!(
                "Optimizer {{ kind: {:?}, lr: {:?}, schedule: {:?}, clip_norm: {:?} }}",
                self.kind, self.lr, self.schedule, self.clip_norm
            )
        })
    }

    /// Whether the weight decay applies to the parameter `info`.
    fn decays(&self, info: &VarInfo) -> bool {
        match self.decay_on {
            DecayOn::All => true,
            DecayOn::Matrices => info.decay,
        }
    }

    /// The per-step scalars for step `step` (0-based; Adam's bias correction uses t = step + 1).
    pub fn scalars(&self, step: u64) -> StepScalars {
        let lr = self.lr * self.schedule.factor(step);
        match self.kind {
            OptimizerKind::Sgd(_) => StepScalars {
                lr,
                ..StepScalars::default()
            },
            OptimizerKind::Adam(c) => {
                let t = (step + 1).min(i32::MAX as u64) as i32;
                StepScalars {
                    lr,
                    bias_correction1: 1.0 - (c.beta1 as f64).powi(t),
                    bias_correction2: 1.0 - (c.beta2 as f64).powi(t),
                }
            }
        }
    }

    /// Creates the optimizer's state variables (zeros) for every parameter; idempotent.
    pub fn add_state(&self, store: &mut VarStore) {
        for id in store.ids(VarKind::Param) {
            let info = store.get(id).clone();
            let names: &[&str] = match self.kind {
                OptimizerKind::Sgd(_) => &["momentum"],
                OptimizerKind::Adam(_) => &["adam_m", "adam_v"],
            };
            for n in names {
                let name = format!("{}.{n}", info.name);
                if store.find(&name).is_none() {
                    store.add(
                        &name,
                        &info.shape,
                        VarKind::OptimizerState,
                        vec![0.0; info.numel()],
                    );
                }
            }
        }
    }

    /// Appends the update of every parameter, given `(param, gradient node)` pairs.
    pub fn append_updates(
        &self,
        g: &GraphBuilder,
        store: &VarStore,
        grads: &[(VarId, NodeId)],
    ) -> Result<()> {
        let scale = match self.clip_norm {
            None => g.scoped("optimizer", || g.fill(1.0, &[1])),
            Some(max) => g.scoped("clip", || clip_scale(g, grads, max))?,
        };
        for &(param, grad) in grads {
            let info = store.get(param);
            let name = &info.name;
            let decays = self.decays(info);
            let state = |suffix: &str| {
                store.find(&format!("{name}.{suffix}")).ok_or_else(|| {
                    ModelError::Graph(format!(
                        "optimizer state {name}.{suffix} missing: call add_state first"
                    ))
                })
            };
            let op = match self.kind {
                OptimizerKind::Sgd(config) => Op::SgdUpdate {
                    param,
                    velocity: state("momentum")?,
                    config: SgdConfig {
                        weight_decay: if decays { config.weight_decay } else { 0.0 },
                        ..config
                    },
                },
                OptimizerKind::Adam(config) => Op::AdamUpdate {
                    param,
                    m: state("adam_m")?,
                    v: state("adam_v")?,
                    config: AdamConfig {
                        weight_decay: if decays { config.weight_decay } else { 0.0 },
                        ..config
                    },
                },
            };
            let tag = format!("{} · {name}", self.kind.name());
            g.push(op, &[grad, scale.id], vec![], &tag);
        }
        Ok(())
    }
}

/// `min(1, max / (‖g‖ + 1e-6))` over the global norm of all gradients, as one scalar node.
fn clip_scale(g: &GraphBuilder, grads: &[(VarId, NodeId)], max: f64) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for &(_, grad) in grads {
        let sq = g.tensor(grad).square().sum_all();
        total = Some(match total {
            None => sq,
            Some(t) => t.add(&sq)?,
        });
    }
    let total = total.ok_or_else(|| ModelError::Graph("no gradients to clip".into()))?;
    let norm = total.sqrt().affine(1.0, 1e-6).reshape(&[1])?;
    let ratio = g.fill(max, &[1]).div(&norm)?;
    ratio.binary(BinaryOp::Min, &g.fill(1.0, &[1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, CpuBackend};
    use crate::nn::{Linear, Mode};
    use crate::nn_seq::{Embedding, LayerNorm};
    use crate::trainer::{Feeds, Model, Outputs, TrainConfig, Trainer};
    use crate::vars::Init;

    /// Every parameter of the store times 0, summed: each gradient is 0, so one AdamW step
    /// changes only what the decoupled decay shrinks.
    struct ZeroLoss;

    impl Model for ZeroLoss {
        fn forward(
            &self,
            vars: &VarStore,
            g: &GraphBuilder,
            _: usize,
            _: Mode,
        ) -> Result<crate::Outputs> {
            let mut total = g.fill(0.0, &[1]).reshape(&[])?;
            for id in vars.ids(VarKind::Param) {
                let v = vars.get(id);
                let t = g.var(id, &v.shape, &v.name).scale(0.0).sum_all();
                total = total.add(&t)?;
            }
            Ok(Outputs::loss(total))
        }
    }

    fn one_adamw_step(decay_on: DecayOn) -> Vec<(String, f32)> {
        let (mut store, mut init) = (VarStore::new(), Init::new(3));
        let _fc = Linear::new(&mut store, "fc", 3, 2, &mut init);
        let _ln = LayerNorm::new(&mut store, "ln", 3);
        let _emb = Embedding::new(&mut store, "emb", 4, 3, 1.0, &mut init);
        // A non-zero shift, so that a decay of it would show.
        let ln_bias = store.find("ln.bias").unwrap();
        store.vars[ln_bias.0].init = vec![0.5; 3];
        let before: Vec<Vec<f32>> = store.vars.iter().map(|v| v.init.clone()).collect();
        let mut opt = Optimizer::new(OptimizerKind::adamw(0.5), 0.1);
        opt.decay_on = decay_on;
        let backend = Backend::Cpu(CpuBackend::new());
        let mut t = Trainer::new(ZeroLoss, store, backend, opt, TrainConfig::new(1)).unwrap();
        t.step(&Feeds::new()).unwrap();
        // The ratio after/before of each parameter (all values of one share it).
        t.params()
            .unwrap()
            .iter()
            .zip(&before)
            .map(|(p, b)| {
                let k = b.iter().position(|v| v.abs() > 1e-3).unwrap();
                (p.name.clone(), p.data[k] / b[k])
            })
            .collect()
    }

    #[test]
    fn decay_on_matrices_leaves_biases_norms_and_embeddings_alone() {
        // p ← p − lr·wd·p = 0.95·p where the decay applies; 1 elsewhere.
        let shrunk = 1.0 - 0.1 * 0.5;
        let matrices = one_adamw_step(DecayOn::Matrices);
        let names: Vec<&str> = matrices.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(
            names,
            ["fc.weight", "fc.bias", "ln.weight", "ln.bias", "emb.weight"]
        );
        for (name, ratio) in &matrices {
            let want = if name == "fc.weight" { shrunk } else { 1.0 };
            assert!(
                (ratio - want).abs() < 1e-6,
                "{name}: ratio {ratio}, expected {want}"
            );
        }
        for (name, ratio) in one_adamw_step(DecayOn::All) {
            assert!(
                (ratio - shrunk).abs() < 1e-6,
                "{name}: ratio {ratio}, expected {shrunk}"
            );
        }
    }

    #[test]
    fn cosine_schedule_warms_up_then_decays() {
        let s = Schedule::Cosine {
            warmup: 10,
            total: 110,
            min_factor: 0.0,
        };
        assert!((s.factor(0) - 0.1).abs() < 1e-12);
        assert!((s.factor(9) - 1.0).abs() < 1e-12);
        assert!((s.factor(60) - 0.5).abs() < 1e-12);
        assert!(s.factor(110).abs() < 1e-12);
        let st = Schedule::Step {
            every: 10,
            gamma: 0.5,
        };
        assert_eq!(st.factor(9), 1.0);
        assert_eq!(st.factor(25), 0.25);
    }
}
