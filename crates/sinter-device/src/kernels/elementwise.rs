//! Launch builders for `shaders/elementwise.wgsl`: unary activations and their gradients, affine
//! maps, and binary ops and copies with numpy broadcasting (shapes and strides go in the uniform).

use super::specializations::EntrySpecializations;
use crate::error::{DeviceError, Result};
use crate::gpu::{Dispatch, Gpu, Launch};
use crate::grid_1d;
use crate::shaders::Shader;
use sinter_ops::Kernel;

pub use sinter_ops::elementwise::{
    broadcast_shape, broadcast_strides, BinaryOp, Epilogue, UnaryOp, MAX_RANK,
};
pub use sinter_ops::layout::StridedCopy;

/// Merges adjacent axes that both operands walk contiguously (or both broadcast), and drops
/// axes of size 1, so the kernel does as few divisions per element as possible.
fn coalesce(shape: &[usize], sa: &[usize], sb: &[usize]) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let (mut d, mut a, mut b): (Vec<usize>, Vec<usize>, Vec<usize>) = (vec![], vec![], vec![]);
    for k in 0..shape.len() {
        if shape[k] == 1 {
            continue;
        }
        if let (Some(&ld), Some(&la), Some(&lb)) = (d.last(), a.last(), b.last()) {
            // The previous kept axis is the outer one: it merges when its stride is exactly
            // this axis's stride times its size, for both operands.
            if la == sa[k] * shape[k] && lb == sb[k] * shape[k] {
                *d.last_mut().expect("non-empty") = ld * shape[k];
                *a.last_mut().expect("non-empty") = sa[k];
                *b.last_mut().expect("non-empty") = sb[k];
                continue;
            }
        }
        d.push(shape[k]);
        a.push(sa[k]);
        b.push(sb[k]);
    }
    (d, a, b)
}

/// Refuses an empty tensor or one that does not fit the kernels' u32 indexing.
pub(crate) fn check_len(op: &str, what: &str, len: usize) -> Result<()> {
    if len == 0 || len > u32::MAX as usize {
        return Err(DeviceError::BadShape {
            op: op.to_string(),
            detail: format!(
                "{what} has {len} elements; expected between 1 and {}",
                u32::MAX
            ),
        });
    }
    Ok(())
}

/// Refuses a buffer that cannot hold `len` f32 values (pool buffers may be larger, never smaller).
pub(crate) fn check_buffer(op: &str, what: &str, buf: &wgpu::Buffer, len: usize) -> Result<()> {
    if buf.size() < (len as u64) * 4 {
        return Err(DeviceError::BadShape {
            op: op.to_string(),
            detail: format!(
                "buffer {what} holds {} f32 values but the shape needs {len}",
                buf.size() / 4
            ),
        });
    }
    Ok(())
}

/// A 1-D grid covering `len` invocations in workgroups of the device's `WG`
/// ([`Gpu::wide_workgroup`]), folded into 2-D past the per-dimension limit.
pub(crate) fn grid_for(gpu: &Gpu, len: usize) -> [u32; 3] {
    grid_1d(
        len.div_ceil(gpu.wide_workgroup() as usize) as u32,
        gpu.limits.max_compute_workgroups_per_dimension,
    )
}

/// A grid of `groups` workgroups (one per row, channel, …), folded into 2-D past the
/// per-dimension limit.
pub(crate) fn groups_grid(gpu: &Gpu, groups: usize) -> [u32; 3] {
    grid_1d(
        groups as u32,
        gpu.limits.max_compute_workgroups_per_dimension,
    )
}

