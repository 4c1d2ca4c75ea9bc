//! NumPy `.npy` float32 matrices: the one reader of the corpus feature file
//! (`features.npy`) for the trainer (`train::corpus::msp`) and the corpus replayer
//! (`emogate produce --corpus`), and the header the trainer writes.
//!
//! Pure: bytes in, values out; callers read and write the files and name the path in their
//! errors.
//!
//! Supported: format versions 1.0 (`u16` header length) and 2.0/3.0 (`u32`), `descr` `'<f4'`
//! (little-endian float32), C order, shape `(rows, cols)`; a 1-D shape `(n,)` reads as one
//! column, `n × 1`. Anything else is a typed [`NpyError`].

use std::fmt;

/// The first six bytes of every `.npy` file.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Why bytes are not a float32 matrix this reader supports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NpyError {
    /// Shorter than the fixed preamble, or without the `\x93NUMPY` magic.
    #[error("not a .npy file")]
    NotNpy,
    /// A major version other than 1, 2 or 3.
    #[error("unsupported .npy version {0}")]
    UnsupportedVersion(u8),
    /// The bytes end inside the header-length field or the header.
    #[error("truncated header")]
    TruncatedHeader,
    /// The header dictionary is not UTF-8 text.
    #[error("header is not UTF-8")]
    HeaderNotUtf8,
    /// `descr` is not `'<f4'`.
    #[error("only little-endian float32 ('<f4') arrays are supported, header {header}")]
    UnsupportedDtype { header: String },
    /// `'fortran_order': True`.
    #[error("Fortran-ordered arrays are not supported")]
    FortranOrder,
    /// The header has no `'shape':` entry.
    #[error("header has no shape")]
    NoShape,
    /// The shape is not a tuple of non-negative integers.
    #[error("bad shape ({0})")]
    BadShape(String),
    /// A shape of another rank than 1 or 2.
    #[error("expected a 2-D array, shape ({})", Dims(.0))]
    NotMatrix(Vec<usize>),
    /// The data after the header is not `rows · cols · 4` bytes.
    #[error("expected {expected} bytes of data for shape {rows}x{cols}, found {found}")]
    DataLength { rows: usize, cols: usize, expected: usize, found: usize },
}

/// Formats a shape the way the header writes it, without the parentheses.
struct Dims<'a>(&'a [usize]);

impl fmt::Display for Dims<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(usize::to_string).collect();
        f.write_str(&parts.join(", "))
    }
}

/// A row-major float32 matrix read from `.npy` bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyMatrix {
    /// `rows · cols` values, row after row.
    pub data: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

/// Decodes a float32 C-order `.npy` file's bytes into a matrix (see the module docs for what
/// is supported).
pub fn decode_f32(bytes: &[u8]) -> Result<NpyMatrix, NpyError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(NpyError::NotNpy);
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            let len = bytes.get(8..12).ok_or(NpyError::TruncatedHeader)?;
            (u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize, 12)
        }
        v => return Err(NpyError::UnsupportedVersion(v)),
    };
    let header = bytes.get(start..start + header_len).ok_or(NpyError::TruncatedHeader)?;
    let header = std::str::from_utf8(header).map_err(|_| NpyError::HeaderNotUtf8)?;
    if !header.contains("'descr': '<f4'") {
        return Err(NpyError::UnsupportedDtype { header: header.trim_end().to_string() });
    }
    if header.contains("'fortran_order': True") {
        return Err(NpyError::FortranOrder);
    }
    let shape = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .map(|s| s.trim().trim_start_matches('('))
        .ok_or(NpyError::NoShape)?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| NpyError::BadShape(shape.to_string())))
        .collect::<Result<_, _>>()?;
    let (rows, cols) = match dims[..] {
        [r, c] => (r, c),
        [r] => (r, 1),
        _ => return Err(NpyError::NotMatrix(dims)),
    };
    let body = &bytes[start + header_len..];
    let expected = rows * cols * 4;
    if body.len() != expected {
        return Err(NpyError::DataLength { rows, cols, expected, found: body.len() });
    }
    let data = body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(NpyMatrix { data, rows, cols })
}

/// The preamble of a version 1.0 float32 C-order `[rows, cols]` file: magic, version, header
/// length and the header dictionary, padded with spaces so that the data starts at a multiple
/// of 64 bytes (numpy's alignment), ending in `\n`. The data follows as little-endian `f32`s.
pub fn header_f32(rows: usize, cols: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + header.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes
}

