//! GPT-2's sizes: layers, heads, width, context, vocabulary and the layer norm's epsilon, the
//! named presets (124M … 1558M and small ones for tests), and `config.json` as `transformers` writes it.

use crate::error::{ModelError, Result};
use serde_json::{json, Map, Value};
use std::path::Path;

/// The activation of GPT-2's MLP (`activation_function` in `config.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// GELU in its tanh approximation: `gelu_new` (GPT-2's), `gelu_pytorch_tanh`, `gelu_fast`.
    GeluTanh,
    /// The exact GELU x·Φ(x): `gelu`.
    GeluErf,
    /// max(x, 0): `relu`.
    Relu,
    /// x·σ(x): `silu` or `swish`.
    Silu,
}

impl Activation {
    /// The `transformers` name this activation is written with.
    pub fn hf_name(self) -> &'static str {
        match self {
            Activation::GeluTanh => "gelu_new",
            Activation::GeluErf => "gelu",
            Activation::Relu => "relu",
            Activation::Silu => "silu",
        }
    }

    /// The activation `transformers` calls `name`, if sinter computes it.
    pub fn from_hf_name(name: &str) -> Option<Self> {
        Some(match name {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "gelu" => Activation::GeluErf,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            _ => return None,
        })
    }
}

/// The sizes of a GPT-2 model, named as in `transformers`' `GPT2Config`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gpt2Config {
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block; divides `n_embd`.
    pub n_head: usize,
    /// Features per position (C).
    pub n_embd: usize,
    /// Positions the position embedding has: the longest context.
    pub n_positions: usize,
    /// Token ids `0..vocab_size`: rows of the token embedding and the (tied) head's outputs.
    pub vocab_size: usize,
    /// Added to the variance in every layer norm (1e-5).
    pub layer_norm_epsilon: f32,
    /// The MLP's activation (GPT-2's is the tanh GELU).
    pub activation: Activation,
}

/// The named sizes `--size` takes: GPT-2's four releases and two small ones for quick runs.
pub const PRESETS: [(&str, usize, usize, usize, usize); 6] = [
    // (name, n_layer, n_head, n_embd, n_positions)
    ("tiny", 2, 2, 64, 128),
    ("mini", 4, 4, 256, 256),
    ("124M", 12, 12, 768, 1024),
    ("355M", 24, 16, 1024, 1024),
    ("774M", 36, 20, 1280, 1024),
    ("1558M", 48, 25, 1600, 1024),
];

/// GPT-2's vocabulary: 50,000 byte-level BPE merges, 256 bytes and `<|endoftext|>`.
pub const GPT2_VOCAB: usize = 50257;

impl Gpt2Config {
    /// The preset called `name` (`124M`, `tiny`, … see [`PRESETS`]), with GPT-2's vocabulary;
    /// [`ModelError::Config`] lists the presets for another name.
    pub fn preset(name: &str) -> Result<Self> {
        let (_, n_layer, n_head, n_embd, n_positions) = PRESETS
            .iter()
            .find(|p| p.0.eq_ignore_ascii_case(name))
            .copied()
            .ok_or_else(|| {
                let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
                ModelError::Config(format!(
                    "no GPT-2 size called {name:?}: the sizes are {}",
                    names.join(", ")
                ))
            })?;
        Ok(Self {
            n_layer,
            n_head,
            n_embd,
            n_positions,
            vocab_size: GPT2_VOCAB,
            layer_norm_epsilon: 1e-5,
            activation: Activation::GeluTanh,
        })
    }

    /// Refuses sizes the model cannot be built with: zeros, heads that do not divide the width.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Config(format!("gpt2: {m}")));
        for (name, v) in [
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_embd", self.n_embd),
            ("n_positions", self.n_positions),
            ("vocab_size", self.vocab_size),
        ] {
            if v == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        if self.n_embd % self.n_head != 0 {
            return bad(format!(
                "the width n_embd {} must be a multiple of the n_head {} heads",
                self.n_embd, self.n_head
            ));
        }
        if !(self.layer_norm_epsilon.is_finite() && self.layer_norm_epsilon >= 0.0) {
            return bad(format!(
                "layer_norm_epsilon {} must be a finite number at least 0",
                self.layer_norm_epsilon
            ));
        }
        Ok(())
    }

