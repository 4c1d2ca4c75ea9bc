//! Round trips against apache-avro, used as an independent implementation: what its generic
//! `Value` writer produces our decoders read back exactly, and what our encoders produce it
//! reads back exactly. Floats are compared bit for bit (so -0.0, subnormals and, in
//! predictions, NaN payloads count). Also: arbitrary array block splittings and all framings.

mod common;

use apache_avro::types::Value;
use apache_avro::{from_avro_datum, to_avro_datum};
use common::codec::{bits, framing};
use emogate::codec::{
    decode_prediction, encode_feature_record, encode_prediction, write_float, write_long, write_string,
    AttributePrediction, Decision, EmotionPrediction, FeatureDecoder, FeatureRecord, Framing, RecordSchema,
};
use emogate::{Attribute, PerAttribute};
use proptest::prelude::*;

// ---- strategies ------------------------------------------------------------------------

fn any_text() -> impl Strategy<Value = String> {
    "(?s).{0,24}"
}

fn utterance_id() -> impl Strategy<Value = String> {
    "(?s).{1,24}"
}

fn any_f32() -> impl Strategy<Value = f32> {
    any::<u32>().prop_map(f32::from_bits)
}

fn finite_f32() -> impl Strategy<Value = f32> {
    any_f32().prop_filter("finite", |v| v.is_finite())
}

fn feature_record(max_dims: usize) -> impl Strategy<Value = FeatureRecord> {
    (
        utterance_id(),
        proptest::option::of(any_text()),
        proptest::option::of(any_text()),
        any::<i64>(),
        any_text(),
        proptest::collection::vec(finite_f32(), 0..max_dims),
    )
        .prop_map(|(utterance_id, speaker_id, source, timestamp_ms, feature_set, features)| {
            FeatureRecord { utterance_id, speaker_id, source, timestamp_ms, feature_set, features }
        })
}

fn attribute_prediction() -> impl Strategy<Value = AttributePrediction> {
    (
        (any_f32(), any_f32(), proptest::array::uniform7(any_f32()), any_f32()),
        (0..3usize, any::<bool>(), proptest::option::of(any_f32())),
    )
        .prop_map(|((value, consensus, distribution, entropy), (source, accepted, uncertainty))| {
            AttributePrediction {
                value,
                consensus,
                distribution,
                entropy,
                uncertainty_source: Attribute::ALL[source],
                accepted,
                uncertainty,
            }
        })
}

fn emotion_prediction() -> impl Strategy<Value = EmotionPrediction> {
    let ids = (utterance_id(), proptest::option::of(any_text()), proptest::option::of(any_text()));
    let rest = (any::<i64>(), any::<i64>(), any_text(), any::<bool>());
    let attributes = proptest::array::uniform3(attribute_prediction());
    (ids, rest, attributes).prop_map(|((utterance_id, speaker_id, source), rest, [v, a, d])| {
        let (timestamp_ms, processed_at_ms, model_version, rejected) = rest;
        EmotionPrediction {
            utterance_id,
            speaker_id,
            source,
            timestamp_ms,
            processed_at_ms,
            model_version,
            decision: if rejected { Decision::Rejected } else { Decision::Accepted },
            attributes: PerAttribute { valence: v, arousal: a, dominance: d },
        }
    })
}

// ---- apache-avro Values -------------------------------------------------------------------

fn optional(s: &Option<String>) -> Value {
    match s {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(s) => Value::Union(1, Box::new(Value::String(s.clone()))),
    }
}

fn floats(values: &[f32]) -> Value {
    Value::Array(values.iter().map(|v| Value::Float(*v)).collect())
}

fn field(name: &str, value: Value) -> (String, Value) {
    (name.to_string(), value)
}

fn feature_value(r: &FeatureRecord) -> Value {
    Value::Record(vec![
        field("utterance_id", Value::String(r.utterance_id.clone())),
        field("speaker_id", optional(&r.speaker_id)),
        field("source", optional(&r.source)),
        field("timestamp", Value::TimestampMillis(r.timestamp_ms)),
        field("feature_set", Value::String(r.feature_set.clone())),
        field("features", floats(&r.features)),
    ])
}

