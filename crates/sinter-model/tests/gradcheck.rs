//! Every backward rule against central finite differences, in f64 on the CPU backend.
//! Each case builds `loss = Σ f(inputs) · r` for fixed random `r` and compares every input's gradient.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sinter_model::backend::CpuBackend;
use sinter_model::graph::{ConvConfig, GraphBuilder, PoolConfig, Tensor};
use sinter_model::nn::Mode;
use sinter_model::nn_seq::{CellKind, Embedding, Recurrent, RmsNorm, TransformerBlock};
use sinter_model::plan::PlanOptions;
use sinter_model::resnet::BasicBlock;
use sinter_model::{backward, Init, Result, StepScalars, VarId, VarKind, VarStore};
use sinter_ops::elementwise::{BinaryOp, UnaryOp};
use sinter_ops::reduce::ReduceOp;

/// Finite-difference step and tolerance: in f64 the central difference is accurate to about
/// h² · |f'''| + ε/h ≈ 1e-10 here, so 1e-6 absolute + 1e-6 relative leaves a wide margin
/// while still catching any wrong rule (which is off by O(1)).
const H: f64 = 1e-6;
const ATOL: f64 = 1e-6;
const RTOL: f64 = 1e-6;
/// At most this many elements of each input are perturbed (all of them for small inputs).
const MAX_PROBES: usize = 40;

struct Case {
    name: &'static str,
    shapes: Vec<Vec<usize>>,
    /// Inputs are drawn from this range (kept away from kinks and poles where a rule is undefined).
    range: (f64, f64),
    /// Inputs that are not differentiated (e.g. class indices), drawn by `fixed`.
    fixed: Vec<(usize, Vec<f64>)>,
}

/// Checks the case with the planner's fusion off and on (the CPU backend trains fused).
fn check(case: Case, f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    for fuse in [false, true] {
        check_planned(&case, &f, PlanOptions { fuse });
    }
}

fn check_planned(case: &Case, f: impl Fn(&[Tensor]) -> Result<Tensor>, options: PlanOptions) {
    let mut rng = ChaCha8Rng::seed_from_u64(case.name.len() as u64 * 7919);
    let g = GraphBuilder::new();
    let inputs: Vec<Tensor> = case
        .shapes
        .iter()
        .enumerate()
        .map(|(k, s)| g.input(&format!("x{k}"), s))
        .collect();
    let out =
        f(&inputs).unwrap_or_else(|e| panic!("{}: building the graph failed: {e}", case.name));
    let r = g.input("r", &out.shape());
    let loss = out.mul(&r).unwrap().sum_all();
    let diff: Vec<usize> = (0..inputs.len())
        .filter(|k| !case.fixed.iter().any(|(i, _)| i == k))
        .collect();
    let wrt: Vec<usize> = diff.iter().map(|&k| inputs[k].id).collect();
    let grads = backward(&loss, &wrt).unwrap();
    let mut outputs = vec![loss.id];
    for &k in &diff {
        let gid = grads
            .of(inputs[k].id)
            .unwrap_or_else(|| panic!("{}: input {k} got no gradient", case.name));
        outputs.push(gid);
    }
    let graph = g.finish();
    let mut cpu = CpuBackend::<f64>::new();
    let plan = sinter_model::Plan::with_options(&graph, &outputs, options).unwrap();
    let mut prog = cpu.compile(plan);

    let mut values: Vec<Vec<f64>> = case
        .shapes
        .iter()
        .enumerate()
        .map(|(k, s)| match case.fixed.iter().find(|(i, _)| *i == k) {
            Some((_, v)) => v.clone(),
            None => (0..s.iter().product())
                .map(|_| rng.random_range(case.range.0..case.range.1))
                .collect(),
        })
        .collect();
    let r_values: Vec<f64> = (0..out.numel())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mut run = |values: &[Vec<f64>]| {
        let mut feeds: Vec<&[f64]> = values.iter().map(|v| v.as_slice()).collect();
        feeds.push(&r_values);
        cpu.run_f64(&mut prog, &feeds, &StepScalars::default())
            .unwrap()
    };
    let analytic = run(&values);
    for (slot, &k) in diff.iter().enumerate() {
        let n = values[k].len();
        let probes: Vec<usize> = if n <= MAX_PROBES {
            (0..n).collect()
        } else {
            (0..MAX_PROBES).map(|_| rng.random_range(0..n)).collect()
        };
        for j in probes {
            let orig = values[k][j];
            values[k][j] = orig + H;
            let plus = run(&values)[0][0];
            values[k][j] = orig - H;
            let minus = run(&values)[0][0];
            values[k][j] = orig;
            let numeric = (plus - minus) / (2.0 * H);
            let got = analytic[slot + 1][j];
            assert!(
                (got - numeric).abs() <= ATOL + RTOL * numeric.abs(),
                "{}: d loss / d x{k}[{j}] = {got} by autodiff but {numeric} by finite differences",
                case.name
            );
        }
    }
}