    /// Parameters of the model (the tied head counted once).
    pub fn parameter_count(&self) -> usize {
        let c = self.n_embd;
        let block =
            2 * 2 * c + (c * 3 * c + 3 * c) + (c * c + c) + (c * 4 * c + 4 * c) + (4 * c * c + c);
        self.vocab_size * c + self.n_positions * c + self.n_layer * block + 2 * c
    }

    /// Reads `config.json` text (from `file`, named in errors) as `transformers` writes it for
    /// `model_type` "gpt2". Settings sinter does not compute (cross-attention, attention scaled
    /// by layer, an untied head, an MLP not 4× wide, another activation) are errors, not ignored.
    pub fn from_json(text: &str, file: &Path) -> Result<Self> {
        let err = |m: String| ModelError::checkpoint(file, m);
        let v: Value =
            serde_json::from_str(text).map_err(|e| err(format!("is not valid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| err("is not a JSON object".into()))?;
        match obj.get("model_type").and_then(Value::as_str) {
            Some("gpt2") => {}
            Some(other) => {
                return Err(err(format!(
                    "has model_type {other:?}; sinter reads only \"gpt2\" models"
                )))
            }
            None => return Err(err("has no model_type (expected \"gpt2\")".into())),
        }
        if let Some(archs) = obj.get("architectures") {
            let names: Vec<&str> = archs
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(a) = names
                .iter()
                .find(|a| !matches!(**a, "GPT2LMHeadModel" | "GPT2Model"))
            {
                return Err(err(format!(
                    "has architecture {a:?}; sinter reads GPT2LMHeadModel (or GPT2Model)"
                )));
            }
        }
        let size = |key: &str, alt: Option<&str>| -> Result<usize> {
            let value = obj.get(key).or_else(|| alt.and_then(|a| obj.get(a)));
            match value {
                Some(v) => v
                    .as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| err(format!("{key} is {v}, not a whole number"))),
                None => Err(err(format!("has no {key}"))),
            }
        };
        let flag = |key: &str, want: bool| -> Result<()> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(()),
                Some(Value::Bool(b)) if *b == want => Ok(()),
                Some(v) => Err(err(format!(
                    "has {key} {v}; sinter's GPT-2 computes only {key} {want}"
                ))),
            }
        };
        flag("add_cross_attention", false)?;
        flag("scale_attn_by_inverse_layer_idx", false)?;
        flag("scale_attn_weights", true)?;
        flag("tie_word_embeddings", true)?;
        let n_embd = size("n_embd", Some("hidden_size"))?;
        match obj.get("n_inner") {
            None | Some(Value::Null) => {}
            Some(v) if v.as_u64() == Some(4 * n_embd as u64) => {}
            Some(v) => {
                return Err(err(format!(
                    "has n_inner {v}; sinter's GPT-2 MLP is 4 × n_embd = {} wide",
                    4 * n_embd
                )))
            }
        }
        let activation = match obj.get("activation_function") {
            None => Activation::GeluTanh,
            Some(v) => {
                let name = v.as_str().unwrap_or("");
                Activation::from_hf_name(name).ok_or_else(|| {
                    err(format!(
                        "has activation_function {v}; sinter computes gelu_new, gelu_pytorch_tanh, gelu_fast, gelu, relu and silu"
                    ))
                })?
            }
        };
        let eps = match obj.get("layer_norm_epsilon") {
            None => 1e-5,
            Some(v) => v
                .as_f64()
                .ok_or_else(|| err(format!("layer_norm_epsilon is {v}, not a number")))?
                as f32,
        };
        let config = Self {
            n_layer: size("n_layer", Some("num_hidden_layers"))?,
            n_head: size("n_head", Some("num_attention_heads"))?,
            n_embd,
            n_positions: size("n_positions", Some("n_ctx"))?,
            vocab_size: size("vocab_size", None)?,
            layer_norm_epsilon: eps,
            activation,
        };
        config.check().map_err(|e| err(format!("{e}")))?;
        Ok(config)
    }

