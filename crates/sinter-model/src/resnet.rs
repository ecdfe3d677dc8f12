//! Residual networks for small images (He et al. 2016): the batch-norm module, the basic block
//! with its projection shortcut, and the CIFAR-style ResNet-(6n+2) under torchvision's names.

use crate::error::{ModelError, Result};
use crate::graph::{ConvConfig, Tensor};
use crate::nn::{param, Conv2d, Layer, Linear, Mode, Sequential};
use crate::vars::{Init, VarId, VarKind, VarStore};
use sinter_ops::elementwise::UnaryOp;
use sinter_ops::reduce::ReduceOp;

/// Batch normalization over the channels of `x: [N, C, H, W]`, as PyTorch's `nn.BatchNorm2d`
/// (affine, tracking running statistics). In training it normalizes with the batch's mean and
/// biased variance and records the in-place update of the running statistics
/// (`running = (1 − momentum)·running + momentum·batch`, the variance unbiased); in evaluation
/// it normalizes with the running statistics.
#[derive(Clone, Debug)]
pub struct BatchNorm2d {
    /// `<name>.weight: [C]` (γ), a parameter, initially 1.
    pub weight: VarId,
    /// `<name>.bias: [C]` (β), a parameter, initially 0.
    pub bias: VarId,
    /// `<name>.running_mean: [C]`, a buffer, initially 0.
    pub running_mean: VarId,
    /// `<name>.running_var: [C]`, a buffer, initially 1.
    pub running_var: VarId,
    /// `<name>.num_batches_tracked: []`, a buffer counting the training steps (stored as f32,
    /// exact to 2²⁴ steps).
    pub num_batches_tracked: VarId,
    /// Channels (C).
    pub channels: usize,
    /// Added to the variance before the square root (PyTorch's default 1e-5).
    pub eps: f32,
    /// Weight of each new batch in the running statistics (PyTorch's default 0.1).
    pub momentum: f32,
}

impl BatchNorm2d {
    /// A batch norm over `channels` with PyTorch's defaults (eps 1e-5, momentum 0.1).
    #[track_caller]
    pub fn new(store: &mut VarStore, name: &str, channels: usize) -> Self {
        let c = channels;
        let mut add = |what: &str, shape: &[usize], kind: VarKind, value: f32| {
            let n = shape.iter().product();
            store.add(&format!("{name}.{what}"), shape, kind, vec![value; n])
        };
        Self {
            weight: add("weight", &[c], VarKind::Param, 1.0),
            bias: add("bias", &[c], VarKind::Param, 0.0),
            running_mean: add("running_mean", &[c], VarKind::Buffer, 0.0),
            running_var: add("running_var", &[c], VarKind::Buffer, 1.0),
            num_batches_tracked: add("num_batches_tracked", &[], VarKind::Buffer, 0.0),
            channels: c,
            eps: 1e-5,
            momentum: 0.1,
        }
    }

    /// Records the normalization of `x: [N, C, H, W]` (same shape out); in [`Mode::Train`] also
    /// the running-statistics update. [`ModelError::Shape`] if `x` is not `[N, C, H, W]` with
    /// this norm's C, or (in training) a channel holds a single value.
    #[track_caller]
    pub fn forward(&self, store: &VarStore, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let shape = x.shape();
        if shape.len() != 4 || shape[1] != self.channels {
            return Err(ModelError::Shape {
                op: "batch_norm2d",
                detail: format!(
                    "expects x [N, {}, H, W] for its {} channels, got {shape:?}",
                    self.channels, self.channels
                ),
                location: std::panic::Location::caller().to_string(),
            });
        }
        let g = x.builder();
        let weight = param(&g, store, self.weight);
        let bias = param(&g, store, self.bias);
        match mode {
            Mode::Train => {
                let (y, stats) = x.batch_norm2d(&weight, &bias, self.eps)?;
                stats.batch_norm_update(
                    self.running_mean,
                    self.running_var,
                    self.num_batches_tracked,
                    self.momentum,
                )?;
                Ok(y)
            }
            Mode::Eval => {
                // y = x·scale + shift with scale = γ/√(running_var + eps) and
                // shift = β − running_mean·scale, per channel.
                let c = [self.channels, 1, 1];
                let mean = param(&g, store, self.running_mean);
                let var = param(&g, store, self.running_var);
                let scale = weight.mul(&var.affine(1.0, self.eps as f64).rsqrt())?;
                let shift = bias.sub(&mean.mul(&scale)?)?;
                x.mul(&scale.reshape(&c)?)?.add(&shift.reshape(&c)?)
            }
        }
    }
}

