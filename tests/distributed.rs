//! Data-parallel training over MPI, end to end: `mpirun -np 2 sinter train --distributed` keeps
//! the ranks identical and matches one process; mismatched ranks and a killed rank end the job.
#![cfg(feature = "mpi")]

use sinter::sinter_model::checkpoint::{load_safetensors, TrainingCheckpoint};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SINTER: &str = env!("CARGO_BIN_EXE_sinter");

/// No run here needs more than a minute; one that takes longer is hung.
const DEADLINE: Duration = Duration::from_secs(300);

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("distributed")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `cmd` in `dir`, failing the test (instead of hanging it) past [`DEADLINE`].
fn run(mut cmd: Command, dir: &Path) -> Output {
    cmd.current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("the command starts (is mpirun installed?)");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > DEADLINE {
            child.kill().ok();
            let o = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} hung for {DEADLINE:?}:\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("output")
}

/// `mpirun … -np 2` as CI runs it: as root, two ranks on a machine that may have fewer cores.
fn mpirun() -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe"]);
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Twenty steps of the default CNN, batch 64 (32 per rank), with `optimizer` options, saved to
/// `save`.
fn train_args(device: &str, optimizer: &[&str], save: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "train", "--device", device, "--steps", "20", "--batch", "64", "--seed", "3", "--quiet",
        "--save", save,
    ]
    .map(String::from)
    .to_vec();
    args.extend(optimizer.iter().map(|s| s.to_string()));
    args
}

/// The number in `ranks in sync: the largest parameter difference … is <X> (2 ranks)`.
fn rank_difference(stderr: &str) -> f32 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("ranks in sync:"))
        .unwrap_or_else(|| panic!("no 'ranks in sync' line in:\n{stderr}"));
    line.split(" is ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the difference in '{line}'"))
}

fn max_param_difference(a: &Path, b: &Path) -> f32 {
    let (ta, _) = load_safetensors(a).unwrap();
    let (tb, _) = load_safetensors(b).unwrap();
    assert_eq!(ta.len(), tb.len());
    let mut worst = 0.0f32;
    for (x, y) in ta.iter().zip(&tb) {
        assert_eq!((&x.name, &x.shape), (&y.name, &y.shape));
        for (p, q) in x.data.iter().zip(&y.data) {
            worst = worst.max((p - q).abs());
        }
    }
    worst
}

/// Two ranks against one process with the same global batch and seed, on `device`, with the
/// default optimizer (Adam) and with SGD; prints the largest differences found.
fn two_ranks_match_one_process(device: &str) {
    // Both ranks apply the same summed gradients (a + b = b + a exactly) to the same parameters
    // with the same deterministic kernels, so they must not differ in a single bit. Against one
    // process the gradients are summed in another order (two half-batch means, averaged, instead
    // of one mean), a few ulps per step:
    // - SGD's update is linear in the gradient, so the parameters differ by about lr·Σ|Δg|
    //   (measured ~1e-8); 1e-6 allows for that and nothing more.
    // - Adam divides by √v: on weights whose gradients are near zero, ulp-sized differences
    //   become differences of up to ~lr per step (measured ~1e-3 on lavapipe, ~4e-6 on the CPU
    //   backend). 20 steps of lr ≤ 2e-3 can move a weight by 0.04 at most; we require 10× less.
    let cases: [(&str, &[&str], f32); 2] = [
        ("adam", &[], 4e-3),
        ("sgd", &["--optimizer", "sgd", "--lr", "0.05"], 1e-6),
    ];
    let dir = scratch(device);
    for (name, optimizer, tolerance) in cases {
        let two_file = format!("two-{name}.safetensors");
        let one_file = format!("one-{name}.safetensors");
        let mut two = mpirun();
        two.args(["-np", "2", SINTER])
            .args(train_args(device, optimizer, &two_file))
            .arg("--distributed");
        let o2 = run(two, &dir);
        assert!(o2.status.success(), "two ranks failed:\n{}", stderr(&o2));
        let mut one = Command::new(SINTER);
        one.args(train_args(device, optimizer, &one_file));
        let o1 = run(one, &dir);
        assert!(o1.status.success(), "one process failed:\n{}", stderr(&o1));

        let between_ranks = rank_difference(&stderr(&o2));
        let vs_one = max_param_difference(&dir.join(&two_file), &dir.join(&one_file));
        eprintln!(
            "{device}, {name}: largest parameter difference between ranks {between_ranks:e}, two ranks vs one process {vs_one:e}"
        );
        assert_eq!(between_ranks, 0.0, "{device}, {name}: ranks drifted apart");
        assert!(
            vs_one <= tolerance,
            "{device}, {name}: two ranks differ from one process by {vs_one} > {tolerance}"
        );
        assert!(String::from_utf8_lossy(&o2.stdout).contains("test accuracy"));
    }
}

#[test]
fn two_cpu_ranks_stay_identical_and_match_one_process() {
    two_ranks_match_one_process("cpu");
}

#[test]
fn two_software_adapter_ranks_stay_identical_and_match_one_process() {
    // CI sets SINTER_REQUIRE_ADAPTER and installs lavapipe: without an adapter this fails.
    two_ranks_match_one_process("software");
}

#[test]
fn ranks_started_with_different_hyperparameters_stop_with_an_error() {
    let dir = scratch("mismatch");
    let mut c = mpirun();
    // MPMD launch: rank 0 and rank 1 get different learning rates.
    c.args([
        "-np",
        "1",
        SINTER,
        "train",
        "--distributed",
        "--device",
        "cpu",
    ])
    .args(["--steps", "5", "--quiet", "--lr", "0.002", ":"])
    .args([
        "-np",
        "1",
        SINTER,
        "train",
        "--distributed",
        "--device",
        "cpu",
    ])
    .args(["--steps", "5", "--quiet", "--lr", "0.001"]);
    let o = run(c, &dir);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("different optimizer") && e.contains("rank(s) 1 differ from rank 0"),
        "{e}"
    );
}

