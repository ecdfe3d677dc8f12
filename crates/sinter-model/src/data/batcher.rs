//! Turns n examples into batches of indices: seeded reshuffling every epoch, optional drop-last so
//! every training step has the same shape, and a small state that resumes the exact same batches.

use std::fmt;
use std::str::FromStr;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{ModelError, Result};

/// The order examples are visited in within an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// 0, 1, 2, … every epoch (evaluation).
    Sequential,
    /// A fresh permutation every epoch, drawn from one ChaCha8 stream seeded with `seed`.
    Shuffled {
        /// Seeds the permutation stream: the same seed gives the same epochs.
        seed: u64,
    },
}

/// Everything needed to continue a batcher exactly where it stopped. It prints as one line
/// (`n=8000 batch=64 drop_last=true seed=42 epoch=3 position=1280 word_pos=16128`) and parses back,
/// so it fits a checkpoint's string metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatcherState {
    /// Examples the batcher draws from (indices `0..n`).
    pub n: usize,
    /// Indices per batch.
    pub batch_size: usize,
    /// Whether an epoch's final partial batch is skipped.
    pub drop_last: bool,
    /// The shuffle seed; None for sequential order.
    pub seed: Option<u64>,
    /// The current epoch, counted from 0.
    pub epoch: u64,
    /// How many of this epoch's examples have been handed out.
    pub position: usize,
    /// The ChaCha8 word position at the start of this epoch, before its permutation was drawn.
    pub word_pos: u128,
}

/// Hands out batches of example indices, epoch after epoch.
#[derive(Debug, Clone)]
pub struct Batcher {
    n: usize,
    batch_size: usize,
    drop_last: bool,
    order: Order,
    rng: ChaCha8Rng,
    epoch: u64,
    position: usize,
    epoch_word_pos: u128,
    /// This epoch's permutation of 0..n.
    indices: Vec<usize>,
}

impl Batcher {
    /// A batcher over `n` examples in batches of `batch_size`. With `drop_last` the final partial
    /// batch of an epoch is skipped, so every batch has exactly `batch_size` indices.
    pub fn new(n: usize, batch_size: usize, order: Order, drop_last: bool) -> Result<Batcher> {
        if n == 0 || batch_size == 0 {
            return Err(ModelError::Config(format!(
                "a batcher needs examples and a positive batch size, got {n} examples in batches of {batch_size}"
            )));
        }
        if drop_last && batch_size > n {
            return Err(ModelError::Config(format!(
                "batch size {batch_size} is larger than the {n} examples: with drop-last no batch would ever be full"
            )));
        }
        let seed = match order {
            Order::Sequential => 0,
            Order::Shuffled { seed } => seed,
        };
        let mut batcher = Batcher {
            n,
            batch_size,
            drop_last,
            order,
            rng: ChaCha8Rng::seed_from_u64(seed),
            epoch: 0,
            position: 0,
            epoch_word_pos: 0,
            indices: Vec::with_capacity(n),
        };
        batcher.draw_epoch();
        Ok(batcher)
    }

    /// Indices per batch (the last batch of an epoch may be shorter without drop-last).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The epoch the next batch comes from (counted from 0), unless this one is used up.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Batches in one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        if self.drop_last {
            self.n / self.batch_size
        } else {
            self.n.div_ceil(self.batch_size)
        }
    }

    /// The next batch, moving on to a freshly shuffled epoch when this one is used up: the endless
    /// stream a training loop wants.
    pub fn next_batch(&mut self) -> &[usize] {
        if self.position >= self.epoch_end() {
            self.start_epoch(self.epoch + 1);
        }
        self.take_batch()
    }

    /// The next batch of the current epoch, or None once it is used up (the following call then
    /// starts the next epoch): `while let Some(batch) = b.next_in_epoch()` visits one epoch.
    pub fn next_in_epoch(&mut self) -> Option<&[usize]> {
        if self.position >= self.epoch_end() {
            self.start_epoch(self.epoch + 1);
            return None;
        }
        Some(self.take_batch())
    }

    /// A snapshot from which `restore` continues with exactly the same batches.
    pub fn state(&self) -> BatcherState {
        BatcherState {
            n: self.n,
            batch_size: self.batch_size,
            drop_last: self.drop_last,
            seed: match self.order {
                Order::Sequential => None,
                Order::Shuffled { seed } => Some(seed),
            },
            epoch: self.epoch,
            position: self.position,
            word_pos: self.epoch_word_pos,
        }
    }

    /// Continues from `state`. The example count and batch size must match this batcher's (they
    /// are facts about the data and the model); order and drop-last are taken from the state.
    pub fn restore(&mut self, state: &BatcherState) -> Result<()> {
        if state.n != self.n || state.batch_size != self.batch_size {
            return Err(ModelError::Config(format!(
                "cannot resume batches: the saved state is for {} examples in batches of {}, this run has {} in batches of {}",
                state.n, state.batch_size, self.n, self.batch_size
            )));
        }
        if state.position > self.n {
            return Err(ModelError::Config(format!(
                "cannot resume batches: saved position {} is past the {} examples of an epoch",
                state.position, self.n
            )));
        }
        if state.drop_last && state.batch_size > state.n {
            return Err(ModelError::Config(format!(
                "cannot resume batches: batch size {} with drop-last over {} examples gives no batch",
                state.batch_size, state.n
            )));
        }
        self.drop_last = state.drop_last;
        self.order = match state.seed {
            None => Order::Sequential,
            Some(seed) => Order::Shuffled { seed },
        };
        self.rng = ChaCha8Rng::seed_from_u64(state.seed.unwrap_or(0));
        self.rng.set_word_pos(state.word_pos);
        self.epoch = state.epoch;
        self.draw_epoch();
        self.position = state.position;
        Ok(())
    }

    fn epoch_end(&self) -> usize {
        if self.drop_last {
            self.n - self.n % self.batch_size
        } else {
            self.n
        }
    }

    fn take_batch(&mut self) -> &[usize] {
        let start = self.position;
        let end = (start + self.batch_size).min(self.epoch_end());
        self.position = end;
        &self.indices[start..end]
    }

    fn start_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.draw_epoch();
    }

    /// Draws the current epoch's permutation from the stream's current position.
    fn draw_epoch(&mut self) {
        self.position = 0;
        self.epoch_word_pos = self.rng.get_word_pos();
        self.indices.clear();
        self.indices.extend(0..self.n);
        if let Order::Shuffled { .. } = self.order {
            // Fisher–Yates with our own bounded draw, so that a checkpoint's batches do not
            // depend on how a future `rand` implements `shuffle`.
            for i in (1..self.n).rev() {
                let j = below(&mut self.rng, i as u64 + 1) as usize;
                self.indices.swap(i, j);
            }
        }
    }
}

