//! Predictions written with another version of the prediction schema, resolved to the current
//! one (the archive's reader schema) by Avro's schema-resolution rules.
//!
//! The fast decoder ([`super::decode_prediction`]) knows the current schema and the legacy one
//! by their single-object fingerprints. A record of any other fingerprint cannot be read
//! without its writer schema: Avro binary carries no field names. [`WriterSchemas`] holds the
//! extra writer schemas an operator supplies (`archive.writer_schemas_dir`: e.g. a newer
//! release's `schemas/emotion_prediction.avsc` during a rolling upgrade, or any compatible
//! evolution). A record of one of them is resolved with `apache-avro` (fields the reader does
//! not know are dropped, fields the writer lacks take the reader's default, promotions such as
//! `float` → `double` apply), re-encoded in the current schema and decoded by the fast decoder,
//! so it is checked the same way as every other record. A record that does not resolve is a
//! [`DecodeError::SchemaResolution`] (reason `schema_resolution`): the archive dead-letters it.
//!
//! Resolution is the slow path (a generic `Value` tree per record); it only runs for records of
//! a writer schema the fast decoder does not know.

use std::collections::HashMap;

use apache_avro::{from_avro_datum, to_avro_datum, Schema};

use super::decode::decode_prediction;
use super::error::DecodeError;
use super::framing::{Framing, SINGLE_OBJECT_HEADER_LEN};
use super::records::EmotionPrediction;
use super::schema::{canonical_form, crc64_avro, RecordSchema};

/// A writer schema that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("writer schema {name}: {problem}")]
pub struct WriterSchemaError {
    /// Where it came from (a file name).
    pub name: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Extra writer schemas of `EmotionPrediction`, by single-object fingerprint.
#[derive(Default)]
pub struct WriterSchemas {
    by_fingerprint: HashMap<u64, (String, Schema)>,
}

impl std::fmt::Debug for WriterSchemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.by_fingerprint.iter().map(|(fp, (name, _))| (name, format!("{fp:016x}"))))
            .finish()
    }
}

impl WriterSchemas {
    /// No extra schemas: only what the fast decoder knows.
    pub fn new() -> Self {
        WriterSchemas::default()
    }

    /// Adds the schema `avsc` (named `name` in errors and logs); returns its fingerprint.
    /// It must be a record with the reader's full name (`emogate.v1.EmotionPrediction`, as
    /// resolution requires). The current schema itself is accepted and needs no entry.
    pub fn add(&mut self, name: &str, avsc: &str) -> Result<u64, WriterSchemaError> {
        let fail = |problem: String| WriterSchemaError { name: name.to_string(), problem };
        let schema = Schema::parse_str(avsc).map_err(|e| fail(format!("not an Avro schema: {e}")))?;
        let reader = RecordSchema::EmotionPrediction.schema();
        let (Schema::Record(w), Schema::Record(r)) = (&schema, reader) else {
            return Err(fail("not a record schema".to_string()));
        };
        if w.name.fullname(None) != r.name.fullname(None) {
            return Err(fail(format!(
                "names record {}, not {}",
                w.name.fullname(None),
                r.name.fullname(None)
            )));
        }
        let fingerprint = crc64_avro(canonical_form(&schema).as_bytes());
        if fingerprint != RecordSchema::EmotionPrediction.fingerprint() {
            self.by_fingerprint.insert(fingerprint, (name.to_string(), schema));
        }
        Ok(fingerprint)
    }

    /// Extra schemas held.
    pub fn len(&self) -> usize {
        self.by_fingerprint.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_fingerprint.is_empty()
    }

    /// Decodes a prediction like [`decode_prediction`], resolving single-object records of the
    /// held writer schemas to the current schema.
    pub fn decode(&self, bytes: &[u8]) -> Result<(EmotionPrediction, Framing), DecodeError> {
        match decode_prediction(bytes) {
            Err(DecodeError::UnknownFingerprint { found, expected, schema }) => {
                match self.by_fingerprint.get(&found) {
                    Some((name, writer)) => resolve(name, writer, &bytes[SINGLE_OBJECT_HEADER_LEN..]),
                    None => Err(DecodeError::UnknownFingerprint { found, expected, schema }),
                }
            }
            other => other,
        }
    }
}

/// Reads `datum` with `writer`, resolves it to the current schema and decodes the re-encoding.
fn resolve(name: &str, writer: &Schema, datum: &[u8]) -> Result<(EmotionPrediction, Framing), DecodeError> {
    let fail = |detail: String| DecodeError::SchemaResolution { writer: name.to_string(), detail };
    let reader = RecordSchema::EmotionPrediction.schema();
    let mut rest = datum;
    let value = from_avro_datum(writer, &mut rest, Some(reader)).map_err(|e| fail(e.to_string()))?;
    if !rest.is_empty() {
        let offset = SINGLE_OBJECT_HEADER_LEN + datum.len() - rest.len();
        return Err(DecodeError::TrailingBytes { offset, count: rest.len() });
    }
    let current = to_avro_datum(reader, value).map_err(|e| fail(e.to_string()))?;
    let (prediction, _) = decode_prediction(&current)?;
    Ok((prediction, Framing::SingleObject))
}

