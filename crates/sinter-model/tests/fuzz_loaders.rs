//! Fuzzing the loaders of untrusted files (IDX, text, safetensors parameters, training checkpoints)
//! with seeded mutations of valid files: none may panic, allocate far beyond the file's size, or
//! refuse a file without naming it; and a header claiming 10^12 elements is refused cheaply.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sinter_model::checkpoint::{parse_safetensors, NamedTensor, TrainingCheckpoint};
use sinter_model::data::{parse_idx, CharCorpus};

// ---------------------------------------------------------------- allocation tracking

/// The system allocator, recording the largest single request made on each thread, so a test can
/// check that a loader sized nothing from a number it read in the file.
struct LargestRequest;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the slot is gone while a thread is being torn down.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

unsafe impl GlobalAlloc for LargestRequest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: LargestRequest = LargestRequest;

/// Runs `f` and returns its result with the largest single allocation it made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

/// What a loader may allocate at once for an input of `len` bytes: a fixed allowance for
/// decoder state plus a small multiple of the input (text becomes `char`s, bytes become f32s).
fn allowance(len: usize) -> usize {
    (1 << 20) + 16 * len
}

// ---------------------------------------------------------------- valid seed files

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn seed_idx() -> Vec<u8> {
    idx(
        &[3, 4, 5],
        &(0..60).map(|i| (i * 7) as u8).collect::<Vec<_>>(),
    )
}

fn seed_text() -> Vec<u8> {
    // Multi-byte characters, so that cuts and flips land inside UTF-8 sequences.
    "First Citizen:\nBefore we proceed any further, hear me speak — café, naïve, Σοφία, 日本, 🦀.\n\
     All:\nSpeak, speak.\n"
        .repeat(3)
        .into_bytes()
}

fn seed_tensors() -> Vec<NamedTensor> {
    vec![
        NamedTensor::new(
            "fc1.weight",
            vec![4, 3],
            (0..12).map(|i| i as f32 * 0.25).collect(),
        ),
        NamedTensor::new(
            "fc1.bias",
            vec![4],
            vec![0.5, -1.0, f32::MIN_POSITIVE, -0.0],
        ),
        NamedTensor::new("scalar", vec![], vec![3.0]),
        NamedTensor::new("empty", vec![0, 2], vec![]),
    ]
}

