//! Backends run a plan: `Cpu` with native Rust kernels, `Gpu` with the WGSL kernels through wgpu.
//! Device choice lives here: a hardware GPU first, else the CPU backend with a one-line notice.

pub mod cpu;
#[cfg(feature = "gpu")]
pub mod gpu;

use crate::error::{ModelError, Result};
use crate::graph::{Graph, NodeId};
use crate::plan::{MemoryReport, Plan, PlanOptions};
use crate::profile::{StepProfile, TimingMethod};
use crate::vars::{VarId, VarStore};
#[cfg(feature = "gpu")]
use sinter_device::{pick_adapter_nth, Gpu};
use sinter_ops::DeviceChoice;

pub use cpu::{CpuBackend, CpuProgram};
#[cfg(feature = "gpu")]
pub use gpu::{GpuBackend, GpuProgram};

/// Values that change every step without changing the plan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepScalars {
    /// Learning rate of this step (after the schedule).
    pub lr: f64,
    /// `1 − β1^t` for Adam (1 otherwise).
    pub bias_correction1: f64,
    /// `1 − β2^t` for Adam (1 otherwise).
    pub bias_correction2: f64,
}

impl Default for StepScalars {
    fn default() -> Self {
        Self {
            lr: 0.0,
            bias_correction1: 1.0,
            bias_correction2: 1.0,
        }
    }
}

/// The first value of a step, in plan order, that holds a NaN or an infinity: the node that
/// produced it (op, tag, shape, source line), the first bad element and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Anomaly {
    /// The node whose value is not finite.
    pub node: NodeId,
    /// Its op, as [`crate::graph::Op::name`] writes it.
    pub op: String,
    /// Its tag in model terms (`fc1 · matmul`).
    pub tag: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// The source line that recorded it.
    pub location: String,
    /// Flat index of the first non-finite element.
    pub index: usize,
    /// That element (NaN or ±inf).
    pub value: f32,
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the first non-finite value comes from {} `{}` (shape {:?}, recorded at {}): element {} is {}",
            self.op, self.tag, self.shape, self.location, self.index, self.value
        )
    }
}

impl Anomaly {
    /// The first non-finite element of `values`, the value of node `id` of `plan`.
    pub(crate) fn find<T: crate::cpu::Real>(plan: &Plan, id: NodeId, values: &[T]) -> Option<Self> {
        let index = values.iter().position(|v| !v.f64().is_finite())?;
        let node = &plan.nodes[id];
        Some(Anomaly {
            node: id,
            op: node.op.name(),
            tag: node.tag.clone(),
            shape: node.shape.clone(),
            location: node.location.to_string(),
            index,
            value: values[index].f64() as f32,
        })
    }
}

/// The memory a backend has for its programs: RAM for the CPU backend (and software adapters),
/// the device's for a GPU. The caller measures it (the library does not probe the host); a
/// trainer refuses a program whose plan does not fit before it allocates anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryLimit {
    /// Bytes the programs and variables may use together.
    pub bytes: u64,
    /// Where the figure comes from, for the error: `the CPU backend has this much RAM
    /// available (MemAvailable)`.
    pub source: String,
}

impl MemoryLimit {
    /// Refuses `what` when its plan's buffers plus `held` bytes (variables, programs compiled
    /// before) exceed the limit.
    pub fn check(&self, what: &str, plan: &Plan, held: u64) -> Result<()> {
        let needed = plan.memory.planned_bytes.saturating_add(held);
        if needed > self.bytes {
            return Err(ModelError::OutOfMemory {
                what: what.to_string(),
                needed,
                limit: self.bytes,
                origin: self.source.clone(),
            });
        }
        Ok(())
    }
}

/// Where a model trains.
pub enum Backend {
    /// The native CPU backend, in f32.
    Cpu(CpuBackend<f32>),
    /// A wgpu adapter running the WGSL kernels.
    #[cfg(feature = "gpu")]
    Gpu(Box<GpuBackend>),
}