/// The basic residual block of ResNet-18/34 and the CIFAR ResNets: relu(bn1(conv1(x))), then
/// bn2(conv2(·)), plus the shortcut (x, or a 1×1 convolution and batch norm where the shape
/// changes), then relu. Names as torchvision's: `conv1`, `bn1`, `conv2`, `bn2`,
/// `downsample.0` (the 1×1 convolution) and `downsample.1` (its batch norm).
#[derive(Clone, Debug)]
pub struct BasicBlock {
    /// 3×3, stride `stride`, no bias.
    pub conv1: Conv2d,
    /// After conv1.
    pub bn1: BatchNorm2d,
    /// 3×3, stride 1, no bias.
    pub conv2: Conv2d,
    /// After conv2.
    pub bn2: BatchNorm2d,
    /// The projection shortcut, where the stride or the width changes.
    pub downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl BasicBlock {
    /// A block from `in_channels` to `out_channels` whose first convolution has `stride`;
    /// convolutions Kaiming-normal (fan-out) as torchvision initializes them.
    #[track_caller]
    pub fn new(
        store: &mut VarStore,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        rng: &mut Init,
    ) -> Self {
        let conv3 = |stride: usize| ConvConfig {
            stride: [stride, stride],
            pad: [1, 1],
            dilation: [1, 1],
        };
        let conv1 = Conv2d::no_bias(
            store,
            &format!("{name}.conv1"),
            in_channels,
            out_channels,
            3,
            conv3(stride),
            rng,
        );
        let bn1 = BatchNorm2d::new(store, &format!("{name}.bn1"), out_channels);
        let conv2 = Conv2d::no_bias(
            store,
            &format!("{name}.conv2"),
            out_channels,
            out_channels,
            3,
            conv3(1),
            rng,
        );
        let bn2 = BatchNorm2d::new(store, &format!("{name}.bn2"), out_channels);
        let downsample = (stride != 1 || in_channels != out_channels).then(|| {
            let project = ConvConfig {
                stride: [stride, stride],
                pad: [0, 0],
                dilation: [1, 1],
            };
            (
                Conv2d::no_bias(
                    store,
                    &format!("{name}.downsample.0"),
                    in_channels,
                    out_channels,
                    1,
                    project,
                    rng,
                ),
                BatchNorm2d::new(store, &format!("{name}.downsample.1"), out_channels),
            )
        });
        Self {
            conv1,
            bn1,
            conv2,
            bn2,
            downsample,
        }
    }

    /// Records the block on `x: [N, in_channels, H, W]` → `[N, out_channels, H/stride, W/stride]`
    /// (rounded up); shape errors as its convolutions and batch norms give them.
    pub fn forward(&self, store: &VarStore, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let g = x.builder();
        let h = g.scoped("conv1", || self.conv1.forward(store, x))?;
        let h = g
            .scoped("bn1", || self.bn1.forward(store, &h, mode))?
            .relu();
        let h = g.scoped("conv2", || self.conv2.forward(store, &h))?;
        let h = g.scoped("bn2", || self.bn2.forward(store, &h, mode))?;
        let shortcut = match &self.downsample {
            None => x.clone(),
            Some((conv, bn)) => g.scoped("downsample", || -> Result<Tensor> {
                let s = g.scoped("0", || conv.forward(store, x))?;
                g.scoped("1", || bn.forward(store, &s, mode))
            })?,
        };
        Ok(h.add(&shortcut)?.relu())
    }
}

/// The mean of each channel over height and width: `x: [N, C, H, W]` → `[N, C, 1, 1]`.
#[track_caller]
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    let s = x.shape();
    if s.len() != 4 {
        return Err(ModelError::Shape {
            op: "global_avg_pool",
            detail: format!("expects x [N, C, H, W], got {s:?}"),
            location: std::panic::Location::caller().to_string(),
        });
    }
    x.reshape(&[s[0], s[1], s[2] * s[3]])?
        .reduce(ReduceOp::Mean, 2, true)?
        .reshape(&[s[0], s[1], 1, 1])
}

