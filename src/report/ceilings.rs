//! A device's ceilings (peak GFLOP/s and GB/s) for reports: named by probing the host (the CPU
//! model from /proc/cpuinfo, or the adapter), cached one line per device in the user's cache.

use sinter_model::profile::{self, Ceilings};
use sinter_model::Backend;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Names the device a backend runs on, for the ceilings cache: the CPU model and thread count,
/// or the adapter's name, API and driver.
pub fn device_key(backend: &Backend) -> String {
    let key = match backend {
        Backend::Cpu(_) => {
            let model = std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("model name"))
                        .and_then(|l| l.split_once(':'))
                        .map(|(_, v)| v.trim().to_string())
                })
                .unwrap_or_else(|| std::env::consts::ARCH.to_string());
            // An unoptimized build computes slower: its ceilings are its own.
            let build = if cfg!(debug_assertions) {
                ", debug build"
            } else {
                ""
            };
            format!(
                "cpu {model} ({} threads{build})",
                rayon::current_num_threads()
            )
        }
        Backend::Gpu(g) => {
            let r = &g.gpu.report;
            format!("gpu {} ({:?}, {})", r.name, r.backend, r.driver)
        }
    };
    // One line per device, fields split by tabs.
    key.replace(['\t', '\n', '\r'], " ")
}

/// Overrides the folder of sinter's cache (tests use it to stay out of the user's cache without
/// moving Mesa's shader cache, which also follows `XDG_CACHE_HOME`).
pub const CACHE_DIR_ENV: &str = "SINTER_CACHE_DIR";

/// `$SINTER_CACHE_DIR/ceilings.txt`, else `$XDG_CACHE_HOME/sinter/ceilings.txt`, else
/// `~/.cache/sinter/ceilings.txt`.
pub fn ceilings_cache_file() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let dir = match var(CACHE_DIR_ENV) {
        Some(d) => PathBuf::from(d),
        None => var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))?
            .join("sinter"),
    };
    Some(dir.join("ceilings.txt"))
}

/// The cached ceilings of the device named `key`. The file holds one line per device:
/// `key<TAB>GFLOP/s<TAB>GB/s`.
fn cached(file: &Path, key: &str) -> Option<Ceilings> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut f = line.split('\t');
        (f.next()? == key).then_some(())?;
        let gflops = f.next()?.parse().ok()?;
        let gbps = f.next()?.parse().ok()?;
        Some(Ceilings { gflops, gbps })
    })
}

/// Replaces the line for `key`; errors are reported as strings because a cache is optional.
fn store(file: &Path, key: &str, c: &Ceilings) -> std::result::Result<(), String> {
    let old = std::fs::read_to_string(file).unwrap_or_default();
    let mut text: String = old
        .lines()
        .filter(|l| l.split('\t').next() != Some(key))
        .map(|l| format!("{l}\n"))
        .collect();
    let _ = writeln!(text, "{key}\t{:.3}\t{:.3}", c.gflops, c.gbps);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(file, text).map_err(|e| e.to_string())
}

/// Where the ceilings of a report came from.
#[derive(Clone, Debug, PartialEq)]
pub enum CeilingSource {
    /// Read from this cache file.
    Cached(PathBuf),
    /// Measured now and written to the cache.
    Measured(PathBuf),
    /// Measured now; the cache could not be written (the reason).
    Uncached(String),
}

/// The ceilings of `backend`'s device: from the cache unless `refresh`, else measured (a
/// second or so, [`profile::calibrate`]) and cached. A cache that cannot be written is not an
/// error.
pub fn ceilings(
    backend: &Backend,
    refresh: bool,
) -> sinter_model::Result<(Ceilings, CeilingSource)> {
    let key = device_key(backend);
    let file = ceilings_cache_file();
    if !refresh {
        if let Some(c) = file.as_deref().and_then(|f| cached(f, &key)) {
            return Ok((c, CeilingSource::Cached(file.expect("read above"))));
        }
    }
    let measured = profile::calibrate(backend)?;
    let source = match file {
        None => {
            CeilingSource::Uncached("no cache directory (HOME and XDG_CACHE_HOME unset)".into())
        }
        Some(f) => match store(&f, &key, &measured) {
            Ok(()) => CeilingSource::Measured(f),
            Err(e) => CeilingSource::Uncached(format!("{}: {e}", f.display())),
        },
    };
    Ok((measured, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceilings_cache_keeps_one_line_per_device() {
        let dir = std::env::temp_dir().join(format!("sinter-ceilings-{}", std::process::id()));
        let file = dir.join("ceilings.txt");
        let (a, b) = (
            Ceilings {
                gflops: 1.5,
                gbps: 2.5,
            },
            Ceilings {
                gflops: 3.0,
                gbps: 4.0,
            },
        );
        store(&file, "cpu x (2 threads)", &a).unwrap();
        store(&file, "gpu y (Vulkan, z)", &a).unwrap();
        store(&file, "cpu x (2 threads)", &b).unwrap();
        assert_eq!(cached(&file, "cpu x (2 threads)"), Some(b));
        assert_eq!(cached(&file, "gpu y (Vulkan, z)"), Some(a));
        assert_eq!(cached(&file, "gpu other"), None);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
