//! Tests for the data side and the checkpoint files: the shipped MNIST subset, the IDX reader on
//! hostile input, the resumable batcher, safetensors and training checkpoints, and atomic saves.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use proptest::prelude::*;
use sinter_model::checkpoint::{
    check_against, load_safetensors, save_safetensors, write_atomic, NamedTensor,
    TrainingCheckpoint,
};
use sinter_model::data::{
    embedded_mnist, load_dir, load_idx_pair, parse_idx, read_idx, Batcher, BatcherState, Order,
};

/// A fresh, empty folder for one test under cargo's per-target scratch space.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("data_and_checkpoints")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist-10k")
}

/// Plain IDX bytes for unsigned-byte data.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn err_text<T: std::fmt::Debug>(r: sinter_model::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------- MNIST

#[test]
fn embedded_mnist_is_ten_thousand_balanced_digits() {
    let (train, test) = embedded_mnist().unwrap();
    assert_eq!((train.n, test.n), (8000, 2000));
    for (name, d, n) in [("train", &train, 8000), ("test", &test, 2000)] {
        assert_eq!(
            (d.channels, d.rows, d.cols, d.classes),
            (1, 28, 28, 10),
            "{name}"
        );
        assert_eq!(d.images.len(), n * 784, "{name}");
        assert_eq!(d.labels.len(), n, "{name}");
        let (lo, hi) = d
            .images
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        assert_eq!((lo, hi), (0.0, 1.0), "{name}: pixel range");
        // MNIST digits cover roughly an eighth of the frame with ink.
        let mean = d.images.iter().sum::<f32>() / d.images.len() as f32;
        assert!((0.08..0.2).contains(&mean), "{name}: mean pixel {mean}");
        let counts = d.class_counts();
        let expect = n / 10;
        for (class, &c) in counts.iter().enumerate() {
            assert!(
                c * 10 >= expect * 7 && c * 10 <= expect * 13,
                "{name}: class {class} has {c} examples, expected about {expect}: {counts:?}"
            );
        }
    }
}

#[test]
fn shipped_folder_loads_like_the_embedded_copy() {
    let (train, test) = load_dir(shipped_dir()).unwrap();
    let (etrain, etest) = embedded_mnist().unwrap();
    assert!(
        train == etrain && test == etest,
        "load_dir(data/mnist-10k) differs from embedded_mnist()"
    );
}

#[test]
fn split_and_gather_pick_the_right_examples() {
    let (train, _) = embedded_mnist().unwrap();
    let (a, b) = train.split(100);
    assert_eq!((a.n, b.n, a.classes, b.classes), (100, 7900, 10, 10));
    assert_eq!(b.labels[0], train.labels[100]);
    assert_eq!(b.images[..784], train.images[100 * 784..101 * 784]);

    let (mut images, mut labels) = (vec![9.0; 3], vec![9.0; 7]);
    train.gather(&[5, 0, 7999], &mut images, &mut labels);
    assert_eq!(images.len(), 3 * 784);
    assert_eq!(
        labels,
        vec![
            f32::from(train.labels[5]),
            f32::from(train.labels[0]),
            f32::from(train.labels[7999])
        ]
    );
    assert_eq!(images[..784], train.images[5 * 784..6 * 784]);
    assert_eq!(images[2 * 784..], train.images[7999 * 784..]);
}

