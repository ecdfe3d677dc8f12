//! Modules for sequence models: layer and RMS norm, embeddings, multi-head attention, a pre-norm
//! transformer block, and recurrent cells (RNN, LSTM, GRU) unrolled over time.

use crate::error::{ModelError, Result};
use crate::graph::Tensor;
use crate::nn::{param, Linear};
use crate::vars::{Init, VarId, VarKind, VarStore};
use std::panic::Location;

/// Layer normalization over the last axis, `weight` (γ) = 1 and `bias` (β) = 0 initially.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// `<name>.weight` (γ): `[dim]`, the per-feature scale.
    pub weight: VarId,
    /// `<name>.bias` (β): `[dim]`, the per-feature shift.
    pub bias: VarId,
    /// Added to the variance before the square root (1e-5, as PyTorch).
    pub eps: f32,
}

impl LayerNorm {
    /// A layer norm over a last axis of `dim` features, with parameters `<name>.weight` and
    /// `<name>.bias`.
    #[track_caller]
    pub fn new(store: &mut VarStore, name: &str, dim: usize) -> Self {
        Self {
            weight: store.add(
                &format!("{name}.weight"),
                &[dim],
                VarKind::Param,
                vec![1.0; dim],
            ),
            bias: store.add(
                &format!("{name}.bias"),
                &[dim],
                VarKind::Param,
                vec![0.0; dim],
            ),
            eps: 1e-5,
        }
    }

    /// Records the normalization of `x: [.., dim]` (same shape out);
    /// [`ModelError::Shape`] if the last axis is not `dim`.
    pub fn forward(&self, store: &VarStore, x: &Tensor) -> Result<Tensor> {
        let g = x.builder();
        x.layer_norm(
            &param(&g, store, self.weight),
            &param(&g, store, self.bias),
            self.eps,
        )
    }
}

/// RMS normalization over the last axis (PyTorch's `nn.RMSNorm`): `x / sqrt(mean(x²) + eps) ·
/// weight`, with `weight` = 1 initially and no bias.
#[derive(Clone, Debug)]
pub struct RmsNorm {
    /// `<name>.weight` (γ): `[dim]`, the per-feature scale.
    pub weight: VarId,
    /// Added to the mean square before the square root.
    pub eps: f32,
}

impl RmsNorm {
    /// An RMS norm over a last axis of `dim` features with parameter `<name>.weight` and eps
    /// `f32::EPSILON` (PyTorch's default, `eps=None`, for f32); set `eps` for another (LLaMA
    /// uses 1e-5 or 1e-6).
    #[track_caller]
    pub fn new(store: &mut VarStore, name: &str, dim: usize) -> Self {
        Self {
            weight: store.add(
                &format!("{name}.weight"),
                &[dim],
                VarKind::Param,
                vec![1.0; dim],
            ),
            eps: f32::EPSILON,
        }
    }

    /// Records the normalization of `x: [.., dim]` (same shape out);
    /// [`ModelError::Shape`] if the last axis is not `dim`.
    pub fn forward(&self, store: &VarStore, x: &Tensor) -> Result<Tensor> {
        x.rms_norm(&param(&x.builder(), store, self.weight), self.eps)
    }
}

/// A table of `vocab` vectors of size `dim`, initialized from N(0, std²) (PyTorch uses std 1).
#[derive(Clone, Debug)]
pub struct Embedding {
    /// `<name>.weight: [vocab, dim]`.
    pub weight: VarId,
    /// Size of each vector.
    pub dim: usize,
}

impl Embedding {
    /// A `[vocab, dim]` table named `<name>.weight`, drawn from N(0, std²).
    #[track_caller]
    pub fn new(
        store: &mut VarStore,
        name: &str,
        vocab: usize,
        dim: usize,
        std: f32,
        rng: &mut Init,
    ) -> Self {
        let init = rng.normal(vocab * dim, std);
        let weight = store.add(
            &format!("{name}.weight"),
            &[vocab, dim],
            VarKind::Param,
            init,
        );
        store.exclude_from_decay(weight);
        Self { weight, dim }
    }

