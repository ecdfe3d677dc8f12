//! The planner: keeps the nodes a step needs, orders them, and assigns each value a buffer by
//! liveness, so buffers are reused within a step and the peak memory is known before the step runs.

use crate::error::{ModelError, Result};
use crate::graph::{Graph, Node, NodeId, Op};
use crate::lower::{self, Launch};
use crate::vars::VarId;

/// Where a node's value lives while the step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// A planned buffer, shared over time with values whose lifetimes do not overlap.
    Slot(usize),
    /// A persistent variable.
    Var(VarId),
    /// The node is not part of this plan, or produces no value (an optimizer update).
    None,
}

/// A scheduled step: which nodes run, in which order, and where every value lives.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The nodes of the graph (the plan owns its copy).
    pub nodes: Vec<Node>,
    /// Nodes to execute, in order (leaves and reshapes are not executed).
    pub order: Vec<NodeId>,
    /// What each node of `order` runs, lowered once (same order).
    pub launches: Vec<Launch>,
    /// Where each node's value lives, by node id.
    pub storage: Vec<Storage>,
    /// Capacity of each slot, in elements.
    pub slots: Vec<usize>,
    /// The secondary outputs of each node (see [`Op::Secondary`]), in order.
    pub extras: Vec<Vec<NodeId>>,
    /// `Input` nodes, in the order feeds are given to `run`.
    pub inputs: Vec<NodeId>,
    /// Values read back after each run, in order.
    pub outputs: Vec<NodeId>,
    /// What the step needs, known before it runs.
    pub memory: MemoryReport,
    /// Whether values share buffers over time. Without reuse every value keeps its own buffer
    /// until the step ends, so all of them can be read back afterwards (anomaly detection).
    pub reuse: bool,
}

/// What the planner predicts a step needs, in bytes of f32 values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryReport {
    /// Largest total of values alive at the same moment (the lower bound any plan needs).
    pub peak_live_bytes: u64,
    /// Total of all planned buffers: what the backend allocates for the step.
    pub planned_bytes: u64,
    /// What the step would need with no reuse (every value its own buffer).
    pub unshared_bytes: u64,
    /// Persistent variables the step touches.
    pub variable_bytes: u64,
    /// The largest single buffer.
    pub largest_buffer_bytes: u64,
    /// Number of planned buffers.
    pub buffers: usize,
}

/// Choices a backend makes when it plans a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Fold bias adds and ReLUs into the products before them (see `fuse.rs`).
    pub fuse: bool,
}

/// Hands out slots by best fit and tracks how many bytes are alive.
#[derive(Default)]
struct SlotAllocator {
    slots: Vec<usize>,
    free: Vec<usize>,
    live_of_slot: Vec<u64>,
    live: u64,
    peak: u64,
    unshared: u64,
}

impl SlotAllocator {
    /// A slot for `len` elements: the smallest free one that fits, else a new one. `own` asks
    /// for a new slot that nothing else will share (inputs and constants, written outside a step).
    fn allocate(&mut self, len: usize, own: bool) -> usize {
        let len = len.max(1);
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, &s)| self.slots[s] >= len)
            .min_by_key(|(_, &s)| self.slots[s])
            .map(|(k, _)| k);
        let slot = match best.filter(|_| !own) {
            Some(k) => self.free.swap_remove(k),
            None => {
                self.slots.push(len);
                self.live_of_slot.push(0);
                self.slots.len() - 1
            }
        };
        let bytes = 4 * len as u64;
        self.live_of_slot[slot] = bytes;
        self.live += bytes;
        self.unshared += bytes;
        self.peak = self.peak.max(self.live);
        slot
    }

    fn release(&mut self, slot: usize) {
        if self.live_of_slot[slot] > 0 {
            self.live -= self.live_of_slot[slot];
            self.live_of_slot[slot] = 0;
            self.free.push(slot);
        }
    }
}

impl Plan {
    /// Plans the nodes needed for `outputs` and every optimizer update in `graph`, unfused.
    pub fn new(graph: &Graph, outputs: &[NodeId]) -> Result<Self> {
        Self::with_options(graph, outputs, PlanOptions::default())
    }

    /// [`Plan::new`] with the backend's choices.
    pub fn with_options(graph: &Graph, outputs: &[NodeId], options: PlanOptions) -> Result<Self> {
        Self::build(graph, outputs, options, true)
    }

    /// [`Plan::new`] with every value in a buffer of its own, alive until the step ends.
    pub fn without_reuse(graph: &Graph, outputs: &[NodeId]) -> Result<Self> {
        Self::build(graph, outputs, PlanOptions::default(), false)
    }

