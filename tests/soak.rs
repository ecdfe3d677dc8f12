//! The short form of the soak benchmark (`sinter bench soak`): 300 MLP training steps on the CPU
//! backend and on an adapter; after step 100 the GPU buffer pool allocates nothing more and the
//! process's resident memory grows by less than 1 MiB.

use std::process::Command;

/// Resident-memory growth allowed between step 100 and step 300: 1 MiB, about 5 KiB a step, far
/// below what a buffer, a batch or a program leaked per step would cost (an MNIST batch of 64 is
/// 200 KiB).
const RSS_GROWTH_LIMIT_KIB: i64 = 1024;

/// The value after `key` on a `step N:` line of the soak output.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let mut words = line.split_whitespace();
    words.find(|w| *w == key);
    words
        .next()
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

/// Runs the soak on `device`; returns the lines for step 100 and step 300.
fn soak(device: &str) -> (String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args([
            "bench", "soak", "--model", "mlp", "--steps", "300", "--device", device,
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = |step: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("step {step}:")))
            .unwrap_or_else(|| panic!("no step {step} line in {out}"))
            .to_string()
    };
    (line("100"), line("300"))
}

fn assert_rss_flat(device: &str, at100: &str, at300: &str) {
    let rss = |l: &str| -> i64 { field(l, "rss_kib").parse().expect("VmRSS on Linux") };
    let growth = rss(at300) - rss(at100);
    assert!(
        growth < RSS_GROWTH_LIMIT_KIB,
        "{device}: resident memory grew by {growth} KiB from step 100 to 300\n{at100}\n{at300}"
    );
}

#[test]
fn cpu_training_memory_is_flat_after_step_100() {
    let (at100, at300) = soak("cpu");
    assert_rss_flat("cpu", &at100, &at300);
}

#[test]
fn gpu_training_allocates_no_buffer_after_step_100() {
    if sinter::sinter_device::testing::test_gpu().is_none() {
        return;
    }
    let (at100, at300) = soak("software");
    for key in ["pool_allocations", "pool_bytes"] {
        let (a, b) = (field(&at100, key), field(&at300, key));
        assert!(a.parse::<u64>().unwrap() > 0, "{key}: {at100}");
        assert_eq!(a, b, "{key} changed after step 100:\n{at100}\n{at300}");
    }
    assert_rss_flat("software", &at100, &at300);
}
