//! The start-up canary's known-answer runs: one tiny launch per kernel variant the engine chooses
//! between (the matrix-product variants, the rows/tree kernels of softmax, reductions,
//! cross-entropy and the norms, convolution's rows per invocation, the attention forward's
//! layouts, the embedding gradient's kernels), each against an answer computed here in f64.
//!
//! Inputs are small whole numbers (or quarters) wherever the answer is then exact in f32 (products,
//! convolutions, sums): any difference is a wrong kernel. The others (softmax, norms) allow
//! 1e-4 · (1 + |answer|), far above rounding and far below any miscompiled arithmetic.

use crate::gpu::{Dispatch, Gpu};
use crate::kernels::attention::{attention_forward_with, AttentionShape, AttentionVariant};
use crate::kernels::conv::{
    conv2d_forward, conv2d_grad_input, conv2d_grad_weight, tm_variant, Conv2dShape,
};
use crate::kernels::embedding::{embedding_grad_with, EmbeddingGradKernel, EmbeddingShape};
use crate::kernels::loss::{cross_entropy_grad, CrossEntropyShape};
use crate::kernels::matmul::{matmul_with, MatmulShape, MatmulVariant};
use crate::kernels::norm::{
    layer_norm, layer_norm_grad_input, rms_norm, rms_norm_grad_input, LayerNormShape,
};
use crate::kernels::reduce::{reduce_with, ReduceKernel, ReduceOp, ReduceShape};
use crate::kernels::softmax::{softmax, softmax_grad, RowsShape};
use crate::{DeviceError, Result};

/// Relative tolerance of the answers that are not exact in f32.
const TOLERANCE: f64 = 1e-4;

/// Each variant the canary checks on `gpu`, with its verdict: `Ok`, or why it failed (an error,
/// or the first wrong value).
pub(crate) fn run_all(gpu: &Gpu) -> Vec<(String, std::result::Result<(), String>)> {
    let mut out = Vec::new();
    for variant in MatmulVariant::ALL.into_iter().filter(|v| v.runs_on(gpu)) {
        out.push((variant.entry().to_string(), matmul_case(gpu, variant)));
    }
    for tree in [false, true] {
        out.extend(softmax_cases(gpu, tree));
        out.push(cross_entropy_case(gpu, tree));
        out.extend(norm_cases(gpu, tree));
    }
    for kernel in ReduceKernel::ALL.into_iter().filter(|k| k.runs_on(gpu)) {
        out.push(reduce_case(gpu, kernel));
    }
    for rows in [3, 7, 11] {
        out.extend(conv_cases(gpu, rows));
    }
    for variant in AttentionVariant::ALL.into_iter().filter(|v| v.runs_on(gpu)) {
        let entry = variant.entry("attention_forward");
        out.push((entry.to_string(), attention_case(gpu, variant)));
    }
    for kernel in EmbeddingGradKernel::ALL
        .into_iter()
        .filter(|k| k.runs_on(gpu))
    {
        out.push((kernel.entry().to_string(), embedding_grad_case(gpu, kernel)));
    }
    out
}

/// 37 tokens over a table of 5 rows of 35 columns (past one 32-column block of the subgroup
/// kernel), every row repeated and one id invalid; whole-number gradients, so the answer is exact.
fn embedding_grad_case(gpu: &Gpu, kernel: EmbeddingGradKernel) -> std::result::Result<(), String> {
    let s = EmbeddingShape {
        tokens: 37,
        vocab: 5,
        dim: 35,
    };
    let mut ids: Vec<f32> = (0..s.tokens)
        .map(|t| ((t * 3 + 1) % s.vocab) as f32)
        .collect();
    ids[20] = s.vocab as f32;
    let dout = ints(s.tokens * s.dim, 8, 3);
    let mut want = vec![0.0f64; s.vocab * s.dim];
    for (t, &id) in ids
        .iter()
        .enumerate()
        .filter(|(_, &id)| (id as usize) < s.vocab)
    {
        for j in 0..s.dim {
            want[id as usize * s.dim + j] += dout[t * s.dim + j] as f64;
        }
    }
    check(
        gpu,
        kernel.entry(),
        &[&ids, &dout],
        &want,
        true,
        |b, out| embedding_grad_with(gpu, kernel, &b[0], &b[1], out, &s, "canary"),
    )
}

