//! Tests of what the device does when the backend refuses something: a shader its compiler
//! rejects, a pipeline that fails validation, a buffer it will not create, a limit to respect.
//!
//! Each must come back as an error that names what failed (kernel, entry point, backend, size),
//! leave nothing invalid in the pipeline cache, and leave the device usable: the next valid kernel
//! runs. A driver rejecting a translated shader is provoked for real on wgpu's GL backend with
//! Mesa's llvmpipe forced to GL 4.3, whose GLSL compiler refuses the integer-vector `mix` that
//! naga writes for an integer-vector `select` (the bug of issue 15 in conv2d.wgsl).

use crate::adapter::{enumerate_adapters, pick_adapter, DeviceChoice};
use crate::error::DeviceError;
use crate::gpu::Gpu;
use crate::kernels::elementwise::{self, UnaryOp};
use crate::shaders::Shader;
use crate::testing::{run_one, test_gpu, REQUIRE_ENV};

/// Set in the child process that runs on GL 4.3 (environment variables that Mesa reads when the
/// GL context is created can only be set safely before the process starts).
const CHILD_ENV: &str = "SINTER_TEST_GL43_CHILD";

/// Stands in for conv2d.wgsl: valid WGSL (naga validates it, Vulkan runs it) whose GLSL
/// translation GL 4.3 rejects: `select` on `vec4<u32>` becomes `mix(uvec4, uvec4, bvec4)`.
const REJECTED_ON_GL43: &str = "
@group(0) @binding(0) var<uniform> p: vec4<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<u32>>;

@compute @workgroup_size(64)
fn conv2d_grad_input(@builtin(global_invocation_id) id: vec3<u32>) {
    let v = out[id.x];
    out[id.x] = select(vec4<u32>(0u), v + p, v > p);
}
";

fn sources_with_rejected_conv2d(shader: Shader) -> &'static str {
    match shader {
        Shader::Conv2d => REJECTED_ON_GL43,
        other => other.source(),
    }
}

fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v != "0" && !v.is_empty())
}

/// Relu over a few values on `gpu`, checked: the device still runs kernels.
fn a_valid_kernel_runs(gpu: &Gpu) {
    let x = [-2.0f32, -0.5, 0.0, 0.5, 3.0];
    let xb = gpu.upload("x", &x).expect("upload after the error");
    let yb = gpu.buffer("y", x.len()).expect("a buffer after the error");
    let d = elementwise::unary(gpu, &xb, &yb, UnaryOp::Relu, x.len(), "relu")
        .expect("a valid kernel after the error");
    assert_eq!(run_one(gpu, &d, &yb, x.len()), [0.0, 0.0, 0.0, 0.5, 3.0]);
    gpu.check_fault().expect("no fault on the device");
}

