//! Parameter and training-checkpoint files: F32 safetensors written atomically (a crash never leaves
//! a half-written file), and a training checkpoint with a format version and checksum on top.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::{Dtype, SafeTensorError, SafeTensors, View};

use crate::{ModelError, Result};

/// The training-checkpoint format this build writes and the newest it reads.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// Metadata keys the checkpoint format owns; a caller's metadata may not use the `sinter-` prefix.
const KEY_VERSION: &str = "sinter-checkpoint";
const KEY_CHECKSUM: &str = "sinter-crc32";
const KEY_STEP: &str = "sinter-step";
const RESERVED_PREFIX: &str = "sinter-";
/// Tensor-name prefixes that keep parameters and optimizer state apart in one file.
const PARAM_PREFIX: &str = "param/";
const OPTIM_PREFIX: &str = "optim/";

/// A named f32 tensor, dense row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// The `state_dict`-style name (`conv1.weight`, `fc1.weight.adam_m`).
    pub name: String,
    /// Row-major shape; `[]` is a scalar.
    pub shape: Vec<usize>,
    /// `shape.product()` values.
    pub data: Vec<f32>,
}

impl NamedTensor {
    /// A tensor of `shape` holding `data`.
    ///
    /// # Panics
    ///
    /// If `data` does not hold `shape.product()` values (loaders check files before building
    /// tensors, so this is a caller's mistake).
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> NamedTensor {
        let name = name.into();
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "tensor {name}: shape {shape:?} does not match {} values",
            data.len()
        );
        NamedTensor { name, shape, data }
    }
}

/// Writes a file so that, whatever happens, `path` holds either its old content or all of the new:
/// the bytes go to a temporary file in the same folder, are flushed and fsynced, and the temporary
/// file is renamed over `path` (then, on unix, the folder is fsynced so the rename itself lasts).
/// If `write` fails, the temporary file is removed and `path` is untouched.
pub fn write_atomic(
    path: impl AsRef<Path>,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    static UNIQUE: AtomicU64 = AtomicU64::new(0);
    let path = path.as_ref();
    let Some(file_name) = path.file_name() else {
        return Err(ModelError::io(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
        ));
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    remove_stale_temp_files(path);
    // Process id + counter: concurrent saves (threads or processes) never share a temp file.
    let tmp: PathBuf = dir.join(temp_name(
        &file_name.to_string_lossy(),
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed),
    ));
    let written = (|| -> io::Result<()> {
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let mut w = BufWriter::new(file);
        write(&mut w)?;
        let file = w.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // Best effort: the temp file may not exist if creating it was what failed.
        let _ = fs::remove_file(&tmp);
        return Err(ModelError::io(path, e));
    }
    #[cfg(unix)]
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        // The new file is in place; only its survival across a power cut is in doubt, and even
        // then the old content would survive instead. Not worth failing a training run over.
        log::warn!(
            "{}: could not fsync the folder after saving: {e}",
            dir.display()
        );
    }
    Ok(())
}

/// The temporary file [`write_atomic`] writes before renaming: `.<name>.<pid>-<counter>.tmp`.
fn temp_name(file_name: &str, pid: u32, counter: u64) -> String {
    format!(".{file_name}.{pid}-{counter}.tmp")
}