/// A compiled plan for one backend.
pub enum Program {
    /// A plan prepared for the CPU backend.
    Cpu(CpuProgram<f32>),
    /// A plan prepared for a GPU: pipelines, buffers and bind groups.
    #[cfg(feature = "gpu")]
    Gpu(GpuProgram),
}

impl Program {
    /// The plan this program runs.
    pub fn plan(&self) -> &Plan {
        match self {
            Program::Cpu(p) => &p.plan,
            #[cfg(feature = "gpu")]
            Program::Gpu(p) => &p.plan,
        }
    }

    /// What the plan predicts a step needs (see [`MemoryReport`]).
    pub fn memory(&self) -> MemoryReport {
        self.plan().memory
    }

    /// Kernels one run launches: GPU dispatches, or nodes the CPU backend executes.
    pub fn kernel_count(&self) -> usize {
        match self {
            Program::Cpu(p) => p.plan.order.len(),
            #[cfg(feature = "gpu")]
            Program::Gpu(p) => p.dispatches.len(),
        }
    }
}

impl Backend {
    /// Opens the backend for `choice`. The second value is a notice for the user when `auto`
    /// falls back to the CPU backend.
    pub fn open(choice: DeviceChoice) -> Result<(Self, Option<String>)> {
        Self::open_nth(choice, 0)
    }

    /// [`Backend::open`] for the `nth` process on this machine: with several GPUs, process k
    /// takes GPU k mod their count (see `sinter_device::pick_adapter_nth`).
    pub fn open_nth(choice: DeviceChoice, nth: usize) -> Result<(Self, Option<String>)> {
        #[cfg(feature = "gpu")]
        if let Some(adapter) = pick_adapter_nth(choice, nth)? {
            let gpu = Gpu::new(adapter)?;
            log::info!(
                "using {} ({:?}, {})",
                gpu.report.name,
                gpu.report.backend,
                gpu.report.class
            );
            return Ok((Backend::Gpu(Box::new(GpuBackend::new(gpu)?)), None));
        }
        #[cfg(not(feature = "gpu"))]
        {
            let _ = nth;
            if matches!(
                choice,
                DeviceChoice::Gpu | DeviceChoice::Software | DeviceChoice::One { .. }
            ) {
                return Err(ModelError::Config(format!(
                    "device '{choice}' needs the GPU backend, but sinter-model was built without its `gpu` feature"
                )));
            }
        }
        let notice = (choice == DeviceChoice::Auto)
            .then(|| "no hardware GPU found; training on the CPU backend".to_string());
        Ok((Backend::Cpu(CpuBackend::new()), notice))
    }

    /// The largest buffer one kernel may bind, in bytes: the adapter's storage-buffer binding
    /// limit (`None` on the CPU backend, which has none).
    pub fn max_buffer_bytes(&self) -> Option<u64> {
        match self {
            Backend::Cpu(_) => None,
            #[cfg(feature = "gpu")]
            Backend::Gpu(g) => Some(g.gpu.max_binding()),
        }
    }

    /// A one-line description: `CPU backend (2 threads)` or `GPU llvmpipe (Vulkan, software)`.
    pub fn describe(&self) -> String {
        match self {
            Backend::Cpu(_) => format!("CPU backend ({} threads)", rayon::current_num_threads()),
            #[cfg(feature = "gpu")]
            Backend::Gpu(g) => {
                let r = &g.gpu.report;
                format!("GPU {} ({:?}, {})", r.name, r.backend, r.class)
            }
        }
    }

    /// GPU buffer-pool counters (None on the CPU backend).
    #[cfg(feature = "gpu")]
    pub fn pool_stats(&self) -> Option<sinter_device::PoolStats> {
        match self {
            Backend::Cpu(_) => None,
            #[cfg(feature = "gpu")]
            Backend::Gpu(g) => Some(g.gpu.pool_stats()),
        }
    }

