//! CIFAR-10 in its binary form: batch files of 3073-byte records (a label byte, then a 32×32 image
//! as red, green and blue planes), and the folder of five training batches and one test batch.

use std::path::{Path, PathBuf};

use super::mnist::ImageDataset;
use crate::{ModelError, Result};

/// Bytes of one record: 1 label + 3·32·32 pixels.
pub const CIFAR10_RECORD: usize = 1 + CIFAR10_PIXELS;
/// Pixel bytes of one image, channel-major (`[3, 32, 32]`, as the model takes it).
const CIFAR10_PIXELS: usize = 3 * 32 * 32;
/// The training batches of a CIFAR-10 binary folder, in order.
pub const CIFAR10_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch of a CIFAR-10 binary folder.
pub const CIFAR10_TEST_FILE: &str = "test_batch.bin";
/// The folder the CIFAR-10 binary archive unpacks to.
const CIFAR10_SUBFOLDER: &str = "cifar-10-batches-bin";

/// Parses one batch file already in memory (`file` names it in errors): records of a label below
/// 10 and 3072 pixel bytes, pixels scaled to [0, 1].
pub fn parse_cifar10(bytes: &[u8], file: impl AsRef<Path>) -> Result<ImageDataset> {
    let file = file.as_ref();
    if bytes.is_empty() || bytes.len() % CIFAR10_RECORD != 0 {
        return Err(ModelError::data(
            file,
            format!(
                "has {} bytes, which is not a positive multiple of {CIFAR10_RECORD} (a CIFAR-10 \
                 record is 1 label byte and 3072 pixel bytes)",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / CIFAR10_RECORD;
    let mut images = Vec::with_capacity(n * CIFAR10_PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (k, record) in bytes.chunks_exact(CIFAR10_RECORD).enumerate() {
        if record[0] >= 10 {
            return Err(ModelError::data(
                file,
                format!(
                    "record {k} (byte {}) has label {}, but CIFAR-10 labels are 0 to 9",
                    k * CIFAR10_RECORD,
                    record[0]
                ),
            ));
        }
        labels.push(record[0]);
        images.extend(record[1..].iter().map(|&b| f32::from(b) / 255.0));
    }
    Ok(ImageDataset {
        images,
        labels,
        n,
        channels: 3,
        rows: 32,
        cols: 32,
        classes: 10,
    })
}

/// Reads one batch file (see [`parse_cifar10`]).
pub fn read_cifar10(path: impl AsRef<Path>) -> Result<ImageDataset> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    parse_cifar10(&bytes, path)
}

/// The folder holding the batch files: `dir` itself, or its `cifar-10-batches-bin` (where the
/// archive unpacks), if either has any of them.
pub fn cifar10_folder(dir: &Path) -> Option<PathBuf> {
    let has_any = |d: &Path| {
        CIFAR10_TRAIN_FILES
            .iter()
            .chain(std::iter::once(&CIFAR10_TEST_FILE))
            .any(|f| d.join(f).is_file())
    };
    [dir.to_path_buf(), dir.join(CIFAR10_SUBFOLDER)]
        .into_iter()
        .find(|d| has_any(d))
}

/// The training set (the five `data_batch_k.bin` in order) and the test set (`test_batch.bin`)
/// of a CIFAR-10 binary folder (or of its `cifar-10-batches-bin`). An error names the missing
/// files, or the file with a wrong size or label.
pub fn load_cifar10_dir(dir: impl AsRef<Path>) -> Result<(ImageDataset, ImageDataset)> {
    let dir = dir.as_ref();
    let folder = cifar10_folder(dir).unwrap_or_else(|| dir.to_path_buf());
    let missing: Vec<&str> = CIFAR10_TRAIN_FILES
        .iter()
        .chain(std::iter::once(&CIFAR10_TEST_FILE))
        .filter(|f| !folder.join(f).is_file())
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(ModelError::data(
            &folder,
            format!(
                "is not a complete CIFAR-10 binary folder: {} missing (it needs {} and {CIFAR10_TEST_FILE})",
                missing.join(", "),
                CIFAR10_TRAIN_FILES.join(", ")
            ),
        ));
    }
    let mut train = read_cifar10(folder.join(CIFAR10_TRAIN_FILES[0]))?;
    for f in &CIFAR10_TRAIN_FILES[1..] {
        let part = read_cifar10(folder.join(f))?;
        train.images.extend_from_slice(&part.images);
        train.labels.extend_from_slice(&part.labels);
        train.n += part.n;
    }
    let test = read_cifar10(folder.join(CIFAR10_TEST_FILE))?;
    Ok((train, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` records whose label is `k % 10` and whose pixels are `(k + i) % 256`.
    fn records(n: usize, first: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for k in first..first + n {
            bytes.push((k % 10) as u8);
            bytes.extend((0..CIFAR10_PIXELS).map(|i| ((k + i) % 256) as u8));
        }
        bytes
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sinter-cifar-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_generated_folder_loads_in_order_with_planes_as_channels() {
        let dir = scratch("ok");
        for (b, f) in CIFAR10_TRAIN_FILES.iter().enumerate() {
            std::fs::write(dir.join(f), records(2, 2 * b)).unwrap();
        }
        std::fs::write(dir.join(CIFAR10_TEST_FILE), records(3, 100)).unwrap();
        let (train, test) = load_cifar10_dir(&dir).unwrap();
        assert_eq!((train.n, test.n), (10, 3));
        assert_eq!(
            (train.channels, train.rows, train.cols, train.classes),
            (3, 32, 32, 10)
        );
        assert_eq!(train.labels, (0..10).map(|k| k as u8).collect::<Vec<_>>());
        assert_eq!(test.labels, vec![0, 1, 2]);
        // Record 7 (second of data_batch_4): pixel i of the flat [3, 32, 32] image is
        // (7 + i) % 256; the green plane starts at 1024.
        let img = &train.images[7 * CIFAR10_PIXELS..8 * CIFAR10_PIXELS];
        assert_eq!(img[0], 7.0 / 255.0);
        assert_eq!(img[1024], ((7 + 1024) % 256) as f32 / 255.0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_folders_and_files_are_named() {
        let dir = scratch("bad");
        std::fs::write(dir.join(CIFAR10_TRAIN_FILES[0]), records(1, 0)).unwrap();
        let e = load_cifar10_dir(&dir).unwrap_err().to_string();
        assert!(
            e.contains("data_batch_2.bin") && e.contains("test_batch.bin") && e.contains("missing"),
            "{e}"
        );
        let mut short = records(2, 0);
        short.pop();
        let e = parse_cifar10(&short, "data_batch_3.bin")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data_batch_3.bin") && e.contains("6145 bytes") && e.contains("3073"),
            "{e}"
        );
        let mut bad_label = records(2, 0);
        bad_label[CIFAR10_RECORD] = 10;
        let e = parse_cifar10(&bad_label, "test_batch.bin")
            .unwrap_err()
            .to_string();
        assert!(e.contains("record 1") && e.contains("label 10"), "{e}");
        assert!(parse_cifar10(&[], "empty.bin").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