/// A newer-schema record for tests elsewhere: `prediction` written with the current schema plus
/// a `language` field (default null); returns that schema's text and the single-object bytes.
#[cfg(test)]
pub(crate) fn added_field_record(prediction: &EmotionPrediction) -> (String, Vec<u8>) {
    tests::added_field_record(prediction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_prediction, EMOTION_PREDICTION_AVSC};
    use apache_avro::types::Value;

    fn sample() -> EmotionPrediction {
        crate::archive::testing::prediction(3)
    }

    /// The current schema with `edit` applied to its JSON.
    fn evolved(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut json: serde_json::Value = serde_json::from_str(EMOTION_PREDICTION_AVSC).unwrap();
        edit(&mut json);
        json.to_string()
    }

    /// `prediction` as a single-object record of `writer`, with `extra` fields appended.
    fn written_with(
        writer_avsc: &str,
        prediction: &EmotionPrediction,
        extra: Vec<(String, Value)>,
    ) -> Vec<u8> {
        let writer = Schema::parse_str(writer_avsc).unwrap();
        let mut raw = Vec::new();
        encode_prediction(prediction, &Framing::Raw, &mut raw);
        let reader = RecordSchema::EmotionPrediction.schema();
        let Value::Record(mut fields) = from_avro_datum(reader, &mut raw.as_slice(), None).unwrap() else {
            panic!("a record")
        };
        fields.extend(extra);
        let mut out = vec![0xC3, 0x01];
        out.extend_from_slice(&crc64_avro(canonical_form(&writer).as_bytes()).to_le_bytes());
        out.extend(to_avro_datum(&writer, Value::Record(fields)).unwrap());
        out
    }

    pub(super) fn added_field_record(prediction: &EmotionPrediction) -> (String, Vec<u8>) {
        let v2 = evolved(|s| {
            s["fields"].as_array_mut().unwrap().push(serde_json::json!(
                {"name": "language", "type": ["null", "string"], "default": null}
            ))
        });
        let language = Value::Union(1, Box::new(Value::String("de".into())));
        let bytes = written_with(&v2, prediction, vec![("language".into(), language)]);
        (v2, bytes)
    }

    #[test]
    fn a_newer_schema_with_an_added_field_resolves_to_the_same_prediction() {
        let prediction = sample();
        let (v2, bytes) = added_field_record(&prediction);
        // Unknown to the fast decoder …
        assert!(matches!(decode_prediction(&bytes), Err(DecodeError::UnknownFingerprint { .. })));
        assert!(matches!(WriterSchemas::new().decode(&bytes), Err(DecodeError::UnknownFingerprint { .. })));
        // … resolved once its writer schema is known.
        let mut schemas = WriterSchemas::new();
        let fingerprint = schemas.add("emotion_prediction.v2.avsc", &v2).unwrap();
        assert_eq!(bytes[2..10], fingerprint.to_le_bytes());
        let (decoded, framing) = schemas.decode(&bytes).unwrap();
        assert_eq!((decoded, framing), (prediction.clone(), Framing::SingleObject));
        // Records of the current schema still take the fast path.
        let mut current = Vec::new();
        encode_prediction(&prediction, &Framing::SingleObject, &mut current);
        assert_eq!(schemas.decode(&current).unwrap().0, prediction);
    }

    #[test]
    fn a_schema_that_drops_a_field_without_default_does_not_resolve() {
        let v2 = evolved(|s| {
            let fields = s["fields"].as_array_mut().unwrap();
            fields.retain(|f| f["name"] != "model_version");
        });
        let mut fields_without = Vec::new();
        let prediction = sample();
        let mut raw = Vec::new();
        encode_prediction(&prediction, &Framing::Raw, &mut raw);
        let Value::Record(fields) =
            from_avro_datum(RecordSchema::EmotionPrediction.schema(), &mut raw.as_slice(), None).unwrap()
        else {
            panic!("a record")
        };
        fields_without.extend(fields.into_iter().filter(|(n, _)| n != "model_version"));
        let writer = Schema::parse_str(&v2).unwrap();
        let mut bytes = vec![0xC3, 0x01];
        bytes.extend_from_slice(&crc64_avro(canonical_form(&writer).as_bytes()).to_le_bytes());
        bytes.extend(to_avro_datum(&writer, Value::Record(fields_without)).unwrap());
        let mut schemas = WriterSchemas::new();
        schemas.add("v2-without-model-version", &v2).unwrap();
        let err = schemas.decode(&bytes).unwrap_err();
        assert_eq!(err.reason(), "schema_resolution", "{err}");
        assert!(err.to_string().contains("v2-without-model-version"), "{err}");
    }

    #[test]
    fn schemas_of_other_records_or_no_schema_are_refused() {
        let mut schemas = WriterSchemas::new();
        assert!(schemas.add("garbage.avsc", "{not json").unwrap_err().problem.contains("not an Avro schema"));
        let other = evolved(|s| s["name"] = serde_json::json!("FeatureRecord"));
        assert!(schemas.add("other.avsc", &other).unwrap_err().problem.contains("names record"));
        assert!(schemas.add("prim.avsc", "\"string\"").is_err());
        // The current schema is accepted and needs no entry.
        assert_eq!(
            schemas.add("current.avsc", EMOTION_PREDICTION_AVSC).unwrap(),
            RecordSchema::EmotionPrediction.fingerprint()
        );
        assert!(schemas.is_empty());
    }
}
