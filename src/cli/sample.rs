//! `sinter sample`: rebuilds a character model from a parameter file written by
//! `sinter train --save`, and prints text it generates after a prompt.

use super::train::ModelName;
use super::{CliError, Result};
use clap::Args;
use sinter_model::checkpoint::check_against;
use sinter_model::checkpoint::load_safetensors;
use sinter_model::data::CharCorpus;
use sinter_model::lm::{CharModel, CharSampler};
use sinter_model::Backend;
use sinter_model::{Init, VarStore};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Parameters saved by `sinter train --model char-… --save FILE`.
    pub params: PathBuf,
    /// Characters to generate.
    #[arg(long, default_value_t = 500)]
    pub chars: usize,
    /// Text the model continues (printed before what it generates).
    #[arg(long, default_value = "\n")]
    pub prompt: String,
    /// Softmax temperature, at least 0: lower is more conservative, 0 always picks the most
    /// likely character.
    #[arg(long, default_value_t = 0.8, value_parser = super::checks::non_negative, allow_negative_numbers = true)]
    pub temperature: f64,
    /// Seed of the sampling: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The longest context a saved recurrent model may declare (its file holds nothing sized by it).
const MAX_RECURRENT_CONTEXT: usize = 1 << 16;

pub fn run(args: SampleArgs) -> Result<()> {
    let (tensors, meta) = load_safetensors(&args.params)?;
    let get = |key: &str| {
        meta.get(key).ok_or_else(|| {
            CliError::Usage(format!(
                "{}: no '{key}' in the metadata; was it saved by `sinter train --model char-…`?",
                args.params.display()
            ))
        })
    };
    let model: ModelName = clap::ValueEnum::from_str(get("model")?, false)
        .map_err(|e| CliError::Usage(format!("{}: unknown model: {e}", args.params.display())))?;
    if !model.is_text() {
        return Err(CliError::Usage(format!(
            "{}: holds an image model ({}); `sinter sample` needs a character model",
            args.params.display(),
            get("model")?
        )));
    }
    let bad = |problem: String| CliError::Usage(format!("{}: {problem}", args.params.display()));
    let context: usize = get("context")?.parse().map_err(|_| {
        bad(format!(
            "context {:?} in the metadata is not a number",
            get("context").unwrap_or(&String::new())
        ))
    })?;
    let vocab: Vec<char> = get("vocab")?.chars().collect();
    if vocab.is_empty() || !vocab.windows(2).all(|w| w[0] < w[1]) {
        return Err(bad(format!(
            "the vocabulary in the metadata ({} characters) is not a non-empty sorted set of characters",
            vocab.len()
        )));
    }
    let tensor = |name: &str| tensors.iter().find(|t| t.name == name);
    let width = match tensor("head.weight") {
        Some(t) if t.shape.len() == 2 && t.shape[0] == vocab.len() => t.shape[1],
        Some(t) => {
            return Err(bad(format!(
                "head.weight has shape {:?}, expected [{}, width] for its {}-character vocabulary",
                t.shape,
                vocab.len(),
                vocab.len()
            )))
        }
        None => return Err(bad("has no head.weight tensor".into())),
    };
    // Every size the model is built with must be backed by the file's own tensors, or bounded:
    // the transformer's context is the length of its position table; a recurrent model is
    // unrolled over its context when sampling.
    match tensor("pos.weight") {
        _ if context == 0 => return Err(bad("context 0 in the metadata".into())),
        Some(t) if model == ModelName::CharTransformer && t.shape != [context, width] => {
            return Err(bad(format!(
                "pos.weight has shape {:?} but the metadata gives context {context} and width {width}",
                t.shape
            )))
        }
        None if model == ModelName::CharTransformer => {
            return Err(bad("has no pos.weight tensor".into()))
        }
        _ if model != ModelName::CharTransformer && context > MAX_RECURRENT_CONTEXT => {
            return Err(bad(format!(
                "context {context} in the metadata is over the {MAX_RECURRENT_CONTEXT} characters a recurrent model is unrolled over"
            )))
        }
        _ => {}
    }
    let layers = tensors
        .iter()
        .filter(|t| t.name.ends_with(".ln1.weight"))
        .count();
    let heads: usize = get("heads").ok().and_then(|h| h.parse().ok()).unwrap_or(4);
    let arch = super::train_text::arch(model, width, layers, heads)?;
    // Sampling compiles only the logits: no training text, no optimizer, no gradients.
    let corpus = CharCorpus {
        vocab,
        train: Vec::new(),
        valid: Vec::new(),
    };
    let mut store = VarStore::new();
    let model = CharModel::new(
        &mut store,
        arch,
        corpus.vocab_size(),
        context,
        &mut Init::new(args.seed),
    );
    let expected: Vec<(String, Vec<usize>)> = store
        .vars
        .iter()
        .map(|v| (v.name.clone(), v.shape.clone()))
        .collect();
    check_against(&tensors, &expected, &args.params)?;
    for t in &tensors {
        if let Some(id) = store.find(&t.name) {
            store.vars[id.0].init = t.data.clone();
        }
    }
    let (mut backend, _) = Backend::open(sinter_ops::DeviceChoice::Cpu)?;
    backend.load_vars(&store)?;
    let mut sampler = CharSampler::compile(&model, &store, &backend)?;
    let text = sampler.sample(
        &model,
        &mut backend,
        &corpus,
        &args.prompt,
        args.chars,
        args.temperature,
        args.seed,
    )?;
    println!("{}{text}", args.prompt);
    Ok(())
}
