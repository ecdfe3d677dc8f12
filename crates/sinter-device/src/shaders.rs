//! The table of WGSL shader files, one per kernel family, compiled into the binary with `include_str!`.
//! Every kernel the engine dispatches is an entry point in one of these files. One more file,
//! `unary.wgsl`, holds functions (no bindings, no entry points) that several families share.

/// `shaders/unary.wgsl`: every unary op, forward and derivative by `UnaryOp::code`, and the
/// epilogue of a product. Prepended, by plain concatenation, to the files that call it (see
/// [`Shader::uses_unary`]), so the elementwise kernels and the epilogues inside the matrix-product
/// and convolution kernels share one definition: a new activation is written once.
pub const UNARY_LIBRARY: &str = include_str!("../../../shaders/unary.wgsl");

/// A kernel file that calls the unary library: the library, then the file.
macro_rules! with_unary {
    ($file:literal) => {
        concat!(
            include_str!("../../../shaders/unary.wgsl"),
            include_str!(concat!("../../../shaders/", $file))
        )
    };
}

/// A WGSL file under `shaders/`. Forward and backward entry points of a family share one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shader {
    /// `elementwise.wgsl`: unary, affine, broadcasting binary ops and their gradients.
    Elementwise,
    /// `reduce.wgsl`: sum, mean, max and argmax over one axis.
    Reduce,
    /// `reduce_subgroup.wgsl`: the reduction with one subgroup per output, compiled after
    /// `reduce.wgsl` only where the device has subgroups.
    ReduceSubgroup,
    /// `matmul.wgsl`: the batched matrix-product variants, with epilogues.
    Matmul,
    /// `matmul_subgroup.wgsl`: the product variants that use subgroup operations, compiled after
    /// `matmul.wgsl` (whose loaders and stores they share) only where the device has subgroups.
    MatmulSubgroup,
    /// `conv2d.wgsl`: implicit-GEMM convolution forward, input gradient and weight gradient.
    Conv2d,
    /// `pool.wgsl`: max and average pooling, forward and backward.
    Pool,
    /// `loss.wgsl`: cross-entropy, its gradient, and the correct-prediction count.
    Loss,
    /// `optim.wgsl`: in-place SGD and Adam/AdamW updates.
    Optim,
    /// `softmax.wgsl`: softmax and log-softmax along the last axis, with gradients.
    Softmax,
    /// `norm.wgsl`: layer normalization and its gradients.
    Norm,
    /// `embedding.wgsl`: row gather by token id and its gradient (rows summed per id).
    Embedding,
    /// `embedding_subgroup.wgsl`: the embedding gradient with a subgroup per table row, compiled
    /// after `embedding.wgsl` only where the device has subgroups.
    EmbeddingSubgroup,
    /// `attention.wgsl`: flash-style fused attention, forward and backward.
    Attention,
    /// `attention_subgroup.wgsl`: the attention kernels with their streamed rows shared over a
    /// subgroup, compiled after `attention.wgsl` only where the device has subgroups.
    AttentionSubgroup,
    /// `select.wgsl`: index_select, gather and where, with the scatter-add gradients.
    Select,
    /// `batch_norm.wgsl`: batch normalization in training, its gradients and the running
    /// statistics' update.
    BatchNorm,
}

impl Shader {
    /// Every shader file, so the naga validation test covers them all.
    pub const ALL: [Shader; 17] = [
        Shader::Elementwise,
        Shader::Reduce,
        Shader::ReduceSubgroup,
        Shader::Matmul,
        Shader::MatmulSubgroup,
        Shader::Conv2d,
        Shader::Pool,
        Shader::Loss,
        Shader::Optim,
        Shader::Softmax,
        Shader::Norm,
        Shader::Embedding,
        Shader::EmbeddingSubgroup,
        Shader::Attention,
        Shader::AttentionSubgroup,
        Shader::Select,
        Shader::BatchNorm,
    ];

