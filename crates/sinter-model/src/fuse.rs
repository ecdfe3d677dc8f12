//! The planner's fusion pass: folds a bias add and a ReLU into the matrix product or convolution
//! before them, and a ReLU's gradient mask into the max-pooling gradient before it.

use crate::graph::{ConvConfig, Node, NodeId, Op, PoolConfig};
use sinter_ops::elementwise::{BinaryOp, UnaryOp};

/// Operations made by the fusion pass, never recorded by model code. Each computes exactly what
/// its unfused nodes computed, in the same order of floating-point operations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fused {
    /// `y = conv(x, w) + bias`, then ReLU when `relu`; inputs `[x, w, bias]`, bias one value per
    /// output channel.
    Conv2dBias { conv: ConvConfig, relu: bool },
    /// `y = op(a)·op(b) + bias`, then ReLU when `relu`; inputs `[a, b, bias]`, bias one value per
    /// output column.
    MatMulBias {
        trans_a: bool,
        trans_b: bool,
        relu: bool,
    },
    /// The max-pooling gradient followed by the ReLU gradient of the pooled tensor `x` (itself a
    /// ReLU output): `dx = dy` routed to each window's arg-max where `x > 0`; inputs `[x, dy]`.
    MaxPool2dGradRelu(PoolConfig),
}

impl Fused {
    pub fn name(&self) -> &'static str {
        match self {
            Fused::Conv2dBias { relu: false, .. } => "conv2d+bias",
            Fused::Conv2dBias { relu: true, .. } => "conv2d+bias+relu",
            Fused::MatMulBias { relu: false, .. } => "matmul+bias",
            Fused::MatMulBias { relu: true, .. } => "matmul+bias+relu",
            Fused::MaxPool2dGradRelu(_) => "max_pool2d_grad+relu_grad",
        }
    }
}

/// Rewrites fusable chains among the `needed` nodes in place and marks the nodes they absorb as
/// no longer needed. A chain is fused only when its intermediate values have no other reader
/// and are not outputs, so nothing else can observe the difference. Returns how many were fused.
pub fn fuse(nodes: &mut [Node], needed: &mut [bool], outputs: &[NodeId]) -> usize {
    let mut readers = vec![0usize; nodes.len()];
    let mut last_reader = vec![usize::MAX; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        if needed[i] {
            for &j in &node.inputs {
                readers[j] += 1;
                last_reader[j] = i;
            }
        }
    }
    for &o in outputs {
        readers[o] += 1; // an output is read by the caller
    }
    let private = |readers: &[usize], i: NodeId| readers[i] == 1;

    let mut fused = 0;
    for i in 0..nodes.len() {
        if !needed[i] {
            continue;
        }
        // The tail of a chain: a ReLU of a bias add, or a bias add not followed by a ReLU.
        let feeds_relu = |j: NodeId| {
            private(&readers, j)
                && last_reader[j] != usize::MAX
                && nodes[last_reader[j]].op == Op::Unary(UnaryOp::Relu)
        };
        let (add, relu) = match nodes[i].op {
            Op::Unary(UnaryOp::Relu) => (nodes[i].inputs[0], true),
            // A bias add that feeds a ReLU is fused when the ReLU is reached.
            Op::Binary(BinaryOp::Add) if !feeds_relu(i) => (i, false),
            _ => (usize::MAX, false),
        };
        if add != usize::MAX && (!relu || private(&readers, add)) {
            if let Some((op, inputs, absorbed)) = bias_chain(nodes, &readers, add, relu) {
                nodes[i].tag = joined_tags(nodes, &absorbed, i);
                nodes[i].op = Op::Fused(op);
                nodes[i].inputs = inputs;
                for a in absorbed {
                    needed[a] = false;
                }
                fused += 1;
                continue;
            }
        }
        // dx = relu'(x) · max_pool2d_grad(x, dy), with x the pooled ReLU output.
        if nodes[i].op == Op::UnaryGrad(UnaryOp::Relu) {
            let (x, dpool) = (nodes[i].inputs[0], nodes[i].inputs[1]);
            if let Op::MaxPool2dGrad(c) = nodes[dpool].op {
                let pooled = nodes[dpool].inputs[0];
                if pooled == x && private(&readers, dpool) {
                    let dy = nodes[dpool].inputs[1];
                    nodes[i].tag = joined_tags(nodes, &[dpool], i);
                    nodes[i].op = Op::Fused(Fused::MaxPool2dGradRelu(c));
                    nodes[i].inputs = vec![x, dy];
                    needed[dpool] = false;
                    fused += 1;
                }
            }
        }
    }
    fused
}

