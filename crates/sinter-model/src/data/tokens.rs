//! Token corpora for language models: a text tokenized at start and split 90/10, or nanoGPT's
//! `train.bin`/`val.bin` (uint16 little-endian ids); windows drawn at random or in file order.

use super::tokenizer::Tokenizer;
use crate::error::{ModelError, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// Token ids split into training and validation ids, all below `vocab_size`.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenCorpus {
    /// The training ids (the first 90% of a text).
    pub train: Vec<u32>,
    /// The validation ids (the last 10%).
    pub valid: Vec<u32>,
    /// Ids run `0..vocab_size`.
    pub vocab_size: usize,
}

impl TokenCorpus {
    /// The UTF-8 text file `path` tokenized by `tokenizer`, split 90/10 by tokens.
    pub fn from_text_file(path: &Path, tokenizer: &Tokenizer) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            ModelError::data(
                path,
                format!(
                    "is not UTF-8 text (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            )
        })?;
        let ids = tokenizer.encode(text).map_err(|e| match e {
            ModelError::Config(m) => ModelError::data(path, m),
            e => e,
        })?;
        Self::split(ids, tokenizer.vocab_size(), path)
    }

    /// `ids` (from `file`, named in errors) split 90/10; every id must be below `vocab_size`.
    pub fn split(ids: Vec<u32>, vocab_size: usize, file: &Path) -> Result<Self> {
        if ids.len() < 20 {
            return Err(ModelError::data(
                file,
                format!(
                    "holds {} tokens; a language model needs at least 20",
                    ids.len()
                ),
            ));
        }
        check_ids(&ids, vocab_size, file)?;
        let at = ids.len() * 9 / 10;
        let mut train = ids;
        let valid = train.split_off(at);
        Ok(Self {
            train,
            valid,
            vocab_size,
        })
    }

    /// A folder as nanoGPT's `prepare.py` writes it: `train.bin` and `val.bin`, uint16
    /// little-endian ids. The vocabulary is `meta.json`'s `vocab_size` when the folder has one
    /// (nanoGPT's `meta.pkl` is not read), else `vocab_size` (the tokenizer's or the model's).
    pub fn from_bin_dir(dir: &Path, vocab_size: usize) -> Result<Self> {
        let meta = dir.join("meta.json");
        let vocab_size = if meta.exists() {
            let text = std::fs::read_to_string(&meta).map_err(|e| ModelError::io(&meta, e))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ModelError::data(&meta, format!("is not valid JSON: {e}")))?;
            v.get("vocab_size")
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| ModelError::data(&meta, "has no whole-number vocab_size"))?
                as usize
        } else {
            vocab_size
        };
        let read = |name: &str| -> Result<Vec<u32>> {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
            if bytes.len() % 2 != 0 {
                return Err(ModelError::data(
                    &path,
                    format!(
                        "has {} bytes, an odd number: token files hold uint16 ids, 2 bytes each",
                        bytes.len()
                    ),
                ));
            }
            let ids: Vec<u32> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
                .collect();
            if ids.len() < 2 {
                return Err(ModelError::data(
                    &path,
                    format!("holds {} tokens; it needs at least 2", ids.len()),
                ));
            }
            check_ids(&ids, vocab_size, &path)?;
            Ok(ids)
        };
        Ok(Self {
            train: read("train.bin")?,
            valid: read("val.bin")?,
            vocab_size,
        })
    }

    /// The windows of `batch` index `i` in file order: window b starts at token
    /// `(i·batch + b)·context` of `split` (wrapping round at its last whole window), and its
    /// targets are the same positions shifted by one. Both `[batch, context]` as floats.
    ///
    /// # Panics
    ///
    /// If `split` holds no more than `context` ids (models check that when built).
    pub fn sequential_windows(
        split: &[u32],
        i: u64,
        batch: usize,
        context: usize,
        ids: &mut Vec<f32>,
        targets: &mut Vec<f32>,
    ) {
        let windows = ((split.len() - 1) / context) as u64;
        let starts: Vec<usize> = (0..batch as u64)
            .map(|b| ((i * batch as u64 + b) % windows) as usize * context)
            .collect();
        Self::windows_at(split, &starts, context, ids, targets);
    }

    /// `batch` windows at random starts (see [`TokenCorpus::sequential_windows`]).
    pub fn random_windows(
        split: &[u32],
        batch: usize,
        context: usize,
        rng: &mut ChaCha8Rng,
        ids: &mut Vec<f32>,
        targets: &mut Vec<f32>,
    ) {
        let starts: Vec<usize> = (0..batch)
            .map(|_| rng.random_range(0..split.len() - context))
            .collect();
        Self::windows_at(split, &starts, context, ids, targets);
    }

    /// The windows of `context + 1` ids starting at `starts`: inputs the first `context`,
    /// targets the last; panics if one runs past the end of `split`.
    pub fn windows_at(
        split: &[u32],
        starts: &[usize],
        context: usize,
        ids: &mut Vec<f32>,
        targets: &mut Vec<f32>,
    ) {
        ids.clear();
        targets.clear();
        for &s in starts {
            ids.extend(split[s..s + context].iter().map(|&v| v as f32));
            targets.extend(split[s + 1..s + context + 1].iter().map(|&v| v as f32));
        }
    }
}