    /// The file name under `shaders/`, without the extension.
    pub fn name(self) -> &'static str {
        match self {
            Shader::Elementwise => "elementwise",
            Shader::Reduce => "reduce",
            Shader::ReduceSubgroup => "reduce_subgroup",
            Shader::Matmul => "matmul",
            Shader::MatmulSubgroup => "matmul_subgroup",
            Shader::Conv2d => "conv2d",
            Shader::Pool => "pool",
            Shader::Loss => "loss",
            Shader::Optim => "optim",
            Shader::Softmax => "softmax",
            Shader::Norm => "norm",
            Shader::Embedding => "embedding",
            Shader::EmbeddingSubgroup => "embedding_subgroup",
            Shader::Attention => "attention",
            Shader::AttentionSubgroup => "attention_subgroup",
            Shader::Select => "select",
            Shader::BatchNorm => "batch_norm",
        }
    }

    /// Whether the file's kernels take their workgroup width from the override `WG` (256, or
    /// fewer where the device allows fewer: [`crate::Gpu::wide_workgroup`]). The other families
    /// use fixed workgroups of at most 64 invocations, which every device has.
    pub fn takes_workgroup_width(self) -> bool {
        !matches!(
            self,
            Shader::Matmul
                | Shader::MatmulSubgroup
                | Shader::Conv2d
                | Shader::Pool
                | Shader::Attention
                | Shader::AttentionSubgroup
        )
    }

    /// Whether the file calls the functions of [`UNARY_LIBRARY`], compiled in front of it.
    pub fn uses_unary(self) -> bool {
        matches!(self, Shader::Elementwise | Shader::Matmul | Shader::Conv2d)
    }

    /// Whether the file needs the device's subgroup operations (`wgpu::Features::SUBGROUP`).
    pub fn uses_subgroups(self) -> bool {
        matches!(
            self,
            Shader::ReduceSubgroup
                | Shader::MatmulSubgroup
                | Shader::AttentionSubgroup
                | Shader::EmbeddingSubgroup
        )
    }

    /// The family whose whole source this file is compiled after, using its bindings and
    /// functions (its entry points come along, unused): the subgroup products build on matmul.wgsl.
    pub fn builds_on(self) -> Option<Shader> {
        match self {
            Shader::ReduceSubgroup => Some(Shader::Reduce),
            Shader::MatmulSubgroup => Some(Shader::Matmul),
            Shader::AttentionSubgroup => Some(Shader::Attention),
            Shader::EmbeddingSubgroup => Some(Shader::Embedding),
            _ => None,
        }
    }

    /// What is compiled in front of the file: the source of [`Shader::builds_on`], else
    /// [`UNARY_LIBRARY`] where the file uses it, else nothing.
    pub fn prelude(self) -> &'static str {
        match self.builds_on() {
            Some(base) => base.source(),
            None if self.uses_unary() => UNARY_LIBRARY,
            None => "",
        }
    }

    /// The file's own text, as it is on disk.
    pub fn file(self) -> &'static str {
        &self.source()[self.prelude().len()..]
    }

    /// The WGSL compiled for this family: the file after its [`Shader::prelude`].
    pub fn source(self) -> &'static str {
        match self {
            Shader::Elementwise => with_unary!("elementwise.wgsl"),
            Shader::Reduce => include_str!("../../../shaders/reduce.wgsl"),
            Shader::ReduceSubgroup => concat!(
                include_str!("../../../shaders/reduce.wgsl"),
                include_str!("../../../shaders/reduce_subgroup.wgsl")
            ),
            Shader::Matmul => with_unary!("matmul.wgsl"),
            Shader::MatmulSubgroup => concat!(
                with_unary!("matmul.wgsl"),
                include_str!("../../../shaders/matmul_subgroup.wgsl")
            ),
            Shader::Conv2d => with_unary!("conv2d.wgsl"),
            Shader::Pool => include_str!("../../../shaders/pool.wgsl"),
            Shader::Loss => include_str!("../../../shaders/loss.wgsl"),
            Shader::Optim => include_str!("../../../shaders/optim.wgsl"),
            Shader::Softmax => include_str!("../../../shaders/softmax.wgsl"),
            Shader::Norm => include_str!("../../../shaders/norm.wgsl"),
            Shader::Embedding => include_str!("../../../shaders/embedding.wgsl"),
            Shader::EmbeddingSubgroup => concat!(
                include_str!("../../../shaders/embedding.wgsl"),
                include_str!("../../../shaders/embedding_subgroup.wgsl")
            ),
            Shader::Attention => include_str!("../../../shaders/attention.wgsl"),
            Shader::AttentionSubgroup => concat!(
                include_str!("../../../shaders/attention.wgsl"),
                include_str!("../../../shaders/attention_subgroup.wgsl")
            ),
            Shader::Select => include_str!("../../../shaders/select.wgsl"),
            Shader::BatchNorm => include_str!("../../../shaders/batch_norm.wgsl"),
        }
    }
}
