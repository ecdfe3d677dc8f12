//! The table of WGSL shader files, one per kernel family, compiled into the binary with `include_str!`.
//! Every kernel the engine dispatches is an entry point in one of these files.

/// A WGSL file under `shaders/`. Forward and backward entry points of a family share one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shader {
    Elementwise,
    Reduce,
    Matmul,
    Conv2d,
    Pool,
    Loss,
    Optim,
    Softmax,
    Norm,
    Embedding,
    Attention,
}

impl Shader {
    pub const ALL: [Shader; 11] = [
        Shader::Elementwise,
        Shader::Reduce,
        Shader::Matmul,
        Shader::Conv2d,
        Shader::Pool,
        Shader::Loss,
        Shader::Optim,
        Shader::Softmax,
        Shader::Norm,
        Shader::Embedding,
        Shader::Attention,
    ];

    /// The file name under `shaders/`, without the extension.
    pub fn name(self) -> &'static str {
        match self {
            Shader::Elementwise => "elementwise",
            Shader::Reduce => "reduce",
            Shader::Matmul => "matmul",
            Shader::Conv2d => "conv2d",
            Shader::Pool => "pool",
            Shader::Loss => "loss",
            Shader::Optim => "optim",
            Shader::Softmax => "softmax",
            Shader::Norm => "norm",
            Shader::Embedding => "embedding",
            Shader::Attention => "attention",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Shader::Elementwise => include_str!("../../../shaders/elementwise.wgsl"),
            Shader::Reduce => include_str!("../../../shaders/reduce.wgsl"),
            Shader::Matmul => include_str!("../../../shaders/matmul.wgsl"),
            Shader::Conv2d => include_str!("../../../shaders/conv2d.wgsl"),
            Shader::Pool => include_str!("../../../shaders/pool.wgsl"),
            Shader::Loss => include_str!("../../../shaders/loss.wgsl"),
            Shader::Optim => include_str!("../../../shaders/optim.wgsl"),
            Shader::Softmax => include_str!("../../../shaders/softmax.wgsl"),
            Shader::Norm => include_str!("../../../shaders/norm.wgsl"),
            Shader::Embedding => include_str!("../../../shaders/embedding.wgsl"),
            Shader::Attention => include_str!("../../../shaders/attention.wgsl"),
        }
    }
}