/// The process id in a name [`temp_name`] made for `file_name`, or None for any other name.
fn temp_owner(name: &str, file_name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix('.')?
        .strip_prefix(file_name)?
        .strip_prefix('.')?
        .strip_suffix(".tmp")?;
    let (pid, counter) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(counter) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` may still be running (and so may still be writing its temp file).
/// Where `/proc` is not available, only this process counts as running.
fn may_be_running(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    proc.join("self").exists() && proc.join(pid.to_string()).exists()
}

/// Removes the temporary files that saves of `path` left behind when their process was killed
/// mid-save: only names [`write_atomic`] makes for this file, and only those of processes that
/// are no longer running. Best effort: a file that cannot be listed or removed is left alone.
pub fn remove_stale_temp_files(path: &Path) -> usize {
    let (Some(file_name), dir) = (path.file_name(), path.parent()) else {
        return 0;
    };
    let dir = match dir {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = file_name.to_string_lossy();
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = temp_owner(&name.to_string_lossy(), &file_name) else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !may_be_running(pid) && fs::remove_file(entry.path()).is_ok() {
            log::info!(
                "removed {}, left by an interrupted save",
                entry.path().display()
            );
            removed += 1;
        }
    }
    removed
}

/// Saves tensors (F32) and string metadata as a safetensors file, atomically.
pub fn save_safetensors(
    path: impl AsRef<Path>,
    tensors: &[NamedTensor],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let entries: Vec<(&str, &NamedTensor)> = tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let bytes = encode(path, &entries, metadata)?;
    write_atomic(path, |w| w.write_all(&bytes))
}

/// Loads every tensor of a safetensors file (sorted by name) and its metadata. Only F32 tensors
/// are accepted, and I64 ones whose values f32 holds exactly (PyTorch's `num_batches_tracked`).
pub fn load_safetensors(
    path: impl AsRef<Path>,
) -> Result<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|e| ModelError::io(path, e))?;
    decode(&bytes, path)
}

/// `load_safetensors` for a file already in memory; `file` only names it in errors.
pub fn parse_safetensors(
    bytes: &[u8],
    file: impl AsRef<Path>,
) -> Result<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    decode(bytes, file.as_ref())
}

/// Everything a training run needs to continue: parameters, optimizer state (moments, step
/// counts…), the step reached, and string metadata (model name, optimizer config, batcher and rng
/// state) for the trainer to interpret.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingCheckpoint {
    /// The model's parameters, by their `state_dict` names.
    pub params: Vec<NamedTensor>,
    /// The optimizer's state variables (momentum, Adam moments), by name.
    pub optimizer_state: Vec<NamedTensor>,
    /// Training steps completed.
    pub step: u64,
    /// The trainer's settings and positions as strings; keys starting `sinter-` are reserved.
    pub meta: BTreeMap<String, String>,
}

impl TrainingCheckpoint {
    /// Saves atomically as safetensors: tensors named `param/<name>` and `optim/<name>`, metadata
    /// carrying the format version, the step and a CRC-32 over names, shapes, data, step and metadata.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        if let Some(key) = self.meta.keys().find(|k| k.starts_with(RESERVED_PREFIX)) {
            return Err(ModelError::checkpoint(
                path,
                format!("metadata key {key:?} uses the prefix {RESERVED_PREFIX:?}, which the checkpoint format reserves"),
            ));
        }
        let names: Vec<(String, &NamedTensor)> = self
            .params
            .iter()
            .map(|t| (format!("{PARAM_PREFIX}{}", t.name), t))
            .chain(
                self.optimizer_state
                    .iter()
                    .map(|t| (format!("{OPTIM_PREFIX}{}", t.name), t)),
            )
            .collect();
        let mut entries: Vec<(&str, &NamedTensor)> =
            names.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(ModelError::checkpoint(
                path,
                format!("two tensors are named {}", w[0].0),
            ));
        }
        let mut metadata = self.meta.clone();
        metadata.insert(KEY_VERSION.into(), CHECKPOINT_FORMAT_VERSION.to_string());
        metadata.insert(KEY_STEP.into(), self.step.to_string());
        metadata.insert(
            KEY_CHECKSUM.into(),
            checksum(
                entries
                    .iter()
                    .map(|(n, t)| (*n, t.shape.as_slice(), t.data.as_slice())),
                self.step,
                &self.meta,
            ),
        );
        let bytes = encode(path, &entries, &metadata)?;
        write_atomic(path, |w| w.write_all(&bytes))
    }

    /// Loads and verifies a checkpoint written by `save`: the format version must be one this
    /// build reads and the checksum must match. Tensors come back sorted by name.
    pub fn load(path: impl AsRef<Path>) -> Result<TrainingCheckpoint> {
        let path = path.as_ref();
        remove_stale_temp_files(path);
        let bytes = fs::read(path).map_err(|e| ModelError::io(path, e))?;
        TrainingCheckpoint::from_bytes(&bytes, path)
    }

    /// `load` for a checkpoint already in memory; `file` only names it in errors.
    pub fn from_bytes(bytes: &[u8], file: impl AsRef<Path>) -> Result<TrainingCheckpoint> {
        let path = file.as_ref();
        let (tensors, mut meta) = decode(bytes, path)?;
        let err = |problem: String| ModelError::checkpoint(path, problem);

        let version = meta.remove(KEY_VERSION).ok_or_else(|| {
            err(format!(
                "is not a sinter training checkpoint: its metadata has no {KEY_VERSION:?} entry"
            ))
        })?;
        match version.parse::<u32>() {
            Ok(v) if v == CHECKPOINT_FORMAT_VERSION => {}
            Ok(v) if v > CHECKPOINT_FORMAT_VERSION => {
                return Err(err(format!(
                    "format version {v} is newer than this sinter understands (it reads version {CHECKPOINT_FORMAT_VERSION}); use a newer sinter"
                )))
            }
            _ => {
                return Err(err(format!(
                    "format version {version:?} is not one sinter writes (expected {CHECKPOINT_FORMAT_VERSION})"
                )))
            }
        }
        let stored = meta
            .remove(KEY_CHECKSUM)
            .ok_or_else(|| err(format!("has no {KEY_CHECKSUM:?} checksum entry")))?;
        let step_text = meta
            .remove(KEY_STEP)
            .ok_or_else(|| err(format!("has no {KEY_STEP:?} entry")))?;
        // The checksum is checked before anything else is believed, the step included.
        let step = step_text.parse::<u64>().ok();
        let computed = checksum(
            tensors
                .iter()
                .map(|t| (t.name.as_str(), t.shape.as_slice(), t.data.as_slice())),
            step.unwrap_or(u64::MAX),
            &meta,
        );
        let (Some(step), true) = (step, stored == computed) else {
            return Err(err(format!(
                "checksum mismatch: file is corrupt (stored crc32 {stored:?}, computed {computed:?})"
            )));
        };
        if let Some(key) = meta.keys().find(|k| k.starts_with(RESERVED_PREFIX)) {
            return Err(err(format!("unknown reserved metadata key {key:?}")));
        }

        let mut params = Vec::new();
        let mut optimizer_state = Vec::new();
        for mut t in tensors {
            if let Some(name) = t.name.strip_prefix(PARAM_PREFIX) {
                t.name = name.to_string();
                params.push(t);
            } else if let Some(name) = t.name.strip_prefix(OPTIM_PREFIX) {
                t.name = name.to_string();
                optimizer_state.push(t);
            } else {
                return Err(err(format!(
                    "tensor {} is neither a parameter ({PARAM_PREFIX}…) nor optimizer state ({OPTIM_PREFIX}…)",
                    t.name
                )));
            }
        }
        Ok(TrainingCheckpoint {
            params,
            optimizer_state,
            step,
            meta,
        })
    }
}

/// Checks loaded tensors against what a model expects, reporting every missing name, unexpected
/// name and shape mismatch in one message that names `file`.
pub fn check_against(
    tensors: &[NamedTensor],
    expected: &[(String, Vec<usize>)],
    file: impl AsRef<Path>,
) -> Result<()> {
    let found: HashMap<&str, &[usize]> = tensors
        .iter()
        .map(|t| (t.name.as_str(), t.shape.as_slice()))
        .collect();
    let wanted: HashMap<&str, &[usize]> = expected
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    for (name, shape) in expected {
        match found.get(name.as_str()) {
            None => missing.push(format!("{name} {shape:?}")),
            Some(got) if *got != shape.as_slice() => mismatched.push(format!(
                "{name} is {got:?} in the file but the model expects {shape:?}"
            )),
            Some(_) => {}
        }
    }
    let unexpected: Vec<String> = tensors
        .iter()
        .filter(|t| !wanted.contains_key(t.name.as_str()))
        .map(|t| format!("{} {:?}", t.name, t.shape))
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing {}", missing.join(", ")));
    }
    if !unexpected.is_empty() {
        problems.push(format!("unexpected {}", unexpected.join(", ")));
    }
    if !mismatched.is_empty() {
        problems.push(format!("wrong shape: {}", mismatched.join(", ")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ModelError::checkpoint(
            file.as_ref(),
            format!("does not match the model: {}", problems.join("; ")),
        ))
    }
}

/// An F32 tensor as the safetensors serializer sees it.
struct F32View<'a> {
    shape: &'a [usize],
    bytes: Cow<'a, [u8]>,
}

impl View for &F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// safetensors stores little-endian; on little-endian hosts the f32s are borrowed as they are.
fn le_bytes(data: &[f32]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        Cow::Borrowed(bytemuck::cast_slice(data))
    } else {
        Cow::Owned(data.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
}

fn encode(
    path: &Path,
    entries: &[(&str, &NamedTensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let err = |problem: String| ModelError::checkpoint(path, problem);
    let mut seen = std::collections::HashSet::new();
    let mut views = Vec::with_capacity(entries.len());
    for &(name, t) in entries {
        if name.is_empty() || name == "__metadata__" {
            return Err(err(format!("{name:?} cannot name a tensor")));
        }
        if !seen.insert(name) {
            return Err(err(format!("two tensors are named {name}")));
        }
        let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel != Some(t.data.len()) {
            return Err(err(format!(
                "tensor {name} has shape {:?} but {} values",
                t.shape,
                t.data.len()
            )));
        }
        views.push((
            name,
            F32View {
                shape: &t.shape,
                bytes: le_bytes(&t.data),
            },
        ));
    }
    let info = (!metadata.is_empty()).then(|| {
        metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>()
    });
    safetensors::serialize(views.iter().map(|(n, v)| (*n, v)), info)
        .map(sorted_header)
        .map_err(|e| err(format!("cannot encode as safetensors: {e}")))
}

/// safetensors writes the `__metadata__` map in hash order, so equal checkpoints could differ
/// as files. This rewrites the JSON header with its keys sorted: the same keys and offsets, so
/// the same length (padded with spaces, as safetensors pads), and equal contents give equal bytes.
fn sorted_header(mut bytes: Vec<u8>) -> Vec<u8> {
    let Some(len) = bytes.get(..8).map(|b| {
        let mut n = [0u8; 8];
        n.copy_from_slice(b);
        u64::from_le_bytes(n) as usize
    }) else {
        return bytes;
    };
    let Some(header) = 8usize.checked_add(len).and_then(|end| bytes.get(8..end)) else {
        return bytes;
    };
    // serde_json's map is ordered by key.
    let Ok(sorted) = serde_json::from_slice::<serde_json::Value>(header)
        .and_then(|value| serde_json::to_vec(&value))
    else {
        return bytes;
    };
    if sorted.len() <= len {
        bytes[8..8 + sorted.len()].copy_from_slice(&sorted);
        bytes[8 + sorted.len()..8 + len].fill(b' ');
    }
    bytes
}

fn decode(bytes: &[u8], path: &Path) -> Result<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    let err = |problem: String| ModelError::checkpoint(path, problem);
    let invalid = |e: SafeTensorError| {
        err(match e {
            SafeTensorError::MetadataIncompleteBuffer
            | SafeTensorError::InvalidHeaderLength
            | SafeTensorError::HeaderTooSmall => {
                format!("is truncated or has extra bytes: its length does not match its safetensors header ({e})")
            }
            e => format!("is not a valid safetensors file: {e}"),
        })
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(invalid)?;
    let st = SafeTensors::deserialize(bytes).map_err(invalid)?;
    let mut tensors = Vec::with_capacity(st.len());
    for (name, view) in st.iter() {
        let data = match view.dtype() {
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            // PyTorch writes counters (a batch norm's num_batches_tracked) as int64; f32 holds
            // them exactly up to 2²⁴.
            Dtype::I64 => view
                .data()
                .chunks_exact(8)
                .map(|c| {
                    let v = i64::from_le_bytes(c.try_into().expect("8 bytes"));
                    if v.unsigned_abs() <= 1 << 24 {
                        Ok(v as f32)
                    } else {
                        Err(err(format!(
                            "tensor {name} (I64) holds {v}, which f32 does not represent exactly"
                        )))
                    }
                })
                .collect::<Result<Vec<f32>>>()?,
            other => {
                return Err(err(format!(
                    "tensor {name} has dtype {other:?}; sinter reads only F32 tensors (and I64 \
                     counters up to 2^24)"
                )))
            }
        };
        tensors.push(NamedTensor {
            name: name.to_string(),
            shape: view.shape().to_vec(),
            data,
        });
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let metadata = header
        .metadata()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok((tensors, metadata))
}

/// CRC-32 (hex) over every tensor's name, shape and little-endian data in name order, then the
/// step and the caller's metadata. Names, shapes and metadata are covered too, so that a flipped
/// bit anywhere that still parses is caught, not only one in the data.
fn checksum<'a>(
    tensors: impl Iterator<Item = (&'a str, &'a [usize], &'a [f32])>,
    step: u64,
    meta: &BTreeMap<String, String>,
) -> String {
    let mut sorted: Vec<_> = tensors.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = crc32fast::Hasher::new();
    let mut field = |bytes: &[u8]| {
        // Length-prefixed, so that moving bytes between adjacent fields changes the sum.
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    for (name, shape, data) in sorted {
        field(name.as_bytes());
        let dims: Vec<u8> = shape
            .iter()
            .flat_map(|&d| (d as u64).to_le_bytes())
            .collect();
        field(&dims);
        field(&le_bytes(data));
    }
    field(&step.to_le_bytes());
    for (k, v) in meta {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    format!("{:08x}", h.finalize())
}

#[cfg(test)]
mod tests {
    use super::{temp_name, temp_owner};

    #[test]
    fn only_our_exact_temp_names_are_recognized() {
        let ours = temp_name("run.ckpt", 4242, 7);
        assert_eq!(ours, ".run.ckpt.4242-7.tmp");
        assert_eq!(temp_owner(&ours, "run.ckpt"), Some(4242));
        for other in [
            "run.ckpt",
            ".run.ckpt.4242-7.tmp.bak",
            ".run.ckpt.4242.tmp",
            ".run.ckpt.x-7.tmp",
            ".run.ckpt.-7.tmp",
            ".other.ckpt.4242-7.tmp",
            "run.ckpt.4242-7.tmp",
            ".run.ckpt.4242-7x.tmp",
        ] {
            assert_eq!(temp_owner(other, "run.ckpt"), None, "{other}");
        }
        // The temp file of `run` is not one of `run.ckpt`'s and vice versa.
        assert_eq!(temp_owner(&temp_name("run", 1, 1), "run.ckpt"), None);
        assert_eq!(temp_owner(&temp_name("run.ckpt", 1, 1), "run"), None);
    }
}
