#!/usr/bin/env python3
"""The GPT-2 fixtures sinter's tests compare against, made with Hugging Face `transformers`.

    python scripts/gpt2_fixture.py make [tests/fixtures]   # writes gpt2-tiny/ and tokenizer/
    python scripts/gpt2_fixture.py check DIR [IDS.json]    # loads DIR with transformers

`make` builds a tiny random GPT-2 (2 layers, 2 heads, width 32, context 16, vocabulary 101),
saves it with save_pretrained into gpt2-tiny/, with expected.json: one batch of token ids and
targets, the logits and the mean cross-entropy transformers computes for them (in f32). For
the training step it adds, with the model in float64 (so that the reference carries no f32
rounding of its own; each value rounded once to f32 when stored):
  grads.safetensors        d(mean cross-entropy)/d(parameter) for every parameter, named as
                           GPT2LMHeadModel.named_parameters() names them (the tied lm_head is
                           transformer.wte.weight, both gradients summed)
  after_adamw.safetensors  every parameter after ONE torch.optim.AdamW step from zero state
                           (constant lr, no clipping), same names
and in expected.json "loss_f64" and "adamw": the step's settings and the names in the decay
group (2-D weights except wte/wpe, as sinter's DecayOn::Matrices; no decay on biases, layer
norms or the embeddings). It prints how far the same computation in f32 lands from the f64
reference: the rounding noise an f32 engine should be within a small factor of.
It also trains a small byte-level BPE tokenizer.json (tokenizer/) with the `tokenizers`
package, with the ids it gives a sample text.

`check` loads a folder sinter wrote (`sinter train --model gpt2 --save DIR`) with
GPT2LMHeadModel.from_pretrained and prints the loss and logits of the ids in IDS.json (default:
the fixture's), and how far they are from the fixture's expected values when the weights match.

Needs: pip install torch transformers tokenizers safetensors
"""
import json
import os
import sys

import torch
import torch.nn.functional as F


def make(root):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(14)
    config = GPT2Config(
        n_layer=2, n_head=2, n_embd=32, n_positions=16, vocab_size=101,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=100, eos_token_id=100,
    )
    model = GPT2LMHeadModel(config).eval()
    # Random layer norms too, so a swapped weight and bias shows in the logits.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    out = os.path.join(root, "gpt2-tiny")
    model.save_pretrained(out, safe_serialization=True)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 101, (2, 16), generator=g)
    targets = torch.randint(0, 101, (2, 16), generator=g)
    with torch.no_grad():
        logits = model(ids).logits
    loss = F.cross_entropy(logits.reshape(-1, 101), targets.reshape(-1))
    expected = {
        "ids": ids.tolist(),
        "targets": targets.tolist(),
        "loss": loss.item(),
        "logits": [round(v, 7) for v in logits.reshape(-1).tolist()],
    }
    expected.update(training_step(model, ids, targets, out))
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f)
    print(f"wrote {out}: loss {loss.item():.6f}")
    make_tokenizer(os.path.join(root, "tokenizer"))


# One AdamW step, PyTorch's defaults but GPT-2's betas; the constant schedule's factor at step 0
# is 1 in sinter, so the step's lr is LR exactly.
ADAMW = {"lr": 1e-2, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1}


def decays(name, p):
    """sinter's DecayOn::Matrices: parameters of 2 or more dimensions, less the embedding tables."""
    return p.dim() >= 2 and name not in ("transformer.wte.weight", "transformer.wpe.weight")


def adamw_step(model, ids, targets, dtype):
    """Loss, gradients and parameters after one AdamW step of a copy of `model` in `dtype`."""
    import copy

    m = copy.deepcopy(model).to(dtype).train()
    v = m.config.vocab_size
    logits = m(ids).logits
    loss = F.cross_entropy(logits.reshape(-1, v), targets.reshape(-1))
    loss.backward()
    named = list(m.named_parameters())  # the tied lm_head.weight is wte: listed once
    grads = {n: p.grad.detach().clone() for n, p in named}
    groups = [
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": ADAMW["weight_decay"]},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=ADAMW["lr"], betas=tuple(ADAMW["betas"]),
                            eps=ADAMW["eps"], foreach=False)
    opt.step()
    after = {n: p.detach().clone() for n, p in named}
    return loss.item(), grads, after


def training_step(model, ids, targets, out):
    """Writes grads.safetensors and after_adamw.safetensors; returns expected.json's additions."""
    from safetensors.torch import save_file

    loss64, grads, after = adamw_step(model, ids, targets, torch.float64)
    loss32, grads32, after32 = adamw_step(model, ids, targets, torch.float32)
    f32 = lambda d: {n: t.to(torch.float32).contiguous() for n, t in d.items()}
    save_file(f32(grads), os.path.join(out, "grads.safetensors"))
    save_file(f32(after), os.path.join(out, "after_adamw.safetensors"))
    # How far PyTorch's own f32 run lands from the f64 reference, per quantity.
    worst = lambda a, b: max((a[n].double() - b[n]).abs().max().item() for n in b)
    rel = lambda a, b: max(((a[n].double() - b[n]).abs() / b[n].abs().max()).max().item() for n in b)
    print(f"f32 vs f64: loss {abs(loss32 - loss64):.2e}; gradients {worst(grads32, grads):.2e} "
          f"(relative to each tensor's largest {rel(grads32, grads):.2e}); "
          f"parameters after AdamW {worst(after32, after):.2e}")
    named = dict(model.named_parameters())
    return {
        "loss_f64": loss64,
        "adamw": dict(ADAMW, decayed=[n for n, p in named.items() if decays(n, p)]),
    }


SAMPLE = "The quick brown fox jumps over the lazy dog. Ünïcödé ✓ and\nnew lines,  two spaces."


def make_tokenizer(out):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    here = os.path.dirname(os.path.abspath(__file__))
    corpus = os.path.join(here, "..", "data", "tinyshakespeare", "input.txt")
    with open(corpus, encoding="utf-8") as f:
        text = f.read()[:200_000]
    tok.train_from_iterator([text], trainer=trainer)
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    ids = tok.encode(SAMPLE).ids
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"text": SAMPLE, "ids": ids, "vocab_size": tok.get_vocab_size()}, f)
    print(f"wrote {out}: {tok.get_vocab_size()} tokens; the sample is {len(ids)} ids")


def check(folder, ids_file):
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(folder).eval()
    with open(ids_file) as f:
        expected = json.load(f)
    ids = torch.tensor(expected["ids"])
    targets = torch.tensor(expected["targets"])
    v = model.config.vocab_size
    ids = ids.clamp(max=v - 1)[:, : model.config.n_positions]
    targets = targets.clamp(max=v - 1)[:, : ids.shape[1]]
    with torch.no_grad():
        logits = model(ids).logits
    loss = F.cross_entropy(logits.reshape(-1, v), targets.reshape(-1)).item()
    print(f"{folder}: transformers loaded it; {model.num_parameters()} parameters, loss {loss:.6f}")
    if "logits" in expected and logits.numel() == len(expected["logits"]):
        want = torch.tensor(expected["logits"]).reshape(logits.shape)
        print(f"largest logit difference from {ids_file}: {(logits - want).abs().max().item():.3e}; "
              f"loss difference {abs(loss - expected['loss']):.3e}")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "make":
        make(sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures")
    elif len(sys.argv) >= 3 and sys.argv[1] == "check":
        default = os.path.join("tests", "fixtures", "gpt2-tiny", "expected.json")
        check(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else default)
    else:
        sys.exit(__doc__)