/// An error naming the first id at or above `vocab_size`, its position and `file`.
fn check_ids(ids: &[u32], vocab_size: usize, file: &Path) -> Result<()> {
    match ids.iter().position(|&v| v as usize >= vocab_size) {
        None => Ok(()),
        Some(at) => Err(ModelError::data(
            file,
            format!(
                "token {at} is id {}, outside the vocabulary of {vocab_size} ids (0..{vocab_size})",
                ids[at]
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("sinter-tokens-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn windows_in_file_order_start_at_multiples_of_the_context() {
        let split: Vec<u32> = (0..50).collect();
        let (mut ids, mut targets) = (Vec::new(), Vec::new());
        TokenCorpus::sequential_windows(&split, 1, 3, 4, &mut ids, &mut targets);
        // Batch 1 of 3 windows of 4: windows 3, 4, 5 start at 12, 16, 20.
        let want: Vec<f32> = [12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]
            .map(|v| v as f32)
            .to_vec();
        assert_eq!(ids, want);
        assert_eq!(targets, want.iter().map(|v| v + 1.0).collect::<Vec<_>>());
        // 12 whole windows fit 50 ids (the last, at 44, reads ids 44..=48); batch 4 wraps.
        TokenCorpus::sequential_windows(&split, 4, 3, 4, &mut ids, &mut targets);
        assert_eq!(ids[..1], [0.0]);
        assert_eq!(*targets.last().unwrap(), 12.0);
    }

    #[test]
    fn nanogpt_folders_are_read_and_checked() {
        let d = temp_dir("bin");
        let write = |name: &str, ids: &[u16]| {
            let bytes: Vec<u8> = ids.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(d.join(name), bytes).unwrap();
        };
        write("train.bin", &[1, 2, 3, 4, 65000]);
        write("val.bin", &[5, 6, 7]);
        let c = TokenCorpus::from_bin_dir(&d, 65536).unwrap();
        assert_eq!(c.train, vec![1, 2, 3, 4, 65000]);
        assert_eq!(c.valid, vec![5, 6, 7]);
        let e = TokenCorpus::from_bin_dir(&d, 50257)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("train.bin") && e.contains("token 4 is id 65000") && e.contains("50257"),
            "{e}"
        );
        std::fs::write(d.join("meta.json"), "{\"vocab_size\": 65}").unwrap();
        write("train.bin", &[1, 2, 3, 64]);
        assert_eq!(TokenCorpus::from_bin_dir(&d, 50257).unwrap().vocab_size, 65);
        std::fs::write(d.join("val.bin"), [1u8, 0, 2]).unwrap();
        let e = TokenCorpus::from_bin_dir(&d, 50257)
            .unwrap_err()
            .to_string();
        assert!(e.contains("val.bin") && e.contains("odd"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
