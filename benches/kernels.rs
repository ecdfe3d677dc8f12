//! Kernel-family benchmark for everything but the matrix product (benches/matmul.rs): convolution,
//! attention, elementwise, reductions, pooling, softmax, layer norm, cross-entropy and Adam, each
//! WGSL variant checked against the CPU reference before it is timed, next to the CPU kernel.
//!
//! `SINTER_DEVICE=software cargo bench --bench kernels` runs the WGSL on lavapipe;
//! `KERNELS=pool,reduce` narrows it to families whose name contains one of the words.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sinter::sinter_device::kernels::attention::{self as attn, AttentionShape};
use sinter::sinter_device::kernels::conv::{self, Conv2dShape};
use sinter::sinter_device::kernels::elementwise::{self as ew, BinaryOp, UnaryOp};
use sinter::sinter_device::kernels::loss::{self, CrossEntropyShape};
use sinter::sinter_device::kernels::norm::{self, LayerNormShape};
use sinter::sinter_device::kernels::optim::{self, AdamConfig};
use sinter::sinter_device::kernels::pool::{self, Pool2dShape};
use sinter::sinter_device::kernels::reduce::{self, ReduceOp, ReduceShape};
use sinter::sinter_device::kernels::softmax::{self, RowsShape};
use sinter::sinter_device::{testing::test_gpu, wgpu, Dispatch, Gpu};
use sinter::sinter_model::cpu;
use std::time::{Duration, Instant};

/// Each timing round runs about this long; the best of three rounds is reported, because
/// interference from other work on the machine only ever makes a round slower.
const ROUND: Duration = Duration::from_millis(300);

/// A kernel's output on the adapter, the CPU's answer for it, and the tolerance
/// `|got − want| ≤ atol + rtol·|want|` it must meet before it is timed.
struct Expect<'a> {
    buffer: &'a wgpu::Buffer,
    want: &'a [f32],
    atol: f64,
    rtol: f64,
}

/// A family's benchmark: its rows for every kernel and variant.
type Family = fn(&mut Bench);

struct Bench {
    gpu: Option<&'static Gpu>,
    rng: ChaCha8Rng,
    families: Option<Vec<String>>,
}

impl Bench {
    fn wants(&self, family: &str) -> bool {
        self.families
            .as_ref()
            .is_none_or(|f| f.iter().any(|w| family.contains(w.as_str())))
    }

    fn random(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| self.rng.random_range(lo..hi)).collect()
    }

    fn upload(&self, data: &[f32]) -> wgpu::Buffer {
        self.gpu
            .expect("an adapter")
            .upload("bench", data)
            .expect("upload")
    }

    fn output(&self, len: usize) -> wgpu::Buffer {
        self.gpu
            .expect("an adapter")
            .buffer("bench", len)
            .expect("buffer")
    }

    /// Times the CPU kernel `f` and prints its row.
    fn cpu(&self, what: &str, bytes: u64, flops: u64, mut f: impl FnMut()) {
        let t = best_time(|calls| (0..calls).for_each(|_| f()));
        row(what, "cpu", t, bytes, flops, None);
    }

    /// Checks `dispatches` once against `expect`, then times them repeated inside one submit.
    fn gpu(&self, what: &str, dispatches: &[&Dispatch], expect: &[Expect]) {
        let gpu = self.gpu.expect("an adapter");
        let reads: Vec<_> = expect.iter().map(|e| (e.buffer, e.want.len())).collect();
        let got = gpu.run(dispatches, &reads).expect("bench submit");
        let mut worst = 0.0f64;
        for (g, e) in got.iter().zip(expect) {
            for (&g, &w) in g.iter().zip(e.want) {
                let err = (g as f64 - w as f64).abs();
                worst = worst.max(err);
                assert!(
                    err <= e.atol + e.rtol * (w as f64).abs(),
                    "{what}: WGSL {g} against CPU {w} (atol {}, rtol {}): not timed",
                    e.atol,
                    e.rtol
                );
            }
        }
        let t = best_time(|calls| {
            let list: Vec<&Dispatch> = (0..calls)
                .flat_map(|_| dispatches.iter().copied())
                .collect();
            gpu.run(&list, &[(expect[0].buffer, 1)])
                .expect("bench submit");
        });
        let bytes = dispatches.iter().map(|d| d.bytes).sum();
        let flops = dispatches.iter().map(|d| d.flops).sum();
        let label = if gpu.report.class.is_hardware() {
            "gpu"
        } else {
            "software"
        };
        row(what, label, t, bytes, flops, Some(worst));
    }
}

