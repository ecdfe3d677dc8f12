"""PyTorch replica of `sinter train --model gpt2` in nanoGPT's "baby GPT" CPU configuration, for
BENCHMARKS.md: the same model, optimizer, schedule, data and validation windows, timed the same way.

    python benches/reference/baby_gpt.py --data ../shared/datasets/tinyshakespeare/input.txt

The model is sinter's GPT-2 (learned positions, pre-norm blocks with a fused q/k/v projection,
GELU-tanh MLP 4x, final layer norm, head tied to the token embedding, biases everywhere), sized
4 layers / 4 heads / width 128 / context 64, initialized as sinter initializes it. Characters are
the tokens; the text splits 90/10 into training and validation. Training draws 12 random windows
per step; AdamW (lr 1e-3, betas 0.9/0.99, eps 1e-8, weight decay 0.1 on the linear weights only,
not on biases, norms or embeddings), gradients clipped to norm 1, 100 warm-up steps then cosine
to 1e-4 at step 2000 (sinter's formula). Validation is sinter's: 16 batches of 12 windows spread
evenly over the validation split, the mean of the 16 batch losses.
"""

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, width, heads, layers):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.c_attn = nn.Linear(width, 3 * width)
        self.attn_proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.c_fc = nn.Linear(width, 4 * width)
        self.mlp_proj = nn.Linear(4 * width, width)
        resid_std = 0.02 / math.sqrt(2 * layers)
        for lin, std in [(self.c_attn, 0.02), (self.attn_proj, resid_std),
                         (self.c_fc, 0.02), (self.mlp_proj, resid_std)]:
            nn.init.normal_(lin.weight, std=std)
            nn.init.zeros_(lin.bias)

    def forward(self, x):
        b, t, c = x.shape
        h = self.heads
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, h, c // h).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class Gpt2(nn.Module):
    def __init__(self, vocab, positions, width, heads, layers):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(positions, width)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)
        self.blocks = nn.ModuleList(Block(width, heads, layers) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)

    def forward(self, ids, targets):
        t = ids.shape[1]
        x = self.wte(ids) + self.wpe(torch.arange(t))
        for blk in self.blocks:
            x = blk(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def lr_factor(step, warmup, total, min_factor):
    """sinter's `Schedule::Cosine::factor`."""
    if step < warmup:
        return (step + 1) / warmup
    t = min((step - warmup) / max(total - warmup, 1), 1.0)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * t))


def adamw(model, lr, betas):
    """sinter's AdamW groups: decay 0.1 on the linear weights, none on biases, norms, embeddings."""
    decay = [p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() == 2
             and not n.startswith(("wte", "wpe"))]
    rest = [p for p in model.parameters() if not any(p is d for d in decay)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                              {"params": rest, "weight_decay": 0.0}],
                             lr=lr, betas=betas, eps=1e-8, foreach=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    text = open(a.data, encoding="utf-8").read()
    chars = sorted(set(text))
    index = {ch: i for i, ch in enumerate(chars)}
    ids = torch.tensor([index[ch] for ch in text], dtype=torch.long)
    cut = len(ids) * 9 // 10
    train, valid = ids[:cut], ids[cut:]
    model = Gpt2(len(chars), a.context, a.width, a.heads, a.layers)
    opt = adamw(model, a.lr, (0.9, 0.99))
    t, b = a.context, a.batch

    def windows(split, starts):
        x = torch.stack([split[s:s + t] for s in starts])
        y = torch.stack([split[s + 1:s + t + 1] for s in starts])
        return x, y

    @torch.no_grad()
    def validate():
        model.eval()
        batches, span = 16, len(valid) - t - 1
        total = 0.0
        for k in range(batches):
            starts = [(k * b + j) * span // (b * batches) for j in range(b)]
            total += model(*windows(valid, starts)).item()
        model.train()
        return total / batches

    train_secs = 0.0
    for step in range(a.steps):
        started = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = a.lr * lr_factor(step, a.warmup, a.steps, a.min_lr / a.lr)
        starts = torch.randint(0, len(train) - t - 1, (b,)).tolist()
        loss = model(*windows(train, starts))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        train_secs += time.perf_counter() - started
        done = step + 1
        if done % a.eval_every == 0 or done == a.steps:
            print(f"step {done}: train loss {loss.item():.4f}, validation loss {validate():.4f}", flush=True)
    print(f"pytorch {torch.__version__}, {torch.get_num_threads()} threads: "
          f"{1000 * train_secs / a.steps:.2f} ms/step, {train_secs:.1f} s of training steps")


if __name__ == "__main__":
    main()
