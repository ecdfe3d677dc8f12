//! GPT-2's modules: token and position embeddings, pre-norm blocks (fused q/k/v `c_attn`, causal
//! attention, `c_proj`; a 4× MLP), a final layer norm and a head tied to the token embedding.

use super::config::{Activation, Gpt2Config};
use super::hf::PREFIX;
use crate::error::{ModelError, Result};
use crate::graph::{GraphBuilder, Tensor};
use crate::nn::{param, Mode};
use crate::nn_seq::LayerNorm;
use crate::trainer::{Model, Outputs};
use crate::vars::{Init, VarId, VarKind, VarStore};
use std::panic::Location;

/// `y = x · W + b` with `W: [in, out]`: the layout of `transformers`' `Conv1D`, GPT-2's linear
/// layer, so that its weights load without a transpose.
#[derive(Clone, Debug)]
pub struct Conv1D {
    /// `<name>.weight: [in, out]`.
    pub weight: VarId,
    /// `<name>.bias: [out]`.
    pub bias: VarId,
    /// Size of the input's last axis.
    pub in_features: usize,
    /// Size of the output's last axis.
    pub out_features: usize,
}

impl Conv1D {
    /// Weights from N(0, std²) and a zero bias, as GPT-2 initializes them.
    #[track_caller]
    pub fn new(
        store: &mut VarStore,
        name: &str,
        in_features: usize,
        out_features: usize,
        std: f32,
        rng: &mut Init,
    ) -> Self {
        let w = rng.normal(in_features * out_features, std);
        Self {
            weight: store.add(
                &format!("{name}.weight"),
                &[in_features, out_features],
                VarKind::Param,
                w,
            ),
            bias: store.add(
                &format!("{name}.bias"),
                &[out_features],
                VarKind::Param,
                vec![0.0; out_features],
            ),
            in_features,
            out_features,
        }
    }

    /// `x: [.., in]` → `[.., out]`; [`ModelError::Shape`] if the last axis is not `in`.
    pub fn forward(&self, store: &VarStore, x: &Tensor) -> Result<Tensor> {
        let g = x.builder();
        let w = param(&g, store, self.weight);
        let b = param(&g, store, self.bias);
        let shape = x.shape();
        // [.., in] → [rows, in]: the weight's gradient is one product, not a sum over a batch.
        let rows = shape[..shape.len().saturating_sub(1)].iter().product();
        let y = x.reshape(&[rows, self.in_features])?.matmul(&w)?.add(&b)?;
        let mut out = shape;
        if let Some(last) = out.last_mut() {
            *last = self.out_features;
        }
        y.reshape(&out)
    }
}

/// One GPT-2 block: `x + c_proj(attn(ln_1(x)))`, then `x + mlp(ln_2(x))`.
#[derive(Clone, Debug)]
pub struct Block {
    /// `h.<i>.ln_1`, before attention.
    pub ln_1: LayerNorm,
    /// `h.<i>.attn.c_attn`, `[C] → [3C]`: queries, keys and values side by side.
    pub c_attn: Conv1D,
    /// `h.<i>.attn.c_proj`, `[C] → [C]`.
    pub attn_proj: Conv1D,
    /// `h.<i>.ln_2`, before the MLP.
    pub ln_2: LayerNorm,
    /// `h.<i>.mlp.c_fc`, `[C] → [4C]`.
    pub c_fc: Conv1D,
    /// `h.<i>.mlp.c_proj`, `[4C] → [C]`.
    pub mlp_proj: Conv1D,
}