    fn build(graph: &Graph, outputs: &[NodeId], options: PlanOptions, reuse: bool) -> Result<Self> {
        let mut nodes = graph.nodes.clone();
        let n = nodes.len();
        for &o in outputs {
            if o >= n {
                return Err(ModelError::Graph(format!(
                    "output node {o} is not in the graph"
                )));
            }
        }

        // Keep what the outputs and the updates depend on.
        let mut needed = vec![false; n];
        for &o in outputs {
            needed[o] = true;
        }
        for (i, node) in nodes.iter().enumerate() {
            if node.op.is_update() {
                needed[i] = true;
            }
        }
        // Secondary outputs, by producer: they get buffers whenever their producer runs.
        let mut extras: Vec<Vec<NodeId>> = vec![Vec::new(); n];
        for (j, node) in nodes.iter().enumerate() {
            if let Op::Secondary(k) = node.op {
                let producer = &mut extras[node.inputs[0]];
                producer.push(j);
                assert_eq!(
                    producer.len(),
                    k,
                    "secondary outputs of node {} recorded out of order",
                    node.inputs[0]
                );
            }
        }
        for i in (0..n).rev() {
            if needed[i] {
                for &j in &nodes[i].inputs {
                    needed[j] = true;
                }
                for &e in &extras[i] {
                    needed[e] = true;
                }
            }
        }

        if options.fuse {
            let fused = crate::fuse::fuse(&mut nodes, &mut needed, outputs);
            log::debug!("plan: {fused} chains fused");
        }

        // A reshape shares its input's storage: everything is planned on the alias root.
        let mut root: Vec<NodeId> = (0..n).collect();
        for (i, node) in nodes.iter().enumerate() {
            if node.op == Op::Reshape {
                root[i] = root[node.inputs[0]];
            }
        }
        let mut last_use = vec![0usize; n];
        for (i, node) in nodes.iter().enumerate() {
            if needed[i] {
                for &j in &node.inputs {
                    last_use[root[j]] = last_use[root[j]].max(i);
                }
            }
        }
        let pinned = |i: NodeId| {
            let r = root[i];
            matches!(nodes[r].op, Op::Input { .. } | Op::Fill(_))
                || outputs.iter().any(|&o| root[o] == r)
        };

        let mut storage = vec![Storage::None; n];
        let mut order = Vec::new();
        let mut variables = 0u64;
        let mut alloc = SlotAllocator::default();
        for i in 0..n {
            if !needed[i] {
                continue;
            }
            let node = &nodes[i];
            match &node.op {
                Op::Var(id) => {
                    storage[i] = Storage::Var(*id);
                    variables += 4 * node.numel() as u64;
                    continue;
                }
                Op::Reshape => {
                    storage[i] = storage[root[i]];
                    continue;
                }
                // Allocated with its producer; only its freeing is handled here.
                Op::Secondary(_) => {}
                op if op.is_update() => {}
                _ => {
                    let own = !reuse || matches!(node.op, Op::Input { .. } | Op::Fill(_));
                    storage[i] = Storage::Slot(alloc.allocate(node.numel(), own));
                    for &e in &extras[i] {
                        storage[e] = Storage::Slot(alloc.allocate(nodes[e].numel(), !reuse));
                    }
                }
            }
            if !matches!(node.op, Op::Input { .. } | Op::Fill(_) | Op::Secondary(_)) {
                order.push(i);
            }
            // Free the inputs whose last use is this node (and values nobody reads).
            let mut done: Vec<NodeId> = node.inputs.iter().map(|&j| root[j]).collect();
            if !node.op.is_update() {
                done.push(i);
            }
            done.sort_unstable();
            done.dedup();
            for r in done {
                if last_use[r] <= i && !pinned(r) {
                    if let Storage::Slot(s) = storage[r] {
                        alloc.release(s);
                    }
                }
            }
        }
        let inputs = (0..n)
            .filter(|&i| needed[i] && matches!(nodes[i].op, Op::Input { .. }))
            .collect();
        let SlotAllocator {
            slots,
            live: _,
            peak,
            unshared,
            ..
        } = alloc;
        let planned: u64 = slots.iter().map(|&s| 4 * s as u64).sum();
        let memory = MemoryReport {
            peak_live_bytes: peak,
            planned_bytes: planned,
            unshared_bytes: unshared,
            variable_bytes: variables,
            largest_buffer_bytes: slots.iter().map(|&s| 4 * s as u64).max().unwrap_or(0),
            buffers: slots.len(),
        };
        log::debug!(
            "plan: {} of {n} nodes, {} buffers, {} B planned ({} B peak live, {} B without reuse)",
            order.len(),
            slots.len(),
            memory.planned_bytes,
            memory.peak_live_bytes,
            memory.unshared_bytes
        );
        let launches = order
            .iter()
            .map(|&i| lower::lower(&nodes, &extras, i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Plan {
            nodes,
            order,
            launches,
            storage,
            slots,
            extras,
            inputs,
            outputs: outputs.to_vec(),
            memory,
            reuse,
        })
    }

    /// Refuses a plan with a buffer larger than `limit` bytes, naming the node that needs it.
    pub fn check_buffer_limit(&self, limit: u64) -> Result<()> {
        for (i, node) in self.nodes.iter().enumerate() {
            let bytes = 4 * node.numel() as u64;
            if self.storage[i] != Storage::None && bytes > limit {
                return Err(ModelError::TooLarge {
                    what: format!("{} ({}, shape {:?})", node.tag, node.op.name(), node.shape),
                    needed: bytes,
                    limit,
                });
            }
        }
        Ok(())
    }

    /// The shape of node `id`'s value.
    pub fn shape(&self, id: NodeId) -> &[usize] {
        &self.nodes[id].shape
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphBuilder;

    #[test]
    fn buffers_are_reused_after_last_use() {
        let g = GraphBuilder::new();
        let x = g.input("x", &[1000]);
        let a = x.relu();
        let b = a.tanh();
        let c = b.sigmoid();
        let d = c.exp();
        let out = d.sum_all();
        let graph = g.finish();
        let plan = Plan::new(&graph, &[out.id]).unwrap();
        // x (pinned), then a/b alternate with c/d: a chain needs only two rotating buffers.
        assert!(plan.memory.buffers <= 4, "{:?}", plan.memory);
        assert!(plan.memory.planned_bytes < plan.memory.unshared_bytes);
        assert!(plan.memory.peak_live_bytes <= plan.memory.planned_bytes);
        // No node writes into a buffer one of its inputs still occupies.
        for &i in &plan.order {
            for &j in &plan.nodes[i].inputs {
                assert_ne!(
                    plan.storage[i], plan.storage[j],
                    "node {i} overwrites its input {j}"
                );
            }
        }
    }

    #[test]
    fn inputs_and_constants_never_share_a_buffer() {
        // The constant is recorded after `a` and `b` are dead: it must still get its own buffer,
        // because it is written once at compile time and a step would overwrite a shared one.
        let g = GraphBuilder::new();
        let x = g.input("x", &[3]);
        let a = x.relu();
        let b = a.tanh().sum_all();
        let c = g.fill(1.0, &[]);
        let out = b.add(&c).unwrap().exp();
        let plan = Plan::new(&g.finish(), &[out.id]).unwrap();
        for pinned in [x.id, c.id] {
            for (i, st) in plan.storage.iter().enumerate() {
                if i != pinned {
                    assert_ne!(
                        *st, plan.storage[pinned],
                        "node {i} shares the buffer of node {pinned}"
                    );
                }
            }
        }
    }

    #[test]
    fn without_reuse_every_value_has_its_own_buffer() {
        let g = GraphBuilder::new();
        let x = g.input("x", &[1000]);
        let out = x.relu().tanh().sigmoid().exp().sum_all();
        let graph = g.finish();
        let plan = Plan::without_reuse(&graph, &[out.id]).unwrap();
        let slots: Vec<Storage> = plan.order.iter().map(|&i| plan.storage[i]).collect();
        let mut distinct = slots.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), slots.len(), "{slots:?}");
        assert!(plan
            .order
            .iter()
            .all(|&i| plan.storage[i] != plan.storage[x.id]));
        assert_eq!(plan.memory.planned_bytes, plan.memory.unshared_bytes);
        assert!(
            Plan::new(&graph, &[out.id]).unwrap().memory.planned_bytes < plan.memory.planned_bytes
        );
    }

    #[test]
    fn dead_nodes_are_not_planned() {
        let g = GraphBuilder::new();
        let x = g.input("x", &[4]);
        let used = x.relu().sum_all();
        let _unused = x.exp();
        let graph = g.finish();
        let plan = Plan::new(&graph, &[used.id]).unwrap();
        assert!(plan.order.iter().all(|&i| !matches!(
            plan.nodes[i].op,
            Op::Unary(sinter_ops::elementwise::UnaryOp::Exp)
        )));
    }

    #[test]
    fn an_oversized_buffer_is_refused_with_its_size_and_the_limit() {
        let g = GraphBuilder::new();
        let x = g.input("x", &[1 << 20]);
        let y = x.relu().sum_all();
        let plan = Plan::new(&g.finish(), &[y.id]).unwrap();
        let err = plan.check_buffer_limit(1 << 16).unwrap_err().to_string();
        assert!(err.contains("4194304") && err.contains("65536"), "{err}");
    }
}
