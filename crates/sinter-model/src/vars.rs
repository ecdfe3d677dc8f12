//! Persistent variables: the model's parameters and the optimizer's state. Graphs refer to them by
//! [`VarId`]; a backend holds their values, shared by the training and the evaluation programs.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Index of a variable in its [`VarStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VarId(pub usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarKind {
    /// Trained by the optimizer.
    Param,
    /// Optimizer state (momentum, Adam moments): saved in checkpoints, never trained.
    OptimizerState,
}

#[derive(Clone, Debug)]
pub struct VarInfo {
    /// PyTorch `state_dict`-style name: `conv1.weight`, `fc2.bias`, `fc1.weight.adam_m`.
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: VarKind,
    /// Initial value, as written into a backend when it first sees the variable.
    pub init: Vec<f32>,
}

impl VarInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Every variable of a model and its optimizer.
#[derive(Clone, Debug, Default)]
pub struct VarStore {
    pub vars: Vec<VarInfo>,
}

impl VarStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, name: &str, shape: &[usize], kind: VarKind, init: Vec<f32>) -> VarId {
        assert_eq!(
            init.len(),
            shape.iter().product::<usize>(),
            "initial value of {name} does not match its shape {shape:?}"
        );
        assert!(
            self.find(name).is_none(),
            "variable {name} is defined twice"
        );
        self.vars.push(VarInfo {
            name: name.to_string(),
            shape: shape.to_vec(),
            kind,
            init,
        });
        VarId(self.vars.len() - 1)
    }

    /// A parameter initialized uniformly in `[-bound, bound]` from `rng`.
    pub fn param_uniform(
        &mut self,
        name: &str,
        shape: &[usize],
        bound: f32,
        rng: &mut ChaCha8Rng,
    ) -> VarId {
        let n = shape.iter().product();
        let init = (0..n).map(|_| rng.random_range(-bound..=bound)).collect();
        self.add(name, shape, VarKind::Param, init)
    }

    pub fn get(&self, id: VarId) -> &VarInfo {
        &self.vars[id.0]
    }

    pub fn find(&self, name: &str) -> Option<VarId> {
        self.vars.iter().position(|v| v.name == name).map(VarId)
    }

    pub fn ids(&self, kind: VarKind) -> Vec<VarId> {
        (0..self.vars.len())
            .map(VarId)
            .filter(|&id| self.get(id).kind == kind)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.vars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}