fn seed_checkpoint() -> TrainingCheckpoint {
    let params = seed_tensors();
    let optimizer_state = params
        .iter()
        .map(|t| NamedTensor::new(format!("m.{}", t.name), t.shape.clone(), t.data.clone()))
        .collect();
    let mut ckpt = TrainingCheckpoint {
        params,
        optimizer_state,
        step: 77,
        meta: BTreeMap::from([
            ("model".to_string(), "mlp".to_string()),
            ("batcher".to_string(), "n=100 batch=10".to_string()),
        ]),
    };
    ckpt.params.sort_by(|a, b| a.name.cmp(&b.name));
    ckpt.optimizer_state.sort_by(|a, b| a.name.cmp(&b.name));
    ckpt
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz_loaders")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The seeds written by `save`, each in a folder of its own: tests run in parallel.
fn seed_safetensors() -> Vec<u8> {
    static CALL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = CALL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = scratch(&format!("seed_safetensors_{k}")).join("params.safetensors");
    let meta = BTreeMap::from([("model".to_string(), "mlp".to_string())]);
    sinter_model::checkpoint::save_safetensors(&path, &seed_tensors(), &meta).unwrap();
    std::fs::read(path).unwrap()
}

fn seed_checkpoint_bytes() -> Vec<u8> {
    let path = scratch("seed_checkpoint").join("run.ckpt");
    seed_checkpoint().save(&path).unwrap();
    std::fs::read(path).unwrap()
}

// ---------------------------------------------------------------- mutations

/// Values that break size arithmetic: zero, one, powers of two near word sizes, 10^12, maxima.
const NASTY: [u64; 12] = [
    0,
    1,
    2,
    255,
    65_535,
    1 << 31,
    u32::MAX as u64,
    1 << 32,
    1_000_000_000_000,
    1 << 53,
    i64::MAX as u64,
    u64::MAX,
];

/// Format-aware edits of a valid file's header fields.
type HeaderEdits = fn(&[u8], &mut ChaCha8Rng) -> Vec<Vec<u8>>;

/// A mutated file and how it was made.
struct Mutant {
    kind: &'static str,
    bytes: Vec<u8>,
}

/// Mutations of one valid file, in families: every truncation, bit flips (every bit of the first
/// 256 bytes, then random ones), byte insertions, deletions and overwrites, format-aware header
/// edits (`header`), other formats (`foreign`), and stacks of several random edits.
fn mutants(valid: &[u8], header: HeaderEdits, foreign: &[Vec<u8>], seed: u64) -> Vec<Mutant> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut push = |kind, bytes| out.push(Mutant { kind, bytes });
    for len in 0..valid.len() {
        push("truncation", valid[..len].to_vec());
    }
    for at in 0..valid.len().min(256) {
        for bit in 0..8 {
            let mut b = valid.to_vec();
            b[at] ^= 1 << bit;
            push("bit flip", b);
        }
    }
    for _ in 0..1000 {
        let mut b = valid.to_vec();
        let at = rng.random_range(0..b.len());
        b[at] ^= 1 << rng.random_range(0..8);
        push("bit flip", b);
    }
    for _ in 0..1000 {
        let mut b = valid.to_vec();
        let at = rng.random_range(0..=b.len());
        let n = rng.random_range(1..=16);
        let ins: Vec<u8> = (0..n).map(|_| rng.random()).collect();
        b.splice(at..at, ins);
        push("insertion", b);
    }
    for _ in 0..500 {
        let mut b = valid.to_vec();
        let at = rng.random_range(0..b.len());
        let n = rng.random_range(1..=16).min(b.len() - at);
        b.drain(at..at + n);
        push("deletion", b);
    }
    for _ in 0..500 {
        let mut b = valid.to_vec();
        let at = rng.random_range(0..b.len());
        b[at] = [0x00, 0xff, 0x7f, 0x80, b'"', b'}', b'9', b'-'][rng.random_range(0..8)];
        push("overwrite", b);
    }
    for b in header(valid, &mut rng) {
        push("header field", b);
    }
    for f in foreign {
        push("wrong format", f.clone());
        push("wrong format", gzip(f));
        push("wrong format", [valid, f].concat());
    }
    push("wrong format", gzip(valid));
    push("wrong format", Vec::new());
    for n in [1usize, 7, 64, 4096] {
        push("wrong format", (0..n).map(|_| rng.random()).collect());
    }
    for _ in 0..1500 {
        let mut b = valid.to_vec();
        for _ in 0..rng.random_range(2..=4) {
            if b.is_empty() {
                break;
            }
            let at = rng.random_range(0..b.len());
            match rng.random_range(0..4) {
                0 => b[at] ^= 1 << rng.random_range(0..8),
                1 => b.insert(at, rng.random()),
                2 => {
                    b.remove(at);
                }
                _ => b.truncate(at),
            }
        }
        push("stacked edits", b);
    }
    out
}

/// IDX header edits: the type byte, the dimension count and every dimension set to nasty values.
fn idx_header_edits(valid: &[u8], _rng: &mut ChaCha8Rng) -> Vec<Vec<u8>> {
    let ndims = valid[3] as usize;
    let mut out = Vec::new();
    for t in [0x00, 0x09, 0x0b, 0x0c, 0x0d, 0x0e, 0xff] {
        let mut b = valid.to_vec();
        b[2] = t;
        out.push(b);
    }
    for n in [0u8, 1, 2, 4, 200, 255] {
        let mut b = valid.to_vec();
        b[3] = n;
        out.push(b);
    }
    for d in 0..ndims {
        for &v in &NASTY {
            let mut b = valid.to_vec();
            let v = v.min(u32::MAX as u64) as u32;
            b[4 + 4 * d..8 + 4 * d].copy_from_slice(&v.to_be_bytes());
            out.push(b.clone());
            out.push(gzip(&b));
        }
    }
    out
}

/// Text "header" edits: encodings and byte sequences that are not, or barely, UTF-8 text.
fn text_edits(valid: &[u8], rng: &mut ChaCha8Rng) -> Vec<Vec<u8>> {
    let bad: [&[u8]; 9] = [
        b"\xef\xbb\xbf",     // byte-order mark
        b"\xed\xa0\x80",     // a lone surrogate
        b"\xc0\xaf",         // an overlong '/'
        b"\xf4\x90\x80\x80", // past U+10FFFF
        b"\x00",
        b"\xff\xfe",
        b"\xe6\x97",     // a cut 3-byte sequence
        b"\xf0\x9f\xa6", // a cut 4-byte sequence
        b"\x80",
    ];
    let mut out = Vec::new();
    for seq in bad {
        for _ in 0..20 {
            let mut b = valid.to_vec();
            let at = rng.random_range(0..=b.len());
            b.splice(at..at, seq.iter().copied());
            out.push(b);
        }
    }
    let text = String::from_utf8(valid.to_vec()).unwrap();
    out.push(text.encode_utf16().flat_map(u16::to_le_bytes).collect());
    out.push(text.chars().take(19).collect::<String>().into_bytes());
    out.push(text.chars().take(20).collect::<String>().into_bytes());
    out.push(vec![b'a'; 19]);
    out.push(vec![b'a'; 20]);
    out
}

