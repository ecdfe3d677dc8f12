//! What `sinter train` writes besides its result: plots, the metrics log, output paths checked
//! before step 1, and a stdout or stderr that stays clean.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;

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
    // Titles, axis names, the legend's entries and tick labels (the steps 0 … 130).
    let texts: Vec<&str> = text
        .split("<text")
        .skip(1)
        .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim()))
        .collect();
    for want in [
        "cross-entropy loss",
        "step",
        "loss (nats)",
        "train",
        "test",
        "accuracy (%)",
        "0",
        "100",
    ] {
        assert!(
            texts.contains(&want),
            "{want:?} not among the SVG's texts {texts:?}"
        );
    }
    assert!(
        std::fs::read(&png).unwrap().starts_with(b"\x89PNG"),
        "not a PNG"
    );
    // The PNG has its text too: the title band above the left chart holds dark glyph pixels
    // (before the font was built in, it held none).
    let decoder = png::Decoder::new(std::fs::File::open(&png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).unwrap();
    let channels = frame.line_size / frame.width as usize;
    let dark = (10..35)
        .flat_map(|y| (150..350).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let at = y * frame.line_size + x * channels;
            buf[at..at + 3].iter().all(|&c| c < 100)
        })
        .count();
    assert!(dark > 100, "{dark} dark pixels where the title should be");
    let o = sinter(&[
        "train", "--model", "mlp", "--steps", "1", "--quiet", "--plot", "run.pdf",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains(".svg or .png"), "{}", stderr(&o));
}

/// Item 1: every output path is checked before step 1, for image and text models, with an
/// error naming the option and the path, and nothing is written.
#[test]
fn output_paths_are_checked_before_the_first_step() {
    let dir = scratch("outputs");
    let missing = dir.join("no/such/dir/x.safetensors");
    let missing_ckpt = dir.join("no/such/dir/x.ckpt");
    let existing_dir = dir.join("a-folder");
    std::fs::create_dir_all(&existing_dir).unwrap();
    let pdf = dir.join("run.pdf");
    let noext = dir.join("noext");
    let txt_log = dir.join("run.txt");
    // A folder not even root may write into (sysfs); and one made read-only, which binds
    // users other than root.
    let mut read_only = vec![PathBuf::from("/sys/x.safetensors")];
    let ro = dir.join("read-only");
    std::fs::create_dir_all(&ro).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(ro.join("probe"), b"").is_err() {
            read_only.push(ro.join("x.safetensors"));
        }
    }
    let mut cases: Vec<(&str, PathBuf, &str)> = vec![
        ("--save", missing.clone(), "does not exist"),
        ("--save", existing_dir.clone(), "is a folder"),
        ("--plot", pdf.clone(), "must end in .svg or .png"),
        ("--plot", noext.clone(), "must end in .svg or .png"),
        ("--plot", dir.join("no/such/run.svg"), "does not exist"),
        ("--log", txt_log.clone(), "must end in .jsonl or .csv"),
        ("--log", dir.join("no/such/run.jsonl"), "does not exist"),
    ];
    for p in &read_only {
        cases.push(("--save", p.clone(), "cannot write into the folder"));
    }
    for model in ["mlp", "cnn", "char-rnn", "char-transformer"] {
        let mut cases = cases.clone();
        cases.push(("--checkpoint", missing_ckpt.clone(), "does not exist"));
        for p in &read_only {
            cases.push(("--checkpoint", p.with_extension("ckpt"), "cannot write"));
        }
        for (option, path, problem) in &cases {
            let p = path.to_str().unwrap();
            let o = sinter(&[
                "train", "--model", model, "--steps", "20", "--quiet", option, p,
            ]);
            let what = format!("{model} {option} {p}");
            let err = assert_refused(&o, &what);
            assert!(
                err.contains(&format!("{option} {p}")) && err.contains(problem),
                "{what}: {err}"
            );
            assert!(!path.is_file(), "{what}: a file was written");
        }
    }
    // Two options writing one file.
    let same = dir.join("same.svg");
    let o = sinter(&[
        "train",
        "--model",
        "mlp",
        "--steps",
        "2",
        "--plot",
        same.to_str().unwrap(),
        "--save",
        same.to_str().unwrap(),
    ]);
    let err = assert_refused(&o, "same file");
    assert!(err.contains("both write"), "{err}");
}