/// A GPT-2 language model's modules; [`Model::forward`] records its loss.
#[derive(Clone, Debug)]
pub struct Gpt2 {
    /// Its sizes.
    pub config: Gpt2Config,
    /// Positions per window (T ≤ `n_positions`): the model's input is `[B, T]`.
    pub context: usize,
    /// `wte.weight: [vocab, C]`, also the head: logits = h · wteᵀ.
    pub wte: VarId,
    /// `wpe.weight: [n_positions, C]`; the first `context` rows are used.
    pub wpe: VarId,
    /// `h.0` … `h.<n_layer − 1>`.
    pub blocks: Vec<Block>,
    /// `ln_f`, after the last block.
    pub ln_f: LayerNorm,
    /// Rows of logits the training loss computes at once: the head and cross-entropy run over
    /// chunks of this many positions, so that no `[B·T, vocab]` buffer goes over a device's
    /// binding limit (`None`, or more rows than a batch has: all at once). See
    /// [`Gpt2::head_rows_for`].
    pub head_rows: Option<usize>,
    /// Drop probability in training, in `[0, 1)`, of the embeddings' sum, of the attention
    /// weights (inside the fused kernel) and of each residual branch (the attention's and the
    /// MLP's output projections), as `transformers`' `embd_pdrop`/`attn_pdrop`/`resid_pdrop`
    /// and nanoGPT's `dropout` (0: none, the default).
    pub dropout: f32,
}

impl Gpt2 {
    /// The modules of `config` for windows of `context` positions, their parameters added to
    /// `store` under `GPT2LMHeadModel`'s names (`transformer.h.0.attn.c_attn.weight`, …) and
    /// initialized as GPT-2 is: N(0, 0.02²) weights (N(0, 0.01²) for `wpe`, as OpenAI's code),
    /// N(0, (0.02/√(2·n_layer))²) for the projections into the residual stream, zero biases,
    /// unit layer-norm scales.
    /// [`ModelError::Config`] for sizes [`Gpt2Config::check`] refuses or a context of 0 or
    /// longer than `n_positions`.
    pub fn new(
        store: &mut VarStore,
        config: Gpt2Config,
        context: usize,
        rng: &mut Init,
    ) -> Result<Self> {
        config.check()?;
        if context == 0 || context > config.n_positions {
            return Err(ModelError::Config(format!(
                "gpt2: the context {context} must be between 1 and n_positions {}",
                config.n_positions
            )));
        }
        let c = config.n_embd;
        let name = |s: &str| format!("{PREFIX}{s}");
        let wte = store.add(
            &name("wte.weight"),
            &[config.vocab_size, c],
            VarKind::Param,
            rng.normal(config.vocab_size * c, 0.02),
        );
        let wpe = store.add(
            &name("wpe.weight"),
            &[config.n_positions, c],
            VarKind::Param,
            rng.normal(config.n_positions * c, 0.01),
        );
        // Embedding tables (wte is also the tied head): no weight decay, as GPT-2 training does.
        store.exclude_from_decay(wte);
        store.exclude_from_decay(wpe);
        let resid_std = 0.02 / (2.0 * config.n_layer as f32).sqrt();
        let blocks = (0..config.n_layer)
            .map(|l| {
                let p = |s: &str| name(&format!("h.{l}.{s}"));
                let eps = config.layer_norm_epsilon;
                // In `GPT2LMHeadModel`'s order, which its state_dict and the files keep.
                Block {
                    ln_1: layer_norm(store, &p("ln_1"), c, eps),
                    c_attn: Conv1D::new(store, &p("attn.c_attn"), c, 3 * c, 0.02, rng),
                    attn_proj: Conv1D::new(store, &p("attn.c_proj"), c, c, resid_std, rng),
                    ln_2: layer_norm(store, &p("ln_2"), c, eps),
                    c_fc: Conv1D::new(store, &p("mlp.c_fc"), c, 4 * c, 0.02, rng),
                    mlp_proj: Conv1D::new(store, &p("mlp.c_proj"), 4 * c, c, resid_std, rng),
                }
            })
            .collect();
        let ln_f = layer_norm(store, &name("ln_f"), c, config.layer_norm_epsilon);
        store.check()?;
        Ok(Self {
            config,
            context,
            wte,
            wpe,
            blocks,
            ln_f,
            head_rows: None,
            dropout: 0.0,
        })
    }

