//! The `sinter` command line and the devices: `info`'s adapters, choosing one by index or name,
//! a plan too large for the device refused before step 1, and `tune`'s choices as `info` lists them.

mod common;

use common::*;

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

/// Item 12: a step whose plan does not fit the memory the backend has is refused before
/// anything is allocated, in well under a second, naming both figures and the options to lower
/// (before, the out-of-memory killer ended the run after 48 s at 24 GB).
#[test]
fn a_plan_larger_than_memory_is_refused_before_allocating() {
    let started = std::time::Instant::now();
    // Terabytes of activations: larger than any machine's RAM.
    let o = sinter_env(
        &[
            "train",
            "--model",
            "char-transformer",
            "--batch",
            "100000",
            "--context",
            "100000",
            "--steps",
            "1",
        ],
        &[],
        &["SINTER_MEMORY_LIMIT"],
    );
    let err = assert_refused(&o, "huge transformer");
    assert!(
        err.contains("one step of batch 100000 needs")
            && err.contains("GiB of RAM available (MemAvailable)")
            && err.contains("lower --batch (now 100000) or --context (now 100000)"),
        "{err}"
    );
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    // With a limit set, for a recurrent model, an image model and an evaluation.
    let limited =
        |args: &[&str], limit: &str| sinter_env(args, &[("SINTER_MEMORY_LIMIT", limit)], &[]);
    let o = limited(
        &[
            "train",
            "--model",
            "char-lstm",
            "--batch",
            "100000",
            "--steps",
            "1",
        ],
        "2G",
    );
    let err = assert_refused(&o, "char-lstm");
    assert!(
        err.contains("SINTER_MEMORY_LIMIT allows 2G") && err.contains("--batch (now 100000)"),
        "{err}"
    );
    let o = limited(&["train", "--batch", "8000", "--steps", "1"], "100M");
    let err = assert_refused(&o, "cnn");
    assert!(
        err.contains("one step of batch 8000 needs") && err.contains("lower --batch (now 8000)"),
        "{err}"
    );
    let o = limited(&["train", "--steps", "1"], "lots");
    assert!(
        stderr(&o).contains("SINTER_MEMORY_LIMIT=\"lots\""),
        "{}",
        stderr(&o)
    );

    let dir = scratch("memory");
    let params = dir.join("mlp.safetensors");
    let p = params.to_str().unwrap();
    let o = limited(
        &[
            "train", "--model", "mlp", "--steps", "2", "--quiet", "--save", p,
        ],
        "none",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = limited(&["eval", p, "--batch", "2000"], "2M");
    assert!(
        stderr(&o).contains("evaluating a batch of 2000 needs")
            && stderr(&o).contains("lower --batch (now 2000)"),
        "{}",
        stderr(&o)
    );
}

/// Item 16: one adapter among several, by its index among adapters of its kind or by part of its
/// name; `sinter info --device …` says which would be used, and a choice that names no adapter
/// is refused with the adapters found, as `--device` names them.
#[test]
fn one_adapter_is_chosen_by_index_or_name() {
    let o = sinter(&["info", "--device", "gpu:7"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--device gpu:7: no such adapter; found ") && err.contains("sinter info"),
        "{err}"
    );
    let o = sinter(&["train", "--device", "gpu:7", "--steps", "1"]);
    let err = assert_refused(&o, "gpu:7");
    assert!(err.contains("--device gpu:7: no such adapter"), "{err}");
    let o = sinter(&["train", "--device", "cpu:1", "--steps", "1"]);
    let err = assert_refused(&o, "cpu:1");
    assert!(err.contains("gpu:N or software:N"), "{err}");

    let software = sinter::sinter_device::adapters_of(sinter::sinter_ops::AdapterKind::Software);
    if software.is_empty() {
        assert!(
            std::env::var_os("SINTER_REQUIRE_ADAPTER").is_none(),
            "SINTER_REQUIRE_ADAPTER is set but no software adapter was found"
        );
        return;
    }
    let name = software[0].get_info().name;
    // `info` lists the selector of each adapter, and resolves index and name to the same one.
    let o = sinter(&["info", "--device", "software:0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("--device:             software:0"), "{out}");
    assert!(
        out.contains(&format!("--device software:0: would use {name}")),
        "{out}"
    );
    let part = name.split_whitespace().next().unwrap().to_uppercase();
    let o = sinter(&["info", "--device", &format!("software:{part}")]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains(&format!(": would use {name}")), "{out}");
    let o = sinter(&[
        "train",
        "--device",
        "software:0",
        "--model",
        "mlp",
        "--steps",
        "1",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("GPU {name}")));
}

/// Issue 17 item 1: `--no-tune` trains by the static rule (nothing tuned, no tuning cache);
/// `sinter tune` tunes a model's shapes ahead of time and prints the choices; `sinter info`
/// lists them from the cache; a second `tune` finds them all cached; with `--no-tune`, `tune`
/// has nothing to do.
#[test]
fn tune_prints_its_choices_and_info_lists_them() {
    let software = sinter::sinter_device::adapters_of(sinter::sinter_ops::AdapterKind::Software);
    if software.is_empty() {
        assert!(
            std::env::var_os("SINTER_REQUIRE_ADAPTER").is_none(),
            "SINTER_REQUIRE_ADAPTER is set but no software adapter was found"
        );
        return;
    }
    // One cache folder throughout, so the canary and the pipelines are cached after the first run.
    let dir = scratch("tune");
    let env = [("SINTER_CACHE_DIR", dir.to_str().unwrap())];
    let o = sinter_env(
        &[
            "train",
            "--model",
            "mlp",
            "--device",
            "software",
            "--steps",
            "2",
            "--batch",
            "8",
            "--quiet",
            "--no-tune",
        ],
        &env,
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.join("canary.json").exists(), "the device opened");
    assert!(!dir.join("tune.json").exists(), "--no-tune tuned");

    let tune = [
        "tune", "--model", "mlp", "--device", "software", "--batch", "8",
    ];
    let o = sinter_env(&tune, &env, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let summary = out.lines().next().unwrap_or_default().to_string();
    assert!(
        summary.starts_with("mlp on ") && summary.contains("batch 8"),
        "{out}"
    );
    // One indented line per shape class: key, choice, timings.
    let choices: Vec<&str> = out.lines().filter(|l| l.starts_with("  ")).collect();
    assert!(choices.iter().any(|l| l.starts_with("  matmul b")), "{out}");
    assert!(choices.iter().any(|l| l.starts_with("  reduce o")), "{out}");
    let tuned = format!("{} tuned now", choices.len());
    assert!(summary.contains(&tuned), "{out}");
    for line in &choices {
        assert!(line.contains(" µs"), "{line}");
    }
    assert!(dir.join("tune.json").exists());

    let o = sinter_env(&["info"], &env, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info = String::from_utf8_lossy(&o.stdout).into_owned();
    let listed = format!("tuned:                {} shape classes", choices.len());
    assert!(info.contains(&listed), "{info}");
    for line in &choices {
        let key_and_choice: Vec<&str> = line.split_whitespace().take(8).collect();
        let found = info.lines().any(|l| {
            l.split_whitespace()
                .take(8)
                .eq(key_and_choice.iter().copied())
        });
        assert!(found, "{line} not in {info}");
    }

    let o = sinter_env(&tune, &env, &[]);
    let again = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        again.contains(", 0 tuned now in 0.00 s (0 timed"),
        "{again}"
    );

    let o = sinter_env(&["--no-tune", "tune"], &env, &[]);
    let err = assert_refused(&o, "--no-tune tune");
    assert!(err.contains("tuning is off"), "{err}");
    let o = sinter_env(&["tune", "--model", "mlp", "--device", "cpu"], &env, &[]);
    let err = assert_refused(&o, "tune --device cpu");
    assert!(err.contains("needs a GPU or a software adapter"), "{err}");
}
