//! Launch builders for `shaders/embedding.wgsl`: the embedding lookup and its gradient, a
//! deterministic scatter-add. Token ids are stored as f32, like class targets in the loss kernels.

use super::elementwise::{check_buffer, check_len, grid_for, groups_grid};
use super::specializations::EntrySpecializations;
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

/// `dtable[v] = Σ_{t: ids[t] == v} dout[t]`; repeated ids accumulate, invalid ids add nothing.
/// Deterministic (tokens are summed in order, no atomics). Cost: vocab·tokens id tests plus
/// tokens·dim adds, so it suits vocabularies up to a few thousand.
// ids: [tokens], dout: [tokens, dim], dtable: [vocab, dim]
pub fn embedding_grad(
    gpu: &Gpu,
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
    // One workgroup per (row v, block of WG columns).
    let blocks = dim.div_ceil(gpu.wide_workgroup() as usize);
    let groups = vocab * blocks;
    check_len(
        OP,
        &format!("the grid of [vocab {vocab}] × [{blocks} column blocks]"),
        groups,
    )?;
    let cost = Kernel::EmbeddingGrad(*shape).cost();
    gpu.prepare(Launch {
        shader: Shader::Embedding,
        entry: "embedding_grad",
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
    ["embedding", "embedding_grad"]
        .into_iter()
        .map(|entry| EntrySpecializations::plain(Shader::Embedding, entry))
        .collect()
}
