//! Hand-written decoders for the two records.
//!
//! [`FeatureDecoder`] is the infer stage's hot path: a FeatureRecord is ~25 KB, almost all of
//! it 6,373 little-endian floats. Decoding it schema-specifically lets the floats go straight
//! from the message into the caller's batch row in a loop the compiler vectorises (close to a
//! memcpy), instead of through apache-avro's per-item `Value` tree. Every check (see
//! [`DecodeError`]) runs before data is sliced or allocated, so no input can panic or make us
//! allocate more than the configured dimension.
//!
//! [`decode_prediction`] (archive stage) reuses the same bounds-checked primitives, so both
//! records report errors with the same reason codes.

use super::error::DecodeError;
use super::framing::Framing;
use super::reader::Reader;
use super::records::{AttributePrediction, Decision, EmotionPrediction, FeatureRecord, RecordMeta};
use super::schema::{legacy_prediction_fingerprint, RecordSchema};
use crate::attribute::{Attribute, PerAttribute, LIKERT_BINS};

/// Decoder for `emogate.v1.FeatureRecord` messages with a fixed feature dimension.
#[derive(Debug, Clone)]
pub struct FeatureDecoder {
    expected_dims: usize,
    schema_ids: Vec<u32>,
    feature_set: Option<String>,
}

impl FeatureDecoder {
    /// A decoder that accepts records with exactly `expected_dims` finite features, in any
    /// framing and (for Confluent framing) with any schema id.
    pub fn new(expected_dims: usize) -> Self {
        FeatureDecoder { expected_dims, schema_ids: Vec::new(), feature_set: None }
    }

    /// Restricts Confluent-framed messages to these registry ids (others are `unknown_schema`).
    /// An empty list accepts any id; raw and single-object messages are unaffected.
    pub fn with_schema_ids(mut self, ids: impl IntoIterator<Item = u32>) -> Self {
        self.schema_ids = ids.into_iter().collect();
        self
    }

    /// Accepts only records whose `feature_set` names `name` (see [`feature_set_name`]: a note
    /// after the name, such as `ComParE_2016 (synthetic)`, is not compared); others are
    /// `feature_set_mismatch`. Without it every feature set is accepted.
    pub fn with_feature_set(mut self, name: &str) -> Self {
        self.feature_set = Some(feature_set_name(name).to_owned());
        self
    }

    /// The feature dimension every record must have.
    pub fn expected_dims(&self) -> usize {
        self.expected_dims
    }

    /// Decodes one message into an owned record.
    pub fn decode(&self, bytes: &[u8]) -> Result<FeatureRecord, DecodeError> {
        let mut features = vec![0.0; self.expected_dims];
        let (meta, _) = self.decode_into(bytes, &mut features)?;
        Ok(FeatureRecord::from_parts(meta, features))
    }

    /// Decodes one message, writing its features into `out` (e.g. a row of a batch tensor)
    /// and returning the rest of the record with the framing it came in. On error `out` may
    /// hold part of the features.
    ///
    /// # Panics
    /// If `out.len() != self.expected_dims()` (a caller bug, independent of the input bytes).
    pub fn decode_into(&self, bytes: &[u8], out: &mut [f32]) -> Result<(RecordMeta, Framing), DecodeError> {
        assert_eq!(out.len(), self.expected_dims, "decode_into needs a row of expected_dims floats");
        let (framing, start) = Framing::detect(bytes, RecordSchema::FeatureRecord)?;
        self.check_schema_id(framing)?;
        let mut r = Reader::new(bytes, start);
        let meta = read_meta(&mut r)?;
        if let Some(expected) = &self.feature_set {
            if feature_set_name(&meta.feature_set) != expected {
                return Err(DecodeError::FeatureSetMismatch {
                    expected: expected.clone(),
                    got: meta.feature_set,
                });
            }
        }
        read_float_array(&mut r, "features", out)?;
        r.finish()?;
        check_finite(out)?;
        Ok((meta, framing))
    }