/// A whole `.npy` file for `data` (row-major `[rows, cols]`): [`header_f32`] and the values.
///
/// # Panics
/// When `data.len() != rows · cols`.
pub fn encode_f32(data: &[f32], rows: usize, cols: usize) -> Vec<u8> {
    assert_eq!(data.len(), rows * cols, "npy: data does not match shape");
    let mut bytes = header_f32(rows, cols);
    bytes.reserve(data.len() * 4);
    data.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with a hand-written header dictionary (as numpy or another writer would put it).
    fn with_header(version: u8, dict: &str, values: &[f32]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[version, 0]);
        let dict = format!("{dict}\n");
        if version == 1 {
            bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        } else {
            bytes.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        }
        bytes.extend_from_slice(dict.as_bytes());
        values.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
        bytes
    }

    const GOOD: &str = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";

    #[test]
    fn round_trips_and_aligns_the_data_to_64_bytes() {
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 1.0).collect();
        let bytes = encode_f32(&data, 3, 4);
        assert_eq!(header_f32(3, 4).len() % 64, 0);
        assert_eq!(bytes.len(), header_f32(3, 4).len() + 12 * 4);
        assert_eq!(decode_f32(&bytes), Ok(NpyMatrix { data, rows: 3, cols: 4 }));
        assert_eq!(decode_f32(&encode_f32(&[], 0, 5)), Ok(NpyMatrix { data: vec![], rows: 0, cols: 5 }));
    }

    #[test]
    fn reads_other_writers_headers_versions_and_1d_shapes() {
        let values = [1.0f32, 2.0, 3.0, 4.0, 5.0, -6.5];
        for version in [1, 2, 3] {
            let m = decode_f32(&with_header(version, GOOD, &values)).unwrap();
            assert_eq!((m.rows, m.cols, m.data.as_slice()), (2, 3, &values[..]), "version {version}");
        }
        let column = "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }";
        let m = decode_f32(&with_header(1, column, &values)).unwrap();
        assert_eq!((m.rows, m.cols), (6, 1));
    }

    #[test]
    fn wrong_magic_and_unknown_versions_are_refused() {
        assert_eq!(decode_f32(b"PK\x03\x04 not numpy at all"), Err(NpyError::NotNpy));
        assert_eq!(decode_f32(b"\x93NUMPY\x01"), Err(NpyError::NotNpy));
        assert_eq!(decode_f32(&with_header(4, GOOD, &[0.0; 6])), Err(NpyError::UnsupportedVersion(4)));
    }

    #[test]
    fn other_dtypes_and_fortran_order_are_refused() {
        for descr in ["'<f8'", "'>f4'", "'<i4'"] {
            let dict = GOOD.replace("'<f4'", descr);
            let err = decode_f32(&with_header(1, &dict, &[0.0; 12])).unwrap_err();
            assert!(
                matches!(err, NpyError::UnsupportedDtype { ref header } if header.contains(descr)),
                "{err}"
            );
        }
        let fortran = GOOD.replace("False", "True");
        assert_eq!(decode_f32(&with_header(1, &fortran, &[0.0; 6])), Err(NpyError::FortranOrder));
    }

    #[test]
    fn bad_shapes_are_refused() {
        let three_d = GOOD.replace("(2, 3)", "(2, 3, 1)");
        assert_eq!(decode_f32(&with_header(1, &three_d, &[0.0; 6])), Err(NpyError::NotMatrix(vec![2, 3, 1])));
        assert_eq!(
            decode_f32(&with_header(1, &GOOD.replace("(2, 3)", "(2, x)"), &[])),
            Err(NpyError::BadShape("2, x".into()))
        );
        let no_shape = "{'descr': '<f4', 'fortran_order': False, }";
        assert_eq!(decode_f32(&with_header(1, no_shape, &[])), Err(NpyError::NoShape));
        assert_eq!(NpyError::NotMatrix(vec![2, 3, 1]).to_string(), "expected a 2-D array, shape (2, 3, 1)");
    }

    #[test]
    fn truncated_files_are_typed_errors_not_panics() {
        let bytes = encode_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3);
        let header = header_f32(2, 3).len();
        for cut in [10, 11, 40, header - 1] {
            assert_eq!(decode_f32(&bytes[..cut]), Err(NpyError::TruncatedHeader), "cut at {cut}");
        }
        assert_eq!(
            decode_f32(&bytes[..bytes.len() - 1]),
            Err(NpyError::DataLength { rows: 2, cols: 3, expected: 24, found: 23 })
        );
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(decode_f32(&long), Err(NpyError::DataLength { found: 25, .. })));
        // Version 2 with a file that ends inside its 4-byte header length.
        assert_eq!(decode_f32(&with_header(2, GOOD, &[])[..11]), Err(NpyError::TruncatedHeader));
        let mut not_utf8 = with_header(1, GOOD, &[0.0; 6]);
        not_utf8[12] = 0xff;
        assert_eq!(decode_f32(&not_utf8), Err(NpyError::HeaderNotUtf8));
    }
}
