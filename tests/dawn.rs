//! The kernels on Dawn, the WebGPU implementation in Chrome (through the npm package `webgpu`,
//! which `.ci/test` installs into `tests/dawn/node_modules`): every entry point × every override
//! set of the launchers (`sinter_device::kernels::specializations`) must compile (Tint) and make a
//! compute pipeline at WebGPU's default limits and in compatibility mode (128 invocations per
//! workgroup), with the workgroup width the device crate picks for each (256 and 128). Dawn's
//! null backend validates without a GPU. And one matrix product and one convolution, as sinter's
//! launchers prepare them, run end to end on Dawn's GLES backend over Mesa's llvmpipe (WebGPU's
//! compatibility mode) against the CPU reference. A missing node or package fails the test.

mod common;

use common::{assert_close, rand_vec, rng, to_f64};
use serde_json::{json, Value};
use sinter::sinter_device::kernels::conv::{conv2d_forward, Conv2dShape};
use sinter::sinter_device::kernels::matmul::{matmul_with, MatmulShape, MatmulVariant};
use sinter::sinter_device::kernels::specializations;
use sinter::sinter_device::testing::test_gpu;
use sinter::sinter_device::{wgpu, Dispatch, Shader};
use sinter::sinter_model::cpu;
use std::path::{Path, PathBuf};
use std::process::Command;

fn dawn_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dawn")
}

/// Every pipeline the launchers can make on a device whose workgroups hold `width` invocations:
/// `WG` (where the shader takes it) set to `width`, and no fixed-size entry point wider than that
/// (matmul v1 and v3 have 256; the device crate picks v2 there and refuses a request for them by
/// name, see `sinter_device`'s driver_errors tests).
fn pipelines(width: u32) -> Vec<Value> {
    let mut out = Vec::new();
    for shader in Shader::ALL {
        let module = naga::front::wgsl::parse_str(shader.source())
            .unwrap_or_else(|e| panic!("{}.wgsl: {e}", shader.name()));
        let fits = |ep: &&naga::EntryPoint| {
            shader.takes_workgroup_width() || ep.workgroup_size.iter().product::<u32>() <= width
        };
        let declared = specializations::all().iter().filter(|e| e.shader == shader);
        for (ep, declared) in declared.filter_map(|d| {
            let ep = module.entry_points.iter().find(|ep| ep.name == d.entry)?;
            fits(&ep).then_some((ep, d))
        }) {
            for set in declared.check_sets() {
                let mut constants: serde_json::Map<String, Value> = set
                    .iter()
                    .map(|&(k, v)| (k.to_string(), json!(v)))
                    .collect();
                if shader.takes_workgroup_width() {
                    constants.insert("WG".into(), json!(width));
                }
                out.push(json!({
                    "what": format!("{}.wgsl::{} {set:?} WG {width}", shader.name(), ep.name),
                    "source": dawn_source(shader),
                    "entry": ep.name,
                    "constants": constants,
                }));
            }
        }
    }
    out
}

/// The WGSL Dawn compiles for `shader`: its source, after `enable subgroups;` where it uses them
/// (WGSL asks for the directive; naga, which wgpu compiles with, takes subgroup operations from
/// the device's features instead and does not accept it).
fn dawn_source(shader: Shader) -> String {
    if shader.uses_subgroups() {
        format!("enable subgroups;\n{}", shader.source())
    } else {
        shader.source().to_string()
    }
}

/// Runs `script` (in tests/dawn) on `job` with node and returns the JSON it prints last.
fn node(script: &str, job: &Value) -> Value {
    let package = dawn_dir().join("node_modules/webgpu");
    assert!(
        package.is_dir(),
        "{} is missing: run `npm ci` in tests/dawn (.ci/test does)",
        package.display()
    );
    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dawn-{script}.json"));
    std::fs::write(&file, job.to_string()).unwrap();
    let run = Command::new("node")
        .arg(dawn_dir().join(script))
        .arg(&file)
        // Dawn's GLES backend opens Mesa's EGL without a display.
        .env("EGL_PLATFORM", "surfaceless")
        .output()
        .unwrap_or_else(|e| panic!("running node (apt-get install nodejs npm): {e}"));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "node {script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report from node {script}:\n{stdout}"))
}

