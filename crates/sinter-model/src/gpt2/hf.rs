//! GPT-2 folders as Hugging Face `transformers` reads and writes them: `config.json` and
//! `model.safetensors` (Conv1D weights `[in, out]`, the head tied to `wte` and left out), both ways.

use super::config::Gpt2Config;
use crate::checkpoint::{write_atomic, NamedTensor};
use crate::error::{ModelError, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The file of a folder's sizes.
pub const CONFIG_FILE: &str = "config.json";
/// The file of a folder's tensors.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The prefix `GPT2LMHeadModel` puts before its body's names (`transformer.h.0.ln_1.weight`).
pub const PREFIX: &str = "transformer.";

/// Every parameter of a GPT-2 of `config`, named as `GPT2LMHeadModel`'s `state_dict` names
/// them (without the tied `lm_head.weight`), in the order the model creates them.
pub fn parameter_shapes(config: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
    let c = config.n_embd;
    let mut out = vec![
        (format!("{PREFIX}wte.weight"), vec![config.vocab_size, c]),
        (format!("{PREFIX}wpe.weight"), vec![config.n_positions, c]),
    ];
    for l in 0..config.n_layer {
        let p = |s: &str| format!("{PREFIX}h.{l}.{s}");
        out.extend([
            (p("ln_1.weight"), vec![c]),
            (p("ln_1.bias"), vec![c]),
            (p("attn.c_attn.weight"), vec![c, 3 * c]),
            (p("attn.c_attn.bias"), vec![3 * c]),
            (p("attn.c_proj.weight"), vec![c, c]),
            (p("attn.c_proj.bias"), vec![c]),
            (p("ln_2.weight"), vec![c]),
            (p("ln_2.bias"), vec![c]),
            (p("mlp.c_fc.weight"), vec![c, 4 * c]),
            (p("mlp.c_fc.bias"), vec![4 * c]),
            (p("mlp.c_proj.weight"), vec![4 * c, c]),
            (p("mlp.c_proj.bias"), vec![c]),
        ]);
    }
    out.push((format!("{PREFIX}ln_f.weight"), vec![c]));
    out.push((format!("{PREFIX}ln_f.bias"), vec![c]));
    out
}

/// Reads a folder as `save_pretrained` writes it: the sizes from `config.json` and every
/// parameter from `model.safetensors` (F32, F16 or BF16), named with the `transformer.` prefix
/// whether or not the file has it. The causal-mask buffers (`attn.bias`, `attn.masked_bias`)
/// are skipped; `lm_head.weight` must be absent or equal to `wte`. Errors name the file and
/// the tensor: a missing or unexpected one, a shape that disagrees with `config.json`.
pub fn read_dir(dir: &Path) -> Result<(Gpt2Config, Vec<NamedTensor>)> {
    let config_path = dir.join(CONFIG_FILE);
    let text =
        std::fs::read_to_string(&config_path).map_err(|e| ModelError::io(&config_path, e))?;
    let config = Gpt2Config::from_json(&text, &config_path)?;
    let weights = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&weights).map_err(|e| ModelError::io(&weights, e))?;
    let tensors = parse_weights(&bytes, &config, &weights)?;
    Ok((config, tensors))
}

