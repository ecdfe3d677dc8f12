"""PyTorch reference for `sinter bench step --model gpt2 --size 124M --batch 4 --context 64`: one
training step (forward, cross-entropy, backward, Adam at lr 1e-3, as `bench step` runs) of GPT-2 124M on random tokens, timed the
same way (median of N steps after warm-up). The model is sinter's (benches/reference/baby_gpt.py).

    python benches/reference/gpt2_step.py --threads 2
"""

import argparse
import statistics
import time

import torch

from baby_gpt import Gpt2


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    p.add_argument("--vocab", type=int, default=50257, help="65: the shipped corpus's characters")
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    vocab = a.vocab
    model = Gpt2(vocab, max(1024, a.context), a.width, a.heads, a.layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
    times = []
    for step in range(a.warmup + a.steps):
        ids = torch.randint(0, vocab, (a.batch, a.context))
        targets = torch.randint(0, vocab, (a.batch, a.context))
        start = time.perf_counter()
        loss = model(ids, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= a.warmup:
            times.append(time.perf_counter() - start)
    ms = 1000 * statistics.median(times)
    print(f"pytorch {torch.__version__}, {torch.get_num_threads()} threads: gpt2 {a.layers}x{a.width} vocab {vocab} batch {a.batch} "
          f"context {a.context}: {ms:.1f} ms/step (median of {a.steps}), best {1000 * min(times):.1f}")


if __name__ == "__main__":
    main()
