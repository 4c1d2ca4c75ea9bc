//! `.npy` feature-matrix files for the trainer: [`crate::codec::npy`] (the format) plus the
//! file I/O and the trainer's error.
//!
//! The synthetic corpus has tens of millions of feature values; as CSV that is hundreds of
//! megabytes of text and seconds of parsing, as `.npy` it is a memory copy that numpy,
//! pandas and the Python reference tests read directly.

use std::io::Write;
use std::path::Path;

use super::TrainError;
use crate::codec::npy::{decode_f32, header_f32, NpyMatrix};

/// Writes `data` (row-major `[rows, cols]`) as a float32 `.npy` file.
pub fn write_f32(path: &Path, data: &[f32], rows: usize, cols: usize) -> Result<(), TrainError> {
    assert_eq!(data.len(), rows * cols, "npy: data does not match shape");
    let file = std::fs::File::create(path).map_err(TrainError::io(path))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    w.write_all(&header_f32(rows, cols)).map_err(TrainError::io(path))?;
    for chunk in data.chunks(1 << 16) {
        let buf: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.write_all(&buf).map_err(TrainError::io(path))?;
    }
    w.flush().map_err(TrainError::io(path))
}

/// Reads a float32 C-order `.npy` file (see [`crate::codec::npy`]); returns `(data, rows, cols)`.
pub fn read_f32(path: &Path) -> Result<(Vec<f32>, usize, usize), TrainError> {
    let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
    let NpyMatrix { data, rows, cols } =
        decode_f32(&bytes).map_err(|source| TrainError::Npy { path: path.to_path_buf(), source })?;
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
        assert_eq!(raw, crate::codec::npy::encode_f32(&data, 3, 4));
        let (back, r, c) = read_f32(&path).unwrap();
        assert_eq!((r, c), (3, 4));
        assert_eq!(back, data);
    }

    #[test]
    fn format_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("features.npy");
        std::fs::write(&path, b"not numpy").unwrap();
        let err = read_f32(&path).unwrap_err();
        assert!(matches!(err, TrainError::Npy { source: crate::codec::npy::NpyError::NotNpy, .. }), "{err}");
        assert_eq!(err.to_string(), format!("{}: not a .npy file", path.display()));
    }
}