#[test]
fn standard_mnist_folder_layout_loads() {
    let dir = scratch("standard_layout");
    let pixels: Vec<u8> = (0..5 * 2 * 3).map(|i| (i * 8) as u8).collect();
    fs::write(
        dir.join("train-images-idx3-ubyte"),
        idx(&[5, 2, 3], &pixels),
    )
    .unwrap();
    fs::write(
        dir.join("train-labels-idx1-ubyte.gz"),
        gzip(&idx(&[5], &[0, 1, 2, 1, 0])),
    )
    .unwrap();
    fs::write(
        dir.join("t10k-images.idx3-ubyte.gz"),
        gzip(&idx(&[2, 2, 3], &pixels[..12])),
    )
    .unwrap();
    fs::write(dir.join("t10k-labels-idx1-ubyte"), idx(&[2], &[3, 0])).unwrap();
    let (train, test) = load_dir(&dir).unwrap();
    assert_eq!((train.n, train.rows, train.cols), (5, 2, 3));
    assert_eq!(test.n, 2);
    // The test split holds label 3, so both splits get 4 classes.
    assert_eq!((train.classes, test.classes), (4, 4));
    assert_eq!(train.images[1], 8.0 / 255.0);

    // A partial standard set names what is missing.
    fs::remove_file(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    let e = err_text(load_dir(&dir));
    assert!(
        e.contains("t10k-labels-idx1-ubyte")
            && !e.contains("train-images")
            && e.contains(&*dir.to_string_lossy()),
        "{e}"
    );
}

#[test]
fn folder_without_idx_files_names_what_it_expected() {
    let dir = scratch("empty_layout");
    let e = err_text(load_dir(&dir));
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        "images-idx3-ubyte",
        "labels-idx1-ubyte",
    ] {
        assert!(e.contains(name), "{name} not named in: {e}");
    }
    assert!(e.contains(&*dir.to_string_lossy()), "{e}");
    let e = err_text(load_dir(dir.join("nope")));
    assert!(e.contains("nope") && e.contains("not a folder"), "{e}");
}

#[test]
fn inconsistent_image_and_label_files_are_refused() {
    let dir = scratch("inconsistent_pair");
    let images = dir.join("images");
    let labels = dir.join("labels");
    fs::write(&images, idx(&[3, 2, 2], &[0; 12])).unwrap();
    fs::write(&labels, idx(&[2], &[0, 1])).unwrap();
    let e = err_text(load_idx_pair(&images, &labels));
    assert!(e.contains("3 images") && e.contains("2 labels"), "{e}");

    // Swapped arguments: say which file looks like what.
    fs::write(&labels, idx(&[3], &[0, 1, 2])).unwrap();
    let e = err_text(load_idx_pair(&labels, &images));
    assert!(
        e.contains("3 dimensions") && e.contains("label file?"),
        "{e}"
    );
}

// ---------------------------------------------------------------- IDX reader

#[test]
fn idx_reader_refuses_bad_headers_with_the_file_and_problem() {
    let e = err_text(parse_idx(b"PK\x03\x04 not an idx file", "x.idx"));
    assert!(e.starts_with("x.idx: not an IDX file"), "{e}");
    let e = err_text(parse_idx(&[], "empty.idx"));
    assert!(e.contains("empty.idx") && e.contains("too short"), "{e}");
    let e = err_text(parse_idx(
        &[0, 0, 0x0c, 1, 0, 0, 0, 1, 0, 0, 0, 7],
        "i32.idx",
    ));
    assert!(
        e.contains("0x0c") && e.contains("only unsigned bytes"),
        "{e}"
    );
    let e = err_text(parse_idx(&[0, 0, 8, 3, 0, 0, 0, 1], "short.idx"));
    assert!(e.contains("truncated IDX header"), "{e}");
}

#[test]
fn idx_reader_refuses_truncated_data() {
    let mut bytes = idx(&[10000, 28, 28], &[]);
    bytes.extend_from_slice(&[7; 12]);
    let e = err_text(parse_idx(&bytes, "images"));
    assert!(
        e.contains("expected 7840000 bytes") && e.contains("found 12"),
        "{e}"
    );
    // The same file compressed, and a compressed stream cut short.
    let e = err_text(parse_idx(&gzip(&bytes), "images.gz"));
    assert!(
        e.contains("expected 7840000 bytes") && e.contains("found 12"),
        "{e}"
    );
    let shipped = fs::read(shipped_dir().join("images-idx3-ubyte.gz")).unwrap();
    let e = err_text(parse_idx(&shipped[..shipped.len() / 2], "half.gz"));
    assert!(
        e.contains("expected 7840000 bytes") && e.contains("half.gz"),
        "{e}"
    );
}

