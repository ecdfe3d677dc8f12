//! `sinter train --model cnn|mlp|resnet`: the image classifier on the shipped MNIST digits, IDX
//! files or CIFAR-10 batches, given to the shared training loop, with evaluation each epoch.

use super::train::{batch_split, optimizer, settings, ModelName, Ranks, TrainArgs};
use super::train_loop::{self, loss_text, Eval, Pace, Step, Task};
use super::{CliError, Result};
use sinter_device::DeviceChoice;
use sinter_model::checkpoint::{save_safetensors, TrainingCheckpoint};
use sinter_model::data::{embedded_mnist, load_dir, ImageDataset};
use sinter_model::nn::{default_cnn, mlp};
use sinter_model::resnet::resnet;
use sinter_model::train::{Classifier, ClassifierConfig, ImageClassifier};
use sinter_model::trainer::Trainer;
use sinter_model::{Backend, ModelError, VarStore};
use std::collections::BTreeMap;
use std::path::Path;

/// The classifier with its training and test images.
struct Images {
    c: Classifier,
    train: ImageDataset,
    test: ImageDataset,
}

impl Task for Images {
    type M = ImageClassifier;
    fn trainer(&self) -> &Trainer<ImageClassifier> {
        &self.c.trainer
    }
    fn trainer_mut(&mut self) -> &mut Trainer<ImageClassifier> {
        &mut self.c.trainer
    }
    fn step(&mut self, profile: bool) -> Result<Step, ModelError> {
        let (s, profile) = if profile {
            let (s, p) = self.c.train_step_profiled(&self.train, None)?;
            (s, Some(p))
        } else {
            (self.c.train_step(&self.train)?, None)
        };
        Ok(Step {
            loss: s.loss,
            correct: Some(s.correct),
            profile,
        })
    }
    fn submit(&mut self) -> Result<(), ModelError> {
        self.c.submit_step(&self.train)
    }
    fn complete(&mut self) -> Result<Step, ModelError> {
        let s = self.c.complete_step()?;
        Ok(Step {
            loss: s.loss,
            correct: Some(s.correct),
            profile: None,
        })
    }
    fn evaluate(&mut self) -> Result<Eval, ModelError> {
        let e = self.c.evaluate(&self.test)?;
        Ok(Eval {
            loss: e.loss,
            accuracy: Some(e.accuracy),
            examples: e.examples,
        })
    }
    fn checkpoint(&self) -> Result<TrainingCheckpoint, ModelError> {
        self.c.checkpoint()
    }
    fn restore(&mut self, ckpt: &TrainingCheckpoint, path: &Path) -> Result<(), ModelError> {
        self.c.restore(ckpt, path)
    }
    fn data_state(&self) -> Vec<(String, String)> {
        vec![
            ("data order".into(), self.c.batcher.state().to_string()),
            ("test examples".into(), self.test.n.to_string()),
        ]
    }
}

fn load_data(args: &TrainArgs) -> Result<(ImageDataset, ImageDataset)> {
    Ok(match &args.data {
        Some(dir) => load_dir(dir)?,
        None => embedded_mnist()?,
    })
}

