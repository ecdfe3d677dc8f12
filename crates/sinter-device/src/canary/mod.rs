//! The start-up canary: the first time an (adapter, driver) pair is seen, each kernel variant the
//! engine chooses between runs a tiny launch with a known answer; a variant that fails is
//! disabled for that pair with one warning, and the verdicts are kept in a cache file.
//!
//! Drivers miscompile shaders (burn's users met it: burn#4355, burn#3217); a known answer caught
//! once at start-up costs milliseconds, a wrong kernel found in training costs the run. The
//! variants checked (`known_answers.rs`) are those the engine can swap for one another: the matrix
//! products (v1–v6), the rows and tree kernels of softmax, cross-entropy and the norms, the
//! reduction kernels (rows, tree, subgroup), convolution's rows per invocation
//! (`conv2d_forward TM=8`, …) and the attention layouts.
//! The cache is `canary.json` in the platform cache folder (`SINTER_CACHE_DIR` overrides it),
//! keyed by adapter, backend, driver and a fingerprint of the kernels; it is written atomically, and a damaged one is ignored
//! with a warning and rewritten.

mod known_answers;

use crate::adapter::AdapterReport;
use crate::gpu::Gpu;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

pub use crate::cache_file::{cache_dir, CACHE_DIR_ENV};
/// The cache file's name in that folder.
pub const CACHE_FILE: &str = "canary.json";
/// Version 2: the verdicts cover every variant family, not only the matrix products.
const CACHE_VERSION: u64 = 2;

/// What the canary found for one (adapter, driver) pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The variants that passed their known-answer run.
    pub passed: Vec<String>,
    /// The variants that failed, each with the reason (an error, or the first wrong value).
    pub disabled: BTreeMap<String, String>,
    /// Whether this came from the cache file rather than from runs just now.
    pub cached: bool,
}

/// What identifies an (adapter, driver) pair in the cache, with the kernels' fingerprint: a
/// verdict (or tuning choice) made for other kernels, by another build, is not reused.
pub fn pair_key(report: &AdapterReport) -> String {
    format!(
        "{} | {:?} | {} | kernels {:016x}",
        report.name,
        report.backend,
        report.driver,
        kernels_fingerprint()
    )
}

/// A 64-bit FNV-1a hash of every shader family's WGSL: it changes whenever a kernel, or the set
/// of variants, does.
pub fn kernels_fingerprint() -> u64 {
    static HASH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HASH.get_or_init(|| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for shader in crate::Shader::ALL {
            for &byte in shader.source().as_bytes() {
                h = (h ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    })
}

/// The verdict for `gpu`'s pair: from the cache in `dir` when it has one, else from known-answer
/// runs now, then stored there (a cache that cannot be read or written costs a warning, never
/// the run). `dir` `None`: run, and keep nothing.
pub fn verdict(gpu: &Gpu, dir: Option<&Path>) -> Verdict {
    let key = pair_key(&gpu.report);
    let file = dir.map(|d| d.join(CACHE_FILE));
    let mut entries = file.as_deref().map(read_cache).unwrap_or_default();
    if let Some(v) = entries.get(&key) {
        if let Some(verdict) = parse_entry(v) {
            return verdict;
        }
    }
    let verdict = run(gpu);
    for (variant, why) in &verdict.disabled {
        log::warn!(
            "{variant} is disabled on {}: its known-answer run failed ({why})",
            gpu.report.name
        );
    }
    if let Some(file) = &file {
        entries.insert(key, entry(&verdict));
        if let Err(e) = write_cache(file, &entries) {
            log::warn!(
                "could not keep the canary's verdict in {}: {e}",
                file.display()
            );
        }
    }
    verdict
}

/// The verdict cached in `dir` for the pair of `report`, if any (runs nothing).
pub fn cached_verdict(report: &AdapterReport, dir: &Path) -> Option<Verdict> {
    read_cache(&dir.join(CACHE_FILE))
        .get(&pair_key(report))
        .and_then(parse_entry)
}

/// Runs each variant's known answer (`canary/known_answers.rs`) on `gpu`.
pub fn run(gpu: &Gpu) -> Verdict {
    let mut verdict = Verdict {
        passed: Vec::new(),
        disabled: BTreeMap::new(),
        cached: false,
    };
    for (name, result) in gpu.with_every_variant(|| known_answers::run_all(gpu)) {
        match result {
            Ok(()) => verdict.passed.push(name),
            Err(why) => {
                verdict.disabled.insert(name, why);
            }
        }
    }
    verdict
}

fn entry(v: &Verdict) -> Value {
    json!({ "passed": v.passed, "disabled": v.disabled })
}

fn parse_entry(v: &Value) -> Option<Verdict> {
    let passed = v["passed"]
        .as_array()?
        .iter()
        .map(|p| p.as_str().map(String::from))
        .collect::<Option<Vec<_>>>()?;
    let disabled = v["disabled"]
        .as_object()?
        .iter()
        .map(|(k, why)| Some((k.clone(), why.as_str()?.to_string())))
        .collect::<Option<BTreeMap<_, _>>>()?;
    Some(Verdict {
        passed,
        disabled,
        cached: true,
    })
}

/// The cache's entries; an absent file is empty, a damaged or foreign one is empty with a
/// warning (and is replaced at the next write).
fn read_cache(file: &Path) -> BTreeMap<String, Value> {
    crate::cache_file::read(file, CACHE_VERSION, false).unwrap_or_else(|why| {
        log::warn!("ignoring the canary cache {}: {why}", file.display());
        BTreeMap::new()
    })
}

/// Writes the cache atomically ([`crate::cache_file::write`]).
fn write_cache(file: &Path, entries: &BTreeMap<String, Value>) -> std::io::Result<()> {
    crate::cache_file::write(file, CACHE_VERSION, false, entries)
}
