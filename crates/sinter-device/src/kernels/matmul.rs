//! Launch builders for `shaders/matmul.wgsl`: batched C = op(A)·op(B), with transposed operands
//! and broadcast batch strides, in numbered variants; [`matmul`] picks the best for the adapter.
//! Every variant runs an epilogue (bias per column, any unary activation) inside the kernel.

use super::specializations::EntrySpecializations;
use super::{epilogue_overrides, every_epilogue, EpilogueArgs};
use crate::adapter::AdapterClass;
use crate::error::{DeviceError, Result};
use crate::gpu::{Dispatch, Gpu, Launch};
use crate::shaders::Shader;
use sinter_ops::elementwise::Epilogue;
use sinter_ops::Kernel;

pub use sinter_ops::matmul::MatmulShape;

/// The numbered kernel variants of `shaders/matmul.wgsl`, kept so the benchmark can show what
/// each step buys. All compute the same thing for every shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulVariant {
    /// One output per invocation from global memory.
    V1Naive,
    /// A 4×4 block per invocation from global memory, no shared memory.
    V2Blocked,
    /// 64×64 workgroup tiles staged through shared memory in k-steps of 16, vec4 loads when aligned.
    V3Tiled,
    /// A 32×16 block per invocation held in mat4x4 accumulators, vec4 loads where aligned, no
    /// shared memory: for software adapters, where every buffer load costs a loop over the lanes.
    V4Wide,
    /// v4 with the A loads shared over a subgroup of 8 (one load per lane, shuffled to the
    /// others): only where the adapter has subgroups and its smallest subgroup holds 8 lanes.
    V5Subgroup,
    /// v3's design with 8×8 outputs per invocation and 128×128 workgroup tiles, for hardware
    /// GPUs (register tiling in the style of the fastest published WGSL products).
    V6Tiled8,
}

impl MatmulVariant {
    /// Every variant in number order, for tests and per-adapter measurement.
    pub const ALL: [MatmulVariant; 6] = [
        MatmulVariant::V1Naive,
        MatmulVariant::V2Blocked,
        MatmulVariant::V3Tiled,
        MatmulVariant::V4Wide,
        MatmulVariant::V5Subgroup,
        MatmulVariant::V6Tiled8,
    ];

