//! Portability of the WGSL beyond lavapipe: every entry point of every shader, specialized with
//! the override sets the launchers use, translated by naga to each backend's language: GLSL as
//! wgpu's GL backend translates it, which GL 4.3, GLES 3.1 and GL 4.5 must accept; SPIR-V, which
//! `spirv-val` (Debian `spirv-tools`) must accept for Vulkan 1.0; HLSL (DX12) and MSL (Metal),
//! which naga must write without error, kept under the target folder as artifacts.
//!
//! wgpu's GL backend runs naga's GLSL writer at the driver's version (desktop 4.3 is the least
//! wgpu accepts for compute, GLES 3.1 likewise), so a WGSL construct that naga maps to newer GLSL
//! fails only on those drivers. The translation is checked here with no GPU: a naga check that
//! always runs (no integer-vector `mix`, which naga emits for `select` on integer vectors and which
//! desktop GLSL has only from 4.50), and `glslangValidator` (Debian `glslang-tools`, installed by `.ci/test`),
//! which compiles each translation at its version. A missing validator fails the test.

use naga::back::glsl;
use sinter::sinter_device::kernels::specializations;
use sinter::sinter_device::Shader;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The GLSL versions wgpu's GL backend can target for compute, least first.
const VERSIONS: [glsl::Version; 3] = [
    glsl::Version::Desktop(430),
    glsl::Version::Embedded {
        version: 310,
        is_webgl: false,
    },
    glsl::Version::Desktop(450),
];

/// One translated entry point: where it came from and its GLSL text.
struct Translation {
    what: String,
    version: glsl::Version,
    source: String,
}

/// The bindings as wgpu's GL backend numbers them for a pipeline whose layout is derived from the
/// entry point: the globals it uses, in binding order, counted separately per kind.
fn binding_map(module: &naga::Module, info: &naga::valid::FunctionInfo) -> glsl::BindingMap {
    let mut used: Vec<_> = module
        .global_variables
        .iter()
        .filter(|&(h, _)| !info[h].is_empty())
        .filter_map(|(_, var)| var.binding.map(|b| (b, var.space)))
        .collect();
    used.sort_by_key(|(b, _)| (b.group, b.binding));
    let (mut uniforms, mut storage, mut other) = (0u8, 0u8, 0u8);
    let mut map = glsl::BindingMap::default();
    for (binding, space) in used {
        let counter = match space {
            naga::AddressSpace::Uniform => &mut uniforms,
            naga::AddressSpace::Storage { .. } => &mut storage,
            _ => &mut other,
        };
        map.insert(binding, *counter);
        *counter += 1;
    }
    map
}

/// Every entry point of every shader, at every version and override set, as GLSL.
/// One entry point of one shader with one override set applied, ready for any naga backend.
struct Specialized {
    what: String,
    module: naga::Module,
    info: naga::valid::ModuleInfo,
    stage: naga::ShaderStage,
    entry: String,
    /// The entry point's index in `module`.
    index: usize,
    /// Whether it uses subgroup operations ([`Shader::uses_subgroups`]).
    subgroups: bool,
}

/// Every entry point the launchers declare × its check sets
/// ([`specializations::EntrySpecializations::check_sets`]).
fn specialized() -> Vec<Specialized> {
    let mut out = Vec::new();
    for shader in Shader::ALL {
        let source = shader.source();
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{}.wgsl: {}", shader.name(), e.emit_to_string(source)));
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}.wgsl: {}", shader.name(), e.emit_to_string(source)));
        let entries = specializations::all().iter().filter(|e| e.shader == shader);
        for declared in entries {
            let ep = module
                .entry_points
                .iter()
                .find(|ep| ep.name == declared.entry)
                .unwrap_or_else(|| panic!("{}.wgsl has no {}", shader.name(), declared.entry));
            for set in declared.check_sets() {
                let mut constants = naga::back::PipelineConstants::default();
                for &(name, value) in &set {
                    constants.insert(name.to_string(), value);
                }
                let what = format!("{}.wgsl::{} {set:?}", shader.name(), ep.name);
                let (module, info) = naga::back::pipeline_constants::process_overrides(
                    &module,
                    &info,
                    Some((ep.stage, &ep.name)),
                    &constants,
                )
                .unwrap_or_else(|e| panic!("{what}: overrides: {e}"));
                let index = module
                    .entry_points
                    .iter()
                    .position(|e| e.name == ep.name)
                    .expect("the entry point survives override processing");
                out.push(Specialized {
                    what,
                    module: module.into_owned(),
                    info: info.into_owned(),
                    stage: ep.stage,
                    entry: ep.name.clone(),
                    index,
                    subgroups: shader.uses_subgroups(),
                });
            }
        }
    }
    assert!(
        out.len() > 50,
        "only {} specialized entry points: entry points missing?",
        out.len()
    );
    out
}

