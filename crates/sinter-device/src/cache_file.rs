//! The versioned JSON files sinter keeps in its cache folder (the canary's verdicts, the tuner's
//! choices): `{"version": V, "pairs": {…}}`, read whole, validated, and written atomically.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Overrides the folder the cache files are kept in.
pub const CACHE_DIR_ENV: &str = "SINTER_CACHE_DIR";

/// The folder the cache files live in: `SINTER_CACHE_DIR`, else the platform cache folder's
/// `sinter`; `None` where the platform has none.
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os(CACHE_DIR_ENV) {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => dirs::cache_dir().map(|d| d.join("sinter")),
    }
}

/// The `pairs` of a version-`version` file. An absent file is `Ok` and empty; one that cannot be
/// read, is not JSON, has another version, or (when `checksummed`) whose checksum does not match
/// its pairs is `Err` with the reason, for the caller to warn about once.
pub(crate) fn read(
    file: &Path,
    version: u64,
    checksummed: bool,
) -> Result<BTreeMap<String, Value>, String> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e.to_string()),
    };
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON ({e})"))?;
    if value["version"].as_u64() != Some(version) {
        return Err(format!("not a version-{version} file"));
    }
    let pairs = value["pairs"]
        .as_object()
        .ok_or_else(|| "no \"pairs\" object".to_string())?;
    if checksummed && value["checksum"].as_str() != Some(&checksum(&value["pairs"])) {
        return Err("its checksum does not match its contents".into());
    }
    Ok(pairs.clone().into_iter().collect())
}

/// Writes `pairs` as a version-`version` file (with a checksum when `checksummed`), through a
/// temporary file renamed over the old one, so a reader never sees half a file.
pub(crate) fn write(
    file: &Path,
    version: u64,
    checksummed: bool,
    pairs: &BTreeMap<String, Value>,
) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let pairs = json!(pairs);
    let mut doc = json!({ "version": version, "pairs": pairs });
    if checksummed {
        // Of the pairs as a reader will parse them: serde_json does not parse every float back
        // to the same bits it printed, so the checksum is taken after the same round trip.
        let text = pairs.to_string();
        let parsed: Value = serde_json::from_str(&text).map_err(std::io::Error::other)?;
        doc["checksum"] = json!(checksum(&parsed));
    }
    let text = serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = file.with_file_name(format!("{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, file)
}

/// FNV-1a (64 bits) of the compact JSON of `v`, in hex. serde_json keeps object keys sorted, so
/// equal values give equal text.
fn checksum(v: &Value) -> String {
    let text = v.to_string();
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/tmp/cache_file")
            .join(name);
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_written_file_reads_back_and_a_changed_one_is_refused() {
        let file = dir("round_trip").join("x.json");
        assert_eq!(read(&file, 1, true), Ok(BTreeMap::new()));
        let pairs: BTreeMap<String, Value> = [("a".to_string(), json!({"choice": "v4"}))].into();
        write(&file, 1, true, &pairs).unwrap();
        assert_eq!(read(&file, 1, true), Ok(pairs.clone()));
        let err = read(&file, 2, true).unwrap_err();
        assert!(err.contains("version-2"), "{err}");
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replace("v4", "v3")).unwrap();
        let err = read(&file, 1, true).unwrap_err();
        assert!(err.contains("checksum"), "{err}");
        std::fs::write(&file, "{ not json").unwrap();
        assert!(read(&file, 1, true).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn floats_that_do_not_parse_back_exactly_keep_the_checksum_valid() {
        let file = dir("floats").join("x.json");
        // Timings as the tuner stores them: many digits, some that serde_json's default
        // parser rounds differently from the printed shortest form.
        let times: BTreeMap<String, f64> = (0..200)
            .map(|i| {
                (
                    format!("v{i}"),
                    1.0 / (i as f64 + 3.0) * 1e4 + 0.1 * i as f64,
                )
            })
            .collect();
        let pairs: BTreeMap<String, Value> = [("a".to_string(), json!(times))].into();
        write(&file, 1, true, &pairs).unwrap();
        let read_back = read(&file, 1, true).expect("the checksum holds");
        assert_eq!(read_back["a"].as_object().unwrap().len(), 200);
    }
}
