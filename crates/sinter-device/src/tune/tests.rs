//! Tests of the tuner on the test adapter: it keeps only variants that match the CPU reference,
//! answers a second meeting from its cache without timing, survives a damaged cache file, never
//! runs what the canary disabled, and leaves the static rule alone when switched off.

use super::*;
use crate::adapter::{pick_adapter, DeviceChoice};
use crate::canary::Verdict;
use crate::shaders::Shader;
use crate::testing::REQUIRE_ENV;

/// A device of its own (tests change its tuner and disabled set) compiling `source_of`, with
/// tuning on and its cache in a fresh folder `name`; `None` (the test skips) only where no
/// adapter exists and none is required.
fn device(name: &str, source_of: fn(Shader) -> &'static str) -> Option<(Gpu, PathBuf)> {
    let Some(adapter) = pick_adapter(DeviceChoice::Software).ok().flatten() else {
        let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v != "0" && !v.is_empty());
        assert!(
            !required,
            "{REQUIRE_ENV} is set but no software adapter was found"
        );
        eprintln!("WARNING: no software adapter; tuner test SKIPPED");
        return None;
    };
    let limits = crate::limits::requested(&adapter.limits());
    let gpu = Gpu::open(adapter, limits, source_of).expect("a device");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/tmp/tune")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    gpu.tuner().set_dir(Some(dir.clone()));
    gpu.tuner().set_enabled(true);
    Some((gpu, dir))
}

fn product() -> MatmulShape {
    // n not a multiple of 4: the stores the broken v4 shifts (`sources_with_wrong_variants`).
    MatmulShape::new(2, 33, 42, 24)
}

fn conv() -> Conv2dShape {
    Conv2dShape {
        n: 2,
        c_in: 3,
        h: 9,
        w: 7,
        c_out: 6,
        kh: 3,
        kw: 3,
        stride: [1, 2],
        pad: [1, 1],
        dilation: [1, 1],
    }
}

fn matmul_key() -> String {
    format!("matmul {}", matmul_class(&product()))
}

#[test]
fn a_variant_that_disagrees_with_the_reference_is_never_chosen() {
    // v4 and v5 write every output one column to the right: valid WGSL, wrong answers. They are
    // the software adapters' static choices, and the canary has not run, so only the reference
    // check stands between them and the choice.
    let Some((gpu, _)) = device("wrong", crate::driver_errors::sources_with_wrong_variants) else {
        return;
    };
    let mut wrong = vec![MatmulVariant::V4Wide, MatmulVariant::V5Subgroup];
    wrong.retain(|v| v.runs_on(&gpu));
    assert!(wrong.contains(&MatmulVariant::best_for(&gpu)));
    let chosen = matmul_variant(&gpu, &product());
    assert!(!wrong.contains(&chosen), "{chosen:?}");
    let choice = &gpu.tuner().choices()[&matmul_key()];
    let timed = gpu.tuner().timed_variants();
    for v in &wrong {
        let why = &choice.rejected[v.entry()];
        assert!(why.contains("CPU reference"), "{why}");
        assert!(!choice.median_us.contains_key(v.entry()));
        assert!(!timed.iter().any(|t| t.ends_with(v.entry())), "{timed:?}");
    }
    let runnable = MatmulVariant::ALL
        .iter()
        .filter(|v| v.runs_on(&gpu))
        .count();
    assert_eq!(
        choice.median_us.len(),
        runnable - wrong.len(),
        "{:?}",
        choice.median_us
    );
    // The right variants were all timed, and the choice is the fastest of them.
    let fastest = choice
        .median_us
        .iter()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    assert_eq!(chosen.entry(), fastest);
}

