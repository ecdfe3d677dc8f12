//! Checks made before any work starts: option values against their valid ranges (as clap value
//! parsers, so that `--lr -0.1` reaches the option's own message), and output paths (the folder
//! exists and is writable, the extension is known), so that no run is lost at its end.

use super::{CliError, Result};
use std::fs::OpenOptions;
use std::path::Path;

/// A whole number of at least 1 (`--batch`, `--steps`, `--layers`, …).
pub fn at_least_one<T>(s: &str) -> std::result::Result<T, String>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
{
    match s.trim().parse::<T>() {
        Ok(v) if v >= T::from(1) => Ok(v),
        _ => Err("expected a whole number of at least 1".into()),
    }
}

/// A finite number > 0 (`--lr`, `--clip-norm`).
pub fn positive(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("expected a number greater than 0".into()),
    }
}

/// A finite number ≥ 0 (`--weight-decay`, `--temperature`).
pub fn non_negative(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("expected a number of at least 0".into()),
    }
}

/// `--weight-decay`, stored as f32 like the optimizer's setting.
pub fn weight_decay(s: &str) -> std::result::Result<f32, String> {
    non_negative(s).map(|v| v as f32)
}

/// `--beta1`, `--beta2`: in [0, 1) (1 never forgets a gradient).
pub fn beta(s: &str) -> std::result::Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err("expected a number in [0, 1), e.g. 0.9 or 0.999".into()),
    }
}

/// A drop probability in [0, 1) (`--dropout`; 1 would drop everything).
pub fn probability(s: &str) -> std::result::Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err("expected a number in [0, 1), e.g. 0.1".into()),
    }
}

/// A number greater than 0 that stays greater than 0 as an f32 (`--eps`).
pub fn positive_f32(s: &str) -> std::result::Result<f32, String> {
    match positive(s).map(|v| v as f32) {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err("expected a number greater than 0 (and above f32's smallest), e.g. 1e-8".into()),
    }
}

/// `--momentum`: in [0, 1) (1 or more never forgets a gradient and diverges).
pub fn momentum(s: &str) -> std::result::Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err("expected a number in [0, 1), e.g. 0.9".into()),
    }
}

/// An output file and the option that names it; `extensions` (lower case, no dot) when the
/// option writes only some formats (`--plot`), empty for any name.
pub struct Output<'a> {
    pub option: &'static str,
    pub path: &'a Path,
    pub extensions: &'static [&'static str],
    /// Written in place rather than through a temporary file renamed over it.
    pub in_place: bool,
}

/// Refuses an output path that could not be written at the end of the run: its folder is
/// missing, is not a folder, or is not writable (tried by creating and removing a file, which
/// also catches read-only file systems and holds for root); the path is a folder; or its
/// extension is not one the option writes.
pub fn output(o: &Output) -> Result<()> {
    let (option, path, extensions) = (o.option, o.path, o.extensions);
    let bad = |problem: String| CliError::Usage(format!("{option} {}: {problem}", path.display()));
    if !extensions.is_empty() {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if !ext.as_deref().is_some_and(|e| extensions.contains(&e)) {
            let list: Vec<String> = extensions.iter().map(|e| format!(".{e}")).collect();
            return Err(bad(format!("the file must end in {}", list.join(" or "))));
        }
    }
    if path.is_dir() {
        return Err(bad("is a folder; give a file name".into()));
    }
    if path.file_name().is_none() {
        return Err(bad("is not a file name".into()));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.exists() {
        return Err(bad(format!("the folder {} does not exist", dir.display())));
    }
    if !dir.is_dir() {
        return Err(bad(format!("{} is not a folder", dir.display())));
    }
    let probe = dir.join(format!(".sinter-write-test-{}", std::process::id()));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => {
            return Err(bad(format!(
                "cannot write into the folder {}: {e}",
                dir.display()
            )))
        }
    }
    // Parameter files and checkpoints are renamed into place, replacing even a read-only old
    // file; a plot is written in place, so an existing one must be writable.
    if o.in_place && path.exists() && OpenOptions::new().append(true).open(path).is_err() {
        return Err(bad("the file exists and cannot be written".into()));
    }
    Ok(())
}

/// Each output, checked in order; two options writing the same file are refused too.
pub fn outputs(list: &[Output]) -> Result<()> {
    for (i, o) in list.iter().enumerate() {
        output(o)?;
        if let Some(other) = list[..i].iter().find(|p| p.path == o.path) {
            return Err(CliError::Usage(format!(
                "{} and {} both write {}",
                other.option,
                o.option,
                o.path.display()
            )));
        }
    }
    Ok(())
}

/// An input that must exist (`--data`, `--init`, `--resume`), named by its option.
pub fn input(option: &str, path: &Path) -> Result<()> {
    if !path.exists() {
        return Err(CliError::Usage(format!(
            "{option} {}: does not exist",
            path.display()
        )));
    }
    Ok(())
}
