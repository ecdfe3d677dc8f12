//! The character models on the command line: sampling, --init, and the options every model
//! shares (checkpoints, exact resume, Ctrl-C, plots, the NaN policy) as text models take them.

mod common;

use common::*;
use std::process::{Command, Output};

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

/// Model files that crashed `sinter sample` (a division by zero, an index out of bounds, and
/// allocations sized by a number in the metadata that got the process killed), kept as
/// regression cases in tests/corpus/sample/.
#[test]
fn sample_refuses_the_corpus_of_crashing_model_files() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/sample");
    let expected = [
        ("empty-vocab.safetensors", "not a non-empty sorted set"),
        ("rank1-head.safetensors", "head.weight has shape [4]"),
        (
            "huge-context.safetensors",
            "context 1000000000000 in the metadata is over the 65536",
        ),
        (
            "huge-context-transformer.safetensors",
            "pos.weight has shape [8, 4] but the metadata gives context 1000000000000",
        ),
    ];
    let mut files: Vec<String> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut named: Vec<String> = expected.iter().map(|e| e.0.to_string()).collect();
    named.sort();
    assert_eq!(files, named, "every corpus file has an expected message");
    for (name, message) in expected {
        let path = corpus.join(name);
        let o = sinter(&["sample", path.to_str().unwrap(), "--chars", "5"]);
        let err = stderr(&o);
        // 1 is a refusal; a panic exits with 101 and a kill by signal has no code.
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(path.to_str().unwrap()) && err.contains(message),
            "{name}: {err}"
        );
    }
}

