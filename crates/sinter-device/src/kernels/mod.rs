//! Launch builders for each kernel family: each function checks shapes, picks the entry point and
//! grid, and returns a prepared [`Dispatch`](crate::Dispatch). The WGSL lives in `shaders/<family>.wgsl`.

pub mod attention;
pub mod batch_norm;
pub mod conv;
pub mod elementwise;
pub mod embedding;
pub mod loss;
pub mod matmul;
pub mod matmul_f16;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod select;
pub mod softmax;
pub mod specializations;

use crate::error::DeviceError;
use crate::gpu::Gpu;
use sinter_ops::elementwise::{Epilogue, UnaryOp};

/// The refusal of a subgroup kernel on a device whose subgroups hold fewer than its 8 lanes;
/// `what` names the op and the kernel.
pub(crate) fn needs_subgroups(gpu: &Gpu, what: impl std::fmt::Display) -> DeviceError {
    DeviceError::Limit {
        what: format!("{what} needs subgroups of at least 8 lanes"),
        need: gpu.report.subgroup_report(),
    }
}

/// The epilogue a matrix-product or convolution launch runs inside its kernel, with its bias
/// buffer: each output v of channel j is stored as `activation(v + bias[j])` (see
/// [`Epilogue`]). The default is none: outputs stored as computed.
#[derive(Clone, Copy, Debug, Default)]
pub struct EpilogueArgs<'a> {
    /// One value per channel (output column of a product, output channel of a convolution).
    pub bias: Option<&'a wgpu::Buffer>,
    /// Applied to every output after the bias.
    pub activation: Option<UnaryOp>,
}

impl<'a> EpilogueArgs<'a> {
    /// No bias, no activation: outputs stored as computed.
    pub const NONE: EpilogueArgs<'static> = EpilogueArgs {
        bias: None,
        activation: None,
    };

    /// What the kernel computes, without the buffer.
    pub fn epilogue(&self) -> Epilogue {
        Epilogue {
            bias: self.bias.is_some(),
            activation: self.activation,
        }
    }

    /// The `HAS_BIAS` and `ACT` overrides of the product kernels.
    pub(crate) fn overrides(&self) -> [(&'static str, f64); 2] {
        epilogue_overrides(self.epilogue())
    }

    /// The buffer for the kernel's bias binding: the bias, or `stand_in` (never read) without one,
    /// since every launch of the entry point binds something there.
    pub(crate) fn bias_or(&self, stand_in: &'a wgpu::Buffer) -> &'a wgpu::Buffer {
        self.bias.unwrap_or(stand_in)
    }
}

/// The `HAS_BIAS` and `ACT` overrides of a product or convolution kernel running `e`.
pub(crate) fn epilogue_overrides(e: Epilogue) -> [(&'static str, f64); 2] {
    let act = e.activation.map_or(NO_ACT, UnaryOp::code);
    [
        ("HAS_BIAS", if e.bias { 1.0 } else { 0.0 }),
        ("ACT", act as f64),
    ]
}

/// Every epilogue a product or convolution launch can run: with and without a bias, with no
/// activation or any unary op.
pub(crate) fn every_epilogue() -> impl Iterator<Item = Epilogue> {
    let activations = std::iter::once(None).chain(UnaryOp::ALL.into_iter().map(Some));
    activations.flat_map(|activation| {
        [false, true]
            .into_iter()
            .map(move |bias| Epilogue { bias, activation })
    })
}

/// `NO_ACT` in unary.wgsl: the `ACT` override of a kernel without an activation.
const NO_ACT: u32 = u32::MAX;

/// Splits a 1-D count of workgroups into a 2-D grid that respects the per-dimension limit.
/// Kernels rebuild the flat index as `gid.x + gid.y * (num_workgroups.x * WG)`.
pub fn grid_1d(groups: u32, limit: u32) -> [u32; 3] {
    if groups <= limit {
        [groups, 1, 1]
    } else {
        let y = groups.div_ceil(limit);
        [groups.div_ceil(y), y, 1]
    }
}