#[test]
fn a_second_meeting_gives_the_same_choice_without_timing() {
    let Some((gpu, dir)) = device("hit", Shader::source) else {
        return;
    };
    let pool = gpu.pool_stats();
    let first = matmul_variant(&gpu, &product());
    let tm = conv_tm(&gpu, ConvPass::GradWeight, &conv());
    // The trials' buffers are their own: the pool (whose figures the planner checks) is untouched.
    assert_eq!(gpu.pool_stats(), pool);
    let after_tuning = gpu.tuner().stats();
    assert_eq!(after_tuning.tuned, 2);
    // Each variant was timed, except any whose checked run showed it could not win.
    let products = MatmulVariant::ALL
        .iter()
        .filter(|v| v.runs_on(&gpu))
        .count();
    assert!(
        (2..=products as u64 + 3).contains(&after_tuning.timing_runs),
        "{after_tuning:?}"
    );
    // Another shape of the same class, in this process, then read back from the file.
    let same_class = MatmulShape::new(2, 40, 38, 20);
    assert_eq!(matmul_class(&same_class), matmul_class(&product()));
    assert_eq!(matmul_variant(&gpu, &same_class), first);
    gpu.tuner().set_dir(Some(dir.clone()));
    assert!(gpu.tuner().choices().is_empty());
    assert_eq!(matmul_variant(&gpu, &product()), first);
    assert_eq!(conv_tm(&gpu, ConvPass::GradWeight, &conv()), tm);
    let stats = gpu.tuner().stats();
    assert_eq!(stats.timing_runs, after_tuning.timing_runs, "{stats:?}");
    assert_eq!((stats.tuned, stats.hits), (2, 3));
    let cached = cached_choices(&gpu.report, &dir).unwrap();
    assert_eq!(cached.len(), 2, "{cached:?}");
    assert_eq!(cached[&matmul_key()].variant, first.entry());
    // A new class is tuned.
    let new_class = MatmulShape::new(1, 200, 8, 8);
    let chosen = matmul_variant(&gpu, &new_class);
    assert_eq!(gpu.tuner().stats().tuned, 3);

    // A second device on the adapter, which read the file before the first stored a class,
    // takes the first one's choice for it instead of timing again.
    let Some((other, _)) = device("hit-other", Shader::source) else {
        return;
    };
    other.tuner().set_dir(Some(dir.clone()));
    assert_eq!(matmul_variant(&other, &product()), first);
    let late = MatmulShape::new(3, 5, 7, 9);
    let late_choice = matmul_variant(&gpu, &late);
    assert_eq!(matmul_variant(&other, &late), late_choice);
    assert_eq!(matmul_variant(&other, &new_class), chosen);
    assert_eq!(other.tuner().stats().timing_runs, 0);
    assert_eq!(other.tuner().stats().hits, 3);
}

#[test]
fn a_damaged_or_foreign_cache_file_is_ignored_and_replaced() {
    let Some((gpu, dir)) = device("damaged", Shader::source) else {
        return;
    };
    let file = dir.join(CACHE_FILE);
    std::fs::create_dir_all(&dir).unwrap();
    for (damage, why) in [
        ("{ not json".to_string(), "not JSON"),
        (
            r#"{"version": 2, "pairs": {}}"#.to_string(),
            "not a version-1 file",
        ),
        (
            // Right format, wrong contents: the checksum no longer matches.
            format!(
                r#"{{"version": 1, "checksum": "0", "pairs": {{"{}": {{}}}}}}"#,
                pair_key(&gpu.report)
            ),
            "checksum",
        ),
    ] {
        std::fs::write(&file, damage).unwrap();
        let err = cached_choices(&gpu.report, &dir).unwrap_err();
        assert!(err.contains(why), "{err}");
        gpu.tuner().set_dir(Some(dir.clone()));
        let before = gpu.tuner().stats().tuned;
        let chosen = matmul_variant(&gpu, &product());
        assert_eq!(gpu.tuner().stats().tuned, before + 1);
        let cached = cached_choices(&gpu.report, &dir).expect("the file is rewritten whole");
        assert_eq!(cached[&matmul_key()].variant, chosen.entry());
    }
    // A valid file naming a variant the family does not have is foreign too.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    let pair = pair_key(&gpu.report);
    doc["pairs"][&pair][&matmul_key()]["choice"] = json!("matmul_v9");
    let pairs: BTreeMap<String, Value> = serde_json::from_value(doc["pairs"].clone()).unwrap();
    crate::cache_file::write(&file, CACHE_VERSION, true, &pairs).unwrap();
    let err = cached_choices(&gpu.report, &dir).unwrap_err();
    assert!(err.contains("matmul_v9"), "{err}");
}