#[test]
fn every_pipeline_builds_on_dawn_at_default_and_compatibility_limits() {
    let job = json!({
        "backend": "null",
        "levels": { "core": pipelines(256), "compatibility": pipelines(128) },
    });
    let report = node("pipelines.mjs", &job);
    let mut problems = Vec::new();
    for level in ["core", "compatibility"] {
        let r = &report["levels"][level];
        if let Some(e) = r["error"].as_str() {
            problems.push(format!("{level}: {e}"));
            continue;
        }
        let failures = r["failures"].as_array().expect("failures");
        eprintln!(
            "Dawn {level} ({}): {} pipelines, {} refused",
            r["limits"],
            r["checked"],
            failures.len()
        );
        for f in failures {
            problems.push(format!("{level}: {}: {}", f["what"], f["error"]));
        }
        assert_eq!(
            r["checked"].as_u64(),
            Some(job["levels"][level].as_array().unwrap().len() as u64)
        );
    }
    assert!(
        problems.is_empty(),
        "Dawn refused {} pipelines:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// `dispatch` (prepared by a launcher on the test adapter) as a run for tests/dawn/run.mjs: the
/// same WGSL, entry point, constants, parameters and grid, each bound buffer given its data from
/// `data` (by buffer) or left empty, and the buffers at `read` read back.
fn replay(dispatch: &Dispatch, data: &[(&wgpu::Buffer, Vec<f32>)], read: &wgpu::Buffer) -> Value {
    let buffers: Vec<Value> = dispatch
        .buffers
        .iter()
        .map(|b| match data.iter().find(|(d, _)| *d == b) {
            Some((_, values)) => json!({ "data": values }),
            None => json!({ "len": b.size() / 4 }),
        })
        .collect();
    let at = dispatch
        .buffers
        .iter()
        .position(|b| b == read)
        .expect("the output is bound");
    let constants: serde_json::Map<String, Value> = dispatch
        .constants
        .iter()
        .map(|&(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({
        "what": format!("{}.wgsl::{} ({})", dispatch.shader.name(), dispatch.entry, dispatch.tag),
        "source": dispatch.shader.source(),
        "entry": dispatch.entry,
        "constants": constants,
        "params": dispatch.params,
        "buffers": buffers,
        "workgroups": dispatch.workgroups,
        "read": [at],
    })
}

/// Issue 15: one matrix product (v2, the variant compatibility-mode devices get) and one
/// convolution, on odd shapes, prepared by the launchers and run on Dawn over llvmpipe's GLES
/// 3.2, match the CPU reference within the kernel tests' tolerances (tests/kernels_matmul.rs,
/// tests/kernels_conv.rs: 1e-4·√(K/64) absolute, 1e-4 relative).
#[test]
fn a_matmul_and_a_conv_run_on_dawn_over_gles_and_match_the_cpu() {
    let Some(gpu) = test_gpu() else { return };
    let mut r = rng(15);
    let ms = MatmulShape::new(2, 37, 45, 29);
    let (a, b) = (
        rand_vec(&mut r, ms.a_len(), -1.0, 1.0),
        rand_vec(&mut r, ms.b_len(), -1.0, 1.0),
    );
    let (ab, bb, cb) = (
        gpu.upload("a", &a).unwrap(),
        gpu.upload("b", &b).unwrap(),
        gpu.buffer("c", ms.c_len()).unwrap(),
    );
    let mm = matmul_with(gpu, MatmulVariant::V2Blocked, &ab, &bb, &cb, &ms, "mm").unwrap();
    let cs = Conv2dShape {
        n: 2,
        c_in: 3,
        h: 11,
        w: 9,
        c_out: 5,
        kh: 3,
        kw: 3,
        stride: [2, 2],
        pad: [1, 1],
        dilation: [1, 1],
    };
    let (x, w) = (
        rand_vec(&mut r, cs.x_len(), -1.0, 1.0),
        rand_vec(&mut r, cs.w_len(), -1.0, 1.0),
    );
    let (xb, wb, yb) = (
        gpu.upload("x", &x).unwrap(),
        gpu.upload("w", &w).unwrap(),
        gpu.buffer("y", cs.y_len()).unwrap(),
    );
    let conv = conv2d_forward(gpu, &xb, &wb, &yb, &cs, "conv").unwrap();
    let job = json!({
        "backend": "opengles",
        "level": "compatibility",
        "runs": [
            replay(&mm, &[(&ab, a.clone()), (&bb, b.clone())], &cb),
            replay(&conv, &[(&xb, x.clone()), (&wb, w.clone())], &yb),
        ],
    });
    let report = node("run.mjs", &job);
    assert!(report["error"].is_null(), "{}", report["error"]);
    eprintln!("Dawn adapter: {}", report["adapter"]);
    let output = |k: usize| -> Vec<f32> {
        let o = &report["outputs"][k];
        assert!(o["error"].is_null(), "{}: {}", o["what"], o["error"]);
        o["reads"][0]
            .as_array()
            .expect("one read")
            .iter()
            .map(|v| v.as_f64().expect("a number") as f32)
            .collect()
    };
    let mut want = vec![0.0f64; ms.c_len()];
    cpu::matmul::matmul(&to_f64(&a), &to_f64(&b), &mut want, &ms);
    let tol = |k: usize| 1e-4 * (k as f64 / 64.0).sqrt().max(1.0);
    assert_close(
        &format!("Dawn matmul v2 {ms}"),
        &output(0)[..ms.c_len()],
        &want,
        tol(ms.k),
        1e-4,
    );
    let mut want = vec![0.0f64; cs.y_len()];
    cpu::conv::conv2d_forward(&to_f64(&x), &to_f64(&w), &mut want, &cs);
    let k = cs.c_in * cs.kh * cs.kw;
    assert_close(
        "Dawn conv2d forward",
        &output(1)[..cs.y_len()],
        &want,
        tol(k),
        1e-4,
    );
}