    /// Copies every variable of `store` (parameters, optimizer state) onto the backend; programs
    /// and [`Backend::read_var`]/[`Backend::write_var`] need this first.
    pub fn load_vars(&mut self, store: &VarStore) -> Result<()> {
        store.check()?;
        match self {
            Backend::Cpu(c) => {
                c.load_vars(store);
                Ok(())
            }
            #[cfg(feature = "gpu")]
            Backend::Gpu(g) => g.load_vars(store),
        }
    }

    /// The current values of variable `id`; an error if this backend has not loaded it.
    pub fn read_var(&self, id: VarId) -> Result<Vec<f32>> {
        self.var_len(id)?;
        match self {
            Backend::Cpu(c) => Ok(c.read_var(id)),
            #[cfg(feature = "gpu")]
            Backend::Gpu(g) => g.read_var(id),
        }
    }

    /// Overwrites variable `id`; an error if it is not loaded or `data` has another length.
    pub fn write_var(&mut self, id: VarId, data: &[f32]) -> Result<()> {
        let len = self.var_len(id)?;
        if data.len() != len {
            return Err(ModelError::Config(format!(
                "write_var: variable {} holds {len} values, not {}",
                id.0,
                data.len()
            )));
        }
        match self {
            Backend::Cpu(c) => c.write_var(id, data),
            #[cfg(feature = "gpu")]
            Backend::Gpu(g) => g.write_var(id, data),
        }
        Ok(())
    }

    /// The length of variable `id`, or an error saying it is not loaded.
    fn var_len(&self, id: VarId) -> Result<usize> {
        let len = match self {
            Backend::Cpu(c) => c.vars.get(id.0).map(Vec::len),
            #[cfg(feature = "gpu")]
            Backend::Gpu(g) => g.var_len(id),
        };
        len.ok_or_else(|| {
            ModelError::Config(format!(
                "variable {} is not loaded in this backend ({} are): call load_vars with its store first",
                id.0,
                self.loaded_vars()
            ))
        })
    }

    /// Variables loaded so far (see [`Backend::load_vars`]).
    pub fn loaded_vars(&self) -> usize {
        match self {
            Backend::Cpu(c) => c.vars.len(),
            #[cfg(feature = "gpu")]
            Backend::Gpu(g) => g.vars.len(),
        }
    }

    /// Refuses a plan that reads a variable this backend does not hold yet, naming it.
    fn check_vars_loaded(&self, plan: &Plan) -> Result<()> {
        let loaded = self.loaded_vars();
        for node in &plan.nodes {
            if let crate::graph::Op::Var(id) = node.op {
                if id.0 >= loaded {
                    return Err(ModelError::Config(format!(
                        "variable '{}' (recorded at {}) is not on the backend: call `Backend::load_vars(&store)` with the store that holds it before compiling or running",
                        node.tag, node.location
                    )));
                }
            }
        }
        Ok(())
    }

    /// Plans `graph` for `outputs` (plus every optimizer update in it) and prepares it to run.
    /// Both backends' plans fuse bias adds and ReLUs into the products before them. The
    /// variables the graph reads must be loaded ([`Backend::load_vars`]).
    pub fn compile(&self, graph: &Graph, outputs: &[NodeId]) -> Result<Program> {
        self.compile_plan(self.plan(graph, outputs, false)?)
    }

    /// [`Backend::compile`] for [`Backend::run_checked`]: on a GPU every value gets a buffer of its
    /// own (no reuse), so that all of them can be read back after the step.
    pub fn compile_checked(&self, graph: &Graph, outputs: &[NodeId]) -> Result<Program> {
        self.compile_plan(self.plan(graph, outputs, true)?)
    }

    /// The plan [`Backend::compile`] (or, `checked`, [`Backend::compile_checked`]) would
    /// prepare, with its memory report, before anything is allocated: check it against a
    /// [`MemoryLimit`], then [`Backend::compile_plan`] it.
    pub fn plan(&self, graph: &Graph, outputs: &[NodeId], checked: bool) -> Result<Plan> {
        let plan = match (self, checked) {
            (_, false) => Plan::with_options(graph, outputs, PlanOptions { fuse: true })?,
            (Backend::Cpu(_), true) => Plan::new(graph, outputs)?,
            #[cfg(feature = "gpu")]
            (Backend::Gpu(_), true) => Plan::without_reuse(graph, outputs)?,
        };
        self.check_vars_loaded(&plan)?;
        Ok(plan)
    }

