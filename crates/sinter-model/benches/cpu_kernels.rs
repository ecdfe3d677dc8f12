//! The CPU backend's memory-bound kernels (elementwise, reductions, norms, softmax, loss, Adam,
//! embedding) and its fused attention, timed at the char-transformer's shapes, with the bytes
//! each moves and the GB/s.
//!
//! `cargo bench -p sinter-model --no-default-features --bench cpu_kernels` runs all of them;
//! `CPU_KERNELS=gelu,adam` narrows the rows to names that contain one of the words. Compare
//! builds by alternating runs of their binaries: the machine's load swings absolute times.

use sinter_model::cpu;
use sinter_ops::attention::AttentionShape;
use sinter_ops::elementwise::{BinaryOp, UnaryOp};
use sinter_ops::embedding::EmbeddingShape;
use sinter_ops::loss::CrossEntropyShape;
use sinter_ops::norm::LayerNormShape;
use sinter_ops::optim::AdamConfig;
use sinter_ops::reduce::{ReduceOp, ReduceShape};
use sinter_ops::softmax::RowsShape;
use std::time::{Duration, Instant};

/// Each timing round runs about this long; the best of [`ROUNDS`] is reported, because
/// interference from other work on the machine only ever makes a round slower.
const ROUND: Duration = Duration::from_millis(100);
const ROUNDS: usize = 7;

/// The char-transformer's activations: batch 32 × context 64 tokens, width 128, MLP width 512.
const TOKENS: usize = 32 * 64;
const WIDTH: usize = 128;
const HIDDEN: usize = 512;
const VOCAB: usize = 65;

/// A deterministic spread of values in [lo, hi) (a Weyl sequence), so runs compare equal inputs.
fn values(len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len)
        .map(|i| lo + (hi - lo) * ((i as f64 * 0.618_033_988_749_895).fract() as f32))
        .collect()
}

/// Seconds per call: the best of [`ROUNDS`] rounds of as many calls as fit in [`ROUND`].
fn best_time(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    f();
    let once = start.elapsed().as_secs_f64();
    let calls = ((ROUND.as_secs_f64() / once.max(1e-7)) as usize).clamp(1, 5000);
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            (0..calls).for_each(|_| f());
            start.elapsed().as_secs_f64() / calls as f64
        })
        .fold(f64::INFINITY, f64::min)
}

struct Bench {
    only: Option<Vec<String>>,
}

impl Bench {
    /// Times `f` and prints µs per call and GB/s for the `floats` it reads and writes.
    fn time(&self, what: &str, floats: usize, f: impl FnMut()) {
        if let Some(words) = &self.only {
            if !words.iter().any(|w| what.contains(w.as_str())) {
                return;
            }
        }
        let t = best_time(f);
        let bytes = (floats * 4) as f64;
        println!(
            "{what:<44} {:>9.1} µs {:>7.1} GB/s",
            t * 1e6,
            bytes / t / 1e9
        );
    }
}

