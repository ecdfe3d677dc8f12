//! Modules: layers that own parameters in a [`VarStore`] and record their forward pass into a
//! graph. Parameters are named and initialized as PyTorch does (Kaiming-uniform, seeded).

use crate::error::Result;
use crate::graph::{ConvConfig, GraphBuilder, PoolConfig, Tensor};
use crate::vars::{Init, VarId, VarKind, VarStore};
use sinter_ops::elementwise::UnaryOp;

/// `y = x · Wᵀ + b`, with `W: [out, in]` as in PyTorch.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `<name>.weight: [out_features, in_features]`.
    pub weight: VarId,
    /// `<name>.bias: [out_features]`.
    pub bias: VarId,
    /// Size of the last axis of the input.
    pub in_features: usize,
    /// Size of the last axis of the output.
    pub out_features: usize,
}

impl Linear {
    /// PyTorch's default initialization: weight and bias uniform in ±1/√in
    /// (Kaiming-uniform with a = √5 reduces to that bound).
    #[track_caller]
    pub fn new(
        store: &mut VarStore,
        name: &str,
        in_features: usize,
        out_features: usize,
        rng: &mut Init,
    ) -> Self {
        let bound = 1.0 / (in_features as f32).sqrt();
        let weight = store.param_uniform(
            &format!("{name}.weight"),
            &[out_features, in_features],
            bound,
            rng,
        );
        let bias = store.param_uniform(&format!("{name}.bias"), &[out_features], bound, rng);
        Self {
            weight,
            bias,
            in_features,
            out_features,
        }
    }

    /// Records `y = x · Wᵀ + b` for `x: [.., in_features]` → `y: [.., out_features]` (any
    /// number of leading axes); [`crate::ModelError::Shape`] if the last axis is not
    /// `in_features` or `x` has rank < 1.
    pub fn forward(&self, store: &VarStore, x: &Tensor) -> Result<Tensor> {
        let g = x.builder();
        let w = param(&g, store, self.weight);
        let b = param(&g, store, self.bias);
        let shape = x.shape();
        if shape.len() <= 2 {
            return x.matmul_t(&w, false, true)?.add(&b);
        }
        // [.., in] → [rows, in] so the weight gradient is one product, not a sum over a batch.
        let rows = shape[..shape.len() - 1].iter().product();
        let y = x
            .reshape(&[rows, self.in_features])?
            .matmul_t(&w, false, true)?
            .add(&b)?;
        let mut out = shape;
        *out.last_mut().expect("rank > 2") = self.out_features;
        y.reshape(&out)
    }
}

/// 2-D convolution, `weight: [out, in, k, k]`, with a bias unless made by [`Conv2d::no_bias`].
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// `<name>.weight: [out_channels, in_channels, kernel, kernel]`.
    pub weight: VarId,
    /// `<name>.bias: [out_channels]`; `None` for a convolution without bias (one followed by a
    /// batch norm, whose shift makes a bias redundant).
    pub bias: Option<VarId>,
    /// Stride, padding and dilation.
    pub config: ConvConfig,
    /// Channels of the output (the weight's first axis).
    pub out_channels: usize,
}

impl Conv2d {
    /// A `kernel×kernel` convolution from `in_channels` to `out_channels`, initialized as
    /// PyTorch's `nn.Conv2d` does: weight and bias uniform in ±1/√(in_channels·kernel²).
    #[allow(clippy::too_many_arguments)]
    #[track_caller]
    pub fn new(
        store: &mut VarStore,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        config: ConvConfig,
        rng: &mut Init,
    ) -> Self {
        let fan_in = in_channels * kernel * kernel;
        let bound = 1.0 / (fan_in as f32).sqrt();
        let weight = store.param_uniform(
            &format!("{name}.weight"),
            &[out_channels, in_channels, kernel, kernel],
            bound,
            rng,
        );
        let bias = store.param_uniform(&format!("{name}.bias"), &[out_channels], bound, rng);
        Self {
            weight,
            bias: Some(bias),
            config,
            out_channels,
        }
    }