    /// The rows per chunk of the head and loss that keep each `[rows, vocab]` buffer within
    /// `limit` bytes (a device's binding limit; `None`: no limit, one chunk).
    pub fn head_rows_for(&self, limit: Option<u64>) -> Option<usize> {
        let row_bytes = 4 * self.config.vocab_size as u64;
        limit.map(|l| ((l / row_bytes) as usize).max(1))
    }

    /// Records the logits `[B·T, vocab]` of `ids: [B, T]` (token ids as floats).
    #[track_caller]
    pub fn logits(&self, store: &VarStore, ids: &Tensor) -> Result<Tensor> {
        let g = ids.builder();
        let x = self.hidden(store, ids, Mode::Eval)?;
        let wte = param_named(&g, store, self.wte);
        // The head is the token embedding: [B·T, C] · wteᵀ → [B·T, V]. Its gradient meets the
        // embedding's at the one leaf of `wte`, where autodiff sums the two.
        g.scoped("lm_head", || x.matmul_t(&wte, false, true))
    }

    /// The final hidden states `[B·T, C]` (after `ln_f`) of `ids: [B, T]`, with dropout in
    /// training `mode`.
    #[track_caller]
    fn hidden(&self, store: &VarStore, ids: &Tensor, mode: Mode) -> Result<Tensor> {
        let g = ids.builder();
        let &[b, t] = ids.shape().as_slice() else {
            return Err(ModelError::Shape {
                op: "gpt2",
                detail: format!("expects ids [B, T], got {:?}", ids.shape()),
                location: Location::caller().to_string(),
            });
        };
        let c = self.config.n_embd;
        let wte = param_named(&g, store, self.wte);
        let wpe = param_named(&g, store, self.wpe);
        let mut x = g.scoped("transformer.wte", || ids.embedding(&wte))?;
        let pos = g.scoped("transformer.wpe", || wpe.narrow(0, 0, t))?;
        x = g.scoped("transformer.drop", || {
            x.add(&pos)?.dropout(self.dropout, mode)
        })?;
        for (l, block) in self.blocks.iter().enumerate() {
            x = g.scoped(&format!("transformer.h.{l}"), || {
                self.block(store, block, &x, mode)
            })?;
        }
        let x = g.scoped("transformer.ln_f", || self.ln_f.forward(store, &x))?;
        x.reshape(&[b * t, c])
    }

    /// The mean cross-entropy of the logits of `ids: [B, T]` against `targets: [B·T]` (with
    /// [`Gpt2::dropout`] in training `mode`), the head and loss computed over chunks of
    /// [`Gpt2::head_rows`] positions: chunk k's mean loss, weighted by its share of the
    /// positions, summed. Each chunk is its own `[rows, vocab]` logits buffer; the head's
    /// gradients from every chunk meet at `wte`'s one leaf.
    #[track_caller]
    pub fn loss(
        &self,
        store: &VarStore,
        ids: &Tensor,
        targets: &Tensor,
        mode: Mode,
    ) -> Result<Tensor> {
        let n = targets.numel();
        let g = ids.builder();
        let x = self.hidden(store, ids, mode)?;
        let wte = param_named(&g, store, self.wte);
        let rows = match self.head_rows {
            Some(r) if r < n => r,
            _ => {
                let logits = g.scoped("lm_head", || x.matmul_t(&wte, false, true))?;
                return g.scoped("loss", || logits.cross_entropy(targets));
            }
        };
        let mut total: Option<Tensor> = None;
        for (k, start) in (0..n).step_by(rows).enumerate() {
            let len = rows.min(n - start);
            let part = g.scoped(&format!("lm_head.{k}"), || {
                let logits = x.narrow(0, start, len)?.matmul_t(&wte, false, true)?;
                let loss = logits.cross_entropy(&targets.narrow(0, start, len)?)?;
                Ok::<_, ModelError>(loss.scale(len as f64 / n as f64))
            })?;
            total = Some(match total {
                None => part,
                Some(t) => g.scoped("loss", || t.add(&part))?,
            });
        }
        Ok(total.expect("n > rows, so at least two chunks"))
    }

