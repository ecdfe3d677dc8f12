//! Helpers the integration tests share: seeded random inputs, a tolerance check whose failure names
//! the kernel, shape, index and values (kernel tests), and runs of the built `sinter` (CLI tests).
#![allow(dead_code)] // each test binary uses a different subset of these helpers

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sinter::sinter_device::testing::test_gpu;
use sinter::sinter_device::{pick_adapter, wgpu, DeviceChoice, Dispatch, Gpu};
use sinter::sinter_model::backend::GpuBackend;
use sinter::sinter_model::Backend;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A deterministic generator, so a failing case reproduces exactly.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `len` values drawn uniformly from `[lo, hi)`.
pub fn rand_vec(rng: &mut ChaCha8Rng, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// `len` class indices in `[0, classes)`, stored as f32 the way the loss kernels read them.
pub fn rand_classes(rng: &mut ChaCha8Rng, len: usize, classes: usize) -> Vec<f32> {
    (0..len)
        .map(|_| rng.random_range(0..classes) as f32)
        .collect()
}

/// Widens f32 data to f64, to run a CPU reference in f64.
pub fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// Checks `|got - want| <= atol + rtol·|want|` element by element. `what` names the kernel and
/// shape; the panic message adds the first failing index, both values and the worst error seen.
/// NaN matches NaN and infinities must match exactly.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: got {} values, want {}",
        got.len(),
        want.len()
    );
    let mut worst = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            let err = (g - w).abs();
            worst = worst.max(err);
            err <= atol + rtol * w.abs()
        };
        assert!(
            ok,
            "{what}: index {i}: got {g:e}, want {w:e} (|diff| {:e} > atol {atol:e} + rtol {rtol:e}·|want|)",
            (g - w).abs()
        );
    }
}

/// Written past the end of output buffers: a kernel that writes beyond its shape changes it.
pub const SENTINEL: f32 = 12345.0;
pub const TAIL: usize = 7;

/// An output buffer of `len` values followed by TAIL sentinels.
pub fn out_buffer(gpu: &Gpu, op: &str, len: usize) -> wgpu::Buffer {
    gpu.upload(op, &vec![SENTINEL; len + TAIL]).expect("upload")
}

/// Runs `d`, reads `len` values of `out` and checks the sentinels after them are intact.
pub fn run_checked(
    gpu: &Gpu,
    what: &str,
    d: &Dispatch,
    out: &wgpu::Buffer,
    len: usize,
) -> Vec<f32> {
    run_checked_all(gpu, what, std::slice::from_ref(d), out, len)
}

/// [`run_checked`] for a kernel of several dispatches, run in order.
pub fn run_checked_all(
    gpu: &Gpu,
    what: &str,
    ds: &[Dispatch],
    out: &wgpu::Buffer,
    len: usize,
) -> Vec<f32> {
    let ds: Vec<&Dispatch> = ds.iter().collect();
    let mut got = gpu
        .run(&ds, &[(out, len + TAIL)])
        .expect("kernel run")
        .pop()
        .expect("one read");
    let tail = got.split_off(len);
    assert!(
        tail.iter().all(|&v| v == SENTINEL),
        "{what}: wrote past the end of its output: {tail:?}"
    );
    got
}

/// A backend on its own device on the test adapter (None only when adapters are not required).
pub fn gpu_backend() -> Option<Backend> {
    test_gpu()?;
    let choice = match DeviceChoice::from_env() {
        Ok(c @ (DeviceChoice::Gpu | DeviceChoice::Software | DeviceChoice::One { .. })) => c,
        _ => DeviceChoice::Auto,
    };
    let adapter = pick_adapter(choice)
        .ok()
        .flatten()
        .or_else(|| pick_adapter(DeviceChoice::Software).ok().flatten())
        .expect("test_gpu found an adapter");
    let gpu = Gpu::new(adapter).expect("device opens");
    // The static variant choice: tuned choices depend on timings, so a test's kernels (and the
    // rounding its drift bounds were measured with) would change from run to run. The tuner's
    // own tests check that what it chooses passes the CPU reference.
    gpu.tuner().set_enabled(false);
    Some(Backend::Gpu(Box::new(
        GpuBackend::new(gpu).expect("backend"),
    )))
}

// ---- command-line runs ----------------------------------------------------------------------

/// Runs the built `sinter` with `args` on the CPU backend.
pub fn sinter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args(args)
        .env("SINTER_DEVICE", "cpu")
        .output()
        .expect("sinter runs")
}

/// The process's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An empty scratch folder `name` under cargo's test temporary folder.
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
