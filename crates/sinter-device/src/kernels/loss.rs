//! Launch builders for `shaders/loss.wgsl`: mean softmax cross-entropy over rows of logits, its
//! gradient, and the number of correctly classified rows. Targets are class indices stored as f32.

use super::elementwise::{check_buffer, rows_or_tree};
use super::specializations::EntrySpecializations;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Launch};
use crate::shaders::Shader;
use sinter_ops::Kernel;

/// The bits of a quiet NaN, passed to the kernels that must write NaN for a bad target.
const NAN_BITS: u32 = 0x7fc0_0000;

pub use sinter_ops::loss::CrossEntropyShape;

/// The params uniform (the `Params` struct in loss.wgsl).
fn params(s: &CrossEntropyShape) -> [u32; 4] {
    [s.rows as u32, s.classes as u32, NAN_BITS, 0]
}

/// `loss[0]` = mean over rows of `logsumexp(row) − row[target]`; NaN if any target is not a
/// class.
// logits: [rows, classes], targets: [rows], loss: [1]
pub fn cross_entropy(
    gpu: &Gpu,
    logits: &wgpu::Buffer,
    targets: &wgpu::Buffer,
    loss: &wgpu::Buffer,
    shape: &CrossEntropyShape,
    tag: &str,
) -> Result<Dispatch> {
    const OP: &str = "cross_entropy";
    shape.check(OP)?;
    let len = shape.rows * shape.classes;
    check_buffer(OP, "logits", logits, len)?;
    check_buffer(OP, "targets", targets, shape.rows)?;
    check_buffer(OP, "loss", loss, 1)?;
    let cost = Kernel::CrossEntropy(*shape).cost();
    gpu.prepare(Launch {
        shader: Shader::Loss,
        entry: "cross_entropy",
        overrides: &[],
        params: &params(shape),
        buffers: &[logits, targets, loss],
        workgroups: [1, 1, 1],
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// `dlogits = (softmax(row) − onehot(target)) · dloss[0] / rows`; a row with a bad target is
/// NaN.
// logits: [rows, classes], targets: [rows], dloss: [1], dlogits: [rows, classes]
pub fn cross_entropy_grad(
    gpu: &Gpu,
    logits: &wgpu::Buffer,
    targets: &wgpu::Buffer,
    dloss: &wgpu::Buffer,
    dlogits: &wgpu::Buffer,
    shape: &CrossEntropyShape,
    tag: &str,
) -> Result<Dispatch> {
    const OP: &str = "cross_entropy_grad";
    shape.check(OP)?;
    let len = shape.rows * shape.classes;
    check_buffer(OP, "logits", logits, len)?;
    check_buffer(OP, "targets", targets, shape.rows)?;
    check_buffer(OP, "dloss", dloss, 1)?;
    check_buffer(OP, "dlogits", dlogits, len)?;
    let (entry, workgroups) = rows_or_tree(
        gpu,
        shape.grad_uses_tree(),
        ["cross_entropy_grad_rows", "cross_entropy_grad_tree"],
        shape.rows,
    );
    let cost = Kernel::CrossEntropyGrad(*shape).cost();
    gpu.prepare(Launch {
        shader: Shader::Loss,
        entry,
        overrides: &[],
        params: &params(shape),
        buffers: &[logits, targets, dloss, dlogits],
        workgroups,
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// `out[0]` = number of rows whose first argmax equals the target, as f32.
// logits: [rows, classes], targets: [rows], out: [1]
pub fn count_correct(
    gpu: &Gpu,
    logits: &wgpu::Buffer,
    targets: &wgpu::Buffer,
    out: &wgpu::Buffer,
    shape: &CrossEntropyShape,
    tag: &str,
) -> Result<Dispatch> {
    const OP: &str = "count_correct";
    shape.check(OP)?;
    let len = shape.rows * shape.classes;
    check_buffer(OP, "logits", logits, len)?;
    check_buffer(OP, "targets", targets, shape.rows)?;
    check_buffer(OP, "out", out, 1)?;
    let cost = Kernel::CountCorrect(*shape).cost();
    gpu.prepare(Launch {
        shader: Shader::Loss,
        entry: "count_correct",
        overrides: &[],
        params: &params(shape),
        buffers: &[logits, targets, out],
        workgroups: [1, 1, 1],
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// Its entry points, none with override constants (see [`super::specializations`]).
pub(crate) fn specializations() -> Vec<EntrySpecializations> {
    [
        "cross_entropy",
        "cross_entropy_grad_rows",
        "cross_entropy_grad_tree",
        "count_correct",
    ]
    .into_iter()
    .map(|entry| EntrySpecializations::plain(Shader::Loss, entry))
    .collect()
}
