//! `sinter eval` (loss and accuracy of a saved image model on the test images, or nats per
//! character of a character model on the validation text) and `sinter predict` (class
//! probabilities of images); both compile evaluation programs only, never a training step.

use super::saved::Saved;
use super::train::ModelName;
use super::train_loop::loss_text;
use super::{CliError, Result};
use clap::Args;
use sinter_model::data::{embedded_mnist, load_dir, CharCorpus, ImageDataset};
use sinter_model::train::ImageClassifier;
use sinter_model::{Backend, Evaluator};
use sinter_ops::DeviceChoice;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Parameters saved by `sinter train --save FILE` (an image or a character model).
    pub params: PathBuf,
    /// Image models: a folder of IDX files, evaluated on its test images; text models: a UTF-8
    /// text file, evaluated on its last 10% (the validation split). Default: the built-in data
    /// the models train on.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The model the file holds, for a file without sinter's metadata (e.g. a PyTorch
    /// state_dict with the same tensor names); must agree with the metadata when it has one.
    #[arg(long, value_enum)]
    pub model: Option<ModelName>,
    /// Images per evaluation batch (image models, default 200), or windows per batch (text
    /// models, default 32: with the training's --batch, the same 16 batches of windows it
    /// validated on); at least 1.
    #[arg(long, value_parser = super::checks::at_least_one::<usize>, allow_negative_numbers = true)]
    pub batch: Option<usize>,
    /// auto (hardware GPU, else CPU), gpu, software (lavapipe & co.), cpu, or one adapter:
    /// gpu:N, software:N, gpu:NAME, software:NAME (see `sinter info`); or SINTER_DEVICE.
    #[arg(long)]
    pub device: Option<String>,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Parameters of an image model saved by `sinter train --save FILE`.
    pub params: PathBuf,
    /// PNG images to classify, each of the size the model was trained on (28×28 for the
    /// built-in digits: a light digit on a dark background, as MNIST draws them).
    pub images: Vec<PathBuf>,
    /// Classify test images of the data set instead (repeat or separate by commas: --index
    /// 0,1,2), printed with their labels.
    #[arg(long, value_delimiter = ',')]
    pub index: Vec<usize>,
    /// The folder of IDX files --index picks from (its test images); default: the built-in
    /// digits.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The model the file holds, for a file without sinter's metadata.
    #[arg(long, value_enum)]
    pub model: Option<ModelName>,
    /// auto (hardware GPU, else CPU), gpu, software (lavapipe & co.), cpu, or one adapter:
    /// gpu:N, software:N, gpu:NAME, software:NAME (see `sinter info`); or SINTER_DEVICE.
    #[arg(long)]
    pub device: Option<String>,
}

fn device(option: &Option<String>) -> Result<DeviceChoice> {
    Ok(match option {
        Some(d) => DeviceChoice::parse(d).map_err(|e| CliError::Usage(format!("--device: {e}")))?,
        None => DeviceChoice::from_env()?,
    })
}

fn open(choice: DeviceChoice) -> Result<Backend> {
    let (backend, notice) = Backend::open(choice)?;
    if let Some(n) = notice {
        eprintln!("{n}");
    }
    Ok(backend)
}

/// The test images of `--data` (or the built-in digits).
fn test_images(data: &Option<PathBuf>) -> Result<ImageDataset> {
    if let Some(dir) = data {
        super::checks::input("--data", dir)?;
    }
    Ok(match data {
        Some(dir) => load_dir(dir)?.1,
        None => embedded_mnist()?.1,
    })
}

/// The image classifier of `saved`, built for `image` and `classes`, ready to evaluate.
fn image_evaluator(
    saved: &Saved,
    image: [usize; 3],
    classes: usize,
    choice: DeviceChoice,
) -> Result<Evaluator<ImageClassifier>> {
    let (net, store) = saved.image_net(image, classes)?;
    let backend = open(choice)?;
    let limit = super::memory::limit_for(&backend)?;
    let mut eval = Evaluator::new(ImageClassifier { net, image }, store, backend)?;
    eval.memory_limit = limit;
    Ok(eval)
}

