//! Launch builders for `shaders/attention.wgsl`: fused scaled-dot-product attention, forward and
//! backward, flash-style (online softmax, probabilities recomputed from the saved log-sum-exp),
//! with attention-weight dropout drawn in the kernel from per-row seeds. Two variants: rows of
//! 64 per workgroup (`attention.wgsl`) and, where subgroups allow, rows of 8 sharing each
//! streamed row over the subgroup (`attention_subgroup.wgsl`).

use super::specializations::EntrySpecializations;
use crate::adapter::AdapterClass;
use crate::error::{DeviceError, Result};
use crate::gpu::{Dispatch, Gpu, Launch};
use crate::kernels::elementwise::check_buffer;
use crate::shaders::Shader;
use sinter_ops::{Cost, Kernel};

/// The kernel variants: both compute the same thing for every shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttentionVariant {
    /// 64 rows per workgroup, one per invocation, every invocation loading each streamed row
    /// (`attention.wgsl`).
    Rows64,
    /// 8 rows per workgroup, one subgroup: each streamed row is loaded by one lane and shuffled
    /// to the others (`attention_subgroup.wgsl`). Only where every subgroup holds 8 lanes.
    Subgroup8,
}

impl AttentionVariant {
    /// Every variant, for tests and tuning.
    pub const ALL: [AttentionVariant; 2] = [AttentionVariant::Rows64, AttentionVariant::Subgroup8];

    /// Rows (queries or keys) per workgroup (`WG` or `SG` in the WGSL).
    pub fn rows(self) -> usize {
        match self {
            AttentionVariant::Rows64 => 64,
            AttentionVariant::Subgroup8 => 8,
        }
    }

    /// The shader file of the variant's entry points.
    pub fn shader(self) -> Shader {
        match self {
            AttentionVariant::Rows64 => Shader::Attention,
            AttentionVariant::Subgroup8 => Shader::AttentionSubgroup,
        }
    }

    /// The entry point of `step`: "attention_forward", "attention_backward_dq" or
    /// "attention_backward_dkdv".
    pub fn entry(self, step: &'static str) -> &'static str {
        match (self, step) {
            (AttentionVariant::Subgroup8, "attention_forward") => "attention_forward_sg",
            (AttentionVariant::Subgroup8, "attention_backward_dq") => "attention_backward_dq_sg",
            (AttentionVariant::Subgroup8, "attention_backward_dkdv") => {
                "attention_backward_dkdv_sg"
            }
            _ => step,
        }
    }

    /// A short name for tables and the tuner ("rows64", "subgroup8").
    pub fn name(self) -> &'static str {
        match self {
            AttentionVariant::Rows64 => "rows64",
            AttentionVariant::Subgroup8 => "subgroup8",
        }
    }

    /// Whether `gpu` can run the variant (the subgroup one needs subgroups of at least 8 lanes).
    pub fn runs_on(self, gpu: &Gpu) -> bool {
        match self {
            AttentionVariant::Rows64 => true,
            AttentionVariant::Subgroup8 => gpu.report.subgroups_of_at_least(8),
        }
    }

    /// The variant the launchers use on `gpu`: the subgroup one on software adapters that have
    /// it (on lavapipe it runs the char-transformer's attention about 6× faster, BENCHMARKS.md),
    /// else 64 rows, the hardware layout; a variant the start-up canary disabled gives way.
    pub fn best_for(gpu: &Gpu) -> Self {
        let sg = AttentionVariant::Subgroup8;
        let usable = sg.runs_on(gpu) && !gpu.is_disabled(sg.entry("attention_forward"));
        if usable && gpu.report.class == AdapterClass::Software {
            sg
        } else {
            AttentionVariant::Rows64
        }
    }
}

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

fn params(s: &AttentionShape) -> [u32; 8] {
    [
        s.batch as u32,
        s.seq as u32,
        s.heads as u32,
        s.scale.to_bits(),
        s.drop_threshold(),
        s.keep_scale().to_bits(),
        0,
        0,
    ]
}

