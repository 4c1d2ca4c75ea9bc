//! The two Avro schemas of the wire contract (DESIGN §5), embedded from `schemas/*.avsc`,
//! and their single-object fingerprints.
//!
//! The `.avsc` files are the source of truth; `include_str!` means the binary can never drift
//! from what a schema registry or a Python producer sees. apache-avro parses them (the tests
//! use it as an independent reader and writer; the hot path is hand-written in
//! [`super::decode`]).
//!
//! Fingerprints are computed here rather than with `Schema::fingerprint`: apache-avro 0.21.0
//! strips `logicalType` from the Parsing Canonical Form but then leaves `{"type":"long"}`
//! where the spec's [PRIMITIVES] rule (and Java, fastavro) write `"long"`. Both of our schemas
//! use `timestamp-millis`, so its fingerprints differ from every other implementation and
//! single-object messages from Java or Python producers would be refused. We finish the
//! canonicalisation ([`RecordSchema::canonical_form`]) and hash it with the spec's
//! CRC-64-AVRO ([`crc64_avro`]); a test pins the values fastavro computes.

use std::sync::LazyLock;

use apache_avro::Schema;

/// JSON text of `schemas/feature_record.avsc` (`emogate.v1.FeatureRecord`).
pub const FEATURE_RECORD_AVSC: &str = include_str!("../../schemas/feature_record.avsc");

/// JSON text of `schemas/emotion_prediction.avsc` (`emogate.v1.EmotionPrediction`).
pub const EMOTION_PREDICTION_AVSC: &str = include_str!("../../schemas/emotion_prediction.avsc");

/// JSON text of `schemas/legacy/emotion_prediction.0.avsc`: `EmotionPrediction` as written
/// before each attribute gained `uncertainty`. Kept so the archive still decodes single-object
/// records an older emogate left in the topics during a rolling upgrade (they carry this
/// schema's fingerprint); nothing writes it.
pub const LEGACY_EMOTION_PREDICTION_AVSC: &str =
    include_str!("../../schemas/legacy/emotion_prediction.0.avsc");

/// Parsed schemas. The texts are compiled in and a unit test parses them, so a failure here
/// is a build defect, never a property of input data.
static FEATURE_RECORD: LazyLock<Schema> =
    LazyLock::new(|| Schema::parse_str(FEATURE_RECORD_AVSC).expect("embedded feature_record.avsc parses"));
static EMOTION_PREDICTION: LazyLock<Schema> = LazyLock::new(|| {
    Schema::parse_str(EMOTION_PREDICTION_AVSC).expect("embedded emotion_prediction.avsc parses")
});
static FINGERPRINTS: LazyLock<[u64; 2]> =
    LazyLock::new(|| RecordSchema::ALL.map(|s| crc64_avro(s.canonical_form().as_bytes())));
static LEGACY_PREDICTION_FINGERPRINT: LazyLock<u64> = LazyLock::new(|| {
    let schema = Schema::parse_str(LEGACY_EMOTION_PREDICTION_AVSC).expect("embedded legacy schema parses");
    crc64_avro(canonical_form(&schema).as_bytes())
});

/// Single-object fingerprint of [`LEGACY_EMOTION_PREDICTION_AVSC`].
pub fn legacy_prediction_fingerprint() -> u64 {
    *LEGACY_PREDICTION_FINGERPRINT
}

/// Avro primitive type names, the only ones the [PRIMITIVES] rule collapses.
const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

/// Which of the two contract schemas a payload is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordSchema {
    /// `emogate.v1.FeatureRecord`, the input of the infer stage.
    FeatureRecord,
    /// `emogate.v1.EmotionPrediction`, the output of the infer stage.
    EmotionPrediction,
}

impl RecordSchema {
    /// Both schemas.
    pub const ALL: [RecordSchema; 2] = [RecordSchema::FeatureRecord, RecordSchema::EmotionPrediction];