fn case(name: &'static str, shapes: &[&[usize]]) -> Case {
    Case {
        name,
        shapes: shapes.iter().map(|s| s.to_vec()).collect(),
        range: (-2.0, 2.0),
        fixed: vec![],
    }
}

#[test]
fn unary_rules() {
    for op in [
        UnaryOp::Relu,
        UnaryOp::Gelu,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Exp,
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Square,
        UnaryOp::Silu,
        UnaryOp::GeluErf,
    ] {
        check(case(op.name(), &[&[3, 7]]), |x| Ok(x[0].unary(op)));
    }
    for op in [UnaryOp::Log, UnaryOp::Sqrt, UnaryOp::Recip, UnaryOp::Rsqrt] {
        let mut c = case(op.name(), &[&[3, 7]]);
        c.range = (0.5, 3.0);
        check(c, |x| Ok(x[0].unary(op)));
    }
    check(case("affine", &[&[5]]), |x| Ok(x[0].affine(-1.5, 0.25)));
}

#[test]
fn binary_rules_with_broadcasting() {
    for op in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Max,
        BinaryOp::Min,
    ] {
        check(case(op.name(), &[&[4, 3, 5], &[3, 1]]), |x| {
            x[0].binary(op, &x[1])
        });
        check(case(op.name(), &[&[1, 6], &[5, 1]]), |x| {
            x[0].binary(op, &x[1])
        });
    }
    let mut c = case("div", &[&[4, 3], &[3]]);
    c.range = (0.5, 2.0);
    check(c, |x| x[0].div(&x[1]));
    // pow: both gradients (the base positive, where ln a exists), with broadcasting, and a
    // constant exponent (powf) on a base of both signs, where only the base has a gradient.
    let mut c = case("pow", &[&[4, 3], &[3]]);
    c.range = (0.5, 2.0);
    check(c, |x| x[0].pow(&x[1]));
    check(case("powf 3", &[&[4, 3]]), |x| Ok(x[0].powf(3.0)));
    let mut c = case("powf -1.5", &[&[4, 3]]);
    c.range = (0.5, 2.0);
    check(c, |x| Ok(x[0].powf(-1.5)));
    check(case("broadcast_to", &[&[3, 1]]), |x| {
        x[0].broadcast_to(&[2, 3, 4])
    });
}

#[test]
fn reduce_and_reshape_rules() {
    for keep in [false, true] {
        for axis in 0..3 {
            check(case("sum", &[&[3, 4, 5]]), |x| {
                x[0].reduce(ReduceOp::Sum, axis, keep)
            });
            check(case("mean", &[&[3, 4, 5]]), |x| {
                x[0].reduce(ReduceOp::Mean, axis, keep)
            });
            check(case("max", &[&[3, 4, 5]]), |x| {
                x[0].reduce(ReduceOp::Max, axis, keep)
            });
        }
    }
    check(case("reshape", &[&[3, 4]]), |x| {
        Ok(x[0].reshape(&[2, 6])?.square())
    });
    check(case("sum_all", &[&[3, 4]]), |x| Ok(x[0].square().sum_all()));
    check(case("mse", &[&[4, 3], &[4, 3]]), |x| x[0].mse(&x[1]));
}

#[test]
fn layout_rules() {
    for perm in [[0, 2, 1, 3], [3, 1, 0, 2], [1, 0, 3, 2]] {
        check(case("permute", &[&[2, 3, 4, 5]]), |x| {
            Ok(x[0].permute(&perm)?.square())
        });
    }
    check(case("transpose", &[&[3, 5]]), |x| {
        Ok(x[0].transpose(0, 1)?.square())
    });
    for axis in 0..3 {
        // a slice at the start, in the middle and at the end of the axis
        for (start, len) in [(0, 2), (1, 2), (2, 3)] {
            check(case("narrow", &[&[5, 5, 5]]), |x| {
                Ok(x[0].narrow(axis, start, len)?.square())
            });
        }
        let mut shapes = vec![vec![2, 3, 4]; 3];
        for (k, s) in shapes.iter_mut().enumerate() {
            s[axis] = k + 1;
        }
        let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        check(case("concat", &refs), |x| {
            Ok(Tensor::concat(&[&x[0], &x[1].square(), &x[2]], axis)?.square())
        });
    }
    // q, k, v split from one fused projection and recombined
    check(case("split", &[&[2, 3, 12]]), |x| {
        let qkv = x[0].split(2, &[4, 4, 4])?;
        qkv[0].mul(&qkv[1])?.add(&qkv[2].square())
    });
}

