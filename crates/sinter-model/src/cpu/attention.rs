//! CPU attention: fused scaled-dot-product attention forward and backward, the same math as
//! `shaders/attention.wgsl` (attention-weight dropout included, with the same masks). One (batch,
//! head) per rayon task, scores in tiles of 64 queries (small products through `gemm`), never T×T.

use super::matmul::{gemm_strided, Strided};
use super::simd;
use super::Real;
use rayon::prelude::*;
use sinter_ops::attention::AttentionShape;

/// Panics (naming the op and shape) on a zero dim or a slice shorter than the shape needs.
fn check(op: &str, s: &AttentionShape, slices: &[(&str, usize, usize)]) {
    assert!(
        s.batch > 0 && s.seq > 0 && s.heads > 0 && s.head_dim > 0,
        "{op}: {s}: every dim must be at least 1"
    );
    for &(what, got, need) in slices {
        assert!(
            got >= need,
            "{op}: {s}: slice {what} holds {got} values but the shape needs {need}"
        );
    }
}

/// Σ a·b with eight independent partial sums, so the loop vectorizes.
#[inline(always)]
fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: T = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(&x, &y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for e in 0..8 {
            acc[e] += x[e] * y[e];
        }
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

/// Queries per tile: each task multiplies a [TILE, keys] block of scores at a time.
const TILE: usize = 64;

/// Rows `from..from + rows` of head `h` of batch item `b` of a [B, T, H, D] tensor, as a
/// [rows, D] matrix (transposed: [D, rows]).
fn head_rows<'a, T>(
    x: &'a [T],
    s: &AttentionShape,
    b: usize,
    h: usize,
    from: usize,
    transposed: bool,
) -> Strided<'a, T> {
    let (row_stride, col_stride) = (s.heads * s.head_dim, 1);
    let data = &x[row(s, b, from, h)..];
    if transposed {
        Strided {
            data,
            row_stride: col_stride,
            col_stride: row_stride,
        }
    } else {
        Strided {
            data,
            row_stride,
            col_stride,
        }
    }
}

/// A row-major [rows, cols] block as a matrix (transposed: [cols, rows]).
fn block<T>(x: &[T], cols: usize, transposed: bool) -> Strided<'_, T> {
    if transposed {
        Strided {
            data: x,
            row_stride: 1,
            col_stride: cols,
        }
    } else {
        Strided {
            data: x,
            row_stride: cols,
            col_stride: 1,
        }
    }
}

/// Where row t of head h of batch item b starts in a [B, T, H, D] tensor.
#[inline(always)]
fn row(s: &AttentionShape, b: usize, t: usize, h: usize) -> usize {
    ((b * s.seq + t) * s.heads + h) * s.head_dim
}

/// Keys query i sees: all, or j ≤ i when causal.
#[inline(always)]
fn keys_seen(s: &AttentionShape, i: usize) -> usize {
    if s.causal {
        i + 1
    } else {
        s.seq
    }
}

/// The dropout key of head `h` of batch row `b`, whose seed is behind the lse rows; `None`
/// without dropout.
fn head_key<T: Real>(s: &AttentionShape, lse: &[T], b: usize, h: usize) -> Option<u32> {
    s.has_dropout()
        .then(|| AttentionShape::head_key(lse[s.rows() + b].f64() as u32, h))
}

/// Multiplies each weight of query `i` in `row` (keys 0, 1, …) by 0 if dropout drops it, or by
/// 1/(1 − p) if it keeps it.
#[inline(always)]
fn drop_row<T: Real>(s: &AttentionShape, key: u32, i: usize, row: &mut [T]) {
    // The same rule as AttentionShape::keeps, its threshold taken once per row.
    let (keep, threshold) = (T::of(s.keep_scale() as f64), s.drop_threshold());
    for (j, x) in row.iter_mut().enumerate() {
        *x = if s.pair_hash(key, i, j) >= threshold {
            *x * keep
        } else {
            T::zero()
        };
    }
}

/// Copies per-(batch, head) blocks [T, D] (in b-major, h-minor order) into a [B, T, H, D] tensor.
fn scatter_heads<'a, T: Real>(
    s: &AttentionShape,
    blocks: impl Iterator<Item = &'a Vec<T>>,
    out: &mut [T],
) {
    let d = s.head_dim;
    for (bh, block) in blocks.enumerate() {
        let (b, h) = (bh / s.heads, bh % s.heads);
        for (t, src) in block.chunks_exact(d).enumerate() {
            let at = row(s, b, t, h);
            out[at..at + d].copy_from_slice(src);
        }
    }
}