    /// The record's simple name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            RecordSchema::FeatureRecord => "FeatureRecord",
            RecordSchema::EmotionPrediction => "EmotionPrediction",
        }
    }

    /// The parsed apache-avro schema.
    pub fn schema(self) -> &'static Schema {
        match self {
            RecordSchema::FeatureRecord => &FEATURE_RECORD,
            RecordSchema::EmotionPrediction => &EMOTION_PREDICTION,
        }
    }

    /// The schema's JSON text as embedded (what to register in a schema registry).
    pub fn avsc(self) -> &'static str {
        match self {
            RecordSchema::FeatureRecord => FEATURE_RECORD_AVSC,
            RecordSchema::EmotionPrediction => EMOTION_PREDICTION_AVSC,
        }
    }

    /// Parsing Canonical Form per the Avro specification (see the module doc for why this
    /// corrects apache-avro's). In canonical form every JSON string is a name, symbol or type
    /// name, none of which can contain `{` or `"`, so the textual rewrite only ever matches a
    /// whole `{"type":"<primitive>"}` object.
    pub fn canonical_form(self) -> String {
        canonical_form(self.schema())
    }

    /// CRC-64-AVRO fingerprint of [`RecordSchema::canonical_form`]: the `u64` whose
    /// little-endian bytes follow `0xC3 0x01` in single-object encoding.
    pub fn fingerprint(self) -> u64 {
        FINGERPRINTS[self as usize]
    }
}

/// Parsing Canonical Form of any schema, corrected as [`RecordSchema::canonical_form`] says.
pub(crate) fn canonical_form(schema: &Schema) -> String {
    let mut pcf = schema.canonical_form();
    for p in PRIMITIVES {
        pcf = pcf.replace(&format!(r#"{{"type":"{p}"}}"#), &format!(r#""{p}""#));
    }
    pcf
}

/// The spec's CRC-64-AVRO (Rabin) fingerprint of `bytes`.
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    bytes.iter().fold(CRC64_EMPTY, |fp, &b| (fp >> 8) ^ CRC64_TABLE[((fp ^ u64::from(b)) & 0xff) as usize])
}

const CRC64_EMPTY: u64 = 0xc15d_213a_a4d7_a795;
const CRC64_TABLE: [u64; 256] = crc64_table();

const fn crc64_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (CRC64_EMPTY & (fp & 1).wrapping_neg());
            j += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::rabin::Rabin;

    #[test]
    fn embedded_schemas_parse_as_named_records() {
        for s in RecordSchema::ALL {
            let Schema::Record(record) = s.schema() else { panic!("{} is not a record", s.name()) };
            assert_eq!(record.name.fullname(None), format!("emogate.v1.{}", s.name()));
        }
    }

    #[test]
    fn crc64_matches_the_reference_vector() {
        // apache-avro's documented Rabin digest of "hello world" is 60335ba6d0415528 (LE bytes).
        assert_eq!(
            crc64_avro(b"hello world").to_le_bytes(),
            [0x60, 0x33, 0x5b, 0xa6, 0xd0, 0x41, 0x55, 0x28]
        );
        assert_eq!(crc64_avro(b""), CRC64_EMPTY);
    }

    #[test]
    fn crc64_agrees_with_apache_avro_where_its_canonical_form_is_right() {
        let plain =
            Schema::parse_str(r#"{"type":"record","name":"r","fields":[{"name":"a","type":"long"}]}"#)
                .expect("test schema parses");
        let theirs = plain.fingerprint::<Rabin>().bytes;
        assert_eq!(crc64_avro(plain.canonical_form().as_bytes()).to_le_bytes().to_vec(), theirs);
    }

    #[test]
    fn canonical_form_collapses_logical_primitives() {
        let pcf = RecordSchema::FeatureRecord.canonical_form();
        assert!(pcf.contains(r#"{"name":"timestamp","type":"long"}"#), "{pcf}");
        assert!(!pcf.contains("logicalType") && !pcf.contains("doc"), "{pcf}");
    }

    #[test]
    fn fingerprints_match_fastavro_and_java() {
        // Hex (little-endian byte order, as on the wire) printed by fastavro 1.13's
        // `fingerprint(to_parsing_canonical_form(s), "CRC-64-AVRO")`; the cross-check
        // integration test recomputes them live.
        let hex_of = |s: RecordSchema| hex::encode(s.fingerprint().to_le_bytes());
        assert_eq!(hex_of(RecordSchema::FeatureRecord), "d20e84fd4e087cc6");
        assert_eq!(hex_of(RecordSchema::EmotionPrediction), "c59b09e8a8495eaf");
        // Schema version 0, before `uncertainty` (what records of older releases carry).
        assert_eq!(hex::encode(legacy_prediction_fingerprint().to_le_bytes()), "d82cb01ac4b7678c");
    }
}