#[test]
fn a_shader_the_driver_rejects_is_an_error_and_the_device_stays_usable() {
    if std::env::var_os(CHILD_ENV).is_none() {
        // Rerun just this test in a child process whose GL is llvmpipe forced to 4.3.
        let name =
            "driver_errors::a_shader_the_driver_rejects_is_an_error_and_the_device_stays_usable";
        let exe = std::env::current_exe().expect("the test binary");
        let out = std::process::Command::new(exe)
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .env("WGPU_BACKEND", "gl")
            .env("MESA_GL_VERSION_OVERRIDE", "4.3")
            .env("MESA_GLSL_VERSION_OVERRIDE", "430")
            .output()
            .expect("running the test binary");
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "the GL 4.3 run failed:\n{log}");
        assert!(
            log.contains("1 passed"),
            "the GL 4.3 test did not run:\n{log}"
        );
        eprintln!("{log}");
        return;
    }
    let Some(adapter) = enumerate_adapters()
        .into_iter()
        .find(|a| a.get_info().backend == wgpu::Backend::Gl)
    else {
        assert!(
            !required(),
            "{REQUIRE_ENV} is set but wgpu found no GL adapter: install Mesa's llvmpipe \
             (apt-get install libegl-mesa0 libgl1-mesa-dri)"
        );
        eprintln!("WARNING: no GL adapter found; driver-rejection test SKIPPED");
        return;
    };
    let limits = adapter.limits();
    let gpu = Gpu::open(adapter, limits, sources_with_rejected_conv2d).expect("a GL device");
    assert!(
        gpu.report.driver.starts_with("4.3"),
        "MESA_GL_VERSION_OVERRIDE did not take: GL {}",
        gpu.report.driver
    );
    for attempt in ["first", "second"] {
        // The second attempt must compile again and fail again: nothing invalid was cached.
        let e = gpu
            .pipeline(Shader::Conv2d, "conv2d_grad_input", &[])
            .err()
            .unwrap_or_else(|| panic!("{attempt} attempt: the driver's rejection was not caught"));
        let text = e.to_string();
        eprintln!("{attempt} attempt: {text}");
        assert!(
            matches!(e, DeviceError::ShaderCompile { .. }),
            "{attempt}: {text}"
        );
        for needle in [
            "conv2d.wgsl",
            "conv2d_grad_input",
            "Gl (llvmpipe",
            "internal error",
        ] {
            assert!(
                text.contains(needle),
                "{attempt}: '{needle}' not in: {text}"
            );
        }
        gpu.check_fault()
            .unwrap_or_else(|f| panic!("{attempt}: the rejection faulted the device: {f}"));
    }
    a_valid_kernel_runs(&gpu);
}

#[test]
fn a_pipeline_that_fails_validation_is_an_error_and_the_device_stays_usable() {
    let Some(gpu) = test_gpu() else { return };
    for attempt in ["first", "second"] {
        let e = gpu
            .pipeline(Shader::Elementwise, "unary", &[("NO_SUCH_OVERRIDE", 1.0)])
            .err()
            .unwrap_or_else(|| panic!("{attempt}: an unknown override was accepted"));
        let text = e.to_string();
        for needle in ["elementwise.wgsl", "'unary'", &gpu.backend()] {
            assert!(
                text.contains(needle),
                "{attempt}: '{needle}' not in: {text}"
            );
        }
        gpu.check_fault().unwrap();
    }
    a_valid_kernel_runs(gpu);
}

#[test]
fn a_buffer_the_device_refuses_is_an_error_not_a_fault() {
    let Some(gpu) = test_gpu() else { return };
    let max = gpu.limits.max_buffer_size;
    assert!(
        max < 1 << 50,
        "max_buffer_size {max}: no size past it to ask for"
    );
    let e = gpu
        .pool
        .acquire(&gpu.device, "huge", max + 1)
        .expect_err("a buffer past max_buffer_size was created");
    let text = e.to_string();
    assert!(text.contains("huge: creating a storage buffer"), "{text}");
    gpu.check_fault()
        .unwrap_or_else(|f| panic!("the refused buffer faulted the device: {f}"));
    a_valid_kernel_runs(gpu);
}

#[test]
fn a_buffer_under_a_limit_that_is_not_a_power_of_two_is_not_rounded_past_it() {
    // The pool's size classes would round 3,000,000 bytes up to 4 MiB, past this binding limit,
    // and prepare() would refuse a buffer the tensor fits in.
    let limit = 3_000_004u64;
    let Some(gpu) = software_device_with(|adapter| wgpu::Limits {
        max_storage_buffer_binding_size: limit,
        ..adapter.clone()
    }) else {
        return;
    };
    assert_eq!(gpu.max_binding(), limit);
    let len = 750_000;
    let x: Vec<f32> = (0..len).map(|i| i as f32 - 1000.0).collect();
    let xb = gpu.upload("x", &x).unwrap();
    let yb = gpu.buffer("y", len).unwrap();
    for b in [&xb, &yb] {
        assert!(
            b.size() <= limit,
            "a buffer of {} bytes past {limit}",
            b.size()
        );
    }
    let d = elementwise::unary(&gpu, &xb, &yb, UnaryOp::Relu, len, "relu")
        .expect("prepare() refused buffers that fit");
    let y = run_one(&gpu, &d, &yb, len);
    assert_eq!(y[999], 0.0);
    assert_eq!(y[len - 1], (len - 1001) as f32);
}