    /// `config.json` for `GPT2LMHeadModel.from_pretrained`: these sizes and GPT-2's defaults
    /// for the rest (dropout 0.1, tied embeddings, `<|endoftext|>` = vocab − 1 when the
    /// vocabulary is GPT-2's).
    pub fn to_json(&self) -> String {
        let mut m = Map::new();
        let special = if self.vocab_size == GPT2_VOCAB {
            json!(GPT2_VOCAB - 1)
        } else {
            Value::Null
        };
        for (k, v) in [
            ("activation_function", json!(self.activation.hf_name())),
            ("architectures", json!(["GPT2LMHeadModel"])),
            ("attn_pdrop", json!(0.1)),
            ("bos_token_id", special.clone()),
            ("embd_pdrop", json!(0.1)),
            ("eos_token_id", special),
            ("initializer_range", json!(0.02)),
            ("layer_norm_epsilon", json!(self.layer_norm_epsilon as f64)),
            ("model_type", json!("gpt2")),
            ("n_ctx", json!(self.n_positions)),
            ("n_embd", json!(self.n_embd)),
            ("n_head", json!(self.n_head)),
            ("n_inner", Value::Null),
            ("n_layer", json!(self.n_layer)),
            ("n_positions", json!(self.n_positions)),
            ("reorder_and_upcast_attn", json!(false)),
            ("resid_pdrop", json!(0.1)),
            ("scale_attn_by_inverse_layer_idx", json!(false)),
            ("scale_attn_weights", json!(true)),
            ("summary_activation", Value::Null),
            ("summary_first_dropout", json!(0.1)),
            ("summary_proj_to_labels", json!(true)),
            ("summary_type", json!("cls_index")),
            ("summary_use_proj", json!(true)),
            ("tie_word_embeddings", json!(true)),
            ("use_cache", json!(true)),
            ("vocab_size", json!(self.vocab_size)),
        ] {
            m.insert(k.to_string(), v);
        }
        let mut text = serde_json::to_string_pretty(&Value::Object(m)).expect("JSON values");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_124m_preset_has_gpt2s_parameter_count() {
        let c = Gpt2Config::preset("124M").unwrap();
        assert_eq!(
            (c.n_layer, c.n_head, c.n_embd, c.n_positions),
            (12, 12, 768, 1024)
        );
        // 124,439,808: GPT-2 small's count with the head tied to the token embedding.
        assert_eq!(c.parameter_count(), 124_439_808);
        let e = Gpt2Config::preset("7B").unwrap_err().to_string();
        assert!(e.contains("\"7B\"") && e.contains("124M"), "{e}");
    }

    #[test]
    fn config_json_round_trips_and_refuses_what_sinter_does_not_compute() {
        let f = Path::new("dir/config.json");
        let mut c = Gpt2Config::preset("tiny").unwrap();
        c.vocab_size = 101;
        let back = Gpt2Config::from_json(&c.to_json(), f).unwrap();
        assert_eq!(back, c);
        let with = |extra: &str| {
            let mut v: Value = serde_json::from_str(&c.to_json()).unwrap();
            let e: Value = serde_json::from_str(extra).unwrap();
            for (k, x) in e.as_object().unwrap() {
                v[k] = x.clone();
            }
            Gpt2Config::from_json(&v.to_string(), f)
                .unwrap_err()
                .to_string()
        };
        for (extra, words) in [
            (r#"{"model_type": "llama"}"#, "\"llama\""),
            (
                r#"{"architectures": ["GPT2ForSequenceClassification"]}"#,
                "GPT2ForSequence",
            ),
            (r#"{"n_head": 3}"#, "multiple"),
            (r#"{"n_inner": 100}"#, "n_inner"),
            (r#"{"activation_function": "mish"}"#, "mish"),
            (r#"{"add_cross_attention": true}"#, "add_cross_attention"),
            (r#"{"n_embd": "wide"}"#, "n_embd"),
        ] {
            let e = with(extra);
            assert!(e.starts_with("dir/config.json: "), "{e}");
            assert!(e.contains(words), "{extra}: {e}");
        }
        let e = Gpt2Config::from_json("{\"model_type\": \"gpt2\"}", f)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no n_embd"), "{e}");
    }
}
