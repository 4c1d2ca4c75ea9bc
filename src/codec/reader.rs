//! Bounds-checked reader for Avro binary primitives.
//!
//! Both hand-written decoders are built from these few functions so that every length is
//! checked against the bytes that are actually left *before* anything is sliced or allocated,
//! and every failure becomes a typed [`DecodeError`] with the offset where it happened. Nothing
//! here can panic on any input.

use super::error::DecodeError;
use super::MAX_STRING_BYTES;

/// Longest varint that can encode 64 bits (7 payload bits per byte).
const MAX_VARINT_BYTES: usize = 10;

/// A read position in one message. Offsets are absolute (framing header included).
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading `buf` at `pos` (the first byte after the framing header).
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos: pos.min(buf.len()) }
    }

    /// Current absolute offset.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Takes the next `len` bytes, or fails with `Truncated` without moving.
    pub(crate) fn take(&mut self, len: u64, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let available = self.remaining();
        let Some(n) = usize::try_from(len).ok().filter(|&n| n <= available) else {
            return Err(DecodeError::Truncated { what, offset: self.pos, needed: len, available });
        };
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    /// An Avro `long` (zigzag varint, at most 10 bytes).
    pub(crate) fn long(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let raw = self.varint(what)?;
        Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut value = 0u64;
        for i in 0..MAX_VARINT_BYTES {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(DecodeError::Truncated { what, offset: self.pos, needed: 1, available: 0 });
            };
            // The 10th byte holds bit 63 only; anything more overflows or continues.
            if i == MAX_VARINT_BYTES - 1 && byte > 1 {
                return Err(DecodeError::BadVarint { what, offset: start });
            }
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::BadVarint { what, offset: start })
    }

    /// A length prefix: a `long` that must not be negative.
    pub(crate) fn length(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let offset = self.pos;
        let len = self.long(what)?;
        u64::try_from(len).map_err(|_| DecodeError::NegativeLength { what, len, offset })
    }

    /// An Avro `string`: length-checked against [`MAX_STRING_BYTES`] and the input, UTF-8 validated.
    pub(crate) fn string(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let len = self.length(field)?;
        if len > MAX_STRING_BYTES as u64 {
            return Err(DecodeError::TooLarge { field, len, limit: MAX_STRING_BYTES });
        }
        let offset = self.pos;
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes)
            .map_err(|e| DecodeError::InvalidUtf8 { field, offset: offset + e.valid_up_to() })
    }

    /// A `["null", "string"]` union.
    pub(crate) fn optional_string(&mut self, field: &'static str) -> Result<Option<&'a str>, DecodeError> {
        self.optional(field, Self::string)
    }

    /// A `["null", "float"]` union.
    pub(crate) fn optional_float(&mut self, field: &'static str) -> Result<Option<f32>, DecodeError> {
        self.optional(field, Self::float)
    }

    /// A `["null", T]` union whose second branch `read` decodes.
    fn optional<T>(
        &mut self,
        field: &'static str,
        read: impl FnOnce(&mut Self, &'static str) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        let offset = self.pos;
        match self.long(field)? {
            0 => Ok(None),
            1 => read(self, field).map(Some),
            index => Err(DecodeError::BadUnionIndex { field, index, offset }),
        }
    }

    /// An enum symbol index in `0..symbols`.
    pub(crate) fn enum_index(&mut self, field: &'static str, symbols: usize) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let index = self.long(field)?;
        usize::try_from(index).ok().filter(|&i| i < symbols).ok_or(DecodeError::BadEnumIndex {
            field,
            index,
            offset,
            symbols,
        })
    }

    /// An Avro `float` (4 bytes little-endian).
    pub(crate) fn float(&mut self, what: &'static str) -> Result<f32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An Avro `boolean` (one byte, 0 or 1).
    pub(crate) fn boolean(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        let offset = self.pos;
        match self.take(1, field)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(DecodeError::BadBoolean { field, byte, offset }),
        }
    }

    /// Succeeds only when every byte has been consumed.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { offset: self.pos, count }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode::write_long;

    fn read_long(bytes: &[u8]) -> Result<i64, DecodeError> {
        let mut r = Reader::new(bytes, 0);
        let v = r.long("n")?;
        r.finish().map(|()| v)
    }

    #[test]
    fn longs_round_trip_at_the_edges() {
        for v in [0, 1, -1, 63, -64, 64, i32::MAX as i64, i64::MAX, i64::MIN, i64::MIN + 1] {
            let mut buf = Vec::new();
            write_long(v, &mut buf);
            assert!(buf.len() <= MAX_VARINT_BYTES);
            assert_eq!(read_long(&buf), Ok(v), "{v} as {buf:02x?}");
        }
    }

    #[test]
    fn known_zigzag_encodings() {
        assert_eq!(read_long(&[0x00]), Ok(0));
        assert_eq!(read_long(&[0x01]), Ok(-1));
        assert_eq!(read_long(&[0x02]), Ok(1));
        assert_eq!(read_long(&[0x7f]), Ok(-64));
        assert_eq!(read_long(&[0x80, 0x01]), Ok(64));
        // Non-minimal encodings are legal Avro and decode to the same value.
        assert_eq!(read_long(&[0x82, 0x00]), Ok(1));
    }

    #[test]
    fn overlong_and_overflowing_varints_are_malformed() {
        let eleven = [0xff; 11];
        assert_eq!(read_long(&eleven).map_err(|e| e.reason()), Err("malformed"));
        let mut ten = [0xff; 10];
        ten[9] = 0x02; // bit 64
        assert_eq!(read_long(&ten).map_err(|e| e.reason()), Err("malformed"));
        ten[9] = 0x01;
        assert_eq!(read_long(&ten), Ok(i64::MIN));
    }

    #[test]
    fn truncated_varint() {
        let err = read_long(&[0x80, 0x80]).unwrap_err();
        assert_eq!(err, DecodeError::Truncated { what: "n", offset: 2, needed: 1, available: 0 });
    }

    #[test]
    fn take_never_overreads() {
        let mut r = Reader::new(&[1, 2, 3], 1);
        assert_eq!(r.take(u64::MAX, "x").map_err(|e| e.reason()), Err("truncated"));
        assert_eq!(r.take(2, "x"), Ok(&[2u8, 3][..]));
        assert_eq!(r.take(1, "x").map_err(|e| e.reason()), Err("truncated"));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn strings_check_limit_before_bytes_and_validate_utf8() {
        let mut buf = Vec::new();
        write_long(MAX_STRING_BYTES as i64 + 1, &mut buf);
        assert_eq!(Reader::new(&buf, 0).string("s").map_err(|e| e.reason()), Err("too_large"));
        let bad = [0x06, b'a', 0xc3, 0x28];
        assert_eq!(Reader::new(&bad, 0).string("s"), Err(DecodeError::InvalidUtf8 { field: "s", offset: 2 }));
        assert_eq!(Reader::new(&[0x03], 0).string("s").map_err(|e| e.reason()), Err("malformed"));
    }

    #[test]
    fn unions_booleans_and_enums_are_range_checked() {
        assert_eq!(Reader::new(&[0x04], 0).optional_string("u").map_err(|e| e.reason()), Err("malformed"));
        assert_eq!(Reader::new(&[0x00], 0).optional_string("u"), Ok(None));
        assert_eq!(Reader::new(&[0x02, 0x02, b'h'], 0).optional_string("u"), Ok(Some("h")));
        assert_eq!(Reader::new(&[0x02], 0).boolean("b").map_err(|e| e.reason()), Err("malformed"));
        assert_eq!(Reader::new(&[0x01], 0).boolean("b"), Ok(true));
        assert_eq!(Reader::new(&[0x04], 0).enum_index("e", 2).map_err(|e| e.reason()), Err("malformed"));
        assert_eq!(Reader::new(&[0x01], 0).enum_index("e", 2).map_err(|e| e.reason()), Err("malformed"));
        assert_eq!(Reader::new(&[0x02], 0).enum_index("e", 2), Ok(1));
    }
}