/// A software adapter opened with `limits` (each at most the adapter's), or `None` (skipped,
/// unless adapters are required).
fn software_device_with(limits: impl Fn(&wgpu::Limits) -> wgpu::Limits) -> Option<Gpu> {
    let Some(adapter) = pick_adapter(DeviceChoice::Software).ok().flatten() else {
        assert!(
            !required(),
            "{REQUIRE_ENV} is set but no software adapter was found"
        );
        eprintln!("WARNING: no software adapter found; limit test SKIPPED");
        return None;
    };
    let limits = limits(&adapter.limits());
    Some(Gpu::open(adapter, limits, Shader::source).expect("a device at the lower limits"))
}

/// Issue 15 item 3: at GLES 3.1's minimums (128 invocations per workgroup, 4 storage buffers
/// per stage) the wide kernels run with workgroups of 128, and a kernel that binds more storage
/// buffers than the device has (attention's backward binds 8) is refused before any pipeline is
/// created, naming the kernel and the limit, with the device still usable.
#[test]
fn at_gles_minimums_wide_kernels_narrow_and_an_eight_buffer_kernel_is_refused_by_name() {
    let Some(gpu) = software_device_with(|adapter| wgpu::Limits {
        max_compute_invocations_per_workgroup: 128,
        max_compute_workgroup_size_x: 128,
        max_compute_workgroup_size_y: 128,
        max_storage_buffers_per_shader_stage: 4,
        ..adapter.clone()
    }) else {
        return;
    };
    assert_eq!(gpu.wide_workgroup(), 128);
    a_valid_kernel_runs(&gpu);
    use crate::kernels::attention::{attention_backward, AttentionShape};
    let s = AttentionShape {
        batch: 1,
        seq: 5,
        heads: 1,
        head_dim: 4,
        causal: true,
        scale: 0.5,
        dropout: 0.0,
    };
    let b = |len: usize| gpu.buffer("t", len).unwrap();
    let (n, rows) = (s.qkv_len(), s.rows());
    let err = attention_backward(
        &gpu,
        &b(n),
        &b(n),
        &b(n),
        &b(n),
        &b(n),
        &b(rows),
        &b(rows),
        &b(n),
        &b(n),
        &b(n),
        &s,
        "attn",
    )
    .err()
    .expect("eight storage buffers on a device with four");
    assert!(matches!(err, DeviceError::Limit { .. }), "{err:?}");
    let text = err.to_string();
    let variant = crate::kernels::attention::AttentionVariant::best_for(&gpu);
    let dq_step = format!(
        "{}.wgsl::{}",
        variant.shader().name(),
        variant.entry("attention_backward_dq")
    );
    for part in [
        dq_step.as_str(),
        "binds 8 storage buffers",
        "4 per shader stage",
        "max_storage_buffers_per_shader_stage",
    ] {
        assert!(text.contains(part), "{text:?} should name {part:?}");
    }
    // Matrix products: v2 (64 invocations) is what runs here; v3's 256 is refused by name.
    use crate::kernels::matmul::{matmul_with, MatmulShape, MatmulVariant};
    let ms = MatmulShape::new(1, 5, 6, 7);
    let (a, bm, c) = (b(ms.a_len()), b(ms.b_len()), b(ms.c_len()));
    let err = matmul_with(&gpu, MatmulVariant::V3Tiled, &a, &bm, &c, &ms, "mm")
        .err()
        .expect("256 invocations on a device with 128");
    let text = err.to_string();
    assert!(
        text.contains("matmul_v3_tiled")
            && text.contains("256 invocations")
            && text.contains("128"),
        "{text}"
    );
    matmul_with(&gpu, MatmulVariant::V2Blocked, &a, &bm, &c, &ms, "mm").expect("v2 fits");
    a_valid_kernel_runs(&gpu);
}