fn attribute_value(a: &AttributePrediction) -> Value {
    let source = a.uncertainty_source;
    Value::Record(vec![
        field("value", Value::Float(a.value)),
        field("consensus", Value::Float(a.consensus)),
        field("distribution", floats(&a.distribution)),
        field("entropy", Value::Float(a.entropy)),
        field("uncertainty_source", Value::Enum(source.index() as u32, source.as_str().to_string())),
        field("accepted", Value::Boolean(a.accepted)),
        field(
            "uncertainty",
            match a.uncertainty {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(u) => Value::Union(1, Box::new(Value::Float(u))),
            },
        ),
    ])
}

fn prediction_value(p: &EmotionPrediction) -> Value {
    let mut fields = vec![
        field("utterance_id", Value::String(p.utterance_id.clone())),
        field("speaker_id", optional(&p.speaker_id)),
        field("source", optional(&p.source)),
        field("timestamp", Value::TimestampMillis(p.timestamp_ms)),
        field("processed_at", Value::TimestampMillis(p.processed_at_ms)),
        field("model_version", Value::String(p.model_version.clone())),
        field("decision", Value::Enum(p.decision.index() as u32, p.decision.symbol().to_string())),
    ];
    fields.extend(p.attributes.iter().map(|(a, v)| field(a.as_str(), attribute_value(v))));
    Value::Record(fields)
}

/// Structural equality with floats compared by bits.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same_value(x, y))
        }
        (Value::Record(xs), Value::Record(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|((n, x), (m, y))| n == m && same_value(x, y))
        }
        (Value::Union(i, x), Value::Union(j, y)) => i == j && same_value(x, y),
        _ => a == b,
    }
}

// ---- comparisons ----------------------------------------------------------------------------

fn assert_same_record(got: &FeatureRecord, want: &FeatureRecord) {
    let (got_meta, got_features) = got.clone().into_parts();
    let (want_meta, want_features) = want.clone().into_parts();
    assert_eq!(got_meta, want_meta);
    assert_eq!(bits(&got_features), bits(&want_features));
}

fn prediction_bits(p: &EmotionPrediction) -> Vec<u32> {
    p.attributes
        .iter()
        .flat_map(|(_, a)| [a.value, a.consensus, a.entropy].into_iter().chain(a.distribution))
        .map(f32::to_bits)
        .collect()
}

fn assert_same_prediction(got: &EmotionPrediction, want: &EmotionPrediction) {
    let non_floats = |p: &EmotionPrediction| {
        let ids = (p.utterance_id.clone(), p.speaker_id.clone(), p.source.clone(), p.model_version.clone());
        let flags = p.attributes.map(|_, a| (a.uncertainty_source, a.accepted));
        (ids, p.timestamp_ms, p.processed_at_ms, p.decision, flags)
    };
    assert_eq!(non_floats(got), non_floats(want));
    assert_eq!(prediction_bits(got), prediction_bits(want));
}

/// `header` + `datum`, as a framed message.
fn framed(framing: Framing, schema: RecordSchema, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    framing.write_header(schema, &mut out);
    out.extend_from_slice(datum);
    out
}

/// A raw FeatureRecord with its features split into the given blocks; `true` marks a block
/// written with a negative count and its byte size. What the plan does not cover goes into a
/// last plain block.
fn with_blocks(r: &FeatureRecord, plan: &[(usize, bool)]) -> Vec<u8> {
    let mut out = Vec::new();
    write_string(&r.utterance_id, &mut out);
    for s in [&r.speaker_id, &r.source] {
        match s {
            None => write_long(0, &mut out),
            Some(s) => {
                write_long(1, &mut out);
                write_string(s, &mut out);
            }
        }
    }
    write_long(r.timestamp_ms, &mut out);
    write_string(&r.feature_set, &mut out);
    let mut rest = &r.features[..];
    for &(len, sized) in plan.iter().chain(&[(usize::MAX, false)]) {
        let (block, tail) = rest.split_at(len.min(rest.len()));
        if block.is_empty() {
            break;
        }
        if sized {
            write_long(-(block.len() as i64), &mut out);
            write_long(4 * block.len() as i64, &mut out);
        } else {
            write_long(block.len() as i64, &mut out);
        }
        block.iter().for_each(|v| write_float(*v, &mut out));
        rest = tail;
    }
    write_long(0, &mut out);
    out
}