/// o = softmax(scale·q·kᵀ, causal-masked) · v per batch item and head; lse = log Σ_j exp of each
/// query's scaled scores. With dropout, `seeds` holds a seed per batch row, the weights are
/// dropped as [`AttentionShape::keeps`] says (o_i = Σ_j p_ij z_ij v_j), and the seeds are copied
/// behind the lse rows for the backward.
// q, k, v, o: [B, T, H, D]; lse: [B, H, T] (+ [B] seeds); seeds: [B]
pub fn attention_forward<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    seeds: Option<&[T]>,
    o: &mut [T],
    lse: &mut [T],
    shape: &AttentionShape,
) {
    let s = shape;
    let (n, nl) = (s.qkv_len(), s.lse_len());
    check(
        "attention_forward",
        s,
        &[
            ("q", q.len(), n),
            ("k", k.len(), n),
            ("v", v.len(), n),
            ("o", o.len(), n),
            ("lse", lse.len(), nl),
        ],
    );
    let nl = s.rows();
    if s.has_dropout() {
        let seeds = seeds.expect("attention_forward: dropout needs the row seeds");
        lse[nl..nl + s.batch].copy_from_slice(&seeds[..s.batch]);
    }
    let keys: Vec<Option<u32>> = (0..s.batch * s.heads)
        .map(|bh| head_key(s, lse, bh / s.heads, bh % s.heads))
        .collect();
    let (t_len, d) = (s.seq, s.head_dim);
    let scale = T::of(s.scale as f64);
    // lse is [B, H, T]: one contiguous chunk per (batch, head), written in place; o's rows of a
    // head are interleaved with other heads, so each task fills a [T, D] block scattered after.
    // Scores come TILE queries at a time as [rows, keys] products, never T×T.
    let blocks: Vec<Vec<T>> = lse[..nl]
        .par_chunks_mut(t_len)
        .enumerate()
        .map(|(bh, lse_bh)| {
            let (b, h) = (bh / s.heads, bh % s.heads);
            let key = keys[bh];
            let mut out = vec![T::zero(); t_len * d];
            let mut p = vec![T::zero(); TILE.min(t_len) * t_len];
            for from in (0..t_len).step_by(TILE) {
                let rows = TILE.min(t_len - from);
                let keys = keys_seen(s, from + rows - 1);
                let p = &mut p[..rows * keys];
                gemm_strided(
                    rows,
                    keys,
                    d,
                    head_rows(q, s, b, h, from, false),
                    head_rows(k, s, b, h, 0, true),
                    p,
                    scale,
                    false,
                );
                // The softmax of each row as separate passes (max, exp, sum, scale) in the wide
                // registers: a running sum beside the exp would keep the loop scalar.
                simd::vectorized(
                    #[inline(always)]
                    || {
                        for (r, pr) in p.chunks_exact_mut(keys).enumerate() {
                            let i = from + r;
                            let seen = keys_seen(s, i);
                            let m = simd::max(&pr[..seen]);
                            pr[..seen]
                                .iter_mut()
                                .for_each(|x| *x = (*x - m).exp_nonpositive());
                            let l = simd::sum(&pr[..seen]);
                            let inv = T::one() / l;
                            pr[..seen].iter_mut().for_each(|x| *x *= inv);
                            pr[seen..].iter_mut().for_each(|x| *x = T::zero());
                            lse_bh[i] = m + l.ln();
                            if let Some(key) = key {
                                drop_row(s, key, i, &mut pr[..seen]);
                            }
                        }
                    },
                );
                gemm_strided(
                    rows,
                    d,
                    keys,
                    block(p, keys, false),
                    head_rows(v, s, b, h, 0, false),
                    &mut out[from * d..],
                    T::one(),
                    false,
                );
            }
            out
        })
        .collect();
    scatter_heads(s, blocks.iter(), o);
}