fn overrides(s: &AttentionShape) -> [(&'static str, f64); 3] {
    [
        ("HEAD_DIM", s.head_dim as f64),
        ("CAUSAL", if s.causal { 1.0 } else { 0.0 }),
        ("DROPOUT", if s.has_dropout() { 1.0 } else { 0.0 }),
    ]
}

fn grid(s: &AttentionShape, variant: AttentionVariant) -> [u32; 3] {
    [
        s.seq.div_ceil(variant.rows()) as u32,
        s.heads as u32,
        s.batch as u32,
    ]
}

/// Refuses a variant the device cannot run, naming it.
fn check_variant(gpu: &Gpu, op: &str, variant: AttentionVariant) -> Result<()> {
    if variant.runs_on(gpu) {
        return Ok(());
    }
    Err(super::needs_subgroups(
        gpu,
        format_args!("{op} ({}.wgsl)", variant.shader().name()),
    ))
}

/// o = softmax(scale·q·kᵀ, causal-masked) · v per batch item and head, with the layout tuned for
/// the shape ([`crate::tune::attention_variant`]), and lse = the log-sum-exp
/// of each query's scaled scores (saved for the backward). With dropout, `seeds` holds one seed
/// per batch row (a whole number below 2²⁴) and the weights are dropped by
/// [`AttentionShape::keeps`]; the seeds are copied behind the lse rows for the backward. One
/// dispatch; no T×T buffer.
// q, k, v, o: [B, T, H, D]; lse: [B, H, T] (+ [B] seeds); seeds: [B]
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    gpu: &Gpu,
    q: &wgpu::Buffer,
    k: &wgpu::Buffer,
    v: &wgpu::Buffer,
    seeds: Option<&wgpu::Buffer>,
    o: &wgpu::Buffer,
    lse: &wgpu::Buffer,
    shape: &AttentionShape,
    tag: &str,
) -> Result<Dispatch> {
    let variant = crate::tune::attention_variant(gpu, shape);
    attention_forward_with(gpu, variant, q, k, v, seeds, o, lse, shape, tag)
}

/// [`attention_forward`] with a chosen variant.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward_with(
    gpu: &Gpu,
    variant: AttentionVariant,
    q: &wgpu::Buffer,
    k: &wgpu::Buffer,
    v: &wgpu::Buffer,
    seeds: Option<&wgpu::Buffer>,
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
    // Without dropout the seeds binding is never read: q stands in for it.
    let seeds = match (seeds, s.has_dropout()) {
        (Some(buf), true) => {
            check_buffer(op, &format!("seeds ({s})"), buf, s.batch)?;
            buf
        }
        (None, false) => q,
        (Some(_), false) => return Err(bad_shape(op, format!("{s}: seeds given without dropout"))),
        (None, true) => return Err(bad_shape(op, format!("{s}: dropout needs the row seeds"))),
    };
    check_variant(gpu, op, variant)?;
    let cost = Kernel::Attention(*s).cost();
    gpu.prepare(Launch {
        shader: variant.shader(),
        entry: variant.entry(op),
        overrides: &overrides(s),
        params: &params(s),
        buffers: &[q, k, v, o, lse, seeds],
        workgroups: grid(s, variant),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// The backward of [`attention_forward`], as two dispatches to run in order:
/// 1. `attention_backward_dq`, one invocation per query: delta_i = do_i·o_i into `delta` (a
///    scratch of [B, H, T] = [`AttentionShape::rows`] values the caller allocates), and
///    dq_i = scale · Σ_j p_ij (do_i·v_j − delta_i) k_j;
/// 2. `attention_backward_dkdv`, one invocation per key: dk_j = scale · Σ_i p_ij (do_i·v_j −
///    delta_i) q_i and dv_j = Σ_i p_ij do_i,
///
/// where p_ij = exp(scale·q_i·k_j − lse_i) is recomputed from the forward's lse. With dropout,
/// the masks are redrawn from the seeds behind the lse rows: p_ij z_ij takes p_ij's place in dv
/// and (do_i·v_j) z_ij in the rest, z_ij being 0 or 1/(1 − dropout). Both steps gather, so no
/// atomics are needed; dq, dk and dv are overwritten.
// q, k, v, o, do_, dq, dk, dv: [B, T, H, D]; lse: [B, H, T] (+ [B] seeds); delta: [B, H, T]
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
    let variant = crate::tune::attention_variant(gpu, shape);
    let grads = AttentionGrads { dq, dk, dv };
    attention_backward_with(
        gpu,
        variant,
        [q, k, v, o, do_, lse, delta],
        grads,
        shape,
        tag,
    )
}

/// Where [`attention_backward_with`] writes dq, dk and dv.
pub struct AttentionGrads<'a> {
    /// The queries' gradient, [B, T, H, D].
    pub dq: &'a wgpu::Buffer,
    /// The keys' gradient, [B, T, H, D].
    pub dk: &'a wgpu::Buffer,
    /// The values' gradient, [B, T, H, D].
    pub dv: &'a wgpu::Buffer,
}

