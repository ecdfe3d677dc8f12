//! f16 storage for matrix products: `pack_f16` rounds f32 values to half precision two to a
//! word, and `matmul_f16` multiplies packed operands with f32 accumulation into an f32 C.

use super::matmul::MatmulShape;
use super::specializations::EntrySpecializations;
use super::{every_epilogue, EpilogueArgs};
use crate::{grid_1d, DeviceError, Dispatch, Gpu, Launch, Result, Shader};
use sinter_ops::elementwise::Epilogue;
use sinter_ops::Kernel;

/// Bytes of a packed f16 buffer holding `len` values: two values per 4-byte word.
pub fn packed_bytes(len: usize) -> u64 {
    len.div_ceil(2) as u64 * 4
}

fn bad_shape(op: &str, detail: String) -> DeviceError {
    DeviceError::BadShape {
        op: op.into(),
        detail,
    }
}

/// Rounds the first `len` f32 values of `x` to f16 into `packed` ([`packed_bytes`] long): word
/// w holds elements 2w (low half) and 2w + 1 (high half, 0 past the end), as WGSL's
/// `pack2x16float` lays them out. Values beyond f16's range (±65504) are not representable.
pub fn pack_f16(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    packed: &wgpu::Buffer,
    len: usize,
    tag: &str,
) -> Result<Dispatch> {
    if len == 0 || len > u32::MAX as usize {
        return Err(bad_shape(
            "pack_f16",
            format!("{len} values: the count must be between 1 and 2^32 - 1"),
        ));
    }
    let words = packed_bytes(len);
    gpu.check_binding("pack_f16", len as u64 * 4)?;
    if x.size() < len as u64 * 4 {
        return Err(bad_shape(
            "pack_f16",
            format!("the input holds {} f32 values, not {len}", x.size() / 4),
        ));
    }
    if packed.size() < words {
        return Err(bad_shape(
            "pack_f16",
            format!(
                "the packed buffer is {} bytes but {len} halves need {words}",
                packed.size()
            ),
        ));
    }
    let groups = (len.div_ceil(2) as u32).div_ceil(64);
    let params = [len as u32, 0, 0, 0, 0, 0, 1, 0];
    // Binding 1: the input (A's binding), binding 2: the packed words.
    gpu.prepare(Launch {
        shader: Shader::Matmul,
        entry: "pack_f16",
        overrides: &[],
        params: &params,
        buffers: &[x, packed],
        workgroups: grid_1d(groups, gpu.limits.max_compute_workgroups_per_dimension),
        tag: tag.to_string(),
        flops: len as u64,
        bytes: len as u64 * 4 + words,
    })
}

/// The override constants of a `matmul_f16_blocked` launch: operand layouts and epilogue.
fn overrides(trans_a: bool, trans_b: bool, epilogue: Epilogue) -> Vec<(&'static str, f64)> {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let mut o = vec![("TRANS_A", flag(trans_a)), ("TRANS_B", flag(trans_b))];
    o.extend(super::epilogue_overrides(epilogue));
    o
}

/// C = epilogue(op(A)·op(B)) with A and B packed f16 (see [`pack_f16`]; a batch stride and every
/// index count elements, not words), accumulated in f32; C and the bias are f32.
// a: [batch | 1, m, k] halves (stored [.., k, m] when trans_a), b: [batch | 1, k, n] halves
// (stored [.., n, k] when trans_b), c: [batch, m, n] f32
pub fn matmul_f16(
    gpu: &Gpu,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    c: &wgpu::Buffer,
    shape: &MatmulShape,
    epilogue: EpilogueArgs<'_>,
    tag: &str,
) -> Result<Dispatch> {
    let s = shape;
    s.check().map_err(|e| bad_shape("matmul_f16", e))?;
    if [s.a_len(), s.b_len(), s.c_len()]
        .iter()
        .any(|&w| w > u32::MAX as usize)
    {
        return Err(bad_shape(
            "matmul_f16",
            format!("{s}: an operand has more than 2^32 elements"),
        ));
    }
    for (what, buf, bytes, unit) in [
        ("a", a, packed_bytes(s.a_len()), "packed f16"),
        ("b", b, packed_bytes(s.b_len()), "packed f16"),
        ("c", c, s.c_len() as u64 * 4, "f32"),
    ] {
        gpu.check_binding("matmul_f16", bytes)?;
        if buf.size() < bytes {
            return Err(bad_shape(
                "matmul_f16",
                format!(
                    "{s}: buffer {what} is {} bytes but the shape needs {bytes} ({unit})",
                    buf.size()
                ),
            ));
        }
    }
    if let Some(bias) = epilogue.bias {
        gpu.check_binding("matmul_f16", bias.size())?;
        if bias.size() < s.n as u64 * 4 {
            return Err(bad_shape(
                "matmul_f16",
                format!(
                    "{s}: the bias holds {} f32 values but C has {} columns",
                    bias.size() / 4,
                    s.n
                ),
            ));
        }
    }
    // v2's grid: a 32×32 tile of C per workgroup.
    let (workgroups, params) = super::matmul::grid_and_params(gpu, s, (32, 32));
    let cost = Kernel::MatMul {
        shape: *s,
        epilogue: epilogue.epilogue(),
    }
    .cost();
    // Half the bytes of A and B that an f32 product moves.
    let saved = (s.a_len() + s.b_len()) as u64 * 2;
    gpu.prepare(Launch {
        shader: Shader::Matmul,
        entry: "matmul_f16_blocked",
        overrides: &overrides(s.trans_a, s.trans_b, epilogue.epilogue()),
        params: &params,
        buffers: &[a, b, c, epilogue.bias_or(a)],
        workgroups,
        tag: tag.to_string(),
        flops: cost.flops,
        bytes: cost.bytes.saturating_sub(saved),
    })
}

/// Every entry point here with every override set its launcher gives it.
pub(crate) fn specializations() -> Vec<EntrySpecializations> {
    let launches = [false, true].into_iter().flat_map(|ta| {
        [false, true]
            .into_iter()
            .flat_map(move |tb| every_epilogue().map(move |e| overrides(ta, tb, e)))
    });
    vec![
        EntrySpecializations::from_launches(Shader::Matmul, "matmul_f16_blocked", launches),
        EntrySpecializations::plain(Shader::Matmul, "pack_f16"),
    ]
}