    /// `ids: [..]` (token ids as floats) → `[.., dim]`.
    pub fn forward(&self, store: &VarStore, ids: &Tensor) -> Result<Tensor> {
        ids.embedding(&param(&ids.builder(), store, self.weight))
    }
}

/// Multi-head self-attention with causal masking: q, k, v and output projections around the
/// fused attention kernel. Works on `[B, T, C]` with `C = heads · head_dim`.
#[derive(Clone, Debug)]
pub struct MultiHeadAttention {
    /// The query projection `<name>.q`, `[C] → [C]`.
    pub q: Linear,
    /// The key projection `<name>.k`, `[C] → [C]`.
    pub k: Linear,
    /// The value projection `<name>.v`, `[C] → [C]`.
    pub v: Linear,
    /// The output projection `<name>.out`, `[C] → [C]`.
    pub out: Linear,
    /// H: heads, each of `C / H` features.
    pub heads: usize,
}

impl MultiHeadAttention {
    /// Attention over `width` features split into `heads` heads.
    ///
    /// A `heads` of 0 or one that does not divide `width` is recorded in `store` and reported
    /// by [`VarStore::check`] before anything runs.
    #[track_caller]
    pub fn new(
        store: &mut VarStore,
        name: &str,
        width: usize,
        heads: usize,
        rng: &mut Init,
    ) -> Self {
        let heads = if heads > 0 && width % heads == 0 {
            heads
        } else {
            store.record_problem(format!(
                "attention {name} (built at {}): width {width} is not a multiple of {heads} heads",
                std::panic::Location::caller()
            ));
            1
        };
        Self {
            q: Linear::new(store, &format!("{name}.q"), width, width, rng),
            k: Linear::new(store, &format!("{name}.k"), width, width, rng),
            v: Linear::new(store, &format!("{name}.v"), width, width, rng),
            out: Linear::new(store, &format!("{name}.out"), width, width, rng),
            heads,
        }
    }

    /// Records attention of `x: [B, T, C]` over itself (query i sees keys j ≤ i when `causal`);
    /// the output is `[B, T, C]`. [`ModelError::Shape`] if `x` is not rank 3 with `C` the
    /// layer's width.
    #[track_caller]
    pub fn forward(&self, store: &VarStore, x: &Tensor, causal: bool) -> Result<Tensor> {
        let s = x.shape();
        let &[b, t, c] = s.as_slice() else {
            return Err(ModelError::Shape {
                op: "multi_head_attention",
                detail: format!("expects x [B, T, C], got {s:?}"),
                location: Location::caller().to_string(),
            });
        };
        let split = [b, t, self.heads, c / self.heads];
        // [B, T, C] → [B, T, H, D] is a reshape: the attention kernel reads heads interleaved.
        let q = self.q.forward(store, x)?.reshape(&split)?;
        let k = self.k.forward(store, x)?.reshape(&split)?;
        let v = self.v.forward(store, x)?.reshape(&split)?;
        let o = q.attention(&k, &v, causal)?.reshape(&[b, t, c])?;
        self.out.forward(store, &o)
    }
}

/// A pre-norm transformer block: `x + attn(ln1(x))`, then `x + mlp(ln2(x))` with a GELU MLP 4× wide.
#[derive(Clone, Debug)]
pub struct TransformerBlock {
    /// `<name>.ln1`, before attention.
    pub ln1: LayerNorm,
    /// `<name>.attn`, causal self-attention.
    pub attn: MultiHeadAttention,
    /// `<name>.ln2`, before the MLP.
    pub ln2: LayerNorm,
    /// `<name>.mlp.fc1`, `[C] → [4C]`, followed by GELU.
    pub fc1: Linear,
    /// `<name>.mlp.fc2`, `[4C] → [C]`.
    pub fc2: Linear,
}