#[test]
fn matmul_rules() {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a: &[usize] = if ta { &[5, 3] } else { &[3, 5] };
        let b: &[usize] = if tb { &[4, 5] } else { &[5, 4] };
        check(case("matmul", &[a, b]), |x| x[0].matmul_t(&x[1], ta, tb));
    }
    check(case("batched matmul", &[&[2, 3, 5], &[2, 5, 4]]), |x| {
        x[0].matmul(&x[1])
    });
    check(
        case("broadcast matmul (rank-2 b)", &[&[2, 3, 5], &[5, 4]]),
        |x| x[0].matmul(&x[1]),
    );
    check(
        case("broadcast matmul (rank-2 a, bᵀ)", &[&[3, 5], &[2, 4, 5]]),
        |x| x[0].matmul_t(&x[1], false, true),
    );
}

#[test]
fn convolution_rules() {
    let configs = [
        ConvConfig::padded(1),
        ConvConfig {
            stride: [2, 2],
            pad: [1, 0],
            dilation: [1, 1],
        },
        ConvConfig {
            stride: [1, 2],
            pad: [2, 2],
            dilation: [2, 1],
        },
        ConvConfig::padded(0),
    ];
    for c in configs {
        check(case("conv2d", &[&[2, 3, 7, 6], &[4, 3, 3, 2]]), |x| {
            x[0].conv2d(&x[1], c)
        });
    }
}

/// The chains the planner fuses (conv + bias + ReLU, then max-pooling whose gradient takes the
/// ReLU mask; linear + bias with and without ReLU; bias before other activations), checked as
/// `check` does: unfused and fused.
#[test]
fn fused_chain_rules() {
    check(
        case(
            "conv + bias + relu + max-pool",
            &[&[2, 3, 8, 6], &[4, 3, 3, 3], &[4, 1, 1]],
        ),
        |x| {
            x[0].conv2d(&x[1], ConvConfig::padded(1))?
                .add(&x[2])?
                .relu()
                .max_pool2d(PoolConfig::square(2))
        },
    );
    check(
        case("conv + bias", &[&[2, 3, 5, 5], &[4, 3, 3, 3], &[4, 1, 1]]),
        |x| x[0].conv2d(&x[1], ConvConfig::padded(0))?.add(&x[2]),
    );
    check(
        case("linear + bias + relu", &[&[5, 7], &[6, 7], &[6]]),
        |x| Ok(x[0].matmul_t(&x[1], false, true)?.add(&x[2])?.relu()),
    );
    check(case("bias + linear", &[&[5, 7], &[7, 6], &[6]]), |x| {
        x[2].add(&x[0].matmul(&x[1])?)
    });
    // Activations whose gradient reads the pre-activation: only the bias folds in training.
    check(
        case(
            "conv + bias + tanh",
            &[&[2, 3, 5, 5], &[4, 3, 3, 3], &[4, 1, 1]],
        ),
        |x| {
            Ok(x[0]
                .conv2d(&x[1], ConvConfig::padded(1))?
                .add(&x[2])?
                .tanh())
        },
    );
    check(
        case("linear + bias + gelu", &[&[5, 7], &[7, 6], &[6]]),
        |x| Ok(x[0].matmul(&x[1])?.add(&x[2])?.gelu()),
    );
    check(
        case("linear + bias + silu", &[&[5, 7], &[7, 6], &[6]]),
        |x| Ok(x[0].matmul(&x[1])?.add(&x[2])?.silu()),
    );
}

#[test]
fn pooling_rules() {
    let configs = [
        PoolConfig::square(2),
        PoolConfig {
            kernel: [3, 3],
            stride: [2, 2],
            pad: [1, 1],
        },
        PoolConfig {
            kernel: [2, 3],
            stride: [1, 2],
            pad: [0, 1],
        },
    ];
    for c in configs {
        check(case("max_pool2d", &[&[2, 3, 7, 6]]), |x| x[0].max_pool2d(c));
        check(case("avg_pool2d", &[&[2, 3, 7, 6]]), |x| x[0].avg_pool2d(c));
    }
}