// ---- properties -----------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn apache_avro_written_feature_records_decode_exactly(r in feature_record(300), framing in framing()) {
        let datum = to_avro_datum(RecordSchema::FeatureRecord.schema(), feature_value(&r)).unwrap();
        let bytes = framed(framing, RecordSchema::FeatureRecord, &datum);
        let mut row = vec![0.0; r.features.len()];
        let (meta, seen) = FeatureDecoder::new(r.features.len()).decode_into(&bytes, &mut row).unwrap();
        prop_assert_eq!(seen, framing);
        assert_same_record(&FeatureRecord::from_parts(meta, row), &r);
    }

    #[test]
    fn our_feature_records_read_back_in_apache_avro(r in feature_record(300)) {
        let mut bytes = Vec::new();
        encode_feature_record(&r, &Framing::Raw, &mut bytes);
        let schema = RecordSchema::FeatureRecord.schema();
        let value = from_avro_datum(schema, &mut &bytes[..], None).unwrap();
        prop_assert!(same_value(&value, &feature_value(&r)), "{value:?}");
        // Both write one array block, so even the bytes agree.
        prop_assert_eq!(bytes, to_avro_datum(schema, feature_value(&r)).unwrap());
    }

    #[test]
    fn our_feature_records_round_trip_in_every_framing(r in feature_record(300), framing in framing()) {
        let mut bytes = Vec::new();
        encode_feature_record(&r, &framing, &mut bytes);
        assert_same_record(&FeatureDecoder::new(r.features.len()).decode(&bytes).unwrap(), &r);
    }

    #[test]
    fn any_block_splitting_decodes_to_the_same_features(
        r in feature_record(200),
        plan in proptest::collection::vec((1usize..40, any::<bool>()), 0..12),
    ) {
        let bytes = with_blocks(&r, &plan);
        assert_same_record(&FeatureDecoder::new(r.features.len()).decode(&bytes).unwrap(), &r);
        // apache-avro agrees on the same bytes.
        let value = from_avro_datum(RecordSchema::FeatureRecord.schema(), &mut &bytes[..], None).unwrap();
        prop_assert!(same_value(&value, &feature_value(&r)));
    }

    #[test]
    fn apache_avro_written_predictions_decode_exactly(p in emotion_prediction(), framing in framing()) {
        let datum = to_avro_datum(RecordSchema::EmotionPrediction.schema(), prediction_value(&p)).unwrap();
        let (decoded, seen) = decode_prediction(&framed(framing, RecordSchema::EmotionPrediction, &datum)).unwrap();
        prop_assert_eq!(seen, framing);
        assert_same_prediction(&decoded, &p);
    }

    #[test]
    fn our_predictions_read_back_in_apache_avro(p in emotion_prediction(), framing in framing()) {
        let mut bytes = Vec::new();
        encode_prediction(&p, &framing, &mut bytes);
        let datum = &bytes[framing.header_len()..];
        let value = from_avro_datum(RecordSchema::EmotionPrediction.schema(), &mut &datum[..], None).unwrap();
        prop_assert!(same_value(&value, &prediction_value(&p)), "{value:?}");
        let (decoded, seen) = decode_prediction(&bytes).unwrap();
        prop_assert_eq!(seen, framing);
        assert_same_prediction(&decoded, &p);
    }
}

#[test]
fn full_size_compare_record_round_trips_through_apache_avro() {
    let r = FeatureRecord {
        utterance_id: "msp-podcast/0001_0042".into(),
        speaker_id: Some("spk-17".into()),
        source: Some("opensmile".into()),
        timestamp_ms: 1_731_000_000_123,
        feature_set: "ComParE_2016".into(),
        features: (0..6373).map(|i| (i as f32).sin() * 1e3).collect(),
    };
    let datum = to_avro_datum(RecordSchema::FeatureRecord.schema(), feature_value(&r)).unwrap();
    let mut ours = Vec::new();
    encode_feature_record(&r, &Framing::Raw, &mut ours);
    assert_eq!(ours, datum);
    assert_same_record(&FeatureDecoder::new(6373).decode(&datum).unwrap(), &r);
}
