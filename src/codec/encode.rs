//! Hand-written encoders for both records.
//!
//! Writing the two fixed schemas directly is a few lines per field and avoids building an
//! apache-avro `Value` tree per message; the integration tests prove that apache-avro and
//! fastavro read these bytes back to the same values. Encoding cannot fail: the Rust types
//! already guarantee the schema's shape, and values are written as they are (an empty id or
//! a NaN feature included), so the load generator can also produce records that the decoder
//! must dead-letter.

use super::framing::Framing;
use super::records::{AttributePrediction, EmotionPrediction, FeatureRecord};
use super::schema::RecordSchema;

/// Appends `record`, framed by `framing`, to `out`. Features go in one array block.
pub fn encode_feature_record(record: &FeatureRecord, framing: &Framing, out: &mut Vec<u8>) {
    framing.write_header(RecordSchema::FeatureRecord, out);
    write_string(&record.utterance_id, out);
    write_optional_string(record.speaker_id.as_deref(), out);
    write_optional_string(record.source.as_deref(), out);
    write_long(record.timestamp_ms, out);
    write_string(&record.feature_set, out);
    write_float_array(&record.features, out);
}

/// Appends `prediction`, framed by `framing`, to `out`.
pub fn encode_prediction(prediction: &EmotionPrediction, framing: &Framing, out: &mut Vec<u8>) {
    framing.write_header(RecordSchema::EmotionPrediction, out);
    write_string(&prediction.utterance_id, out);
    write_optional_string(prediction.speaker_id.as_deref(), out);
    write_optional_string(prediction.source.as_deref(), out);
    write_long(prediction.timestamp_ms, out);
    write_long(prediction.processed_at_ms, out);
    write_string(&prediction.model_version, out);
    write_long(prediction.decision.index() as i64, out);
    for (_, attribute) in prediction.attributes.iter() {
        write_attribute(attribute, out);
    }
}

fn write_attribute(a: &AttributePrediction, out: &mut Vec<u8>) {
    write_float(a.value, out);
    write_float(a.consensus, out);
    write_float_array(&a.distribution, out);
    write_float(a.entropy, out);
    write_long(a.uncertainty_source.index() as i64, out);
    out.push(u8::from(a.accepted));
    write_optional_float(a.uncertainty, out);
}

/// Appends an Avro `long` (zigzag varint). Public so tests and tools can craft datums.
pub fn write_long(value: i64, out: &mut Vec<u8>) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// Appends an Avro `string` (length, then UTF-8 bytes).
pub fn write_string(value: &str, out: &mut Vec<u8>) {
    write_long(value.len() as i64, out);
    out.extend_from_slice(value.as_bytes());
}

/// Appends an Avro `float` (4 bytes little-endian).
pub fn write_float(value: f32, out: &mut Vec<u8>) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Appends a `["null", "float"]` union.
fn write_optional_float(value: Option<f32>, out: &mut Vec<u8>) {
    match value {
        None => write_long(0, out),
        Some(v) => {
            write_long(1, out);
            write_float(v, out);
        }
    }
}

/// Appends a `["null", "string"]` union.
fn write_optional_string(value: Option<&str>, out: &mut Vec<u8>) {
    match value {
        None => write_long(0, out),
        Some(s) => {
            write_long(1, out);
            write_string(s, out);
        }
    }
}

/// Appends an `array<float>` as one block followed by the zero-count terminator.
fn write_float_array(values: &[f32], out: &mut Vec<u8>) {
    if !values.is_empty() {
        write_long(values.len() as i64, out);
        out.reserve(values.len() * 4 + 1);
        for v in values {
            write_float(*v, out);
        }
    }
    write_long(0, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(value: i64) -> Vec<u8> {
        let mut out = Vec::new();
        write_long(value, &mut out);
        out
    }

    #[test]
    fn zigzag_matches_the_spec_table() {
        assert_eq!(encoded(0), [0x00]);
        assert_eq!(encoded(-1), [0x01]);
        assert_eq!(encoded(1), [0x02]);
        assert_eq!(encoded(-2), [0x03]);
        assert_eq!(encoded(2147483647), [0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(encoded(-2147483648), [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(encoded(i64::MIN).len(), 10);
    }

    #[test]
    fn feature_record_layout() {
        let record = FeatureRecord {
            utterance_id: "u".into(),
            speaker_id: None,
            source: Some("s".into()),
            timestamp_ms: 1,
            feature_set: "f".into(),
            features: vec![1.0],
        };
        let mut out = Vec::new();
        encode_feature_record(&record, &Framing::Raw, &mut out);
        let expected = [
            0x02, b'u', // utterance_id
            0x00, // speaker_id: null
            0x02, 0x02, b's', // source: string "s"
            0x02, // timestamp 1
            0x02, b'f', // feature_set
            0x02, 0x00, 0x00, 0x80, 0x3f, 0x00, // one block of 1.0f32, terminator
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn empty_array_is_just_the_terminator() {
        let mut out = Vec::new();
        write_float_array(&[], &mut out);
        assert_eq!(out, [0x00]);
    }
}