/// The backward of [`attention_forward`], with p_ij = exp(scale·q_i·k_j − lse_i) recomputed from
/// the forward's lse and delta_i = do_i·o_i:
/// dq_i = scale · Σ_j p_ij (do_i·v_j − delta_i) k_j, dk_j = scale · Σ_i p_ij (do_i·v_j − delta_i) q_i,
/// dv_j = Σ_i p_ij do_i. With dropout (masks redrawn from the seeds behind the lse rows),
/// (do_i·v_j) z_ij replaces do_i·v_j and p_ij z_ij replaces p_ij in dv. dq, dk and dv are
/// overwritten.
// q, k, v, o, do_, dq, dk, dv: [B, T, H, D]; lse: [B, H, T] (+ [B] seeds)
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    o: &[T],
    do_: &[T],
    lse: &[T],
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
    shape: &AttentionShape,
) {
    let s = shape;
    let (n, nl) = (s.qkv_len(), s.lse_len());
    check(
        "attention_backward",
        s,
        &[
            ("q", q.len(), n),
            ("k", k.len(), n),
            ("v", v.len(), n),
            ("o", o.len(), n),
            ("do", do_.len(), n),
            ("lse", lse.len(), nl),
            ("dq", dq.len(), n),
            ("dk", dk.len(), n),
            ("dv", dv.len(), n),
        ],
    );
    let (t_len, d) = (s.seq, s.head_dim);
    let scale = T::of(s.scale as f64);
    // One task per (batch, head) owns all of that head's dq, dk and dv, so the sums into dk and
    // dv (every query touches every key it sees) need no atomics. Per tile of TILE queries:
    // P = exp(scale·Q·Kᵀ − lse), dP = dO·Vᵀ, dS = P∘(dP − delta), then dQ = scale·dS·K,
    // dK += scale·dSᵀ·Q, dV += Pᵀ·dO as small products.
    let blocks: Vec<[Vec<T>; 3]> = lse[..s.rows()]
        .par_chunks(t_len)
        .enumerate()
        .map(|(bh, lse_bh)| {
            let (b, h) = (bh / s.heads, bh % s.heads);
            let key = head_key(s, lse, b, h);
            let mut gq = vec![T::zero(); t_len * d];
            let mut gk = vec![T::zero(); t_len * d];
            let mut gv = vec![T::zero(); t_len * d];
            let mut p = vec![T::zero(); TILE.min(t_len) * t_len];
            let mut dp = p.clone();
            for from in (0..t_len).step_by(TILE) {
                let rows = TILE.min(t_len - from);
                let keys = keys_seen(s, from + rows - 1);
                let (p, dp) = (&mut p[..rows * keys], &mut dp[..rows * keys]);
                gemm_strided(
                    rows,
                    keys,
                    d,
                    head_rows(q, s, b, h, from, false),
                    head_rows(k, s, b, h, 0, true),
                    p,
                    scale,
                    false,
                );
                gemm_strided(
                    rows,
                    keys,
                    d,
                    head_rows(do_, s, b, h, from, false),
                    head_rows(v, s, b, h, 0, true),
                    dp,
                    T::one(),
                    false,
                );
                // The rows' elementwise work in the wide registers.
                simd::vectorized(
                    #[inline(always)]
                    || {
                        for (r, (pr, dpr)) in p
                            .chunks_exact_mut(keys)
                            .zip(dp.chunks_exact_mut(keys))
                            .enumerate()
                        {
                            let i = from + r;
                            let at = row(s, b, i, h);
                            let delta = dot(&do_[at..][..d], &o[at..][..d]);
                            let seen = keys_seen(s, i);
                            let lse_i = lse_bh[i];
                            if let Some(key) = key {
                                drop_row(s, key, i, &mut dpr[..seen]);
                            }
                            for (x, g) in pr[..seen].iter_mut().zip(&mut dpr[..seen]) {
                                *x = (*x - lse_i).min(T::zero()).exp_nonpositive();
                                *g = *x * (*g - delta);
                            }
                            // dV sums the dropped weights.
                            if let Some(key) = key {
                                drop_row(s, key, i, &mut pr[..seen]);
                            }
                            pr[seen..].iter_mut().for_each(|x| *x = T::zero());
                            dpr[seen..].iter_mut().for_each(|x| *x = T::zero());
                        }
                    },
                );
                // dp now holds dS.
                gemm_strided(
                    rows,
                    d,
                    keys,
                    block(dp, keys, false),
                    head_rows(k, s, b, h, 0, false),
                    &mut gq[from * d..],
                    scale,
                    false,
                );
                gemm_strided(
                    keys,
                    d,
                    rows,
                    block(dp, keys, true),
                    head_rows(q, s, b, h, from, false),
                    &mut gk,
                    scale,
                    true,
                );
                gemm_strided(
                    keys,
                    d,
                    rows,
                    block(p, keys, true),
                    head_rows(do_, s, b, h, from, false),
                    &mut gv,
                    T::one(),
                    true,
                );
            }
            [gq, gk, gv]
        })
        .collect();
    for (g, out) in [&mut *dq, &mut *dk, &mut *dv].into_iter().enumerate() {
        scatter_heads(s, blocks.iter().map(|b| &b[g]), out);
    }
}
