//! The `sinter` command line as a user meets it: `info`, a short `train`, and clear errors with a
//! non-zero exit for missing or corrupt data files, mismatched parameter files and bad options.

use std::path::PathBuf;
use std::process::{Command, Output};

fn sinter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args(args)
        .env("SINTER_DEVICE", "cpu")
        .output()
        .expect("sinter runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn info_lists_adapters_and_the_auto_choice() {
    let o = sinter(&["info"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("auto:"), "{out}");
    let mpi = if cfg!(feature = "mpi") {
        "MPI (train --distributed): built in"
    } else {
        "MPI (train --distributed): not built in"
    };
    assert!(out.contains(mpi), "{out}");
}

#[cfg(not(feature = "mpi"))]
#[test]
fn distributed_training_without_mpi_built_in_is_a_clear_error() {
    let o = sinter(&["train", "--distributed", "--steps", "1"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("built without MPI") && e.contains("--features mpi"),
        "{e}"
    );
}

#[test]
fn a_short_training_run_reports_accuracy_and_device_and_saves_parameters() {
    let dir = scratch("train");
    let params = dir.join("mlp.safetensors");
    let o = sinter(&[
        "train",
        "--model",
        "mlp",
        "--steps",
        "20",
        "--quiet",
        "--save",
        params.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("test accuracy") && out.contains("images/s") && out.contains("CPU backend"),
        "{out}"
    );
    assert!(params.exists());

    // The saved parameters initialize the same model, and are refused by another one.
    let o = sinter(&[
        "train",
        "--model",
        "mlp",
        "--steps",
        "1",
        "--quiet",
        "--init",
        params.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = sinter(&[
        "train",
        "--model",
        "cnn",
        "--steps",
        "1",
        "--quiet",
        "--init",
        params.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("mlp.safetensors") && err.contains("conv1.weight"),
        "{err}"
    );
}

#[test]
fn a_missing_data_folder_is_a_clear_error() {
    let o = sinter(&["train", "--data", "/no/such/folder", "--steps", "1"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("/no/such/folder") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn a_wrong_idx_magic_number_names_the_file() {
    let dir = scratch("bad-magic");
    std::fs::write(dir.join("images-idx3-ubyte"), [0u8, 0, 9, 9, 0, 0, 0, 1]).unwrap();
    std::fs::write(dir.join("labels-idx1-ubyte"), [0u8, 0, 8, 1, 0, 0, 0, 1, 3]).unwrap();
    let o = sinter(&["train", "--data", dir.to_str().unwrap(), "--steps", "1"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("images-idx3-ubyte") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn a_truncated_idx_file_names_the_file() {
    let dir = scratch("truncated");
    // Claims 10 images of 28×28 but holds 5 bytes of pixels.
    let mut images = vec![0u8, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28];
    images.extend([1, 2, 3, 4, 5]);
    std::fs::write(dir.join("images-idx3-ubyte"), images).unwrap();
    std::fs::write(
        dir.join("labels-idx1-ubyte"),
        [0u8, 0, 8, 1, 0, 0, 0, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0],
    )
    .unwrap();
    let o = sinter(&["train", "--data", dir.to_str().unwrap(), "--steps", "1"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("images-idx3-ubyte") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn bad_options_are_refused() {
    let o = sinter(&["train", "--device", "tpu", "--steps", "1"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown device 'tpu'"),
        "{}",
        stderr(&o)
    );
    let o = sinter(&["train", "--batch", "0", "--steps", "1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--batch"), "{}", stderr(&o));
    let o = sinter(&["train", "--lr=-1", "--steps", "1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--lr"), "{}", stderr(&o));
}

#[test]
fn ctrl_c_saves_a_checkpoint_that_resumes() {
    let dir = scratch("interrupt");
    let ckpt = dir.join("run.ckpt");
    let child = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args([
            "train",
            "--model",
            "mlp",
            "--steps",
            "1000000",
            "--quiet",
            "--checkpoint-every",
            "5",
            // The resumed run trains to another step count: a constant rate keeps the
            // optimizer settings identical, as resuming requires.
            "--schedule",
            "constant",
        ])
        .arg("--checkpoint")
        .arg(&ckpt)
        .env("SINTER_DEVICE", "cpu")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !ckpt.exists() {
        assert!(started.elapsed().as_secs() < 120, "no checkpoint written");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "an interrupted run exits non-zero");
    assert!(
        err.contains("interrupted at step") && err.contains("--resume"),
        "{err}"
    );

    let saved = sinter::sinter_model::checkpoint::TrainingCheckpoint::load(&ckpt).unwrap();
    assert!(saved.step >= 5, "checkpoint at step {}", saved.step);
    let steps = (saved.step + 2).to_string();
    let o = sinter(&[
        "train",
        "--model",
        "mlp",
        "--steps",
        &steps,
        "--quiet",
        "--schedule",
        "constant",
        "--resume",
        ckpt.to_str().unwrap(),
    ]);
    let resumed = stderr(&o);
    assert!(o.status.success(), "{resumed}");
    assert!(
        resumed.contains(&format!(
            "resumed from {} at step {}",
            ckpt.display(),
            saved.step
        )),
        "{resumed}"
    );
}

#[test]
fn a_run_killed_at_any_moment_leaves_a_loadable_checkpoint() {
    let dir = scratch("sigkill");
    let ckpt = dir.join("run.ckpt");
    // A checkpoint every step, so kills land during saves as well as between them.
    for (round, delay_ms) in [40u64, 90, 150, 230, 310].into_iter().enumerate() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sinter"))
            .args([
                "train",
                "--model",
                "mlp",
                "--steps",
                "1000000",
                "--quiet",
                "--checkpoint-every",
                "1",
            ])
            .arg("--checkpoint")
            .arg(&ckpt)
            .env("SINTER_DEVICE", "cpu")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while !ckpt.exists() {
            assert!(started.elapsed().as_secs() < 120, "no checkpoint written");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let loaded = sinter::sinter_model::checkpoint::TrainingCheckpoint::load(&ckpt);
        assert!(
            loaded.is_ok(),
            "round {round}: checkpoint unreadable after SIGKILL: {:?}",
            loaded.err()
        );
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        eprintln!(
            "round {round}: killed after {delay_ms} ms, checkpoint at step {}, files {leftovers:?}",
            loaded.unwrap().step
        );
    }
}

#[test]
fn plots_are_written_as_svg_or_png() {
    let dir = scratch("plot");
    let svg = dir.join("run.svg");
    let png = dir.join("run.png");
    for path in [&svg, &png] {
        let o = sinter(&[
            "train",
            "--model",
            "mlp",
            "--steps",
            "130",
            "--quiet",
            "--plot",
            path.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") && text.contains("test accuracy"),
        "not the expected SVG"
    );
    assert!(
        std::fs::read(&png).unwrap().starts_with(b"\x89PNG"),
        "not a PNG"
    );
    let o = sinter(&[
        "train", "--model", "mlp", "--steps", "1", "--quiet", "--plot", "run.pdf",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains(".svg or .png"), "{}", stderr(&o));
}

#[test]
fn a_saved_character_model_samples_text() {
    let dir = scratch("sample");
    let params = dir.join("lm.safetensors");
    for model in ["char-transformer", "char-gru"] {
        let o = sinter(&[
            "train",
            "--model",
            model,
            "--steps",
            "3",
            "--context",
            "16",
            "--width",
            "32",
            "--heads",
            "2",
            "--layers",
            "1",
            "--batch",
            "4",
            "--quiet",
            "--save",
            params.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{model}: {}", stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("nats/char"));
        let o = sinter(&[
            "sample",
            params.to_str().unwrap(),
            "--chars",
            "40",
            "--prompt",
            "ROMEO:",
        ]);
        assert!(o.status.success(), "{model}: {}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            text.starts_with("ROMEO:") && text.trim_end().chars().count() >= 40,
            "{model}: {text:?}"
        );
    }
    // A parameter file of an image model is not a character model.
    let image = dir.join("mlp.safetensors");
    let o = sinter(&[
        "train",
        "--model",
        "mlp",
        "--steps",
        "1",
        "--quiet",
        "--save",
        image.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let o = sinter(&["sample", image.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("mlp.safetensors"), "{}", stderr(&o));
}