/// Every specialized entry point as GLSL of each of [`VERSIONS`], as wgpu's GL backend writes it.
fn translations() -> Vec<Translation> {
    let mut out = Vec::new();
    for sp in specialized() {
        let bindings = binding_map(&sp.module, sp.info.get_entry_point(sp.index));
        for version in VERSIONS {
            let options = glsl::Options {
                version,
                writer_flags: glsl::WriterFlags::ADJUST_COORDINATE_SPACE,
                binding_map: bindings.clone(),
                zero_initialize_workgroup_memory: true,
            };
            let pipeline = glsl::PipelineOptions {
                shader_stage: sp.stage,
                entry_point: sp.entry.clone(),
                multiview: None,
            };
            // The policies wgpu's GL backend uses: GLSL bounds-checks nothing itself.
            let policies = naga::proc::BoundsCheckPolicies::default();
            let mut text = String::new();
            glsl::Writer::new(
                &mut text, &sp.module, &sp.info, &options, &pipeline, policies,
            )
            .and_then(|mut w| w.write())
            .unwrap_or_else(|e| panic!("{}: GLSL {version}: {e}", sp.what));
            out.push(Translation {
                what: sp.what.clone(),
                version,
                source: text,
            });
        }
    }
    assert!(
        out.len() > 100,
        "only {} translations: entry points missing?",
        out.len()
    );
    out
}

/// The integer-vector `mix(…, bvecN)` calls in `glsl`: naga writes `select` on a vector as
/// `mix(reject, accept, condition)`, and on integer vectors that overload needs desktop GLSL 4.50
/// (or `GL_EXT_shader_integer_mix`; GLSL ES has it from 3.10). Returns each offending line.
fn integer_vector_mixes(glsl: &str) -> Vec<&str> {
    let int_vectors: Vec<&str> = glsl
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            ["ivec", "uvec"]
                .iter()
                .any(|t| line.starts_with(t))
                .then(|| line.split_whitespace().nth(1))
                .flatten()
        })
        .collect();
    glsl.lines()
        .filter(|line| {
            line.match_indices("mix(").any(|(at, _)| {
                let args = &line[at + 4..];
                args.starts_with("ivec")
                    || args.starts_with("uvec")
                    || int_vectors
                        .iter()
                        .any(|v| args.starts_with(&format!("{v},")) || args == *v)
            })
        })
        .collect()
}

#[test]
fn no_shader_needs_integer_vector_mix() {
    let mut bad = Vec::new();
    for t in translations() {
        // GLSL ES 3.10 and desktop 4.50 have the integer overload of `mix`; desktop 4.30 has not.
        if t.version != glsl::Version::Desktop(430) {
            continue;
        }
        for line in integer_vector_mixes(&t.source) {
            bad.push(format!("{} (GLSL {}): {}", t.what, t.version, line.trim()));
        }
    }
    assert!(
        bad.is_empty(),
        "integer-vector select translates to mix(ivec/uvec, …, bvec), GLSL 4.50 only:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_integer_mix_check_sees_what_naga_writes_for_an_integer_select() {
    // The check above must be able to fail: naga's translation of a select on vec4<i32>.
    let source = "@group(0) @binding(0) var<storage, read_write> out: array<vec4<i32>>;
        @compute @workgroup_size(1) fn main() {
            let a = out[0];
            out[1] = select(vec4<i32>(0), a, a > vec4<i32>(2));
        }";
    let module = naga::front::wgsl::parse_str(source).unwrap();
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap();
    let mut text = String::new();
    glsl::Writer::new(
        &mut text,
        &module,
        &info,
        &glsl::Options {
            version: glsl::Version::Desktop(430),
            ..Default::default()
        },
        &glsl::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: "main".into(),
            multiview: None,
        },
        Default::default(),
    )
    .unwrap()
    .write()
    .unwrap();
    assert_eq!(integer_vector_mixes(&text).len(), 1, "{text}");
}

/// `glslangValidator`, which the test command installs (`glslang-tools`); missing, the test fails.
/// `tool` on the PATH; the test fails, never skips, without it (`package` names its Debian
/// package, which `.ci/test` installs).
fn tool(tool: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{tool} not found: install it (apt-get install {package}; .ci/test does)")
    })
}

fn glslang() -> PathBuf {
    tool("glslangValidator", "glslang-tools")
}

