//! `sinter sample`: rebuilds a character model from a parameter file written by
//! `sinter train --save`, and prints text it generates after a prompt.

use super::Result;
use clap::Args;
use sinter_model::lm::CharSampler;
use sinter_model::Backend;
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

pub fn run(args: SampleArgs) -> Result<()> {
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
