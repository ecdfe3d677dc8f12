//! The planner's fusion pass: folds a bias add and any unary activation into the matrix product
//! or convolution before them (an [`Epilogue`] run inside the product's kernel), and a ReLU's
//! gradient mask into the max-pooling gradient before it. The rules are the one table in `fold`.

use crate::graph::{ConvConfig, Node, NodeId, Op, PoolConfig};
use sinter_ops::elementwise::{BinaryOp, Epilogue, UnaryOp};

/// Operations made by the fusion pass, never recorded by model code. Each computes exactly what
/// its unfused nodes computed, in the same order of floating-point operations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fused {
    /// `y = epilogue(conv(x, w))`; inputs `[x, w]`, then `[bias]` (one value per output channel)
    /// when the epilogue adds one.
    Conv2d {
        /// Stride, padding and dilation of the convolution.
        conv: ConvConfig,
        /// What is applied to each output.
        epilogue: Epilogue,
    },
    /// `y = epilogue(op(a)·op(b))`; inputs `[a, b]`, then `[bias]` (one value per output column)
    /// when the epilogue adds one.
    MatMul {
        /// A is read transposed.
        trans_a: bool,
        /// B is read transposed.
        trans_b: bool,
        /// What is applied to each output.
        epilogue: Epilogue,
    },
    /// The max-pooling gradient followed by the ReLU gradient of the pooled tensor `x` (itself a
    /// ReLU output): `dx = dy` routed to each window's arg-max where `x > 0`; inputs `[x, dy]`.
    MaxPool2dGradRelu(PoolConfig),
}

impl Fused {
    /// `conv2d+bias+relu`, `matmul+gelu`, `max_pool2d_grad+relu_grad`.
    pub fn name(&self) -> String {
        match self {
            Fused::Conv2d { epilogue, .. } => format!("conv2d{}", epilogue.suffix()),
            Fused::MatMul { epilogue, .. } => format!("matmul{}", epilogue.suffix()),
            Fused::MaxPool2dGradRelu(_) => "max_pool2d_grad+relu_grad".into(),
        }
    }

    /// The epilogue of a fused product (None for the other fused ops).
    pub fn epilogue(&self) -> Option<Epilogue> {
        match self {
            Fused::Conv2d { epilogue, .. } | Fused::MatMul { epilogue, .. } => Some(*epilogue),
            Fused::MaxPool2dGradRelu(_) => None,
        }
    }
}

/// The fusion rules, one arm each: consumer `c`, folded into `p` (the producer of its input
/// `slot`, whose value nobody else reads), gives this fused op and its inputs.
fn fold(nodes: &[Node], p: &Node, c: &Node, slot: usize) -> Option<(Fused, Vec<NodeId>)> {
    match c.op {
        // product + bias (either order) → epilogue bias, when the bias is one value per channel
        // (`bias_fits`) and the add does not broadcast the product.
        Op::Binary(BinaryOp::Add) => {
            let e = epilogue_of(&p.op).filter(|e| e.is_none())?;
            let bias = c.inputs[1 - slot];
            let fits = c.shape == p.shape && bias_fits(&p.op, &nodes[bias].shape, &c.shape);
            let fused = with_epilogue(&p.op, Epilogue { bias: true, ..e })?;
            fits.then(|| (fused, vec![p.inputs[0], p.inputs[1], bias]))
        }
        // act(product [+ bias]) → epilogue activation, for any unary op.
        Op::Unary(u) => {
            let e = epilogue_of(&p.op).filter(|e| e.activation.is_none())?;
            let e = Epilogue {
                activation: Some(u),
                ..e
            };
            Some((with_epilogue(&p.op, e)?, p.inputs.clone()))
        }
        // relu'(x) · max_pool2d_grad(x, dy), x the pooled ReLU output → one gather with the mask.
        Op::UnaryGrad(UnaryOp::Relu) => match p.op {
            Op::MaxPool2dGrad(cfg) if slot == 1 && c.inputs[0] == p.inputs[0] => Some((
                Fused::MaxPool2dGradRelu(cfg),
                vec![c.inputs[0], p.inputs[1]],
            )),
            _ => None,
        },
        _ => None,
    }
}

/// The epilogue so far of an op that can take one: a plain product (none yet) or a fused one.
fn epilogue_of(op: &Op) -> Option<Epilogue> {
    match op {
        Op::MatMul { .. } | Op::Conv2d(_) => Some(Epilogue::NONE),
        Op::Fused(f) => f.epilogue(),
        _ => None,
    }
}

/// The product `op` (plain or fused) with epilogue `epilogue`.
fn with_epilogue(op: &Op, epilogue: Epilogue) -> Option<Fused> {
    Some(match *op {
        Op::MatMul { trans_a, trans_b }
        | Op::Fused(Fused::MatMul {
            trans_a, trans_b, ..
        }) => Fused::MatMul {
            trans_a,
            trans_b,
            epilogue,
        },
        Op::Conv2d(conv) | Op::Fused(Fused::Conv2d { conv, .. }) => {
            Fused::Conv2d { conv, epilogue }
        }
        _ => return None,
    })
}

