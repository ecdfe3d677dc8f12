//! Every WGSL file in `shaders/` parses and validates with naga, with no adapter needed, and the
//! device crate's shader table lists exactly the files that exist.

use sinter::sinter_device::Shader;
use std::path::Path;

fn validate(name: &str, source: &str) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("shaders/{name}: {}", e.emit_to_string(source)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("shaders/{name}: {}", e.emit_to_string(source)));
    assert!(
        !module.entry_points.is_empty(),
        "shaders/{name} has no entry point"
    );
}

#[test]
fn every_shader_file_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            validate(&name, &std::fs::read_to_string(&path).unwrap());
            count += 1;
        }
    }
    assert_eq!(
        count,
        Shader::ALL.len(),
        "shaders/ holds {count} .wgsl files but the table lists {}",
        Shader::ALL.len()
    );
}

#[test]
fn the_shader_table_matches_the_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for shader in Shader::ALL {
        let path = dir.join(format!("{}.wgsl", shader.name()));
        let on_disk =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            on_disk,
            shader.source(),
            "{} differs from the compiled-in source",
            path.display()
        );
        validate(shader.name(), shader.source());
    }
}
