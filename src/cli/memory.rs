//! The memory a backend has, measured for the planner's check before step 1: RAM available to
//! the CPU backend and software adapters (/proc/meminfo), or `SINTER_MEMORY_LIMIT` when set.

use super::{CliError, Result};
use sinter_model::{Backend, MemoryLimit, ModelError};

/// The variable that overrides the measured limit: bytes with an optional K, M, G or T suffix
/// (powers of 1024), or `none` to check nothing.
pub const ENV: &str = "SINTER_MEMORY_LIMIT";

/// Bytes of `2G`, `512M`, `1073741824`; `None` for `none`.
fn parse(s: &str) -> std::result::Result<Option<u64>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let t = t.trim_end_matches(['B', 'b']).trim_end_matches(['i']);
    let (digits, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    match digits.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(Some((v * (1u64 << shift) as f64) as u64)),
        _ => Err(format!(
            "{ENV}={s:?}: expected a size such as 8G, 512M or 1073741824 (bytes), or none"
        )),
    }
}

/// `MemAvailable` of /proc/meminfo in bytes: what the kernel can give without swapping.
fn ram_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Whether `backend`'s memory is the host's RAM: the CPU backend, or a software adapter.
fn uses_host_ram(backend: &Backend) -> bool {
    match backend {
        Backend::Cpu(_) => true,
        #[allow(unreachable_patterns)]
        Backend::Gpu(g) => g.gpu.report.class == sinter_device::AdapterClass::Software,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// The limit the planner checks programs against on `backend`: `SINTER_MEMORY_LIMIT` when set;
/// else the RAM available for the CPU backend and software adapters. A hardware GPU's memory is
/// not reported by wgpu, so there only the adapter's buffer limits are checked (by the planner).
pub fn limit_for(backend: &Backend) -> Result<Option<MemoryLimit>> {
    if let Ok(s) = std::env::var(ENV) {
        return Ok(parse(&s)
            .map_err(CliError::Usage)?
            .map(|bytes| MemoryLimit {
                bytes,
                source: format!("{ENV} allows {s}"),
            }));
    }
    if !uses_host_ram(backend) {
        return Ok(None);
    }
    Ok(ram_available().map(|bytes| MemoryLimit {
        bytes,
        source: format!(
            "{} has {:.1} GiB of RAM available (MemAvailable)",
            match backend {
                Backend::Cpu(_) => "the CPU backend",
                _ => "the software adapter",
            },
            bytes as f64 / (1u64 << 30) as f64
        ),
    }))
}

/// A plan refused for memory, with the options that shrink it (`--batch 64`, `--context 128`).
pub fn explain(e: ModelError, lower: &[(&str, usize)]) -> CliError {
    match e {
        ModelError::OutOfMemory { .. } => {
            let options: Vec<String> = lower
                .iter()
                .map(|(o, now)| format!("{o} (now {now})"))
                .collect();
            CliError::Usage(format!(
                "{e}; nothing was allocated: lower {} (or set {ENV})",
                options.join(" or ")
            ))
        }
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse("1024"), Ok(Some(1024)));
        assert_eq!(parse("2K"), Ok(Some(2048)));
        assert_eq!(parse("1.5G"), Ok(Some(3 << 29)));
        assert_eq!(parse("8GiB"), Ok(Some(8 << 30)));
        assert_eq!(parse("none"), Ok(None));
        assert!(parse("lots").is_err() && parse("-1G").is_err());
    }
}