    /// Prepares a plan from [`Backend::plan`] to run: allocates its buffers (pipelines and bind
    /// groups on a GPU).
    pub fn compile_plan(&self, plan: Plan) -> Result<Program> {
        self.check_vars_loaded(&plan)?;
        Ok(match self {
            Backend::Cpu(c) => Program::Cpu(c.compile(plan)),
            #[cfg(feature = "gpu")]
            Backend::Gpu(g) => Program::Gpu(g.compile(plan)?),
        })
    }

    /// [`Backend::run`] with every value checked for NaN and infinity: returns the outputs and
    /// the first value (inputs, then nodes in plan order) that is not finite, if any. The CPU
    /// backend checks each node as it runs and stops at the first bad one, before any update;
    /// a GPU runs the whole step, then reads every value back (a program from
    /// [`Backend::compile_checked`]).
    pub fn run_checked(
        &mut self,
        prog: &mut Program,
        feeds: &[&[f32]],
        scalars: &StepScalars,
    ) -> Result<(Vec<Vec<f32>>, Option<Anomaly>)> {
        match (self, prog) {
            (Backend::Cpu(c), Program::Cpu(p)) => c.run_checked(p, feeds, scalars),
            #[cfg(feature = "gpu")]
            (Backend::Gpu(g), Program::Gpu(p)) => g.run_checked(p, feeds, scalars),
            #[allow(unreachable_patterns)]
            _ => Err(ModelError::Graph(
                "program was compiled for another backend".into(),
            )),
        }
    }

    /// [`Backend::run_checked`] for training step `step`: the first non-finite value becomes
    /// [`ModelError::Anomaly`], naming its node and the step.
    pub fn run_detecting(
        &mut self,
        prog: &mut Program,
        feeds: &[&[f32]],
        scalars: &StepScalars,
        step: u64,
    ) -> Result<Vec<Vec<f32>>> {
        match self.run_checked(prog, feeds, scalars)? {
            (_, Some(anomaly)) => Err(ModelError::Anomaly {
                step,
                anomaly: Box::new(anomaly),
            }),
            (outputs, None) => Ok(outputs),
        }
    }

    /// Runs one step: `feeds` in the order of the plan's inputs; returns the outputs.
    pub fn run(
        &mut self,
        prog: &mut Program,
        feeds: &[&[f32]],
        scalars: &StepScalars,
    ) -> Result<Vec<Vec<f32>>> {
        self.check_vars_loaded(prog.plan())?;
        match (self, prog) {
            (Backend::Cpu(c), Program::Cpu(p)) => c.run(p, feeds, scalars),
            #[cfg(feature = "gpu")]
            (Backend::Gpu(g), Program::Gpu(p)) => g.run(p, feeds, scalars),
            #[allow(unreachable_patterns)]
            _ => Err(ModelError::Graph(
                "program was compiled for another backend".into(),
            )),
        }
    }
}

/// The outputs of a step that may still be running (see [`Backend::submit`]).
#[must_use = "a submitted step's outputs are read with Backend::wait"]
pub enum PendingOutputs {
    /// Already computed: the CPU backend runs a step when it is submitted.
    Ready(Vec<Vec<f32>>),
    /// On a GPU's queue.
    #[cfg(feature = "gpu")]
    Gpu(sinter_device::Submitted),
}

