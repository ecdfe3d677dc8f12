//! Image-classification datasets from IDX files: the MNIST subset compiled into the binary, a pair
//! of IDX files, or a folder in the standard MNIST layout, as f32 pixels in [0, 1] ready to batch.

use std::path::{Path, PathBuf};

use super::idx::{parse_idx, read_idx, IdxArray};
use crate::{ModelError, Result};

/// The shipped 10,000-digit subset (see data/README.md), compiled in so that training and tests
/// need no files at run time.
const EMBEDDED_IMAGES: &[u8] = include_bytes!("../../../../data/mnist-10k/images-idx3-ubyte.gz");
const EMBEDDED_LABELS: &[u8] = include_bytes!("../../../../data/mnist-10k/labels-idx1-ubyte.gz");

/// The shipped subset's convention: the first 8,000 digits train, the last 2,000 test.
const EMBEDDED_TRAIN: usize = 8000;

/// Standard MNIST file stems in a folder (each may end in `.gz`).
const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";
/// The shipped single-pair layout, split 80/20 like the embedded copy.
const PAIR_IMAGES: &str = "images-idx3-ubyte";
const PAIR_LABELS: &str = "labels-idx1-ubyte";

/// Labelled images, all in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDataset {
    /// images: `[n, channels, rows, cols]`, pixel bytes / 255.
    pub images: Vec<f32>,
    /// labels: `[n]`, class indices below `classes`.
    pub labels: Vec<u8>,
    /// Examples.
    pub n: usize,
    /// Channels per image (1 for MNIST).
    pub channels: usize,
    /// Image height in pixels.
    pub rows: usize,
    /// Image width in pixels.
    pub cols: usize,
    /// Classes the classifier outputs: one more than the largest label of the train and test
    /// files together (a split keeps its parent's count).
    pub classes: usize,
}

impl ImageDataset {
    /// Floats per image: channels × rows × cols.
    pub fn image_len(&self) -> usize {
        self.channels * self.rows * self.cols
    }

    /// The first `at` examples and the rest; both keep the parent's class count so that a split
    /// that happens to miss a class still feeds the same-sized classifier.
    ///
    /// # Panics
    ///
    /// If `at > n`.
    pub fn split(&self, at: usize) -> (ImageDataset, ImageDataset) {
        assert!(
            at <= self.n,
            "split at {at} is past the end of a dataset of {} examples",
            self.n
        );
        let cut = at * self.image_len();
        let part = |images: &[f32], labels: &[u8]| ImageDataset {
            images: images.to_vec(),
            labels: labels.to_vec(),
            n: labels.len(),
            channels: self.channels,
            rows: self.rows,
            cols: self.cols,
            classes: self.classes,
        };
        (
            part(&self.images[..cut], &self.labels[..at]),
            part(&self.images[cut..], &self.labels[at..]),
        )
    }

    /// Writes the examples at `indices` as one batch: images `[B, channels, rows, cols]` and labels
    /// `[B]` as f32 class indices (the form the loss kernels take). Both vectors are overwritten.
    ///
    /// # Panics
    ///
    /// If an index is `n` or more (the batcher of a split only draws indices below its size).
    pub fn gather(&self, indices: &[usize], images_out: &mut Vec<f32>, labels_out: &mut Vec<f32>) {
        let len = self.image_len();
        images_out.clear();
        labels_out.clear();
        images_out.reserve(indices.len() * len);
        labels_out.reserve(indices.len());
        for &i in indices {
            assert!(
                i < self.n,
                "batch index {i} is out of range for a dataset of {} examples",
                self.n
            );
            images_out.extend_from_slice(&self.images[i * len..(i + 1) * len]);
            labels_out.push(f32::from(self.labels[i]));
        }
    }

    /// How many examples each class has.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &l in &self.labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }
}

/// Builds a dataset from a parsed image file (`[n, rows, cols]`) and label file (`[n]`); the paths
/// only name the sources in errors. The class count is the largest label + 1.
pub fn from_idx(
    images: &IdxArray,
    labels: &IdxArray,
    images_file: &Path,
    labels_file: &Path,
) -> Result<ImageDataset> {
    let &[n, rows, cols] = images.dims.as_slice() else {
        let hint = if images.dims.len() == 1 {
            " (is this a label file?)"
        } else {
            ""
        };
        return Err(ModelError::data(
            images_file,
            format!(
                "expected an image file with 3 dimensions [count, rows, cols], found dimensions {:?}{hint}",
                images.dims
            ),
        ));
    };
    let &[n_labels] = labels.dims.as_slice() else {
        let hint = if labels.dims.len() == 3 {
            " (is this an image file?)"
        } else {
            ""
        };
        return Err(ModelError::data(
            labels_file,
            format!(
                "expected a label file with 1 dimension [count], found dimensions {:?}{hint}",
                labels.dims
            ),
        ));
    };
    if n == 0 || rows == 0 || cols == 0 {
        return Err(ModelError::data(
            images_file,
            format!("holds no pixels: dimensions [{n}, {rows}, {cols}]"),
        ));
    }
    if n != n_labels {
        return Err(ModelError::data(
            images_file,
            format!(
                "holds {n} images but {} holds {n_labels} labels",
                labels_file.display()
            ),
        ));
    }
    let max_label = labels.data.iter().copied().max().unwrap_or(0);
    Ok(ImageDataset {
        images: images.data.iter().map(|&b| f32::from(b) / 255.0).collect(),
        labels: labels.data.clone(),
        n,
        channels: 1,
        rows,
        cols,
        classes: usize::from(max_label) + 1,
    })
}