#[test]
fn idx_reader_refuses_huge_claimed_sizes_without_allocating_them() {
    // 10^12 elements claimed, 12 present: refused from the real length, nothing sized from the claim.
    let mut bytes = idx(&[1_000_000, 1_000, 1_000], &[]);
    bytes.extend_from_slice(&[1; 12]);
    let e = err_text(parse_idx(&bytes, "huge"));
    assert!(
        e.contains("expected 1000000000000 bytes") && e.contains("found 12"),
        "{e}"
    );
    let e = err_text(parse_idx(&gzip(&bytes), "huge.gz"));
    assert!(
        e.contains("1000000000000 bytes") && e.contains("more than"),
        "{e}"
    );
    // A product that overflows 64 bits.
    let e = err_text(parse_idx(&idx(&[u32::MAX; 3], &[]), "overflow"));
    assert!(e.contains("overflow"), "{e}");
}

#[test]
fn idx_reader_refuses_corrupt_gzip() {
    let mut gz = gzip(&idx(&[4], &[1, 2, 3, 4]));
    // The CRC-32 in the gzip trailer sits 8 bytes from the end.
    let at = gz.len() - 8;
    gz[at] ^= 0xff;
    let e = err_text(parse_idx(&gz, "crc.gz"));
    assert!(e.contains("crc.gz") && e.contains("corrupt"), "{e}");
    let e = err_text(parse_idx(&[0x1f, 0x8b, 1, 2, 3], "garbage.gz"));
    assert!(e.contains("garbage.gz"), "{e}");
}

#[test]
fn idx_files_read_from_disk_plain_or_gzip() {
    let dir = scratch("idx_files");
    let bytes = idx(&[2, 2], &[1, 2, 3, 4]);
    fs::write(dir.join("a"), &bytes).unwrap();
    fs::write(dir.join("a.gz"), gzip(&bytes)).unwrap();
    let plain = read_idx(dir.join("a")).unwrap();
    assert_eq!(plain, read_idx(dir.join("a.gz")).unwrap());
    assert_eq!((plain.dims, plain.data), (vec![2, 2], vec![1, 2, 3, 4]));
    let e = err_text(read_idx(dir.join("missing")));
    assert!(e.contains("missing"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever is done to a valid file, the reader answers Ok or Err, and an Ok is self-consistent.
    #[test]
    fn idx_reader_never_panics_on_mutated_input(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        truncate in any::<bool>(),
        compressed in any::<bool>(),
    ) {
        let valid = idx(&[3, 2, 2], &(0..12).collect::<Vec<u8>>());
        let mut bytes = if compressed { gzip(&valid) } else { valid };
        for (at, value) in edits {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        if truncate {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        if let Ok(a) = parse_idx(&bytes, "fuzz") {
            prop_assert_eq!(a.data.len(), a.dims.iter().product::<usize>());
        }
    }

    /// Random bytes, including ones that start like gzip or IDX.
    #[test]
    fn idx_reader_never_panics_on_garbage(
        prefix in prop_oneof![Just(vec![]), Just(vec![0x1f, 0x8b]), Just(vec![0, 0, 8])],
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let bytes = [prefix, tail].concat();
        let _ = parse_idx(&bytes, "garbage");
    }
}

// ---------------------------------------------------------------- batcher

fn epoch(b: &mut Batcher) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    while let Some(batch) = b.next_in_epoch() {
        out.push(batch.to_vec());
    }
    out
}

#[test]
fn batcher_visits_every_index_once_per_epoch() {
    let mut b = Batcher::new(103, 10, Order::Shuffled { seed: 7 }, false).unwrap();
    assert_eq!(b.batches_per_epoch(), 11);
    let mut previous = Vec::new();
    for e in 0..3 {
        assert_eq!(b.epoch(), e);
        let batches = epoch(&mut b);
        assert_eq!(batches.len(), 11);
        assert!(batches[..10].iter().all(|x| x.len() == 10));
        assert_eq!(batches[10].len(), 3);
        let order: Vec<usize> = batches.concat();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..103).collect::<Vec<_>>(), "epoch {e}");
        assert_ne!(order, previous, "epoch {e} repeats the previous order");
        assert_ne!(order, sorted, "epoch {e} is not shuffled");
        previous = order;
    }
}

#[test]
fn drop_last_gives_equal_batches_of_distinct_indices() {
    let mut b = Batcher::new(103, 10, Order::Shuffled { seed: 1 }, true).unwrap();
    assert_eq!(b.batches_per_epoch(), 10);
    for _ in 0..2 {
        let batches = epoch(&mut b);
        assert_eq!(batches.len(), 10);
        assert!(batches.iter().all(|x| x.len() == 10));
        let mut all = batches.concat();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 100);
    }
    // The endless stream keeps the same shape across epoch boundaries.
    assert!((0..35).all(|_| b.next_batch().len() == 10));
    assert!(Batcher::new(5, 10, Order::Sequential, true).is_err());
    assert!(Batcher::new(0, 1, Order::Sequential, false).is_err());
    assert!(Batcher::new(5, 0, Order::Sequential, false).is_err());
}