/// A safetensors file split into its JSON header and its data.
fn split_safetensors(valid: &[u8]) -> (String, &[u8]) {
    let n = u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(valid[8..8 + n].to_vec()).unwrap();
    (header, &valid[8 + n..])
}

fn join_safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Safetensors header edits, each with a consistent header length unless the length is the edit:
/// the length field, every number, dtype and string of the JSON, and structural JSON damage.
fn safetensors_header_edits(valid: &[u8], rng: &mut ChaCha8Rng) -> Vec<Vec<u8>> {
    let (header, data) = split_safetensors(valid);
    let mut out = Vec::new();
    let n = header.len() as u64;
    for v in NASTY
        .iter()
        .copied()
        .chain([n - 1, n + 1, valid.len() as u64, 7, 8])
    {
        let mut b = valid.to_vec();
        b[..8].copy_from_slice(&v.to_le_bytes());
        out.push(b);
    }
    // Every run of digits in the header, replaced by each nasty value and by a negative number.
    let bytes = header.as_bytes();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            runs.push(start..i);
        } else {
            i += 1;
        }
    }
    for run in &runs {
        let values = NASTY.iter().map(u64::to_string).chain([
            "-1".into(),
            "1e3".into(),
            "18446744073709551616".into(),
        ]);
        for v in values {
            let mut h = header.clone();
            h.replace_range(run.clone(), &v);
            out.push(join_safetensors(&h, data));
        }
    }
    let swaps: [(&str, &str); 12] = [
        ("F32", "F16"),
        ("F32", "BF16"),
        ("F32", "F64"),
        ("F32", "I8"),
        ("F32", "BOOL"),
        ("F32", "F8_E4M3"),
        ("F32", "XYZ"),
        ("\"shape\"", "\"shap\""),
        ("\"data_offsets\"", "\"offsets\""),
        ("\"dtype\"", "\"type\""),
        ("__metadata__", "__meta__"),
        ("fc1.bias", "fc1.weight"),
    ];
    for (from, to) in swaps {
        let h = header.replacen(from, to, 1);
        out.push(join_safetensors(&h, data));
        let h = header.replace(from, to);
        out.push(join_safetensors(&h, data));
    }
    for _ in 0..300 {
        let mut h = header.clone().into_bytes();
        let at = rng.random_range(0..h.len());
        h[at] = [b'{', b'}', b'[', b']', b',', b':', b'"', b' ', b'\\'][rng.random_range(0..9)];
        if let Ok(h) = String::from_utf8(h) {
            out.push(join_safetensors(&h, data));
        }
    }
    // The header without its data, and with the data twice.
    out.push(join_safetensors(&header, &[]));
    out.push(join_safetensors(&header, &[data, data].concat()));
    out
}

/// Checkpoint edits: the safetensors edits, plus the metadata the checkpoint format owns.
fn checkpoint_header_edits(valid: &[u8], rng: &mut ChaCha8Rng) -> Vec<Vec<u8>> {
    let mut out = safetensors_header_edits(valid, rng);
    let (header, data) = split_safetensors(valid);
    let values = [
        "",
        "0",
        "2",
        "1.0",
        "-1",
        "x",
        "18446744073709551616",
        "ffffffff",
    ];
    for key in ["sinter-checkpoint", "sinter-step", "sinter-crc32", "model"] {
        let needle = format!("\"{key}\":\"");
        let start = header.find(&needle).expect("key in header") + needle.len();
        let end = start + header[start..].find('"').unwrap();
        for v in values {
            let mut h = header.clone();
            h.replace_range(start..end, v);
            out.push(join_safetensors(&h, data));
        }
        let h = header.replacen(&needle, &needle.replace(key, "sinter-other"), 1);
        out.push(join_safetensors(&h, data));
    }
    for from in ["param/", "optim/"] {
        let h = header.replacen(from, "other/", 1);
        out.push(join_safetensors(&h, data));
    }
    out
}