/// A uniform integer in 0..bound (Lemire's multiply-and-reject, unbiased).
fn below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(bound);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

impl fmt::Display for BatcherState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seed = match self.seed {
            Some(s) => s.to_string(),
            None => "none".into(),
        };
        write!(
            f,
            "n={} batch={} drop_last={} seed={seed} epoch={} position={} word_pos={}",
            self.n, self.batch_size, self.drop_last, self.epoch, self.position, self.word_pos
        )
    }
}

impl FromStr for BatcherState {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: String| ModelError::Config(format!("bad batcher state {s:?}: {why}"));
        let mut fields = std::collections::BTreeMap::new();
        for item in s.split_whitespace() {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| bad(format!("{item:?} is not key=value")))?;
            if fields.insert(key, value).is_some() {
                return Err(bad(format!("{key} appears twice")));
            }
        }
        let mut get = |key: &str| {
            fields
                .remove(key)
                .ok_or_else(|| bad(format!("{key} is missing")))
        };
        fn num<T: FromStr>(key: &str, v: &str) -> std::result::Result<T, String> {
            v.parse()
                .map_err(|_| format!("{key}={v} is not a valid number"))
        }
        let (n, batch, drop_last, seed, epoch, position, word_pos) = (
            get("n")?,
            get("batch")?,
            get("drop_last")?,
            get("seed")?,
            get("epoch")?,
            get("position")?,
            get("word_pos")?,
        );
        let state = (|| {
            Ok::<_, String>(BatcherState {
                n: num("n", n)?,
                batch_size: num("batch", batch)?,
                drop_last: match drop_last {
                    "true" => true,
                    "false" => false,
                    v => return Err(format!("drop_last={v} is not true or false")),
                },
                seed: match seed {
                    "none" => None,
                    v => Some(num("seed", v)?),
                },
                epoch: num("epoch", epoch)?,
                position: num("position", position)?,
                word_pos: num("word_pos", word_pos)?,
            })
        })()
        .map_err(bad)?;
        if let Some(key) = fields.keys().next() {
            return Err(bad(format!("unknown field {key}")));
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for bound in [1u64, 2, 3, 7, 1000, u64::MAX] {
            for _ in 0..100 {
                assert!(below(&mut rng, bound) < bound);
            }
        }
    }

    #[test]
    fn state_prints_and_parses_back() {
        let state = BatcherState {
            n: 10,
            batch_size: 3,
            drop_last: true,
            seed: Some(u64::MAX),
            epoch: 2,
            position: 6,
            word_pos: 1 << 66,
        };
        assert_eq!(state.to_string().parse::<BatcherState>().unwrap(), state);
        let sequential = BatcherState {
            seed: None,
            ..state
        };
        assert_eq!(
            sequential.to_string().parse::<BatcherState>().unwrap(),
            sequential
        );
        for bad in [
            "",
            "n=1",
            "n=x batch=1 drop_last=true seed=none epoch=0 position=0 word_pos=0",
            "n=1 batch=1 drop_last=maybe seed=none epoch=0 position=0 word_pos=0",
            "n=1 batch=1 drop_last=true seed=none epoch=0 position=0 word_pos=0 extra=1",
        ] {
            assert!(bad.parse::<BatcherState>().is_err(), "{bad:?} parsed");
        }
    }
}
