//! The profiler as a user meets it: `sinter profile` prints a row for every kernel of the step,
//! `--trace` writes valid Chrome-trace JSON with one event per dispatch or node, and
//! `sinter bench step` ends with its one-line summary. No timings are asserted.

use serde_json::Value;
use sinter::report::trace::{chrome_trace, TRACE_KERNEL_TID};
use sinter::sinter_device::testing::REQUIRE_ENV;
use sinter::sinter_device::{pick_adapter, DeviceChoice, Gpu};
use sinter::sinter_model::backend::GpuBackend;
use sinter::sinter_model::data::embedded_mnist;
use sinter::sinter_model::nn::mlp;
use sinter::sinter_model::optim::{Optimizer, OptimizerKind};
use sinter::sinter_model::profile::TimingMethod;
use sinter::sinter_model::train::{Classifier, ClassifierConfig};
use sinter::sinter_model::{Backend, VarStore};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("profile")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the binary with the ceilings cache in `cache` (never the user's).
fn sinter(args: &[&str], cache: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args(args)
        .env("SINTER_CACHE_DIR", cache)
        .env_remove("SINTER_DEVICE")
        .output()
        .expect("sinter runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether a software adapter can be used; panics when one is required and missing.
fn software_adapter() -> bool {
    let found = matches!(pick_adapter(DeviceChoice::Software), Ok(Some(_)));
    if !found {
        let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v != "0" && !v.is_empty());
        assert!(
            !required,
            "{REQUIRE_ENV} is set but no software adapter was found"
        );
        eprintln!("WARNING: no software adapter; profiler adapter test SKIPPED");
    }
    found
}

/// The kernel events of a trace, after checking it is valid JSON in the trace event format.
fn kernel_events(trace: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(trace).expect("the trace is valid JSON");
    let events = v["traceEvents"]
        .as_array()
        .expect("traceEvents is an array");
    for e in events {
        let ph = e["ph"].as_str().expect("every event has a phase");
        assert!(ph == "X" || ph == "M", "unexpected phase in {e}");
        if ph == "X" {
            assert!(e["ts"].as_f64().is_some_and(|t| t >= 0.0), "{e}");
            assert!(e["dur"].as_f64().is_some_and(|d| d >= 0.0), "{e}");
            assert!(e["pid"].is_u64() && e["tid"].is_u64(), "{e}");
            assert!(e["name"].is_string(), "{e}");
        }
    }
    let kernels: Vec<Value> = events
        .iter()
        .filter(|e| e["cat"] == "kernel")
        .cloned()
        .collect();
    for k in &kernels {
        assert_eq!(k["tid"].as_u64(), Some(TRACE_KERNEL_TID as u64), "{k}");
        let args = &k["args"];
        for field in ["kernel", "tag", "shapes"] {
            assert!(
                args[field].as_str().is_some_and(|s| !s.is_empty()),
                "kernel event without {field}: {k}"
            );
        }
        assert!(args["flops"].is_u64() && args["bytes"].is_u64(), "{k}");
        assert!(args["shapes"].as_str().unwrap().contains('→'), "{k}");
    }
    // The host track holds the steps and their phases.
    assert!(
        events
            .iter()
            .any(|e| e["cat"] == "host" && e["tid"].as_u64() != Some(TRACE_KERNEL_TID as u64)),
        "no host events on their own track"
    );
    kernels
}

/// A small MLP training step on `backend`, profiled for `steps` steps: the trace has one kernel
/// event per node (CPU) or dispatch (GPU) per step, named by its tag.
fn trace_has_one_event_per_kernel(backend: Backend, timing: Option<TimingMethod>, steps: usize) {
    let (data, _) = embedded_mnist().unwrap();
    let mut store = VarStore::new();
    let mut rng = sinter_model::Init::new(0);
    let model = mlp(&mut store, 784, 32, 10, &mut rng);
    let config = ClassifierConfig {
        batch: 16,
        accumulate: 1,
        eval_batch: 16,
        seed: 0,
        shuffle: false,
        stop_on_nan: true,
        detect_anomaly: false,
        memory_limit: None,
    };
    let opt = Optimizer::new(OptimizerKind::adam(0.0), 1e-3);
    let mut c = Classifier::new(
        "mlp",
        model,
        store,
        backend,
        opt,
        config,
        [1, 28, 28],
        data.n,
    )
    .unwrap();
    let per_step = c.train_program().kernel_count();
    let tags: BTreeSet<String> = c
        .train_program()
        .plan()
        .order
        .iter()
        .map(|&i| c.train_program().plan().nodes[i].tag.clone())
        .collect();
    let profiles: Vec<_> = (0..steps)
        .map(|_| c.train_step_profiled(&data, timing).unwrap().1)
        .collect();
    for p in &profiles {
        assert_eq!(p.kernels.len(), per_step, "{}", p.timing);
        assert!(p.wall_us > 0.0 && p.kernel_us() > 0.0, "{}", p.timing);
    }
    let kernels = kernel_events(&chrome_trace(&profiles, &c.backend.describe()));
    assert_eq!(kernels.len(), steps * per_step);
    for k in &kernels {
        let tag = k["args"]["tag"].as_str().unwrap();
        assert!(tags.contains(tag), "kernel tag {tag:?} is not a node tag");
    }
    // A profiled step trains like a plain one: the loss is finite and the step counter moves.
    assert_eq!(c.step, steps as u64);
}

#[test]
fn cpu_trace_is_valid_json_with_one_event_per_node() {
    trace_has_one_event_per_kernel(Backend::Cpu(Default::default()), None, 2);
}

#[test]
fn adapter_trace_has_one_event_per_dispatch_with_every_timing_method() {
    if !software_adapter() {
        return;
    }
    for method in [
        TimingMethod::InsidePasses,
        TimingMethod::PassPerDispatch,
        TimingMethod::HostTimed,
    ] {
        let adapter = pick_adapter(DeviceChoice::Software).unwrap().unwrap();
        let gpu = Gpu::new(adapter).unwrap();
        if !sinter_device::profiler::timing_supported(method, &gpu) {
            eprintln!("{method}: not offered by {}; skipped", gpu.report.name);
            continue;
        }
        let backend = Backend::Gpu(Box::new(GpuBackend::new(gpu).unwrap()));
        trace_has_one_event_per_kernel(backend, Some(method), 2);
    }
}

/// Runs `sinter profile` with a trace and checks that every (kernel, tag) in the trace has a
/// row in the printed table, and that the trace holds `steps` × the kernels per step.
fn profile_table_covers_every_kernel(device: &str, extra: &[&str]) {
    let dir = scratch(device);
    let trace = dir.join("trace.json");
    let mut args = vec![
        "profile",
        "--device",
        device,
        "--steps",
        "2",
        "--warmup",
        "1",
        "--trace",
        trace.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = sinter(&args, &dir);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("ceilings:") && out.contains("GFLOP/s"),
        "{out}"
    );
    let per_step: usize = out
        .split(" kernels per step")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no kernel count in:\n{out}"));
    let kernels = kernel_events(&std::fs::read_to_string(&trace).unwrap());
    assert_eq!(kernels.len(), 2 * per_step, "{out}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip_while(|l| !l.starts_with("kernel "))
        .skip(1)
        .take_while(|l| !l.starts_with("total"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(!rows.is_empty(), "{out}");
    let mut seen = BTreeSet::new();
    for k in &kernels {
        let (kernel, tag) = (
            k["args"]["kernel"].as_str().unwrap(),
            k["args"]["tag"].as_str().unwrap(),
        );
        let tag_words: Vec<&str> = tag.split_whitespace().collect();
        let found = rows
            .iter()
            .any(|r| r.first() == Some(&kernel) && r[1..].starts_with(&tag_words));
        assert!(found, "no table row for {kernel} / {tag}:\n{out}");
        seen.insert((kernel.to_string(), tag.to_string()));
    }
    // Each row is a kernel of the step: calls sum to steps × kernels per step.
    let calls: usize = rows
        .iter()
        .map(|r| {
            r[1 + r
                .iter()
                .skip(1)
                .position(|w| w.parse::<usize>().is_ok())
                .unwrap()]
        })
        .map(|c| c.parse::<usize>().unwrap())
        .sum();
    assert_eq!(calls, 2 * per_step, "{out}");
    assert!(seen.len() <= rows.len());
}

#[test]
fn profile_on_the_cpu_prints_a_row_for_every_kernel() {
    profile_table_covers_every_kernel("cpu", &[]);
}

#[test]
fn profile_on_a_software_adapter_prints_a_row_for_every_kernel() {
    if !software_adapter() {
        return;
    }
    profile_table_covers_every_kernel("software", &["--batch", "16"]);
}

#[test]
fn profile_on_a_software_adapter_reports_the_host_time_per_step() {
    if !software_adapter() {
        return;
    }
    let dir = scratch("host-time");
    let args = [
        "profile", "--model", "mlp", "--device", "software", "--steps", "2", "--warmup", "1",
    ];
    let o = sinter(&args, &dir);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{out}\n{err}");
    // host: write feeds <t> ms · record <t> ms · submit <t> ms · wait <t> ms · readback <t> ms
    // (medians); host work per step besides waiting: <t> ms
    let line = out
        .lines()
        .find(|l| l.starts_with("host: "))
        .unwrap_or_else(|| panic!("no host line in:\n{out}"));
    for phase in ["write feeds", "record", "submit", "wait", "readback"] {
        assert!(
            line.contains(&format!("{phase} ")),
            "{phase} missing: {line}"
        );
    }
    let busy: f64 = line
        .rsplit("besides waiting: ")
        .next()
        .and_then(|t| t.strip_suffix(" ms"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no host work figure in: {line}"));
    assert!(busy > 0.0, "{line}");
}

#[test]
fn bench_step_ends_with_the_summary_line() {
    let dir = scratch("bench-step");
    let o = sinter(
        &[
            "bench", "step", "--model", "mlp", "--device", "cpu", "--steps", "3",
        ],
        &dir,
    );
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{out}\n{err}");
    let last = out.lines().last().expect("output");
    // mlp cpu batch 64: <X> ms/step, <Y> samples/s
    let rest = last
        .strip_prefix("mlp cpu batch 64: ")
        .unwrap_or_else(|| panic!("unexpected last line: {last:?}"));
    let (ms, rest) = rest.split_once(" ms/step, ").expect("ms/step");
    let samples = rest.strip_suffix(" samples/s").expect("samples/s");
    let ms: f64 = ms.parse().expect("ms is a number");
    let samples: f64 = samples.parse().expect("samples/s is a number");
    assert!(ms > 0.0 && samples > 0.0, "{last}");
}

#[test]
fn a_timing_method_the_command_line_does_not_know_is_refused() {
    let dir = scratch("bad-timing");
    let o = sinter(&["profile", "--device", "cpu", "--timing", "sundial"], &dir);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("--timing") && err.contains("sundial"), "{err}");
}

#[test]
fn an_unwritable_trace_path_is_named_after_the_table_is_printed() {
    let dir = scratch("bad-trace");
    let path = dir.join("no-such-folder").join("trace.json");
    let path = path.to_str().expect("a UTF-8 scratch path");
    let o = sinter(
        &[
            "profile",
            "--device",
            "cpu",
            "--model",
            "mlp",
            "--warmup",
            "0",
            "--steps",
            "1",
            "--no-ceilings",
            "--trace",
            path,
        ],
        &dir,
    );
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    // The profile itself completes: its table is printed before the trace fails.
    assert!(out.lines().any(|l| l.starts_with("total")), "{out}");
    assert!(!o.status.success());
    assert!(
        err.contains("cannot write the trace") && err.contains("no-such-folder"),
        "{err}"
    );
}

#[test]
fn an_unknown_model_name_is_refused_with_the_known_ones() {
    let dir = scratch("bad-model");
    for sub in [&["profile"][..], &["bench", "step"][..]] {
        let mut args = sub.to_vec();
        args.extend(["--model", "resnet50"]);
        let o = sinter(&args, &dir);
        assert!(!o.status.success());
        let err = text(&o.stderr);
        assert!(
            err.contains("resnet50") && err.contains("char-transformer"),
            "{err}"
        );
    }
}

/// `bench step` and `profile` take every model of `sinter train`, GPT-2 included (sized by
/// --size and --context, on random tokens of its 50,257-token vocabulary); the GPT-2 options
/// are refused for the other models.
#[test]
fn bench_step_and_profile_run_gpt2() {
    let dir = scratch("bench-gpt2");
    let gpt2 = [
        "--model",
        "gpt2",
        "--size",
        "tiny",
        "--context",
        "16",
        "--batch",
        "2",
        "--device",
        "cpu",
        "--warmup",
        "0",
    ];
    let mut bench = vec!["bench", "step", "--steps", "2"];
    bench.extend(gpt2);
    let o = sinter(&bench, &dir);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{out}\n{err}");
    let last = out.lines().last().expect("output");
    assert!(last.starts_with("gpt2 cpu batch 2: "), "{last}");
    let mut profile = vec!["profile", "--steps", "1", "--no-ceilings"];
    profile.extend(gpt2);
    let o = sinter(&profile, &dir);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.lines()
            .any(|l| l.contains("lm_head") && l.contains("[32, 64] · [50257, 64]ᵀ")),
        "{out}"
    );
    let o = sinter(&["bench", "step", "--model", "mlp", "--size", "tiny"], &dir);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("--size is for --model gpt2"));
}