    fn check_schema_id(&self, framing: Framing) -> Result<(), DecodeError> {
        match framing {
            Framing::Confluent { schema_id }
                if !self.schema_ids.is_empty() && !self.schema_ids.contains(&schema_id) =>
            {
                Err(DecodeError::UnknownSchemaId { schema_id, accepted: self.schema_ids.clone() })
            }
            _ => Ok(()),
        }
    }
}

/// The extractor configuration a `feature_set` value names: its first whitespace-separated
/// word. What follows is a note for people (`ComParE_2016 (synthetic)` is the synthetic
/// corpus' stand-in for ComParE_2016) and is not compared.
pub fn feature_set_name(feature_set: &str) -> &str {
    feature_set.split_whitespace().next().unwrap_or("")
}

/// Decodes an `emogate.v1.EmotionPrediction` message in any framing. Values are not range
/// checked (the infer stage produced them; the archive stores what was published), but the
/// structure is: the distribution must have [`LIKERT_BINS`] items and the id must not be empty.
///
/// A single-object record written with the legacy schema (before `uncertainty`; see
/// [`super::schema::LEGACY_EMOTION_PREDICTION_AVSC`]) decodes too, with `uncertainty: None`.
pub fn decode_prediction(bytes: &[u8]) -> Result<(EmotionPrediction, Framing), DecodeError> {
    let (framing, start, has_uncertainty) = match Framing::detect(bytes, RecordSchema::EmotionPrediction) {
        Ok((framing, start)) => (framing, start, true),
        Err(DecodeError::UnknownFingerprint { found, .. }) if found == legacy_prediction_fingerprint() => {
            (Framing::SingleObject, Framing::SingleObject.header_len(), false)
        }
        Err(e) => return Err(e),
    };
    let mut r = Reader::new(bytes, start);
    let prediction = EmotionPrediction {
        utterance_id: read_utterance_id(&mut r)?,
        speaker_id: r.optional_string("speaker_id")?.map(str::to_owned),
        source: r.optional_string("source")?.map(str::to_owned),
        timestamp_ms: r.long("timestamp")?,
        processed_at_ms: r.long("processed_at")?,
        model_version: r.string("model_version")?.to_owned(),
        decision: Decision::ALL[r.enum_index("decision", Decision::ALL.len())?],
        attributes: PerAttribute::try_from_fn(|_| read_attribute(&mut r, has_uncertainty))?,
    };
    r.finish()?;
    Ok((prediction, framing))
}

fn read_utterance_id(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    match r.string("utterance_id")? {
        "" => Err(DecodeError::EmptyUtteranceId),
        id => Ok(id.to_owned()),
    }
}

/// Fields are evaluated in the order written, which is the schema's field order.
fn read_meta(r: &mut Reader<'_>) -> Result<RecordMeta, DecodeError> {
    Ok(RecordMeta {
        utterance_id: read_utterance_id(r)?,
        speaker_id: r.optional_string("speaker_id")?.map(str::to_owned),
        source: r.optional_string("source")?.map(str::to_owned),
        timestamp_ms: r.long("timestamp")?,
        feature_set: r.string("feature_set")?.to_owned(),
    })
}

fn read_attribute(r: &mut Reader<'_>, has_uncertainty: bool) -> Result<AttributePrediction, DecodeError> {
    let value = r.float("value")?;
    let consensus = r.float("consensus")?;
    let mut distribution = [0.0; LIKERT_BINS];
    read_float_array(r, "distribution", &mut distribution)?;
    Ok(AttributePrediction {
        value,
        consensus,
        distribution,
        entropy: r.float("entropy")?,
        uncertainty_source: Attribute::ALL[r.enum_index("uncertainty_source", Attribute::ALL.len())?],
        accepted: r.boolean("accepted")?,
        uncertainty: if has_uncertainty { r.optional_float("uncertainty")? } else { None },
    })
}

