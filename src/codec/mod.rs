//! Avro codec: the two contract schemas, wire framing, a fast FeatureRecord decoder and
//! encoders for both records (DESIGN §4, §5).
//!
//! | file | job |
//! |---|---|
//! | `schema.rs` | the embedded `.avsc` files, parsed once; spec-conformant CRC-64-AVRO fingerprints |
//! | `framing.rs` | Confluent / single-object / raw framing: detection and headers |
//! | `records.rs` | plain structs mirroring the records |
//! | `reader.rs` | bounds-checked Avro primitives shared by the decoders |
//! | `decode.rs` | [`FeatureDecoder`] (hot path, zero-copy into a batch row) and [`decode_prediction`] |
//! | `resolve.rs` | [`WriterSchemas`]: predictions of other (newer) schema versions, resolved to the current one |
//! | `encode.rs` | [`encode_feature_record`], [`encode_prediction`] |
//! | `error.rs` | [`DecodeError`] and its reason codes |
//! | [`npy`] | NumPy `.npy` float32 matrices (corpus `features.npy`): the one reader, and the header writer |
//!
//! # Reason codes
//! A message that cannot be decoded goes to the dead-letter topic with the header
//! `emogate.error` set to [`DecodeError::reason`], one of these stable codes:
//!
//! | code | meaning |
//! |---|---|
//! | `truncated` | the bytes end inside a header, varint, string, float or array block |
//! | `malformed` | overlong varint, union/enum index or boolean out of range, negative length, array block byte size that does not match its count |
//! | `invalid_utf8` | a string field is not UTF-8 |
//! | `unknown_schema` | single-object fingerprint of another schema, or a Confluent schema id outside [`FeatureDecoder::with_schema_ids`] |
//! | `empty_utterance_id` | `utterance_id` is `""` (detectable in framed messages: a raw datum starting with `0x00` reads as Confluent framing) |
//! | `wrong_dimension` | feature count differs from the model's (or a distribution from 7) |
//! | `non_finite` | a feature is NaN or ±∞ |
//! | `trailing_bytes` | bytes left after a complete record |
//! | `too_large` | a string declares more than [`MAX_STRING_BYTES`] |
//! | `feature_set_mismatch` | the record's `feature_set` is not the model's |
//! | `schema_resolution` | a prediction of a known other writer schema ([`WriterSchemas`]) that does not resolve to the current one |
//!
//! `emogate.error.detail` carries the error's `Display` text (field, offset, counts).

mod decode;
mod encode;
mod error;
mod framing;
pub mod npy;
mod reader;
mod records;
mod resolve;
mod schema;

pub use decode::{decode_prediction, FeatureDecoder};
pub use encode::{encode_feature_record, encode_prediction, write_float, write_long, write_string};
pub use error::DecodeError;
pub use framing::{Framing, CONFLUENT_MAGIC, SINGLE_OBJECT_MAGIC};
pub use records::{AttributePrediction, Decision, EmotionPrediction, FeatureRecord, RecordMeta};
pub use resolve::{WriterSchemaError, WriterSchemas};
pub use schema::{
    crc64_avro, legacy_prediction_fingerprint, RecordSchema, EMOTION_PREDICTION_AVSC, FEATURE_RECORD_AVSC,
    LEGACY_EMOTION_PREDICTION_AVSC,
};

/// Longest string field accepted (64 KiB). Ids, feature-set names and model versions are
/// short; the limit turns a corrupt length prefix into `too_large` before any byte is read.
pub const MAX_STRING_BYTES: usize = 64 * 1024;

/// Test helpers of `resolve.rs` for other modules' tests.
#[cfg(test)]
pub(crate) mod resolve_testing {
    pub(crate) use super::resolve::added_field_record;
}
