//! Launch builders for `shaders/embedding.wgsl`: the embedding lookup and its gradient, a
//! deterministic scatter-add. Token ids are stored as f32, like class targets in the loss kernels.

use super::elementwise::{check_buffer, check_len, grid_for, groups_grid};
use super::specializations::EntrySpecializations;
use crate::adapter::AdapterClass;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Launch};
use crate::shaders::Shader;
use sinter_ops::Kernel;

/// The bits of a quiet NaN, written for the row of a token whose id is not a valid row.
const NAN_BITS: u32 = 0x7fc0_0000;

pub use sinter_ops::embedding::EmbeddingShape;

/// The params uniform (the `Params` struct in embedding.wgsl).
fn params(s: &EmbeddingShape) -> [u32; 4] {
    [s.tokens as u32, s.vocab as u32, s.dim as u32, NAN_BITS]
}

/// `out[t] = table[ids[t]]`; the row of an id that is not an integer in `[0, vocab)` is NaN.
// ids: [tokens], table: [vocab, dim], out: [tokens, dim]
pub fn embedding(
    gpu: &Gpu,
    ids: &wgpu::Buffer,
    table: &wgpu::Buffer,
    out: &wgpu::Buffer,
    shape: &EmbeddingShape,
    tag: &str,
) -> Result<Dispatch> {
    const OP: &str = "embedding";
    shape.check(OP)?;
    let len = shape.tokens * shape.dim;
    check_buffer(OP, "ids", ids, shape.tokens)?;
    check_buffer(OP, "table", table, shape.vocab * shape.dim)?;
    check_buffer(OP, "out", out, len)?;
    let cost = Kernel::Embedding(*shape).cost();
    gpu.prepare(Launch {
        shader: Shader::Embedding,
        entry: "embedding",
        overrides: &[],
        params: &params(shape),
        buffers: &[ids, table, out],
        workgroups: grid_for(gpu, len),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// The embedding-gradient kernels: both compute the same sums in the same order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbeddingGradKernel {
    /// A workgroup per (row, block of `WG` columns) packing each chunk's matches with a prefix
    /// sum in workgroup memory (`embedding_grad`): every device.
    Scan,
    /// A subgroup of 8 per (row, block of 32 columns) taking the matches from a ballot
    /// (`embedding_grad_sg`): no barriers, for software adapters, where a barrier is a switch
    /// between the workgroup's subgroups. Only where every subgroup holds 8 lanes.
    Subgroup,
}

impl EmbeddingGradKernel {
    /// Both kernels.
    pub const ALL: [EmbeddingGradKernel; 2] =
        [EmbeddingGradKernel::Scan, EmbeddingGradKernel::Subgroup];

    /// The WGSL entry point.
    pub fn entry(self) -> &'static str {
        match self {
            EmbeddingGradKernel::Scan => "embedding_grad",
            EmbeddingGradKernel::Subgroup => "embedding_grad_sg",
        }
    }

    fn shader(self) -> Shader {
        match self {
            EmbeddingGradKernel::Scan => Shader::Embedding,
            EmbeddingGradKernel::Subgroup => Shader::EmbeddingSubgroup,
        }
    }

    /// Whether `gpu` can run it (the subgroup kernel needs subgroups of at least 8 lanes).
    pub fn runs_on(self, gpu: &Gpu) -> bool {
        self == EmbeddingGradKernel::Scan || gpu.report.subgroups_of_at_least(8)
    }

    /// The kernel `embedding_grad` runs: the subgroup one on software adapters that run it (the
    /// start-up canary not having disabled it), the scan elsewhere.
    pub fn best_for(gpu: &Gpu) -> Self {
        let sg = EmbeddingGradKernel::Subgroup;
        let usable = sg.runs_on(gpu) && !gpu.is_disabled(sg.entry());
        if usable && gpu.report.class == AdapterClass::Software {
            sg
        } else {
            EmbeddingGradKernel::Scan
        }
    }
}

/// `dtable[v] = Σ_{t: ids[t] == v} dout[t]`; repeated ids accumulate, invalid ids add nothing.
/// Deterministic (tokens are summed in order, no atomics). Cost: vocab·tokens id tests plus
/// tokens·dim adds, so it suits vocabularies up to a few thousand. The kernel is
/// [`EmbeddingGradKernel::best_for`] the device.
// ids: [tokens], dout: [tokens, dim], dtable: [vocab, dim]
pub fn embedding_grad(
    gpu: &Gpu,
    ids: &wgpu::Buffer,
    dout: &wgpu::Buffer,
    dtable: &wgpu::Buffer,
    shape: &EmbeddingShape,
    tag: &str,
) -> Result<Dispatch> {
    let kernel = EmbeddingGradKernel::best_for(gpu);
    embedding_grad_with(gpu, kernel, ids, dout, dtable, shape, tag)
}

/// [`embedding_grad`] with a chosen kernel; one the device cannot run is refused by name.
// ids: [tokens], dout: [tokens, dim], dtable: [vocab, dim]
pub fn embedding_grad_with(
    gpu: &Gpu,
    kernel: EmbeddingGradKernel,
    ids: &wgpu::Buffer,
    dout: &wgpu::Buffer,
    dtable: &wgpu::Buffer,
    shape: &EmbeddingShape,
    tag: &str,
) -> Result<Dispatch> {
    const OP: &str = "embedding_grad";
    shape.check(OP)?;
    let EmbeddingShape { tokens, vocab, dim } = *shape;
    check_buffer(OP, "ids", ids, tokens)?;
    check_buffer(OP, "dout", dout, tokens * dim)?;
    check_buffer(OP, "dtable", dtable, vocab * dim)?;
    if !kernel.runs_on(gpu) {
        let what = format!("{OP} ({})", kernel.entry());
        return Err(super::needs_subgroups(gpu, what));
    }
    // One workgroup per (row v, block of columns).
    let columns = match kernel {
        EmbeddingGradKernel::Scan => gpu.wide_workgroup() as usize,
        EmbeddingGradKernel::Subgroup => 32,
    };
    let blocks = dim.div_ceil(columns);
    let groups = vocab * blocks;
    check_len(
        OP,
        &format!("the grid of [vocab {vocab}] × [{blocks} column blocks]"),
        groups,
    )?;
    let cost = Kernel::EmbeddingGrad(*shape).cost();
    gpu.prepare(Launch {
        shader: kernel.shader(),
        entry: kernel.entry(),
        overrides: &[],
        params: &params(shape),
        buffers: &[ids, dout, dtable],
        workgroups: groups_grid(gpu, groups),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// Its entry points, none with override constants (see [`super::specializations`]).
pub(crate) fn specializations() -> Vec<EntrySpecializations> {
    let grads = EmbeddingGradKernel::ALL.map(|k| (k.shader(), k.entry()));
    [(Shader::Embedding, "embedding")]
        .into_iter()
        .chain(grads)
        .map(|(shader, entry)| EntrySpecializations::plain(shader, entry))
        .collect()
}