/// Items 13 and 17: --log writes one record per step and per evaluation, and the final
/// evaluation runs once (one evaluation record for the last step, not two).
#[test]
fn the_metrics_log_has_a_record_per_step_and_evaluation() {
    let dir = scratch("metrics");
    for (model, log) in [
        ("mlp", "img.jsonl"),
        ("char-gru", "lm.jsonl"),
        ("mlp", "img.csv"),
    ] {
        let path = dir.join(log);
        let mut args = vec![
            "train",
            "--model",
            model,
            "--steps",
            "12",
            "--batch",
            "16",
            "--quiet",
            "--log",
            path.to_str().unwrap(),
        ];
        if model != "mlp" {
            args.extend_from_slice(&["--width", "16", "--context", "8"]);
        }
        let o = sinter(&args);
        assert!(o.status.success(), "{model}: {}", stderr(&o));
        let text = std::fs::read_to_string(&path).unwrap();
        let rows: Vec<(String, u64, Option<f64>)> = if log.ends_with(".csv") {
            let mut lines = text.lines();
            let header: Vec<&str> = lines.next().unwrap().split(',').collect();
            assert_eq!(header[..4], ["kind", "step", "epoch", "loss"], "{text}");
            let acc = header.iter().position(|h| *h == "accuracy").unwrap();
            lines
                .map(|l| {
                    let f: Vec<&str> = l.split(',').collect();
                    (f[0].to_string(), f[1].parse().unwrap(), f[acc].parse().ok())
                })
                .collect()
        } else {
            text.lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    for key in ["loss", "lr", "seconds"] {
                        if v["kind"] == "train" || key != "lr" {
                            assert!(v[key].is_number(), "{model}: {key} in {l}");
                        }
                    }
                    let metric = if model == "mlp" {
                        "accuracy"
                    } else {
                        "nats_per_char"
                    };
                    assert!(v[metric].is_number(), "{model}: {metric} in {l}");
                    (
                        v["kind"].as_str().unwrap().to_string(),
                        v["step"].as_u64().unwrap(),
                        v["accuracy"].as_f64(),
                    )
                })
                .collect()
        };
        let train: Vec<u64> = rows
            .iter()
            .filter(|r| r.0 == "train")
            .map(|r| r.1)
            .collect();
        assert_eq!(train, (1..=12).collect::<Vec<u64>>(), "{model}: {text}");
        let evals_at_end = rows.iter().filter(|r| r.0 == "eval" && r.1 == 12).count();
        assert_eq!(evals_at_end, 1, "{model}: {text}");
        if model == "mlp" {
            assert!(
                rows.iter()
                    .all(|r| r.2.is_some_and(|a| (0.0..=1.0).contains(&a))),
                "{text}"
            );
        }
    }
}

/// Item 6: a reader that closes the pipe early ends sinter quietly: no panic, no backtrace.
#[test]
fn a_closed_stdout_ends_the_run_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args(["train", "--model", "mlp", "--steps", "3", "--quiet"])
        .env("SINTER_DEVICE", "cpu")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the run prints its result (`| true`).
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    assert!(
        o.status.success() || o.status.signal() == Some(13),
        "{:?}: {err}",
        o.status
    );
}

/// Item 9: listing adapters prints nothing to stderr unless the user asks for GL (on a
/// headless machine Mesa's device-select layer and EGL printed `XDG_RUNTIME_DIR` errors).
#[test]
fn stderr_stays_clean_when_adapters_are_listed() {
    let quiet = [
        "XDG_RUNTIME_DIR",
        "NODEVICE_SELECT",
        "WAYLAND_DISPLAY",
        "SINTER_DEVICE",
        "WGPU_BACKEND",
    ];
    for args in [
        &["info"][..],
        &["train", "--model", "mlp", "--steps", "1", "--quiet"][..],
        &[
            "train", "--model", "mlp", "--steps", "1", "--quiet", "--device", "gpu",
        ][..],
    ] {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sinter"));
        c.args(args);
        for k in quiet {
            c.env_remove(k);
        }
        let o = c.output().unwrap();
        let err = stderr(&o);
        assert!(
            !err.contains("XDG_RUNTIME_DIR") && !err.contains("EGL") && !err.contains("ERROR"),
            "{args:?}: {err}"
        );
    }
}

/// Issue 14 item 5: Adam's β1, β2, ε and the cosine schedule's warm-up and floor are options,
/// refused with their range or where they do not apply, and recorded so a resume that changes
/// one names it.
#[test]
fn adam_betas_eps_warmup_and_min_lr_are_options() {
    let dir = scratch("adam_options");
    let ckpt = dir.join("run.ckpt");
    let c = ckpt.to_str().unwrap();
    let base = [
        "train", "--model", "mlp", "--steps", "4", "--batch", "16", "--quiet",
    ];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        sinter(&a)
    };
    for (extra, says) in [
        (&["--beta1", "1"][..], "[0, 1)"),
        (&["--beta2", "-0.5"][..], "[0, 1)"),
        (&["--eps", "0"][..], "greater than 0"),
        (&["--eps", "1e-60"][..], "f32"),
        (
            &["--optimizer", "sgd", "--beta1", "0.8"][..],
            "--beta1 applies to --optimizer adam",
        ),
        (
            &["--schedule", "step", "--warmup", "2"][..],
            "--warmup applies to --schedule cosine",
        ),
        (
            &["--warmup", "5"][..],
            "--warmup 5 is longer than the run (4 steps)",
        ),
        (
            &["--lr", "1e-3", "--min-lr", "0.01"][..],
            "--min-lr 0.01 is above",
        ),
    ] {
        let err = assert_refused(&with(extra), &format!("{extra:?}"));
        assert!(err.contains(says), "{extra:?}: {err}");
    }
    let run = &[
        "--beta1",
        "0.8",
        "--beta2",
        "0.99",
        "--eps",
        "1e-6",
        "--warmup",
        "2",
        "--min-lr",
        "1e-4",
        "--checkpoint",
        c,
    ];
    let o = with(run);
    assert!(o.status.success(), "{}", stderr(&o));
    // Resuming with another β2 is refused, naming it as the user typed it.
    let o = with(&["--beta2", "0.999", "--resume", c]);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("--beta2 0.99"), "{err}");
    // The same settings resume.
    let mut same = run.to_vec();
    same.extend_from_slice(&["--resume", c]);
    let o = with(&same);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Issue 14 item 5: `--accumulate N` splits each step's batch into N micro-batches; a batch