/// Reads an `array<float>` of exactly `out.len()` items, in any number of blocks, into `out`.
fn read_float_array(r: &mut Reader<'_>, field: &'static str, out: &mut [f32]) -> Result<(), DecodeError> {
    let mut filled = 0;
    loop {
        let count = block_count(r, field)?;
        if count == 0 {
            break;
        }
        let room = out.len() - filled;
        if count > room as u64 {
            let got = count_to_end(r, field, filled as u64, count)?;
            return Err(DecodeError::WrongDimension { field, expected: out.len(), got });
        }
        let n = count as usize;
        decode_floats(r.take(count * 4, field)?, &mut out[filled..filled + n]);
        filled += n;
    }
    if filled != out.len() {
        return Err(DecodeError::WrongDimension { field, expected: out.len(), got: filled as u64 });
    }
    Ok(())
}

/// Item count of the next array block, 0 at the end. A negative count is followed by the
/// block's size in bytes, which for floats must be exactly 4 per item.
fn block_count(r: &mut Reader<'_>, field: &'static str) -> Result<u64, DecodeError> {
    let offset = r.position();
    let count = r.long(field)?;
    if count >= 0 {
        return Ok(count as u64);
    }
    let count = count.unsigned_abs();
    let size_offset = r.position();
    let byte_size = r.long(field)?;
    if byte_size < 0 {
        return Err(DecodeError::NegativeLength { what: field, len: byte_size, offset: size_offset });
    }
    if count.checked_mul(4) != Some(byte_size as u64) {
        return Err(DecodeError::BadBlockSize { field, count, byte_size, offset });
    }
    Ok(count)
}

/// After a block that overflows the expected dimension: skips it and the blocks after it
/// (bounds-checked, nothing is decoded) and returns the array's full length for the error.
fn count_to_end(
    r: &mut Reader<'_>,
    field: &'static str,
    mut total: u64,
    mut pending: u64,
) -> Result<u64, DecodeError> {
    loop {
        r.take(pending.saturating_mul(4), field)?;
        total = total.saturating_add(pending);
        pending = block_count(r, field)?;
        if pending == 0 {
            return Ok(total);
        }
    }
}

/// Little-endian bytes to floats; `src.len() == 4 * dst.len()`. Fixed-size chunks let the
/// compiler turn this into wide loads (a plain copy on little-endian targets).
fn decode_floats(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    }
}