/// Causal attention over 11 rows of two heads of size 5 (blocks of 8 and of 64 rows both end
/// part-way), quarter-valued inputs; the answer is the softmax-weighted mean of v in f64.
fn attention_case(gpu: &Gpu, variant: AttentionVariant) -> std::result::Result<(), String> {
    let s = AttentionShape {
        batch: 1,
        seq: 11,
        heads: 2,
        head_dim: 5,
        causal: true,
        scale: 0.5,
        dropout: 0.0,
    };
    let quarter = |seed| -> Vec<f32> {
        ints(s.qkv_len(), seed, 4)
            .into_iter()
            .map(|v| v * 0.25)
            .collect()
    };
    let (q, k, v) = (quarter(1), quarter(2), quarter(3));
    // [B, T, H, D] with B = 1: element (t, h, d) at (t·H + h)·D + d.
    let at = |x: &[f32], t: usize, h: usize, d: usize| x[(t * s.heads + h) * s.head_dim + d] as f64;
    let mut want = vec![0.0f64; s.qkv_len()];
    for h in 0..s.heads {
        for i in 0..s.seq {
            let scores: Vec<f64> = (0..=i)
                .map(|j| {
                    let qk: f64 = (0..s.head_dim)
                        .map(|d| at(&q, i, h, d) * at(&k, j, h, d))
                        .sum();
                    s.scale as f64 * qk
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::MIN, f64::max);
            let w: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
            let total: f64 = w.iter().sum();
            for d in 0..s.head_dim {
                let mixed: f64 = (0..=i).map(|j| w[j] * at(&v, j, h, d)).sum();
                want[(i * s.heads + h) * s.head_dim + d] = mixed / total;
            }
        }
    }
    let entry = variant.entry("attention_forward");
    check(gpu, entry, &[&q, &k, &v], &want, false, |x, o| {
        let lse = gpu.buffer("canary lse", s.lse_len())?;
        let d = attention_forward_with(
            gpu, variant, &x[0], &x[1], &x[2], None, o, &lse, &s, "canary",
        );
        // The dispatch's bind group holds the buffer until it has run; nothing is allocated
        // from the pool before then.
        gpu.recycle(lse);
        d
    })
}

/// Small whole numbers in [−r, r], varied by position.
fn ints(len: usize, seed: usize, r: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * (2 * seed + 5) + seed) % (2 * r + 1)) as f32 - r as f32)
        .collect()
}

/// Uploads `inputs` and an output of `out_len` NaNs, prepares the launch `make` builds on them,
/// runs it and compares with `want` (exactly when `exact`). The variant the launcher chose must
/// be `variant`, so each case checks the kernel it names.
fn check(
    gpu: &Gpu,
    variant: &str,
    inputs: &[&[f32]],
    want: &[f64],
    exact: bool,
    make: impl FnOnce(&[wgpu::Buffer], &wgpu::Buffer) -> Result<Dispatch>,
) -> std::result::Result<(), String> {
    let err = |e: DeviceError| e.to_string();
    let bufs = inputs
        .iter()
        .map(|x| gpu.upload("canary input", x))
        .collect::<Result<Vec<_>>>()
        .map_err(err)?;
    let out = gpu.buffer("canary output", want.len()).map_err(err)?;
    gpu.write(&out, &vec![f32::NAN; want.len()]);
    let d = make(&bufs, &out).map_err(err)?;
    let chose = variant_of(&d);
    let got = gpu.run(&[&d], &[(&out, want.len())]).map_err(err);
    for b in bufs.into_iter().chain([out]) {
        gpu.recycle(b);
    }
    if chose != variant {
        return Err(format!("the launcher chose {chose} for {variant}'s case"));
    }
    let got = got?.pop().unwrap_or_default();
    let wrong = |(g, w): (&f32, &f64)| {
        let g = *g as f64;
        if exact {
            g != *w
        } else {
            // NaN is wrong too.
            g.is_nan() || (g - w).abs() > TOLERANCE * (1.0 + w.abs())
        }
    };
    match got.iter().zip(want).position(wrong) {
        None if got.len() == want.len() => Ok(()),
        None => Err(format!(
            "{} values read, {} expected",
            got.len(),
            want.len()
        )),
        Some(i) => Err(format!(
            "output {i} = {} where {} is right",
            got[i], want[i]
        )),
    }
}

