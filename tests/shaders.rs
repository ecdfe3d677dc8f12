//! Every WGSL file in `shaders/` parses and validates with naga, with no adapter needed, and the
//! device crate's shader table lists exactly the files that exist. The shared function library
//! (`unary.wgsl`) validates alone, and every kernel file validates as it is compiled: after the
//! library when it uses it.

use sinter::sinter_device::kernels::specializations;
use sinter::sinter_device::{Shader, UNARY_LIBRARY};
use std::path::Path;

const LIBRARY_FILE: &str = "unary.wgsl";

fn validate(name: &str, source: &str, entry_points: bool) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("shaders/{name}: {}", e.emit_to_string(source)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("shaders/{name}: {}", e.emit_to_string(source)));
    assert_eq!(
        !module.entry_points.is_empty(),
        entry_points,
        "shaders/{name}: a kernel file needs entry points, the library has none"
    );
}

#[test]
fn every_shader_file_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let library = std::fs::read_to_string(dir.join(LIBRARY_FILE)).unwrap();
    validate(LIBRARY_FILE, &library, false);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "wgsl") && name != LIBRARY_FILE {
            let text = std::fs::read_to_string(&path).unwrap();
            let shader = Shader::ALL
                .into_iter()
                .find(|s| format!("{}.wgsl", s.name()) == name)
                .unwrap_or_else(|| panic!("shaders/{name} is not in the shader table"));
            let compiled = match shader.builds_on() {
                Some(base) => format!("{}{text}", base.source()),
                None if shader.uses_unary() => format!("{library}{text}"),
                None => text,
            };
            validate(&name, &compiled, true);
            count += 1;
        }
    }
    assert_eq!(
        count,
        Shader::ALL.len(),
        "shaders/ holds {count} kernel files but the table lists {}",
        Shader::ALL.len()
    );
}

#[test]
fn the_shader_table_matches_the_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let library = std::fs::read_to_string(dir.join(LIBRARY_FILE)).unwrap();
    assert_eq!(
        library, UNARY_LIBRARY,
        "{LIBRARY_FILE} differs from the compiled-in library"
    );
    for shader in Shader::ALL {
        let path = dir.join(format!("{}.wgsl", shader.name()));
        let on_disk =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            on_disk,
            shader.file(),
            "{} differs from the compiled-in source",
            path.display()
        );
        let prefix = match shader.builds_on() {
            Some(base) => base.source(),
            None if shader.uses_unary() => UNARY_LIBRARY,
            None => "",
        };
        assert_eq!(shader.source(), format!("{prefix}{on_disk}"));
        validate(shader.name(), shader.source(), true);
    }
}

/// The launchers' declarations (`kernels::specializations`, which the portability checks
/// compile) name every entry point of every shader, once, and only overrides the shader has;
/// debug builds check each pipeline a launcher makes against them, so they cover what runs.
/// A file compiled after another family's ([`Shader::builds_on`]) owns only its own entry points.
#[test]
fn the_launchers_declare_every_entry_point_and_only_real_overrides() {
    let declared = specializations::all();
    for shader in Shader::ALL {
        let module = naga::front::wgsl::parse_str(shader.source()).unwrap();
        let inherited: Vec<String> = shader.builds_on().map_or(Vec::new(), |base| {
            let base = naga::front::wgsl::parse_str(base.source()).unwrap();
            base.entry_points.into_iter().map(|ep| ep.name).collect()
        });
        let overrides: Vec<&str> = module
            .overrides
            .iter()
            .filter_map(|(_, o)| o.name.as_deref())
            .collect();
        let own = module
            .entry_points
            .iter()
            .filter(|ep| !inherited.contains(&ep.name));
        for ep in own {
            let found: Vec<_> = declared
                .iter()
                .filter(|d| d.shader == shader && d.entry == ep.name)
                .collect();
            assert_eq!(
                found.len(),
                1,
                "{}.wgsl::{} is declared {} times by the launchers",
                shader.name(),
                ep.name,
                found.len()
            );
            for o in &found[0].overrides {
                assert!(
                    overrides.contains(&o.name) && o.name != "WG",
                    "{}.wgsl::{} declares override {}, which the shader lacks",
                    shader.name(),
                    ep.name,
                    o.name
                );
                assert!(!o.values.is_empty());
            }
        }
        for d in declared.iter().filter(|d| d.shader == shader) {
            assert!(
                module.entry_points.iter().any(|ep| ep.name == d.entry),
                "{}.wgsl has no entry point {}",
                shader.name(),
                d.entry
            );
        }
    }
    // The override sets were generated from the launchers' own functions: the product kernels'
    // activation takes every unary op and none, attention every head size up to the maximum.
    let v4 = specializations::of(Shader::Matmul, "matmul_v4_wide").unwrap();
    let act = v4.overrides.iter().find(|o| o.name == "ACT").unwrap();
    assert_eq!(
        act.values.len(),
        sinter::sinter_ops::elementwise::UnaryOp::ALL.len() + 1
    );
    let attention = specializations::of(Shader::Attention, "attention_forward").unwrap();
    let dims = attention
        .overrides
        .iter()
        .find(|o| o.name == "HEAD_DIM")
        .unwrap();
    assert_eq!(
        dims.values.len(),
        sinter::sinter_ops::attention::MAX_HEAD_DIM
    );
}

/// Issue 15 item 4: WGSL lets a driver assume NaN never occurs (Metal compiles with fast math,
/// DX12 without IEEE strictness), so a check that relies on NaN failing a float comparison may
/// pass NaN on such a driver. The functions that turn a stored float into an index or a class,
/// and ReLU (which must pass NaN through, not turn it into 0), decide on the value's bits: each
/// must bitcast its f32 to u32. (lavapipe keeps IEEE semantics, so the kernels' NaN tests alone
/// could not see the difference.)
#[test]
fn validity_checks_test_bits_not_nan_comparisons() {
    let checks = [
        (Shader::Loss, "target_of"),
        (Shader::Embedding, "id_of"),
        (Shader::Select, "position"),
        (Shader::Elementwise, "relu"),
    ];
    for (shader, function) in checks {
        let module = naga::front::wgsl::parse_str(shader.source()).unwrap();
        let (_, f) = module
            .functions
            .iter()
            .find(|(_, f)| f.name.as_deref() == Some(function))
            .unwrap_or_else(|| panic!("{}.wgsl has no function {function}", shader.name()));
        let bitcasts = f.expressions.iter().any(|(_, e)| {
            matches!(
                e,
                naga::Expression::As {
                    kind: naga::ScalarKind::Uint,
                    convert: None,
                    ..
                }
            )
        });
        assert!(
            bitcasts,
            "{}.wgsl::{function} decides without looking at the bits (bitcast<u32>) of its \
             float: a driver that assumes no NaN may let NaN through",
            shader.name()
        );
    }
}