/// Item 2, in part: the character models take --init, and refuse image-only options by name.
#[test]
fn character_models_take_init_and_refuse_what_they_do_not_support() {
    let dir = scratch("text_options");
    let params = dir.join("lm.safetensors");
    let p = params.to_str().unwrap();
    let small = [
        "--model",
        "char-gru",
        "--steps",
        "2",
        "--width",
        "16",
        "--context",
        "8",
        "--batch",
        "4",
        "--quiet",
    ];
    let mut a = vec!["train"];
    a.extend_from_slice(&small);
    a.extend(["--save", p]);
    let o = sinter(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut a = vec!["train"];
    a.extend_from_slice(&small);
    a.extend(["--init", p]);
    let o = sinter(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    // A model of another width is refused, naming the file.
    let o = sinter(&[
        "train",
        "--model",
        "char-gru",
        "--steps",
        "1",
        "--width",
        "24",
        "--context",
        "8",
        "--quiet",
        "--init",
        p,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("lm.safetensors"), "{}", stderr(&o));
    // A file of another model names the tensors that do not fit.
    let o = sinter(&[
        "train",
        "--model",
        "char-rnn",
        "--steps",
        "1",
        "--width",
        "16",
        "--context",
        "8",
        "--quiet",
        "--init",
        p,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("lm.safetensors") && err.contains("missing rnn.h.input.weight"),
        "{err}"
    );
    // What has no meaning for a model that draws random windows is refused by name, with why.
    for (option, why) in [
        (&["--epochs", "1"][..], "give the length with --steps"),
        (&["--no-shuffle"], "no file order to keep"),
    ] {
        let mut a = vec!["train", "--model", "char-rnn", "--steps", "5"];
        a.extend_from_slice(option);
        let o = sinter(&a);
        let err = assert_refused(&o, option[0]);
        assert!(
            err.contains(&format!(
                "{} is not supported for --model char-rnn: they draw random windows",
                option[0]
            )) && err.contains(why),
            "{err}"
        );
    }
}

/// Tiny text runs: `model` of width 16 on windows of 8 characters, 4 per step, on the CPU;
/// `extra` may set any of these sizes.
fn tiny(model: &str, extra: &[&str]) -> Output {
    let mut a = vec!["train", "--model", model, "--quiet"];
    for (flag, value) in [
        ("--width", "16"),
        ("--heads", "2"),
        ("--layers", "1"),
        ("--context", "8"),
        ("--batch", "4"),
    ] {
        if !extra.contains(&flag) {
            a.extend([flag, value]);
        }
    }
    a.extend_from_slice(extra);
    sinter(&a)
}

fn params(path: &std::path::Path) -> Vec<(String, Vec<u32>)> {
    let (tensors, _) = sinter::sinter_model::checkpoint::load_safetensors(path).unwrap();
    let mut v: Vec<(String, Vec<u32>)> = tensors
        .into_iter()
        .map(|t| (t.name, t.data.iter().map(|x| x.to_bits()).collect()))
        .collect();
    v.sort();
    v
}

/// Item 2: four steps in one go and two steps, then two more resumed from the checkpoint, end
/// with bit-identical parameters (CPU backend): parameters, optimizer state, step and the
/// training windows' generator all travel in the checkpoint. The resumed run's checkpoint holds
/// the whole history for its plot.
#[test]
fn a_text_run_resumed_halfway_equals_the_run_in_one_go() {
    let dir = scratch("text_resume");
    for model in ["char-gru", "char-transformer"] {
        let whole = dir.join(format!("{model}-whole.safetensors"));
        let half = dir.join(format!("{model}-half.ckpt"));
        let resumed = dir.join(format!("{model}-resumed.safetensors"));
        let end = dir.join(format!("{model}-end.ckpt"));
        let plot = dir.join(format!("{model}.svg"));
        // A constant rate: the two-step run's schedule is the four-step run's.
        let c = ["--schedule", "constant"];
        let o = tiny(
            model,
            &[&c[..], &["--steps", "4", "--save", whole.to_str().unwrap()]].concat(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let o = tiny(
            model,
            &[
                &c[..],
                &["--steps", "2", "--checkpoint", half.to_str().unwrap()],
            ]
            .concat(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let o = tiny(
            model,
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
                    "--checkpoint",
                    end.to_str().unwrap(),
                    "--plot",
                    plot.to_str().unwrap(),
                ],
            ]
            .concat(),
        );
        let err = stderr(&o);
        assert!(o.status.success(), "{err}");
        assert!(err.contains("at step 2"), "{err}");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("after 2 steps"),
            "{err}"
        );
        let (a, b) = (params(&whole), params(&resumed));
        assert!(!a.is_empty());
        assert_eq!(a, b, "{model}: the resumed run's parameters differ");
        // The history of steps 1 and 2 came back with the checkpoint: the plot has all four.
        let ckpt = sinter::sinter_model::checkpoint::TrainingCheckpoint::load(&end).unwrap();
        let train = &ckpt.meta["plot history: train loss"];
        let steps: Vec<&str> = train
            .split(' ')
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(steps, ["1", "2", "3", "4"], "{train}");
        let svg = std::fs::read_to_string(&plot).unwrap();
        assert!(
            svg.contains("validation loss") && svg.contains("nats/char"),
            "{svg}"
        );
    }
}

/// Item 2: a checkpoint continues only the model and sizes it was written by; the refusal names
/// the settings in flag terms.
#[test]
fn a_text_checkpoint_is_refused_by_another_model_or_size() {
    let dir = scratch("text_other_model");
    let ckpt = dir.join("gru.ckpt");
    let c = ckpt.to_str().unwrap();
    let o = tiny("char-gru", &["--steps", "2", "--checkpoint", c]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "char-rnn",
            &[],
            "--model char-gru when saved, --model char-rnn now",
        ),
        (
            "char-gru",
            &["--width", "24"],
            "--width 16 when saved, --width 24 now",
        ),
        (
            "char-gru",
            &["--context", "6"],
            "--context 8 when saved, --context 6 now",
        ),
        (
            "char-gru",
            &["--seed", "3"],
            "--seed 0 when saved, --seed 3 now",
        ),
    ];
    for (model, extra, said) in cases {
        let o = tiny(model, &[extra, &["--steps", "2", "--resume", c]].concat());
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{model} {extra:?}: {err}");
        assert!(
            err.contains(said),
            "{model} {extra:?}: {said:?} not in {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // Across kinds: an image model does not take a text checkpoint, nor the reverse.
    let o = sinter(&[
        "train", "--model", "mlp", "--steps", "2", "--quiet", "--resume", c,
    ]);
    assert!(
        stderr(&o).contains("--model char-gru when saved, --model mlp now"),
        "{}",
        stderr(&o)
    );
    let img = dir.join("mlp.ckpt");
    let o = sinter(&[
        "train",
        "--model",
        "mlp",
        "--steps",
        "1",
        "--batch",
        "1000",
        "--quiet",
        "--checkpoint",
        img.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = tiny(
        "char-rnn",
        &["--steps", "1", "--resume", img.to_str().unwrap()],
    );
    assert!(
        stderr(&o).contains("--model mlp when saved, --model char-rnn now"),
        "{}",
        stderr(&o)
    );
}

/// Item 2: Ctrl-C stops a text run between steps with a checkpoint that resumes.
#[test]
fn ctrl_c_saves_a_text_checkpoint_that_resumes() {
    let dir = scratch("text_interrupt");
    let ckpt = dir.join("lm.ckpt");
    let child = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args([
            "train",
            "--model",
            "char-rnn",
            "--width",
            "16",
            "--context",
            "8",
            "--batch",
            "4",
            "--steps",
            "1000000",
            "--quiet",
            "--checkpoint-every",
            "5",
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
        std::thread::sleep(std::time::Duration::from_millis(20));
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
        "char-rnn",
        "--width",
        "16",
        "--context",
        "8",
        "--batch",
        "4",
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
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("after 2 steps"),
        "{resumed}"
    );
}

/// Item 2: a text run goes on through a non-finite loss with one warning, unless
/// --stop-on-nan stops it at the first.
#[test]
fn stop_on_nan_stops_a_text_run_at_the_first_infinite_loss() {
    // SGD at 1e38 overflows the validation at step 1 and the training loss at step 2.
    let diverge = ["--optimizer", "sgd", "--lr", "1e38", "--steps", "4"];
    let o = tiny("char-rnn", &diverge);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("warning:")).count(),
        2,
        "{err}"
    );
    assert!(err.contains("non-finite training loss"), "{err}");
    let o = tiny("char-rnn", &[&diverge[..], &["--stop-on-nan"]].concat());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: step ") && err.contains("the training loss is not finite"),
        "{err}"
    );
}

/// --profile and --plot as text models take them.
#[test]
fn text_runs_profile_and_plot() {
    let dir = scratch("text_profile");
    let png = dir.join("lm.png");
    let o = tiny(
        "char-transformer",
        &["--steps", "2", "--profile", "--plot", png.to_str().unwrap()],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.contains("validation loss") && out.contains("GFLOP/s"),
        "{out}"
    );
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
}