/// The variant a dispatch runs, as the canary names it: the entry point, with `TM` for a
/// convolution ([`tm_variant`]).
fn variant_of(d: &Dispatch) -> String {
    let tm = d.constants.iter().find(|(name, _)| *name == "TM");
    match (d.shader, tm) {
        (crate::Shader::Conv2d, Some(&(_, tm))) => tm_variant(d.entry, tm as u32),
        _ => d.entry.to_string(),
    }
}

/// A batch of two odd products of small whole numbers.
fn matmul_case(gpu: &Gpu, variant: MatmulVariant) -> std::result::Result<(), String> {
    let s = MatmulShape::new(2, 5, 6, 7);
    let (a, b) = (ints(s.a_len(), 1, 3), ints(s.b_len(), 2, 2));
    let mut want = vec![0.0f64; s.c_len()];
    for (bi, w) in want.chunks_exact_mut(s.m * s.n).enumerate() {
        for i in 0..s.m {
            for j in 0..s.n {
                w[i * s.n + j] = (0..s.k)
                    .map(|p| {
                        a[bi * s.m * s.k + i * s.k + p] as f64
                            * b[bi * s.k * s.n + p * s.n + j] as f64
                    })
                    .sum();
            }
        }
    }
    check(gpu, variant.entry(), &[&a, &b], &want, true, |x, c| {
        matmul_with(gpu, variant, &x[0], &x[1], c, &s, "canary")
    })
}

/// Rows short enough for the rows kernel, or long enough for the tree kernel.
fn row_len(tree: bool) -> usize {
    if tree {
        300
    } else {
        7
    }
}

fn softmax_ref(x: &[f32], cols: usize) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|row| {
            let max = row.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / sum)
        })
        .collect()
}

fn softmax_cases(gpu: &Gpu, tree: bool) -> Vec<(String, std::result::Result<(), String>)> {
    let s = RowsShape {
        rows: 3,
        cols: row_len(tree),
    };
    let x: Vec<f32> = ints(s.rows * s.cols, 3, 5)
        .iter()
        .map(|v| v * 0.25)
        .collect();
    let y = softmax_ref(&x, s.cols);
    let suffix = if tree { "tree" } else { "rows" };
    let forward = format!("softmax_{suffix}");
    let f = check(gpu, &forward, &[&x], &y, false, |b, out| {
        softmax(gpu, &b[0], out, &s, "canary")
    });
    let y32: Vec<f32> = y.iter().map(|&v| v as f32).collect();
    let dy: Vec<f32> = ints(y.len(), 4, 3).iter().map(|v| v * 0.5).collect();
    let dx: Vec<f64> = y32
        .chunks(s.cols)
        .zip(dy.chunks(s.cols))
        .flat_map(|(y, dy)| {
            let dot: f64 = y.iter().zip(dy).map(|(&a, &b)| a as f64 * b as f64).sum();
            y.iter()
                .zip(dy)
                .map(move |(&a, &b)| a as f64 * (b as f64 - dot))
        })
        .collect();
    let backward = format!("softmax_grad_{suffix}");
    let g = check(gpu, &backward, &[&y32, &dy], &dx, false, |b, out| {
        softmax_grad(gpu, &b[0], &b[1], out, &s, "canary")
    });
    vec![(forward, f), (backward, g)]
}

fn reduce_case(gpu: &Gpu, kernel: ReduceKernel) -> (String, std::result::Result<(), String>) {
    // Long rows for the kernels that spread a row over several invocations, short ones for rows.
    let s = if kernel == ReduceKernel::Rows {
        ReduceShape {
            outer: 3,
            n: 5,
            inner: 4,
        }
    } else {
        ReduceShape {
            outer: 2,
            n: 1030,
            inner: 1,
        }
    };
    let x = ints(s.outer * s.n * s.inner, 5, 4);
    let mut want = vec![0.0f64; s.outer * s.inner];
    for o in 0..s.outer {
        for i in 0..s.n {
            for j in 0..s.inner {
                want[o * s.inner + j] += x[(o * s.n + i) * s.inner + j] as f64;
            }
        }
    }
    let variant = kernel.entry();
    let verdict = check(gpu, variant, &[&x], &want, true, |b, out| {
        reduce_with(gpu, kernel, &b[0], out, ReduceOp::Sum, &s, "canary")
    });
    (variant.to_string(), verdict)
}