#[test]
fn sequential_order_is_the_identity() {
    let mut b = Batcher::new(7, 3, Order::Sequential, false).unwrap();
    assert_eq!(epoch(&mut b), vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    assert_eq!(b.next_batch(), &[0, 1, 2]);
}

#[test]
fn batcher_is_deterministic_per_seed() {
    let run = |seed| {
        let mut b = Batcher::new(50, 8, Order::Shuffled { seed }, true).unwrap();
        (0..20).map(|_| b.next_batch().to_vec()).collect::<Vec<_>>()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}

#[test]
fn restored_batcher_continues_with_identical_batches() {
    for (drop_last, seed) in [(true, Some(11)), (false, Some(12)), (false, None)] {
        let order = seed.map_or(Order::Sequential, |seed| Order::Shuffled { seed });
        let mut reference = Batcher::new(37, 5, order, drop_last).unwrap();
        let expected: Vec<Vec<usize>> = (0..40).map(|_| reference.next_batch().to_vec()).collect();
        // Stop after every possible number of steps, save, resume elsewhere, compare the rest.
        for stop in 0..30 {
            let mut first = Batcher::new(37, 5, order, drop_last).unwrap();
            for _ in 0..stop {
                first.next_batch();
            }
            let saved: BatcherState = first.state().to_string().parse().unwrap();
            assert_eq!(saved, first.state());
            // The resumed run is built with a different order and drop_last: the state wins.
            let mut resumed =
                Batcher::new(37, 5, Order::Shuffled { seed: 999 }, !drop_last).unwrap();
            resumed.restore(&saved).unwrap();
            for (k, want) in expected[stop..].iter().enumerate() {
                assert_eq!(
                    resumed.next_batch(),
                    want.as_slice(),
                    "drop_last {drop_last}, seed {seed:?}: batch {} after resuming at step {stop}",
                    stop + k
                );
            }
        }
    }
}

#[test]
fn restore_refuses_a_state_for_other_data() {
    let b = Batcher::new(37, 5, Order::Shuffled { seed: 1 }, true).unwrap();
    let mut other = Batcher::new(36, 5, Order::Shuffled { seed: 1 }, true).unwrap();
    let e = err_text(other.restore(&b.state()));
    assert!(e.contains("37 examples") && e.contains("36"), "{e}");
    let mut same = b.clone();
    let past_end = BatcherState {
        position: 38,
        ..b.state()
    };
    assert!(same.restore(&past_end).is_err());
    assert!("seed=1".parse::<BatcherState>().is_err());
}

// ---------------------------------------------------------------- safetensors and checkpoints

fn tensors() -> Vec<NamedTensor> {
    vec![
        NamedTensor::new(
            "conv1.weight",
            vec![2, 1, 3, 3],
            (0..18).map(|i| i as f32 * 0.5 - 3.0).collect(),
        ),
        NamedTensor::new("conv1.bias", vec![2], vec![f32::MIN_POSITIVE, -0.0]),
        NamedTensor::new(
            "fc.weight",
            vec![3, 4],
            (0..12).map(|i| (i as f32).sin()).collect(),
        ),
        NamedTensor::new("empty", vec![0, 4], vec![]),
    ]
}

fn sorted(mut t: Vec<NamedTensor>) -> Vec<NamedTensor> {
    t.sort_by(|a, b| a.name.cmp(&b.name));
    t
}

fn checkpoint() -> TrainingCheckpoint {
    let params = tensors();
    let optimizer_state = params
        .iter()
        .map(|t| NamedTensor {
            name: format!("adam.m.{}", t.name),
            shape: t.shape.clone(),
            data: t.data.iter().map(|x| x * 0.1).collect(),
        })
        .collect();
    let meta = BTreeMap::from([
        ("model".to_string(), "lenet".to_string()),
        (
            "optimizer".to_string(),
            "adam lr=0.001 betas=0.9,0.999".to_string(),
        ),
        (
            "batcher".to_string(),
            Batcher::new(100, 10, Order::Shuffled { seed: 5 }, true)
                .unwrap()
                .state()
                .to_string(),
        ),
    ]);
    TrainingCheckpoint {
        params: sorted(params),
        optimizer_state: sorted(optimizer_state),
        step: 1234,
        meta,
    }
}

#[test]
fn safetensors_round_trip() {
    let dir = scratch("safetensors_round_trip");
    let path = dir.join("weights.safetensors");
    let meta = BTreeMap::from([("model".to_string(), "lenet".to_string())]);
    save_safetensors(&path, &tensors(), &meta).unwrap();
    let (back, back_meta) = load_safetensors(&path).unwrap();
    assert_eq!(back, sorted(tensors()));
    // Bit-exact, signed zero included.
    assert!(back.iter().find(|t| t.name == "conv1.bias").unwrap().data[1].is_sign_negative());
    assert_eq!(back_meta, meta);
    assert_eq!(files_in(&dir), vec!["weights.safetensors"]);

    save_safetensors(&path, &[], &BTreeMap::new()).unwrap();
    assert_eq!(load_safetensors(&path).unwrap(), (vec![], BTreeMap::new()));
}

#[test]
fn safetensors_save_refuses_inconsistent_tensors() {
    let dir = scratch("safetensors_bad_save");
    let path = dir.join("w.safetensors");
    let bad = NamedTensor {
        name: "w".into(),
        shape: vec![2, 3],
        data: vec![0.0; 5],
    };
    let e = err_text(save_safetensors(&path, &[bad], &BTreeMap::new()));
    assert!(e.contains("tensor w has shape [2, 3] but 5 values"), "{e}");
    let twice = [tensors()[1].clone(), tensors()[1].clone()];
    let e = err_text(save_safetensors(&path, &twice, &BTreeMap::new()));
    assert!(e.contains("two tensors are named conv1.bias"), "{e}");
    assert!(files_in(&dir).is_empty());
}

#[test]
fn safetensors_with_other_dtypes_are_refused_by_name() {
    let dir = scratch("safetensors_dtype");
    let path = dir.join("half.safetensors");
    let data = [0u8; 8];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F16, vec![4], &data).unwrap();
    let bytes = safetensors::serialize([("layer.half", view)], None).unwrap();
    fs::write(&path, bytes).unwrap();
    let e = err_text(load_safetensors(&path));
    assert!(
        e.contains("layer.half") && e.contains("F16") && e.contains("only F32"),
        "{e}"
    );
}

#[test]
fn training_checkpoint_round_trip() {
    let dir = scratch("checkpoint_round_trip");
    let path = dir.join("run.ckpt");
    let ckpt = checkpoint();
    ckpt.save(&path).unwrap();
    let back = TrainingCheckpoint::load(&path).unwrap();
    assert_eq!(back, ckpt);
    let batcher: BatcherState = back.meta["batcher"].parse().unwrap();
    assert_eq!(batcher.seed, Some(5));
    // A plain parameter file can see the version and checksum but a checkpoint hides them.
    let (_, raw_meta) = load_safetensors(&path).unwrap();
    assert_eq!(raw_meta["sinter-checkpoint"], "1");
    assert_eq!(raw_meta["sinter-crc32"].len(), 8);
}

#[test]
fn every_flipped_bit_in_a_checkpoint_is_refused() {
    let dir = scratch("checkpoint_bit_flip");
    let good = dir.join("good.ckpt");
    checkpoint().save(&good).unwrap();
    let bytes = fs::read(&good).unwrap();
    let flipped = dir.join("flipped.ckpt");

    // A flip in the tensor data parses fine, so only the checksum can catch it.
    let mut data_flip = bytes.clone();
    let last = data_flip.len() - 3;
    data_flip[last] ^= 0x10;
    fs::write(&flipped, &data_flip).unwrap();
    let e = err_text(TrainingCheckpoint::load(&flipped));
    assert!(
        e.contains("checksum mismatch: file is corrupt") && e.contains("flipped.ckpt"),
        "{e}"
    );

    for at in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[at] ^= 1 << bit;
            assert!(
                TrainingCheckpoint::from_bytes(&b, "flipped.ckpt").is_err(),
                "flipping bit {bit} of byte {at} of {} went unnoticed",
                bytes.len()
            );
        }
    }
}

