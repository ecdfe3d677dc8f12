//! `sinter sample`: rebuilds a character model from a parameter file written by
//! `sinter train --save` (or a GPT-2 from a Hugging Face folder), and prints text it generates after a prompt.

use super::{CliError, Result};
use clap::Args;
use sinter_model::checkpoint::check_against;
use sinter_model::data::Tokenizer;
use sinter_model::gpt2::{hf, Gpt2, Gpt2Sampler};
use sinter_model::lm::CharSampler;
use sinter_model::{Backend, Init, VarStore};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Parameters saved by `sinter train --model char-… --save FILE`, or a GPT-2 folder
    /// (config.json, model.safetensors, tokenizer.json) as `--model gpt2 --save DIR` or
    /// `save_pretrained` write it.
    pub params: PathBuf,
    /// The tokenizer.json of a GPT-2 folder that has none.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Characters to generate (tokens for a GPT-2).
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

pub fn run(args: SampleArgs) -> Result<()> {
    if args.params.is_dir() {
        return sample_gpt2(&args);
    }
    if args.tokenizer.is_some() {
        return Err(CliError::Usage(format!(
            "--tokenizer is for GPT-2 folders; {} is a file",
            args.params.display()
        )));
    }
    let saved = super::saved::Saved::load(&args.params, None)?;
    let (model, store, corpus) = saved.char_model()?;
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

/// A GPT-2 folder: its tokenizer encodes the prompt and decodes what the model generates.
fn sample_gpt2(args: &SampleArgs) -> Result<()> {
    let dir = &args.params;
    let (config, tensors) = hf::read_dir(dir)?;
    let tok_path = args
        .tokenizer
        .clone()
        .unwrap_or_else(|| dir.join(super::train_gpt2::TOKENIZER_FILE));
    if !tok_path.exists() {
        return Err(CliError::Usage(format!(
            "{} has no tokenizer.json: give the model's tokenizer with --tokenizer FILE",
            dir.display()
        )));
    }
    let tok = Tokenizer::load(&tok_path)?;
    let mut store = VarStore::new();
    // The whole context the model knows, up to 1024 positions per generated token.
    let context = config.n_positions.min(1024);
    let model = Gpt2::new(&mut store, config, context, &mut Init::new(0))?;
    let file = dir.join(hf::WEIGHTS_FILE);
    let expected: Vec<(String, Vec<usize>)> = store
        .vars
        .iter()
        .map(|v| (v.name.clone(), v.shape.clone()))
        .collect();
    check_against(&tensors, &expected, &file)?;
    for t in tensors {
        let id = store.find(&t.name).expect("checked against the store");
        store.vars[id.0].init = t.data;
    }
    let (mut backend, _) = Backend::open(sinter_ops::DeviceChoice::Cpu)?;
    backend.load_vars(&store)?;
    let mut sampler = Gpt2Sampler::compile(&model, &store, &backend)?;
    let prompt = tok.encode(&args.prompt)?;
    let ids = sampler.sample(
        &model,
        &mut backend,
        &prompt,
        args.chars,
        args.temperature,
        args.seed,
    )?;
    println!("{}{}", args.prompt, tok.decode(&ids)?);
    Ok(())
}
