//! `sinter train --model gpt2` on the CPU backend: a few steps from sizes, characters, a
//! tokenizer.json or nanoGPT token files; --save DIR → --init DIR and `sinter sample DIR`; the errors.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

const TINY: [&str; 14] = [
    "train",
    "--model",
    "gpt2",
    "--layers",
    "1",
    "--heads",
    "2",
    "--width",
    "32",
    "--context",
    "16",
    "--batch",
    "4",
    "--quiet",
];

fn train(extra: &[&str]) -> std::process::Output {
    let mut args: Vec<&str> = TINY.to_vec();
    args.extend_from_slice(extra);
    sinter(&args)
}

fn write_bin(path: &Path, ids: impl Iterator<Item = u16>) {
    let bytes: Vec<u8> = ids.flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_tiny_gpt2_trains_saves_a_folder_that_samples_and_initializes_another_run() {
    let dir = scratch("gpt2-save");
    let saved = dir.join("model");
    let s = saved.to_str().unwrap();
    let o = train(&["--steps", "3", "--save", s]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = line_from(&o, "validation loss");
    assert!(line.contains("nats/token after 3 steps"), "{line}");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(saved.join(f).is_file(), "{f}");
    }
    let config = std::fs::read_to_string(saved.join("config.json")).unwrap();
    assert!(
        config.contains("\"model_type\": \"gpt2\"") && config.contains("\"n_positions\": 16"),
        "{config}"
    );

    let o = sinter(&["sample", s, "--chars", "30", "--prompt", "ROMEO:"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.starts_with("ROMEO:") && text.trim_end().chars().count() >= 30,
        "{text:?}"
    );

    // --init DIR: the architecture is the folder's; --context may be shorter than n_positions.
    let again = dir.join("again");
    let o = sinter(&[
        "train",
        "--model",
        "gpt2",
        "--init",
        s,
        "--context",
        "8",
        "--batch",
        "2",
        "--steps",
        "1",
        "--quiet",
        "--save",
        again.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("context 8"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(again.join("config.json")).unwrap(),
        config,
        "the same architecture"
    );

    // Sizes that disagree with the folder, and a context longer than its positions.
    for (extra, words) in [
        (&["--layers", "3"][..], "--layers 3 conflicts with --init"),
        (&["--size", "124M"], "--size 124M conflicts with --init"),
        (
            &["--context", "32"],
            "--context 32 is longer than the model's 16 positions",
        ),
    ] {
        let mut args = vec![
            "train", "--model", "gpt2", "--init", s, "--steps", "1", "--quiet",
        ];
        args.extend_from_slice(extra);
        let err = assert_refused(&sinter(&args), words);
        assert!(err.contains(words), "{err}");
    }
    // A file where a folder belongs.
    let file = dir.join("params.safetensors");
    std::fs::write(&file, b"x").unwrap();
    let err = assert_refused(
        &train(&["--steps", "1", "--save", file.to_str().unwrap()]),
        "--save FILE",
    );
    assert!(err.contains("is a file") && err.contains("folder"), "{err}");
    let err = assert_refused(
        &sinter(&[
            "train",
            "--model",
            "gpt2",
            "--init",
            file.to_str().unwrap(),
            "--steps",
            "1",
        ]),
        "--init FILE",
    );
    assert!(
        err.contains("config.json") && err.contains("folder"),
        "{err}"
    );
}

#[test]
fn the_transformers_fixture_trains_on_nanogpt_token_files_in_order() {
    let dir = scratch("gpt2-bin");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_bin(
        &data.join("train.bin"),
        (0..2000u32).map(|i| (i * 7 % 101) as u16),
    );
    write_bin(
        &data.join("val.bin"),
        (0..400u32).map(|i| (i * 3 % 101) as u16),
    );
    let out = dir.join("out");
    let o = sinter(&[
        "train",
        "--model",
        "gpt2",
        "--init",
        &fixture("gpt2-tiny"),
        "--data",
        data.to_str().unwrap(),
        "--no-shuffle",
        "--batch",
        "2",
        "--steps",
        "2",
        "--quiet",
        "--save",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("vocabulary 101, context 16"),
        "{}",
        stderr(&o)
    );
    assert!(out.join("model.safetensors").is_file());
    assert!(
        !out.join("tokenizer.json").exists(),
        "token files come without a tokenizer"
    );
    let o = sinter(&["sample", out.to_str().unwrap(), "--chars", "5"]);
    let err = assert_refused(&o, "no tokenizer");
    assert!(
        err.contains("has no tokenizer.json") && err.contains("--tokenizer"),
        "{err}"
    );

    // Ids the model's vocabulary lacks, and a truncated token file.
    write_bin(&data.join("val.bin"), [5u16, 6, 200, 7].into_iter());
    let o = sinter(&[
        "train",
        "--model",
        "gpt2",
        "--init",
        &fixture("gpt2-tiny"),
        "--data",
        data.to_str().unwrap(),
        "--steps",
        "1",
        "--quiet",
    ]);
    let err = assert_refused(&o, "id 200");
    assert!(
        err.contains("val.bin") && err.contains("token 2 is id 200") && err.contains("101"),
        "{err}"
    );
    std::fs::write(data.join("val.bin"), [1u8, 0, 2]).unwrap();
    let o = sinter(&[
        "train",
        "--model",
        "gpt2",
        "--init",
        &fixture("gpt2-tiny"),
        "--data",
        data.to_str().unwrap(),
        "--steps",
        "1",
        "--quiet",
    ]);
    let err = assert_refused(&o, "odd");
    assert!(
        err.contains("val.bin") && err.contains("odd number"),
        "{err}"
    );
}

#[test]
fn a_tokenizer_json_tokenizes_the_text_and_travels_with_the_model() {
    let dir = scratch("gpt2-tok");
    let saved: PathBuf = dir.join("model");
    let o = train(&[
        "--tokenizer",
        &fixture("tokenizer/tokenizer.json"),
        "--steps",
        "2",
        "--save",
        saved.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("vocabulary 300"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(saved.join("tokenizer.json")).unwrap(),
        std::fs::read_to_string(fixture("tokenizer/tokenizer.json")).unwrap()
    );
    let o = sinter(&[
        "sample",
        saved.to_str().unwrap(),
        "--chars",
        "8",
        "--prompt",
        "The ",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("The "));

    // Size options that do not fit, and gpt2's options on other models.
    for (args, words) in [
        (&["--size", "7B"][..], "no GPT-2 size called \"7B\""),
        (
            &["--size", "tiny", "--width", "48"],
            "--width 48 conflicts with --size tiny",
        ),
        (
            &["--tokenizer", "/no/such/tokenizer.json"],
            "--tokenizer /no/such/tokenizer.json: does not exist",
        ),
    ] {
        let mut all = vec!["train", "--model", "gpt2", "--steps", "1", "--quiet"];
        all.extend_from_slice(args);
        let err = assert_refused(&sinter(&all), words);
        assert!(err.contains(words), "{err}");
    }
    let err = assert_refused(
        &sinter(&[
            "train",
            "--model",
            "char-transformer",
            "--size",
            "124M",
            "--steps",
            "1",
        ]),
        "--size on char-transformer",
    );
    assert!(err.contains("--size is for --model gpt2"), "{err}");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"model\": {}}").unwrap();
    let err = assert_refused(
        &train(&["--tokenizer", bad.to_str().unwrap(), "--steps", "1"]),
        "bad tokenizer",
    );
    assert!(
        err.contains("bad.json") && err.contains("tokenizer.json"),
        "{err}"
    );
}

#[test]
fn a_gpt2_run_resumed_halfway_equals_the_run_in_one_go_in_either_window_order() {
    // With dropout, so that the masks' generator must resume where it stood too.
    let dir = scratch("gpt2-resume");
    for order in [&[][..], &["--no-shuffle"][..]] {
        let tag = if order.is_empty() {
            "random"
        } else {
            "ordered"
        };
        let whole = dir.join(format!("{tag}-whole"));
        let half = dir.join(format!("{tag}-half.ckpt"));
        let resumed = dir.join(format!("{tag}-resumed"));
        let c = [&["--schedule", "constant", "--dropout", "0.2"][..], order].concat();
        let o = train(&[&c[..], &["--steps", "4", "--save", whole.to_str().unwrap()]].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        let o = train(
            &[
                &c[..],
                &["--steps", "2", "--checkpoint", half.to_str().unwrap()],
            ]
            .concat(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let o = train(
            &[
                &c[..],
                &[
                    "--steps",
                    "4",
                    "--new-schedule",
                    "--resume",
                    half.to_str().unwrap(),
                    "--save",
                    resumed.to_str().unwrap(),
                ],
            ]
            .concat(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let weights = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
        assert!(
            weights(&whole) == weights(&resumed),
            "{tag}: the resumed run's parameters differ"
        );
        // Another model size is refused by name.
        let o = sinter(&[
            "train",
            "--model",
            "gpt2",
            "--layers",
            "2",
            "--heads",
            "2",
            "--width",
            "32",
            "--context",
            "16",
            "--batch",
            "4",
            "--quiet",
            "--steps",
            "4",
            "--resume",
            half.to_str().unwrap(),
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains("--layers 1 when saved, --layers 2 now"),
            "{err}"
        );
        // So is another dropout.
        let o = train(&[
            "--schedule",
            "constant",
            "--steps",
            "4",
            "--resume",
            half.to_str().unwrap(),
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains("--dropout 0.2 when saved, --dropout 0 now"),
            "{err}"
        );
    }
}

#[test]
fn dropout_is_a_gpt2_option_in_zero_to_one() {
    let err = assert_refused(
        &sinter(&[
            "train",
            "--model",
            "cnn",
            "--dropout",
            "0.1",
            "--steps",
            "1",
        ]),
        "--dropout on the CNN",
    );
    assert!(
        err.contains("--dropout 0.1 is for --model gpt2") && err.contains("--model cnn"),
        "{err}"
    );
    for bad in ["1", "-0.1", "half"] {
        let o = train(&["--steps", "1", "--dropout", bad]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "--dropout {bad}: {err}");
        assert!(err.contains("--dropout") && err.contains("[0, 1)"), "{err}");
    }
}
