//! The `sinter` command line as a user meets it: a short `train`, and clear errors with a
//! non-zero exit for missing or corrupt data files, mismatched parameter files and bad options
//! (`info`, adapters and tuning: `cli_devices.rs`).

mod common;

use common::*;

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

/// `--detect-anomaly` stops a diverging run (SGD at a learning rate of 10^30) at the first
/// non-finite value and names its node and step, for an image and a text model.
#[test]
fn detect_anomaly_names_the_node_and_step() {
    for (model, sizes) in [
        ("mlp", &[][..]),
        ("char-rnn", &["--width", "32", "--context", "16"]),
    ] {
        let mut args = vec![
            "train",
            "--model",
            model,
            "--optimizer",
            "sgd",
            "--lr",
            "1e30",
            "--steps",
            "6",
            "--quiet",
            "--detect-anomaly",
        ];
        args.extend_from_slice(sizes);
        let o = sinter(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{model}: {err}");
        assert!(
            err.contains(": the first non-finite value comes from")
                && err.contains("(shape [")
                && err.contains("recorded at"),
            "{model}: {err}"
        );
        assert!(err.contains("error: step "), "{model}: {err}");
        eprintln!("{model}: {err}");
    }
}

/// 1×1 images are valid IDX files but too small for the CNN's two poolings: refused by name
/// (they made the CNN's initialization panic), while the MLP trains on them.
#[test]
fn images_too_small_for_the_cnn_are_refused() {
    let dir = scratch("tiny_images");
    let idx = |dims: &[u32], data: &[u8]| {
        let mut out = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    };
    std::fs::write(dir.join("images-idx3-ubyte"), idx(&[2, 1, 1], &[1, 2])).unwrap();
    std::fs::write(dir.join("labels-idx1-ubyte"), idx(&[2], &[0, 1])).unwrap();
    let data = dir.to_str().unwrap();
    let o = sinter(&["train", "--data", data, "--steps", "1", "--batch", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("at least 4×4 pixels; these are 1×1"),
        "{}",
        stderr(&o)
    );
    let o = sinter(&[
        "train", "--data", data, "--steps", "1", "--batch", "1", "--model", "mlp", "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

// ---- issue 13: the command line keeps its promises for every model, and loses no run ----

/// Items 5, 7, 8: bad values are refused with the option's own message and its valid range.
#[test]
fn bad_values_name_the_option_and_its_valid_range() {
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--lr", "-0.1"], "--lr", "greater than 0"),
        (&["--lr", "0"], "--lr", "greater than 0"),
        (&["--batch", "-1"], "--batch", "at least 1"),
        (&["--epochs", "-1"], "--epochs", "at least 1"),
        (&["--clip-norm", "-1"], "--clip-norm", "greater than 0"),
        (&["--clip-norm", "0"], "--clip-norm", "greater than 0"),
        (&["--weight-decay", "-1"], "--weight-decay", "at least 0"),
        (&["--momentum", "5"], "--momentum", "[0, 1)"),
        (&["--momentum", "-0.5"], "--momentum", "[0, 1)"),
        (
            &["--checkpoint-every", "0"],
            "--checkpoint-every",
            "at least 1",
        ),
        (&["--steps", "0"], "--steps", "at least 1"),
        (
            &["--model", "char-transformer", "--layers", "0"],
            "--layers",
            "at least 1",
        ),
        (
            &["--model", "char-transformer", "--heads", "0"],
            "--heads",
            "at least 1",
        ),
        (
            &["--model", "char-transformer", "--width", "0"],
            "--width",
            "at least 1",
        ),
        (
            &["--model", "char-rnn", "--width", "0"],
            "--width",
            "at least 1",
        ),
        (
            &["--model", "char-gru", "--width", "0"],
            "--width",
            "at least 1",
        ),
        (
            &["--model", "char-lstm", "--context", "0"],
            "--context",
            "at least 1",
        ),
    ];
    for (args, option, range) in cases {
        let mut all = vec!["train", "--quiet"];
        if !args.contains(&"--steps") {
            all.extend(["--steps", "2"]);
        }
        all.extend_from_slice(args);
        let o = sinter(&all);
        let err = assert_refused(&o, &format!("{args:?}"));
        assert!(
            err.contains(option) && err.contains(range) && !err.contains("unexpected argument"),
            "{args:?}: {err}"
        );
    }
    // --heads 0 is about heads, not width.
    let o = sinter(&[
        "train",
        "--model",
        "char-transformer",
        "--heads",
        "0",
        "--steps",
        "1",
    ]);
    assert!(!stderr(&o).contains("--width"), "{}", stderr(&o));
    let o = sinter(&["sample", "lm.safetensors", "--temperature", "-1"]);
    let err = assert_refused(&o, "sample --temperature -1");
    assert!(
        err.contains("--temperature") && err.contains("at least 0"),
        "{err}"
    );
}

/// Item 10: a diverging run without --stop-on-nan warns once and sums up at the end, and
/// large losses print in scientific notation.
#[test]
fn a_diverging_run_warns_once_and_prints_large_losses_readably() {
    let o = sinter(&[
        "train",
        "--model",
        "mlp",
        "--optimizer",
        "sgd",
        "--lr",
        "1e3",
        "--steps",
        "30",
        "--quiet",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("WARN"), "{err}");
    let warnings = err.lines().filter(|l| l.starts_with("warning:")).count();
    assert_eq!(warnings, 2, "{err}");
    assert!(
        err.contains("of 30 steps had a non-finite training loss"),
        "{err}"
    );

    let o = sinter(&[
        "train",
        "--model",
        "mlp",
        "--optimizer",
        "sgd",
        "--momentum",
        "0",
        "--lr",
        "30",
        "--steps",
        "8",
        "--schedule",
        "constant",
        "--quiet",
    ]);
    let out = format!("{}{}", stderr(&o), String::from_utf8_lossy(&o.stdout));
    assert!(o.status.success(), "{out}");
    let long_number = out
        .split(|c: char| !c.is_ascii_digit())
        .any(|digits| digits.len() > 12);
    assert!(!long_number, "{out}");
    assert!(
        out.contains("final train loss") && out.contains('e'),
        "{out}"
    );
}

/// Item 11: --init with a checkpoint, a missing --data, and a bad SINTER_DEVICE say what is wrong.
#[test]
fn wrong_files_and_devices_say_what_to_do() {
    let dir = scratch("init_ckpt");
    let ckpt = dir.join("run.ckpt");
    let o = sinter(&[
        "train",
        "--model",
        "mlp",
        "--steps",
        "2",
        "--quiet",
        "--checkpoint",
        ckpt.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = sinter(&[
        "train",
        "--model",
        "mlp",
        "--steps",
        "2",
        "--quiet",
        "--init",
        ckpt.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("this is a training checkpoint, use --resume") && err.len() < 400,
        "{err}"
    );
    for model in ["mlp", "char-rnn"] {
        let o = sinter(&[
            "train",
            "--model",
            model,
            "--data",
            "/no/such/folder",
            "--steps",
            "1",
        ]);
        let err = assert_refused(&o, model);
        assert!(
            err.contains("--data /no/such/folder: does not exist"),
            "{err}"
        );
    }
    let o = sinter_env(
        &["train", "--steps", "1"],
        &[("SINTER_DEVICE", "banana")],
        &[],
    );
    let err = assert_refused(&o, "SINTER_DEVICE=banana");
    assert!(
        err.contains("'banana'") && err.contains("SINTER_DEVICE"),
        "{err}"
    );
}

/// Item 18: every option of every subcommand has help text; --distributed says whether MPI is in.
#[test]
fn every_option_has_help_text() {
    for cmd in [
        &["train"][..],
        &["eval"],
        &["predict"],
        &["sample"],
        &["info"],
        &["profile"],
        &["bench", "matmul"],
        &["bench", "conv"],
        &["bench", "attention"],
        &["bench", "step"],
        &["bench", "soak"],
        &["tune"],
    ] {
        let mut args = cmd.to_vec();
        args.push("-h");
        let o = sinter(&args);
        assert!(o.status.success());
        let help = String::from_utf8_lossy(&o.stdout).into_owned();
        let lines: Vec<&str> = help.lines().collect();
        let is_arg = |l: &str| {
            let t = l.trim_start();
            l.starts_with("  ")
                && (t.starts_with("--") || t.starts_with("-h") || t.starts_with('<'))
        };
        let mut seen = 0;
        for (i, line) in lines.iter().enumerate().filter(|(_, l)| is_arg(l)) {
            seen += 1;
            let t = line.trim_start();
            let inline = t.split_once("  ").map(|(_, h)| h.trim()).unwrap_or("");
            let text = match (inline, lines.get(i + 1)) {
                ("", Some(next)) if !is_arg(next) => next.trim(),
                _ => inline,
            };
            // What is left once clap's own [default: …] and [possible values: …] are gone.
            let own = text.split(" [").next().unwrap_or("");
            let own = if own.starts_with('[') { "" } else { own };
            assert!(
                own.chars().filter(|c| c.is_alphabetic()).count() >= 3,
                "{cmd:?}: {t:?} has no help text"
            );
        }
        assert!(seen > 0, "{cmd:?}: {help}");
    }
    let o = sinter(&["train", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    let said = if cfg!(feature = "mpi") {
        "launch with `mpirun"
    } else {
        "not built into this sinter"
    };
    assert!(help.contains(said), "{help}");
}

/// Item 18: the README says how to put `sinter` on the PATH and how slow software runs are.
#[test]
fn readme_says_how_to_install_and_that_software_runs_are_slow() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    assert!(readme.contains("`cargo install --path .` puts the `sinter` binary on your PATH"));
    assert!(
        readme.contains("`sinter train --device software`") && readme.contains("2 to 3 minutes")
    );
}

#[test]
fn eval_and_predict_use_a_saved_model_without_training() {
    let dir = scratch("eval");
    let params = dir.join("mlp.safetensors");
    let p = params.to_str().unwrap();
    let o = sinter(&[
        "train", "--model", "mlp", "--steps", "20", "--quiet", "--save", p,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let trained = line_from(&o, "test accuracy");
    let trained = &trained[..trained.find(" after").unwrap()];

    // The same figures as the training's final evaluation, and no training step.
    let o = sinter(&["eval", p]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        line_from(&o, "test accuracy").starts_with(trained),
        "{trained} vs {}",
        line_from(&o, "test")
    );
    assert!(line_from(&o, "test loss").starts_with("test loss "));
    assert!(!stderr(&o).contains("training"), "{}", stderr(&o));

    // Test image 0 by index, then the same digit as a PNG file: the same probabilities.
    let o = sinter(&["predict", p, "--index", "0,1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let by_index = line_from(&o, "test image 0 (label ");
    assert!(
        by_index.contains("probabilities 0:") && by_index.contains(" 9:"),
        "{by_index}"
    );
    assert!(line_from(&o, "test image 1").contains("%"));
    let (_, test) = sinter::sinter_model::data::embedded_mnist().unwrap();
    let png_path = dir.join("digit.png");
    let mut enc = png::Encoder::new(std::fs::File::create(&png_path).unwrap(), 28, 28);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let pixels: Vec<u8> = test.images[..784]
        .iter()
        .map(|&v| (v * 255.0).round() as u8)
        .collect();
    enc.write_header()
        .unwrap()
        .write_image_data(&pixels)
        .unwrap();
    let o = sinter(&["predict", p, png_path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let from_png = line_from(&o, "digit.png: ");
    let probs = |l: &str| l[l.find(") · probabilities").unwrap()..].to_string();
    assert_eq!(probs(&from_png), probs(&by_index));

    // Wrong inputs say what is wrong.
    let o = sinter(&["predict", p]);
    assert!(
        !o.status.success() && stderr(&o).contains("--index"),
        "{}",
        stderr(&o)
    );
    let o = sinter(&["predict", p, "--index", "5000"]);
    assert!(stderr(&o).contains("holds 2000 images"), "{}", stderr(&o));
    let o = sinter(&["predict", p, params.to_str().unwrap()]);
    assert!(stderr(&o).contains("is not a PNG image"), "{}", stderr(&o));

    // A character model: the training's validation figure, over the same windows.
    let lm = dir.join("gru.safetensors");
    let l = lm.to_str().unwrap();
    let o = sinter(&[
        "train",
        "--model",
        "char-gru",
        "--steps",
        "3",
        "--context",
        "16",
        "--width",
        "32",
        "--batch",
        "4",
        "--quiet",
        "--save",
        l,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let trained = line_from(&o, "validation loss");
    let nats = &trained[..trained.find(" nats/char").unwrap()];
    let o = sinter(&["eval", l, "--batch", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        line_from(&o, "validation loss").starts_with(nats),
        "{nats} vs {}",
        line_from(&o, "validation")
    );
    let o = sinter(&["predict", l, "--index", "0"]);
    assert!(stderr(&o).contains("sinter sample"), "{}", stderr(&o));
    let o = sinter(&["eval", p, "--model", "cnn"]);
    assert!(
        stderr(&o).contains("holds a mlp model, not --model cnn"),
        "{}",
        stderr(&o)
    );
}

/// Options of the text models are refused by name for an image model, which would ignore them.
#[test]
fn text_model_options_are_refused_for_image_models() {
    for (option, value) in [
        ("--context", "32"),
        ("--width", "64"),
        ("--layers", "2"),
        ("--heads", "2"),
        ("--size", "tiny"),
        ("--eval-batches", "4"),
        ("--sample", "10"),
    ] {
        for model in ["mlp", "cnn", "resnet"] {
            let o = sinter(&["train", "--model", model, "--steps", "1", option, value]);
            let err = assert_refused(&o, &format!("{option} for {model}"));
            assert!(
                err.contains(&format!("{option} is for the text models")) && err.contains(model),
                "{option} {model}: {err}"
            );
        }
    }
}