pub fn run_eval(args: EvalArgs) -> Result<()> {
    let choice = device(&args.device)?;
    super::checks::input("the parameter file", &args.params)?;
    let saved = Saved::load(&args.params, args.model)?;
    if saved.model.is_text() {
        return eval_text(&args, &saved, choice);
    }
    let data = test_images(&args.data)?;
    let image = [data.channels, data.rows, data.cols];
    if let Some((trained, _)) = saved.image_and_classes()? {
        if trained != image {
            return Err(CliError::Usage(format!(
                "{} was trained on {}×{}×{} images but the test images are {}×{}×{}",
                args.params.display(),
                trained[0],
                trained[1],
                trained[2],
                image[0],
                image[1],
                image[2]
            )));
        }
    }
    let mut eval = image_evaluator(&saved, image, data.classes, choice)?;
    eprintln!(
        "evaluating {} on {} test images on {}…",
        super::train::value_name(saved.model),
        data.n,
        eval.backend.describe()
    );
    let started = Instant::now();
    let batch = args.batch.unwrap_or(200);
    let stats = eval
        .evaluate_images(&data, batch)
        .map_err(|e| super::memory::explain(e, &[("--batch", batch)]))?;
    println!(
        "test loss {} · test accuracy {:.2}% ({} images) · {:.1} s · {}",
        loss_text(stats.loss),
        stats.accuracy * 100.0,
        stats.examples,
        started.elapsed().as_secs_f64(),
        eval.backend.describe()
    );
    Ok(())
}

/// Nats per character of a character model on the validation split of `--data` (or the built-in
/// text), over the same evenly spaced windows as the training's validation.
fn eval_text(args: &EvalArgs, saved: &Saved, choice: DeviceChoice) -> Result<()> {
    const BATCHES: usize = 16;
    let (model, store, vocab) = saved.char_model()?;
    let text = match &args.data {
        Some(path) => {
            super::checks::input("--data", path)?;
            CharCorpus::load(path)?
        }
        None => CharCorpus::embedded()?,
    };
    // The validation characters in the model's own vocabulary; others cannot be predicted.
    let chars = text.decode(&text.valid);
    let ids: Vec<u32> = chars
        .chars()
        .filter_map(|c| vocab.vocab.binary_search(&c).ok().map(|i| i as u32))
        .collect();
    let skipped = chars.chars().count() - ids.len();
    let context = model.context;
    if ids.len() <= context + 1 {
        return Err(CliError::Usage(format!(
            "the validation text holds {} characters of the model's vocabulary, fewer than its context of {context} + 1",
            ids.len()
        )));
    }
    let batch = args.batch.unwrap_or(32);
    let backend = open(choice)?;
    let limit = super::memory::limit_for(&backend)?;
    let mut eval = Evaluator::new(model, store, backend)?;
    eval.memory_limit = limit;
    eprintln!(
        "evaluating {} (context {context}) on {} validation characters on {}…",
        super::train::value_name(saved.model),
        ids.len(),
        eval.backend.describe()
    );
    let started = Instant::now();
    let nats = eval
        .nats_per_char(&ids, batch, BATCHES)
        .map_err(|e| super::memory::explain(e, &[("--batch", batch)]))?;
    let skipped = if skipped > 0 {
        format!(" ({skipped} characters outside the model's vocabulary skipped)")
    } else {
        String::new()
    };
    println!(
        "validation loss {nats:.3} nats/char ({} windows of {context} characters){skipped} · {:.1} s · {}",
        batch * BATCHES,
        started.elapsed().as_secs_f64(),
        eval.backend.describe()
    );
    Ok(())
}