/// The entry point and grid of a family with a kernel per row (`rows`: one invocation per row)
/// and a workgroup per row (`tree`): the one the shape prefers, or the other where the start-up
/// canary disabled the preferred one on this device and not the other ([`Gpu::is_disabled`]).
pub(crate) fn rows_or_tree(
    gpu: &Gpu,
    prefer_tree: bool,
    [rows_entry, tree_entry]: [&'static str; 2],
    rows: usize,
) -> (&'static str, [u32; 3]) {
    let (preferred, other) = if prefer_tree {
        (tree_entry, rows_entry)
    } else {
        (rows_entry, tree_entry)
    };
    let tree = if gpu.is_disabled(preferred) && !gpu.is_disabled(other) {
        !prefer_tree
    } else {
        prefer_tree
    };
    if tree {
        (tree_entry, groups_grid(gpu, rows))
    } else {
        (rows_entry, grid_for(gpu, rows))
    }
}

/// A flat kernel's entry and invocations for `len` elements: its 4-wide form (`<entry>4`, a
/// vector of 4 per invocation) where `len` is a multiple of 4, else one element per invocation.
pub(crate) fn flat_entry(len: usize, [one, four]: [&'static str; 2]) -> (&'static str, usize) {
    if len % 4 == 0 {
        (four, len / 4)
    } else {
        (one, len)
    }
}

fn flat_params(len: usize, alpha: f32, beta: f32) -> [u32; 4] {
    [len as u32, alpha.to_bits(), beta.to_bits(), 0]
}

/// y = f(x), elementwise.
// x, y: [len]
pub fn unary(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    op: UnaryOp,
    len: usize,
    tag: &str,
) -> Result<Dispatch> {
    let name = format!("unary {}", op.name());
    check_len(&name, "x", len)?;
    check_buffer(&name, "x", x, len)?;
    check_buffer(&name, "y", y, len)?;
    let cost = Kernel::Unary { op, len }.cost();
    let (entry, invocations) = flat_entry(len, ["unary", "unary4"]);
    gpu.prepare(Launch {
        shader: Shader::Elementwise,
        entry,
        overrides: &op_override(op.code()),
        params: &flat_params(len, 0.0, 0.0),
        buffers: &[x, y],
        workgroups: grid_for(gpu, invocations),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// dx = dx · relu'(x) in place: the ReLU gradient after a max-pooling gradient.
// x, dx: [len]
pub fn relu_mask(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    len: usize,
    tag: &str,
) -> Result<Dispatch> {
    let name = "relu_mask";
    check_len(name, "x", len)?;
    check_buffer(name, "x", x, len)?;
    check_buffer(name, "dx", dx, len)?;
    let cost = Kernel::UnaryGrad {
        op: UnaryOp::Relu,
        len,
    }
    .cost();
    gpu.prepare(Launch {
        shader: Shader::Elementwise,
        entry: "relu_mask",
        overrides: &[],
        params: &flat_params(len, 0.0, 0.0),
        buffers: &[x, dx],
        workgroups: grid_for(gpu, len),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// dx = dy · f'(x), with f' recomputed from the forward input x.
// x, dy, dx: [len]
pub fn unary_grad(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    op: UnaryOp,
    len: usize,
    tag: &str,
) -> Result<Dispatch> {
    let name = format!("unary_grad {}", op.name());
    check_len(&name, "x", len)?;
    check_buffer(&name, "x", x, len)?;
    check_buffer(&name, "dy", dy, len)?;
    check_buffer(&name, "dx", dx, len)?;
    let cost = Kernel::UnaryGrad { op, len }.cost();
    let (entry, invocations) = flat_entry(len, ["unary_grad", "unary_grad4"]);
    gpu.prepare(Launch {
        shader: Shader::Elementwise,
        entry,
        overrides: &op_override(op.code()),
        params: &flat_params(len, 0.0, 0.0),
        buffers: &[x, dy, dx],
        workgroups: grid_for(gpu, invocations),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// y = alpha · x + beta, elementwise.
// x, y: [len]
pub fn affine(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    len: usize,
    alpha: f32,
    beta: f32,
    tag: &str,
) -> Result<Dispatch> {
    check_len("affine", "x", len)?;
    check_buffer("affine", "x", x, len)?;
    check_buffer("affine", "y", y, len)?;
    let cost = Kernel::Affine {
        alpha: alpha as f64,
        beta: beta as f64,
        len,
    }
    .cost();
    gpu.prepare(Launch {
        shader: Shader::Elementwise,
        entry: "affine",
        overrides: &[],
        params: &flat_params(len, alpha, beta),
        buffers: &[x, y],
        workgroups: grid_for(gpu, len),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// The `BroadcastParams` uniform: len, rank, the bits of a quiet NaN and of +∞ (WGSL has no
/// constants for them; pow stores them), then shape and both stride arrays, 8 words each.
fn broadcast_params(shape: &[usize], sa: &[usize], sb: &[usize]) -> Vec<u32> {
    let len: usize = shape.iter().product();
    let mut words = vec![
        len as u32,
        shape.len() as u32,
        f32::NAN.to_bits(),
        f32::INFINITY.to_bits(),
    ];
    for v in [shape, sa, sb] {
        let mut block = [0u32; 8];
        for (w, &s) in block.iter_mut().zip(v) {
            *w = s as u32;
        }
        words.extend_from_slice(&block);
    }
    words
}

/// Refuses a shape with a zero dim, too many axes, or more elements than u32 indexing allows.
fn check_shape(op: &str, what: &str, shape: &[usize]) -> Result<usize> {
    if shape.len() > MAX_RANK {
        return Err(DeviceError::BadShape {
            op: op.to_string(),
            detail: format!(
                "{what} {shape:?} has rank {} > MAX_RANK {MAX_RANK}",
                shape.len()
            ),
        });
    }
    let len: usize = shape.iter().product();
    check_len(op, &format!("{what} {shape:?}"), len)?;
    Ok(len)
}

/// out = a op b, with numpy broadcasting; out has `broadcast_shape(a_shape, b_shape)`.
// a: a_shape, b: b_shape, out: broadcast of both (rank ≤ MAX_RANK)
#[allow(clippy::too_many_arguments)]
pub fn binary(
    gpu: &Gpu,
    a: &wgpu::Buffer,
    a_shape: &[usize],
    b: &wgpu::Buffer,
    b_shape: &[usize],
    out: &wgpu::Buffer,
    op: BinaryOp,
    tag: &str,
) -> Result<Dispatch> {
    let name = format!("binary {}", op.name());
    let la = check_shape(&name, "a", a_shape)?;
    let lb = check_shape(&name, "b", b_shape)?;
    let shape = broadcast_shape(a_shape, b_shape).ok_or_else(|| DeviceError::BadShape {
        op: name.clone(),
        detail: format!("shapes a {a_shape:?} and b {b_shape:?} do not broadcast"),
    })?;
    let len: usize = shape.iter().product();
    check_len(&name, &format!("out {shape:?}"), len)?;
    check_buffer(&name, "a", a, la)?;
    check_buffer(&name, "b", b, lb)?;
    check_buffer(&name, "out", out, len)?;
    let (entry, invocations, params) = if a_shape == b_shape {
        let (entry, invocations) = flat_entry(len, ["binary_flat", "binary_flat4"]);
        (entry, invocations, broadcast_params(&[len], &[1], &[1]))
    } else {
        let (d, sa, sb) = coalesce(
            &shape,
            &broadcast_strides(a_shape, &shape),
            &broadcast_strides(b_shape, &shape),
        );
        ("binary_bcast", len, broadcast_params(&d, &sa, &sb))
    };
    let cost = Kernel::Binary {
        op,
        a: a_shape.to_vec(),
        b: b_shape.to_vec(),
    }
    .cost();
    gpu.prepare(Launch {
        shader: Shader::Elementwise,
        entry,
        overrides: &op_override(op.code()),
        params: &params,
        buffers: &[a, b, out],
        workgroups: grid_for(gpu, invocations),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// One region of a layout op (`op`: permute, slice or concat): `dst[..] = src[..]` as `copy`
/// addresses them. `src_len` and `dst_len` are the tensors' element counts; a region reaching
/// past either is an error naming the op. Each part of a concat is one such dispatch; their
/// costs sum to the layout op's.
#[allow(clippy::too_many_arguments)]
pub fn strided_copy(
    gpu: &Gpu,
    src: &wgpu::Buffer,
    src_len: usize,
    dst: &wgpu::Buffer,
    dst_len: usize,
    copy: &StridedCopy,
    op: &str,
    tag: &str,
) -> Result<Dispatch> {
    let len = copy.numel();
    check_len(op, &format!("region {:?}", copy.shape), len)?;
    let last = |offset: usize, strides: &[usize]| {
        offset
            + copy
                .shape
                .iter()
                .zip(strides)
                .map(|(&d, &s)| (d - 1) * s)
                .sum::<usize>()
    };
    let (src_last, dst_last) = (
        last(copy.src_offset, &copy.src_strides),
        last(copy.dst_offset, &copy.dst_strides),
    );
    if src_last >= src_len
        || dst_last >= dst_len
        || copy.src_strides.len() != copy.shape.len()
        || copy.dst_strides.len() != copy.shape.len()
    {
        return Err(DeviceError::BadShape {
            op: op.to_string(),
            detail: format!("the region {copy:?} reaches past a source of {src_len} or a destination of {dst_len} elements"),
        });
    }
    check_buffer(op, "src", src, src_len)?;
    check_buffer(op, "dst", dst, dst_len)?;
    let (d, ss, sd) = coalesce(&copy.shape, &copy.src_strides, &copy.dst_strides);
    check_shape(op, "region (axes merged)", &d)?;
    if copy.src_offset > u32::MAX as usize || copy.dst_offset > u32::MAX as usize {
        return Err(DeviceError::BadShape {
            op: op.to_string(),
            detail: "offsets past u32 indexing".into(),
        });
    }
    let mut params = vec![
        len as u32,
        d.len() as u32,
        copy.src_offset as u32,
        copy.dst_offset as u32,
    ];
    for v in [&d, &ss, &sd] {
        let mut block = [0u32; 8];
        for (w, &x) in block.iter_mut().zip(v.iter()) {
            *w = x as u32;
        }
        params.extend_from_slice(&block);
    }
    let cost = Kernel::Copy {
        op: "copy",
        parts: vec![copy.clone()],
    }
    .cost();
    gpu.prepare(Launch {
        shader: Shader::Elementwise,
        entry: "strided_copy",
        overrides: &[],
        params: &params,
        buffers: &[src, dst],
        workgroups: grid_for(gpu, len),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// out = x repeated along the axes where x has 1 (or no axis); x_shape must broadcast to out_shape.
// x: x_shape, out: out_shape
pub fn broadcast_to(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    x_shape: &[usize],
    out: &wgpu::Buffer,
    out_shape: &[usize],
    tag: &str,
) -> Result<Dispatch> {
    let lx = check_shape("broadcast_to", "x", x_shape)?;
    let len = check_shape("broadcast_to", "out", out_shape)?;
    if broadcast_shape(x_shape, out_shape).as_deref() != Some(out_shape) {
        return Err(DeviceError::BadShape {
            op: "broadcast_to".into(),
            detail: format!("x {x_shape:?} does not broadcast to {out_shape:?}"),
        });
    }
    check_buffer("broadcast_to", "x", x, lx)?;
    check_buffer("broadcast_to", "out", out, len)?;
    let sx = broadcast_strides(x_shape, out_shape);
    let (d, sx, _) = coalesce(out_shape, &sx, &sx);
    let cost = Kernel::BroadcastTo {
        from: x_shape.to_vec(),
        to: out_shape.to_vec(),
    }
    .cost();
    gpu.prepare(Launch {
        shader: Shader::Elementwise,
        entry: "broadcast_to",
        overrides: &[],
        params: &broadcast_params(&d, &sx, &sx),
        buffers: &[x, out],
        workgroups: grid_for(gpu, len),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// The `OP` override of the unary, unary-gradient and binary kernels.
fn op_override(code: u32) -> [(&'static str, f64); 1] {
    [("OP", code as f64)]
}

/// Every entry point, the unary and binary ones with every op (see [`super::specializations`]).
pub(crate) fn specializations() -> Vec<EntrySpecializations> {
    let unary = || UnaryOp::ALL.map(|op| op_override(op.code()).to_vec());
    let binary = || BinaryOp::ALL.map(|op| op_override(op.code()).to_vec());
    let mut out = vec![
        EntrySpecializations::from_launches(Shader::Elementwise, "unary", unary()),
        EntrySpecializations::from_launches(Shader::Elementwise, "unary_grad", unary()),
        EntrySpecializations::from_launches(Shader::Elementwise, "unary4", unary()),
        EntrySpecializations::from_launches(Shader::Elementwise, "unary_grad4", unary()),
        EntrySpecializations::from_launches(Shader::Elementwise, "binary_flat", binary()),
        EntrySpecializations::from_launches(Shader::Elementwise, "binary_flat4", binary()),
        EntrySpecializations::from_launches(Shader::Elementwise, "binary_bcast", binary()),
    ];
    for entry in ["relu_mask", "affine", "strided_copy", "broadcast_to"] {
        out.push(EntrySpecializations::plain(Shader::Elementwise, entry));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_shape_follows_numpy() {
        assert_eq!(broadcast_shape(&[7, 13, 5], &[13, 1]), Some(vec![7, 13, 5]));
        assert_eq!(broadcast_shape(&[3, 1, 4], &[1, 5, 1]), Some(vec![3, 5, 4]));
        assert_eq!(broadcast_shape(&[1], &[33, 65, 17]), Some(vec![33, 65, 17]));
        assert_eq!(broadcast_shape(&[], &[2, 3]), Some(vec![2, 3]));
        assert_eq!(broadcast_shape(&[4, 5], &[4, 5]), Some(vec![4, 5]));
        assert_eq!(broadcast_shape(&[2, 1], &[1]), Some(vec![2, 1]));
        assert_eq!(broadcast_shape(&[3], &[4]), None);
        assert_eq!(broadcast_shape(&[2, 3], &[3, 3]), None);
        assert_eq!(broadcast_shape(&[7, 13, 5], &[13, 2]), None);
    }

    #[test]
    fn strides_are_zero_on_broadcast_axes() {
        assert_eq!(broadcast_strides(&[13, 1], &[7, 13, 5]), vec![0, 1, 0]);
        assert_eq!(broadcast_strides(&[3, 1, 4], &[3, 5, 4]), vec![4, 0, 1]);
        assert_eq!(broadcast_strides(&[7, 13, 5], &[7, 13, 5]), vec![65, 5, 1]);
    }

    #[test]
    fn coalesce_merges_contiguous_and_broadcast_runs() {
        // [7,13,5] + [13,1]: a is contiguous throughout, b broadcasts on the last axis only.
        let out = [7, 13, 5];
        let (d, a, b) = coalesce(
            &out,
            &broadcast_strides(&out, &out),
            &broadcast_strides(&[13, 1], &out),
        );
        assert_eq!((d, a, b), (vec![7, 13, 5], vec![65, 5, 1], vec![0, 1, 0]));
        // A scalar against a full tensor collapses to one axis.
        let out = [33, 65, 17];
        let (d, a, b) = coalesce(
            &out,
            &broadcast_strides(&[1], &out),
            &broadcast_strides(&out, &out),
        );
        assert_eq!((d, a, b), (vec![33 * 65 * 17], vec![0], vec![1]));
        // Bias over the last axis: [2,3,4] + [4] → [6, 4].
        let out = [2, 3, 4];
        let (d, a, b) = coalesce(
            &out,
            &broadcast_strides(&out, &out),
            &broadcast_strides(&[4], &out),
        );
        assert_eq!((d, a, b), (vec![6, 4], vec![4, 1], vec![0, 1]));
        // All-ones shape: nothing left, the kernel sees rank 0 and reads element 0.
        let (d, _, _) = coalesce(&[1, 1], &[0, 0], &[0, 0]);
        assert!(d.is_empty());
    }
}