    /// The WGSL entry point.
    pub fn entry(self) -> &'static str {
        match self {
            MatmulVariant::V1Naive => "matmul_v1_naive",
            MatmulVariant::V2Blocked => "matmul_v2_blocked",
            MatmulVariant::V3Tiled => "matmul_v3_tiled",
            MatmulVariant::V4Wide => "matmul_v4_wide",
            MatmulVariant::V5Subgroup => "matmul_v5_subgroup",
            MatmulVariant::V6Tiled8 => "matmul_v6_tiled8",
        }
    }

    /// Invocations per workgroup (its `@workgroup_size`).
    pub fn invocations(self) -> u32 {
        match self {
            MatmulVariant::V1Naive | MatmulVariant::V3Tiled | MatmulVariant::V6Tiled8 => 256,
            MatmulVariant::V2Blocked => 64,
            MatmulVariant::V4Wide | MatmulVariant::V5Subgroup => 8,
        }
    }

    /// The shader file holding the entry point: the subgroup variants have their own, compiled
    /// only on adapters with subgroups.
    pub fn shader(self) -> Shader {
        match self {
            MatmulVariant::V5Subgroup => Shader::MatmulSubgroup,
            _ => Shader::Matmul,
        }
    }

    /// Whether `gpu` can run the variant at all: its workgroup fits the device's limits and, for
    /// the subgroup variants, every subgroup holds at least the 8 lanes of a workgroup. Says
    /// nothing of the start-up canary ([`Gpu::is_disabled`]).
    pub fn runs_on(self, gpu: &Gpu) -> bool {
        let fits = self.invocations() <= gpu.wide_workgroup();
        match self {
            MatmulVariant::V5Subgroup => fits && gpu.report.subgroups_of_at_least(8),
            _ => fits,
        }
    }

    /// The tile of C one workgroup computes, as (rows, columns).
    fn tile(self) -> (usize, usize) {
        match self {
            MatmulVariant::V1Naive => (16, 16),
            MatmulVariant::V2Blocked => (32, 32),
            MatmulVariant::V3Tiled => (64, 64),
            MatmulVariant::V4Wide | MatmulVariant::V5Subgroup => (32, 128),
            MatmulVariant::V6Tiled8 => (128, 128),
        }
    }

    /// The variant [`matmul`] uses on `gpu`. Software adapters run a workgroup as SIMD lanes on
    /// one CPU thread, where each buffer load is a loop over the lanes and a barrier is a context
    /// switch: v4 makes the fewest loads and no barriers. Hardware GPUs want v3's shared-memory
    /// tiles (v4's 512 accumulators per invocation would spill there). On lavapipe with two
    /// cores at 1024³, v3 runs at about 6 GFLOP/s, v4 at about 33 and v5, v4 with its A loads
    /// shared over the subgroup, at about 44 (`benches/matmul.rs`): v5 where subgroups allow.
    /// v6 (larger register tiles) is never the static choice: it has not run on hardware here,
    /// and the tuner times it against v3 wherever tuning is on.
    /// A device that allows fewer than v3's 256 invocations per workgroup (WebGPU's
    /// compatibility mode, GLES 3.1) gets v2, whose 64 every device has; a variant the start-up
    /// canary disabled ([`crate::canary`]) gives way to the next (v2 if every one failed).
    pub fn best_for(gpu: &Gpu) -> Self {
        use MatmulVariant::*;
        // In order of preference; a variant the start-up canary disabled is passed over.
        let preferred: &[MatmulVariant] = match gpu.report.class {
            AdapterClass::Software => &[V5Subgroup, V4Wide, V2Blocked, V3Tiled, V1Naive],
            _ => &[V3Tiled, V2Blocked, V4Wide, V1Naive],
        };
        preferred
            .iter()
            .copied()
            .find(|v| v.runs_on(gpu) && !gpu.is_disabled(v.entry()))
            .unwrap_or(V2Blocked)
    }
}

fn bad_shape(detail: String) -> DeviceError {
    DeviceError::BadShape {
        op: "matmul".into(),
        detail,
    }
}

/// C = op(A)·op(B) with the variant best for this adapter (see [`matmul_epilogue`]).
// a: [batch | 1, m, k] (stored [.., k, m] when trans_a), b: [batch | 1, k, n] (stored [.., n, k]
// when trans_b), c: [batch, m, n]
pub fn matmul(
    gpu: &Gpu,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    c: &wgpu::Buffer,
    shape: &MatmulShape,
    tag: &str,
) -> Result<Dispatch> {
    matmul_epilogue(gpu, a, b, c, shape, EpilogueArgs::NONE, tag)
}

/// C = epilogue(op(A)·op(B)), the bias one value per column of C, with the variant best for this
/// adapter (tuned: [`crate::tune::matmul_variant`]): the planner's fused linear layer, one
/// dispatch.
// a, b, c as in `matmul`; bias: [n]
pub fn matmul_epilogue(
    gpu: &Gpu,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    c: &wgpu::Buffer,
    shape: &MatmulShape,
    epilogue: EpilogueArgs<'_>,
    tag: &str,
) -> Result<Dispatch> {
    let variant = crate::tune::matmul_variant(gpu, shape);
    matmul_with_epilogue(gpu, variant, a, b, c, shape, epilogue, tag)
}

/// C = op(A)·op(B) with a chosen variant: the benchmark's entry.
pub fn matmul_with(
    gpu: &Gpu,
    variant: MatmulVariant,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    c: &wgpu::Buffer,
    shape: &MatmulShape,
    tag: &str,
) -> Result<Dispatch> {
    matmul_with_epilogue(gpu, variant, a, b, c, shape, EpilogueArgs::NONE, tag)
}