#[test]
fn a_variant_the_canary_disabled_is_never_run() {
    let Some((gpu, _)) = device("disabled", Shader::source) else {
        return;
    };
    let off = ["matmul_v4_wide", "matmul_v1_naive", "conv2d_forward TM=8"];
    gpu.apply_canary(&Verdict {
        passed: Vec::new(),
        disabled: off.iter().map(|v| (v.to_string(), "test".into())).collect(),
        cached: false,
    });
    let chosen = matmul_variant(&gpu, &product());
    assert!(!off.contains(&chosen.entry()));
    let tm = conv_tm(&gpu, ConvPass::Forward, &conv());
    assert_ne!(tm, 8);
    // The others were all tried (timed, or seen to be hopeless by their checked run).
    let choices = gpu.tuner().choices();
    let tried: Vec<&String> = choices.values().flat_map(|c| c.median_us.keys()).collect();
    // The products other than the two switched off, and the convolution's two other TMs.
    let runnable = MatmulVariant::ALL
        .iter()
        .filter(|v| v.runs_on(&gpu))
        .count();
    assert_eq!(tried.len(), runnable - 2 + 2, "{tried:?}");
    let timed = gpu.tuner().timed_variants();
    assert!(!timed.is_empty());
    for v in off {
        assert!(!tried.iter().any(|t| *t == v), "{v} in {tried:?}");
        assert!(!timed.iter().any(|t| t.ends_with(v)), "{v} in {timed:?}");
    }
    // A cached choice the canary disables later is tuned again among the others.
    gpu.apply_canary(&Verdict {
        passed: Vec::new(),
        disabled: [(chosen.entry().to_string(), "test".into())].into(),
        cached: false,
    });
    assert_ne!(matmul_variant(&gpu, &product()), chosen);
}

#[test]
fn switched_off_the_launchers_keep_the_static_rule() {
    let Some((gpu, dir)) = device("off", Shader::source) else {
        return;
    };
    gpu.tuner().set_enabled(false);
    assert_eq!(
        matmul_variant(&gpu, &product()),
        MatmulVariant::best_for(&gpu)
    );
    for pass in [ConvPass::Forward, ConvPass::GradInput, ConvPass::GradWeight] {
        assert_eq!(conv_tm(&gpu, pass, &conv()), static_tm(&gpu, pass, &conv()));
    }
    let kernels = [Kernel::Conv2dGradInput(conv())];
    let met = tune_kernels(&gpu, &kernels);
    assert_eq!(met.len(), 1);
    assert_eq!(gpu.tuner().stats(), TuneStats::default());
    assert!(!dir.join(CACHE_FILE).exists());
}

/// reduce.wgsl with the tree kernel skipping each output's first element: valid WGSL, wrong sums.
fn sources_with_a_wrong_reduce_tree(shader: Shader) -> &'static str {
    static REDUCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    match shader {
        Shader::Reduce => REDUCE.get_or_init(|| {
            let line = "for (var j = lid; j < p.n; j += WG) {";
            let right = shader.source();
            assert_eq!(right.matches(line).count(), 1, "the line to break moved");
            right.replace(line, "for (var j = lid + 1u; j < p.n; j += WG) {")
        }),
        other => other.source(),
    }
}

#[test]
fn reductions_are_tuned_against_their_reference() {
    let Some((gpu, _)) = device("reduce", Shader::source) else {
        return;
    };
    // One class per op (outer 1, 2, 4, 8): every kernel the adapter runs matches the reference
    // for each (the subgroup one too, on CI's lavapipe).
    let runnable = ReduceKernel::ALL.iter().filter(|k| k.runs_on(&gpu)).count();
    for (k, op) in ReduceOp::ALL.into_iter().enumerate() {
        let s = ReduceShape {
            outer: 1 << k,
            n: 300,
            inner: 3,
        };
        let kernel = reduce_kernel(&gpu, op, &s);
        let key = format!("reduce {}", reduce_class(&s));
        let choice = &gpu.tuner().choices()[&key];
        assert!(choice.rejected.is_empty(), "{op:?}: {:?}", choice.rejected);
        assert_eq!(choice.median_us.len(), runnable, "{op:?}");
        assert_eq!(choice.variant, kernel.entry());
    }
    assert_eq!(gpu.tuner().stats().tuned, 4);

    // A tree kernel that drops an element is passed over, though the shape prefers it.
    let Some((wrong, _)) = device("reduce-wrong", sources_with_a_wrong_reduce_tree) else {
        return;
    };
    let s = ReduceShape {
        outer: 2,
        n: 300,
        inner: 1,
    };
    assert_eq!(static_kernel(&wrong, &s), ReduceKernel::Tree);
    assert_ne!(reduce_kernel(&wrong, ReduceOp::Sum, &s), ReduceKernel::Tree);
    let choice = &wrong.tuner().choices()[&format!("reduce {}", reduce_class(&s))];
    let why = &choice.rejected["reduce_tree"];
    assert!(why.contains("CPU reference"), "{why}");
}

