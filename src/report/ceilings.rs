//! A device's ceilings (peak GFLOP/s and GB/s) for reports: named by probing the host (the CPU
//! model from /proc/cpuinfo, or the adapter), cached one line per device in the user's cache.
//
// The cache keeps, beside each device's ceilings, when they were measured, how loaded the host
// was and which build measured them (for the CPU, with which GEMM library). They are measured
// again when older than `MAX_AGE_DAYS`, measured under load, measured by another build, or when
// a profiled row beats them; a row that still beats a fresh measurement raises them, so no row
// of a report shows more than 100%.

use crate::report::table::KernelSummary;
use sinter_model::profile::{self, Ceilings};
use sinter_model::Backend;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Cached ceilings older than this are measured again (clocks, drivers and neighbours change).
pub const MAX_AGE_DAYS: u64 = 7;

/// Ceilings measured while other tasks kept at least this share of the cores runnable are used
/// for the report at hand and measured again the next time.
pub const LOADED_SHARE: f64 = 0.25;

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
    one_field(&key)
}

/// Which build measures: sinter's version and the time its executable was written (a rebuild
/// may change the kernels), and for the CPU the GEMM library its products run on.
pub fn build_stamp(backend: &Backend) -> String {
    let built = std::env::current_exe()
        .and_then(std::fs::metadata)
        .and_then(|m| m.modified())
        .map_or(0, unix_secs);
    let mut stamp = format!("sinter {} built {built}", env!("CARGO_PKG_VERSION"));
    if let Backend::Cpu(_) = backend {
        let _ = write!(stamp, ", {}", sinter_model::cpu::matmul::gemm_library());
    }
    one_field(&stamp)
}

/// `text` with tabs and line breaks made spaces, so it fits in one field of one cache line.
fn one_field(text: &str) -> String {
    text.replace(['\t', '\n', '\r'], " ")
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
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

/// How busy the host was while ceilings were measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostLoad {
    /// The one-minute load average (/proc/loadavg), which also counts this process's own
    /// recent work (the profiled steps).
    pub loadavg_1min: f64,
    /// Tasks of other processes runnable while measuring: the mean over a few samples of
    /// /proc/loadavg's running count, less this process's reading thread.
    pub others_running: f64,
    /// The host's logical cores.
    pub cores: usize,
}

impl HostLoad {
    /// Samples /proc/loadavg a few times over 50 ms; None where it does not exist.
    pub fn sample() -> Option<HostLoad> {
        let read = || -> Option<(f64, f64)> {
            let text = std::fs::read_to_string("/proc/loadavg").ok()?;
            let mut f = text.split_whitespace();
            let avg = f.next()?.parse().ok()?;
            let running: f64 = f.nth(2)?.split('/').next()?.parse().ok()?;
            Some((avg, (running - 1.0).max(0.0)))
        };
        let mut samples = Vec::new();
        for i in 0..5 {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
            samples.push(read()?);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Some(HostLoad {
            loadavg_1min: samples[0].0,
            others_running: samples.iter().map(|s| s.1).sum::<f64>() / samples.len() as f64,
            cores,
        })
    }

    /// Whether other work kept at least [`LOADED_SHARE`] of the cores busy.
    pub fn loaded(&self) -> bool {
        self.others_running >= LOADED_SHARE * self.cores.max(1) as f64
    }
}

/// One device's line of the cache:
/// `key  GFLOP/s  GB/s  measured (unix s)  load average  other runnable tasks  cores  build`,
/// tab-separated, `-` for a load that could not be read.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheEntry {
    /// The ceilings.
    pub ceilings: Ceilings,
    /// When they were measured (seconds since 1970); None on a line of an older sinter.
    pub measured_at: Option<u64>,
    /// The host's load while measuring, where known.
    pub load: Option<HostLoad>,
    /// The [`build_stamp`] of the build that measured them; empty on a line of an older sinter.
    pub build: String,
}

const CACHE_HEADER: &str = "# sinter ceilings: device\tGFLOP/s\tGB/s\tmeasured (unix s)\t\
                            load average 1 min\tother runnable tasks\tcores\tbuild";

