//! Models rebuilt from parameter files written by `sinter train --save`: the metadata names the
//! model and the sizes it was built with, the tensors are checked against it (eval, predict, sample).

use super::train::ModelName;
use super::{CliError, Result};
use sinter_model::checkpoint::{check_against, load_safetensors, NamedTensor};
use sinter_model::data::CharCorpus;
use sinter_model::lm::CharModel;
use sinter_model::nn::{default_cnn, mlp, Sequential};
use sinter_model::resnet::resnet;
use sinter_model::{Init, VarStore};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The longest context a saved recurrent model may declare (its file holds nothing sized by it).
const MAX_RECURRENT_CONTEXT: usize = 1 << 16;

/// A parameter file: its tensors and metadata, and the model it holds.
pub struct Saved {
    pub path: PathBuf,
    pub tensors: Vec<NamedTensor>,
    pub meta: BTreeMap<String, String>,
    pub model: ModelName,
}

/// `[channels, height, width]` as the metadata writes it: `1x28x28`.
pub fn image_text(image: [usize; 3]) -> String {
    format!("{}x{}x{}", image[0], image[1], image[2])
}

impl Saved {
    /// Reads `path`; the model is the metadata's, or `given` (`--model`) for a file without
    /// one (e.g. a PyTorch state_dict saved with the same names); both must agree.
    pub fn load(path: &Path, given: Option<ModelName>) -> Result<Self> {
        let (tensors, meta) = load_safetensors(path)?;
        if meta.contains_key("sinter-checkpoint")
            || tensors.iter().any(|t| t.name.starts_with("param/"))
        {
            return Err(CliError::Usage(format!(
                "{}: this is a training checkpoint; give the parameter file written by `sinter train --save FILE`",
                path.display()
            )));
        }
        let named: Option<ModelName> =
            match meta.get("model") {
                Some(m) => Some(clap::ValueEnum::from_str(m, false).map_err(|e| {
                    CliError::Usage(format!("{}: unknown model: {e}", path.display()))
                })?),
                None => None,
            };
        let model = match (named, given) {
            (Some(n), Some(g)) if n != g => {
                return Err(CliError::Usage(format!(
                    "{} holds a {} model, not --model {}",
                    path.display(),
                    super::train::value_name(n),
                    super::train::value_name(g)
                )))
            }
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => {
                return Err(CliError::Usage(format!(
                    "{}: no 'model' in the metadata; was it saved by `sinter train --save`? (name it with --model)",
                    path.display()
                )))
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            meta,
            model,
        })
    }

    fn bad(&self, problem: String) -> CliError {
        CliError::Usage(format!("{}: {problem}", self.path.display()))
    }

    fn get(&self, key: &str) -> Result<&String> {
        self.meta.get(key).ok_or_else(|| {
            self.bad(format!(
                "no '{key}' in the metadata; was it saved by `sinter train --save`?"
            ))
        })
    }

