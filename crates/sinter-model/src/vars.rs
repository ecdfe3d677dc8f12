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
    /// A module's state that is not trained (PyTorch's buffers: a batch norm's `running_mean`,
    /// `running_var`, `num_batches_tracked`): part of the model's state_dict and checkpoints,
    /// written by the model's own update nodes in training, never by the optimizer.
    Buffer,
}

impl VarKind {
    /// The kinds a model's state_dict holds, as PyTorch's `state_dict()`: parameters and buffers
    /// (not the optimizer's state).
    pub const STATE_DICT: [VarKind; 2] = [VarKind::Param, VarKind::Buffer];
}

/// One variable: its name, shape, role and initial value.
#[derive(Clone, Debug)]
pub struct VarInfo {
    /// PyTorch `state_dict`-style name: `conv1.weight`, `bn1.running_mean`, `fc1.weight.adam_m`.
    pub name: String,
    /// Row-major shape, e.g. `[out, in]` for a linear layer's weight.
    pub shape: Vec<usize>,
    /// Parameter, optimizer state or buffer.
    pub kind: VarKind,
    /// Initial value, as written into a backend when it first sees the variable.
    pub init: Vec<f32>,
    /// Whether weight decay applies to it under [`crate::optim::DecayOn::Matrices`]: set for
    /// parameters of two or more axes (linear and convolution weights) when added, cleared by
    /// [`VarStore::exclude_from_decay`] for matrices that are tables (embeddings). Biases and
    /// norms' scales and shifts (one axis) never take it.
    pub decay: bool,
}

impl VarInfo {
    /// Elements of the variable.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Every variable of a model and its optimizer.
///
/// Model code adds variables without handling errors at each call; a mistake (a name used twice,
/// an initial value of the wrong length) is recorded with the line that made it and reported by
/// [`VarStore::check`], which [`crate::Backend::load_vars`] and the trainers call before anything
/// runs.
#[derive(Clone, Debug, Default)]
pub struct VarStore {
    /// Every variable, indexed by [`VarId`], in the order they were added.
    pub vars: Vec<VarInfo>,
    /// Mistakes made while adding variables, each naming the variable and the caller's line.
    problems: Vec<String>,
}

impl VarStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a variable with initial value `init` (row-major, `shape`'s element count) and
    /// returns its id.
    ///
    /// A name already taken (two modules given the same name) or an `init` of another length
    /// than `shape` holds is recorded, naming the line that called this (through modules marked
    /// `#[track_caller]`), and reported by [`VarStore::check`]; the variable is still added
    /// (its value zero-padded or cut to the shape) so that model building can go on.
    #[track_caller]
    pub fn add(&mut self, name: &str, shape: &[usize], kind: VarKind, mut init: Vec<f32>) -> VarId {
        let at = std::panic::Location::caller();
        let numel = shape.iter().product::<usize>();
        if init.len() != numel {
            self.problems.push(format!(
                "variable {name} (added at {at}): its initial value has {} values but its shape {shape:?} holds {numel}",
                init.len()
            ));
            init.resize(numel, 0.0);
        }
        if self.find(name).is_some() {
            self.problems.push(format!(
                "variable {name} (added at {at}) is defined twice: give the two modules different names"
            ));
        }
        self.vars.push(VarInfo {
            name: name.to_string(),
            shape: shape.to_vec(),
            kind,
            init,
            decay: kind == VarKind::Param && shape.len() >= 2,
        });
        VarId(self.vars.len() - 1)
    }

    /// Marks `id` as a parameter weight decay leaves alone under [`crate::optim::DecayOn::Matrices`]
    /// although it has two axes: an embedding table, whose rows are looked up, not multiplied.
    pub fn exclude_from_decay(&mut self, id: VarId) {
        self.vars[id.0].decay = false;
    }

    /// Records a mistake found while building a model on this store (a module's bad setting),
    /// reported by [`VarStore::check`] with the variables' own.
    pub fn record_problem(&mut self, problem: String) {
        self.problems.push(problem);
    }

    /// The first mistake made while adding variables, as an error; `Ok` when there was none.
    pub fn check(&self) -> crate::Result<()> {
        match self.problems.first() {
            None => Ok(()),
            Some(p) if self.problems.len() == 1 => Err(crate::ModelError::Config(p.clone())),
            Some(p) => Err(crate::ModelError::Config(format!(
                "{p} (and {} more problems with variables)",
                self.problems.len() - 1
            ))),
        }
    }

    /// A parameter initialized uniformly in `[-bound, bound]` from `init`; a taken name is
    /// recorded as in [`VarStore::add`].
    #[track_caller]
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

    /// Every variable of one of `kinds`, in the order they were added (with
    /// [`VarKind::STATE_DICT`]: the model's state_dict).
    pub fn ids_of(&self, kinds: &[VarKind]) -> Vec<VarId> {
        (0..self.vars.len())
            .map(VarId)
            .filter(|&id| kinds.contains(&self.get(id).kind))
            .collect()
    }

    /// Number of variables of every kind.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether the store holds no variable.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, CpuBackend};
    use crate::nn::Linear;
    use crate::nn_seq::MultiHeadAttention;

    #[test]
    fn a_name_used_twice_is_an_error_naming_the_variable_and_the_model_line() {
        let mut store = VarStore::new();
        let mut init = Init::new(0);
        let _a = Linear::new(&mut store, "fc", 3, 2, &mut init);
        let line = line!() + 1;
        let _b = Linear::new(&mut store, "fc", 2, 2, &mut init);
        let e = store.check().unwrap_err().to_string();
        assert!(e.contains("variable fc.weight"), "{e}");
        assert!(e.contains("defined twice"), "{e}");
        assert!(e.contains(&format!("vars.rs:{line}")), "{e}");
        let mut backend = Backend::Cpu(CpuBackend::new());
        let e = backend.load_vars(&store).unwrap_err().to_string();
        assert!(e.contains("defined twice"), "{e}");
    }

    #[test]
    fn an_initial_value_of_the_wrong_length_is_an_error() {
        let mut store = VarStore::new();
        let id = store.add("w", &[2, 3], VarKind::Param, vec![1.0; 5]);
        assert_eq!(store.get(id).init.len(), 6);
        let e = store.check().unwrap_err().to_string();
        assert!(
            e.contains("variable w") && e.contains("5 values") && e.contains("holds 6"),
            "{e}"
        );
    }

    #[test]
    fn heads_that_do_not_divide_the_width_are_an_error_not_a_panic() {
        let mut store = VarStore::new();
        let _ = MultiHeadAttention::new(&mut store, "attn", 10, 3, &mut Init::new(1));
        let e = store.check().unwrap_err().to_string();
        assert!(
            e.contains("attention attn") && e.contains("width 10") && e.contains("3 heads"),
            "{e}"
        );
        let mut ok = VarStore::new();
        let _ = MultiHeadAttention::new(&mut ok, "attn", 12, 3, &mut Init::new(1));
        assert!(ok.check().is_ok());
    }
}
