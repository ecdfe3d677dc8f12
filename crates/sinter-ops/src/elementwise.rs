//! Elementwise ops: one-input functions, two-input functions with numpy broadcasting, the
//! broadcasting rules both backends follow, and the epilogue a product kernel applies to its outputs.

/// A one-input elementwise function. Its gradient is recomputed from the forward input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// max(x, 0); relu'(0) = 0.
    Relu,
    /// GELU in the tanh approximation 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))), as GPT-2 uses it.
    Gelu,
    /// tanh(x).
    Tanh,
    /// σ(x) = 1 / (1 + e⁻ˣ).
    Sigmoid,
    /// eˣ.
    Exp,
    /// Natural logarithm; NaN for x < 0, −∞ at 0.
    Log,
    /// −x.
    Neg,
    /// √x; NaN for x < 0.
    Sqrt,
    /// |x|; abs'(0) = 0.
    Abs,
    /// x².
    Square,
    /// 1 / x.
    Recip,
    /// x·σ(x) (SiLU, swish).
    Silu,
    /// 1 / √x (NaN for x < 0, +∞ at 0).
    Rsqrt,
    /// The exact GELU x·Φ(x) = 0.5x(1 + erf(x/√2)) (PyTorch's `approximate='none'`); [`UnaryOp::Gelu`]
    /// is the tanh form GPT-2 uses.
    GeluErf,
}

impl UnaryOp {
    /// Every unary op, in `code` order (for tests that cover them all).
    pub const ALL: [UnaryOp; 14] = [
        UnaryOp::Relu,
        UnaryOp::Gelu,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Neg,
        UnaryOp::Sqrt,
        UnaryOp::Abs,
        UnaryOp::Square,
        UnaryOp::Recip,
        UnaryOp::Silu,
        UnaryOp::Rsqrt,
        UnaryOp::GeluErf,
    ];

    /// The value of the WGSL override `OP` that selects this op.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The lower-case name used in node tags, profiles and kernel names (`relu`, `gelu`, …).
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Relu => "relu",
            UnaryOp::Gelu => "gelu",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Neg => "neg",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Abs => "abs",
            UnaryOp::Square => "square",
            UnaryOp::Recip => "recip",
            UnaryOp::Silu => "silu",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::GeluErf => "gelu_erf",
        }
    }

    /// Arithmetic per element of the forward, counting a transcendental as one.
    pub fn flops(self) -> u64 {
        match self {
            UnaryOp::Gelu => 9,
            UnaryOp::Sigmoid => 4,
            UnaryOp::Silu => 5,
            UnaryOp::GeluErf => 14,
            UnaryOp::Rsqrt => 2,
            UnaryOp::Relu | UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Square | UnaryOp::Recip => 1,
            UnaryOp::Tanh | UnaryOp::Exp | UnaryOp::Log | UnaryOp::Sqrt => 1,
        }
    }
}

/// What a matrix product or convolution does to each output before storing it: add the bias of
/// its channel (output column of a product, output channel of a convolution), then apply an
/// activation. The planner folds the bias add and unary nodes after a product into one
/// (`fuse.rs`); both backends compute it exactly as the separate nodes would: `act(v + bias)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Epilogue {
    /// Adds one bias value per channel (the kernel then takes a bias operand).
    pub bias: bool,
    /// Any unary op, applied after the bias.
    pub activation: Option<UnaryOp>,
}

impl Epilogue {
    /// The plain product: outputs stored as computed.
    pub const NONE: Epilogue = Epilogue {
        bias: false,
        activation: None,
    };

    /// Whether this epilogue leaves the outputs unchanged (no bias, no activation).
    pub fn is_none(self) -> bool {
        self == Self::NONE
    }

    /// Arithmetic per output element (the bias add, then the activation's).
    pub fn flops(self) -> u64 {
        self.bias as u64 + self.activation.map_or(0, UnaryOp::flops)
    }

    /// `+bias+relu`, `+gelu`, or empty: appended to the product's name.
    pub fn suffix(self) -> String {
        let bias = if self.bias { "+bias" } else { "" };
        match self.activation {
            Some(u) => format!("{bias}+{}", u.name()),
            None => bias.to_string(),
        }
    }
}

/// A two-input elementwise function, applied with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// a + b.
    Add,
    /// a − b.
    Sub,
    /// a · b.
    Mul,
    /// a / b (IEEE: ±∞ or NaN where b = 0).
    Div,
    /// max(a, b); the gradient goes to a where a ≥ b (a tie goes to a).
    Max,
    /// min(a, b); the gradient goes to a where a ≤ b (a tie goes to a).
    Min,
    /// 1.0 where a ≥ b, else 0.0.
    Ge,
    /// 1.0 where a == b, else 0.0.
    Eq,
    /// aᵇ as PyTorch computes it: a negative base takes an integer exponent (sign from its
    /// parity) and gives NaN otherwise; 0⁰ = 1.
    Pow,
}

impl BinaryOp {
    /// Every binary op, in `code` order (for tests that cover them all).
    pub const ALL: [BinaryOp; 9] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Ge,
        BinaryOp::Eq,
        BinaryOp::Pow,
    ];

    /// The value of the WGSL override `OP` that selects this op.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The lower-case name used in node tags, errors and profiles (`add`, `mul`, …).
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Max => "max",
            BinaryOp::Min => "min",
            BinaryOp::Ge => "ge",
            BinaryOp::Eq => "eq",
            BinaryOp::Pow => "pow",
        }
    }

    /// Arithmetic per output element: 3 for pow (log, multiply, exp), 1 for the others.
    pub fn flops(self) -> u64 {
        match self {
            BinaryOp::Pow => 3,
            _ => 1,
        }
    }
}

/// The most axes a broadcasting kernel handles (two `vec4<u32>` per shape in the uniform).
pub const MAX_RANK: usize = 6;

/// The numpy broadcast of two shapes: right-aligned, an axis of 1 stretches to the other's size.
/// `None` when some aligned pair differs and neither is 1.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let axis = |s: &[usize], k: usize| {
        // Axis k of the output, counted from the left, aligned to s from the right.
        (k + s.len()).checked_sub(rank).map_or(1, |j| s[j])
    };
    (0..rank)
        .map(|k| match (axis(a, k), axis(b, k)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// Row-major element strides of `shape` seen through the output shape `out` (right-aligned):
/// 0 on axes where `shape` has 1 (or no axis), so the same element is read along them.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let pad = out.len() - shape.len();
    let mut strides = vec![0; out.len()];
    let mut step = 1;
    for (j, &d) in shape.iter().enumerate().rev() {
        if d != 1 {
            strides[j + pad] = step;
        }
        step *= d;
    }
    strides
}
