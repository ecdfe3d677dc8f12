//! A reader for IDX files (MNIST and its relatives), plain or gzip-compressed. Every input is
//! untrusted: header sizes are checked against the real data before anything is sized from them.

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::{ModelError, Result};

/// The element-type code for unsigned bytes, the only type MNIST-style files use.
const UBYTE: u8 = 0x08;

/// The most data a gzip-compressed file may inflate to. A plain file is bounded by its own length,
/// but a gzip stream is not, so a lying header must not make us inflate without end. 4 GiB is far
/// above any IDX dataset (full MNIST is 47 MB, EMNIST under 1 GB).
const MAX_GZIP_DATA: u64 = 1 << 32;

/// An IDX array of unsigned bytes: `dims` as the header gives them, `data` row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The size of each dimension (`[n, rows, cols]` for images, `[n]` for labels).
    pub dims: Vec<usize>,
    /// `dims.product()` bytes, row-major.
    pub data: Vec<u8>,
}

/// Reads an IDX file, gzip-compressed (detected by its `1f 8b` magic) or plain.
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    parse_idx(&bytes, path)
}

/// Parses IDX bytes, gzip-compressed or plain; `file` only names the source in errors.
pub fn parse_idx(bytes: &[u8], file: impl AsRef<Path>) -> Result<IdxArray> {
    let file = file.as_ref();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        parse_stream(MultiGzDecoder::new(bytes), true, file)
    } else {
        parse_stream(bytes, false, file)
    }
}

fn parse_stream(mut r: impl Read, gzip: bool, file: &Path) -> Result<IdxArray> {
    let err = |problem: String| ModelError::data(file, problem);
    let corrupt = |e: std::io::Error| err(format!("the gzip stream is corrupt: {e}"));

    let mut magic = [0u8; 4];
    let got = read_up_to(&mut r, &mut magic).map_err(corrupt)?;
    if got < 4 {
        return Err(err(format!(
            "too short for an IDX header: {got} bytes, the magic number alone takes 4"
        )));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(err(format!(
            "not an IDX file: it starts with bytes {:02x} {:02x} {:02x} {:02x}, an IDX file starts with 00 00 <type> <dims>",
            magic[0], magic[1], magic[2], magic[3]
        )));
    }
    if magic[2] != UBYTE {
        return Err(err(format!(
            "IDX element type 0x{:02x} ({}) is not supported: only unsigned bytes (0x08) are",
            magic[2],
            type_name(magic[2])
        )));
    }
    let ndims = usize::from(magic[3]);
    if ndims == 0 {
        return Err(err("the IDX header declares 0 dimensions".into()));
    }

    // At most 255 × 4 bytes: a size fixed by the format, not by the file.
    let mut dim_bytes = vec![0u8; 4 * ndims];
    let got = read_up_to(&mut r, &mut dim_bytes).map_err(corrupt)?;
    if got < dim_bytes.len() {
        return Err(err(format!(
            "truncated IDX header: {ndims} dimensions need {} bytes of sizes, found {got}",
            dim_bytes.len()
        )));
    }
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| {
            err(format!(
                "the IDX dimensions {dims:?} overflow a 64-bit size"
            ))
        })?;
    if gzip && expected > MAX_GZIP_DATA {
        return Err(err(format!(
            "the IDX header declares dimensions {dims:?}, {expected} bytes of data, more than the {MAX_GZIP_DATA} bytes this reader accepts"
        )));
    }

    // One byte past the declared size tells a file with trailing data from an exact one; the
    // vector grows with the data actually read, never with the header's claim.
    let (data, read_error) = read_bounded(&mut r, expected.saturating_add(1));
    let found = data.len() as u64;
    if found < expected {
        let why = match read_error {
            Some(e) => format!(" (the gzip stream ends early or is corrupt: {e})"),
            None => String::new(),
        };
        return Err(err(format!(
            "expected {expected} bytes of data for dimensions {dims:?}, found {found}{why}"
        )));
    }
    if found > expected {
        return Err(err(format!(
            "the file holds more than the {expected} bytes of data its header declares for dimensions {dims:?}"
        )));
    }
    if let Some(e) = read_error {
        // All the data arrived but the gzip trailer (CRC, length) failed to verify.
        return Err(corrupt(e));
    }
    Ok(IdxArray { dims, data })
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads at most `limit` bytes; returns what was read, and the error that stopped it early if any.
fn read_bounded(r: &mut impl Read, limit: u64) -> (Vec<u8>, Option<std::io::Error>) {
    let mut data = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    while (data.len() as u64) < limit {
        let want = (limit - data.len() as u64).min(chunk.len() as u64) as usize;
        match r.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (data, Some(e)),
        }
    }
    (data, None)
}

fn type_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0b => "16-bit integer",
        0x0c => "32-bit integer",
        0x0d => "32-bit float",
        0x0e => "64-bit float",
        _ => "not an IDX type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, UBYTE, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn parses_plain_bytes() {
        let a = parse_idx(&idx(&[2, 3], &[1, 2, 3, 4, 5, 6]), "t").unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn trailing_data_is_refused() {
        let e = parse_idx(&idx(&[2], &[1, 2, 3]), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than the 2 bytes"), "{e}");
    }

    #[test]
    fn zero_dims_and_foreign_types_are_refused() {
        let e = parse_idx(&[0, 0, 8, 0], "t").unwrap_err().to_string();
        assert!(e.contains("0 dimensions"), "{e}");
        let e = parse_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 0], "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("0x0d (32-bit float)"), "{e}");
    }
}
