//! Helpers the command-line tests share: run the built `sinter` on the CPU backend, read its
//! output, make scratch folders. Each test binary uses a part of them.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn sinter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args(args)
        .env("SINTER_DEVICE", "cpu")
        .output()
        .expect("sinter runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `sinter` with `envs` set on top of the CPU backend's environment.
pub fn sinter_env(args: &[&str], envs: &[(&str, &str)], remove: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sinter"));
    c.args(args).env("SINTER_DEVICE", "cpu");
    for k in remove {
        c.env_remove(k);
    }
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("sinter runs")
}

/// A refusal: exit status 1 (ours) or 2 (clap's), no panic, no training started.
pub fn assert_refused(o: &Output, what: &str) -> String {
    let err = stderr(o);
    assert!(
        matches!(o.status.code(), Some(1) | Some(2)),
        "{what}: exit {:?}: {err}",
        o.status
    );
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(
        !err.contains("training "),
        "{what}: training started: {err}"
    );
    assert!(
        o.stdout.is_empty(),
        "{what}: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    err
}

/// The first line of `o`'s stdout that contains `what`, from `what` on.
pub fn line_from(o: &Output, what: &str) -> String {
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no line with {what:?} in {out:?} (stderr {})", stderr(o)));
    line[line.find(what).unwrap()..].to_string()
}