/// A fresh folder for the translations of `kind`, under the target folder (kept as artifacts).
fn artifacts(kind: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("portability-{kind}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A file name for a specialized entry point: shader, entry point and its override values.
fn file_name(sp: &Specialized, i: usize, extension: &str) -> String {
    let clean: String = sp
        .what
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{i:03}_{}.{extension}", clean.trim_matches('_'))
}

#[test]
fn every_entry_point_is_valid_spirv_for_vulkan() {
    let validator = tool("spirv-val", "spirv-tools");
    let dir = artifacts("spirv");
    let mut failures = Vec::new();
    let all = specialized();
    for (i, sp) in all.iter().enumerate() {
        // As wgpu's Vulkan backend writes it (SPIR-V 1.0, naga's bounds-check defaults; 1.3 for
        // subgroup operations, which wgpu offers from Vulkan 1.1 on).
        let mut options = naga::back::spv::Options::default();
        let env = if sp.subgroups {
            options.lang_version = (1, 3);
            "vulkan1.1"
        } else {
            "vulkan1.0"
        };
        let pipeline = naga::back::spv::PipelineOptions {
            shader_stage: sp.stage,
            entry_point: sp.entry.clone(),
        };
        let words = naga::back::spv::write_vec(&sp.module, &sp.info, &options, Some(&pipeline))
            .unwrap_or_else(|e| panic!("{}: SPIR-V: {e}", sp.what));
        let path = dir.join(file_name(sp, i, "spv"));
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        std::fs::write(&path, bytes).unwrap();
        let run = Command::new(&validator)
            .args(["--target-env", env])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", validator.display()));
        if !run.status.success() {
            failures.push(format!(
                "{} ({}): {}",
                sp.what,
                path.display(),
                String::from_utf8_lossy(&run.stderr).trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} SPIR-V modules rejected by spirv-val:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

/// HLSL (shader model 5.1, DX12's least) and MSL (2.1) have no validator on Linux: naga must
/// write them without error, and they are kept in the target folder for a look or a compiler.
#[test]
fn every_entry_point_translates_to_hlsl_and_msl() {
    let (hlsl_dir, msl_dir) = (artifacts("hlsl"), artifacts("msl"));
    let all = specialized();
    for (i, sp) in all.iter().enumerate() {
        let options = naga::back::hlsl::Options::default();
        let pipeline = naga::back::hlsl::PipelineOptions {
            entry_point: Some((sp.stage, sp.entry.clone())),
        };
        let mut hlsl = String::new();
        naga::back::hlsl::Writer::new(&mut hlsl, &options, &pipeline)
            .write(&sp.module, &sp.info, None)
            .unwrap_or_else(|e| panic!("{}: HLSL: {e}", sp.what));
        assert!(
            hlsl.contains("numthreads"),
            "{}: no compute entry point in {hlsl}",
            sp.what
        );
        std::fs::write(hlsl_dir.join(file_name(sp, i, "hlsl")), hlsl).unwrap();

        let options = naga::back::msl::Options {
            lang_version: (2, 1),
            ..Default::default()
        };
        let pipeline = naga::back::msl::PipelineOptions {
            entry_point: Some((sp.stage, sp.entry.clone())),
            ..Default::default()
        };
        let (msl, _) = naga::back::msl::write_string(&sp.module, &sp.info, &options, &pipeline)
            .unwrap_or_else(|e| panic!("{}: MSL: {e}", sp.what));
        assert!(
            msl.contains("kernel void"),
            "{}: no kernel in {msl}",
            sp.what
        );
        std::fs::write(msl_dir.join(file_name(sp, i, "metal")), msl).unwrap();
    }
}

#[test]
fn every_entry_point_compiles_as_glsl_430_es_310_and_450() {
    let validator = glslang();
    let dir = artifacts("glsl");
    let translations = translations();
    // One glslangValidator process per translation, on every core (each is single-threaded).
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut failures: Vec<(usize, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (validator, dir, translations) = (&validator, &dir, &translations);
                scope.spawn(move || {
                    let mut failed = Vec::new();
                    for (i, t) in translations.iter().enumerate().skip(w).step_by(workers) {
                        let path = dir.join(format!("{i}.comp"));
                        std::fs::write(&path, &t.source).unwrap();
                        let run = Command::new(validator)
                            .arg(&path)
                            .output()
                            .unwrap_or_else(|e| panic!("running {}: {e}", validator.display()));
                        if !run.status.success() {
                            let log = String::from_utf8_lossy(&run.stdout);
                            let errors: Vec<&str> =
                                log.lines().filter(|l| l.contains("ERROR")).collect();
                            failed.push((
                                i,
                                format!(
                                    "{} (GLSL {}, {}):\n  {}",
                                    t.what,
                                    t.version,
                                    path.display(),
                                    errors.join("\n  ")
                                ),
                            ));
                        }
                    }
                    failed
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a validator thread panicked"))
            .collect()
    });
    failures.sort();
    let failures: Vec<String> = failures.into_iter().map(|(_, f)| f).collect();
    assert!(
        failures.is_empty(),
        "{} of {} translations rejected by glslangValidator:\n{}",
        failures.len(),
        translations.len(),
        failures.join("\n")
    );
}