impl TransformerBlock {
    /// A block of `width` features and `heads` heads; panics as [`MultiHeadAttention::new`].
    #[track_caller]
    pub fn new(
        store: &mut VarStore,
        name: &str,
        width: usize,
        heads: usize,
        rng: &mut Init,
    ) -> Self {
        Self {
            ln1: LayerNorm::new(store, &format!("{name}.ln1"), width),
            attn: MultiHeadAttention::new(store, &format!("{name}.attn"), width, heads, rng),
            ln2: LayerNorm::new(store, &format!("{name}.ln2"), width),
            fc1: Linear::new(store, &format!("{name}.mlp.fc1"), width, 4 * width, rng),
            fc2: Linear::new(store, &format!("{name}.mlp.fc2"), 4 * width, width, rng),
        }
    }

    /// Records the block on `x: [B, T, C]` (same shape out), attention causal.
    pub fn forward(&self, store: &VarStore, x: &Tensor) -> Result<Tensor> {
        let g = x.builder();
        let x = g.scoped("attn", || -> Result<Tensor> {
            let h = self.ln1.forward(store, x)?;
            x.add(&self.attn.forward(store, &h, true)?)
        })?;
        g.scoped("mlp", || -> Result<Tensor> {
            let h = self.ln2.forward(store, &x)?;
            let h = self.fc1.forward(store, &h)?.gelu();
            x.add(&self.fc2.forward(store, &h)?)
        })
    }
}

/// Which recurrence a [`Recurrent`] layer computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellKind {
    /// `h = tanh(W x + U h + b)`
    Rnn,
    /// Input, forget, cell and output gates.
    Lstm,
    /// Reset and update gates.
    Gru,
}

impl CellKind {
    fn gates(self) -> &'static [&'static str] {
        match self {
            CellKind::Rnn => &["h"],
            CellKind::Lstm => &["i", "f", "g", "o"],
            CellKind::Gru => &["r", "z", "n"],
        }
    }
}

/// One gate's input and hidden projections: `W x + b_w` and `U h + b_u`.
#[derive(Clone, Debug)]
struct Gate {
    input: Linear,
    hidden: Linear,
}

/// A recurrent layer unrolled over time (gradients by backpropagation through time). Each gate
/// has its own input and hidden projections, initialized uniformly in ±1/√hidden as in PyTorch.
#[derive(Clone, Debug)]
pub struct Recurrent {
    /// RNN, LSTM or GRU.
    pub kind: CellKind,
    /// Size of the hidden state.
    pub hidden: usize,
    gates: Vec<Gate>,
}

impl Recurrent {
    /// A cell from `input` features to `hidden`, with parameters `<name>.<gate>.input` and
    /// `<name>.<gate>.hidden` per gate (`h` for the RNN; `i f g o` LSTM; `r z n` GRU).
    #[track_caller]
    pub fn new(
        store: &mut VarStore,
        name: &str,
        kind: CellKind,
        input: usize,
        hidden: usize,
        rng: &mut Init,
    ) -> Self {
        let gates = kind
            .gates()
            .iter()
            .map(|gate| {
                let mut input_proj =
                    Linear::new(store, &format!("{name}.{gate}.input"), input, hidden, rng);
                let mut hidden_proj =
                    Linear::new(store, &format!("{name}.{gate}.hidden"), hidden, hidden, rng);
                // PyTorch draws every recurrent weight and bias from ±1/√hidden.
                let bound = 1.0 / (hidden as f32).sqrt();
                for l in [&mut input_proj, &mut hidden_proj] {
                    for id in [l.weight, l.bias] {
                        let info = &mut store.vars[id.0];
                        info.init = rng.uniform(info.init.len(), bound);
                    }
                }
                Gate {
                    input: input_proj,
                    hidden: hidden_proj,
                }
            })
            .collect();
        Self {
            kind,
            hidden,
            gates,
        }
    }

