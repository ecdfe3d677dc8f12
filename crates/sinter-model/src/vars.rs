//! Persistent variables: the model's parameters and the optimizer's state. Graphs refer to them by
//! [`VarId`]; a backend holds their values, shared by the training and the evaluation programs.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// A seeded source of initial parameter values: the same seed gives the same parameters on every
/// machine and backend. Modules take one in their constructors.
#[derive(Clone, Debug)]
pub struct Init {
    rng: ChaCha8Rng,
}

impl Init {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// `n` values uniform in `[-bound, bound]`; a zero-width or non-finite range gives zeros.
    pub fn uniform(&mut self, n: usize, bound: f32) -> Vec<f32> {
        if !(bound.is_finite() && bound > 0.0) {
            return vec![0.0; n];
        }
        (0..n)
            .map(|_| self.rng.random_range(-bound..=bound))
            .collect()
    }

    /// `n` values from a normal distribution of mean 0 and standard deviation `std`
    /// (zeros when `std` is not a positive finite number).
    pub fn normal(&mut self, n: usize, std: f32) -> Vec<f32> {
        match Normal::new(0.0f32, std) {
            Ok(d) if std.is_finite() && std > 0.0 => {
                (0..n).map(|_| d.sample(&mut self.rng)).collect()
            }
            _ => vec![0.0; n],
        }
    }
}

/// Index of a variable in its [`VarStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VarId(pub usize);

/// What a variable is for: the optimizer trains parameters and only updates its own state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarKind {
    /// Trained by the optimizer.
    Param,
    /// Optimizer state (momentum, Adam moments): saved in checkpoints, never trained.
    OptimizerState,
}

/// One variable: its name, shape, role and initial value.
#[derive(Clone, Debug)]
pub struct VarInfo {
    /// PyTorch `state_dict`-style name: `conv1.weight`, `fc2.bias`, `fc1.weight.adam_m`.
    pub name: String,
    /// Row-major shape, e.g. `[out, in]` for a linear layer's weight.
    pub shape: Vec<usize>,
    /// Parameter or optimizer state.
    pub kind: VarKind,
    /// Initial value, as written into a backend when it first sees the variable.
    pub init: Vec<f32>,
}

impl VarInfo {
    /// Elements of the variable.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Every variable of a model and its optimizer.
#[derive(Clone, Debug, Default)]
pub struct VarStore {
    /// Every variable, indexed by [`VarId`], in the order they were added.
    pub vars: Vec<VarInfo>,
}

impl VarStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a variable with initial value `init` (row-major, `shape`'s element count) and
    /// returns its id.
    ///
    /// # Panics
    ///
    /// If `init` does not have `shape`'s element count, or `name` is already taken (two modules
    /// given the same name): both are mistakes in model code, found when the model is built.
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

    /// A parameter initialized uniformly in `[-bound, bound]` from `init`; panics as
    /// [`VarStore::add`] on a taken name.
    pub fn param_uniform(
        &mut self,
        name: &str,
        shape: &[usize],
        bound: f32,
        init: &mut Init,
    ) -> VarId {
        let values = init.uniform(shape.iter().product(), bound);
        self.add(name, shape, VarKind::Param, values)
    }

    /// The variable `id` (an id from this store; another store's id panics or aliases).
    pub fn get(&self, id: VarId) -> &VarInfo {
        &self.vars[id.0]
    }

    /// The variable called `name`, if any.
    pub fn find(&self, name: &str) -> Option<VarId> {
        self.vars.iter().position(|v| v.name == name).map(VarId)
    }

    /// Every variable of `kind`, in the order they were added.
    pub fn ids(&self, kind: VarKind) -> Vec<VarId> {
        (0..self.vars.len())
            .map(VarId)
            .filter(|&id| self.get(id).kind == kind)
            .collect()
    }

    /// Number of variables of both kinds.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether the store holds no variable.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}