fn main() {
    let only = std::env::var("CPU_KERNELS")
        .ok()
        .map(|s| s.split(',').map(str::to_string).collect());
    let b = Bench { only };
    let n_hidden = TOKENS * HIDDEN;
    let n_act = TOKENS * WIDTH;

    let x = values(n_hidden, -4.0, 4.0);
    let dy = values(n_hidden, -1.0, 1.0);
    let mut y = vec![0f32; n_hidden];
    for (name, op) in [
        ("gelu", UnaryOp::Gelu),
        ("gelu_erf", UnaryOp::GeluErf),
        ("silu", UnaryOp::Silu),
        ("sigmoid", UnaryOp::Sigmoid),
        ("tanh", UnaryOp::Tanh),
        ("relu", UnaryOp::Relu),
        ("exp", UnaryOp::Exp),
    ] {
        b.time(&format!("{name} [2048,512]"), 2 * n_hidden, || {
            cpu::elementwise::unary(op, &x, &mut y)
        });
        b.time(&format!("{name}_grad [2048,512]"), 3 * n_hidden, || {
            cpu::elementwise::unary_grad(op, &x, &dy, &mut y)
        });
    }

    let (a, c) = (values(n_act, -1.0, 1.0), values(n_act, -2.0, 2.0));
    let mut out = vec![0f32; n_act];
    let act = [TOKENS, WIDTH];
    b.time("add [2048,128]+[2048,128]", 3 * n_act, || {
        cpu::elementwise::binary(BinaryOp::Add, &a, &act, &c, &act, &mut out)
    });
    b.time("mul [2048,128]*[2048,128]", 3 * n_act, || {
        cpu::elementwise::binary(BinaryOp::Mul, &a, &act, &c, &act, &mut out)
    });
    b.time("add [2048,128]+[128]", 2 * n_act, || {
        cpu::elementwise::binary(BinaryOp::Add, &a, &act, &c[..WIDTH], &[WIDTH], &mut out)
    });

    let mut sums = vec![0f32; HIDDEN];
    let shape = ReduceShape {
        outer: 1,
        n: TOKENS,
        inner: HIDDEN,
    };
    b.time("sum [2048,512]→[512]", n_hidden, || {
        cpu::reduce::reduce(ReduceOp::Sum, &x, &mut sums, &shape)
    });
    let mut row_sums = vec![0f32; TOKENS];
    let shape = ReduceShape {
        outer: TOKENS,
        n: HIDDEN,
        inner: 1,
    };
    b.time("sum [2048,512]→[2048]", n_hidden, || {
        cpu::reduce::reduce(ReduceOp::Sum, &x, &mut row_sums, &shape)
    });

    let ln = LayerNormShape {
        rows: TOKENS,
        dim: WIDTH,
        eps: 1e-5,
    };
    let (gamma, beta) = (values(WIDTH, 0.5, 1.5), values(WIDTH, -0.1, 0.1));
    let dy_act = values(n_act, -1.0, 1.0);
    let mut dgamma = vec![0f32; WIDTH];
    b.time("layer_norm [2048,128]", 2 * n_act, || {
        cpu::norm::layer_norm(&a, &gamma, &beta, &mut out, &ln)
    });
    b.time("layer_norm_grad_input [2048,128]", 3 * n_act, || {
        cpu::norm::layer_norm_grad_input(&a, &gamma, &dy_act, &mut out, &ln)
    });
    b.time("layer_norm_grad_gamma [2048,128]", 2 * n_act, || {
        cpu::norm::layer_norm_grad_gamma(&a, &dy_act, &mut dgamma, &ln)
    });

    let rows = RowsShape {
        rows: TOKENS,
        cols: 256,
    };
    let (sx, sdy) = (
        values(TOKENS * 256, -5.0, 5.0),
        values(TOKENS * 256, -1.0, 1.0),
    );
    let mut sy = vec![0f32; TOKENS * 256];
    let mut sdx = vec![0f32; TOKENS * 256];
    b.time("softmax [2048,256]", 2 * TOKENS * 256, || {
        cpu::softmax::softmax(&sx, &mut sy, &rows)
    });
    b.time("softmax_grad [2048,256]", 3 * TOKENS * 256, || {
        cpu::softmax::softmax_grad(&sy, &sdy, &mut sdx, &rows)
    });

    let ce = CrossEntropyShape {
        rows: TOKENS,
        classes: VOCAB,
    };
    let logits = values(TOKENS * VOCAB, -6.0, 6.0);
    let targets: Vec<f32> = (0..TOKENS).map(|i| (i * 7 % VOCAB) as f32).collect();
    let mut dlogits = vec![0f32; TOKENS * VOCAB];
    let mut loss = 0.0;
    b.time("cross_entropy [2048,65]", TOKENS * VOCAB, || {
        loss += cpu::loss::cross_entropy(&logits, &targets, &ce)
    });
    b.time("cross_entropy_grad [2048,65]", 2 * TOKENS * VOCAB, || {
        cpu::loss::cross_entropy_grad(&logits, &targets, 1.0, &mut dlogits, &ce)
    });
    assert!(loss.is_finite());

    let emb = EmbeddingShape {
        tokens: TOKENS,
        vocab: VOCAB,
        dim: WIDTH,
    };
    let table = values(VOCAB * WIDTH, -1.0, 1.0);
    let mut dtable = vec![0f32; VOCAB * WIDTH];
    b.time("embedding [2048]→[2048,128]", n_act, || {
        cpu::embedding::embedding(&targets, &table, &mut out, &emb)
    });
    b.time("embedding_grad [2048,128]→[65,128]", n_act, || {
        cpu::embedding::embedding_grad(&targets, &dy_act, &mut dtable, &emb)
    });

    let cfg = AdamConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        decoupled: true,
    };
    for len in [WIDTH * WIDTH, HIDDEN * WIDTH] {
        let mut p = values(len, -0.1, 0.1);
        let g = values(len, -0.01, 0.01);
        let (mut m, mut v) = (vec![0f32; len], vec![0f32; len]);
        b.time(&format!("adamw [{}]", len), 7 * len, || {
            cpu::optim::adam(&mut p, &g, &mut m, &mut v, 1.0, 1e-3, 0.1, 0.001, &cfg)
        });
    }

    // The char-transformer's causal attention: 4 heads of 32 over 64 positions.
    let att = AttentionShape {
        batch: TOKENS / 64,
        seq: 64,
        heads: 4,
        head_dim: WIDTH / 4,
        causal: true,
        scale: 1.0 / (WIDTH as f32 / 4.0).sqrt(),
        dropout: 0.0,
    };
    let (q, k, v) = (
        values(n_act, -1.0, 1.0),
        values(n_act, -0.5, 1.5),
        values(n_act, -2.0, 2.0),
    );
    let (mut o, mut lse) = (vec![0f32; n_act], vec![0f32; att.lse_len()]);
    b.time("attention [32,64,4,32] causal", 4 * n_act, || {
        cpu::attention::attention_forward(&q, &k, &v, None, &mut o, &mut lse, &att)
    });
    let d_o = values(n_act, -1.0, 1.0);
    let (mut dq, mut dk, mut dv) = (vec![0f32; n_act], vec![0f32; n_act], vec![0f32; n_act]);
    b.time("attention_grad [32,64,4,32] causal", 8 * n_act, || {
        cpu::attention::attention_backward(
            &q, &k, &v, &o, &d_o, &lse, &mut dq, &mut dk, &mut dv, &att,
        )
    });
}
