//! `sinter train` checkpoints as a user meets them: Ctrl-C and SIGKILL leave a checkpoint that
//! resumes, a lost device keeps the last one, and resuming with other settings names them.

mod common;

use common::*;
use std::process::Command;

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
    // Fixed delays, then kills the moment a save's temporary file appears (mid-save for sure).
    let delays = [
        Some(40u64),
        Some(90),
        Some(150),
        Some(230),
        Some(310),
        None,
        None,
    ];
    let mut killed_mid_save = 0;
    for (round, delay_ms) in delays.into_iter().enumerate() {
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
                // The resumed run trains to another step count: a constant rate keeps the
                // optimizer settings identical, as resuming requires.
                "--schedule",
                "constant",
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
        let names = || -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        match delay_ms {
            Some(ms) => std::thread::sleep(std::time::Duration::from_millis(ms)),
            None => {
                while !names().iter().any(|n| n.ends_with(".tmp")) {
                    assert!(started.elapsed().as_secs() < 120, "no save seen");
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Listed before loading, which removes the temp files of dead runs.
        let leftovers = names();
        killed_mid_save += usize::from(leftovers.iter().any(|n| n.ends_with(".tmp")));
        let loaded = sinter::sinter_model::checkpoint::TrainingCheckpoint::load(&ckpt);
        assert!(
            loaded.is_ok(),
            "round {round}: checkpoint unreadable after SIGKILL: {:?}",
            loaded.err()
        );
        let step = loaded.unwrap().step;
        eprintln!(
            "round {round}: killed after {delay_ms:?} ms, checkpoint at step {step}, files {leftovers:?}"
        );
        // The run goes on from that checkpoint, and loading it clears what the kill left behind.
        let o = sinter(&[
            "train",
            "--model",
            "mlp",
            "--steps",
            &(step + 1).to_string(),
            "--quiet",
            "--schedule",
            "constant",
            "--resume",
            ckpt.to_str().unwrap(),
        ]);
        let resumed = stderr(&o);
        assert!(o.status.success(), "round {round}: {resumed}");
        assert!(
            resumed.contains(&format!("resumed from {} at step {step}", ckpt.display())),
            "round {round}: {resumed}"
        );
        assert_eq!(names(), ["run.ckpt"], "round {round}: temp files left");
    }
    // The rounds that wait for a temp file can only stop a run with one on disk.
    assert!(
        killed_mid_save >= 2,
        "{killed_mid_save} kills landed mid-save"
    );
}

/// A device lost in the middle of training (the test hook destroys it after N submits: during a
/// step or while a checkpoint is read back) stops the run with the resume hint, and the last
/// checkpoint resumes on the CPU backend.
#[test]
fn a_lost_device_keeps_the_last_checkpoint_and_says_how_to_resume() {
    if sinter::sinter_device::testing::test_gpu().is_none() {
        return;
    }
    let dir = scratch("device_lost");
    let ckpt = dir.join("run.ckpt");
    // The hook counts every submit since the device opened, so the runs below must submit only
    // their steps and checkpoints: the canary's verdict cached beforehand in a folder of their
    // own, and no tuning (whose trials are submits too, and which another test's cache state
    // would otherwise decide).
    let cache = dir.join("cache");
    let warm = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args([
            "train",
            "--model",
            "mlp",
            "--steps",
            "1",
            "--quiet",
            "--no-tune",
        ])
        .args(["--device", "software"])
        .env("SINTER_CACHE_DIR", &cache)
        .output()
        .unwrap();
    assert!(warm.status.success(), "{}", stderr(&warm));
    for lose_after in ["2", "30", "60"] {
        let _ = std::fs::remove_file(&ckpt);
        let o = Command::new(env!("CARGO_BIN_EXE_sinter"))
            .args([
                "train",
                "--model",
                "mlp",
                "--steps",
                "200",
                "--quiet",
                "--checkpoint-every",
                "4",
                "--schedule",
                "constant",
                "--device",
                "software",
            ])
            .arg("--checkpoint")
            .arg(&ckpt)
            .env("SINTER_CACHE_DIR", &cache)
            .env("SINTER_NO_TUNE", "1")
            .env(sinter::sinter_device::gpu::LOSE_DEVICE_ENV, lose_after)
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "after {lose_after}: {err}");
        assert!(err.contains("device was lost"), "after {lose_after}: {err}");
        if lose_after == "2" {
            // Lost before the first checkpoint: nothing to resume from, and no claim that there is.
            assert!(!ckpt.exists() && !err.contains("is intact"), "{err}");
            continue;
        }
        let hint = format!(
            "the last checkpoint in {} is intact: continue with `sinter train --resume {} --device cpu`",
            ckpt.display(),
            ckpt.display()
        );
        assert!(err.contains(&hint), "after {lose_after}: {err}");
        let saved = sinter::sinter_model::checkpoint::TrainingCheckpoint::load(&ckpt).unwrap();
        assert!(
            saved.step >= 4 && saved.step % 4 == 0,
            "step {}",
            saved.step
        );
        let o = sinter(&[
            "train",
            "--model",
            "mlp",
            "--steps",
            &(saved.step + 2).to_string(),
            "--quiet",
            "--schedule",
            "constant",
            "--resume",
            ckpt.to_str().unwrap(),
        ]);
        let resumed = stderr(&o);
        assert!(o.status.success(), "{resumed}");
        assert!(
            resumed.contains(&format!("at step {}", saved.step)),
            "{resumed}"
        );
    }
}

/// Item 4: extending a finished run names the setting that differs in flag terms and offers
/// --new-schedule; --batch, --lr and --clip-norm mismatches are named the same way.
#[test]
fn resuming_with_other_settings_names_them_and_offers_a_way_on() {
    let dir = scratch("extend");
    let ckpt = dir.join("run.ckpt");
    let c = ckpt.to_str().unwrap();
    let base = ["train", "--model", "mlp", "--quiet"];
    let run = |extra: &[&str]| {
        let mut a = base.to_vec();
        if !extra.contains(&"--batch") {
            a.extend(["--batch", "1000"]);
        }
        a.extend_from_slice(extra);
        sinter(&a)
    };
    let o = run(&["--epochs", "1", "--checkpoint", c]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--epochs", "2"],
            &[
                "--epochs 1 (8 steps) when saved, --epochs 2 (16 steps) now",
                "add --new-schedule",
            ],
        ),
        (
            &["--epochs", "1", "--batch", "500"],
            &["--batch 1000 when saved, --batch 500 now"],
        ),
        (
            &["--epochs", "1", "--lr", "0.01"],
            &["--lr 0.002 when saved, --lr 0.01 now"],
        ),
        (
            &["--epochs", "1", "--clip-norm", "1"],
            &["without --clip-norm when saved, --clip-norm 1 now"],
        ),
        (
            &["--epochs", "1", "--optimizer", "sgd"],
            &["--optimizer adam when saved, --optimizer sgd now"],
        ),
    ];
    for (extra, said) in cases {
        let mut a = extra.to_vec();
        a.extend(["--resume", c]);
        let o = run(&a);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {err}");
        for s in *said {
            assert!(err.contains(s), "{extra:?}: {s:?} not in {err}");
        }
        assert!(
            !err.contains("Optimizer {") && !err.contains("Cosine {"),
            "{err}"
        );
    }
    // --new-schedule does not cover the batch.
    let o = run(&[
        "--epochs",
        "2",
        "--batch",
        "500",
        "--resume",
        c,
        "--new-schedule",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = run(&["--epochs", "2", "--resume", c, "--new-schedule"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("--new-schedule: continuing from step 8"),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("after 8 steps"),
        "{err}"
    );
}

/// Issue 13 item 3: the same seed, backend and thread count give bit-identical parameter files
/// (the CPU backend reduces in a fixed order, the convolution weight gradient included).
#[test]
fn the_same_seed_saves_bit_identical_parameters() {
    let dir = scratch("reproducible");
    let run = |name: &str| {
        let path = dir.join(name);
        let p = path.to_str().unwrap();
        let o = sinter_env(
            &[
                "train", "--model", "cnn", "--steps", "6", "--batch", "16", "--seed", "1",
                "--quiet", "--save", p,
            ],
            &[("RAYON_NUM_THREADS", "2")],
            &[],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(&path).unwrap()
    };
    let (a, b) = (run("a.safetensors"), run("b.safetensors"));
    assert!(a.len() > 1000, "{} bytes", a.len());
    assert!(a == b, "two runs with --seed 1 saved different parameters");
}

/// `--shift N` translates the training images by a fresh random draw each step, a function of
/// the seed and the step alone: the same seed gives the same run, a run resumed halfway equals
/// the run in one go, the shift changes what is learned, a resume with another shift is refused
/// by name, and a text model refuses the option.
#[test]
fn image_shifts_are_reproducible_and_resume_exactly() {
    let dir = scratch("shift");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--model",
            "mlp",
            "--batch",
            "16",
            "--seed",
            "1",
            "--quiet",
            "--schedule",
            "constant",
        ];
        args.extend_from_slice(extra);
        sinter_env(&args, &[("RAYON_NUM_THREADS", "2")], &[])
    };
    let train = |extra: &[&str]| {
        let o = run(extra);
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
    };
    let (whole, again, plain) = (path("whole"), path("again"), path("plain"));
    train(&["--shift", "2", "--steps", "6", "--save", &whole]);
    train(&["--shift", "2", "--steps", "6", "--save", &again]);
    train(&["--steps", "6", "--save", &plain]);
    let read = |p: &str| std::fs::read(p).unwrap();
    assert!(
        read(&whole) == read(&again),
        "the same seed shifted differently"
    );
    assert!(read(&whole) != read(&plain), "--shift 2 changed nothing");

    let (half, resumed) = (path("half.ckpt"), path("resumed"));
    train(&["--shift", "2", "--steps", "3", "--checkpoint", &half]);
    train(&[
        "--shift",
        "2",
        "--steps",
        "6",
        "--new-schedule",
        "--resume",
        &half,
        "--save",
        &resumed,
    ]);
    assert!(read(&whole) == read(&resumed), "the resumed run differs");

    let o = run(&["--steps", "6", "--new-schedule", "--resume", &half]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--shift 2 when saved, --shift 0 now"), "{err}");
    let err = assert_refused(
        &sinter(&[
            "train", "--model", "char-rnn", "--shift", "1", "--steps", "1",
        ]),
        "--shift on a text model",
    );
    assert!(err.contains("--shift") && err.contains("char-rnn"), "{err}");
}