fn cross_entropy_case(gpu: &Gpu, tree: bool) -> (String, std::result::Result<(), String>) {
    let s = CrossEntropyShape {
        rows: 3,
        classes: row_len(tree),
    };
    let logits: Vec<f32> = ints(s.rows * s.classes, 6, 4)
        .iter()
        .map(|v| v * 0.25)
        .collect();
    let targets: Vec<f32> = (0..s.rows)
        .map(|r| ((r * 5 + 2) % s.classes) as f32)
        .collect();
    let mut want = softmax_ref(&logits, s.classes);
    for (r, &t) in targets.iter().enumerate() {
        want[r * s.classes + t as usize] -= 1.0;
    }
    for w in &mut want {
        *w /= s.rows as f64;
    }
    let variant = if tree {
        "cross_entropy_grad_tree"
    } else {
        "cross_entropy_grad_rows"
    };
    let verdict = check(
        gpu,
        variant,
        &[&logits, &targets, &[1.0]],
        &want,
        false,
        |b, out| cross_entropy_grad(gpu, &b[0], &b[1], &b[2], out, &s, "canary"),
    );
    (variant.to_string(), verdict)
}

/// Layer norm and RMS norm, forward and input gradient, on rows of whole numbers.
fn norm_cases(gpu: &Gpu, tree: bool) -> Vec<(String, std::result::Result<(), String>)> {
    let s = LayerNormShape {
        rows: 3,
        dim: row_len(tree),
        eps: 1e-5,
    };
    let x = ints(s.rows * s.dim, 7, 5);
    let gamma: Vec<f32> = ints(s.dim, 8, 2).iter().map(|v| 1.0 + v * 0.25).collect();
    let beta: Vec<f32> = ints(s.dim, 9, 2).iter().map(|v| v * 0.5).collect();
    let dy: Vec<f32> = ints(s.rows * s.dim, 10, 3)
        .iter()
        .map(|v| v * 0.5)
        .collect();
    let (mut ln, mut ln_dx, mut rms, mut rms_dx) = (vec![], vec![], vec![], vec![]);
    for (row, dy) in x.chunks(s.dim).zip(dy.chunks(s.dim)) {
        let n = s.dim as f64;
        let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let g: Vec<f64> = dy
            .iter()
            .zip(&gamma)
            .map(|(&d, &g)| d as f64 * g as f64)
            .collect();
        let mean = row.iter().sum::<f64>() / n;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let rstd = 1.0 / (var + s.eps as f64).sqrt();
        let xhat: Vec<f64> = row.iter().map(|v| (v - mean) * rstd).collect();
        let (g_mean, gx_mean) = (
            g.iter().sum::<f64>() / n,
            g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / n,
        );
        for j in 0..s.dim {
            ln.push(xhat[j] * gamma[j] as f64 + beta[j] as f64);
            ln_dx.push(rstd * (g[j] - g_mean - xhat[j] * gx_mean));
        }
        let r = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / n + s.eps as f64).sqrt();
        let gx = g.iter().zip(&row).map(|(a, b)| a * b).sum::<f64>() / n;
        for j in 0..s.dim {
            rms.push(row[j] * r * gamma[j] as f64);
            rms_dx.push(r * (g[j] - row[j] * r * r * gx));
        }
    }
    let suffix = if tree { "tree" } else { "rows" };
    let names = [
        format!("layer_norm_{suffix}"),
        format!("layer_norm_grad_input_{suffix}"),
        format!("rms_norm_{suffix}"),
        format!("rms_norm_grad_input_{suffix}"),
    ];
    let verdicts = [
        check(
            gpu,
            &names[0],
            &[&x, &gamma, &beta],
            &ln,
            false,
            |b, out| layer_norm(gpu, &b[0], &b[1], &b[2], out, &s, "canary"),
        ),
        check(
            gpu,
            &names[1],
            &[&x, &gamma, &dy],
            &ln_dx,
            false,
            |b, out| layer_norm_grad_input(gpu, &b[0], &b[1], &b[2], out, &s, "canary"),
        ),
        check(gpu, &names[2], &[&x, &gamma], &rms, false, |b, out| {
            rms_norm(gpu, &b[0], &b[1], out, &s, "canary")
        }),
        check(
            gpu,
            &names[3],
            &[&x, &gamma, &dy],
            &rms_dx,
            false,
            |b, out| rms_norm_grad_input(gpu, &b[0], &b[1], &b[2], out, &s, "canary"),
        ),
    ];
    names.into_iter().zip(verdicts).collect()
}