#[test]
fn cross_entropy_rule() {
    let mut c = case("cross_entropy", &[&[6, 5], &[6]]);
    c.range = (-3.0, 3.0);
    c.fixed = vec![(1, vec![0.0, 4.0, 2.0, 2.0, 1.0, 3.0])];
    check(c, |x| x[0].cross_entropy(&x[1]));
}

#[test]
fn a_value_used_twice_accumulates_its_gradients() {
    // y = x·x + tanh(x): dy/dx = 2x + 1 − tanh²(x), reached along three uses of x.
    check(case("x*x + tanh x", &[&[7]]), |x| {
        x[0].mul(&x[0])?.add(&x[0].tanh())
    });
    // A linear layer on a shared weight applied twice.
    check(case("shared weight", &[&[3, 4], &[4, 4]]), |x| {
        let h = x[0].matmul_t(&x[1], false, true)?.tanh();
        h.matmul_t(&x[1], false, true)
    });
}

#[test]
fn non_scalar_loss_is_an_error() {
    let g = GraphBuilder::new();
    let x = g.input("x", &[3]);
    let err = backward(&x.relu(), &[x.id]).unwrap_err().to_string();
    assert!(err.contains("scalar") && err.contains("[3]"), "{err}");
}

#[test]
fn a_parameter_the_loss_does_not_reach_is_reported_by_name() {
    use sinter_model::backward::param_gradients;
    use sinter_model::VarId;
    let g = GraphBuilder::new();
    let used = g.var(VarId(0), &[3], "used");
    let unused = g.var(VarId(1), &[3], "unused");
    let _ = unused.relu();
    let loss = used.square().sum_all();
    let grads = backward(&loss, &[]).unwrap();
    let params = vec![
        (VarId(0), used.id, "fc.weight".to_string()),
        (VarId(1), unused.id, "fc.bias".to_string()),
    ];
    let err = param_gradients(&grads, &params).unwrap_err().to_string();
    assert!(
        err.contains("fc.bias") && !err.contains("fc.weight"),
        "{err}"
    );
}

#[test]
fn softmax_and_layer_norm_rules() {
    check(case("softmax", &[&[4, 7]]), |x| x[0].softmax());
    check(case("log_softmax", &[&[4, 7]]), |x| x[0].log_softmax());
    check(case("layer_norm", &[&[2, 3, 8], &[8], &[8]]), |x| {
        x[0].layer_norm(&x[1], &x[2], 1e-5)
    });
}

#[test]
fn embedding_rule_with_repeated_tokens() {
    let mut c = case("embedding", &[&[2, 5], &[6, 3]]);
    // Token 4 repeats three times and token 0 twice: their gradients must add up.
    c.fixed = vec![(0, vec![4.0, 0.0, 4.0, 1.0, 5.0, 0.0, 4.0, 2.0, 3.0, 1.0])];
    check(c, |x| x[0].embedding(&x[1]));
}

#[test]
fn attention_rule() {
    for causal in [false, true] {
        check(
            case("attention", &[&[2, 5, 2, 3], &[2, 5, 2, 3], &[2, 5, 2, 3]]),
            |x| x[0].attention(&x[1], &x[2], causal),
        );
    }
    // The same tensor as query, key and value: three gradient paths accumulate.
    check(case("self attention", &[&[1, 4, 1, 3]]), |x| {
        x[0].attention(&x[0], &x[0], true)
    });
    // Dropped attention weights: the masks of these two row seeds stay fixed while the inputs
    // move, so the loss is smooth and the rule (dV = (P∘Z)ᵀ·dO, dS = P∘(Z∘dO·Vᵀ − Δ)) is checked.
    for causal in [false, true] {
        let q = [2, 6, 2, 3];
        let mut c = case("attention dropout", &[&q, &q, &q, &[2]]);
        c.fixed = vec![(3, vec![12345.0, 16_000_000.0])];
        check(c, |x| {
            x[0].attention_with_seeds(&x[1], &x[2], causal, 0.4, &x[3])
        });
    }
}