// ---------------------------------------------------------------- the harness

/// Tries every mutant on `load`; `check` judges each accepted file. Returns (tried, accepted).
/// Panics, refusals that do not name the file, and allocations beyond [`allowance`] are collected
/// and written under the target folder, then reported together.
fn fuzz<T>(
    loader: &str,
    file: &str,
    mutants: Vec<Mutant>,
    load: impl Fn(&[u8]) -> sinter_model::Result<T>,
    check: impl Fn(&[u8], &T) -> Result<(), String>,
) -> (usize, usize) {
    let dir = scratch(&format!("crashers_{loader}"));
    let mut failures = Vec::new();
    let mut accepted = 0;
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for (k, m) in mutants.iter().enumerate() {
        *kinds.entry(m.kind).or_default() += 1;
        let (outcome, largest) =
            largest_allocation(|| catch_unwind(AssertUnwindSafe(|| load(&m.bytes))));
        let problem = match outcome {
            Err(_) => Some("panicked".to_string()),
            Ok(_) if largest > allowance(m.bytes.len()) => Some(format!(
                "allocated {largest} bytes at once for a {}-byte file",
                m.bytes.len()
            )),
            Ok(Err(e)) => {
                let e = e.to_string();
                (!e.starts_with(&format!("{file}: ")))
                    .then(|| format!("error without the file name: {e}"))
            }
            Ok(Ok(value)) => {
                accepted += 1;
                check(&m.bytes, &value).err()
            }
        };
        if let Some(p) = problem {
            let path = dir.join(format!("{k}-{}.bin", m.kind.replace(' ', "-")));
            std::fs::write(&path, &m.bytes).unwrap();
            failures.push(format!("{} ({}): {p}", path.display(), m.kind));
        }
    }
    eprintln!(
        "fuzz {loader}: {} mutated files tried ({}), {accepted} accepted, {} failures",
        mutants.len(),
        kinds
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{loader}: {} of {} mutants failed:\n{}",
        failures.len(),
        mutants.len(),
        failures.join("\n")
    );
    (mutants.len(), accepted)
}

#[test]
fn idx_loader_survives_mutated_files() {
    let valid = seed_idx();
    let foreign = vec![seed_text(), seed_safetensors()];
    let mut all = mutants(&valid, idx_header_edits, &foreign, 1);
    // The same mutations of the compressed file reach the gzip reader's paths.
    all.extend(mutants(&gzip(&valid), |_, _| Vec::new(), &[], 2));
    let (tried, _) = fuzz(
        "idx",
        "mutant.idx",
        all,
        |b| parse_idx(b, "mutant.idx"),
        |_, a| {
            let n: usize = a.dims.iter().product();
            (a.data.len() == n).then_some(()).ok_or(format!(
                "{} bytes for dims {:?}",
                a.data.len(),
                a.dims
            ))
        },
    );
    assert!(tried > 10_000, "only {tried} mutants");
}

#[test]
fn text_loader_survives_mutated_files() {
    let valid = seed_text();
    let foreign = vec![seed_idx(), seed_safetensors()];
    let (tried, accepted) = fuzz(
        "text",
        "mutant.txt",
        mutants(&valid, text_edits, &foreign, 3),
        |b| CharCorpus::parse(b, Path::new("mutant.txt")),
        |bytes, c| {
            let text =
                std::str::from_utf8(bytes).map_err(|e| format!("accepted non-UTF-8: {e}"))?;
            let sorted = c.vocab.windows(2).all(|w| w[0] < w[1]);
            let in_vocab = c
                .train
                .iter()
                .chain(&c.valid)
                .all(|&i| (i as usize) < c.vocab.len());
            let count = c.train.len() + c.valid.len() <= text.chars().count();
            (sorted && in_vocab && count).then_some(()).ok_or(format!(
                "inconsistent corpus: sorted {sorted}, ids in vocabulary {in_vocab}"
            ))
        },
    );
    assert!(tried > 5_000, "only {tried} mutants");
    // Most edits of text leave text: the loader must not refuse what it can read.
    assert!(accepted > 0);
}

