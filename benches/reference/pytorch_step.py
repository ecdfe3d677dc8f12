"""PyTorch reference for `sinter bench step --model cnn|resnet --device cpu`: one training step
(forward, cross-entropy, backward, Adam) of the default CNN or of the CIFAR-style ResNet-(6n+2) on
28×28 digits, on the CPU, timed the same way (median of N steps).

    python benches/reference/pytorch_step.py --threads 2 --model resnet --depth 20
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


def default_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); a 1×1 projection where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


def resnet(depth: int, in_channels: int = 1, classes: int = 10) -> nn.Module:
    """He et al. (2016)'s CIFAR ResNet: a 3×3 stem of 16, three stages of (depth − 2)/6 basic blocks
    of widths 16/32/64 (stride 2 into stages 2 and 3), global average pool, linear head."""
    n = (depth - 2) // 6
    layers, width = [nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for stage, out in enumerate([16, 32, 64]):
        for b in range(n):
            layers.append(BasicBlock(width, out, 2 if stage > 0 and b == 0 else 1))
            width = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes)]
    return nn.Sequential(*layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=["cnn", "resnet"], default="cnn")
    parser.add_argument("--depth", type=int, default=20, help="resnet: 6n+2 layers")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: the same step on the GPU (for benches/gpu-checks.sh)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = (default_cnn() if args.model == "cnn" else resnet(args.depth)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(args.batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        loss.item()  # waits for the step, as sinter reads its loss back
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    ms = statistics.median(times) * 1e3
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"min {min(times) * 1e3:.2f} ms, max {max(times) * 1e3:.2f} ms")
    print(f"{args.model} pytorch-{args.device} batch {args.batch}: {ms:.2f} ms/step, {args.batch / ms * 1e3:.0f} samples/s")


if __name__ == "__main__":
    main()
