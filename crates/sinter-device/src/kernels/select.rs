//! Launch builders for `shaders/select.wgsl`: index_select and gather along one axis with their
//! deterministic scatter-add gradients, and where with numpy broadcasting of its three operands.

use super::elementwise::{check_buffer, check_len, grid_for, groups_grid};
use super::specializations::EntrySpecializations;
use crate::error::{DeviceError, Result};
use crate::gpu::{Dispatch, Gpu, Launch};
use crate::shaders::Shader;
use sinter_ops::elementwise::broadcast_strides;
use sinter_ops::Kernel;

pub use sinter_ops::select::{where_shape, SelectShape};

/// The params uniform (the `Params` struct in select.wgsl), with a quiet NaN's bits for bad ids.
fn params(s: &SelectShape) -> [u32; 8] {
    [
        s.outer as u32,
        s.n as u32,
        s.k as u32,
        s.inner as u32,
        f32::NAN.to_bits(),
        0,
        0,
        0,
    ]
}

/// One of the four id kernels: checks the shape and the buffers (`(name, buffer, values)`,
/// inputs then output) and prepares `entry` over `grid`.
fn prepare(
    gpu: &Gpu,
    entry: &'static str,
    shape: &SelectShape,
    buffers: [(&str, &wgpu::Buffer, usize); 3],
    grid: [u32; 3],
    kernel: Kernel,
    tag: &str,
) -> Result<Dispatch> {
    shape.check(entry)?;
    for (what, buf, len) in buffers {
        check_buffer(entry, what, buf, len)?;
    }
    let cost = kernel.cost();
    gpu.prepare(Launch {
        shader: Shader::Select,
        entry,
        overrides: &[],
        params: &params(shape),
        buffers: &[buffers[0].1, buffers[1].1, buffers[2].1],
        workgroups: grid,
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// `y[o, t, :] = x[o, ids[t], :]`; NaN for an id that is not an integer in `[0, n)`.
// x: [outer, n, inner], ids: [k], y: [outer, k, inner]
pub fn index_select(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    ids: &wgpu::Buffer,
    y: &wgpu::Buffer,
    shape: &SelectShape,
    tag: &str,
) -> Result<Dispatch> {
    let bufs = [
        ("x", x, shape.x_len()),
        ("ids", ids, shape.k),
        ("y", y, shape.y_len()),
    ];
    let grid = grid_for(gpu, shape.y_len());
    let kernel = Kernel::IndexSelect(*shape);
    prepare(gpu, "index_select", shape, bufs, grid, kernel, tag)
}

/// `dx[o, v, :] = Σ_{t: ids[t] = v} dy[o, t, :]`, each value summed in increasing t by one
/// invocation (deterministic, no atomics); invalid ids add nothing. Cost: n·k id tests per
/// block of 256 `(o, inner)` columns, plus one add per dy value.
// ids: [k], dy: [outer, k, inner], dx: [outer, n, inner]
pub fn index_select_grad(
    gpu: &Gpu,
    ids: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    shape: &SelectShape,
    tag: &str,
) -> Result<Dispatch> {
    const OP: &str = "index_select_grad";
    shape.check(OP)?;
    // One workgroup per (row v, block of WG columns).
    let blocks = (shape.outer * shape.inner).div_ceil(gpu.wide_workgroup() as usize);
    let groups = shape.n * blocks;
    check_len(
        OP,
        &format!("the grid of [n {}] × [{blocks} column blocks]", shape.n),
        groups,
    )?;
    let bufs = [
        ("ids", ids, shape.k),
        ("dy", dy, shape.y_len()),
        ("dx", dx, shape.x_len()),
    ];
    let grid = groups_grid(gpu, groups);
    let kernel = Kernel::IndexSelectGrad(*shape);
    prepare(gpu, OP, shape, bufs, grid, kernel, tag)
}

/// `y[o, t, i] = x[o, index[o, t, i], i]` (`torch.gather`); NaN for an invalid id.
// x: [outer, n, inner], index, y: [outer, k, inner]
pub fn gather(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    index: &wgpu::Buffer,
    y: &wgpu::Buffer,
    shape: &SelectShape,
    tag: &str,
) -> Result<Dispatch> {
    let bufs = [
        ("x", x, shape.x_len()),
        ("index", index, shape.y_len()),
        ("y", y, shape.y_len()),
    ];
    let grid = grid_for(gpu, shape.y_len());
    prepare(
        gpu,
        "gather",
        shape,
        bufs,
        grid,
        Kernel::Gather(*shape),
        tag,
    )
}

/// `dx[o, v, i] = Σ_{t: index[o, t, i] = v} dy[o, t, i]`, each value summed in increasing t by
/// one invocation (deterministic, no atomics); invalid ids add nothing. Cost: k index tests per
/// dx value, so it suits gathers of a few positions per column.
// index, dy: [outer, k, inner], dx: [outer, n, inner]
pub fn gather_grad(
    gpu: &Gpu,
    index: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    shape: &SelectShape,
    tag: &str,
) -> Result<Dispatch> {
    let bufs = [
        ("index", index, shape.y_len()),
        ("dy", dy, shape.y_len()),
        ("dx", dx, shape.x_len()),
    ];
    let grid = grid_for(gpu, shape.x_len());
    let kernel = Kernel::GatherGrad(*shape);
    prepare(gpu, "gather_grad", shape, bufs, grid, kernel, tag)
}

/// Drops axes of size 1 and merges adjacent axes that every operand walks contiguously (or
/// broadcasts along), so the kernel does as few divisions per element as possible.
fn coalesce(shape: &[usize], strides: [Vec<usize>; 3]) -> (Vec<usize>, [Vec<usize>; 3]) {
    let mut dims: Vec<usize> = Vec::new();
    let mut out: [Vec<usize>; 3] = Default::default();
    for (d, &size) in shape.iter().enumerate() {
        if size == 1 {
            continue;
        }
        // The previous kept axis merges into this one when its stride is this axis's stride
        // times its size, for every operand.
        let merges = !dims.is_empty()
            && out
                .iter()
                .zip(&strides)
                .all(|(o, s)| o.last() == Some(&(s[d] * size)));
        if merges {
            *dims.last_mut().expect("non-empty") *= size;
            for (o, s) in out.iter_mut().zip(&strides) {
                *o.last_mut().expect("non-empty") = s[d];
            }
        } else {
            dims.push(size);
            for (o, s) in out.iter_mut().zip(&strides) {
                o.push(s[d]);
            }
        }
    }
    (dims, out)
}

/// The `WhereParams` uniform: len, rank, two pad words, then shape and the three stride
/// arrays, 8 words each.
fn where_params(len: usize, dims: &[usize], strides: &[Vec<usize>; 3]) -> Vec<u32> {
    let mut words = vec![len as u32, dims.len() as u32, 0, 0];
    for v in std::iter::once(dims).chain(strides.iter().map(Vec::as_slice)) {
        let mut block = [0u32; 8];
        for (w, &s) in block.iter_mut().zip(v) {
            *w = s as u32;
        }
        words.extend_from_slice(&block);
    }
    words
}

/// `out = mask ≠ 0 ? a : b` with numpy broadcasting; out has the broadcast of the three shapes.
/// A mask value selects a unless it is ±0 (NaN selects a).
// mask, a, b: their shapes; out: the broadcast of all three (rank ≤ MAX_RANK)
#[allow(clippy::too_many_arguments)]
pub fn where_select(
    gpu: &Gpu,
    mask: &wgpu::Buffer,
    mask_shape: &[usize],
    a: &wgpu::Buffer,
    a_shape: &[usize],
    b: &wgpu::Buffer,
    b_shape: &[usize],
    out: &wgpu::Buffer,
    tag: &str,
) -> Result<Dispatch> {
    const OP: &str = "where";
    let shape = where_shape(mask_shape, a_shape, b_shape).ok_or_else(|| DeviceError::BadShape {
        op: OP.into(),
        detail: format!(
            "mask {mask_shape:?}, a {a_shape:?} and b {b_shape:?} do not broadcast to a rank of at most {}",
            sinter_ops::elementwise::MAX_RANK
        ),
    })?;
    let numel = |s: &[usize]| s.iter().product::<usize>();
    let len = numel(&shape);
    for (what, buf, s) in [
        ("mask", mask, mask_shape),
        ("a", a, a_shape),
        ("b", b, b_shape),
    ] {
        check_len(OP, &format!("{what} {s:?}"), numel(s))?;
        check_buffer(OP, what, buf, numel(s))?;
    }
    check_len(OP, &format!("out {shape:?}"), len)?;
    check_buffer(OP, "out", out, len)?;
    let strides = [mask_shape, a_shape, b_shape].map(|s| broadcast_strides(s, &shape));
    let (dims, strides) = coalesce(&shape, strides);
    let cost = Kernel::Where {
        mask: mask_shape.to_vec(),
        a: a_shape.to_vec(),
        b: b_shape.to_vec(),
    }
    .cost();
    gpu.prepare(Launch {
        shader: Shader::Select,
        entry: "where_select",
        overrides: &[],
        params: &where_params(len, &dims, &strides),
        buffers: &[mask, a, b, out],
        workgroups: grid_for(gpu, len),
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes,
    })
}

/// Its entry points, none with override constants (see [`super::specializations`]).
pub(crate) fn specializations() -> Vec<EntrySpecializations> {
    [
        "index_select",
        "index_select_grad",
        "gather",
        "gather_grad",
        "where_select",
    ]
    .into_iter()
    .map(|entry| EntrySpecializations::plain(Shader::Select, entry))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_merges_runs_every_operand_walks_alike() {
        // mask [2, 1, 4], a [3, 4], b []: out [2, 3, 4]; only the last axis is contiguous in all.
        let out = [2, 3, 4];
        let s = [&[2, 1, 4][..], &[3, 4], &[]].map(|s| broadcast_strides(s, &out));
        let (d, st) = coalesce(&out, s);
        assert_eq!(d, vec![2, 3, 4]);
        assert_eq!(st, [vec![4, 0, 1], vec![0, 4, 1], vec![0, 0, 0]]);
        // Equal shapes collapse to one axis; all-ones shapes to none.
        let s = [&out[..], &out, &out].map(|s| broadcast_strides(s, &out));
        assert_eq!(coalesce(&out, s).0, vec![24]);
        let ones = [1, 1];
        let s = [&ones[..], &ones, &ones].map(|s| broadcast_strides(s, &ones));
        assert!(coalesce(&ones, s).0.is_empty());
    }
}
