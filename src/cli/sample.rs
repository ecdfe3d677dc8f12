//! `sinter sample`: rebuilds a character model from a parameter file written by
//! `sinter train --save`, and prints text it generates after a prompt.

use super::train::ModelName;
use super::{CliError, Result};
use clap::Args;
use sinter_model::checkpoint::load_safetensors;
use sinter_model::data::CharCorpus;
use sinter_model::lm::{CharLm, LmConfig};
use sinter_model::optim::{Optimizer, OptimizerKind};
use sinter_model::Backend;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Parameters saved by `sinter train --model char-… --save FILE`.
    pub params: PathBuf,
    /// Characters to generate.
    #[arg(long, default_value_t = 500)]
    pub chars: usize,
    #[arg(long, default_value = "\n")]
    pub prompt: String,
    /// Softmax temperature: lower is more conservative.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

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
    let context: usize = get("context")?
        .parse()
        .map_err(|_| CliError::Usage("bad context in metadata".into()))?;
    let vocab: Vec<char> = get("vocab")?.chars().collect();
    let width = tensors
        .iter()
        .find(|t| t.name == "head.weight")
        .map(|t| t.shape[1])
        .unwrap_or(128);
    let layers = tensors
        .iter()
        .filter(|t| t.name.ends_with(".ln1.weight"))
        .count();
    let heads: usize = get("heads").ok().and_then(|h| h.parse().ok()).unwrap_or(4);
    let arch = super::train_text::arch(model, width, layers, heads)?;
    // A corpus carrying only the vocabulary: sampling needs no training text.
    let filler: Vec<u32> = (0..=context as u32 + 1)
        .map(|i| i % vocab.len() as u32)
        .collect();
    let corpus = CharCorpus {
        vocab,
        train: filler.clone(),
        valid: filler,
    };
    let (backend, _) = Backend::open(sinter_device::DeviceChoice::Cpu)?;
    let config = LmConfig {
        batch: 1,
        seed: args.seed,
        valid_batches: 1,
    };
    let opt = Optimizer::new(OptimizerKind::adam(0.0), 1e-3);
    let mut lm = CharLm::new(arch, context, corpus, backend, opt, config)?;
    lm.set_params(&tensors, &args.params)?;
    let text = lm.sample(&args.prompt, args.chars, args.temperature, args.seed)?;
    println!("{}{text}", args.prompt);
    Ok(())
}