/// The tags of the absorbed nodes and the tail, each once, in order: `conv2 + relu2`.
fn joined_tags(nodes: &[Node], absorbed: &[NodeId], tail: NodeId) -> String {
    let mut tags: Vec<&str> = Vec::new();
    for &j in absorbed.iter().chain(std::iter::once(&tail)) {
        let t = nodes[j].tag.as_str();
        if !t.is_empty() && !tags.contains(&t) {
            tags.push(t);
        }
    }
    tags.join(" + ")
}

/// If `add` is `product + bias` (either order) with a per-channel (convolution) or per-column
/// (matrix product) bias and a product nobody else reads: the fused op, its inputs and the nodes
/// it absorbs.
fn bias_chain(
    nodes: &[Node],
    readers: &[usize],
    add: NodeId,
    relu: bool,
) -> Option<(Fused, Vec<NodeId>, Vec<NodeId>)> {
    if nodes[add].op != Op::Binary(BinaryOp::Add) {
        return None;
    }
    let [l, r] = nodes[add].inputs[..] else {
        return None;
    };
    let out_shape = &nodes[add].shape;
    for (product, bias) in [(l, r), (r, l)] {
        if readers[product] != 1 || nodes[product].shape != *out_shape {
            continue;
        }
        let p = &nodes[product];
        let b = &nodes[bias].shape;
        let fused = match p.op {
            // A bias of [O, 1, 1] or [1, O, 1, 1] over y: [N, O, OH, OW].
            Op::Conv2d(conv) if conv_bias(b, out_shape) => Fused::Conv2dBias { conv, relu },
            // A bias of [N] or [1, N] over y: [.., M, N].
            Op::MatMul { trans_a, trans_b } if column_bias(b, out_shape) => Fused::MatMulBias {
                trans_a,
                trans_b,
                relu,
            },
            _ => continue,
        };
        let absorbed = if relu {
            vec![product, add]
        } else {
            vec![product]
        };
        return Some((fused, vec![p.inputs[0], p.inputs[1], bias], absorbed));
    }
    None
}

fn conv_bias(bias: &[usize], y: &[usize]) -> bool {
    y.len() == 4 && matches!(bias, [o, 1, 1] | [1, o, 1, 1] if *o == y[1])
}

fn column_bias(bias: &[usize], y: &[usize]) -> bool {
    let n = *y.last().unwrap_or(&0);
    y.len() >= 2 && matches!(bias, [c] | [1, c] if *c == n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphBuilder;

    fn fused_ops(nodes: &[Node], needed: &[bool]) -> Vec<Fused> {
        nodes
            .iter()
            .zip(needed)
            .filter_map(|(n, &k)| match n.op {
                Op::Fused(f) if k => Some(f),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_linear_layer_with_relu_becomes_one_node() {
        let g = GraphBuilder::new();
        let x = g.input("x", &[4, 3]);
        let w = g.input("w", &[3, 5]);
        let b = g.input("b", &[5]);
        let y = x.matmul(&w).unwrap().add(&b).unwrap().relu();
        let out = y.sum_all();
        let mut graph = g.finish();
        let mut needed = vec![true; graph.nodes.len()];
        assert_eq!(fuse(&mut graph.nodes, &mut needed, &[out.id]), 1);
        assert_eq!(
            fused_ops(&graph.nodes, &needed),
            vec![Fused::MatMulBias {
                trans_a: false,
                trans_b: false,
                relu: true
            }]
        );
        assert_eq!(graph.nodes[y.id].inputs, vec![x.id, w.id, b.id]);
    }

    #[test]
    fn a_value_read_elsewhere_is_not_fused_away() {
        let g = GraphBuilder::new();
        let x = g.input("x", &[4, 3]);
        let w = g.input("w", &[3, 5]);
        let b = g.input("b", &[5]);
        let product = x.matmul(&w).unwrap();
        let y = product.add(&b).unwrap().relu();
        // The product is also an output: it must keep its own node.
        let out = y.sum_all();
        let mut graph = g.finish();
        let mut needed = vec![true; graph.nodes.len()];
        assert_eq!(
            fuse(&mut graph.nodes, &mut needed, &[out.id, product.id]),
            0
        );
        // A bias that is not per column (a full matrix) is not fused either.
        let g = GraphBuilder::new();
        let x = g.input("x", &[4, 3]);
        let w = g.input("w", &[3, 5]);
        let full = g.input("full", &[4, 5]);
        let out = x.matmul(&w).unwrap().add(&full).unwrap().sum_all();
        let mut graph = g.finish();
        let mut needed = vec![true; graph.nodes.len()];
        assert_eq!(fuse(&mut graph.nodes, &mut needed, &[out.id]), 0);
    }
}
