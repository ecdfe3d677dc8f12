//! The data a training run reads: IDX files (MNIST and its relatives), CIFAR-10 binary batches, the
//! MNIST subset shipped in `data/` and compiled in, character-level text corpora, token corpora and
//! tokenizers for language models, the batcher that turns a dataset into reproducible batches, and
//! training-time augmentation.

pub mod augment;
pub mod batcher;
pub mod cifar;
pub mod idx;
pub mod mnist;
pub mod text;
pub mod tokenizer;
pub mod tokens;

pub use augment::{random_shifts, shift_images};
pub use batcher::{Batcher, BatcherState, Order};
pub use cifar::{load_cifar10_dir, parse_cifar10, read_cifar10};
pub use idx::{parse_idx, read_idx, IdxArray};
pub use mnist::{embedded_mnist, load_dir, load_idx_pair, ImageDataset};
pub use text::CharCorpus;
pub use tokenizer::Tokenizer;
pub use tokens::TokenCorpus;