/// Seconds per call: the best of three rounds of as many calls as fit in [`ROUND`].
fn best_time(mut f: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    f(1);
    let once = start.elapsed().as_secs_f64();
    let calls = ((ROUND.as_secs_f64() / once.max(1e-7)) as usize).clamp(1, 2000);
    (0..3)
        .map(|_| {
            let start = Instant::now();
            f(calls);
            start.elapsed().as_secs_f64() / calls as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn row(what: &str, device: &str, seconds: f64, bytes: u64, flops: u64, err: Option<f64>) {
    println!(
        "{what:<44} {device:<9} {:>9.3} {:>8.2} {:>8.2} {:>10}",
        seconds * 1e3,
        bytes as f64 / seconds / 1e9,
        flops as f64 / seconds / 1e9,
        err.map_or("-".to_string(), |e| format!("{e:.1e}"))
    );
}

/// Floats of the default CNN's first activation at batch 64: [64, 32, 28, 28].
const ACT: [usize; 4] = [64, 32, 28, 28];

fn convolution(b: &mut Bench) {
    // The default CNN's conv2 at batch 64: 32→64 channels, 14×14, 3×3, padding 1.
    let s = Conv2dShape {
        n: 64,
        c_in: 32,
        h: 14,
        w: 14,
        c_out: 64,
        kh: 3,
        kw: 3,
        stride: [1, 1],
        pad: [1, 1],
        dilation: [1, 1],
    };
    let (x, w, dy) = (
        b.random(s.x_len(), -1.0, 1.0),
        b.random(s.w_len(), -1.0, 1.0),
        b.random(s.y_len(), -1.0, 1.0),
    );
    let (mut y, mut dx, mut dw) = (
        vec![0f32; s.y_len()],
        vec![0f32; s.x_len()],
        vec![0f32; s.w_len()],
    );
    cpu::conv::conv2d_forward(&x, &w, &mut y, &s);
    cpu::conv::conv2d_grad_input(&dy, &w, &mut dx, &s);
    cpu::conv::conv2d_grad_weight(&x, &dy, &mut dw, &s);
    let (want_y, want_dx, want_dw) = (y.clone(), dx.clone(), dw.clone());
    let name = |pass: &str| format!("conv2d {pass} N64 32→64 14² 3×3");
    let io = |a: usize, b: usize, c: usize| 4 * (a + b + c) as u64;
    let bytes = io(s.x_len(), s.w_len(), s.y_len());
    b.cpu(&name("forward"), bytes, s.flops(), || {
        cpu::conv::conv2d_forward(&x, &w, &mut y, &s)
    });
    b.cpu(&name("grad input"), bytes, s.flops(), || {
        cpu::conv::conv2d_grad_input(&dy, &w, &mut dx, &s)
    });
    b.cpu(&name("grad weight"), bytes, s.flops(), || {
        cpu::conv::conv2d_grad_weight(&x, &dy, &mut dw, &s)
    });
    if let Some(gpu) = b.gpu {
        let (xb, wb, dyb) = (b.upload(&x), b.upload(&w), b.upload(&dy));
        let (yb, dxb, dwb) = (
            b.output(s.y_len()),
            b.output(s.x_len()),
            b.output(s.w_len()),
        );
        // Sums of k products of O(1) terms in another order: error grows like √k·ε.
        let tol = |buffer, want, k: usize| Expect {
            buffer,
            want,
            atol: 4e-5 * (k as f64).sqrt(),
            rtol: 4e-5 * (k as f64).sqrt(),
        };
        let d = conv::conv2d_forward(gpu, &xb, &wb, &yb, &s, "bench").expect("launch");
        b.gpu(&name("forward"), &[&d], &[tol(&yb, &want_y, 32 * 9)]);
        let d = conv::conv2d_grad_input(gpu, &dyb, &wb, &dxb, &s, "bench").expect("launch");
        b.gpu(&name("grad input"), &[&d], &[tol(&dxb, &want_dx, 64 * 9)]);
        let d = conv::conv2d_grad_weight(gpu, &xb, &dyb, &dwb, &s, "bench").expect("launch");
        b.gpu(
            &name("grad weight"),
            &[&d],
            &[tol(&dwb, &want_dw, 64 * 196)],
        );
    }
}

fn attention(b: &mut Bench) {
    // The char-transformer's attention: 32 windows of 64 characters, 4 heads of 32, causal.
    let s = AttentionShape {
        batch: 32,
        seq: 64,
        heads: 4,
        head_dim: 32,
        causal: true,
        scale: 1.0 / (32f32).sqrt(),
        dropout: 0.0,
    };
    let (n, rows) = (s.qkv_len(), s.lse_len());
    let (q, k, v, d_o) = (
        b.random(n, -1.0, 1.0),
        b.random(n, -1.0, 1.0),
        b.random(n, -1.0, 1.0),
        b.random(n, -1.0, 1.0),
    );
    let (mut o, mut lse) = (vec![0f32; n], vec![0f32; rows]);
    cpu::attention::attention_forward(&q, &k, &v, None, &mut o, &mut lse, &s);
    let (mut dq, mut dk, mut dv) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    cpu::attention::attention_backward(&q, &k, &v, &o, &d_o, &lse, &mut dq, &mut dk, &mut dv, &s);
    let (want_o, want_lse) = (o.clone(), lse.clone());
    let (want_dq, want_dk, want_dv) = (dq.clone(), dk.clone(), dv.clone());
    let name = |pass: &str| format!("attention {pass} B32 T64 H4 D32 causal");
    // FLOPs as the WGSL launches count them; the CPU rows use the same counts.
    let d = s.head_dim as u64;
    let fwd_flops = s.pairs() * (4 * d + 4);
    let bwd_flops = rows as u64 * 2 * d + s.pairs() * (14 * d + 8);
    b.cpu(&name("forward"), 16 * n as u64, fwd_flops, || {
        cpu::attention::attention_forward(&q, &k, &v, None, &mut o, &mut lse, &s)
    });
    b.cpu(&name("backward"), 32 * n as u64, bwd_flops, || {
        cpu::attention::attention_backward(
            &q, &k, &v, &want_o, &d_o, &want_lse, &mut dq, &mut dk, &mut dv, &s,
        )
    });
    if let Some(gpu) = b.gpu {
        let (qb, kb, vb, dob) = (b.upload(&q), b.upload(&k), b.upload(&v), b.upload(&d_o));
        let (ob, lseb) = (b.output(n), b.output(rows));
        // Online softmax over T = 64 keys in another order than the CPU's.
        let tol = |buffer, want| Expect {
            buffer,
            want,
            atol: 1e-5,
            rtol: 1e-4,
        };
        let fwd = attn::attention_forward(gpu, &qb, &kb, &vb, None, &ob, &lseb, &s, "bench")
            .expect("launch");
        b.gpu(
            &name("forward"),
            &[&fwd],
            &[tol(&ob, &want_o), tol(&lseb, &want_lse)],
        );
        // The backward reads the forward's o and lse, which the check above left in place.
        let (delta, dqb, dkb, dvb) = (b.output(rows), b.output(n), b.output(n), b.output(n));
        let bwd = attn::attention_backward(
            gpu, &qb, &kb, &vb, &ob, &dob, &lseb, &delta, &dqb, &dkb, &dvb, &s, "bench",
        )
        .expect("launch");
        let list: Vec<&Dispatch> = bwd.iter().collect();
        let expect = [
            tol(&dqb, &want_dq),
            tol(&dkb, &want_dk),
            tol(&dvb, &want_dv),
        ];
        b.gpu(&name("backward"), &list, &expect);
    }
}

fn elementwise(b: &mut Bench) {
    let len: usize = ACT.iter().product();
    let x = b.random(len, -2.0, 2.0);
    let dy = b.random(len, -1.0, 1.0);
    let bias = b.random(32, -1.0, 1.0);
    let mut y = vec![0f32; len];
    for op in [UnaryOp::Relu, UnaryOp::Gelu] {
        let what = format!("{} {:?}", op.name(), ACT);
        cpu::elementwise::unary(op, &x, &mut y);
        let want = y.clone();
        b.cpu(&what, 8 * len as u64, len as u64, || {
            cpu::elementwise::unary(op, &x, &mut y)
        });
        if let Some(gpu) = b.gpu {
            let (xb, yb) = (b.upload(&x), b.output(len));
            let d = ew::unary(gpu, &xb, &yb, op, len, "bench").expect("launch");
            // Gelu's tanh differs from the CPU's in the last bits.
            let expect = Expect {
                buffer: &yb,
                want: &want,
                atol: 2e-6,
                rtol: 2e-5,
            };
            b.gpu(&what, &[&d], &[expect]);
        }
    }
    let what = format!("relu_grad {:?}", ACT);
    cpu::elementwise::unary_grad(UnaryOp::Relu, &x, &dy, &mut y);
    let want = y.clone();
    b.cpu(&what, 12 * len as u64, len as u64, || {
        cpu::elementwise::unary_grad(UnaryOp::Relu, &x, &dy, &mut y)
    });
    if let Some(gpu) = b.gpu {
        let (xb, dyb, dxb) = (b.upload(&x), b.upload(&dy), b.output(len));
        let d = ew::unary_grad(gpu, &xb, &dyb, &dxb, UnaryOp::Relu, len, "bench").expect("launch");
        let expect = Expect {
            buffer: &dxb,
            want: &want,
            atol: 0.0,
            rtol: 0.0,
        };
        b.gpu(&what, &[&d], &[expect]);
    }
    let what = format!("add {:?} + [32, 1, 1] (bias)", ACT);
    let bias_shape = [32, 1, 1];
    cpu::elementwise::binary(BinaryOp::Add, &x, &ACT, &bias, &bias_shape, &mut y);
    let want = y.clone();
    b.cpu(&what, 8 * len as u64, len as u64, || {
        cpu::elementwise::binary(BinaryOp::Add, &x, &ACT, &bias, &bias_shape, &mut y)
    });
    if let Some(gpu) = b.gpu {
        let (xb, bb, yb) = (b.upload(&x), b.upload(&bias), b.output(len));
        let d = ew::binary(
            gpu,
            &xb,
            &ACT,
            &bb,
            &bias_shape,
            &yb,
            BinaryOp::Add,
            "bench",
        )
        .expect("launch");
        let expect = Expect {
            buffer: &yb,
            want: &want,
            atol: 0.0,
            rtol: 0.0,
        };
        b.gpu(&what, &[&d], &[expect]);
    }
}

fn reductions(b: &mut Bench) {
    // A bias gradient over the batch (many short columns: one invocation per output) and long
    // rows (a workgroup tree per output).
    for (shape, axis) in [(vec![64, 25088], 0), (vec![128, 3136], 1)] {
        let s = ReduceShape::along(&shape, axis);
        let x = b.random(s.input_len(), -1.0, 1.0);
        let mut y = vec![0f32; s.output_len()];
        let variant = if s.uses_tree() { "tree" } else { "rows" };
        let what = format!("reduce_sum {shape:?} axis {axis} ({variant})");
        cpu::reduce::reduce(ReduceOp::Sum, &x, &mut y, &s);
        let want = y.clone();
        let bytes = 4 * (s.input_len() + s.output_len()) as u64;
        b.cpu(&what, bytes, s.input_len() as u64, || {
            cpu::reduce::reduce(ReduceOp::Sum, &x, &mut y, &s)
        });
        if let Some(gpu) = b.gpu {
            let (xb, yb) = (b.upload(&x), b.output(s.output_len()));
            let d = reduce::reduce(gpu, &xb, &yb, ReduceOp::Sum, &s, "bench").expect("launch");
            // Summation order differs: error grows like √n·ε for O(1) terms.
            let expect = Expect {
                buffer: &yb,
                want: &want,
                atol: 1e-5 * (s.n as f64).sqrt(),
                rtol: 1e-5,
            };
            b.gpu(&what, &[&d], &[expect]);
        }
    }
}

fn pooling(b: &mut Bench) {
    let [n, c, h, w] = ACT;
    let square = Pool2dShape {
        n,
        c,
        h,
        w,
        kh: 2,
        kw: 2,
        stride: [2, 2],
        pad: [0, 0],
    };
    // Overlapping windows take the gather form of the gradient; disjoint ones the per-window form.
    let overlapping = Pool2dShape {
        kh: 3,
        kw: 3,
        pad: [1, 1],
        ..square
    };
    for (s, label) in [(square, "2×2 s2"), (overlapping, "3×3 s2 p1")] {
        let x = b.random(s.x_len(), -1.0, 1.0);
        let dy = b.random(s.y_len(), -1.0, 1.0);
        let (mut y, mut dx) = (vec![0f32; s.y_len()], vec![0f32; s.x_len()]);
        cpu::pool::max_pool2d(&x, &mut y, &s);
        cpu::pool::max_pool2d_grad(&x, &dy, &mut dx, &s);
        let (want_y, want_dx) = (y.clone(), dx.clone());
        let fwd = format!("max_pool2d {label} {ACT:?}");
        let grad = format!("max_pool2d_grad {label} {ACT:?}");
        let (xy, xdx) = (
            4 * (s.x_len() + s.y_len()) as u64,
            4 * (2 * s.x_len() + s.y_len()) as u64,
        );
        let taps = (s.y_len() * s.kh * s.kw) as u64;
        b.cpu(&fwd, xy, taps, || cpu::pool::max_pool2d(&x, &mut y, &s));
        b.cpu(&grad, xdx, taps, || {
            cpu::pool::max_pool2d_grad(&x, &dy, &mut dx, &s)
        });
        if let Some(gpu) = b.gpu {
            let (xb, dyb) = (b.upload(&x), b.upload(&dy));
            let (yb, dxb) = (b.output(s.y_len()), b.output(s.x_len()));
            let d = pool::max_pool2d(gpu, &xb, &yb, &s, "bench").expect("launch");
            let exact = |buffer, want| Expect {
                buffer,
                want,
                atol: 0.0,
                rtol: 0.0,
            };
            b.gpu(&fwd, &[&d], &[exact(&yb, &want_y)]);
            let d = pool::max_pool2d_grad(gpu, &xb, &dyb, &dxb, &s, "bench").expect("launch");
            // Overlapping windows add several dy into one element, in another order.
            let expect = Expect {
                atol: 1e-6,
                rtol: 1e-6,
                ..exact(&dxb, &want_dx)
            };
            b.gpu(&grad, &[&d], &[expect]);
        }
    }
}

fn softmax_and_norm(b: &mut Bench) {
    // Attention-sized rows (T = 64) and one long row per workgroup (vocabulary-sized).
    for s in [
        RowsShape {
            rows: 8192,
            cols: 64,
        },
        RowsShape {
            rows: 256,
            cols: 8192,
        },
    ] {
        let x = b.random(s.rows * s.cols, -4.0, 4.0);
        let mut y = vec![0f32; x.len()];
        let variant = if s.uses_tree() { "tree" } else { "rows" };
        let what = format!("softmax [{}, {}] ({variant})", s.rows, s.cols);
        cpu::softmax::softmax(&x, &mut y, &s);
        let want = y.clone();
        let bytes = 8 * x.len() as u64;
        b.cpu(&what, bytes, 5 * x.len() as u64, || {
            cpu::softmax::softmax(&x, &mut y, &s)
        });
        if let Some(gpu) = b.gpu {
            let (xb, yb) = (b.upload(&x), b.output(x.len()));
            let d = softmax::softmax(gpu, &xb, &yb, &s, "bench").expect("launch");
            let expect = Expect {
                buffer: &yb,
                want: &want,
                atol: 1e-7,
                rtol: 1e-5,
            };
            b.gpu(&what, &[&d], &[expect]);
        }
    }
    let s = LayerNormShape {
        rows: 2048,
        dim: 128,
        eps: 1e-5,
    };
    let len = s.rows * s.dim;
    let (x, dy) = (b.random(len, -2.0, 2.0), b.random(len, -1.0, 1.0));
    let (gamma, beta) = (b.random(s.dim, 0.5, 1.5), b.random(s.dim, -0.5, 0.5));
    let (mut y, mut dx, mut dg) = (vec![0f32; len], vec![0f32; len], vec![0f32; s.dim]);
    cpu::norm::layer_norm(&x, &gamma, &beta, &mut y, &s);
    cpu::norm::layer_norm_grad_input(&x, &gamma, &dy, &mut dx, &s);
    cpu::norm::layer_norm_grad_gamma(&x, &dy, &mut dg, &s);
    let (want_y, want_dx, want_dg) = (y.clone(), dx.clone(), dg.clone());
    let name = |pass: &str| format!("layer_norm {pass} [{}, {}]", s.rows, s.dim);
    let lenb = 4 * len as u64;
    b.cpu(&name("forward"), 2 * lenb, 8 * len as u64, || {
        cpu::norm::layer_norm(&x, &gamma, &beta, &mut y, &s)
    });
    b.cpu(&name("grad input"), 3 * lenb, 18 * len as u64, || {
        cpu::norm::layer_norm_grad_input(&x, &gamma, &dy, &mut dx, &s)
    });
    b.cpu(&name("grad gamma"), 2 * lenb, 4 * len as u64, || {
        cpu::norm::layer_norm_grad_gamma(&x, &dy, &mut dg, &s)
    });
    if let Some(gpu) = b.gpu {
        let (xb, dyb, gb, bb) = (
            b.upload(&x),
            b.upload(&dy),
            b.upload(&gamma),
            b.upload(&beta),
        );
        let (yb, dxb, dgb) = (b.output(len), b.output(len), b.output(s.dim));
        let tol = |buffer, want, n: usize| Expect {
            buffer,
            want,
            atol: 1e-5 * (n as f64).sqrt(),
            rtol: 1e-4,
        };
        let d = norm::layer_norm(gpu, &xb, &gb, &bb, &yb, &s, "bench").expect("launch");
        b.gpu(&name("forward"), &[&d], &[tol(&yb, &want_y, s.dim)]);
        let d =
            norm::layer_norm_grad_input(gpu, &xb, &gb, &dyb, &dxb, &s, "bench").expect("launch");
        b.gpu(&name("grad input"), &[&d], &[tol(&dxb, &want_dx, s.dim)]);
        let d = norm::layer_norm_grad_gamma(gpu, &xb, &dyb, &dgb, &s, "bench").expect("launch");
        let d: Vec<_> = d.iter().collect();
        b.gpu(&name("grad gamma"), &d, &[tol(&dgb, &want_dg, s.rows)]);
    }
}

fn loss_and_optimizer(b: &mut Bench) {
    // A character model's logits: 32 windows of 64 characters over a 65-letter vocabulary.
    let s = CrossEntropyShape {
        rows: 2048,
        classes: 65,
    };
    let logits = b.random(s.rows * s.classes, -3.0, 3.0);
    let targets: Vec<f32> = (0..s.rows)
        .map(|_| b.rng.random_range(0..s.classes) as f32)
        .collect();
    let mut dlogits = vec![0f32; logits.len()];
    cpu::loss::cross_entropy_grad(&logits, &targets, 1.0, &mut dlogits, &s);
    let want = dlogits.clone();
    let what = format!("cross_entropy_grad [{}, {}]", s.rows, s.classes);
    let bytes = 8 * logits.len() as u64;
    b.cpu(&what, bytes, 8 * logits.len() as u64, || {
        cpu::loss::cross_entropy_grad(&logits, &targets, 1.0, &mut dlogits, &s)
    });
    if let Some(gpu) = b.gpu {
        let (lb, tb, one) = (b.upload(&logits), b.upload(&targets), b.upload(&[1.0f32]));
        let db = b.output(logits.len());
        let d = loss::cross_entropy_grad(gpu, &lb, &tb, &one, &db, &s, "bench").expect("launch");
        let expect = Expect {
            buffer: &db,
            want: &want,
            atol: 1e-8,
            rtol: 1e-5,
        };
        b.gpu(&what, &[&d], &[expect]);
    }

    // The default CNN has 421,642 parameters; a step updates them all.
    let len = 421_642;
    let cfg = AdamConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
    };
    let (p0, grad) = (b.random(len, -0.1, 0.1), b.random(len, -0.01, 0.01));
    let (m0, v0) = (b.random(len, -1e-3, 1e-3), b.random(len, 0.0, 1e-6));
    let hyper = optim::adam_hyper(1e-3, &cfg, 10);
    let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
    cpu::optim::adam(
        &mut p, &grad, &mut m, &mut v, 1.0, hyper[0], hyper[1], hyper[2], &cfg,
    );
    let want = p.clone();
    let what = format!("adam [{len}]");
    b.cpu(&what, 28 * len as u64, 18 * len as u64, || {
        cpu::optim::adam(
            &mut p, &grad, &mut m, &mut v, 1.0, hyper[0], hyper[1], hyper[2], &cfg,
        )
    });
    if let Some(gpu) = b.gpu {
        let (gb, pb, mb, vb) = (b.upload(&grad), b.upload(&p0), b.upload(&m0), b.upload(&v0));
        let (scale, hb) = (b.upload(&[1.0f32]), b.upload(&hyper));
        let d =
            optim::adam(gpu, &gb, &scale, &hb, &pb, &mb, &vb, len, &cfg, "bench").expect("launch");
        let expect = Expect {
            buffer: &pb,
            want: &want,
            atol: 1e-7,
            rtol: 1e-5,
        };
        b.gpu(&what, &[&d], &[expect]);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let gpu = test_gpu();
    match gpu {
        Some(g) => println!(
            "adapter: {} ({:?}, {})",
            g.report.name, g.report.backend, g.report.class
        ),
        None => println!("no adapter: CPU kernels only (SINTER_DEVICE=software adds lavapipe)"),
    }
    println!(
        "{:<44} {:<9} {:>9} {:>8} {:>8} {:>10}",
        "kernel", "device", "ms/call", "GB/s", "GFLOP/s", "max|err|"
    );
    let mut b = Bench {
        gpu,
        rng: ChaCha8Rng::seed_from_u64(11),
        families: std::env::var("KERNELS")
            .ok()
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect()),
    };
    let families: [(&str, Family); 7] = [
        ("conv", convolution),
        ("attention", attention),
        ("elementwise", elementwise),
        ("reduce", reductions),
        ("pool", pooling),
        ("softmax norm", softmax_and_norm),
        ("loss optim", loss_and_optimizer),
    ];
    for (name, run) in families {
        if b.wants(name) {
            run(&mut b);
        }
    }
}