/// Loads one image file and its label file (each plain or gzip-compressed).
pub fn load_idx_pair(
    images_path: impl AsRef<Path>,
    labels_path: impl AsRef<Path>,
) -> Result<ImageDataset> {
    let (images_path, labels_path) = (images_path.as_ref(), labels_path.as_ref());
    from_idx(
        &read_idx(images_path)?,
        &read_idx(labels_path)?,
        images_path,
        labels_path,
    )
}

/// The shipped MNIST subset: (first 8,000 digits for training, last 2,000 for testing).
pub fn embedded_mnist() -> Result<(ImageDataset, ImageDataset)> {
    let images_file = Path::new("<embedded>/data/mnist-10k/images-idx3-ubyte.gz");
    let labels_file = Path::new("<embedded>/data/mnist-10k/labels-idx1-ubyte.gz");
    let all = from_idx(
        &parse_idx(EMBEDDED_IMAGES, images_file)?,
        &parse_idx(EMBEDDED_LABELS, labels_file)?,
        images_file,
        labels_file,
    )?;
    assert!(
        all.n > EMBEDDED_TRAIN,
        "the embedded MNIST subset has only {} digits",
        all.n
    );
    Ok(all.split(EMBEDDED_TRAIN))
}

/// Loads (train, test) from a folder: either the four standard MNIST files
/// (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
/// `t10k-labels-idx1-ubyte`, each optionally `.gz`, `-idx` also spelled `.idx`), or the shipped pair
/// `images-idx3-ubyte[.gz]` + `labels-idx1-ubyte[.gz]`, whose first 80% become the training split;
/// or a CIFAR-10 binary folder (see [`super::cifar::load_cifar10_dir`]).
pub fn load_dir(dir: impl AsRef<Path>) -> Result<(ImageDataset, ImageDataset)> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(ModelError::data(dir, "is not a folder"));
    }
    if super::cifar::cifar10_folder(dir).is_some() {
        return super::cifar::load_cifar10_dir(dir);
    }
    let standard = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS].map(|s| find(dir, s));
    if standard.iter().any(Option::is_some) {
        let [Some(train_images), Some(train_labels), Some(test_images), Some(test_labels)] =
            standard.clone()
        else {
            let missing: Vec<&str> = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS]
                .into_iter()
                .zip(&standard)
                .filter(|(_, found)| found.is_none())
                .map(|(name, _)| name)
                .collect();
            return Err(ModelError::data(
                dir,
                format!(
                    "has some of the standard MNIST files but not {} (each may also end in .gz)",
                    missing.join(", ")
                ),
            ));
        };
        let mut train = load_idx_pair(train_images, train_labels)?;
        let mut test = load_idx_pair(test_images, test_labels)?;
        let classes = train.classes.max(test.classes);
        train.classes = classes;
        test.classes = classes;
        return Ok((train, test));
    }
    match (find(dir, PAIR_IMAGES), find(dir, PAIR_LABELS)) {
        (Some(images), Some(labels)) => {
            let all = load_idx_pair(images, labels)?;
            if all.n < 2 {
                return Err(ModelError::data(
                    dir,
                    format!("holds {} example(s), too few to split 80/20", all.n),
                ));
            }
            // At least one example on each side, whatever the count.
            let at = (all.n * 8 / 10).clamp(1, all.n - 1);
            Ok(all.split(at))
        }
        _ => Err(ModelError::data(
            dir,
            format!(
                "holds no MNIST-style IDX files: expected either {TRAIN_IMAGES}, {TRAIN_LABELS}, \
                 {TEST_IMAGES} and {TEST_LABELS}, or the pair {PAIR_IMAGES} and {PAIR_LABELS} \
                 (split 80/20); each name may end in .gz (or CIFAR-10's data_batch_1.bin … \
                 data_batch_5.bin and test_batch.bin)"
            ),
        )),
    }
}

/// The first existing spelling of a file stem in `dir`: as is, `.gz`, and with the `-idx` that
/// some mirrors write as `.idx`.
fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    let dotted = stem.replacen("-idx", ".idx", 1);
    [
        stem.to_string(),
        format!("{stem}.gz"),
        dotted.clone(),
        format!("{dotted}.gz"),
    ]
    .into_iter()
    .map(|name| dir.join(name))
    .find(|p| p.is_file())
}