/// A separate branch-free pass (vectorised; the row is still in L1) over the whole row; only a
/// failure pays for the search. Folding the flag into [`decode_floats`] measured 4x slower:
/// the fused loop no longer vectorises.
fn check_finite(values: &[f32]) -> Result<(), DecodeError> {
    if values.iter().fold(true, |ok, v| ok & v.is_finite()) {
        return Ok(());
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(DecodeError::NonFinite { index, value: values[index] }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode::{encode_feature_record, write_float, write_long, write_string};

    fn record(features: Vec<f32>) -> FeatureRecord {
        FeatureRecord {
            utterance_id: "utt-1".into(),
            speaker_id: Some("spk".into()),
            source: None,
            timestamp_ms: 1_700_000_000_000,
            feature_set: "ComParE_2016".into(),
            features,
        }
    }

    /// A raw FeatureRecord whose features are written by `features` (blocks and terminator).
    fn raw_with_features(features: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        write_string("utt-1", &mut out);
        out.extend_from_slice(&[0x00, 0x00]);
        write_long(7, &mut out);
        write_string("fs", &mut out);
        features(&mut out);
        out
    }

    #[test]
    fn decode_into_fills_the_row_and_reports_framing() {
        let rec = record((0..16).map(|i| i as f32 * 0.5).collect());
        let framings = [Framing::Raw, Framing::SingleObject, Framing::Confluent { schema_id: 42 }];
        for framing in framings {
            let mut bytes = Vec::new();
            encode_feature_record(&rec, &framing, &mut bytes);
            let mut row = [f32::NAN; 16];
            let (meta, seen) = FeatureDecoder::new(16).decode_into(&bytes, &mut row).unwrap();
            assert_eq!(seen, framing);
            assert_eq!(FeatureRecord::from_parts(meta, row.to_vec()), rec);
        }
    }

    #[test]
    fn a_record_of_another_feature_set_is_refused_and_a_note_after_the_name_is_ignored() {
        let mut bytes = Vec::new();
        encode_feature_record(&record(vec![0.5; 4]), &Framing::SingleObject, &mut bytes);
        // The synthetic model's manifest says "ComParE_2016 (synthetic)": the same name.
        let model = FeatureDecoder::new(4).with_feature_set("ComParE_2016 (synthetic)");
        assert_eq!(model.decode(&bytes).unwrap().feature_set, "ComParE_2016");
        let other = FeatureDecoder::new(4).with_feature_set("eGeMAPSv02");
        let e = other.decode(&bytes).unwrap_err();
        assert_eq!(e.reason(), "feature_set_mismatch");
        assert_eq!(e.to_string(), "feature_set \"ComParE_2016\" is not the model's \"eGeMAPSv02\"");
        assert_eq!(
            FeatureDecoder::new(4).decode(&bytes).unwrap().features,
            vec![0.5; 4],
            "unchecked by default"
        );
        assert_eq!(feature_set_name("  ComParE_2016\t(note)"), "ComParE_2016");
        assert_eq!(feature_set_name(""), "");
    }

    #[test]
    fn blocks_with_and_without_byte_size_concatenate() {
        let bytes = raw_with_features(|out| {
            write_long(2, out);
            [1.0, 2.0].into_iter().for_each(|v| write_float(v, out));
            write_long(-1, out);
            write_long(4, out);
            write_float(3.0, out);
            write_long(0, out);
        });
        let decoded = FeatureDecoder::new(3).decode(&bytes).unwrap();
        assert_eq!(decoded.features, [1.0, 2.0, 3.0]);
    }

    #[test]
    fn over_long_arrays_report_their_full_length() {
        let bytes = raw_with_features(|out| {
            for _ in 0..2 {
                write_long(3, out);
                [1.0, 2.0, 3.0].into_iter().for_each(|v| write_float(v, out));
            }
            write_long(0, out);
        });
        let err = FeatureDecoder::new(4).decode(&bytes).unwrap_err();
        assert_eq!(err, DecodeError::WrongDimension { field: "features", expected: 4, got: 6 });
    }

    #[test]
    fn block_byte_size_must_match_the_count() {
        let bytes = raw_with_features(|out| {
            write_long(-1, out);
            write_long(8, out);
            write_float(1.0, out);
            write_long(0, out);
        });
        let err = FeatureDecoder::new(1).decode(&bytes).unwrap_err();
        assert!(matches!(err, DecodeError::BadBlockSize { count: 1, byte_size: 8, .. }), "{err}");
    }

    #[test]
    fn first_non_finite_index_is_reported() {
        let mut features = vec![0.0; 40];
        features[33] = f32::NEG_INFINITY;
        features[35] = f32::NAN;
        let mut bytes = Vec::new();
        encode_feature_record(&record(features), &Framing::Raw, &mut bytes);
        let err = FeatureDecoder::new(40).decode(&bytes).unwrap_err();
        assert_eq!(err, DecodeError::NonFinite { index: 33, value: f32::NEG_INFINITY });
    }

    #[test]
    fn confluent_ids_can_be_restricted() {
        let mut bytes = Vec::new();
        encode_feature_record(&record(vec![1.0]), &Framing::Confluent { schema_id: 9 }, &mut bytes);
        assert!(FeatureDecoder::new(1).with_schema_ids([9]).decode(&bytes).is_ok());
        let err = FeatureDecoder::new(1).with_schema_ids([1, 2]).decode(&bytes).unwrap_err();
        assert_eq!(err.reason(), "unknown_schema");
    }

    #[test]
    #[should_panic(expected = "expected_dims")]
    fn wrong_row_length_is_a_caller_bug() {
        let _ = FeatureDecoder::new(3).decode_into(&[], &mut [0.0; 2]);
    }
}
