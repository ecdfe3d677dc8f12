//! CPU attention: fused scaled-dot-product attention forward and backward, the same math as
//! `shaders/attention.wgsl`. One (batch, head) per rayon task, one row of scores at a time, never T×T.

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

/// y += alpha · x.
fn axpy<T: Real>(alpha: T, x: &[T], y: &mut [T]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// Where row t of head h of batch item b starts in a [B, T, H, D] tensor.
fn row(s: &AttentionShape, b: usize, t: usize, h: usize) -> usize {
    ((b * s.seq + t) * s.heads + h) * s.head_dim
}

/// Keys query i sees: all, or j ≤ i when causal.
fn keys_seen(s: &AttentionShape, i: usize) -> usize {
    if s.causal {
        i + 1
    } else {
        s.seq
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
/// query's scaled scores.
// q, k, v, o: [B, T, H, D]; lse: [B, H, T]
pub fn attention_forward<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
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
    let (t_len, d) = (s.seq, s.head_dim);
    let scale = T::of(s.scale as f64);
    // lse is [B, H, T]: one contiguous chunk per (batch, head), written in place; o's rows of a
    // head are interleaved with other heads, so each task fills a [T, D] block scattered after.
    let blocks: Vec<Vec<T>> = lse[..nl]
        .par_chunks_mut(t_len)
        .enumerate()
        .map(|(bh, lse_bh)| {
            let (b, h) = (bh / s.heads, bh % s.heads);
            let mut out = vec![T::zero(); t_len * d];
            let mut p = vec![T::zero(); t_len];
            for (i, (oi, lse_i)) in out.chunks_exact_mut(d).zip(lse_bh).enumerate() {
                let qi = &q[row(s, b, i, h)..][..d];
                let p = &mut p[..keys_seen(s, i)];
                let mut m = T::neg_infinity();
                for (j, pj) in p.iter_mut().enumerate() {
                    *pj = scale * dot(qi, &k[row(s, b, j, h)..][..d]);
                    m = m.max(*pj);
                }
                let mut l = T::zero();
                for (j, pj) in p.iter_mut().enumerate() {
                    *pj = (*pj - m).exp();
                    l += *pj;
                    axpy(*pj, &v[row(s, b, j, h)..][..d], oi);
                }
                let inv = T::one() / l;
                oi.iter_mut().for_each(|x| *x *= inv);
                *lse_i = m + l.ln();
            }
            out
        })
        .collect();
    scatter_heads(s, blocks.iter(), o);
}

/// The backward of [`attention_forward`], with p_ij = exp(scale·q_i·k_j − lse_i) recomputed from
/// the forward's lse and delta_i = do_i·o_i:
/// dq_i = scale · Σ_j p_ij (do_i·v_j − delta_i) k_j, dk_j = scale · Σ_i p_ij (do_i·v_j − delta_i) q_i,
/// dv_j = Σ_i p_ij do_i. dq, dk and dv are overwritten.
// q, k, v, o, do_, dq, dk, dv: [B, T, H, D]; lse: [B, H, T]
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
    // One task per (batch, head) owns all of that head's dq, dk and dv, so the scatter into dk and
    // dv (every query touches every key it sees) needs no atomics; each score is computed once.
    let blocks: Vec<[Vec<T>; 3]> = lse[..nl]
        .par_chunks(t_len)
        .enumerate()
        .map(|(bh, lse_bh)| {
            let (b, h) = (bh / s.heads, bh % s.heads);
            let mut gq = vec![T::zero(); t_len * d];
            let mut gk = vec![T::zero(); t_len * d];
            let mut gv = vec![T::zero(); t_len * d];
            for (i, (dqi, &lse_i)) in gq.chunks_exact_mut(d).zip(lse_bh).enumerate() {
                let at = row(s, b, i, h);
                let (qi, doi) = (&q[at..][..d], &do_[at..][..d]);
                let delta = dot(doi, &o[at..][..d]);
                for j in 0..keys_seen(s, i) {
                    let aj = row(s, b, j, h);
                    let (kj, vj) = (&k[aj..][..d], &v[aj..][..d]);
                    let p = (scale * dot(qi, kj) - lse_i).exp();
                    let ds = p * (dot(doi, vj) - delta);
                    axpy(ds, kj, dqi);
                    axpy(ds, qi, &mut gk[j * d..][..d]);
                    axpy(p, doi, &mut gv[j * d..][..d]);
                }
                dqi.iter_mut().for_each(|x| *x *= scale);
            }
            gk.iter_mut().for_each(|x| *x *= scale);
            [gq, gk, gv]
        })
        .collect();
    for (g, out) in [&mut *dq, &mut *dk, &mut *dv].into_iter().enumerate() {
        scatter_heads(s, blocks.iter().map(|b| &b[g]), out);
    }
}
