//! Decode errors with stable reason codes.
//!
//! Every variant carries enough detail (field, byte offset, counts) for the
//! `emogate.error.detail` dead-letter header, and maps to one short reason code
//! ([`DecodeError::reason`]) for the `emogate.error` header and the
//! `emogate_records_dead_lettered_total{reason}` metric. Dashboards and alert rules match on
//! those codes, so they are a contract: add codes, never rename them.

/// Why an Avro payload could not be decoded. Offsets count from the first byte of the message,
/// framing header included.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before a value that it had started (or declared) was complete.
    #[error("truncated input: {what} needs {needed} byte(s) at offset {offset}, {available} left")]
    Truncated { what: &'static str, offset: usize, needed: u64, available: usize },
    /// A variable-length integer ran over 10 bytes or overflowed 64 bits.
    #[error("malformed varint for {what} at offset {offset}: over 10 bytes or overflowing 64 bits")]
    BadVarint { what: &'static str, offset: usize },
    /// A `["null", "string"]` union branch other than 0 or 1.
    #[error("bad union index {index} for {field} at offset {offset} (expected 0 = null or 1 = string)")]
    BadUnionIndex { field: &'static str, index: i64, offset: usize },
    /// An enum symbol index outside the schema's symbols.
    #[error("bad enum index {index} for {field} at offset {offset} ({symbols} symbols)")]
    BadEnumIndex { field: &'static str, index: i64, offset: usize, symbols: usize },
    /// A boolean byte other than 0 or 1.
    #[error("bad boolean byte {byte:#04x} for {field} at offset {offset}")]
    BadBoolean { field: &'static str, byte: u8, offset: usize },
    /// A string length or array block byte size below zero.
    #[error("negative length {len} for {what} at offset {offset}")]
    NegativeLength { what: &'static str, len: i64, offset: usize },
    /// An array block whose declared byte size does not match its item count.
    #[error("array block of {field} at offset {offset}: {count} float(s) declared as {byte_size} bytes")]
    BadBlockSize { field: &'static str, count: u64, byte_size: i64, offset: usize },
    /// A string longer than [`super::MAX_STRING_BYTES`]; rejected before looking at the bytes.
    #[error("{field} declares {len} bytes, over the limit of {limit}")]
    TooLarge { field: &'static str, len: u64, limit: usize },
    /// A string that is not valid UTF-8.
    #[error("invalid UTF-8 in {field} at offset {offset}")]
    InvalidUtf8 { field: &'static str, offset: usize },
    /// Single-object encoding with a fingerprint other than the expected schema's.
    #[error("unknown schema fingerprint {found:016x} (expected {expected:016x} for {schema})")]
    UnknownFingerprint { found: u64, expected: u64, schema: &'static str },
    /// Confluent framing with a schema id the decoder was not configured to accept.
    #[error("unknown schema id {schema_id} (accepted: {accepted:?})")]
    UnknownSchemaId { schema_id: u32, accepted: Vec<u32> },
    /// `utterance_id` is the empty string (it keys the outputs, so it must not be empty).
    #[error("utterance_id is empty")]
    EmptyUtteranceId,
    /// A float array with another number of items than the model (or the schema) expects.
    #[error("wrong dimension of {field}: expected {expected}, got {got}")]
    WrongDimension { field: &'static str, expected: usize, got: u64 },
    /// A NaN or infinite feature; `index` is the first such position.
    #[error("non-finite feature {value} at index {index}")]
    NonFinite { index: usize, value: f32 },
    /// Bytes left over after a complete record.
    #[error("{count} trailing byte(s) after the record, from offset {offset}")]
    TrailingBytes { offset: usize, count: usize },
    /// A record made by another feature extractor configuration than the model's: its numbers
    /// would be scored as if they meant something else.
    #[error("feature_set {got:?} is not the model's {expected:?}")]
    FeatureSetMismatch { expected: String, got: String },
    /// A record of a known writer schema that does not resolve to the reader's (Avro's
    /// schema-resolution rules: a field without a default removed, an incompatible type).
    #[error("schema resolution from {writer}: {detail}")]
    SchemaResolution { writer: String, detail: String },
}

impl DecodeError {
    /// Every reason code [`DecodeError::reason`] can return.
    pub const REASONS: [&'static str; 11] = [
        "truncated",
        "malformed",
        "invalid_utf8",
        "unknown_schema",
        "empty_utterance_id",
        "wrong_dimension",
        "non_finite",
        "trailing_bytes",
        "too_large",
        "feature_set_mismatch",
        "schema_resolution",
    ];

    /// Stable snake_case reason code (the `emogate.error` dead-letter header value).
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::BadVarint { .. }
            | DecodeError::BadUnionIndex { .. }
            | DecodeError::BadEnumIndex { .. }
            | DecodeError::BadBoolean { .. }
            | DecodeError::NegativeLength { .. }
            | DecodeError::BadBlockSize { .. } => "malformed",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::InvalidUtf8 { .. } => "invalid_utf8",
            DecodeError::UnknownFingerprint { .. } | DecodeError::UnknownSchemaId { .. } => "unknown_schema",
            DecodeError::EmptyUtteranceId => "empty_utterance_id",
            DecodeError::WrongDimension { .. } => "wrong_dimension",
            DecodeError::NonFinite { .. } => "non_finite",
            DecodeError::TrailingBytes { .. } => "trailing_bytes",
            DecodeError::FeatureSetMismatch { .. } => "feature_set_mismatch",
            DecodeError::SchemaResolution { .. } => "schema_resolution",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_listed_snake_case_and_distinct() {
        let mut seen = DecodeError::REASONS.to_vec();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), DecodeError::REASONS.len());
        for r in DecodeError::REASONS {
            assert!(r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{r}");
        }
        let samples = [
            DecodeError::EmptyUtteranceId,
            DecodeError::NonFinite { index: 3, value: f32::NAN },
            DecodeError::TrailingBytes { offset: 9, count: 1 },
            DecodeError::UnknownSchemaId { schema_id: 7, accepted: vec![1] },
        ];
        for e in samples {
            assert!(DecodeError::REASONS.contains(&e.reason()), "{e}");
        }
    }

    #[test]
    fn display_carries_detail() {
        let e = DecodeError::WrongDimension { field: "features", expected: 6373, got: 6372 };
        assert_eq!(e.to_string(), "wrong dimension of features: expected 6373, got 6372");
        let e = DecodeError::UnknownFingerprint { found: 1, expected: 2, schema: "FeatureRecord" };
        assert!(e.to_string().contains("0000000000000001"));
    }
}