/// The depths the CIFAR ResNet comes in, as the message of a refused depth lists them.
pub const RESNET_DEPTHS: &str = "20, 32, 44, 56, 110 or any 6n+2 with n ≥ 1";

/// Blocks per stage of a CIFAR ResNet of `depth` layers (depth = 6n + 2), or
/// [`ModelError::Config`] naming the depth and the valid ones.
pub fn resnet_blocks(depth: usize) -> Result<usize> {
    if depth < 8 || (depth - 2) % 6 != 0 {
        return Err(ModelError::Config(format!(
            "a CIFAR ResNet has depth 6n+2 (n blocks per stage); {depth} is not one: use {RESNET_DEPTHS}"
        )));
    }
    Ok((depth - 2) / 6)
}

/// The CIFAR-style ResNet of He et al. (2016) with `depth` = 6n+2 layers: a 3×3 convolution to 16
/// channels with batch norm and ReLU, three stages of n [`BasicBlock`]s of widths 16, 32, 64
/// (stride 2 at the start of stages 2 and 3, 1×1 projection shortcuts where the shape changes),
/// global average pooling and a linear head to `classes`. Parameter and buffer names are
/// torchvision's (`conv1.weight`, `bn1.running_mean`, `layer2.0.downsample.0.weight`,
/// `fc.weight`, …), so a state_dict moves both ways. [`ModelError::Config`] for another depth.
pub fn resnet(
    store: &mut VarStore,
    depth: usize,
    in_channels: usize,
    classes: usize,
    rng: &mut Init,
) -> Result<Sequential> {
    let blocks = resnet_blocks(depth)?;
    let mut m = Sequential::new();
    m.push(
        "conv1",
        Layer::Conv2d(Conv2d::no_bias(
            store,
            "conv1",
            in_channels,
            16,
            3,
            ConvConfig::padded(1),
            rng,
        )),
    )
    .push(
        "bn1",
        Layer::BatchNorm2d(BatchNorm2d::new(store, "bn1", 16)),
    )
    .push("relu", Layer::Activation(UnaryOp::Relu));
    let mut width = 16;
    for (stage, out) in [16, 32, 64].into_iter().enumerate() {
        for b in 0..blocks {
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            let name = format!("layer{}.{b}", stage + 1);
            let block = BasicBlock::new(store, &name, width, out, stride, rng);
            m.push(&name, Layer::BasicBlock(Box::new(block)));
            width = out;
        }
    }
    m.push("avgpool", Layer::GlobalAvgPool)
        .push("flatten", Layer::Flatten)
        .push(
            "fc",
            Layer::Linear(Linear::new(store, "fc", 64, classes, rng)),
        );
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depths_are_6n_plus_2() {
        assert_eq!(resnet_blocks(20).unwrap(), 3);
        assert_eq!(resnet_blocks(8).unwrap(), 1);
        for bad in [0, 2, 18, 21] {
            let e = resnet_blocks(bad).unwrap_err().to_string();
            assert!(e.contains(&bad.to_string()) && e.contains("6n+2"), "{e}");
        }
    }

    #[test]
    fn names_are_torchvision_s() {
        let mut store = VarStore::new();
        resnet(&mut store, 20, 3, 10, &mut Init::new(0)).unwrap();
        store.check().unwrap();
        let names: Vec<&str> = store.vars.iter().map(|v| v.name.as_str()).collect();
        for want in [
            "conv1.weight",
            "bn1.weight",
            "bn1.running_mean",
            "bn1.num_batches_tracked",
            "layer1.0.conv1.weight",
            "layer1.0.bn1.running_var",
            "layer1.2.bn2.bias",
            "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.weight",
            "layer3.0.downsample.1.running_var",
            "fc.weight",
            "fc.bias",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert!(!names.contains(&"layer1.0.downsample.0.weight"));
        assert!(!names.contains(&"conv1.bias"));
        // 0.27M parameters, as the paper's ResNet-20 (with 1×1 projections: 0.272M).
        let params: usize = store
            .ids(VarKind::Param)
            .iter()
            .map(|&id| store.get(id).numel())
            .sum();
        assert_eq!(params, 272_474);
        assert_eq!(store.get(store.find("fc.weight").unwrap()).shape, [10, 64]);
        assert_eq!(store.ids(VarKind::Buffer).len(), 3 * (1 + 9 * 2 + 2));
    }
}
