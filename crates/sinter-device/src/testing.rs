//! Test support, used only by the test suites (of this crate, sinter-model and the `sinter`
//! package), never by the engine: the adapter that tests run kernels on, the limits it opens
//! with (the override sets the portability checks use are the launchers' own:
//! [`crate::kernels::specializations`]). With
//! `SINTER_REQUIRE_ADAPTER=1` (set by the test command and CI) a missing adapter fails the test
//! instead of skipping it; its messages speak to whoever runs the tests (an install hint, skip
//! warnings on stderr), which is why they may say what a library error must not.

use crate::adapter::{pick_adapter, DeviceChoice};
use crate::gpu::Gpu;
use std::sync::OnceLock;

/// Set to anything but `0` or empty, a test that finds no adapter fails instead of skipping.
pub const REQUIRE_ENV: &str = "SINTER_REQUIRE_ADAPTER";

/// The limits the test device opens with: unset, those a user's device gets
/// ([`crate::limits::requested`]); `webgpu`,
/// WebGPU's defaults (256 invocations per workgroup, 8 storage buffers per stage, 128 MiB
/// bindings); `compat`, WebGPU's compatibility mode (those, with 128 invocations per workgroup
/// and 128 along x and y, as GLES 3.1 guarantees); `wg64`, 64 invocations (below any real
/// device's minimum, so the kernels are also run at the narrowest width they support).
pub const LIMITS_ENV: &str = "SINTER_TEST_LIMITS";

/// The limits [`LIMITS_ENV`] names, or those a user's device gets; panics on an unknown name (a test
/// setup error).
pub fn test_limits(adapter: &wgpu::Limits) -> wgpu::Limits {
    let narrowed = |width: u32| wgpu::Limits {
        max_compute_invocations_per_workgroup: width,
        max_compute_workgroup_size_x: width,
        max_compute_workgroup_size_y: width.min(128),
        ..wgpu::Limits::default()
    };
    let asked = match std::env::var(LIMITS_ENV).unwrap_or_default().as_str() {
        "" => return crate::limits::requested(adapter),
        "webgpu" => wgpu::Limits::default(),
        "compat" => narrowed(128),
        "wg64" => narrowed(64),
        other => panic!("{LIMITS_ENV}={other}: expected webgpu, compat or wg64"),
    };
    // Never more than the adapter has.
    asked.or_worse_values_from(adapter)
}

fn open() -> Option<Gpu> {
    // Tests use the choice in SINTER_DEVICE when set to gpu or software; otherwise any adapter,
    // hardware first, falling back to a software one.
    let choice = match DeviceChoice::from_env() {
        Ok(c @ (DeviceChoice::Gpu | DeviceChoice::Software | DeviceChoice::One { .. })) => c,
        _ => DeviceChoice::Auto,
    };
    let adapter = match pick_adapter(choice) {
        Ok(Some(a)) => Some(a),
        Ok(None) => pick_adapter(DeviceChoice::Software).ok().flatten(),
        Err(e) => {
            eprintln!("sinter tests: {e}");
            None
        }
    };
    adapter.and_then(|a| {
        let limits = test_limits(&a.limits());
        match Gpu::open(a, limits, crate::shaders::Shader::source) {
            Ok(g) => {
                // A run meant to test narrow workgroups must get them.
                let asked = std::env::var(LIMITS_ENV).unwrap_or_default();
                let width = match asked.as_str() {
                    "compat" => Some(128),
                    "wg64" => Some(64),
                    _ => None,
                };
                if let Some(w) = width {
                    assert_eq!(g.wide_workgroup(), w, "{LIMITS_ENV}={asked}");
                    eprintln!("sinter tests: {LIMITS_ENV}={asked}: workgroups of {w}");
                }
                Some(g)
            }
            Err(e) => {
                eprintln!("sinter tests: {e}");
                None
            }
        }
    })
}

/// The shared test adapter, opened once per test binary. `None` only when no adapter exists and
/// adapters are not required; the caller then says loudly that it skipped.
pub fn test_gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    let gpu = GPU.get_or_init(open).as_ref();
    if gpu.is_none() {
        let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v != "0" && !v.is_empty());
        assert!(
            !required,
            "{REQUIRE_ENV} is set but no adapter was found: install Mesa's lavapipe \
             (apt-get install mesa-vulkan-drivers) or run on a machine with a GPU"
        );
        eprintln!("WARNING: no GPU or software adapter found; shader test SKIPPED (set {REQUIRE_ENV}=1 to make this a failure)");
    }
    gpu
}

/// Uploads, runs one prepared dispatch and reads `len` values of `out`: the common path of kernel tests.
pub fn run_one(gpu: &Gpu, dispatch: &crate::Dispatch, out: &wgpu::Buffer, len: usize) -> Vec<f32> {
    gpu.run(&[dispatch], &[(out, len)])
        .expect("kernel run")
        .pop()
        .expect("one read")
}