/// The parameters in safetensors `bytes` (from `file`, named in errors) checked against
/// `config`, in [`parameter_shapes`] order; see [`read_dir`].
pub fn parse_weights(bytes: &[u8], config: &Gpt2Config, file: &Path) -> Result<Vec<NamedTensor>> {
    let err = |m: String| ModelError::checkpoint(file, m);
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| err(format!("is not a valid safetensors file: {e}")))?;
    let expected = parameter_shapes(config);
    let shapes: HashMap<&str, &[usize]> = expected
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    let mut found: BTreeMap<String, NamedTensor> = BTreeMap::new();
    let mut head = None;
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    for raw in names {
        let view = st
            .tensor(&raw)
            .map_err(|e| err(format!("tensor {raw}: {e}")))?;
        let name = if raw.starts_with(PREFIX) || raw == "lm_head.weight" {
            raw.clone()
        } else {
            format!("{PREFIX}{raw}")
        };
        if name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias") {
            continue; // the causal mask, a buffer: the attention kernel masks by itself
        }
        let data = to_f32(view.dtype(), view.data()).ok_or_else(|| {
            err(format!(
                "tensor {raw} has dtype {:?}; sinter reads F32, F16 and BF16",
                view.dtype()
            ))
        })?;
        let t = NamedTensor::new(name.clone(), view.shape().to_vec(), data);
        if name == "lm_head.weight" {
            head = Some((raw, t));
            continue;
        }
        let Some(want) = shapes.get(name.as_str()) else {
            return Err(err(format!(
                "has tensor {raw} {:?}, which a GPT-2 of {} layers does not have",
                t.shape, config.n_layer
            )));
        };
        if t.shape != *want {
            return Err(err(format!(
                "tensor {raw} is {:?} but config.json (n_layer {}, n_head {}, n_embd {}, n_positions {}, vocab_size {}) makes it {want:?}",
                t.shape, config.n_layer, config.n_head, config.n_embd, config.n_positions, config.vocab_size
            )));
        }
        if found.insert(name.clone(), t).is_some() {
            return Err(err(format!(
                "holds {name} twice (with and without the {PREFIX:?} prefix)"
            )));
        }
    }
    let mut out = Vec::with_capacity(expected.len());
    for (name, _) in &expected {
        let t = found.remove(name).ok_or_else(|| {
            err(format!(
                "has no tensor {name} (nor {})",
                &name[PREFIX.len()..]
            ))
        })?;
        out.push(t);
    }
    if let Some((raw, h)) = head {
        let wte = &out[0];
        if h.shape != wte.shape || h.data != wte.data {
            return Err(err(format!(
                "tensor {raw} differs from {}: sinter's GPT-2 ties the head to the token embedding",
                wte.name
            )));
        }
    }
    Ok(out)
}

/// Writes `config.json` and `model.safetensors` into `dir` (created if need be) so that
/// `GPT2LMHeadModel.from_pretrained(dir)` loads them: `transformer.`-prefixed names, the tied
/// head left out, metadata `format: pt`. `tensors` must be the model's parameters (names and
/// shapes as [`parameter_shapes`]); each file is written atomically.
pub fn write_dir(dir: &Path, config: &Gpt2Config, tensors: &[NamedTensor]) -> Result<()> {
    let weights = dir.join(WEIGHTS_FILE);
    crate::checkpoint::check_against(tensors, &parameter_shapes(config), &weights)?;
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let views: Vec<(&str, F32View)> = tensors
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                F32View {
                    shape: &t.shape,
                    bytes: t.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                },
            )
        })
        .collect();
    let bytes = safetensors::serialize(views.iter().map(|(n, v)| (*n, v)), Some(metadata))
        .map_err(|e| {
            ModelError::checkpoint(&weights, format!("cannot encode as safetensors: {e}"))
        })?;
    write_atomic(&weights, |w| w.write_all(&bytes))?;
    let json = config.to_json();
    write_atomic(dir.join(CONFIG_FILE), |w| w.write_all(json.as_bytes()))
}

/// An F32 tensor as the safetensors serializer sees it.
struct F32View<'a> {
    shape: &'a [usize],
    bytes: Vec<u8>,
}

impl safetensors::View for &F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Little-endian F32, F16 or BF16 bytes as f32 (both halves widen exactly); None for others.
fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    let halves = || {
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
    };
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::BF16 => halves().map(|h| f32::from_bits((h as u32) << 16)).collect(),
        Dtype::F16 => halves().map(f16_to_f32).collect(),
        _ => return None,
    })
}

/// IEEE half precision to single, exactly (subnormals, infinities and NaN included).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        // Subnormal: man · 2⁻²⁴, exact in f32.
        (0, m) => {
            let v = m as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_widen_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        let bf = to_f32(Dtype::BF16, &[0x80, 0x3f]).unwrap();
        assert_eq!(bf, vec![1.0]);
    }
}