#[test]
fn a_global_batch_that_does_not_split_over_the_ranks_stops_with_an_error() {
    let dir = scratch("batch");
    let mut c = mpirun();
    c.args([
        "-np",
        "2",
        SINTER,
        "train",
        "--distributed",
        "--device",
        "cpu",
    ])
    .args(["--steps", "5", "--quiet", "--batch", "33"]);
    let o = run(c, &dir);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("--batch 33 does not split evenly over 2 ranks"),
        "{e}"
    );
}

#[test]
fn a_killed_rank_ends_the_job_and_keeps_the_last_checkpoint() {
    let dir = scratch("killed");
    // Rank 1 is killed (SIGKILL) once rank 0 has written a checkpoint; `exec` keeps the shell's
    // process id, so `kill -9 $$` kills that rank's sinter.
    let script = format!(
        r#"if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then (while [ ! -s run.ckpt ]; do sleep 0.1; done; kill -9 $$) & fi
exec {SINTER} train --distributed --device cpu --steps 100000 --schedule constant --quiet --checkpoint run.ckpt --checkpoint-every 5"#
    );
    let mut c = mpirun();
    c.args(["-np", "2", "sh", "-c", &script]);
    let o = run(c, &dir);
    assert!(!o.status.success(), "the job went on without rank 1");
    let e = stderr(&o);
    assert!(
        e.contains("rank 1") && e.contains("signal 9"),
        "the user is not told which rank died:\n{e}"
    );
    let ckpt = TrainingCheckpoint::load(dir.join("run.ckpt")).expect("the last checkpoint loads");
    assert!(ckpt.step >= 5 && ckpt.step % 5 == 0, "step {}", ckpt.step);

    // Every rank resumes from that checkpoint (a constant learning rate, so that a shorter run
    // has the same optimizer settings).
    let mut c = mpirun();
    c.args([
        "-np",
        "2",
        SINTER,
        "train",
        "--distributed",
        "--device",
        "cpu",
        "--quiet",
    ])
    .args(["--schedule", "constant", "--resume", "run.ckpt", "--steps"])
    .arg((ckpt.step + 5).to_string());
    let o = run(c, &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("resumed from run.ckpt at step {}", ckpt.step)),
        "{e}"
    );
    assert_eq!(rank_difference(&e), 0.0);
}

#[test]
fn ctrl_c_on_the_ranks_stops_them_together_and_only_rank_0_reports() {
    let dir = scratch("interrupted");
    // Each rank sends itself SIGINT once the first periodic checkpoint exists (`exec` keeps the
    // shell's process id, so `$$` is that rank's sinter).
    let script = format!(
        r#"(while [ ! -s run.ckpt ]; do sleep 0.1; done; kill -INT $$) &
exec {SINTER} train --distributed --device cpu --steps 100000 --schedule constant --quiet --checkpoint run.ckpt --checkpoint-every 5"#
    );
    let mut c = mpirun();
    c.args(["-np", "2", "sh", "-c", &script]);
    let o = run(c, &dir);
    assert!(!o.status.success(), "an interrupted job reports failure");
    let e = stderr(&o);
    assert_eq!(
        e.matches("interrupted at step").count(),
        1,
        "rank 0 alone reports the interruption:\n{e}"
    );
    assert!(e.contains("continue with --resume run.ckpt"), "{e}");
    let ckpt = TrainingCheckpoint::load(dir.join("run.ckpt")).expect("the checkpoint loads");
    assert!(
        e.contains(&format!("interrupted at step {}", ckpt.step)),
        "the saved step is the reported one:\n{e}"
    );
}

/// GPT-2 data parallel: a tiny GPT-2 with dropout on the shipped text, two CPU ranks of two
/// windows each against one process of four. Each rank draws the masks of the whole global
/// batch and keeps its rows, so the two runs drop the same units; SGD keeps the parameters
/// within 1e-6 (the gradient sums differ in order only, as for the CNN above).
#[test]
fn two_cpu_ranks_train_gpt2_with_dropout_like_one_process() {
    let dir = scratch("gpt2");
    let args = |save: &str| {
        [
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
            "--steps",
            "6",
            "--optimizer",
            "sgd",
            "--lr",
            "0.05",
            "--dropout",
            "0.2",
            "--seed",
            "3",
            "--device",
            "cpu",
            "--quiet",
            "--save",
            save,
        ]
        .map(String::from)
        .to_vec()
    };
    let mut two = mpirun();
    two.args(["-np", "2", SINTER])
        .args(args("two"))
        .arg("--distributed");
    let o2 = run(two, &dir);
    assert!(o2.status.success(), "two ranks failed:\n{}", stderr(&o2));
    let mut one = Command::new(SINTER);
    one.args(args("one"));
    let o1 = run(one, &dir);
    assert!(o1.status.success(), "one process failed:\n{}", stderr(&o1));
    assert_eq!(rank_difference(&stderr(&o2)), 0.0, "ranks drifted apart");
    let weights = |d: &str| dir.join(d).join("model.safetensors");
    let vs_one = max_param_difference(&weights("two"), &weights("one"));
    eprintln!("gpt2, sgd, dropout 0.2: two ranks vs one process {vs_one:e}");
    assert!(
        vs_one <= 1e-6,
        "two ranks differ from one process by {vs_one}"
    );
}