    /// Runs the cell over `xs` (one `[B, input]` tensor per step) from a zero state; returns
    /// the hidden state after each step, `[B, hidden]`. [`ModelError::Shape`] if `xs` is empty
    /// or its first step has no batch axis.
    #[track_caller]
    pub fn forward(&self, store: &VarStore, xs: &[Tensor]) -> Result<Vec<Tensor>> {
        let loc = Location::caller();
        let bad = |detail: String| ModelError::Shape {
            op: "recurrent",
            detail,
            location: loc.to_string(),
        };
        let first = xs
            .first()
            .ok_or_else(|| bad("needs at least one time step, got none".into()))?;
        let g = first.builder();
        let batch = match first.shape().as_slice() {
            &[batch, _] => batch,
            s => return Err(bad(format!("expects each step x [B, input], got {s:?}"))),
        };
        let mut h = g.fill(0.0, &[batch, self.hidden]);
        let mut c = g.fill(0.0, &[batch, self.hidden]);
        let mut out = Vec::with_capacity(xs.len());
        for (t, x) in xs.iter().enumerate() {
            (h, c) = g.scoped(&format!("t{t}"), || self.step(store, x, &h, &c))?;
            out.push(h.clone());
        }
        Ok(out)
    }

    fn gate(&self, store: &VarStore, k: usize, x: &Tensor, h: &Tensor) -> Result<Tensor> {
        let gate = &self.gates[k];
        gate.input
            .forward(store, x)?
            .add(&gate.hidden.forward(store, h)?)
    }

    /// One step: the new (h, c); c is only meaningful for the LSTM.
    fn step(
        &self,
        store: &VarStore,
        x: &Tensor,
        h: &Tensor,
        c: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        Ok(match self.kind {
            CellKind::Rnn => (self.gate(store, 0, x, h)?.tanh(), c.clone()),
            CellKind::Lstm => {
                // c' = σ(f)∘c + σ(i)∘tanh(g); h' = σ(o)∘tanh(c')
                let i = self.gate(store, 0, x, h)?.sigmoid();
                let f = self.gate(store, 1, x, h)?.sigmoid();
                let gg = self.gate(store, 2, x, h)?.tanh();
                let o = self.gate(store, 3, x, h)?.sigmoid();
                let c2 = f.mul(c)?.add(&i.mul(&gg)?)?;
                (o.mul(&c2.tanh())?, c2)
            }
            CellKind::Gru => {
                // n = tanh(W_n x + b_wn + r∘(U_n h + b_un)); h' = (1 − z)∘n + z∘h
                let r = self.gate(store, 0, x, h)?.sigmoid();
                let z = self.gate(store, 1, x, h)?.sigmoid();
                let gate = &self.gates[2];
                let n = gate
                    .input
                    .forward(store, x)?
                    .add(&r.mul(&gate.hidden.forward(store, h)?)?)?
                    .tanh();
                let keep = z.affine(-1.0, 1.0);
                (keep.mul(&n)?.add(&z.mul(h)?)?, c.clone())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphBuilder;

    #[test]
    fn misshapen_inputs_are_errors_that_name_the_layer() {
        let mut store = VarStore::new();
        let mut init = Init::new(0);
        let attn = MultiHeadAttention::new(&mut store, "attn", 8, 2, &mut init);
        let g = GraphBuilder::new();
        let flat = g.input("x", &[4, 8]);
        let e = attn.forward(&store, &flat, true).unwrap_err().to_string();
        assert!(e.starts_with("multi_head_attention at "), "{e}");
        assert!(e.contains("nn_seq.rs") && e.contains("[4, 8]"), "{e}");

        let rnn = Recurrent::new(&mut store, "rnn", CellKind::Gru, 3, 5, &mut init);
        let e = rnn.forward(&store, &[]).unwrap_err().to_string();
        assert!(
            e.contains("recurrent") && e.contains("at least one time step"),
            "{e}"
        );
        let e = rnn
            .forward(&store, &[g.input("x0", &[2, 3, 3])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("[2, 3, 3]"), "{e}");
        let hs = rnn.forward(&store, &[g.input("x1", &[2, 3])]).unwrap();
        assert_eq!(hs[0].shape(), vec![2, 5]);
    }
}