/// Parses one line (without its key): the current form, or an older sinter's
/// `GFLOP/s  GB/s`; None when it is neither.
fn parse_entry(fields: &[&str]) -> Option<CacheEntry> {
    let num = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
    let ceilings = Ceilings {
        gflops: num(fields.first()?)?,
        gbps: num(fields.get(1)?)?,
    };
    match fields.len() {
        2 => Some(CacheEntry {
            ceilings,
            measured_at: None,
            load: None,
            build: String::new(),
        }),
        7 => {
            let load = match (fields[3], fields[4]) {
                ("-", _) | (_, "-") => None,
                (avg, others) => Some(HostLoad {
                    loadavg_1min: num(avg)?,
                    others_running: num(others)?,
                    cores: fields[5].parse().ok()?,
                }),
            };
            Some(CacheEntry {
                ceilings,
                measured_at: Some(fields[2].parse().ok()?),
                load,
                build: fields[6].to_string(),
            })
        }
        _ => None,
    }
}

fn format_entry(key: &str, e: &CacheEntry) -> String {
    let (avg, others, cores) = match e.load {
        Some(l) => (
            format!("{:.2}", l.loadavg_1min),
            format!("{:.2}", l.others_running),
            l.cores.to_string(),
        ),
        None => ("-".into(), "-".into(), "-".into()),
    };
    format!(
        "{key}\t{:.3}\t{:.3}\t{}\t{avg}\t{others}\t{cores}\t{}",
        e.ceilings.gflops,
        e.ceilings.gbps,
        e.measured_at.unwrap_or(0),
        e.build
    )
}

/// Every device's entry in `file`, in file order. An absent file is empty; a file that cannot
/// be read, or a line that cannot be parsed, is skipped with a warning (and dropped at the next
/// write).
fn read_cache(file: &Path) -> Vec<(String, CacheEntry)> {
    let text = match std::fs::read(file) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                log::warn!(
                    "ignoring the ceilings cache {}: not text; it will be rewritten",
                    file.display()
                );
                return Vec::new();
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            log::warn!("ignoring the ceilings cache {}: {e}", file.display());
            return Vec::new();
        }
    };
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        match parse_entry(&fields[1..]) {
            Some(e) => entries.push((fields[0].to_string(), e)),
            None => log::warn!(
                "ignoring line {} of the ceilings cache {}: not a line of ceilings",
                i + 1,
                file.display()
            ),
        }
    }
    entries
}