/// Checks the gradients of every parameter of a module, perturbing the variables themselves.
fn check_module(
    name: &str,
    build: impl Fn(
        &mut VarStore,
        &mut Init,
        &mut ChaCha8Rng,
    ) -> Box<dyn Fn(&GraphBuilder, &VarStore) -> Result<Tensor>>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let mut init = Init::new(17);
    let mut store = VarStore::new();
    let forward = build(&mut store, &mut init, &mut rng);
    let g = GraphBuilder::new();
    let out = forward(&g, &store).unwrap();
    let r: Vec<f64> = (0..out.numel())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let rt = g.input("r", &out.shape());
    let loss = out.mul(&rt).unwrap().sum_all();
    let grads = backward(&loss, &[]).unwrap();
    let params: Vec<(VarId, usize)> = store
        .ids(VarKind::Param)
        .into_iter()
        .map(|id| {
            let leaf = (0..g.len())
                .find(|&i| g.node(i).op == sinter_model::Op::Var(id))
                .expect("used");
            (
                id,
                grads
                    .of(leaf)
                    .unwrap_or_else(|| panic!("{name}: {} has no gradient", store.get(id).name)),
            )
        })
        .collect();
    let mut outputs = vec![loss.id];
    outputs.extend(params.iter().map(|p| p.1));
    let mut cpu = CpuBackend::<f64>::new();
    cpu.load_vars(&store);
    let mut prog = cpu.compile(sinter_model::Plan::new(&g.finish(), &outputs).unwrap());
    let analytic = cpu
        .run_f64(&mut prog, &[&r], &StepScalars::default())
        .unwrap();
    for (slot, &(id, _)) in params.iter().enumerate() {
        let n = store.get(id).numel();
        for _ in 0..6 {
            let j = rng.random_range(0..n);
            let orig = cpu.vars[id.0][j];
            cpu.vars[id.0][j] = orig + H;
            let plus = cpu
                .run_f64(&mut prog, &[&r], &StepScalars::default())
                .unwrap()[0][0];
            cpu.vars[id.0][j] = orig - H;
            let minus = cpu
                .run_f64(&mut prog, &[&r], &StepScalars::default())
                .unwrap()[0][0];
            cpu.vars[id.0][j] = orig;
            let numeric = (plus - minus) / (2.0 * H);
            let got = analytic[slot + 1][j];
            assert!(
                (got - numeric).abs() <= ATOL + RTOL * numeric.abs(),
                "{name}: d loss / d {}[{j}] = {got} by autodiff but {numeric} by finite differences",
                store.get(id).name
            );
        }
    }
}

#[test]
fn recurrent_cells_through_time() {
    for kind in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        check_module(&format!("{kind:?} over 4 steps"), |store, init, rng| {
            let cell = Recurrent::new(store, "rnn", kind, 3, 5, init);
            let xs: Vec<Vec<f64>> = (0..4)
                .map(|_| (0..6).map(|_| rng.random_range(-1.0..1.0)).collect())
                .collect();
            Box::new(move |g: &GraphBuilder, store: &VarStore| {
                let inputs: Vec<Tensor> = xs
                    .iter()
                    .map(|x| {
                        let shape = [2, 3];
                        let t = g.fill(0.0, &shape);
                        // Constant step inputs: x_t = 0 + c_t, with c_t a fixed pattern.
                        let c = g.fill(x[0], &shape);
                        t.add(&c).unwrap().affine(1.0, x[1])
                    })
                    .collect();
                let hs = cell.forward(store, &inputs)?;
                // Every step's state reaches the loss, as every step's logits do in a language model.
                let mut total = hs[0].clone();
                for h in &hs[1..] {
                    total = total.add(h)?;
                }
                Ok(total)
            })
        });
    }
}

#[test]
fn transformer_block_parameters() {
    check_module("transformer block", |store, init, _rng| {
        let block = TransformerBlock::new(store, "block", 8, 2, init);
        let embed = Embedding::new(store, "tok", 5, 8, 1.0, init);
        Box::new(move |g: &GraphBuilder, store: &VarStore| {
            let ids = g.fill(0.0, &[2, 3]).affine(1.0, 3.0);
            let x = embed.forward(store, &ids)?;
            block.forward(store, &x)
        })
    });
}

#[test]
fn rms_norm_rule() {
    check(case("rms_norm", &[&[2, 3, 8], &[8]]), |x| {
        x[0].rms_norm(&x[1], 1e-5)
    });
    // PyTorch's default eps on rows of 3 drawn away from zero, so 1/rms stays moderate.
    let mut c = case("rms_norm default eps", &[&[4, 3], &[3]]);
    c.range = (0.5, 2.0);
    check(c, |x| x[0].rms_norm(&x[1], f32::EPSILON));
}