    /// A `kernel×kernel` convolution without bias, initialized as torchvision's ResNet does:
    /// weight normal with standard deviation √(2 / (out_channels·kernel²)) (Kaiming-normal,
    /// fan-out, for a ReLU).
    #[allow(clippy::too_many_arguments)]
    #[track_caller]
    pub fn no_bias(
        store: &mut VarStore,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        config: ConvConfig,
        rng: &mut Init,
    ) -> Self {
        let shape = [out_channels, in_channels, kernel, kernel];
        let std = (2.0 / (out_channels * kernel * kernel) as f32).sqrt();
        let values = rng.normal(shape.iter().product(), std);
        let weight = store.add(&format!("{name}.weight"), &shape, VarKind::Param, values);
        Self {
            weight,
            bias: None,
            config,
            out_channels,
        }
    }

    /// Records `conv2d(x, W) + b` (no `+ b` without a bias) for `x: [N, in_channels, H, W]` →
    /// `[N, out_channels, OH, OW]`; [`crate::ModelError::Shape`] if the channels or the
    /// spatial size do not fit.
    pub fn forward(&self, store: &VarStore, x: &Tensor) -> Result<Tensor> {
        let g = x.builder();
        let w = param(&g, store, self.weight);
        let y = x.conv2d(&w, self.config)?;
        match self.bias {
            Some(bias) => y.add(&param(&g, store, bias).reshape(&[self.out_channels, 1, 1])?),
            None => Ok(y),
        }
    }
}

/// The graph leaf of parameter `id`, tagged with the last part of its name (`weight`, `bias`).
pub(crate) fn param(g: &GraphBuilder, store: &VarStore, id: VarId) -> Tensor {
    let info = store.get(id);
    let short = info
        .name
        .rsplit('.')
        .next()
        .unwrap_or(&info.name)
        .to_string();
    g.var(id, &info.shape, &short)
}

/// Dropout with a mask fed at every step: the trainer draws it from its seeded generator, so the
/// same seed gives the same masks on every backend. Off in evaluation.
#[derive(Clone, Debug)]
pub struct Dropout {
    /// Probability of dropping a unit, in `[0, 1)`; kept units are scaled by 1/(1−p).
    pub p: f32,
}

/// One layer of a [`Sequential`].
#[derive(Clone, Debug)]
pub enum Layer {
    /// A fully connected layer over the last axis.
    Linear(Linear),
    /// A convolution with bias over `[N, C, H, W]`.
    Conv2d(Conv2d),
    /// Max pooling over `[N, C, H, W]` (no parameters).
    MaxPool2d(PoolConfig),
    /// Average pooling over `[N, C, H, W]` (no parameters).
    AvgPool2d(PoolConfig),
    /// `[N, …]` → `[N, ∏…]`, a reshape (no copy).
    Flatten,
    /// An elementwise function (`relu`, `gelu`, …).
    Activation(UnaryOp),
    /// Inverted dropout in training, the identity in evaluation.
    Dropout(Dropout),
    /// Batch normalization over the channels of `[N, C, H, W]` (batch statistics in training,
    /// running statistics in evaluation).
    BatchNorm2d(crate::resnet::BatchNorm2d),
    /// A residual block of two 3×3 convolutions with batch norms (see [`crate::resnet`]).
    BasicBlock(Box<crate::resnet::BasicBlock>),
    /// The mean over height and width: `[N, C, H, W]` → `[N, C, 1, 1]` (PyTorch's
    /// `AdaptiveAvgPool2d((1, 1))`; no parameters).
    GlobalAvgPool,
}

/// Whether a forward pass is for training (dropout on, batch statistics) or evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Dropout masks are fed and applied; batch norms normalize with the batch's statistics
    /// and update their running statistics.
    Train,
    /// Dropout is the identity; no mask inputs are recorded; batch norms use their running
    /// statistics and change nothing.
    Eval,
}

/// Named layers applied in order, as `torch.nn.Sequential` with named children.
#[derive(Clone, Debug, Default)]
pub struct Sequential {
    /// `(name, layer)` in application order; the name prefixes the layer's parameter names and
    /// node tags, so it should be the one its parameters were created under.
    pub layers: Vec<(String, Layer)>,
}

