//! Reverse-mode autodiff: `backward(loss)` appends gradient nodes to the graph. Every op's
//! backward rule is a few lines in `rule` below, with its math in a comment.

use crate::error::{ModelError, Result};
use crate::graph::{GraphBuilder, NodeId, Op, Tensor};
use crate::vars::VarId;
use sinter_ops::elementwise::{BinaryOp, UnaryOp};
use sinter_ops::reduce::ReduceOp;
use std::collections::HashMap;

/// The gradient node of every node the loss depends on.
#[derive(Debug, Default)]
pub struct Gradients {
    by_node: HashMap<NodeId, NodeId>,
}

impl Gradients {
    /// The gradient of `node`, if the loss depends on it.
    pub fn of(&self, node: NodeId) -> Option<NodeId> {
        self.by_node.get(&node).copied()
    }
}

/// Appends to the graph the nodes computing d`loss`/d`x` for every `x` that is a parameter or in
/// `wrt`. Gradients of a value used several times accumulate.
pub fn backward(loss: &Tensor, wrt: &[NodeId]) -> Result<Gradients> {
    let g = loss.builder();
    if loss.numel() != 1 {
        return Err(ModelError::Graph(format!(
            "backward needs a scalar loss, but '{}' has shape {:?}",
            g.node(loss.id).tag,
            loss.shape()
        )));
    }
    let n = loss.id + 1;
    let nodes: Vec<_> = (0..n).map(|i| g.node(i)).collect();

    // Only nodes between a differentiable leaf and the loss get gradients.
    let mut wants = vec![false; n];
    for (i, node) in nodes.iter().enumerate() {
        wants[i] = matches!(node.op, Op::Var(_))
            || wrt.contains(&i)
            || node.inputs.iter().any(|&j| wants[j]);
    }
    let mut reaches_loss = vec![false; n];
    reaches_loss[loss.id] = true;
    for i in (0..n).rev() {
        if reaches_loss[i] {
            for &j in &nodes[i].inputs {
                reaches_loss[j] = true;
            }
        }
    }

    let mut grads: HashMap<NodeId, Tensor> = HashMap::new();
    let seed = g.scoped("loss", || g.fill(1.0, &loss.shape()));
    grads.insert(loss.id, seed);
    for i in (0..n).rev() {
        let Some(dy) = grads.get(&i).cloned() else {
            continue;
        };
        let node = &nodes[i];
        if node.inputs.is_empty() || !reaches_loss[i] {
            continue;
        }
        let tag = format!("{} · grad", node.tag);
        let input_grads = g.scoped(&tag, || rule(&g, i, &dy))?;
        for (&input, dx) in node.inputs.iter().zip(input_grads) {
            let Some(dx) = dx else { continue };
            if !wants[input] {
                continue;
            }
            debug_assert_eq!(
                dx.shape(),
                nodes[input].shape,
                "gradient shape of {}",
                nodes[input].tag
            );
            let acc = match grads.remove(&input) {
                // d(x) over several uses: the sum of the gradients of each use.
                Some(prev) => prev.add(&dx)?,
                None => dx,
            };
            grads.insert(input, acc);
        }
    }
    Ok(Gradients {
        by_node: grads.into_iter().map(|(k, v)| (k, v.id)).collect(),
    })
}