#[test]
fn truncated_checkpoints_are_refused() {
    let dir = scratch("checkpoint_truncated");
    let good = dir.join("good.ckpt");
    checkpoint().save(&good).unwrap();
    let bytes = fs::read(&good).unwrap();
    for len in 0..bytes.len() {
        let e = err_text(TrainingCheckpoint::from_bytes(&bytes[..len], "cut.ckpt"));
        assert!(e.starts_with("cut.ckpt: "), "{e}");
        if len > bytes.len() - 100 {
            assert!(e.contains("truncated"), "length {len}: {e}");
        }
    }
    let cut = dir.join("cut.ckpt");
    fs::write(&cut, &bytes[..bytes.len() - 1]).unwrap();
    let e = err_text(TrainingCheckpoint::load(&cut));
    assert!(e.contains("cut.ckpt") && e.contains("truncated"), "{e}");
}

#[test]
fn checkpoint_versions_and_foreign_files_are_explained() {
    let dir = scratch("checkpoint_versions");
    let path = dir.join("future.ckpt");
    let meta = BTreeMap::from([("sinter-checkpoint".to_string(), "7".to_string())]);
    save_safetensors(&path, &tensors(), &meta).unwrap();
    let e = err_text(TrainingCheckpoint::load(&path));
    assert!(
        e.contains("format version 7 is newer than this sinter understands"),
        "{e}"
    );

    save_safetensors(&path, &tensors(), &BTreeMap::new()).unwrap();
    let e = err_text(TrainingCheckpoint::load(&path));
    assert!(e.contains("not a sinter training checkpoint"), "{e}");

    let mut reserved = checkpoint();
    reserved.meta.insert("sinter-step".into(), "5".into());
    let e = err_text(reserved.save(&path));
    assert!(e.contains("reserves"), "{e}");

    fs::write(&path, b"definitely not safetensors").unwrap();
    let e = err_text(TrainingCheckpoint::load(&path));
    assert!(e.contains("future.ckpt"), "{e}");
}