impl Backend {
    /// [`Backend::run`] without waiting for a GPU: the step is queued when this returns, so the
    /// host can prepare (and submit) the next one while it runs; [`Backend::wait`] reads its
    /// outputs. Steps run in the order they were submitted. The CPU backend runs the step here.
    pub fn submit(
        &mut self,
        prog: &mut Program,
        feeds: &[&[f32]],
        scalars: &StepScalars,
    ) -> Result<PendingOutputs> {
        self.check_vars_loaded(prog.plan())?;
        match (self, prog) {
            (Backend::Cpu(c), Program::Cpu(p)) => {
                Ok(PendingOutputs::Ready(c.run(p, feeds, scalars)?))
            }
            #[cfg(feature = "gpu")]
            (Backend::Gpu(g), Program::Gpu(p)) => {
                Ok(PendingOutputs::Gpu(g.submit(p, feeds, scalars)?))
            }
            #[allow(unreachable_patterns)]
            _ => Err(ModelError::Graph(
                "program was compiled for another backend".into(),
            )),
        }
    }

    /// The outputs of a step from [`Backend::submit`], once it has run.
    pub fn wait(&self, pending: PendingOutputs) -> Result<Vec<Vec<f32>>> {
        match (self, pending) {
            (_, PendingOutputs::Ready(outputs)) => Ok(outputs),
            #[cfg(feature = "gpu")]
            (Backend::Gpu(g), PendingOutputs::Gpu(s)) => Ok(g.gpu.wait(s)?),
            #[allow(unreachable_patterns)]
            _ => Err(ModelError::Graph(
                "a step submitted to another backend".into(),
            )),
        }
    }
}

impl Backend {
    /// [`Backend::run`] with every kernel timed and tagged. `timing` picks how a GPU times its
    /// dispatches (`None`: the best it offers); the CPU backend times each node on the host.
    pub fn run_profiled(
        &mut self,
        prog: &mut Program,
        feeds: &[&[f32]],
        scalars: &StepScalars,
        timing: Option<TimingMethod>,
    ) -> Result<(Vec<Vec<f32>>, StepProfile)> {
        #[cfg(not(feature = "gpu"))]
        let _ = timing;
        match (self, prog) {
            (Backend::Cpu(c), Program::Cpu(p)) => c.run_profiled(p, feeds, scalars),
            #[cfg(feature = "gpu")]
            (Backend::Gpu(g), Program::Gpu(p)) => {
                let method = timing.unwrap_or_else(|| sinter_device::profiler::best_timing(&g.gpu));
                g.run_profiled(p, feeds, scalars, method)
            }
            #[allow(unreachable_patterns)]
            _ => Err(ModelError::Graph(
                "program was compiled for another backend".into(),
            )),
        }
    }
}

/// Checks the feeds against the plan's inputs, naming the input whose size is wrong.
pub(crate) fn check_feeds(plan: &Plan, lens: impl ExactSizeIterator<Item = usize>) -> Result<()> {
    if lens.len() != plan.inputs.len() {
        let names: Vec<&str> = plan
            .inputs
            .iter()
            .map(|&i| plan.nodes[i].tag.as_str())
            .collect();
        return Err(ModelError::Config(format!(
            "the step takes {} inputs ({}) but {} were given",
            plan.inputs.len(),
            names.join(", "),
            lens.len()
        )));
    }
    for (k, len) in lens.enumerate() {
        let node = &plan.nodes[plan.inputs[k]];
        if len != node.numel() {
            return Err(ModelError::Config(format!(
                "input '{}' has shape {:?} ({} values) but {len} values were given",
                node.tag,
                node.shape,
                node.numel()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vars::VarKind;

    #[test]
    fn variables_not_loaded_or_of_another_length_are_errors() {
        let mut store = VarStore::new();
        let id = store.add("w", &[3], VarKind::Param, vec![1.0, 2.0, 3.0]);
        let mut backend = Backend::Cpu(CpuBackend::new());
        let err = backend.read_var(id).unwrap_err().to_string();
        assert!(
            err.contains("not loaded") && err.contains("load_vars"),
            "{err}"
        );
        backend.load_vars(&store).unwrap();
        let err = backend.write_var(id, &[1.0]).unwrap_err().to_string();
        assert!(err.contains("holds 3 values, not 1"), "{err}");
        backend.write_var(id, &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!(backend.read_var(id).unwrap(), vec![4.0, 5.0, 6.0]);
    }
}