#[test]
fn rms_norm_module_parameters() {
    check_module("rms norm", |store, init, _rng| {
        let embed = Embedding::new(store, "tok", 5, 8, 1.0, init);
        let norm = RmsNorm::new(store, "norm", 8);
        Box::new(move |g: &GraphBuilder, store: &VarStore| {
            let ids = g.fill(0.0, &[2, 3]).affine(1.0, 3.0);
            norm.forward(store, &embed.forward(store, &ids)?)
        })
    });
}

/// `len` ids in `[0, n)` with repeats, from a fixed pattern.
fn ids(len: usize, n: usize) -> Vec<f64> {
    (0..len).map(|i| ((i * 7 + i / 3) % n) as f64).collect()
}

#[test]
fn index_select_rule_with_repeated_ids_on_every_axis() {
    // x: [3, 4, 2]; along axis 1, id 2 appears three times, 0 twice, 3 never.
    let mut c = case("index_select axis 1", &[&[3, 4, 2], &[6]]);
    c.fixed = vec![(1, vec![2.0, 0.0, 2.0, 2.0, 0.0, 1.0])];
    check(c, |x| x[0].index_select(1, &x[1]));
    let mut c = case("index_select axis 0", &[&[3, 4, 2], &[5]]);
    c.fixed = vec![(1, ids(5, 3))];
    check(c, |x| x[0].index_select(0, &x[1]));
    let mut c = case("index_select axis 2", &[&[3, 4, 2], &[3]]);
    c.fixed = vec![(1, vec![1.0, 1.0, 0.0])];
    check(c, |x| x[0].index_select(2, &x[1]));
}

#[test]
fn gather_rule_with_repeated_ids_on_every_axis() {
    let mut c = case("gather axis 1", &[&[3, 4, 2], &[3, 5, 2]]);
    c.fixed = vec![(1, ids(30, 4))];
    check(c, |x| x[0].gather(1, &x[1]));
    let mut c = case("gather axis 0", &[&[3, 4, 2], &[2, 4, 2]]);
    c.fixed = vec![(1, ids(16, 3))];
    check(c, |x| x[0].gather(0, &x[1]));
    let mut c = case("gather axis 2", &[&[3, 4, 2], &[3, 4, 3]]);
    c.fixed = vec![(1, ids(36, 2))];
    check(c, |x| x[0].gather(2, &x[1]));
}

#[test]
fn where_and_masked_fill_rules_with_broadcasting() {
    // mask [4, 1] against a [3] and b [2, 4, 3]: a's gradient is summed over two axes. Any
    // nonzero mask value selects a.
    let mut c = case("where", &[&[4, 1], &[3], &[2, 4, 3]]);
    c.fixed = vec![(0, vec![0.5, 0.0, -2.0, 0.0])];
    check(c, |x| Tensor::where_(&x[0], &x[1], &x[2]));
    // A scalar b collects the gradient of every unmasked element.
    let mut c = case("where scalar b", &[&[4, 3], &[4, 3], &[]]);
    c.fixed = vec![(0, (0..12).map(|i| (i % 3 == 1) as u8 as f64).collect())];
    check(c, |x| Tensor::where_(&x[0], &x[1], &x[2]));
    let mut c = case("masked_fill", &[&[4, 3], &[3]]);
    c.fixed = vec![(1, vec![0.0, 1.0, 0.0])];
    check(c, |x| x[0].masked_fill(&x[1], -5.0));
}

#[test]
fn batch_norm_rule() {
    // Odd sizes, and the smallest channel (two values), where x̂ is ±1 and dx is all statistics.
    check(case("batch_norm2d", &[&[3, 5, 7, 9], &[5], &[5]]), |x| {
        Ok(x[0].batch_norm2d(&x[1], &x[2], 1e-5)?.0)
    });
    check(
        case("batch_norm2d two values", &[&[2, 3, 1, 1], &[3], &[3]]),
        |x| Ok(x[0].batch_norm2d(&x[1], &x[2], 1e-5)?.0),
    );
}

#[test]
fn residual_block_with_batch_norms_in_training() {
    check_module("basic block with projection", |store, init, rng| {
        let block = BasicBlock::new(store, "layer2.0", 3, 4, 2, init);
        let shape = [2, 3, 5, 5];
        let x: Vec<f32> = (0..150).map(|_| rng.random_range(-1.0..1.0)).collect();
        let x = store.add("x", &shape, VarKind::Param, x);
        Box::new(move |g: &GraphBuilder, store: &VarStore| {
            let x = g.var(x, &shape, "x");
            block.forward(store, &x, Mode::Train)
        })
    });
}