/// [`attention_backward`] with a chosen variant; `inputs` are q, k, v, o, do, lse and delta.
pub fn attention_backward_with(
    gpu: &Gpu,
    variant: AttentionVariant,
    inputs: [&wgpu::Buffer; 7],
    grads: AttentionGrads<'_>,
    shape: &AttentionShape,
    tag: &str,
) -> Result<Vec<Dispatch>> {
    let [q, k, v, o, do_, lse, delta] = inputs;
    let AttentionGrads { dq, dk, dv } = grads;
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
            ("delta", delta, s.rows()),
            ("dq", dq, n),
            ("dk", dk, n),
            ("dv", dv, n),
        ],
    )?;
    check_variant(gpu, op, variant)?;
    // The kernel's cost split over its passes: the first reads every input once and writes dq
    // and delta (delta: 2D per row; per pair: score, do·v and the dq update, 2D each, plus exp);
    // the second has the rest (dk and dv written; per pair score, do·v, dk and dv updates).
    let (d, rows) = (s.head_dim as u64, s.rows() as u64);
    let total = Kernel::AttentionGrad(*s).cost();
    let dq_cost = Cost {
        flops: rows * 2 * d + s.pairs() * (6 * d + 4),
        bytes: 4 * (6 * n as u64 + 2 * rows),
    };
    let dq_step = gpu.prepare(Launch {
        shader: variant.shader(),
        entry: variant.entry("attention_backward_dq"),
        overrides: &overrides(s),
        params: &params(s),
        buffers: &[q, k, v, do_, lse, o, delta, dq],
        workgroups: grid(s, variant),
        tag: format!("{tag} (dq)"),
        flops: dq_cost.flops,
        bytes: dq_cost.bytes,
    })?;
    let dkdv_step = gpu.prepare(Launch {
        shader: variant.shader(),
        entry: variant.entry("attention_backward_dkdv"),
        overrides: &overrides(s),
        params: &params(s),
        buffers: &[q, k, v, do_, lse, delta, dk, dv],
        workgroups: grid(s, variant),
        tag: format!("{tag} (dk, dv)"),
        flops: total.flops - dq_cost.flops,
        bytes: total.bytes - dq_cost.bytes,
    })?;
    Ok(vec![dq_step, dkdv_step])
}

/// The three entry points of each variant at every head size, masked or not, with dropout or
/// not, as [`overrides`] sets them (see [`super::specializations`]).
pub(crate) fn specializations() -> Vec<EntrySpecializations> {
    let launches = || {
        (1..=MAX_HEAD_DIM).flat_map(|head_dim| {
            [(false, 0.0), (true, 0.0), (false, 0.5), (true, 0.5)].map(|(causal, dropout)| {
                overrides(&AttentionShape {
                    batch: 1,
                    seq: 1,
                    heads: 1,
                    head_dim,
                    causal,
                    scale: 1.0,
                    dropout,
                })
                .to_vec()
            })
        })
    };
    let steps = [
        "attention_forward",
        "attention_backward_dq",
        "attention_backward_dkdv",
    ];
    AttentionVariant::ALL
        .into_iter()
        .flat_map(|v| steps.map(|step| (v.shader(), v.entry(step))))
        .map(|(shader, entry)| EntrySpecializations::from_launches(shader, entry, launches()))
        .collect()
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
            dropout: 0.0,
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
        let mut s = shape(1, 1, 1, 1);
        s.dropout = 1.0;
        let e = s.check().unwrap_err();
        assert!(e.contains("dropout 1") && e.contains("[0, 1)"), "{e}");
    }

    #[test]
    fn dropout_drops_its_share_and_appends_the_seeds_to_lse() {
        let mut s = shape(2, 64, 3, 8);
        assert_eq!(s.lse_len(), s.rows());
        assert_eq!(s.drop_threshold(), 0);
        s.dropout = 0.25;
        assert_eq!((s.rows(), s.lse_len()), (2 * 3 * 64, 2 * 3 * 64 + 2));
        assert_eq!(s.keep_scale(), 1.0 / 0.75);
        // Over 3 heads × 64² pairs of 2 seeds, about a quarter are dropped.
        let mut dropped = 0usize;
        for seed in [0u32, 16_777_215] {
            for h in 0..3 {
                let key = AttentionShape::head_key(seed, h);
                for i in 0..64 {
                    dropped += (0..64).filter(|&j| !s.keeps(key, i, j)).count();
                }
            }
        }
        let share = dropped as f64 / (2 * 3 * 64 * 64) as f64;
        assert!((share - 0.25).abs() < 0.01, "dropped {share}");
        // Another seed or head draws another mask.
        let mask = |seed, h| -> Vec<bool> {
            let key = AttentionShape::head_key(seed, h);
            (0..64 * 64).map(|p| s.keeps(key, p / 64, p % 64)).collect()
        };
        assert_ne!(mask(1, 0), mask(2, 0));
        assert_ne!(mask(1, 0), mask(1, 1));
        assert_eq!(mask(7, 2), mask(7, 2));
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