fn attention_shape(causal: bool, dropout: f32) -> AttentionShape {
    // T not a multiple of 8 or 64, D not a multiple of 4.
    AttentionShape {
        batch: 2,
        seq: 40,
        heads: 3,
        head_dim: 6,
        causal,
        scale: 0.4,
        dropout,
    }
}

#[test]
fn attention_layouts_are_checked_on_all_four_outputs_then_timed() {
    let Some((gpu, _)) = device("attention", Shader::source) else {
        return;
    };
    let runnable = AttentionVariant::ALL
        .iter()
        .filter(|v| v.runs_on(&gpu))
        .count();
    for (causal, dropout) in [(false, 0.0), (true, 0.25)] {
        let s = attention_shape(causal, dropout);
        let chosen = attention_variant(&gpu, &s);
        if runnable < 2 {
            // Nothing to choose between: the one layout, untimed.
            assert_eq!(chosen, AttentionVariant::Rows64);
            continue;
        }
        let choice = &gpu.tuner().choices()[&format!("attention {}", attention_class(&s))];
        // Both layouts match the f64 reference (forward, dq, dk, dv) and are timed.
        assert!(choice.rejected.is_empty(), "{s}: {:?}", choice.rejected);
        assert_eq!(choice.median_us.len(), runnable, "{s}");
        assert_eq!(choice.variant, chosen.entry("attention_forward"));
    }
}

/// attention_subgroup.wgsl with the dk/dv step reading lanes 0..3's Δ for lanes 4..7: the
/// forward and dq are right, dk is wrong.
fn sources_with_a_wrong_key_gradient(shader: Shader) -> &'static str {
    static SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let line = "let ds_hi = p_hi * (dp_hi * z_hi - lanes_hi(my_delta));";
    match shader {
        Shader::AttentionSubgroup => SOURCE.get_or_init(|| {
            let file = shader.file();
            assert_eq!(file.matches(line).count(), 1, "the line to break moved");
            let wrong = line.replace("lanes_hi(my_delta)", "lanes_lo(my_delta)");
            format!(
                "{}{}",
                Shader::Attention.source(),
                file.replace(line, &wrong)
            )
        }),
        other => other.source(),
    }
}

#[test]
fn an_attention_layout_with_a_wrong_key_gradient_is_never_chosen() {
    let Some((gpu, _)) = device("attention-wrong", sources_with_a_wrong_key_gradient) else {
        return;
    };
    // Without subgroups of 8 there is no subgroup layout to break (CI's lavapipe has them).
    if !AttentionVariant::Subgroup8.runs_on(&gpu) {
        return;
    }
    let s = attention_shape(true, 0.0);
    assert_eq!(attention_variant(&gpu, &s), AttentionVariant::Rows64);
    let choice = &gpu.tuner().choices()[&format!("attention {}", attention_class(&s))];
    let why = &choice.rejected["attention_forward_sg"];
    assert!(why.starts_with("dk["), "{why}");
    assert!(!gpu
        .tuner()
        .timed_variants()
        .iter()
        .any(|t| t.ends_with("attention_forward_sg")));
}

/// The static rule's choice stays unless another variant beats it by more than CLEAR_WIN; a
/// clear win, or a static choice that was not right (no median), gives the fastest.
#[test]
fn the_static_choice_stays_unless_another_clearly_wins() {
    use super::measure::{Measured, CLEAR_WIN};
    let measured = |times: &[(&str, f64)]| Measured {
        median_us: times.iter().map(|&(n, t)| (n.to_string(), t)).collect(),
        ..Measured::default()
    };
    let close = measured(&[("static", 105.0), ("other", 100.0)]);
    assert_eq!(close.best(Some("static")).as_deref(), Some("static"));
    assert_eq!(close.best(None).as_deref(), Some("other"));
    let edge = 100.0 * (1.0 + CLEAR_WIN);
    let just = measured(&[("static", edge), ("other", 100.0)]);
    assert_eq!(just.best(Some("static")).as_deref(), Some("static"));
    let clear = measured(&[("static", edge + 1.0), ("other", 100.0)]);
    assert_eq!(clear.best(Some("static")).as_deref(), Some("other"));
    let wrong = measured(&[("other", 100.0)]);
    assert_eq!(wrong.best(Some("static")).as_deref(), Some("other"));
    assert_eq!(measured(&[]).best(Some("static")), None);
}