/// A device that cannot run 64 invocations in a workgroup cannot run the fixed-width kernels:
/// opening it is refused, naming the limits.
#[test]
fn a_device_without_workgroups_of_64_is_refused_with_its_limits() {
    let Some(adapter) = pick_adapter(DeviceChoice::Software).ok().flatten() else {
        assert!(
            !required(),
            "{REQUIRE_ENV} is set but no software adapter was found"
        );
        return;
    };
    let limits = wgpu::Limits {
        max_compute_invocations_per_workgroup: 32,
        ..adapter.limits()
    };
    let err = Gpu::open(adapter, limits, Shader::source)
        .err()
        .expect("a device of 32 invocations per workgroup");
    let text = err.to_string();
    assert!(
        text.contains("workgroups of 64") && text.contains("32 per workgroup"),
        "{text}"
    );
}

/// A fresh folder for a canary cache under the target folder.
fn canary_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/tmp/canary")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// matmul.wgsl with v4, and matmul_subgroup.wgsl with v5, writing every output one column to the
/// right (the software adapters' static choices), and softmax.wgsl with the tree kernel
/// normalizing by another lane's partial sums: valid WGSL, wrong answers.
pub(crate) fn sources_with_wrong_variants(shader: Shader) -> &'static str {
    static MATMUL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static MATMUL_SUBGROUP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static SOFTMAX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let broken = |right: &str, line: &str, wrong: &str| {
        assert_eq!(right.matches(line).count(), 1, "the line to break moved");
        right.replace(line, wrong)
    };
    let (c0, shifted) = ("let c0 = gid.x * 16u;", "let c0 = gid.x * 16u + 1u;");
    match shader {
        Shader::Matmul => MATMUL.get_or_init(|| broken(shader.source(), c0, shifted)),
        Shader::MatmulSubgroup => MATMUL_SUBGROUP.get_or_init(|| {
            let base = sources_with_wrong_variants(Shader::Matmul);
            format!("{base}{}", broken(shader.file(), c0, shifted))
        }),
        Shader::Softmax => SOFTMAX
            .get_or_init(|| broken(shader.source(), "let row = part[0];", "let row = part[1];")),
        other => other.source(),
    }
}

