//! Minimal NumPy `.npy` (format 1.0, little-endian float32, C order, 2-D) reader and writer.
//!
//! The synthetic corpus has tens of millions of feature values; as CSV that is hundreds of
//! megabytes of text and seconds of parsing, as `.npy` it is a memory copy that numpy,
//! pandas and the Python reference tests read directly.

use std::io::{Read, Write};
use std::path::Path;

use super::TrainError;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Writes `data` (row-major `[rows, cols]`) as a float32 `.npy` file.
pub fn write_f32(path: &Path, data: &[f32], rows: usize, cols: usize) -> Result<(), TrainError> {
    assert_eq!(data.len(), rows * cols, "npy: data does not match shape");
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Pad so that magic + version + length + header is a multiple of 64, ending in '\n'.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let file = std::fs::File::create(path).map_err(TrainError::io(path))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut bytes = Vec::with_capacity(header.len() + 10);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    w.write_all(&bytes).map_err(TrainError::io(path))?;
    for chunk in data.chunks(1 << 16) {
        let buf: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.write_all(&buf).map_err(TrainError::io(path))?;
    }
    w.flush().map_err(TrainError::io(path))
}

/// Reads a 2-D little-endian float32 C-order `.npy` file; returns `(data, rows, cols)`.
pub fn read_f32(path: &Path) -> Result<(Vec<f32>, usize, usize), TrainError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(TrainError::io(path))?;
    let bad =
        |reason: &str| TrainError::Parse { path: path.to_path_buf(), line: 1, reason: reason.to_string() };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("not a .npy file"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        _ => return Err(bad("unsupported .npy version")),
    };
    let header =
        std::str::from_utf8(bytes.get(start..start + header_len).ok_or_else(|| bad("truncated header"))?)
            .map_err(|_| bad("header is not UTF-8"))?;
    if !header.contains("'descr': '<f4'") {
        return Err(bad("only little-endian float32 ('<f4') arrays are supported"));
    }
    if header.contains("'fortran_order': True") {
        return Err(bad("Fortran-ordered arrays are not supported"));
    }
    let shape = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .map(|s| s.trim().trim_start_matches('('))
        .ok_or_else(|| bad("header has no shape"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("bad shape")))
        .collect::<Result<_, _>>()?;
    let (rows, cols) = match dims[..] {
        [r, c] => (r, c),
        [r] => (r, 1),
        _ => return Err(bad("expected a 2-D array")),
    };
    let body = &bytes[start + header_len..];
    if body.len() != rows * cols * 4 {
        return Err(bad(&format!("expected {} bytes of data, found {}", rows * cols * 4, body.len())));
    }
    let data = body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok((data, rows, cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 1.0).collect();
        write_f32(&path, &data, 3, 4).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert_eq!((raw.len() - 12 * 4) % 64, 0);
        let (back, r, c) = read_f32(&path).unwrap();
        assert_eq!((r, c), (3, 4));
        assert_eq!(back, data);
    }
}