    fn tensor(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The image shape `[channels, height, width]` and class count the network was trained
    /// for, from the metadata (files saved before it was written there: `None`).
    pub fn image_and_classes(&self) -> Result<Option<([usize; 3], usize)>> {
        let (Some(image), Some(classes)) = (self.meta.get("image"), self.meta.get("classes"))
        else {
            return Ok(None);
        };
        let dims: Vec<usize> = image.split('x').filter_map(|d| d.parse().ok()).collect();
        let classes: usize = classes.parse().unwrap_or(0);
        match dims[..] {
            [c, h, w] if c > 0 && h > 0 && w > 0 && classes > 0 => Ok(Some(([c, h, w], classes))),
            _ => Err(self.bad(format!(
                "image {image:?} or classes {classes} in the metadata is not a size"
            ))),
        }
    }

    /// The image network, built for `image` and `classes` and holding the file's parameters
    /// (an error lists every tensor that does not fit).
    pub fn image_net(&self, image: [usize; 3], classes: usize) -> Result<(Sequential, VarStore)> {
        let mut store = VarStore::new();
        let rng = &mut Init::new(0);
        let net = match self.model {
            ModelName::Cnn => {
                if image[1] < 4 || image[2] < 4 {
                    return Err(self.bad(format!(
                        "the cnn needs images of at least 4×4 pixels; these are {}×{}",
                        image[1], image[2]
                    )));
                }
                default_cnn(&mut store, image[0], [image[1], image[2]], classes, rng)
            }
            ModelName::Mlp => mlp(&mut store, image.iter().product(), 256, classes, rng),
            ModelName::Resnet => {
                let depth = self.resnet_depth()?;
                resnet(&mut store, depth, image[0], classes, rng)
                    .map_err(|e| self.bad(e.to_string()))?
            }
            m => {
                return Err(self.bad(format!(
                    "holds a character model ({}), not an image model",
                    super::train::value_name(m)
                )))
            }
        };
        self.fill(&mut store)?;
        Ok((net, store))
    }

    /// The depth of a saved ResNet: the metadata's, or 6n+2 for the n blocks of its first stage
    /// (`layer1.<k>.conv1.weight`) in a file without one (a state_dict saved by PyTorch).
    fn resnet_depth(&self) -> Result<usize> {
        if let Some(d) = self.meta.get("depth") {
            return d
                .parse()
                .map_err(|_| self.bad(format!("depth {d:?} in the metadata is not a number")));
        }
        let blocks = self
            .tensors
            .iter()
            .filter(|t| t.name.starts_with("layer1.") && t.name.ends_with(".conv1.weight"))
            .count();
        if blocks == 0 {
            return Err(self.bad("has no layer1.0.conv1.weight: not a ResNet state_dict".into()));
        }
        Ok(6 * blocks + 2)
    }

    /// Checks the tensors against `store`'s parameters and makes them their initial values.
    fn fill(&self, store: &mut VarStore) -> Result<()> {
        let expected: Vec<(String, Vec<usize>)> = store
            .vars
            .iter()
            .map(|v| (v.name.clone(), v.shape.clone()))
            .collect();
        check_against(&self.tensors, &expected, &self.path)?;
        for t in &self.tensors {
            if let Some(id) = store.find(&t.name) {
                store.vars[id.0].init = t.data.clone();
            }
        }
        Ok(())
    }

    /// The character model, its parameters, and its vocabulary (a corpus with no text): every
    /// size is backed by the file's own tensors or bounded, so a damaged file cannot make it
    /// allocate without limit.
    pub fn char_model(&self) -> Result<(CharModel, VarStore, CharCorpus)> {
        let model = self.model;
        if !model.is_text() {
            return Err(self.bad(format!(
                "holds an image model ({}), not a character model",
                super::train::value_name(model)
            )));
        }
        let context: usize = self.get("context")?.parse().map_err(|_| {
            self.bad(format!(
                "context {:?} in the metadata is not a number",
                self.meta.get("context").cloned().unwrap_or_default()
            ))
        })?;
        let vocab: Vec<char> = self.get("vocab")?.chars().collect();
        if vocab.is_empty() || !vocab.windows(2).all(|w| w[0] < w[1]) {
            return Err(self.bad(format!(
                "the vocabulary in the metadata ({} characters) is not a non-empty sorted set of characters",
                vocab.len()
            )));
        }
        let width = match self.tensor("head.weight") {
            Some(t) if t.shape.len() == 2 && t.shape[0] == vocab.len() => t.shape[1],
            Some(t) => {
                return Err(self.bad(format!(
                "head.weight has shape {:?}, expected [{}, width] for its {}-character vocabulary",
                t.shape,
                vocab.len(),
                vocab.len()
            )))
            }
            None => return Err(self.bad("has no head.weight tensor".into())),
        };
        // The transformer's context is the length of its position table; a recurrent model is
        // unrolled over its context.
        match self.tensor("pos.weight") {
            _ if context == 0 => return Err(self.bad("context 0 in the metadata".into())),
            Some(t) if model == ModelName::CharTransformer && t.shape != [context, width] => {
                return Err(self.bad(format!(
                    "pos.weight has shape {:?} but the metadata gives context {context} and width {width}",
                    t.shape
                )))
            }
            None if model == ModelName::CharTransformer => {
                return Err(self.bad("has no pos.weight tensor".into()))
            }
            _ if model != ModelName::CharTransformer && context > MAX_RECURRENT_CONTEXT => {
                return Err(self.bad(format!(
                    "context {context} in the metadata is over the {MAX_RECURRENT_CONTEXT} characters a recurrent model is unrolled over"
                )))
            }
            _ => {}
        }
        let layers = self
            .tensors
            .iter()
            .filter(|t| t.name.ends_with(".ln1.weight"))
            .count();
        let heads: usize = self
            .meta
            .get("heads")
            .and_then(|h| h.parse().ok())
            .unwrap_or(4);
        let arch = super::train_text::arch(model, width, layers, heads)?;
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
            &mut Init::new(0),
        );
        self.fill(&mut store)?;
        Ok((model, store, corpus))
    }
}
