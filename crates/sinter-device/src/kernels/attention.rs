//! Launch builders for `shaders/attention.wgsl`: fused scaled-dot-product attention, forward and
//! backward, flash-style (online softmax, probabilities recomputed from the saved log-sum-exp).

use crate::error::{DeviceError, Result};
use crate::gpu::{Dispatch, Gpu, Launch};
use crate::kernels::elementwise::check_buffer;
use crate::shaders::Shader;
use sinter_ops::{Cost, Kernel};

/// Rows (queries or keys) per workgroup (`WG` in the WGSL).
const WG: usize = 64;

pub use sinter_ops::attention::{AttentionShape, MAX_HEAD_DIM};

fn bad_shape(op: &str, detail: String) -> DeviceError {
    DeviceError::BadShape {
        op: op.to_string(),
        detail,
    }
}

/// Checks the shape and every buffer (name, buffer, f32 values it must hold). Buffers read
/// through the WGSL's vec4 views must also be whole vec4s (pool buffers always are).
fn check(
    gpu: &Gpu,
    op: &str,
    s: &AttentionShape,
    buffers: &[(&str, &wgpu::Buffer, usize)],
) -> Result<()> {
    s.check().map_err(|e| bad_shape(op, e))?;
    for &(what, buf, len) in buffers {
        gpu.check_binding(op, len as u64 * 4)?;
        check_buffer(op, &format!("{what} ({s})"), buf, len)?;
        if buf.size() % 16 != 0 {
            return Err(bad_shape(
                op,
                format!(
                    "{s}: buffer {what} is {} bytes, not a multiple of 16 as the vec4 loads need",
                    buf.size()
                ),
            ));
        }
    }
    Ok(())
}

fn params(s: &AttentionShape) -> [u32; 4] {
    [
        s.batch as u32,
        s.seq as u32,
        s.heads as u32,
        s.scale.to_bits(),
    ]
}

