//! Launch builders for each kernel family: each function checks shapes, picks the entry point and
//! grid, and returns a prepared [`Dispatch`](crate::Dispatch). The WGSL lives in `shaders/<family>.wgsl`.

pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod embedding;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod softmax;
