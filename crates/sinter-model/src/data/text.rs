//! Character-level text corpora: a vocabulary from the training split (first 90%), the rest for
//! validation, and random windows of token ids for language-model batches.

use crate::error::{ModelError, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// The tiny-shakespeare text shipped in `data/`, compiled into the binary.
const EMBEDDED: &str = include_str!("../../../../data/tinyshakespeare/input.txt");

/// The shipped tiny-shakespeare text itself (for models with their own tokenizer).
pub fn embedded_text() -> &'static str {
    EMBEDDED
}

/// A text encoded as character ids.
#[derive(Clone, Debug, PartialEq)]
pub struct CharCorpus {
    /// The characters of the training split, sorted; a character's id is its index.
    pub vocab: Vec<char>,
    /// The first 90% of the text, as ids.
    pub train: Vec<u32>,
    /// The last 10%, as ids, without characters the training split lacks.
    pub valid: Vec<u32>,
}

impl CharCorpus {
    /// The shipped tiny-shakespeare text.
    pub fn embedded() -> Result<Self> {
        Self::from_text(EMBEDDED, Path::new("data/tinyshakespeare/input.txt"))
    }

    /// Reads a UTF-8 text file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        Self::parse(&bytes, path)
    }

    /// `load` for a file already in memory; `file` only names it in errors.
    pub fn parse(bytes: &[u8], file: &Path) -> Result<Self> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            ModelError::data(
                file,
                format!(
                    "is not UTF-8 text (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            )
        })?;
        Self::from_text(text, file)
    }

    /// Splits `text` (from `file`) 90/10 into training and validation characters.
    pub fn from_text(text: &str, file: &Path) -> Result<Self> {
        let chars: Vec<char> = text.chars().collect();
        if chars.len() < 20 {
            return Err(ModelError::data(
                file,
                format!(
                    "holds {} characters; a language model needs at least 20",
                    chars.len()
                ),
            ));
        }
        let split = chars.len() * 9 / 10;
        let mut vocab: Vec<char> = chars[..split].to_vec();
        vocab.sort_unstable();
        vocab.dedup();
        let id = |c: &char| vocab.binary_search(c).ok().map(|i| i as u32);
        let train = chars[..split]
            .iter()
            .map(|c| id(c).expect("from the training split"))
            .collect();
        // Characters that occur only in the validation split cannot be predicted: leave them out.
        let valid: Vec<u32> = chars[split..].iter().filter_map(id).collect();
        let dropped = chars.len() - split - valid.len();
        if dropped > 0 {
            log::warn!(
                "{}: {dropped} validation characters are not in the training vocabulary; skipped",
                file.display()
            );
        }
        Ok(Self {
            vocab,
            train,
            valid,
        })
    }

    /// Distinct characters (ids run `0..vocab_size`).
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Ids of `text`, or an error naming the first character outside the vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        text.chars()
            .map(|c| {
                self.vocab.binary_search(&c).map(|i| i as u32).map_err(|_| {
                    ModelError::Config(format!("character {c:?} is not in the model's vocabulary"))
                })
            })
            .collect()
    }

    /// The text of `ids`; an id outside the vocabulary becomes U+FFFD (�).
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|&i| self.vocab.get(i as usize).copied().unwrap_or('\u{fffd}'))
            .collect()
    }

    /// `batch` random windows of `context + 1` ids from `split`: inputs are the first `context`,
    /// targets the last `context` of each window. Both are `[batch, context]`, row-major, as floats.
    ///
    /// # Panics
    ///
    /// If `split` holds no more than `context` ids (callers check the corpus against the
    /// context when the model is built, as [`crate::lm::CharLm::new`] does).
    pub fn windows(
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

    /// The windows starting at `starts` (see [`CharCorpus::windows`]); panics if a window runs
    /// past the end of `split`.
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn shipped_text_has_65_characters_and_a_90_10_split() {
        let c = CharCorpus::embedded().unwrap();
        assert_eq!(c.vocab_size(), 65);
        assert_eq!(c.train.len() + c.valid.len(), 1_115_394);
        assert_eq!(c.decode(&c.encode("ROMEO:").unwrap()), "ROMEO:");
        assert!(c.encode("ROMEO✓").unwrap_err().to_string().contains('✓'));
    }

    #[test]
    fn windows_are_shifted_by_one() {
        let c = CharCorpus::from_text("abcdefghijklmnopqrstuvwxyz", Path::new("t")).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (mut ids, mut targets) = (Vec::new(), Vec::new());
        CharCorpus::windows(&c.train, 4, 5, &mut rng, &mut ids, &mut targets);
        assert_eq!(ids.len(), 20);
        for (i, t) in ids.iter().zip(&targets).skip(1).step_by(5) {
            assert_eq!(i + 1.0, *t);
        }
    }

    #[test]
    fn empty_and_non_utf8_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("sinter-text-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.txt");
        std::fs::write(&empty, "").unwrap();
        let err = CharCorpus::load(&empty).unwrap_err().to_string();
        assert!(
            err.contains("empty.txt") && err.contains("0 characters"),
            "{err}"
        );
        let binary = dir.join("binary.txt");
        std::fs::write(&binary, [b'a', 0xff, 0xfe, b'b']).unwrap();
        let err = CharCorpus::load(&binary).unwrap_err().to_string();
        assert!(err.contains("binary.txt") && err.contains("UTF-8"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
