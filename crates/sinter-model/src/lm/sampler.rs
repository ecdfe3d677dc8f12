//! Text generation from a trained character model: a compiled logits-only program, sampled one
//! character at a time with a temperature.

use super::CharModel;
use crate::backend::{Backend, Program};
use crate::data::CharCorpus;
use crate::error::{ModelError, Result};
use crate::graph::GraphBuilder;
use crate::vars::VarStore;
use rand::distr::{weighted::WeightedIndex, Distribution};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A compiled logits-only program for generating text: no loss, no gradients, no optimizer.
pub struct CharSampler {
    program: Program,
}

impl CharSampler {
    /// Compiles `model`'s logits for one window on `backend`, which must hold `store`'s variables.
    pub fn compile(model: &CharModel, store: &VarStore, backend: &Backend) -> Result<Self> {
        let g = GraphBuilder::new();
        let rec = model.record(&g, store, 1, false)?;
        Ok(Self {
            program: backend.compile(&g.finish(), &rec.logits)?,
        })
    }

    /// Generates `chars` characters after `prompt`, sampling with `temperature` (> 0; small
    /// values approach greedy decoding) from `seed`.
    #[allow(clippy::too_many_arguments)] // the model, where it runs, its vocabulary, and the request
    pub fn sample(
        &mut self,
        model: &CharModel,
        backend: &mut Backend,
        corpus: &CharCorpus,
        prompt: &str,
        chars: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<String> {
        let t = model.context;
        let mut text = corpus.encode(prompt)?;
        if text.is_empty() {
            text.push(0);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let start_len = text.len();
        for _ in 0..chars {
            // The last `t` characters, left-aligned; causal models ignore what follows them.
            let from = text.len().saturating_sub(t);
            let window = &text[from..];
            let mut ids = vec![0f32; t];
            for (d, &s) in ids.iter_mut().zip(window) {
                *d = s as f32;
            }
            let pos = window.len() - 1;
            let feeds = model.feeds(1, &ids, None);
            let refs: Vec<&[f32]> = feeds.iter().map(Vec::as_slice).collect();
            let out = backend.run(&mut self.program, &refs, &Default::default())?;
            let v = model.vocab;
            let row: &[f32] = if out.len() == 1 {
                &out[0][pos * v..(pos + 1) * v]
            } else {
                &out[pos]
            };
            text.push(sample_next(row, temperature, &mut rng)? as u32);
        }
        Ok(corpus.decode(&text[start_len..]))
    }
}

/// The index drawn from one row of logits softened by `temperature` (floored at 1e-3: small
/// values approach greedy decoding): the character and GPT-2 samplers' shared step.
pub(crate) fn sample_next(row: &[f32], temperature: f64, rng: &mut ChaCha8Rng) -> Result<usize> {
    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let weights: Vec<f64> = row
        .iter()
        .map(|&l| ((l as f64 - max) / temperature.max(1e-3)).exp())
        .collect();
    Ok(WeightedIndex::new(&weights)
        .map_err(|e| ModelError::Graph(format!("sampling from the logits failed: {e}")))?
        .sample(rng))
}