/// C = epilogue(op(A)·op(B)) with a chosen variant: every other launch builder's entry.
#[allow(clippy::too_many_arguments)] // the product's three operands, its shape and epilogue
pub fn matmul_with_epilogue(
    gpu: &Gpu,
    variant: MatmulVariant,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    c: &wgpu::Buffer,
    shape: &MatmulShape,
    epilogue: EpilogueArgs<'_>,
    tag: &str,
) -> Result<Dispatch> {
    let s = shape;
    s.check().map_err(bad_shape)?;
    if variant.shader() == Shader::MatmulSubgroup && !gpu.report.subgroups_of_at_least(8) {
        let what = format!(
            "{}.wgsl::{} ({tag})",
            variant.shader().name(),
            variant.entry()
        );
        return Err(super::needs_subgroups(gpu, what));
    }
    if variant.invocations() > gpu.wide_workgroup() {
        return Err(DeviceError::Limit {
            what: format!(
                "matmul.wgsl::{} ({tag}) needs {} invocations per workgroup",
                variant.entry(),
                variant.invocations()
            ),
            need: format!(
                "{} on {} (max_compute_invocations_per_workgroup {}, max_compute_workgroup_size_x {})",
                gpu.wide_workgroup(),
                gpu.report.name,
                gpu.limits.max_compute_invocations_per_workgroup,
                gpu.limits.max_compute_workgroup_size_x
            ),
        });
    }
    // The kernels index in u32.
    let words = [s.a_len(), s.b_len(), s.c_len()];
    if words.iter().any(|&w| w > u32::MAX as usize) {
        return Err(bad_shape(format!(
            "{s}: an operand has more than 2^32 elements"
        )));
    }
    for (what, buf, len) in [
        ("a", a, s.a_len()),
        ("b", b, s.b_len()),
        ("c", c, s.c_len()),
    ] {
        let bytes = len as u64 * 4;
        gpu.check_binding("matmul", bytes)?;
        if buf.size() < bytes {
            return Err(bad_shape(format!(
                "{s}: buffer {what} holds {} f32 values but the shape needs {len}",
                buf.size() / 4
            )));
        }
        // v3 and v4 read through a vec4 view of each buffer; a buffer whose size is not a
        // multiple of 16 bytes would hide its last elements from that view.
        let vec4_view = matches!(
            variant,
            MatmulVariant::V3Tiled
                | MatmulVariant::V4Wide
                | MatmulVariant::V5Subgroup
                | MatmulVariant::V6Tiled8
        );
        if vec4_view && buf.size() % 16 != 0 {
            return Err(bad_shape(format!(
                "{s}: buffer {what} is {} bytes, not a multiple of 16 as {} needs",
                buf.size(),
                variant.entry()
            )));
        }
    }
    if let Some(bias) = epilogue.bias {
        gpu.check_binding("matmul", bias.size())?;
        if bias.size() < s.n as u64 * 4 {
            return Err(bad_shape(format!(
                "{s}: the bias holds {} f32 values but C has {} columns",
                bias.size() / 4,
                s.n
            )));
        }
    }
    let (workgroups, params) = grid_and_params(gpu, s, variant.tile());
    // A vec4 load needs the run it reads (along the operand's contiguous axis) and the batch
    // item's first element on a 4-element grid.
    let a_vec4 = (if s.trans_a { s.m } else { s.k }) % 4 == 0 && s.a_batch_stride % 4 == 0;
    let b_vec4 = (if s.trans_b { s.k } else { s.n }) % 4 == 0 && s.b_batch_stride % 4 == 0;
    let c_vec4 = s.n % 4 == 0;
    let overrides = overrides(
        variant,
        s.trans_a,
        s.trans_b,
        epilogue.epilogue(),
        [a_vec4, b_vec4, c_vec4, s.k % 4 == 0],
    );
    let cost = Kernel::MatMul {
        shape: *s,
        epilogue: epilogue.epilogue(),
    }
    .cost();
    gpu.prepare(Launch {
        shader: variant.shader(),
        entry: variant.entry(),
        overrides: &overrides,
        params: &params,
        buffers: &[a, b, c, epilogue.bias_or(a)],
        workgroups,
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// The grid and the `Params` uniform (matmul.wgsl) of a product of shape `s` whose workgroups
/// each cover a (rows, columns) tile of C. A batch longer than the dispatch limit folds `fold`
/// batch items into the grid's y axis (see `place` in matmul.wgsl); a grid that still does not
/// fit is refused by `prepare`.
pub(crate) fn grid_and_params(
    gpu: &Gpu,
    s: &MatmulShape,
    tile: (usize, usize),
) -> ([u32; 3], [u32; 8]) {
    let limit = gpu.limits.max_compute_workgroups_per_dimension as usize;
    let fold = s.batch.div_ceil(limit.max(1));
    let m_tiles = s.m.div_ceil(tile.0);
    let workgroups = [
        s.n.div_ceil(tile.1) as u32,
        (m_tiles * fold) as u32,
        s.batch.div_ceil(fold) as u32,
    ];
    let params = [
        s.m as u32,
        s.n as u32,
        s.k as u32,
        s.batch as u32,
        s.a_batch_stride as u32,
        s.b_batch_stride as u32,
        m_tiles as u32,
        0,
    ];
    (workgroups, params)
}

/// The override constants of a `variant` launch: operand layouts, epilogue, and (v3, v4, v5) which
/// loads and stores may use vec4: `[A, B, C, K a multiple of 4]`.
fn overrides(
    variant: MatmulVariant,
    trans_a: bool,
    trans_b: bool,
    epilogue: Epilogue,
    [a_vec4, b_vec4, c_vec4, k_exact]: [bool; 4],
) -> Vec<(&'static str, f64)> {
    let flag = |x: bool| if x { 1.0 } else { 0.0 };
    let mut overrides = vec![("TRANS_A", flag(trans_a)), ("TRANS_B", flag(trans_b))];
    overrides.extend(epilogue_overrides(epilogue));
    match variant {
        MatmulVariant::V3Tiled | MatmulVariant::V6Tiled8 => {
            overrides.push(("ALIGNED", flag(a_vec4 && b_vec4 && c_vec4)))
        }
        MatmulVariant::V4Wide | MatmulVariant::V5Subgroup => overrides.extend([
            ("A_VEC4", flag(a_vec4)),
            ("B_VEC4", flag(b_vec4)),
            ("C_VEC4", flag(c_vec4)),
            ("K_EXACT", flag(k_exact)),
        ]),
        MatmulVariant::V1Naive | MatmulVariant::V2Blocked => {}
    }
    overrides
}

/// Every variant with every override set [`overrides`] gives it (see [`super::specializations`]).
pub(crate) fn specializations() -> Vec<EntrySpecializations> {
    let flags = |bits: u32, n: u32| (0..n).map(move |i| bits >> i & 1 == 1);
    MatmulVariant::ALL
        .into_iter()
        .map(|variant| {
            let launches = (0u32..64).flat_map(|bits| {
                let f: Vec<bool> = flags(bits, 6).collect();
                every_epilogue()
                    .map(move |e| overrides(variant, f[0], f[1], e, [f[2], f[3], f[4], f[5]]))
            });
            EntrySpecializations::from_launches(variant.shader(), variant.entry(), launches)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_strides_and_lengths() {
        let s = MatmulShape::new(3, 7, 13, 5);
        assert_eq!((s.a_batch_stride, s.b_batch_stride), (35, 65));
        assert_eq!((s.a_len(), s.b_len(), s.c_len()), (105, 195, 273));
        assert_eq!(s.flops(), 2 * 3 * 7 * 13 * 5);
        let w = s.broadcast_b();
        assert_eq!(w.b_len(), 65);
        assert!(w.check().is_ok());
    }

    #[test]
    fn zero_axes_and_overlapping_strides_are_refused() {
        assert!(MatmulShape::new(1, 0, 4, 4).check().is_err());
        assert!(MatmulShape::new(0, 4, 4, 4).check().is_err());
        let mut s = MatmulShape::new(2, 4, 4, 4);
        s.a_batch_stride = 3;
        let err = s.check().unwrap_err();
        assert!(err.contains("a_batch_stride 3"), "{err}");
    }

    #[test]
    fn display_shows_stored_shapes() {
        let s = MatmulShape::new(2, 3, 4, 5).with_trans(true, false);
        assert_eq!(s.to_string(), "[2] A[5, 3]ᵀ · B[5, 4] → C[3, 4]");
    }
}