/// A bias of one value per channel of y: `[O, 1, 1]` or `[1, O, 1, 1]` over a convolution's
/// `[N, O, OH, OW]`, `[N]` or `[1, N]` over a product's `[.., M, N]`.
fn bias_fits(product: &Op, bias: &[usize], y: &[usize]) -> bool {
    match product {
        Op::Conv2d(_) | Op::Fused(Fused::Conv2d { .. }) => {
            y.len() == 4 && matches!(bias, [o, 1, 1] | [1, o, 1, 1] if *o == y[1])
        }
        _ => {
            let n = *y.last().unwrap_or(&0);
            y.len() >= 2 && matches!(bias, [c] | [1, c] if *c == n)
        }
    }
}

/// Rewrites fusable chains among the `needed` nodes in place and marks the nodes they absorb as
/// no longer needed. Each node is folded into the producer of one of its inputs when a rule of
/// `fold` matches and that producer's value has no other reader and is not an output, so
/// nothing else can observe the difference; the fused node keeps the consumer's id, so a chain
/// grows one node at a time (conv, then + bias, then relu). Returns how many chains were fused.
pub fn fuse(nodes: &mut [Node], needed: &mut [bool], outputs: &[NodeId]) -> usize {
    let mut readers = vec![0usize; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        if needed[i] {
            for &j in &node.inputs {
                readers[j] += 1;
            }
        }
    }
    for &o in outputs {
        readers[o] += 1; // an output is read by the caller
    }
    let mut fused = 0;
    for i in 0..nodes.len() {
        if !needed[i] {
            continue;
        }
        for slot in 0..nodes[i].inputs.len().min(2) {
            let p = nodes[i].inputs[slot];
            if readers[p] != 1 {
                continue;
            }
            if let Some((op, inputs)) = fold(nodes, &nodes[p], &nodes[i], slot) {
                if !matches!(nodes[p].op, Op::Fused(_)) {
                    fused += 1;
                }
                nodes[i].tag = joined_tags(nodes, &[p], i);
                nodes[i].op = Op::Fused(op);
                nodes[i].inputs = inputs;
                needed[p] = false;
                break;
            }
        }
    }
    fused
}

/// The tags of the absorbed nodes and the tail, each once, in order: `conv2 + relu2`.
fn joined_tags(nodes: &[Node], absorbed: &[NodeId], tail: NodeId) -> String {
    let mut tags: Vec<&str> = Vec::new();
    for &j in absorbed.iter().chain(std::iter::once(&tail)) {
        for t in nodes[j].tag.split(" + ") {
            if !t.is_empty() && !tags.contains(&t) {
                tags.push(t);
            }
        }
    }
    tags.join(" + ")
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
            vec![Fused::MatMul {
                trans_a: false,
                trans_b: false,
                epilogue: Epilogue {
                    bias: true,
                    activation: Some(UnaryOp::Relu)
                }
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

    #[test]
    fn any_activation_is_an_epilogue_with_or_without_a_bias() {
        // A convolution with a bias and tanh, and a product with gelu but no bias.
        let g = GraphBuilder::new();
        let x = g.input("x", &[2, 3, 6, 6]);
        let k = g.input("k", &[4, 3, 3, 3]);
        let kb = g.input("kb", &[4, 1, 1]);
        let conv = x.conv2d(&k, ConvConfig::padded(1)).unwrap();
        let y1 = conv.add(&kb).unwrap().tanh();
        let a = g.input("a", &[5, 7]);
        let w = g.input("w", &[7, 3]);
        let y2 = a.matmul(&w).unwrap().gelu();
        let out = y1.sum_all().add(&y2.sum_all()).unwrap();
        let mut graph = g.finish();
        let mut needed = vec![true; graph.nodes.len()];
        assert_eq!(fuse(&mut graph.nodes, &mut needed, &[out.id]), 2);
        assert_eq!(
            fused_ops(&graph.nodes, &needed),
            vec![
                Fused::Conv2d {
                    conv: ConvConfig::padded(1),
                    epilogue: Epilogue {
                        bias: true,
                        activation: Some(UnaryOp::Tanh)
                    }
                },
                Fused::MatMul {
                    trans_a: false,
                    trans_b: false,
                    epilogue: Epilogue {
                        bias: false,
                        activation: Some(UnaryOp::Gelu)
                    }
                }
            ]
        );
        assert_eq!(graph.nodes[y1.id].inputs, vec![x.id, k.id, kb.id]);
        assert_eq!(graph.nodes[y2.id].inputs, vec![a.id, w.id]);
        assert_eq!(graph.nodes[y1.id].op.name(), "conv2d+bias+tanh");
    }

    #[test]
    fn an_epilogue_is_bias_then_activation_only() {
        // relu(product) + bias: the bias comes after the activation, so only the relu folds.
        let g = GraphBuilder::new();
        let x = g.input("x", &[4, 3]);
        let w = g.input("w", &[3, 5]);
        let b = g.input("b", &[5]);
        let out = x
            .matmul(&w)
            .unwrap()
            .relu()
            .add(&b)
            .unwrap()
            .exp()
            .sum_all();
        let mut graph = g.finish();
        let mut needed = vec![true; graph.nodes.len()];
        assert_eq!(fuse(&mut graph.nodes, &mut needed, &[out.id]), 1);
        let relu = Epilogue {
            bias: false,
            activation: Some(UnaryOp::Relu),
        };
        assert_eq!(
            fused_ops(&graph.nodes, &needed),
            vec![Fused::MatMul {
                trans_a: false,
                trans_b: false,
                epilogue: relu
            }]
        );
    }
}