/// The gradient of each input of node `i`, given `dy` = dLoss/dOutput (None: no gradient flows).
fn rule(g: &GraphBuilder, i: NodeId, dy: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let node = g.node(i);
    let input = |k: usize| g.tensor(node.inputs[k]);
    let y = g.tensor(i);
    Ok(match node.op {
        Op::Input { .. } | Op::Var(_) | Op::Fill(_) => vec![],
        // dx = dy · f'(x). ReLU's mask is read from its output (y > 0 ⇔ x > 0), so the
        // pre-activation need not be kept and the planner can fuse it away.
        Op::Unary(u) => {
            let x = input(0);
            let mask_from = if u == UnaryOp::Relu { y.id } else { x.id };
            vec![Some(g.push(
                Op::UnaryGrad(u),
                &[mask_from, dy.id],
                x.shape(),
                "",
            ))]
        }
        // dx = alpha · dy
        Op::Affine { alpha, .. } => vec![Some(dy.scale(alpha))],
        Op::Binary(b) => {
            let (a, bb) = (input(0), input(1));
            let (sa, sb) = (a.shape(), bb.shape());
            match b {
                // da = dy, db = dy (summed over broadcast axes)
                BinaryOp::Add => vec![Some(dy.sum_to(&sa)?), Some(dy.sum_to(&sb)?)],
                // da = dy, db = −dy
                BinaryOp::Sub => vec![Some(dy.sum_to(&sa)?), Some(dy.neg().sum_to(&sb)?)],
                // da = dy · b, db = dy · a
                BinaryOp::Mul => vec![
                    Some(dy.mul(&bb)?.sum_to(&sa)?),
                    Some(dy.mul(&a)?.sum_to(&sb)?),
                ],
                // da = dy / b, db = −dy · a / b²
                BinaryOp::Div => {
                    let da = dy.div(&bb)?;
                    let db = dy.mul(&y)?.div(&bb)?.neg();
                    vec![Some(da.sum_to(&sa)?), Some(db.sum_to(&sb)?)]
                }
                // The larger (smaller) operand takes the gradient; a tie goes to a.
                BinaryOp::Max | BinaryOp::Min => {
                    let mask_a = if b == BinaryOp::Max {
                        a.binary(BinaryOp::Ge, &bb)?
                    } else {
                        bb.binary(BinaryOp::Ge, &a)?
                    };
                    let mask_b = mask_a.affine(-1.0, 1.0);
                    vec![
                        Some(dy.mul(&mask_a)?.sum_to(&sa)?),
                        Some(dy.mul(&mask_b)?.sum_to(&sb)?),
                    ]
                }
                // da = dy · b · a^(b−1), db = dy · aᵇ · ln a
                BinaryOp::Pow => {
                    let da = dy.mul(&bb)?.mul(&a.pow(&bb.affine(1.0, -1.0))?)?;
                    let db = dy.mul(&y)?.mul(&a.log())?;
                    vec![Some(da.sum_to(&sa)?), Some(db.sum_to(&sb)?)]
                }
                // Comparisons are piecewise constant.
                BinaryOp::Ge | BinaryOp::Eq => vec![None, None],
            }
        }
        // dx = dy summed over the broadcast axes
        Op::BroadcastTo => vec![Some(dy.sum_to(&input(0).shape())?)],
        Op::Reduce { op, axis, keep_dim } => {
            let x = input(0);
            let xs = x.shape();
            let mut kept = xs.clone();
            kept[axis] = 1;
            let spread = |t: &Tensor| -> Result<Tensor> {
                let t = if keep_dim {
                    t.clone()
                } else {
                    t.reshape(&kept)?
                };
                t.broadcast_to(&xs)
            };
            match op {
                // dx[.., j, ..] = dy[..]
                ReduceOp::Sum => vec![Some(spread(dy)?)],
                // dx[.., j, ..] = dy[..] / n
                ReduceOp::Mean => vec![Some(spread(&dy.scale(1.0 / xs[axis] as f64))?)],
                // dx = dy where x equals the maximum (every tied maximum receives dy)
                ReduceOp::Max => {
                    let mask = x.binary(BinaryOp::Eq, &spread(&y)?)?;
                    vec![Some(mask.mul(&spread(dy)?)?)]
                }
                ReduceOp::Argmax => vec![None],
            }
        }
        // dx = dy with x's shape
        Op::Reshape => vec![Some(dy.reshape(&input(0).shape())?)],
        // dx = dy with the axes put back: the inverse permutation
        Op::Permute(perm) => {
            let mut inverse = vec![0; perm.len()];
            for (k, &p) in perm.iter().enumerate() {
                inverse[p] = k;
            }
            vec![Some(dy.permute(&inverse)?)]
        }
        // dx = dy in the sliced range, zero before and after it
        Op::Slice { axis, start } => {
            let xs = input(0).shape();
            let len = dy.shape()[axis];
            let zeros = |n: usize| {
                let mut s = xs.clone();
                s[axis] = n;
                g.fill(0.0, &s)
            };
            let mut parts = Vec::new();
            if start > 0 {
                parts.push(zeros(start));
            }
            parts.push(dy.clone());
            if start + len < xs[axis] {
                parts.push(zeros(xs[axis] - start - len));
            }
            let refs: Vec<&Tensor> = parts.iter().collect();
            vec![Some(Tensor::concat(&refs, axis)?)]
        }
        // d(part k) = the range of dy that part k filled
        Op::Concat { axis } => {
            let mut start = 0;
            let mut grads = Vec::with_capacity(node.inputs.len());
            for k in 0..node.inputs.len() {
                let len = input(k).shape()[axis];
                grads.push(Some(dy.narrow(axis, start, len)?));
                start += len;
            }
            grads
        }
        Op::MatMul { trans_a, trans_b } => {
            // With Â = op(A), B̂ = op(B), C = Â·B̂: dÂ = dC·B̂ᵀ and dB̂ = Âᵀ·dC.
            let (a, b) = (input(0), input(1));
            let da = if trans_a {
                b.matmul_t(dy, trans_b, true)? // dA = dÂᵀ = B̂·dCᵀ
            } else {
                dy.matmul_t(&b, false, !trans_b)? // dA = dC·B̂ᵀ
            };
            let db = if trans_b {
                dy.matmul_t(&a, true, trans_a)? // dB = dB̂ᵀ = dCᵀ·Â
            } else {
                a.matmul_t(dy, !trans_a, false)? // dB = Âᵀ·dC
            };
            // A rank-2 operand broadcast over the batch gets the sum over the batch.
            vec![Some(da.sum_to(&a.shape())?), Some(db.sum_to(&b.shape())?)]
        }
        // dx = conv_transpose(dy, w), dw = correlate(x, dy)
        Op::Conv2d(c) => {
            let (x, w) = (input(0), input(1));
            let dx = g.push(
                Op::Conv2dGradInput(c),
                &[dy.id, w.id],
                x.shape(),
                "input grad",
            );
            let dw = g.push(
                Op::Conv2dGradWeight(c),
                &[x.id, dy.id],
                w.shape(),
                "weight grad",
            );
            vec![Some(dx), Some(dw)]
        }
        // dx = dy routed to the arg-max of each window
        Op::MaxPool2d(c) => {
            let x = input(0);
            vec![Some(g.push(
                Op::MaxPool2dGrad(c),
                &[x.id, dy.id],
                x.shape(),
                "",
            ))]
        }
        // dx = dy / (kh·kw) spread over each window
        Op::AvgPool2d(c) => {
            let x = input(0);
            vec![Some(g.push(Op::AvgPool2dGrad(c), &[dy.id], x.shape(), ""))]
        }
        // dlogits = (softmax(logits) − onehot(target)) · dy / N; targets get none
        Op::CrossEntropy => {
            let (logits, targets) = (input(0), input(1));
            let d = g.push(
                Op::CrossEntropyGrad,
                &[logits.id, targets.id, dy.id],
                logits.shape(),
                "",
            );
            vec![Some(d), None]
        }
        Op::CountCorrect => vec![None, None],
        // dx = y ∘ (dy − Σ dy∘y)
        Op::Softmax => vec![Some(g.push(Op::SoftmaxGrad, &[y.id, dy.id], y.shape(), ""))],
        // dx = dy − softmax(x) · Σ dy
        Op::LogSoftmax => vec![Some(g.push(
            Op::LogSoftmaxGrad,
            &[y.id, dy.id],
            y.shape(),
            "",
        ))],
        // With x̂ = (x − μ)·rstd and g = dy∘γ: dx = rstd·(g − mean(g) − x̂·mean(g∘x̂)),
        // dγ = Σ_rows dy∘x̂, dβ = Σ_rows dy.
        Op::LayerNorm { eps } => {
            let (x, gamma, beta) = (input(0), input(1), input(2));
            let dx = g.push(
                Op::LayerNormGradInput { eps },
                &[x.id, gamma.id, dy.id],
                x.shape(),
                "",
            );
            let dgamma = g.push(
                Op::LayerNormGradGamma { eps },
                &[x.id, dy.id],
                gamma.shape(),
                "",
            );
            vec![Some(dx), Some(dgamma), Some(dy.sum_to(&beta.shape())?)]
        }
        // dtable[v] = Σ over positions holding token v of dout; ids get none
        Op::Embedding => {
            let (ids, table) = (input(0), input(1));
            vec![
                None,
                Some(g.push(Op::EmbeddingGrad, &[ids.id, dy.id], table.shape(), "")),
            ]
        }
        // P = softmax(scale·QKᵀ), recomputed from the saved log-sum-exp:
        // dV = Pᵀ·dO, dS = P∘(dO·Vᵀ − Δ) with Δ = rowsum(dO∘O), dQ = scale·dS·K, dK = scale·dSᵀ·Q;
        // with a dropout mask Z (redrawn from the seeds): dV = (P∘Z)ᵀ·dO, dS = P∘(Z∘(dO·Vᵀ) − Δ).
        // The seeds (input 3) get no gradient.
        Op::Attention {
            causal,
            scale,
            dropout,
        } => {
            let (q, k, v) = (input(0), input(1), input(2));
            let lse = g.secondary(i, 1).ok_or_else(|| {
                ModelError::Graph(format!("attention node {i} lost its log-sum-exp output"))
            })?;
            let qs = q.shape();
            let outs = g.push_multi(
                Op::AttentionGrad {
                    causal,
                    scale,
                    dropout,
                },
                &[q.id, k.id, v.id, y.id, dy.id, lse.id],
                vec![qs.clone(), k.shape(), v.shape(), vec![qs[0], qs[2], qs[1]]],
                "",
            );
            vec![
                Some(outs[0].clone()),
                Some(outs[1].clone()),
                Some(outs[2].clone()),
            ]
        }
        // With x̂ = (x − μ)·rstd over each channel's m = N·H·W values (μ, rstd the batch's):
        // dβ = Σ dy, dγ = Σ dy∘x̂, dx = γ·rstd·(dy − dβ/m − x̂·dγ/m) (the statistics' gradient).
        Op::BatchNorm2d { eps } => {
            let (x, weight, bias) = (input(0), input(1), input(2));
            let stats = g.secondary(i, 1).ok_or_else(|| {
                ModelError::Graph(format!("batch norm node {i} lost its statistics output"))
            })?;
            let outs = g.push_multi(
                Op::BatchNorm2dGrad { eps },
                &[x.id, weight.id, stats.id, dy.id],
                vec![x.shape(), weight.shape(), bias.shape()],
                "",
            );
            vec![
                Some(outs[0].clone()),
                Some(outs[1].clone()),
                Some(outs[2].clone()),
            ]
        }
        Op::Secondary(_) => {
            return Err(ModelError::Graph(format!(
                "a secondary output ({}) is not differentiable",
                node.tag
            )))
        }
        Op::Fused(f) => {
            return Err(ModelError::Graph(format!(
                "{} ({}) is made by the planner and has no backward rule",
                f.name(),
                node.tag
            )))
        }
        Op::UnaryGrad(_)
        | Op::Conv2dGradInput(_)
        | Op::Conv2dGradWeight(_)
        | Op::MaxPool2dGrad(_)
        | Op::AvgPool2dGrad(_)
        | Op::CrossEntropyGrad
        | Op::SoftmaxGrad
        | Op::LogSoftmaxGrad
        | Op::LayerNormGradInput { .. }
        | Op::LayerNormGradGamma { .. }
        | Op::EmbeddingGrad
        | Op::AttentionGrad { .. }
        | Op::SgdUpdate { .. }
        | Op::AdamUpdate { .. }
        | Op::BatchNorm2dGrad { .. }
        | Op::BatchNormUpdate { .. } => {
            return Err(ModelError::Graph(format!(
                "{} ({}) has no backward rule: second derivatives are not supported",
                node.op.name(),
                node.tag
            )))
        }
        // With x̂ = x·rstd and g = dy∘γ: dx = rstd·(g − x̂·mean(g∘x̂)), dγ = Σ_rows dy∘x̂.
        Op::RmsNorm { eps } => {
            let (x, gamma) = (input(0), input(1));
            let dx = g.push(
                Op::RmsNormGradInput { eps },
                &[x.id, gamma.id, dy.id],
                x.shape(),
                "",
            );
            let dgamma = g.push(
                Op::RmsNormGradGamma { eps },
                &[x.id, dy.id],
                gamma.shape(),
                "",
            );
            vec![Some(dx), Some(dgamma)]
        }
        // dx[.., v, ..] = Σ over positions t with ids[t] = v of dy[.., t, ..]; ids get none
        Op::IndexSelect { axis } => {
            let (x, ids) = (input(0), input(1));
            let dx = g.push(
                Op::IndexSelectGrad { axis },
                &[ids.id, dy.id],
                x.shape(),
                "",
            );
            vec![Some(dx), None]
        }
        // dx[.., v, ..] = Σ over t with index[.., t, ..] = v of dy[.., t, ..]; the index gets none
        Op::Gather { axis } => {
            let (x, index) = (input(0), input(1));
            let dx = g.push(Op::GatherGrad { axis }, &[index.id, dy.id], x.shape(), "");
            vec![Some(dx), None]
        }
        // da = dy where the mask is set, db = dy where it is not (each summed over its broadcast
        // axes); the mask gets none
        Op::Where => {
            let (mask, a, b) = (input(0), input(1), input(2));
            let zero = g.fill(0.0, &[]);
            let da = Tensor::where_(&mask, dy, &zero)?.sum_to(&a.shape())?;
            let db = Tensor::where_(&mask, &zero, dy)?.sum_to(&b.shape())?;
            vec![None, Some(da), Some(db)]
        }
        Op::RmsNormGradInput { .. }
        | Op::RmsNormGradGamma { .. }
        | Op::IndexSelectGrad { .. }
        | Op::GatherGrad { .. } => {
            return Err(ModelError::Graph(format!(
                "{} ({}) has no backward rule: second derivatives are not supported",
                node.op.name(),
                node.tag
            )))
        }
    })
}

/// The gradient of each parameter, or an error naming the parameters the loss does not reach.
pub fn param_gradients(
    grads: &Gradients,
    params: &[(VarId, NodeId, String)],
) -> Result<Vec<NodeId>> {
    let missing: Vec<&str> = params
        .iter()
        .filter(|(_, node, _)| grads.of(*node).is_none())
        .map(|(_, _, name)| name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(ModelError::Graph(format!(
            "parameters receive no gradient from the loss: {}",
            missing.join(", ")
        )));
    }
    Ok(params
        .iter()
        .map(|(_, node, _)| grads.of(*node).expect("checked"))
        .collect())
}