pub(super) fn run(args: &TrainArgs, choice: DeviceChoice, ranks: Ranks) -> Result<()> {
    let root = ranks.rank == 0;
    let batch = args.batch.unwrap_or(64);
    let accumulate = args.accumulate_over(batch, ranks.size)?;
    let (train_set, test_set) = load_data(args)?;
    if batch > train_set.n {
        return Err(CliError::Usage(format!(
            "--batch {} is larger than the {} training examples",
            batch, train_set.n
        )));
    }
    let (backend, notice) = Backend::open_nth(choice, ranks.local_rank)?;
    if let (Some(n), true) = (notice, root) {
        eprintln!("{n}");
    }

    let mut rng = sinter_model::Init::new(args.seed);
    let mut store = VarStore::new();
    let image = [train_set.channels, train_set.rows, train_set.cols];
    if args.model == ModelName::Cnn && (image[1] < 4 || image[2] < 4) {
        return Err(CliError::Usage(format!(
            "the cnn pools twice by 2, so it needs images of at least 4×4 pixels; these are {}×{} (try --model mlp)",
            image[1], image[2]
        )));
    }
    let (name, model) = match args.model {
        ModelName::Mlp => (
            "mlp",
            mlp(
                &mut store,
                image.iter().product(),
                256,
                train_set.classes,
                &mut rng,
            ),
        ),
        ModelName::Resnet => (
            "resnet",
            resnet(
                &mut store,
                args.resnet_depth(),
                image[0],
                train_set.classes,
                &mut rng,
            )
            .map_err(|e| CliError::Usage(format!("--depth {}: {e}", args.resnet_depth())))?,
        ),
        _ => (
            "cnn",
            default_cnn(
                &mut store,
                image[0],
                [image[1], image[2]],
                train_set.classes,
                &mut rng,
            ),
        ),
    };
    let steps_per_epoch = (train_set.n / batch) as u64;
    let total_steps = args
        .steps
        .unwrap_or(args.epochs.unwrap_or(5) * steps_per_epoch);
    let config = ClassifierConfig {
        batch,
        accumulate,
        eval_batch: 200,
        seed: args.seed,
        shuffle: !args.no_shuffle,
        stop_on_nan: args.stop_on_nan,
        detect_anomaly: args.detect_anomaly,
        memory_limit: super::memory::limit_for(&backend)?,
    };
    let opt = optimizer(args, total_steps, steps_per_epoch)?;
    let too_big = |e| super::memory::explain(e, &[("--batch", batch)]);
    let mut c = match ranks.collective {
        None => Classifier::new(name, model, store, backend, opt, config, image, train_set.n)
            .map_err(too_big)?,
        Some(collective) => Classifier::data_parallel(
            name,
            model,
            store,
            backend,
            opt,
            config,
            image,
            train_set.n,
            collective,
        )
        .map_err(too_big)?,
    };
    c.shift = args.shift;
    let settings = settings(args, batch, total_steps, &c.optimizer);
    if root {
        eprintln!(
            "training {name} on {} ({} train / {} test images) for {} steps, batch {}{}, {} lr {}",
            c.backend.describe(),
            train_set.n,
            test_set.n,
            total_steps,
            batch,
            batch_split(batch, ranks.size, accumulate, c.gradient_bytes()),
            c.optimizer.kind.name(),
            c.optimizer.lr
        );
    }
    let pace = Pace {
        total_steps,
        eval_every: steps_per_epoch.max(1),
        steps_per_epoch: Some(steps_per_epoch),
        batch,
        rate_per_step: batch,
        rate_unit: "img/s",
        evaluating: format!("evaluating {} test images…", test_set.n),
        rank: ranks.rank,
        ranks: ranks.size,
    };
    let classes = train_set.classes;
    let mut task = Images {
        c,
        train: train_set,
        test: test_set,
    };
    let save_model = |task: &Images, path: &Path| -> Result<()> {
        let mut meta = BTreeMap::new();
        meta.insert("model".to_string(), name.to_string());
        // What `sinter eval` and `sinter predict` need to rebuild the network without the data.
        meta.insert("image".to_string(), super::saved::image_text(image));
        meta.insert("classes".to_string(), classes.to_string());
        if args.model == ModelName::Resnet {
            meta.insert("depth".to_string(), args.resnet_depth().to_string());
        }
        Ok(save_safetensors(path, &task.c.params()?, &meta)?)
    };
    let Some(done) = train_loop::train(&mut task, args, &settings, &pace, &save_model)? else {
        return Ok(());
    };
    if let Some(path) = &args.save {
        save_model(&task, path)?;
        eprintln!("saved parameters to {}", path.display());
    }
    let c = &task.c;
    let images_per_sec = done.examples as f64 / done.train_secs.max(1e-9);
    println!(
        "test accuracy {:.2}% ({} images) after {} steps · final train loss {} · {:.0} images/s · {:.1} s · {}",
        done.eval.accuracy.unwrap_or(0.0) * 100.0,
        done.eval.examples,
        done.steps,
        loss_text(done.last_loss as f64),
        images_per_sec,
        done.train_secs,
        c.backend.describe()
    );
    if args.profile {
        println!();
        super::profile::report(&c.backend, &done.profiles, true, false, args.trace.as_ref())?;
    }
    Ok(())
}