#[test]
fn check_against_reports_every_mismatch_at_once() {
    let loaded = tensors();
    let expected = vec![
        ("conv1.weight".to_string(), vec![2, 1, 3, 3]),
        ("conv1.bias".to_string(), vec![3]),
        ("fc.weight".to_string(), vec![4, 3]),
        ("fc.bias".to_string(), vec![4]),
        ("empty".to_string(), vec![0, 4]),
    ];
    let e = err_text(check_against(&loaded, &expected, "model.safetensors"));
    assert!(
        e.starts_with("model.safetensors: does not match the model"),
        "{e}"
    );
    assert!(e.contains("missing fc.bias [4]"), "{e}");
    assert!(
        e.contains("conv1.bias is [2] in the file but the model expects [3]"),
        "{e}"
    );
    assert!(
        e.contains("fc.weight is [3, 4] in the file but the model expects [4, 3]"),
        "{e}"
    );
    assert!(
        !e.contains("conv1.weight") && !e.contains("unexpected"),
        "{e}"
    );

    let e = err_text(check_against(&loaded, &expected[..1], "m"));
    assert!(
        e.contains("unexpected conv1.bias [2], fc.weight [3, 4], empty [0, 4]"),
        "{e}"
    );

    let exact: Vec<(String, Vec<usize>)> = loaded
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    check_against(&loaded, &exact, "m").unwrap();
}