fn overrides(s: &AttentionShape) -> [(&'static str, f64); 2] {
    [
        ("HEAD_DIM", s.head_dim as f64),
        ("CAUSAL", if s.causal { 1.0 } else { 0.0 }),
    ]
}

fn grid(s: &AttentionShape) -> [u32; 3] {
    [s.seq.div_ceil(WG) as u32, s.heads as u32, s.batch as u32]
}

/// o = softmax(scale·q·kᵀ, causal-masked) · v per batch item and head, and lse = the log-sum-exp
/// of each query's scaled scores (saved for the backward). One dispatch; no T×T buffer.
// q, k, v, o: [B, T, H, D]; lse: [B, H, T]
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    gpu: &Gpu,
    q: &wgpu::Buffer,
    k: &wgpu::Buffer,
    v: &wgpu::Buffer,
    o: &wgpu::Buffer,
    lse: &wgpu::Buffer,
    shape: &AttentionShape,
    tag: &str,
) -> Result<Dispatch> {
    let s = shape;
    let op = "attention_forward";
    let (n, nl) = (s.qkv_len(), s.lse_len());
    check(
        gpu,
        op,
        s,
        &[
            ("q", q, n),
            ("k", k, n),
            ("v", v, n),
            ("o", o, n),
            ("lse", lse, nl),
        ],
    )?;
    let cost = Kernel::Attention(*s).cost();
    gpu.prepare(Launch {
        shader: Shader::Attention,
        entry: "attention_forward",
        overrides: &overrides(s),
        params: &params(s),
        buffers: &[q, k, v, o, lse],
        workgroups: grid(s),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// The backward of [`attention_forward`], as two dispatches to run in order:
/// 1. `attention_backward_dq`, one invocation per query: delta_i = do_i·o_i into `delta` (a
///    scratch of [B, H, T] = [`AttentionShape::lse_len`] values the caller allocates), and
///    dq_i = scale · Σ_j p_ij (do_i·v_j − delta_i) k_j;
/// 2. `attention_backward_dkdv`, one invocation per key: dk_j = scale · Σ_i p_ij (do_i·v_j −
///    delta_i) q_i and dv_j = Σ_i p_ij do_i,
///
/// where p_ij = exp(scale·q_i·k_j − lse_i) is recomputed from the forward's lse. Both steps
/// gather, so no atomics are needed; dq, dk and dv are overwritten.
// q, k, v, o, do_, dq, dk, dv: [B, T, H, D]; lse, delta: [B, H, T]
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    gpu: &Gpu,
    q: &wgpu::Buffer,
    k: &wgpu::Buffer,
    v: &wgpu::Buffer,
    o: &wgpu::Buffer,
    do_: &wgpu::Buffer,
    lse: &wgpu::Buffer,
    delta: &wgpu::Buffer,
    dq: &wgpu::Buffer,
    dk: &wgpu::Buffer,
    dv: &wgpu::Buffer,
    shape: &AttentionShape,
    tag: &str,
) -> Result<Vec<Dispatch>> {
    let s = shape;
    let op = "attention_backward";
    let (n, nl) = (s.qkv_len(), s.lse_len());
    check(
        gpu,
        op,
        s,
        &[
            ("q", q, n),
            ("k", k, n),
            ("v", v, n),
            ("o", o, n),
            ("do", do_, n),
            ("lse", lse, nl),
            ("delta", delta, nl),
            ("dq", dq, n),
            ("dk", dk, n),
            ("dv", dv, n),
        ],
    )?;
    // The kernel's cost split over its passes: the first reads every input once and writes dq
    // and delta (delta: 2D per row; per pair: score, do·v and the dq update, 2D each, plus exp);
    // the second has the rest (dk and dv written; per pair score, do·v, dk and dv updates).
    let (d, rows) = (s.head_dim as u64, nl as u64);
    let total = Kernel::AttentionGrad(*s).cost();
    let dq_cost = Cost {
        flops: rows * 2 * d + s.pairs() * (6 * d + 4),
        bytes: 4 * (6 * n + 2 * nl) as u64,
    };
    let dq_step = gpu.prepare(Launch {
        shader: Shader::Attention,
        entry: "attention_backward_dq",
        overrides: &overrides(s),
        params: &params(s),
        buffers: &[q, k, v, do_, lse, o, delta, dq],
        workgroups: grid(s),
        tag: format!("{tag} (dq)"),
        flops: dq_cost.flops,
        bytes: dq_cost.bytes,
    })?;
    let dkdv_step = gpu.prepare(Launch {
        shader: Shader::Attention,
        entry: "attention_backward_dkdv",
        overrides: &overrides(s),
        params: &params(s),
        buffers: &[q, k, v, do_, lse, delta, dk, dv],
        workgroups: grid(s),
        tag: format!("{tag} (dk, dv)"),
        flops: total.flops - dq_cost.flops,
        bytes: total.bytes - dq_cost.bytes,
    })?;
    Ok(vec![dq_step, dkdv_step])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(batch: usize, seq: usize, heads: usize, head_dim: usize) -> AttentionShape {
        AttentionShape {
            batch,
            seq,
            heads,
            head_dim,
            causal: false,
            scale: 1.0,
        }
    }

    #[test]
    fn shape_checks_name_the_problem() {
        assert!(shape(3, 7, 2, 128).check().is_ok());
        let e = shape(1, 5, 2, 129).check().unwrap_err();
        assert!(e.contains("head_dim 129") && e.contains("128"), "{e}");
        let e = shape(1, 0, 2, 8).check().unwrap_err();
        assert!(e.contains("T 0"), "{e}");
        let e = shape(1 << 20, 1 << 10, 1, 8).check().unwrap_err();
        assert!(e.contains("2^32"), "{e}");
        let mut s = shape(1, 1, 1, 1);
        s.scale = f32::NAN;
        assert!(s.check().is_err());
    }

    #[test]
    fn causal_halves_the_pairs() {
        let mut s = shape(2, 5, 3, 4);
        assert_eq!(s.pairs(), 2 * 3 * 25);
        s.causal = true;
        assert_eq!(s.pairs(), 2 * 3 * 15);
        assert_eq!((s.qkv_len(), s.lse_len()), (120, 30));
    }
}