impl Sequential {
    /// No layers: the identity.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `layer` under `name`; returns `self` for chaining.
    pub fn push(&mut self, name: &str, layer: Layer) -> &mut Self {
        self.layers.push((name.to_string(), layer));
        self
    }

    /// Records the forward pass. In training mode every dropout layer adds an input
    /// `<name>.mask` that the caller feeds (see [`Sequential::dropout_rates`]).
    pub fn forward(&self, store: &VarStore, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let g = x.builder();
        let mut h = x.clone();
        for (name, layer) in &self.layers {
            h = g.scoped(name, || -> Result<Tensor> {
                Ok(match layer {
                    Layer::Linear(l) => l.forward(store, &h)?,
                    Layer::Conv2d(c) => c.forward(store, &h)?,
                    Layer::MaxPool2d(p) => h.max_pool2d(*p)?,
                    Layer::AvgPool2d(p) => h.avg_pool2d(*p)?,
                    Layer::Flatten => h.flatten(1)?,
                    Layer::Activation(u) => h.unary(*u),
                    Layer::Dropout(d) => h.dropout(d.p, mode)?,
                    Layer::BatchNorm2d(b) => b.forward(store, &h, mode)?,
                    Layer::BasicBlock(b) => b.forward(store, &h, mode)?,
                    Layer::GlobalAvgPool => crate::resnet::global_avg_pool(&h)?,
                })
            })?;
        }
        Ok(h)
    }

    /// The dropout probabilities of the layers, in the order their masks are fed.
    pub fn dropout_rates(&self) -> Vec<f32> {
        self.layers
            .iter()
            .filter_map(|(_, l)| match l {
                Layer::Dropout(d) => Some(d.p),
                _ => None,
            })
            .collect()
    }
}

/// The project's default network, as in its founding document: two 3×3 convolutions with
/// ReLU and 2×2 max-pooling, then two linear layers. Parameter names match PyTorch's `state_dict`.
/// `image` is `[height, width]`; for 28×28 MNIST digits `fc1` is 64·7·7 → 128.
pub fn default_cnn(
    store: &mut VarStore,
    in_channels: usize,
    image: [usize; 2],
    classes: usize,
    rng: &mut Init,
) -> Sequential {
    let flat = 64 * (image[0] / 4) * (image[1] / 4);
    let mut m = Sequential::new();
    m.push(
        "conv1",
        Layer::Conv2d(Conv2d::new(
            store,
            "conv1",
            in_channels,
            32,
            3,
            ConvConfig::padded(1),
            rng,
        )),
    )
    .push("relu1", Layer::Activation(UnaryOp::Relu))
    .push("pool1", Layer::MaxPool2d(PoolConfig::square(2)))
    .push(
        "conv2",
        Layer::Conv2d(Conv2d::new(
            store,
            "conv2",
            32,
            64,
            3,
            ConvConfig::padded(1),
            rng,
        )),
    )
    .push("relu2", Layer::Activation(UnaryOp::Relu))
    .push("pool2", Layer::MaxPool2d(PoolConfig::square(2)))
    .push("flatten", Layer::Flatten)
    .push(
        "fc1",
        Layer::Linear(Linear::new(store, "fc1", flat, 128, rng)),
    )
    .push("relu3", Layer::Activation(UnaryOp::Relu))
    .push(
        "fc2",
        Layer::Linear(Linear::new(store, "fc2", 128, classes, rng)),
    );
    m
}

/// A perceptron with two hidden layers: flatten, `in → hidden → hidden → classes` with ReLU.
pub fn mlp(
    store: &mut VarStore,
    in_features: usize,
    hidden: usize,
    classes: usize,
    rng: &mut Init,
) -> Sequential {
    let mut m = Sequential::new();
    m.push("flatten", Layer::Flatten)
        .push(
            "fc1",
            Layer::Linear(Linear::new(store, "fc1", in_features, hidden, rng)),
        )
        .push("relu1", Layer::Activation(UnaryOp::Relu))
        .push(
            "fc2",
            Layer::Linear(Linear::new(store, "fc2", hidden, hidden, rng)),
        )
        .push("relu2", Layer::Activation(UnaryOp::Relu))
        .push(
            "fc3",
            Layer::Linear(Linear::new(store, "fc3", hidden, classes, rng)),
        );
    m
}