// ---------------------------------------------------------------- atomic saves

#[test]
fn atomic_save_replaces_the_file_and_leaves_no_temp_file() {
    let dir = scratch("atomic_replace");
    let path = dir.join("run.ckpt");
    let mut ckpt = checkpoint();
    ckpt.save(&path).unwrap();
    ckpt.step += 1;
    ckpt.save(&path).unwrap();
    assert_eq!(TrainingCheckpoint::load(&path).unwrap().step, 1235);
    assert_eq!(files_in(&dir), vec!["run.ckpt"]);
}

#[test]
fn failed_save_leaves_the_old_file_intact() {
    let dir = scratch("atomic_failure");
    let path = dir.join("run.ckpt");
    checkpoint().save(&path).unwrap();
    let before = fs::read(&path).unwrap();

    // The writer dies halfway through the new content.
    let e = err_text(write_atomic(&path, |w| {
        w.write_all(&before[..before.len() / 2])?;
        Err(std::io::Error::other("disk full"))
    }));
    assert!(e.contains("disk full") && e.contains("run.ckpt"), "{e}");
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(files_in(&dir), vec!["run.ckpt"]);

    // The new content is invalid: refused before anything touches the disk.
    let mut bad = checkpoint();
    bad.params[0].data.pop();
    assert!(bad.save(&path).is_err());
    assert_eq!(fs::read(&path).unwrap(), before);

    // The rename cannot happen (the target is a non-empty folder): the temp file is cleaned up.
    let blocked = dir.join("blocked.ckpt");
    fs::create_dir(&blocked).unwrap();
    fs::write(blocked.join("keep"), b"x").unwrap();
    assert!(checkpoint().save(&blocked).is_err());
    assert_eq!(files_in(&dir), vec!["blocked.ckpt", "run.ckpt"]);

    // A folder that does not exist.
    let e = err_text(checkpoint().save(dir.join("no/such/dir/run.ckpt")));
    assert!(e.contains("no/such/dir/run.ckpt"), "{e}");
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(files_in(&dir), vec!["blocked.ckpt", "run.ckpt"]);
}

#[test]
fn temp_files_of_killed_saves_are_removed_by_the_next_save_or_load() {
    let dir = scratch("stale_temp");
    let path = dir.join("run.ckpt");
    // A process that has exited stands for a run killed during a save.
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    let stale = format!(".run.ckpt.{}-3.tmp", dead.id());
    // A process still running may still be saving: its temp file stays.
    let mut alive = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let busy = format!(".run.ckpt.{}-0.tmp", alive.id());
    // Names that are not our temp files for run.ckpt are never touched.
    let foreign = [
        format!(".other.ckpt.{}-3.tmp", dead.id()),
        format!(".run.ckpt.{}-3.tmp.keep", dead.id()),
        "run.ckpt.tmp".to_string(),
    ];
    for name in [&stale, &busy].into_iter().chain(&foreign) {
        fs::write(dir.join(name), b"half a checkpoint").unwrap();
    }

    checkpoint().save(&path).unwrap();
    let mut expected: Vec<String> = foreign.to_vec();
    expected.extend([busy.clone(), "run.ckpt".to_string()]);
    expected.sort();
    assert_eq!(files_in(&dir), expected, "after a save");

    // A load cleans up too.
    fs::write(dir.join(&stale), b"half a checkpoint").unwrap();
    assert_eq!(TrainingCheckpoint::load(&path).unwrap().step, 1234);
    assert_eq!(files_in(&dir), expected, "after a load");

    alive.kill().unwrap();
    alive.wait().unwrap();
    TrainingCheckpoint::load(&path).unwrap();
    expected.retain(|n| n != &busy);
    assert_eq!(files_in(&dir), expected, "once its process is gone");
}