/// Replaces the entry for `key`, dropping lines that did not parse, through a temporary file
/// renamed over the old one; errors are strings because a cache is optional.
fn store(file: &Path, key: &str, entry: &CacheEntry) -> std::result::Result<(), String> {
    let mut text = format!("{CACHE_HEADER}\n");
    for (k, e) in read_cache(file) {
        if k != key {
            let _ = writeln!(text, "{}", format_entry(&k, &e));
        }
    }
    let _ = writeln!(text, "{}", format_entry(key, entry));
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let tmp = file.with_extension(format!("txt.tmp{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, file).map_err(|e| e.to_string())
}

/// Why `entry` must be measured again at time `now` by the build stamped `build`, or None
/// when it can be used.
pub fn stale_reason(entry: &CacheEntry, now: u64, build: &str) -> Option<String> {
    let Some(at) = entry.measured_at else {
        return Some("the cached ones were written by an older sinter (no date)".into());
    };
    if at > now + 3600 {
        return Some("the cached ones are dated in the future".into());
    }
    let days = now.saturating_sub(at) as f64 / 86400.0;
    if days > MAX_AGE_DAYS as f64 {
        return Some(format!(
            "the cached ones are {days:.0} days old (over {MAX_AGE_DAYS})"
        ));
    }
    if entry.build != build {
        return Some(format!(
            "the cached ones were measured by another build ({})",
            if entry.build.is_empty() {
                "unknown"
            } else {
                &entry.build
            }
        ));
    }
    match entry.load {
        Some(l) if l.loaded() => Some(format!(
            "the cached ones were measured under load ({:.1} other tasks running on {} cores)",
            l.others_running, l.cores
        )),
        _ => None,
    }
}

/// The fastest rows of a profile: what the ceilings must not fall below.
#[derive(Clone, Debug, PartialEq)]
pub struct Fastest {
    /// The highest GFLOP/s of any row, and that row (`kernel · tag`).
    pub gflops: (f64, String),
    /// The highest GB/s of any row, and that row.
    pub gbps: (f64, String),
}

impl Fastest {
    /// The fastest of `rows` (empty names and zero rates when there are none).
    pub fn of(rows: &[KernelSummary]) -> Fastest {
        let best = |rate: fn(&KernelSummary) -> f64| {
            rows.iter()
                .map(|r| (rate(r), format!("{} · {}", r.kernel, r.tag)))
                .filter(|(v, _)| v.is_finite())
                .fold((0.0, String::new()), |a, b| if b.0 > a.0 { b } else { a })
        };
        Fastest {
            gflops: best(KernelSummary::gflops),
            gbps: best(KernelSummary::gbps),
        }
    }

    /// What in `c` a row beats, in words, or None when no row does.
    pub fn beats(&self, c: &Ceilings) -> Option<String> {
        let mut beaten = Vec::new();
        if self.gflops.0 > c.gflops {
            beaten.push(format!(
                "{} ran at {:.2} GFLOP/s, above {:.2}",
                self.gflops.1, self.gflops.0, c.gflops
            ));
        }
        if self.gbps.0 > c.gbps {
            beaten.push(format!(
                "{} moved {:.2} GB/s, above {:.2}",
                self.gbps.1, self.gbps.0, c.gbps
            ));
        }
        (!beaten.is_empty()).then(|| beaten.join("; "))
    }

    /// `c` raised to these rates where they are higher.
    pub fn raise(&self, c: &Ceilings) -> Ceilings {
        Ceilings {
            gflops: c.gflops.max(self.gflops.0),
            gbps: c.gbps.max(self.gbps.0),
        }
    }
}

/// The entry to cache after measuring `new`: a ceiling is the best the device was seen to do,
/// so where `old` was measured by the same build and is not too old, each figure is the higher
/// of the two. The date and load are the new measurement's.
pub fn merge(old: Option<&CacheEntry>, new: CacheEntry, now: u64) -> CacheEntry {
    let comparable = old.filter(|o| {
        o.build == new.build
            && o.measured_at.is_some_and(|at| {
                at <= now + 3600 && now.saturating_sub(at) <= MAX_AGE_DAYS * 86400
            })
    });
    match comparable {
        Some(o) => CacheEntry {
            ceilings: Ceilings {
                gflops: o.ceilings.gflops.max(new.ceilings.gflops),
                gbps: o.ceilings.gbps.max(new.ceilings.gbps),
            },
            ..new
        },
        None => new,
    }
}

/// The ceilings of a report, and where they came from.
#[derive(Clone, Debug, PartialEq)]
pub struct CeilingReport {
    /// The ceilings to compare the rows against.
    pub ceilings: Ceilings,
    /// The cache file read or written, or why there is none.
    pub cache: std::result::Result<PathBuf, String>,
    /// None when read from the cache; else why they were measured now.
    pub measured_because: Option<String>,
    /// When the cached figures were measured (seconds since 1970), where known.
    pub measured_at: Option<u64>,
    /// The host's load while measuring, where known.
    pub load: Option<HostLoad>,
    /// Set when profiled rows beat a fresh measurement: which, the ceilings being raised to them.
    pub raised: Option<String>,
}

impl CeilingReport {
    /// One line for a report: the figures, then where they came from.
    pub fn describe(&self, now: u64) -> String {
        let c = &self.ceilings;
        let mut s = format!(
            "ceilings: {:.2} GFLOP/s (1024³ matrix product), {:.2} GB/s (64 MiB copy); ",
            c.gflops, c.gbps
        );
        match (&self.measured_because, &self.cache) {
            (None, Ok(f)) => {
                let _ = write!(s, "cached in {}", f.display());
                if let Some(at) = self.measured_at {
                    let hours = now.saturating_sub(at) as f64 / 3600.0;
                    let _ = write!(s, ", measured {hours:.1} h ago");
                }
            }
            (Some(why), Ok(f)) => {
                let _ = write!(s, "measured now ({why}), cached in {}", f.display());
            }
            (Some(why), Err(e)) => {
                let _ = write!(s, "measured now ({why}), not cached: {e}");
            }
            (None, Err(e)) => {
                let _ = write!(s, "not cached: {e}");
            }
        }
        if let Some(l) = self.load {
            let _ = write!(
                s,
                "; load {:.2} ({:.1} other tasks running on {} cores{})",
                l.loadavg_1min,
                l.others_running,
                l.cores,
                if l.loaded() {
                    ": measured again next time"
                } else {
                    ""
                }
            );
        }
        if let Some(r) = &self.raised {
            let _ = write!(s, "\nceilings raised to the fastest rows: {r}");
        }
        s
    }
}

/// The ceilings of `backend`'s device, never below the `fastest` profiled rows: from the cache
/// when it holds a fresh entry for this device and build (see [`stale_reason`]) that no row
/// beats and `refresh` is off; else measured now (a second or so, [`profile::calibrate`]),
/// merged with the cached entry ([`merge`]; replacing it when `refresh`), raised to rows that
/// still beat them, and cached.
/// A cache that cannot be written is not an error.
pub fn ceilings(
    backend: &Backend,
    refresh: bool,
    fastest: &Fastest,
) -> sinter_model::Result<CeilingReport> {
    let key = device_key(backend);
    let build = build_stamp(backend);
    let now = unix_secs(SystemTime::now());
    let file = ceilings_cache_file()
        .ok_or_else(|| "no cache directory (HOME and XDG_CACHE_HOME unset)".to_string());
    let old = file
        .as_ref()
        .ok()
        .and_then(|f| read_cache(f).into_iter().find(|(k, _)| *k == key))
        .map(|(_, e)| e);
    let why = match &old {
        _ if refresh => "asked for".to_string(),
        None => "none cached for this device".to_string(),
        Some(e) => match stale_reason(e, now, &build).or_else(|| fastest.beats(&e.ceilings)) {
            Some(why) => why,
            None => {
                return Ok(CeilingReport {
                    ceilings: e.ceilings,
                    cache: file,
                    measured_because: None,
                    measured_at: e.measured_at,
                    load: e.load,
                    raised: None,
                })
            }
        },
    };
    let load = HostLoad::sample();
    let measured = profile::calibrate(backend)?;
    let new = CacheEntry {
        ceilings: measured,
        measured_at: Some(now),
        load,
        build,
    };
    // Asked to measure again: the new figures replace the old ones.
    let mut entry = if refresh {
        new
    } else {
        merge(old.as_ref(), new, now)
    };
    let raised = fastest.beats(&entry.ceilings);
    entry.ceilings = fastest.raise(&entry.ceilings);
    let cache = match file {
        Ok(f) => store(&f, &key, &entry)
            .map(|()| f.clone())
            .map_err(|e| format!("{}: {e}", f.display())),
        Err(e) => Err(e),
    };
    Ok(CeilingReport {
        ceilings: entry.ceilings,
        cache,
        measured_because: Some(why),
        measured_at: Some(now),
        load,
        raised,
    })
}

/// Seconds since 1970 now, for [`CeilingReport::describe`].
pub fn now_unix() -> u64 {
    unix_secs(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86400;
    const NOW: u64 = 1_800_000_000;

    fn entry(gflops: f64, at: Option<u64>, others: f64, build: &str) -> CacheEntry {
        CacheEntry {
            ceilings: Ceilings { gflops, gbps: 10.0 },
            measured_at: at,
            load: Some(HostLoad {
                loadavg_1min: others,
                others_running: others,
                cores: 2,
            }),
            build: build.into(),
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sinter-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_ceilings_cache_keeps_one_line_per_device() {
        let dir = scratch("ceilings");
        let file = dir.join("ceilings.txt");
        let (a, b) = (
            entry(1.5, Some(NOW), 0.0, "x"),
            entry(3.0, Some(NOW), 0.5, "y"),
        );
        store(&file, "cpu x (2 threads)", &a).unwrap();
        store(&file, "gpu y (Vulkan, z)", &a).unwrap();
        store(&file, "cpu x (2 threads)", &b).unwrap();
        let read = read_cache(&file);
        let find = |k: &str| {
            read.iter()
                .find(|(key, _)| key == k)
                .map(|(_, e)| e.clone())
        };
        assert_eq!(find("cpu x (2 threads)"), Some(b));
        assert_eq!(find("gpu y (Vulkan, z)"), Some(a));
        assert_eq!(find("gpu other"), None);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 3, "a header and two devices:\n{text}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_damaged_cache_is_skipped_and_rewritten_clean() {
        let dir = scratch("ceilings-damaged");
        let file = dir.join("ceilings.txt");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            &file,
            "cpu a\t12.5\t3.0\ncpu b\tnot a number\t1\t2\ngarbage\ncpu c\t1\t2\t3\n",
        )
        .unwrap();
        let read = read_cache(&file);
        let keys: Vec<&str> = read.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["cpu a"],
            "only the older sinter's valid line survives"
        );
        assert_eq!(read[0].1.measured_at, None);
        store(&file, "cpu d", &entry(2.0, Some(NOW), 0.0, "x")).unwrap();
        let keys: Vec<String> = read_cache(&file).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["cpu a", "cpu d"]);
        // Bytes that are not text: ignored, then replaced by a valid file.
        std::fs::write(&file, [0xff, 0xfe, 0x00, 0x80]).unwrap();
        assert!(read_cache(&file).is_empty());
        store(&file, "cpu e", &entry(2.0, Some(NOW), 0.0, "x")).unwrap();
        assert_eq!(read_cache(&file).len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn cached_ceilings_are_stale_when_old_undated_future_foreign_or_loaded() {
        let fresh = entry(100.0, Some(NOW - DAY), 0.0, "b1");
        assert_eq!(stale_reason(&fresh, NOW, "b1"), None);
        let stale = |e: &CacheEntry, build: &str, word: &str| {
            let why = stale_reason(e, NOW, build).expect("stale");
            assert!(why.contains(word), "{why}");
        };
        stale(
            &entry(100.0, Some(NOW - 8 * DAY), 0.0, "b1"),
            "b1",
            "days old",
        );
        stale(&entry(100.0, None, 0.0, ""), "b1", "older sinter");
        stale(&entry(100.0, Some(NOW + DAY), 0.0, "b1"), "b1", "future");
        stale(&fresh, "b2", "another build (b1)");
        // Two cores: half a core's worth of other runnable tasks is load, a tenth is not.
        stale(&entry(100.0, Some(NOW), 0.5, "b1"), "b1", "under load");
        assert_eq!(
            stale_reason(&entry(100.0, Some(NOW), 0.1, "b1"), NOW, "b1"),
            None
        );
    }

    #[test]
    fn a_row_faster_than_the_ceilings_is_reported_and_raises_them() {
        let row = |kernel: &str, us: f64, flops: u64, bytes: u64| KernelSummary {
            kernel: kernel.into(),
            tag: "t".into(),
            shapes: String::new(),
            calls: 1,
            total_us: us,
            flops,
            bytes,
        };
        // 1e6 FLOPs in 10 µs = 100 GFLOP/s; 1e6 bytes in 100 µs = 10 GB/s.
        let fastest = Fastest::of(&[
            row("matmul", 10.0, 1_000_000, 0),
            row("copy", 100.0, 0, 1_000_000),
        ]);
        assert_eq!(fastest.gflops.1, "matmul · t");
        let high = Ceilings {
            gflops: 150.0,
            gbps: 20.0,
        };
        assert_eq!(fastest.beats(&high), None);
        assert_eq!(fastest.raise(&high), high);
        let low = Ceilings {
            gflops: 80.0,
            gbps: 20.0,
        };
        let why = fastest.beats(&low).expect("beaten");
        assert!(why.contains("matmul · t ran at 100.00 GFLOP/s"), "{why}");
        assert!(!why.contains("GB/s"), "{why}");
        let raised = fastest.raise(&low);
        assert!((raised.gflops - 100.0).abs() < 1e-9 && raised.gbps == 20.0);
    }

    #[test]
    fn a_new_measurement_keeps_the_best_figures_of_the_same_build() {
        let old = entry(200.0, Some(NOW - DAY), 0.0, "b1");
        let new = || entry(150.0, Some(NOW), 1.0, "b1");
        let merged = merge(Some(&old), new(), NOW);
        assert_eq!(merged.ceilings.gflops, 200.0);
        assert_eq!((merged.measured_at, merged.load), (Some(NOW), new().load));
        // Another build's, or too old: replaced.
        let other = entry(200.0, Some(NOW - DAY), 0.0, "b0");
        assert_eq!(merge(Some(&other), new(), NOW), new());
        let ancient = entry(200.0, Some(NOW - 30 * DAY), 0.0, "b1");
        assert_eq!(merge(Some(&ancient), new(), NOW), new());
        assert_eq!(merge(None, new(), NOW), new());
    }
}
