//! `sinter train --model resnet`: the ResNet learns the shipped digits on the CPU backend and on a
//! software adapter, its evaluation uses the running statistics (`sinter eval` of the saved file
//! gives the training's final figures), --save/--init keep torchvision's names, CIFAR-10 folders
//! load, and bad depths and CIFAR files are refused by name.

mod common;

use common::{assert_refused, line_from, scratch, sinter, sinter_env, stderr};
use sinter::sinter_model::checkpoint::load_safetensors;
use std::path::Path;

/// The training losses of a `--log` JSON-lines file, in step order.
fn train_losses(log: &Path) -> Vec<f64> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect()
}

/// Trains ResNet-8 for 16 steps of 16 digits on `device`: the mean loss of the last four steps
/// must be below that of the first four (from about ln 10 ≈ 2.3).
fn trains_on(device: &str, dir: &Path) -> std::process::Output {
    let log = dir.join(format!("{device}.jsonl"));
    let save = dir.join(format!("{device}.safetensors"));
    let o = sinter_env(
        &[
            "train",
            "--model",
            "resnet",
            "--depth",
            "8",
            "--steps",
            "16",
            "--batch",
            "16",
            "--quiet",
            "--device",
            device,
            "--log",
            log.to_str().unwrap(),
            "--save",
            save.to_str().unwrap(),
        ],
        &[],
        &["SINTER_DEVICE"],
    );
    assert!(o.status.success(), "{device}: {}", stderr(&o));
    let losses = train_losses(&log);
    assert_eq!(losses.len(), 16, "{device}: {losses:?}");
    let mean = |l: &[f64]| l.iter().sum::<f64>() / l.len() as f64;
    let (first, last) = (mean(&losses[..4]), mean(&losses[12..]));
    assert!(last < first, "{device}: loss did not fall: {losses:?}");
    o
}

#[test]
fn resnet_trains_on_the_cpu_and_keeps_torchvision_names_through_save_and_init() {
    let dir = scratch("resnet_cpu");
    let o = trains_on("cpu", &dir);
    let trained = line_from(&o, "test accuracy");
    let trained = trained[..trained.find(" after").unwrap()].to_string();
    let saved = dir.join("cpu.safetensors");
    let (tensors, meta) = load_safetensors(&saved).unwrap();
    assert_eq!(meta.get("model").map(String::as_str), Some("resnet"));
    assert_eq!(meta.get("depth").map(String::as_str), Some("8"));
    let find = |name: &str| {
        tensors
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{name} not saved"))
    };
    for name in [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "layer1.0.conv1.weight",
        "layer1.0.bn1.running_var",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.weight",
        "layer3.0.downsample.1.running_mean",
        "fc.weight",
        "fc.bias",
    ] {
        find(name);
    }
    assert_eq!(find("bn1.num_batches_tracked").data, [16.0]);
    assert!(find("bn1.num_batches_tracked").shape.is_empty());
    // The running statistics moved from their initial 0 and 1.
    assert!(find("bn1.running_mean").data.iter().any(|&v| v != 0.0));
    assert!(find("layer1.0.bn2.running_var")
        .data
        .iter()
        .any(|&v| v != 1.0));
    assert!(tensors
        .iter()
        .all(|t| !t.name.contains("momentum") && !t.name.contains("adam")));

    // Evaluation of the saved file uses the saved running statistics: the training's figures.
    let p = saved.to_str().unwrap();
    let e = sinter(&["eval", p]);
    assert!(e.status.success(), "{}", stderr(&e));
    assert!(
        line_from(&e, "test accuracy").starts_with(&trained),
        "{trained} vs {}",
        line_from(&e, "test")
    );

    // --init takes the file (buffers included) and saves it again under the same names.
    let again = dir.join("again.safetensors");
    let o = sinter(&[
        "train",
        "--model",
        "resnet",
        "--depth",
        "8",
        "--steps",
        "1",
        "--batch",
        "16",
        "--quiet",
        "--init",
        p,
        "--save",
        again.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (back, _) = load_safetensors(&again).unwrap();
    let names = |t: &[sinter::sinter_model::checkpoint::NamedTensor]| {
        t.iter().map(|t| t.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&back), names(&tensors));
    let count = back
        .iter()
        .find(|t| t.name == "bn1.num_batches_tracked")
        .unwrap();
    assert_eq!(count.data, [17.0], "the counter continues from the file's");

    // A file of another depth is refused, naming the tensors that do not fit.
    let o = sinter(&[
        "train", "--model", "resnet", "--depth", "14", "--steps", "1", "--quiet", "--init", p,
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("cpu.safetensors") && err.contains("missing layer1.1.conv1.weight"),
        "{err}"
    );
}

#[test]
fn resnet_trains_on_a_software_adapter() {
    let found =
        !sinter::sinter_device::adapters_of(sinter::sinter_ops::AdapterKind::Software).is_empty();
    if !found {
        assert!(
            std::env::var_os("SINTER_REQUIRE_ADAPTER").is_none(),
            "SINTER_REQUIRE_ADAPTER is set but no software adapter was found"
        );
        eprintln!("WARNING: no software adapter; resnet adapter run SKIPPED");
        return;
    }
    trains_on("software", &scratch("resnet_software"));
}

#[test]
fn bad_depths_are_refused_with_the_valid_ones() {
    let o = sinter(&[
        "train", "--model", "resnet", "--depth", "21", "--steps", "1",
    ]);
    let err = assert_refused(&o, "--depth 21");
    assert!(
        err.contains("--depth 21") && err.contains("6n+2") && err.contains("20, 32, 44, 56, 110"),
        "{err}"
    );
    let o = sinter(&["train", "--model", "cnn", "--depth", "20", "--steps", "1"]);
    let err = assert_refused(&o, "--depth with cnn");
    assert!(
        err.contains("--depth") && err.contains("--model resnet"),
        "{err}"
    );
}

/// `n` CIFAR-10 records: label k % 10, pixels a pattern of k.
fn cifar_records(n: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for k in 0..n {
        bytes.push((k % 10) as u8);
        bytes.extend((0..3072).map(|i| ((i * 7 + k * 13) % 256) as u8));
    }
    bytes
}

#[test]
fn cifar_folders_train_and_bad_ones_are_named() {
    let dir = scratch("cifar");
    for k in 1..=5 {
        std::fs::write(dir.join(format!("data_batch_{k}.bin")), cifar_records(8)).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), cifar_records(4)).unwrap();
    let d = dir.to_str().unwrap();
    let o = sinter(&[
        "train", "--model", "resnet", "--depth", "8", "--data", d, "--steps", "2", "--batch", "8",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        line_from(&o, "test accuracy").contains("(4 images)"),
        "{}",
        line_from(&o, "test")
    );

    let mut short = cifar_records(2);
    short.truncate(3073 + 100);
    std::fs::write(dir.join("data_batch_3.bin"), short).unwrap();
    let o = sinter(&[
        "train", "--model", "resnet", "--data", d, "--steps", "1", "--quiet",
    ]);
    let err = assert_refused(&o, "a truncated batch file");
    assert!(
        err.contains("data_batch_3.bin") && err.contains("3073"),
        "{err}"
    );

    std::fs::remove_file(dir.join("test_batch.bin")).unwrap();
    let o = sinter(&[
        "train", "--model", "resnet", "--data", d, "--steps", "1", "--quiet",
    ]);
    let err = assert_refused(&o, "a missing test batch");
    assert!(
        err.contains("test_batch.bin") && err.contains("missing"),
        "{err}"
    );
}