/// Issue 15 Build 4: on the test adapter every variant passes its known answer; the verdict is
/// cached and read back without running; a damaged cache is ignored and rewritten; and a
/// variant that computes wrong answers (a matrix product, softmax's tree kernel) is disabled,
/// named with its first wrong value, and passed over by the launchers, which stay right.
#[test]
fn the_canary_disables_a_wrong_variant_and_caches_its_verdicts() {
    use crate::canary::{self, CACHE_FILE};
    use crate::kernels::matmul::MatmulVariant;
    use crate::kernels::softmax::{softmax, RowsShape};
    let Some(adapter) = pick_adapter(DeviceChoice::Software).ok().flatten() else {
        assert!(
            !required(),
            "{REQUIRE_ENV} is set but no software adapter was found"
        );
        return;
    };
    let limits = adapter.limits();
    let gpu = Gpu::open(adapter, limits, sources_with_wrong_variants).expect("a device");
    let dir = canary_dir("wrong-variants");
    let first = canary::verdict(&gpu, Some(&dir));
    assert!(!first.cached);
    let subgroup = MatmulVariant::V5Subgroup.runs_on(&gpu);
    let mut wrong = vec!["matmul_v4_wide", "matmul_v5_subgroup", "softmax_tree"];
    wrong.retain(|&v| subgroup || v != "matmul_v5_subgroup");
    assert_eq!(first.disabled.keys().collect::<Vec<_>>(), wrong);
    for why in first.disabled.values() {
        assert!(why.contains("where") && why.contains("is right"), "{why}");
    }
    for kept in [
        "matmul_v1_naive",
        "matmul_v3_tiled",
        "softmax_rows",
        "softmax_grad_tree",
        "reduce_tree",
        "cross_entropy_grad_rows",
        "rms_norm_grad_input_tree",
        "conv2d_grad_weight TM=16",
    ] {
        assert!(
            first.passed.iter().any(|p| p == kept),
            "{kept}: {:?}",
            first.passed
        );
    }
    // Read back without running: the same verdict, marked as cached.
    let again = canary::verdict(&gpu, Some(&dir));
    assert!(again.cached);
    assert_eq!(
        (&again.passed, &again.disabled),
        (&first.passed, &first.disabled)
    );
    assert_eq!(canary::cached_verdict(&gpu.report, &dir), Some(again));
    // The choice passes over the disabled variants (v5, or v4 without subgroups, is the
    // software adapters' first).
    let first_choice = if subgroup {
        MatmulVariant::V5Subgroup
    } else {
        MatmulVariant::V4Wide
    };
    assert_eq!(MatmulVariant::best_for(&gpu), first_choice);
    gpu.apply_canary(&first);
    assert!(gpu.is_disabled("matmul_v4_wide"));
    assert_eq!(MatmulVariant::best_for(&gpu), MatmulVariant::V2Blocked);
    // Rows long enough for the tree kernel now run on the rows kernel, and are right.
    let s = RowsShape { rows: 2, cols: 300 };
    let x: Vec<f32> = (0..s.rows * s.cols)
        .map(|i| (i % 13) as f32 * 0.25)
        .collect();
    let (xb, yb) = (
        gpu.upload("x", &x).unwrap(),
        gpu.buffer("y", x.len()).unwrap(),
    );
    let d = softmax(&gpu, &xb, &yb, &s, "softmax").unwrap();
    assert_eq!(d.entry, "softmax_rows");
    let y = gpu.run(&[&d], &[(&yb, x.len())]).unwrap().pop().unwrap();
    for (row, got) in x.chunks(s.cols).zip(y.chunks(s.cols)) {
        let sum: f64 = row.iter().map(|&v| (v as f64).exp()).sum();
        for (&v, &g) in row.iter().zip(got) {
            let want = (v as f64).exp() / sum;
            assert!((g as f64 - want).abs() < 1e-6, "{g} vs {want}");
        }
    }

    // A damaged cache is ignored (the runs happen again) and replaced by a valid one.
    std::fs::write(dir.join(CACHE_FILE), "{ not json").unwrap();
    let rerun = canary::verdict(&gpu, Some(&dir));
    assert!(!rerun.cached);
    assert_eq!(rerun.disabled, first.disabled);
    assert!(canary::cached_verdict(&gpu.report, &dir).is_some());

    // The real kernels pass everywhere here.
    let Some(good) = test_gpu() else { return };
    let right = canary::verdict(good, Some(&canary_dir("right")));
    assert!(right.disabled.is_empty(), "{:?}", right.disabled);
    // The products the adapter runs, rows and tree of three softmax/loss kernels and four norm
    // kernels, the reductions, three convolution passes at three TMs, the attention forwards, the
    // embedding gradients.
    let products = MatmulVariant::ALL
        .iter()
        .filter(|v| v.runs_on(good))
        .count();
    let attention = crate::kernels::attention::AttentionVariant::ALL
        .iter()
        .filter(|v| v.runs_on(good))
        .count();
    let reductions = crate::kernels::reduce::ReduceKernel::ALL
        .iter()
        .filter(|k| k.runs_on(good))
        .count();
    let embedding_grads = crate::kernels::embedding::EmbeddingGradKernel::ALL
        .iter()
        .filter(|k| k.runs_on(good))
        .count();
    assert_eq!(
        right.passed.len(),
        products + 2 * (3 + 4) + reductions + 9 + attention + embedding_grads,
        "{:?}",
        right.passed
    );
}
