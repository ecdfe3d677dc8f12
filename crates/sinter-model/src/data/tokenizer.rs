//! Text to token ids and back: characters numbered as [`CharCorpus`] numbers them, or a Hugging
//! Face `tokenizer.json` (byte-level BPE and the rest) read by the `tokenizers` crate.

use super::CharCorpus;
use crate::error::{ModelError, Result};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// A tokenizer: the characters of a text, or a `tokenizer.json`.
pub enum Tokenizer {
    /// Each character is a token, its id its index in this sorted list.
    Chars(Vec<char>),
    /// A Hugging Face tokenizer, with the JSON it was read from (to write it again unchanged).
    Json {
        /// The loaded tokenizer.
        inner: Box<tokenizers::Tokenizer>,
        /// The `tokenizer.json` text.
        json: String,
        /// Where it was read from (named in errors).
        path: PathBuf,
    },
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tokenizer::Chars(v) => write!(f, "Tokenizer::Chars({} characters)", v.len()),
            Tokenizer::Json { path, .. } => write!(f, "Tokenizer::Json({})", path.display()),
        }
    }
}

impl Tokenizer {
    /// Reads a `tokenizer.json` as the `tokenizers` library writes it.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let json = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_json(json, path)
    }

    /// `load` for JSON already in memory; `path` names it in errors.
    pub fn from_json(json: String, path: &Path) -> Result<Self> {
        let inner: tokenizers::Tokenizer = json.parse().map_err(|e| {
            ModelError::data(
                path,
                format!("is not a tokenizer.json the tokenizers library reads: {e}"),
            )
        })?;
        Ok(Tokenizer::Json {
            inner: Box::new(inner),
            json,
            path: path.to_path_buf(),
        })
    }

    /// The characters of a corpus, numbered as it numbers them.
    pub fn chars(corpus: &CharCorpus) -> Self {
        Tokenizer::Chars(corpus.vocab.clone())
    }

    /// Token ids `0..vocab_size` (added tokens such as `<|endoftext|>` included).
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Chars(v) => v.len(),
            Tokenizer::Json { inner, .. } => inner.get_vocab_size(true),
        }
    }

    /// The ids of `text`; an error names a character the vocabulary lacks.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Chars(vocab) => text
                .chars()
                .map(|c| {
                    vocab.binary_search(&c).map(|i| i as u32).map_err(|_| {
                        ModelError::Config(format!(
                            "character {c:?} is not in the model's vocabulary"
                        ))
                    })
                })
                .collect(),
            Tokenizer::Json { inner, path, .. } => inner
                .encode(text, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| ModelError::data(path, format!("cannot encode the text: {e}"))),
        }
    }

    /// The text of `ids`; an id outside the vocabulary becomes U+FFFD (�) or is an error.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Tokenizer::Chars(vocab) => Ok(ids
                .iter()
                .map(|&i| vocab.get(i as usize).copied().unwrap_or('\u{fffd}'))
                .collect()),
            Tokenizer::Json { inner, path, .. } => inner
                .decode(ids, false)
                .map_err(|e| ModelError::data(path, format!("cannot decode ids: {e}"))),
        }
    }

    /// This tokenizer as `tokenizer.json` text: a loaded file as it was, characters as a
    /// word-level vocabulary over single characters (split by a regex, joined by `Fuse`), which
    /// the `tokenizers` library (Rust or Python) reads back to the same ids.
    pub fn to_json(&self) -> String {
        match self {
            Tokenizer::Json { json, .. } => json.clone(),
            Tokenizer::Chars(vocab) => {
                let mut ids = Map::new();
                for (i, c) in vocab.iter().enumerate() {
                    ids.insert(c.to_string(), json!(i));
                }
                let v = json!({
                    "version": "1.0",
                    "truncation": null,
                    "padding": null,
                    "added_tokens": [],
                    "normalizer": null,
                    "pre_tokenizer": {
                        "type": "Split",
                        "pattern": {"Regex": "(?s)."},
                        "behavior": "Isolated",
                        "invert": false
                    },
                    "post_processor": null,
                    "decoder": {"type": "Fuse"},
                    "model": {"type": "WordLevel", "vocab": Value::Object(ids), "unk_token": "<unk>"}
                });
                let mut text = serde_json::to_string_pretty(&v).expect("JSON values");
                text.push('\n');
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_round_trip_through_their_tokenizer_json() {
        let corpus =
            CharCorpus::from_text("hello, world\nthe end. é✓ spaces  two\n", Path::new("t"))
                .unwrap();
        let chars = Tokenizer::chars(&corpus);
        let json = Tokenizer::from_json(chars.to_json(), Path::new("tokenizer.json")).unwrap();
        assert_eq!(json.vocab_size(), chars.vocab_size());
        let text = "the world, hello\n  é";
        let ids = chars.encode(text).unwrap();
        assert_eq!(json.encode(text).unwrap(), ids);
        assert_eq!(json.decode(&ids).unwrap(), text);
        assert_eq!(chars.decode(&ids).unwrap(), text);
        assert!(chars.encode("Q").unwrap_err().to_string().contains("'Q'"));
        assert!(json.encode("Q").is_err());
        let e = Tokenizer::from_json("{\"model\": 3}".into(), Path::new("bad/tokenizer.json"))
            .unwrap_err();
        assert!(e.to_string().starts_with("bad/tokenizer.json: "), "{e}");
    }
}