/// One PNG as floats in [0, 1] laid out `[channels, height, width]`: gray for one channel
/// (RGB averaged by luma), RGB for three; 16-bit samples keep their high byte.
fn read_png(path: &Path, image: [usize; 3]) -> Result<Vec<f32>> {
    let bad = |problem: String| CliError::Usage(format!("{}: {problem}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .map_err(|e| bad(format!("is not a PNG image: {e}")))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(format!("is not a readable PNG image: {e}")))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let [c, rows, cols] = image;
    if (h, w) != (rows, cols) {
        return Err(bad(format!(
            "is {w}×{h} pixels but the model takes {cols}×{rows} images"
        )));
    }
    let per_pixel = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let rgb = |p: &[u8]| -> [f32; 3] {
        match p.len() {
            1 | 2 => [p[0] as f32; 3],
            _ => [p[0] as f32, p[1] as f32, p[2] as f32],
        }
    };
    let mut out = vec![0.0; c * h * w];
    for (i, p) in pixels.chunks(per_pixel).enumerate().take(h * w) {
        let [r, g, b] = rgb(p);
        match c {
            1 => out[i] = (0.299 * r + 0.587 * g + 0.114 * b) / 255.0,
            3 => {
                for (k, v) in [r, g, b].into_iter().enumerate() {
                    out[k * h * w + i] = v / 255.0;
                }
            }
            _ => {
                return Err(bad(format!(
                    "the model takes {c}-channel images; PNG input is for 1 (gray) or 3 (RGB)"
                )))
            }
        }
    }
    Ok(out)
}

/// `0:0.001 1:0.002 …`, and the most likely class.
fn describe(probs: &[f32]) -> (usize, String) {
    let best = probs
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    let list: Vec<String> = probs
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{i}:{p:.3}"))
        .collect();
    (best, list.join(" "))
}

pub fn run_predict(args: PredictArgs) -> Result<()> {
    let choice = device(&args.device)?;
    if args.images.is_empty() && args.index.is_empty() {
        return Err(CliError::Usage(
            "give PNG images to classify, or --index N to classify test image N of --data (default: the built-in digits)".into(),
        ));
    }
    super::checks::input("the parameter file", &args.params)?;
    let saved = Saved::load(&args.params, args.model)?;
    if saved.model.is_text() {
        return Err(CliError::Usage(format!(
            "{} holds a character model ({}); `sinter predict` classifies images (use `sinter sample`)",
            args.params.display(),
            super::train::value_name(saved.model)
        )));
    }
    let data = if args.index.is_empty() {
        None
    } else {
        Some(test_images(&args.data)?)
    };
    let (image, classes) = match (saved.image_and_classes()?, &data) {
        (Some(known), _) => known,
        (None, Some(d)) => ([d.channels, d.rows, d.cols], d.classes),
        // Files saved before the metadata held the sizes: the built-in digits'.
        (None, None) => ([1, 28, 28], 10),
    };
    // (name, label, pixels) of every image asked for.
    let mut inputs: Vec<(String, Option<u8>, Vec<f32>)> = Vec::new();
    for path in &args.images {
        inputs.push((path.display().to_string(), None, read_png(path, image)?));
    }
    if let Some(d) = &data {
        if [d.channels, d.rows, d.cols] != image {
            return Err(CliError::Usage(format!(
                "{} takes {}×{}×{} images but --data holds {}×{}×{}",
                args.params.display(),
                image[0],
                image[1],
                image[2],
                d.channels,
                d.rows,
                d.cols
            )));
        }
        let len = d.image_len();
        for &i in &args.index {
            if i >= d.n {
                return Err(CliError::Usage(format!(
                    "--index {i}: the test set holds {} images (0 to {})",
                    d.n,
                    d.n - 1
                )));
            }
            let pixels = d.images[i * len..(i + 1) * len].to_vec();
            inputs.push((format!("test image {i}"), Some(d.labels[i]), pixels));
        }
    }
    let mut eval = image_evaluator(&saved, image, classes, choice)?;
    let all: Vec<f32> = inputs.iter().flat_map(|i| i.2.iter().copied()).collect();
    let probs = eval.probabilities(&all, inputs.len())?;
    for ((name, label, _), p) in inputs.iter().zip(&probs) {
        let (best, list) = describe(p);
        let label = label.map_or(String::new(), |l| format!(" (label {l})"));
        println!(
            "{name}{label}: {best} ({:.1}%) · probabilities {list}",
            p[best] * 100.0
        );
    }
    Ok(())
}
