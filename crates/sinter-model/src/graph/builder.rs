//! The graph builder: the one place that appends nodes to a graph, with scoped tags, one leaf
//! per variable, named inputs and dropout masks and seeds.

use super::{DropoutDraw, Graph, Node, NodeId, Op, Tensor};
use crate::vars::VarId;
use std::cell::RefCell;
use std::panic::Location;
use std::rc::Rc;

/// A graph being built; cheap to clone (all clones record into the same graph).
#[derive(Clone, Default)]
pub struct GraphBuilder {
    pub(super) graph: Rc<RefCell<Graph>>,
}

impl GraphBuilder {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the graph recorded so far, to plan and compile (tensors stay usable).
    pub fn finish(&self) -> Graph {
        let g = self.graph.borrow();
        Graph {
            nodes: g.nodes.clone(),
            scope: Vec::new(),
            var_leaves: g.var_leaves.clone(),
            dropout_masks: g.dropout_masks.clone(),
        }
    }

    /// Runs `f` with `name` prefixed to the tags of the nodes it records.
    pub fn scoped<R>(&self, name: &str, f: impl FnOnce() -> R) -> R {
        self.graph.borrow_mut().scope.push(name.to_string());
        let r = f();
        self.graph.borrow_mut().scope.pop();
        r
    }

    /// A handle to node `id` of this graph, to record operations on it (backward rules and
    /// optimizers work from node ids). The id must be one this graph recorded.
    pub fn tensor(&self, id: NodeId) -> Tensor {
        Tensor {
            id,
            graph: self.graph.clone(),
        }
    }

    /// A copy of node `id`.
    ///
    /// # Panics
    ///
    /// If `id` is not a node of this graph.
    pub fn node(&self, id: NodeId) -> Node {
        self.graph.borrow().nodes[id].clone()
    }

    /// Nodes recorded so far; the next node gets this id.
    pub fn len(&self) -> usize {
        self.graph.borrow().nodes.len()
    }

    /// Whether nothing has been recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a node whose shape has already been checked.
    #[track_caller]
    pub fn push(&self, op: Op, inputs: &[NodeId], shape: Vec<usize>, what: &str) -> Tensor {
        self.push_at(op, inputs, shape, what, Location::caller())
    }

    pub(crate) fn push_at(
        &self,
        op: Op,
        inputs: &[NodeId],
        shape: Vec<usize>,
        what: &str,
        location: &'static Location<'static>,
    ) -> Tensor {
        let mut g = self.graph.borrow_mut();
        let mut tag = g.scope.join(".");
        if !what.is_empty() {
            if !tag.is_empty() {
                tag.push_str(" · ");
            }
            tag.push_str(what);
        }
        if tag.is_empty() {
            tag = op.name();
        }
        g.nodes.push(Node {
            op,
            inputs: inputs.to_vec(),
            shape,
            tag,
            location,
        });
        let id = g.nodes.len() - 1;
        drop(g);
        self.tensor(id)
    }

    /// Records a node with secondary outputs: the primary output has `shapes[0]`, and one
    /// [`Op::Secondary`] node is recorded per further shape. Returns all outputs in order.
    ///
    /// # Panics
    ///
    /// If `shapes` is empty (a node has at least its primary output).
    #[track_caller]
    pub fn push_multi(
        &self,
        op: Op,
        inputs: &[NodeId],
        shapes: Vec<Vec<usize>>,
        what: &str,
    ) -> Vec<Tensor> {
        let loc = Location::caller();
        let mut shapes = shapes.into_iter();
        let primary = self.push_at(
            op,
            inputs,
            shapes.next().expect("at least one output"),
            what,
            loc,
        );
        let mut outs = vec![primary.clone()];
        for (k, shape) in shapes.enumerate() {
            outs.push(self.push_at(Op::Secondary(k + 1), &[primary.id], shape, what, loc));
        }
        outs
    }

    /// The secondary output `k` of node `id`, if it was recorded.
    pub fn secondary(&self, id: NodeId, k: usize) -> Option<Tensor> {
        let g = self.graph.borrow();
        let found = g.nodes[id + 1..]
            .iter()
            .position(|n| n.op == Op::Secondary(k) && n.inputs == [id])
            .map(|p| id + 1 + p);
        drop(g);
        found.map(|i| self.tensor(i))
    }

    /// A batch fed at every step.
    #[track_caller]
    pub fn input(&self, name: &str, shape: &[usize]) -> Tensor {
        self.push(
            Op::Input {
                name: name.to_string(),
            },
            &[],
            shape.to_vec(),
            name,
        )
    }

    /// A persistent variable (parameter or optimizer state) of the given shape. A variable has
    /// one leaf per graph however often it is used, so its gradients from every use meet there.
    #[track_caller]
    pub fn var(&self, id: VarId, shape: &[usize], name: &str) -> Tensor {
        let existing = self.graph.borrow().var_leaves.get(&id).copied();
        if let Some(leaf) = existing {
            return self.tensor(leaf);
        }
        let leaf = self.push(Op::Var(id), &[], shape.to_vec(), name);
        self.graph.borrow_mut().var_leaves.insert(id, leaf.id);
        leaf
    }

    /// The leaf of variable `id`, if this graph uses it.
    pub fn var_leaf(&self, id: VarId) -> Option<NodeId> {
        self.graph.borrow().var_leaves.get(&id).copied()
    }

    /// A dropout mask of `shape` that drops with probability `p`: an input named `<scope>.mask`
    /// whose values the trainer draws at every step (0, or 1/(1−p) for kept units).
    #[track_caller]
    pub fn dropout_mask(&self, shape: &[usize], p: f32) -> Tensor {
        self.dropout_input("mask", shape, DropoutDraw::Mask(p))
    }

    /// The `[batch]` row seeds a kernel draws its dropout masks from: an input named
    /// `<scope>.seeds` whose values the trainer draws at every step.
    #[track_caller]
    pub fn dropout_seeds(&self, batch: usize) -> Tensor {
        self.dropout_input("seeds", &[batch], DropoutDraw::RowSeeds)
    }

    #[track_caller]
    fn dropout_input(&self, suffix: &str, shape: &[usize], draw: DropoutDraw) -> Tensor {
        let name = {
            let g = self.graph.borrow();
            let mut name = g.scope.join(".");
            if name.is_empty() {
                name = format!("dropout{}", g.dropout_masks.len());
            }
            format!("{name}.{suffix}")
        };
        let input = self.input(&name, shape);
        self.graph.borrow_mut().dropout_masks.push((input.id, draw));
        input
    }

    /// A constant tensor of `shape` with every element `value` (computed in the step, no
    /// variable behind it).
    #[track_caller]
    pub fn fill(&self, value: f64, shape: &[usize]) -> Tensor {
        self.push(Op::Fill(value), &[], shape.to_vec(), "")
    }
}
