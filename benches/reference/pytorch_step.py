"""PyTorch reference for `sinter bench step --model cnn --device cpu`: one training step (forward,
cross-entropy, backward, Adam) of the default CNN on the CPU, timed the same way (median of N steps)."""

import argparse
import statistics
import time

import torch
from torch import nn


def default_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = default_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        loss.item()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    ms = statistics.median(times) * 1e3
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"min {min(times) * 1e3:.2f} ms, max {max(times) * 1e3:.2f} ms")
    print(f"cnn pytorch-cpu batch {args.batch}: {ms:.2f} ms/step, {args.batch / ms * 1e3:.0f} samples/s")


if __name__ == "__main__":
    main()