/// The three convolution passes with `rows` GEMM rows (output channels for the forward and the
/// weight gradient, input channels for the input gradient), which picks their `TM`.
fn conv_cases(gpu: &Gpu, rows: usize) -> Vec<(String, std::result::Result<(), String>)> {
    let shape = |c_in, c_out| Conv2dShape {
        n: 2,
        c_in,
        h: 4,
        w: 5,
        c_out,
        kh: 3,
        kw: 3,
        stride: [1, 1],
        pad: [1, 1],
        dilation: [1, 1],
    };
    let mut out = Vec::new();
    for (pass, s) in [
        (0, shape(2, rows)),
        (1, shape(rows, 2)),
        (2, shape(2, rows)),
    ] {
        let entry = ["conv2d_forward", "conv2d_grad_input", "conv2d_grad_weight"][pass];
        let name = tm_variant(entry, expected_tm(rows));
        let Some([oh, ow]) = s.out_hw() else {
            out.push((
                name,
                Err(format!("the canary's convolution {s:?} does not fit")),
            ));
            continue;
        };
        let (x, w, dy) = (
            ints(s.x_len(), 11, 2),
            ints(s.w_len(), 12, 2),
            ints(s.y_len(), 13, 2),
        );
        let (mut y, mut dx, mut dw) = (
            vec![0.0f64; s.y_len()],
            vec![0.0f64; s.x_len()],
            vec![0.0f64; s.w_len()],
        );
        // Every (output position, tap) pair that reads the input: each pass sums over them.
        for n in 0..s.n {
            for o in 0..s.c_out {
                for (i, j) in (0..oh).flat_map(|i| (0..ow).map(move |j| (i, j))) {
                    let yi = ((n * s.c_out + o) * oh + i) * ow + j;
                    for c in 0..s.c_in {
                        for (a, b) in (0..s.kh).flat_map(|a| (0..s.kw).map(move |b| (a, b))) {
                            let (r, q) = (i + a, j + b);
                            if r < s.pad[0] || q < s.pad[1] {
                                continue;
                            }
                            let (r, q) = (r - s.pad[0], q - s.pad[1]);
                            if r >= s.h || q >= s.w {
                                continue;
                            }
                            let xi = ((n * s.c_in + c) * s.h + r) * s.w + q;
                            let wi = ((o * s.c_in + c) * s.kh + a) * s.kw + b;
                            y[yi] += x[xi] as f64 * w[wi] as f64;
                            dx[xi] += dy[yi] as f64 * w[wi] as f64;
                            dw[wi] += dy[yi] as f64 * x[xi] as f64;
                        }
                    }
                }
            }
        }
        let verdict = match pass {
            0 => check(gpu, &name, &[&x, &w], &y, true, |b, out| {
                conv2d_forward(gpu, &b[0], &b[1], out, &s, "canary")
            }),
            1 => check(gpu, &name, &[&dy, &w], &dx, true, |b, out| {
                conv2d_grad_input(gpu, &b[0], &b[1], out, &s, "canary")
            }),
            _ => check(gpu, &name, &[&x, &dy], &dw, true, |b, out| {
                conv2d_grad_weight(gpu, &b[0], &b[1], out, &s, "canary")
            }),
        };
        out.push((name, verdict));
    }
    out
}

/// The `TM` the canary's convolutions with `rows` GEMM rows are meant to check.
fn expected_tm(rows: usize) -> u32 {
    crate::kernels::conv::rows_per_invocation(rows)
}