    fn block(&self, store: &VarStore, blk: &Block, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let g = x.builder();
        let s = x.shape();
        let (b, t, c) = (s[0], s[1], s[2]);
        let h = self.config.n_head;
        let x = g.scoped("attn", || -> Result<Tensor> {
            let a = blk.ln_1.forward(store, x)?;
            let qkv = g.scoped("c_attn", || blk.c_attn.forward(store, &a))?;
            // [B, T, 3C] → q, k, v [B, T, H, D]: the kernel reads heads interleaved.
            let part = |k: usize| qkv.narrow(2, k * c, c)?.reshape(&[b, t, h, c / h]);
            let o = part(0)?
                .attention_dropout(&part(1)?, &part(2)?, true, self.dropout, mode)?
                .reshape(&[b, t, c])?;
            let y = g.scoped("c_proj", || blk.attn_proj.forward(store, &o))?;
            x.add(&y.dropout(self.dropout, mode)?)
        })?;
        g.scoped("mlp", || -> Result<Tensor> {
            let a = blk.ln_2.forward(store, &x)?;
            let a = g.scoped("c_fc", || blk.c_fc.forward(store, &a))?;
            let a = match self.config.activation {
                Activation::GeluTanh => a.gelu(),
                Activation::GeluErf => a.gelu_erf(),
                Activation::Relu => a.relu(),
                Activation::Silu => a.silu(),
            };
            let y = g.scoped("c_proj", || blk.mlp_proj.forward(store, &a))?;
            x.add(&y.dropout(self.dropout, mode)?)
        })
    }

    /// Records the logits of a batch: the input `ids [batch, context]` and the logits node.
    pub fn record_logits(
        &self,
        store: &VarStore,
        g: &GraphBuilder,
        batch: usize,
    ) -> Result<Tensor> {
        let ids = g.input("ids", &[batch, self.context]);
        self.logits(store, &ids)
    }
}

/// A layer norm over `dim` features with GPT-2's epsilon.
#[track_caller]
fn layer_norm(store: &mut VarStore, name: &str, dim: usize, eps: f32) -> LayerNorm {
    let mut n = LayerNorm::new(store, name, dim);
    n.eps = eps;
    n
}

/// A parameter's leaf tagged with its whole name (`transformer.wte.weight`).
fn param_named(g: &GraphBuilder, store: &VarStore, id: VarId) -> Tensor {
    let info = store.get(id);
    g.var(id, &info.shape, &info.name)
}

impl Model for Gpt2 {
    /// Inputs `ids [B, T]` and `targets [B·T]` (the next token of each position); the loss is
    /// the mean cross-entropy in nats per token.
    fn forward(
        &self,
        vars: &VarStore,
        g: &GraphBuilder,
        batch: usize,
        mode: Mode,
    ) -> Result<Outputs> {
        let ids = g.input("ids", &[batch, self.context]);
        let targets = g.input("targets", &[batch * self.context]);
        Ok(Outputs::loss(self.loss(vars, &ids, &targets, mode)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt2::hf::parameter_shapes;

    #[test]
    fn parameters_are_named_and_shaped_as_transformers_names_them() {
        let mut config = Gpt2Config::preset("tiny").unwrap();
        config.vocab_size = 101;
        let mut store = VarStore::new();
        Gpt2::new(&mut store, config, 16, &mut Init::new(0)).unwrap();
        let ours: Vec<(String, Vec<usize>)> = store
            .vars
            .iter()
            .map(|v| (v.name.clone(), v.shape.clone()))
            .collect();
        assert_eq!(ours, parameter_shapes(&config));
        let n: usize = store.vars.iter().map(|v| v.numel()).sum();
        assert_eq!(n, config.parameter_count());
        let e = Gpt2::new(&mut VarStore::new(), config, 129, &mut Init::new(0)).unwrap_err();
        assert!(e.to_string().contains("n_positions 128"), "{e}");
    }
}