#[test]
fn safetensors_loader_survives_mutated_files() {
    let valid = seed_safetensors();
    let foreign = vec![seed_idx(), seed_text()];
    let (tried, _) = fuzz(
        "safetensors",
        "mutant.safetensors",
        mutants(&valid, safetensors_header_edits, &foreign, 4),
        |b| parse_safetensors(b, "mutant.safetensors"),
        |_, (tensors, _)| {
            for t in tensors {
                if t.shape.iter().product::<usize>() != t.data.len() {
                    return Err(format!(
                        "{} has shape {:?} but {} values",
                        t.name,
                        t.shape,
                        t.data.len()
                    ));
                }
            }
            Ok(())
        },
    );
    assert!(tried > 5_000, "only {tried} mutants");
}

#[test]
fn checkpoint_loader_survives_mutated_files() {
    let valid = seed_checkpoint_bytes();
    let original = seed_checkpoint();
    let foreign = vec![seed_idx(), seed_text(), seed_safetensors()];
    let (tried, _) = fuzz(
        "checkpoint",
        "mutant.ckpt",
        mutants(&valid, checkpoint_header_edits, &foreign, 5),
        |b| TrainingCheckpoint::from_bytes(b, "mutant.ckpt"),
        // The checksum covers every name, shape, value, the step and the metadata: whatever
        // still loads must be exactly what was saved (only the layout of the JSON may differ).
        |_, ckpt| {
            (ckpt == &original).then_some(()).ok_or(format!(
                "loaded a changed checkpoint: step {}, meta {:?}",
                ckpt.step, ckpt.meta
            ))
        },
    );
    assert!(tried > 5_000, "only {tried} mutants");
}

// ---------------------------------------------------------------- huge claimed sizes

#[test]
fn headers_claiming_a_trillion_elements_are_refused_without_allocating_them() {
    // The tracker sees what it must catch: an allocation sized from a claim.
    let (v, largest) = largest_allocation(|| vec![1u8; 8 << 20]);
    assert!(largest >= 8 << 20 && largest > allowance(16), "{largest}");
    drop(v);
    // IDX: 10^6 × 10^3 × 10^3 bytes claimed, 12 present.
    let mut bytes = idx(&[1_000_000, 1_000, 1_000], &[]);
    bytes.extend_from_slice(&[1; 12]);
    for (file, b) in [("huge.idx", bytes.clone()), ("huge.idx.gz", gzip(&bytes))] {
        let (r, largest) = largest_allocation(|| parse_idx(&b, file));
        let e = r.unwrap_err().to_string();
        assert!(e.starts_with(file) && e.contains("1000000000000"), "{e}");
        assert!(
            largest <= allowance(b.len()),
            "{file}: {largest} bytes allocated"
        );
    }

    // Safetensors and checkpoints: a tensor of 10^6 × 10^6 f32 (4·10^12 bytes) in a 16-byte file,
    // with offsets that agree with the shape and with offsets that agree with the file.
    for offsets in ["[0,4000000000000]", "[0,16]"] {
        let header = format!(
            r#"{{"w":{{"dtype":"F32","shape":[1000000,1000000],"data_offsets":{offsets}}}}}"#
        );
        let b = join_safetensors(&header, &[0; 16]);
        let (r, largest) = largest_allocation(|| parse_safetensors(&b, "huge.safetensors"));
        let e = r.unwrap_err().to_string();
        assert!(e.starts_with("huge.safetensors: "), "{e}");
        assert!(largest <= allowance(b.len()), "{largest} bytes allocated");
        let (r, largest) = largest_allocation(|| TrainingCheckpoint::from_bytes(&b, "huge.ckpt"));
        let e = r.unwrap_err().to_string();
        assert!(e.starts_with("huge.ckpt: "), "{e}");
        assert!(largest <= allowance(b.len()), "{largest} bytes allocated");
    }
    // A header length of 10^12 bytes in a small file.
    let mut b = seed_safetensors();
    b[..8].copy_from_slice(&1_000_000_000_000u64.to_le_bytes());
    let (r, largest) = largest_allocation(|| parse_safetensors(&b, "long.safetensors"));
    let e = r.unwrap_err().to_string();
    assert!(e.starts_with("long.safetensors: "), "{e}");
    assert!(largest <= allowance(b.len()), "{largest} bytes allocated");

    // Text has no size field: the loader holds at most the file's own characters.
    let text = seed_text();
    let (r, largest) = largest_allocation(|| CharCorpus::parse(&text, Path::new("t.txt")));
    r.unwrap();
    assert!(
        largest <= allowance(text.len()),
        "{largest} bytes allocated"
    );
}
