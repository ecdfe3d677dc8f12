#!/usr/bin/env python3
"""The ResNet fixture sinter's tests compare against, made with PyTorch: one training step of a tiny
CIFAR ResNet in train mode (batch statistics), its gradients, AdamW and running statistics.

    python scripts/resnet_fixture.py make [tests/fixtures]   # writes resnet-tiny/

`make` builds in PyTorch the network sinter's `resnet::resnet(store, 8, 1, 10, ..)` builds, under
torchvision's names: conv1 (3×3, 1→16, no bias), bn1, ReLU; layer1.0, layer2.0, layer3.0, one
BasicBlock each of widths 16, 32, 64 (3×3 convolutions without bias, stride 2 at the start of
layers 2 and 3, a projection shortcut downsample.0 (1×1 convolution, same stride, no bias) and
downsample.1 (batch norm) where the shape changes); global average pooling, flatten, fc (64→10).
Batch norms have PyTorch's defaults (eps 1e-5, momentum 0.1). Their scales, shifts and running
statistics are random (not 1, 0, 0, 1), so a swapped or ignored one shows. Images are 12×12 (3×3
in layer3): at 8×8 whole channels of layer3 die in their ReLU, and their weights' gradients are
exactly 0, which leaves AdamW's first step (±lr·sign g) to rounding noise. It writes resnet-tiny/:
  model.safetensors        the state_dict before the step (num_batches_tracked as int64, as
                           PyTorch keeps it)
  grads.safetensors        d(mean cross-entropy)/d(parameter) for every parameter
  after_adamw.safetensors  the state_dict after one training step: the parameters after ONE
                           torch.optim.AdamW step from zero state (constant lr, no clipping; weight
                           decay on the convolution and fc weights only, as sinter's
                           DecayOn::Matrices), the running statistics after the training forward
                           (running_var from the unbiased batch variance), num_batches_tracked 1
  expected.json            the batch (images [4, 1, 12, 12] row-major, labels), logits [4, 10] of the
                           training forward, the loss, the AdamW settings and the decay group
The step runs in float64 from the f32 weights (so the reference carries no f32 rounding of its
own; each value is rounded once to f32 when stored). The script prints how far the same step in
f32 lands from it: the rounding noise an f32 engine should be within a small factor of.

Needs: pip install torch safetensors
"""
import copy
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

DEPTH, IN_CHANNELS, CLASSES, BATCH, SIZE = 8, 1, 10, 4, 12
ADAMW = {"lr": 1e-2, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1}


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """The CIFAR ResNet-(6n+2) of He et al. (2016), as sinter's resnet.rs builds it."""

    def __init__(self, depth, in_channels, classes):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        width = 16
        for stage, out in enumerate([16, 32, 64]):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(width, out, 2 if stage > 0 and b == 0 else 1))
                width = out
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build():
    torch.manual_seed(14)
    model = ResNet(DEPTH, IN_CHANNELS, CLASSES)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn_like(m.weight))
                m.bias.copy_(0.2 * torch.randn_like(m.bias))
                m.running_mean.copy_(0.3 * torch.randn_like(m.running_mean))
                m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)
    return model


def decays(name, p):
    """sinter's DecayOn::Matrices: parameters of 2 or more dimensions (no embeddings here)."""
    return p.dim() >= 2


def train_step(model, images, labels, dtype):
    """Logits, loss, gradients and the state_dict after one AdamW step of a copy in `dtype`."""
    m = copy.deepcopy(model).to(dtype).train()
    logits = m(images.to(dtype))
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    named = list(m.named_parameters())
    grads = {n: p.grad.detach().clone() for n, p in named}
    groups = [
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": ADAMW["weight_decay"]},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=ADAMW["lr"], betas=tuple(ADAMW["betas"]),
                            eps=ADAMW["eps"], foreach=False)
    opt.step()
    after = {n: t.detach().clone() for n, t in m.state_dict().items()}
    return logits.detach(), loss.item(), grads, after


def f32(d):
    return {n: (t if t.dtype == torch.int64 else t.to(torch.float32)).contiguous()
            for n, t in d.items()}


def make(root):
    from safetensors.torch import save_file

    model = build()
    g = torch.Generator().manual_seed(3)
    images = torch.randn(BATCH, IN_CHANNELS, SIZE, SIZE, generator=g)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=g)
    out = os.path.join(root, "resnet-tiny")
    os.makedirs(out, exist_ok=True)
    save_file(f32(model.state_dict()), os.path.join(out, "model.safetensors"))
    logits, loss, grads, after = train_step(model, images, labels, torch.float64)
    logits32, loss32, grads32, after32 = train_step(model, images, labels, torch.float32)
    save_file(f32(grads), os.path.join(out, "grads.safetensors"))
    save_file(f32(after), os.path.join(out, "after_adamw.safetensors"))
    named = dict(model.named_parameters())
    expected = {
        "depth": DEPTH,
        "image": [IN_CHANNELS, SIZE, SIZE],
        "classes": CLASSES,
        "images": images.reshape(-1).tolist(),
        "labels": labels.tolist(),
        "logits": logits.reshape(-1).tolist(),
        "loss": loss,
        "adamw": dict(ADAMW, decayed=[n for n, p in named.items() if decays(n, p)]),
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f)
    worst = lambda a, b, keys: max((a[n].double() - b[n].double()).abs().max().item() for n in keys)
    rel = lambda a, b: max(((a[n].double() - b[n]).abs() / b[n].abs().max()).max().item() for n in b)
    stats = [n for n in after if "running" in n]
    print(f"f32 vs f64: logits {(logits32.double() - logits).abs().max().item():.2e}; loss "
          f"{abs(loss32 - loss):.2e}; gradients {worst(grads32, grads, grads):.2e} (relative to "
          f"each tensor's largest {rel(grads32, grads):.2e}); parameters after AdamW "
          f"{worst(after32, after, named):.2e}; running statistics {worst(after32, after, stats):.2e}")
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"wrote {out} ({size // 1024} KiB): loss {loss:.6f}, "
          f"{sum(p.numel() for p in named.values())} parameters")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "make":
        make(sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures")
    else:
        sys.exit(__doc__)