/// that does not split is refused before anything loads, naming both options, and a
/// checkpoint resumes under another split (the update is the same).
#[test]
fn accumulate_splits_the_batch_into_micro_batches() {
    let dir = scratch("accumulate");
    let ckpt = dir.join("run.ckpt");
    let c = ckpt.to_str().unwrap();
    for model in ["mlp", "char-transformer", "gpt2"] {
        let o = sinter(&[
            "train",
            "--model",
            model,
            "--steps",
            "2",
            "--batch",
            "10",
            "--accumulate",
            "4",
        ]);
        let err = assert_refused(&o, model);
        assert!(
            err.contains("--batch 10")
                && err.contains("--accumulate 4")
                && err.contains("multiple of 4"),
            "{model}: {err}"
        );
    }
    let o = sinter(&["train", "--model", "mlp", "--accumulate", "0"]);
    assert_refused(&o, "--accumulate 0");
    // A checkpoint written with 2 micro-batches continues with 4 (and a longer run).
    let o = sinter(&[
        "train",
        "--model",
        "mlp",
        "--steps",
        "2",
        "--batch",
        "16",
        "--accumulate",
        "2",
        "--checkpoint",
        c,
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("2 micro-batches of 8 accumulated"), "{err}");
    let o = sinter(&[
        "train",
        "--model",
        "mlp",
        "--steps",
        "4",
        "--batch",
        "16",
        "--accumulate",
        "4",
        "--resume",
        c,
        "--new-schedule",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        err.contains("at step 2") && err.contains("step     4") && out.contains("after 2 steps"),
        "{err}\n{out}"
    );
    let o = sinter(&[
        "train",
        "--model",
        "char-transformer",
        "--steps",
        "2",
        "--batch",
        "8",
        "--accumulate",
        "2",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Issue 14 item 5: `--eval-every N` evaluates every N steps, and `--save-best PATH` keeps the
/// model of the lowest evaluation loss: `sinter eval` of that file gives that evaluation's loss
/// and accuracy, not the last one's (this SGD run at lr 2 is at its best at step 4 of 8).
#[test]
fn eval_every_and_save_best_keep_the_best_evaluation() {
    let dir = scratch("save_best");
    let best = dir.join("best.safetensors");
    let log = dir.join("run.jsonl");
    let o = sinter(&[
        "train",
        "--model",
        "mlp",
        "--optimizer",
        "sgd",
        "--lr",
        "2",
        "--steps",
        "8",
        "--eval-every",
        "1",
        "--quiet",
        "--save-best",
        best.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let evals: Vec<(u64, f64, f64)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "eval")
        .map(|r| {
            let f = |k: &str| r[k].as_f64().unwrap();
            (r["step"].as_u64().unwrap(), f("loss"), f("accuracy"))
        })
        .collect();
    assert_eq!(
        evals.iter().map(|e| e.0).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    let (at, loss, accuracy) = *evals.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    assert!(
        at < 8,
        "the run should be past its best by the end: {evals:?}"
    );
    let o = sinter(&["eval", best.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    let want = format!(
        "test loss {loss:.4} · test accuracy {:.2}%",
        accuracy * 100.0
    );
    assert!(out.contains(&want), "want {want:?} (step {at}), got {out}");
    // The same path for both outputs, or a GPT-2 folder that is a file, is refused up front.
    let b = best.to_str().unwrap();
    let o = sinter(&["train", "--model", "mlp", "--save", b, "--save-best", b]);
    let err = assert_refused(&o, "--save and --save-best on one path");
    assert!(err.contains("--save-best another path"), "{err}");
    let o = sinter(&[
        "train",
        "--model",
        "gpt2",
        "--size",
        "tiny",
        "--save-best",
        b,
    ]);
    let err = assert_refused(&o, "--save-best on a file for gpt2");
    assert!(
        err.contains("--save-best") && err.contains("is a file"),
        "{err}"
    );
}
