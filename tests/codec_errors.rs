//! Every reason code from crafted bytes, and robustness: random bytes, mutations and
//! truncations of valid messages never panic and only ever yield a record or a typed error
//! with one of the documented reason codes.

mod common;

use common::codec::{encoded_prediction, framing};
use emogate::codec::{
    decode_prediction, encode_feature_record, write_float, write_long, write_string, AttributePrediction,
    Decision, DecodeError, EmotionPrediction, FeatureDecoder, FeatureRecord, Framing, RecordSchema,
    MAX_STRING_BYTES,
};
use emogate::{Attribute, PerAttribute};
use proptest::prelude::*;

const DIMS: usize = 8;

fn record() -> FeatureRecord {
    FeatureRecord {
        utterance_id: "utt-7".into(),
        speaker_id: Some("spk".into()),
        source: None,
        timestamp_ms: 1_700_000_000_000,
        feature_set: "ComParE_2016".into(),
        features: (0..DIMS).map(|i| i as f32 - 3.5).collect(),
    }
}

fn prediction() -> EmotionPrediction {
    let attribute = AttributePrediction {
        value: 4.0,
        consensus: 3.9,
        distribution: [0.1, 0.1, 0.2, 0.3, 0.2, 0.05, 0.05],
        entropy: 1.8,
        uncertainty_source: Attribute::Arousal,
        accepted: true,
        uncertainty: None,
    };
    EmotionPrediction {
        utterance_id: "utt-7".into(),
        speaker_id: None,
        source: Some("opensmile".into()),
        timestamp_ms: 1,
        processed_at_ms: 2,
        model_version: "vae-er@1".into(),
        decision: Decision::Accepted,
        attributes: PerAttribute::from_fn(|_| attribute),
    }
}

fn encoded(r: &FeatureRecord, framing: Framing) -> Vec<u8> {
    let mut out = Vec::new();
    encode_feature_record(r, &framing, &mut out);
    out
}

/// Raw FeatureRecord bytes whose tail (from `timestamp` on) is written by `tail`.
fn raw_with_tail(tail: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    write_string("utt-7", &mut out);
    out.extend_from_slice(&[0x00, 0x00]);
    tail(&mut out);
    out
}

fn reason(bytes: &[u8]) -> &'static str {
    match FeatureDecoder::new(DIMS).decode(bytes) {
        Ok(r) => panic!("decoded {r:?}"),
        Err(e) => e.reason(),
    }
}

fn prediction_reason(bytes: &[u8]) -> &'static str {
    match decode_prediction(bytes) {
        Ok(p) => panic!("decoded {p:?}"),
        Err(e) => e.reason(),
    }
}

// ---- one test per reason code -------------------------------------------------------------

#[test]
fn valid_messages_decode() {
    assert_eq!(FeatureDecoder::new(DIMS).decode(&encoded(&record(), Framing::Raw)), Ok(record()));
    assert_eq!(
        decode_prediction(&encoded_prediction(&prediction(), Framing::Raw)),
        Ok((prediction(), Framing::Raw))
    );
}

#[test]
fn truncated() {
    let full = encoded(&record(), Framing::Raw);
    assert_eq!(reason(&full[..full.len() - 1]), "truncated"); // terminator missing
    assert_eq!(reason(&full[..full.len() - 3]), "truncated"); // inside the last float
    assert_eq!(reason(&[]), "truncated");
    assert_eq!(reason(&[0x00, 0x00, 0x01]), "truncated"); // Confluent header
    let p = encoded_prediction(&prediction(), Framing::SingleObject);
    assert_eq!(prediction_reason(&p[..p.len() - 1]), "truncated");
}

#[test]
fn malformed() {
    assert_eq!(reason(&[0xff; 11]), "malformed"); // utterance_id length: 11-byte varint
    assert_eq!(reason(&[0x01]), "malformed"); // utterance_id length -1
    let bad_union = {
        let mut b = Vec::new();
        write_string("utt-7", &mut b);
        b.push(0x04); // speaker_id union index 2
        b
    };
    assert_eq!(reason(&bad_union), "malformed");
    let negative_block_size = raw_with_tail(|b| {
        write_long(0, b);
        write_string("fs", b);
        write_long(-1, b);
        write_long(-4, b);
    });
    assert_eq!(reason(&negative_block_size), "malformed");
    let mismatched_block_size = raw_with_tail(|b| {
        write_long(0, b);
        write_string("fs", b);
        write_long(-(DIMS as i64), b);
        write_long(4 * DIMS as i64 + 4, b);
    });
    assert_eq!(reason(&mismatched_block_size), "malformed");
}

#[test]
fn malformed_predictions() {
    let mut p = encoded_prediction(&prediction(), Framing::Raw);
    let decision_at = p.len() - 3 * (4 + 4 + 1 + 7 * 4 + 1 + 4 + 1 + 1 + 1) - 1;
    p[decision_at] = 0x04; // decision index 2
    assert_eq!(prediction_reason(&p), "malformed");
    let mut p = encoded_prediction(&prediction(), Framing::Raw);
    let last = p.len() - 1;
    p[last] = 0x04; // uncertainty union index 2
    assert_eq!(prediction_reason(&p), "malformed");
    p[last] = 0x00;
    p[last - 1] = 0x02; // accepted = byte 2
    assert_eq!(prediction_reason(&p), "malformed");
    p[last - 1] = 0x01;
    p[last - 2] = 0x06; // uncertainty_source index 3
    assert_eq!(prediction_reason(&p), "malformed");
}

#[test]
fn invalid_utf8() {
    let mut bytes = encoded(&record(), Framing::Raw);
    bytes[2] = 0xff; // inside "utt-7"
    assert_eq!(reason(&bytes), "invalid_utf8");
}

#[test]
fn unknown_schema() {
    let mut bytes = encoded(&record(), Framing::SingleObject);
    bytes[9] ^= 0x01; // last fingerprint byte
    assert_eq!(reason(&bytes), "unknown_schema");
    let prediction_as_features = encoded_prediction(&prediction(), Framing::SingleObject);
    assert_eq!(reason(&prediction_as_features), "unknown_schema");
    let features_as_prediction = encoded(&record(), Framing::SingleObject);
    assert_eq!(prediction_reason(&features_as_prediction), "unknown_schema");
    let confluent = encoded(&record(), Framing::Confluent { schema_id: 5 });
    let err = FeatureDecoder::new(DIMS).with_schema_ids([4]).decode(&confluent).unwrap_err();
    assert_eq!(err.reason(), "unknown_schema");
}

#[test]
fn empty_utterance_id() {
    let r = FeatureRecord { utterance_id: String::new(), ..record() };
    for framing in [Framing::SingleObject, Framing::Confluent { schema_id: 1 }] {
        assert_eq!(reason(&encoded(&r, framing)), "empty_utterance_id");
    }
    let p = EmotionPrediction { utterance_id: String::new(), ..prediction() };
    assert_eq!(prediction_reason(&encoded_prediction(&p, Framing::SingleObject)), "empty_utterance_id");
}

#[test]
fn wrong_dimension() {
    for dims in [0, 1, DIMS - 1, DIMS + 1, 3 * DIMS] {
        let r = FeatureRecord { features: vec![1.0; dims], ..record() };
        let err = FeatureDecoder::new(DIMS).decode(&encoded(&r, Framing::Raw)).unwrap_err();
        assert_eq!(err, DecodeError::WrongDimension { field: "features", expected: DIMS, got: dims as u64 });
    }
    let short_distribution = raw_prediction_with_distribution(6);
    assert_eq!(prediction_reason(&short_distribution), "wrong_dimension");
}

/// A raw prediction whose valence distribution has `len` items (the rest is valid).
fn raw_prediction_with_distribution(len: usize) -> Vec<u8> {
    let full = encoded_prediction(&prediction(), Framing::Raw);
    // value, consensus, distribution (count, 7 floats, end), entropy, source, accepted, uncertainty (null)
    let attributes_len = 3 * (4 + 4 + 1 + 7 * 4 + 1 + 4 + 1 + 1 + 1);
    let mut out = full[..full.len() - attributes_len].to_vec();
    write_float(4.0, &mut out);
    write_float(3.9, &mut out);
    write_long(len as i64, &mut out);
    (0..len).for_each(|_| write_float(0.1, &mut out));
    write_long(0, &mut out);
    write_float(1.0, &mut out);
    write_long(0, &mut out);
    out.push(1);
    write_long(0, &mut out);
    out.extend_from_slice(&full[full.len() - 2 * attributes_len / 3..]);
    out
}

#[test]
fn non_finite() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut r = record();
        r.features[5] = bad;
        let err = FeatureDecoder::new(DIMS).decode(&encoded(&r, Framing::Raw)).unwrap_err();
        assert_eq!(err.reason(), "non_finite");
        assert!(matches!(err, DecodeError::NonFinite { index: 5, .. }), "{err}");
    }
}

#[test]
fn trailing_bytes() {
    let mut bytes = encoded(&record(), Framing::Raw);
    bytes.push(0x00);
    assert_eq!(reason(&bytes), "trailing_bytes");
    let mut p = encoded_prediction(&prediction(), Framing::Raw);
    p.extend_from_slice(b"xx");
    assert_eq!(prediction_reason(&p), "trailing_bytes");
}

#[test]
fn too_large() {
    let mut huge_id = Vec::new();
    write_long(1 << 40, &mut huge_id);
    assert_eq!(reason(&huge_id), "too_large");
    let long_feature_set = raw_with_tail(|b| {
        write_long(0, b);
        write_string(&"x".repeat(MAX_STRING_BYTES + 1), b);
    });
    assert_eq!(reason(&long_feature_set), "too_large");
}

/// Declared sizes far beyond the message — a string length or an array block count of 2^62,
/// a negative block count with a 2^62-byte block size — are refused from the prefix alone:
/// a typed error at once, never an allocation or a read loop of the declared size. (`too_large`
/// above covers 2^40; random mutations rarely produce such varints.)
#[test]
fn huge_declared_lengths_fail_fast_with_typed_errors() {
    const HUGE: i64 = 1 << 62;
    let long = |v: i64| {
        let mut b = Vec::new();
        write_long(v, &mut b);
        b
    };
    let features_block = |count: i64, byte_size: Option<i64>| {
        raw_with_tail(|b| {
            write_long(0, b);
            write_string("is13", b);
            write_long(count, b);
            if let Some(size) = byte_size {
                write_long(size, b);
            }
        })
    };
    let feature_cases: [(&str, Vec<u8>, &str); 5] = [
        ("utterance_id length 2^62", long(HUGE), "too_large"),
        ("utterance_id length i64::MAX", long(i64::MAX), "too_large"),
        (
            "feature_set length 2^62",
            raw_with_tail(|b| b.extend(long(0).into_iter().chain(long(HUGE)))),
            "too_large",
        ),
        ("features block of 2^62 items", features_block(HUGE, None), "truncated"),
        ("features block of -2^62 items, 2^62 bytes", features_block(-HUGE, Some(HUGE)), "malformed"),
    ];
    for (what, bytes, expected) in feature_cases {
        let t0 = std::time::Instant::now();
        assert_eq!(reason(&bytes), expected, "{what}");
        assert!(t0.elapsed() < std::time::Duration::from_millis(50), "{what} took {:?}", t0.elapsed());
    }
}

/// Framing magic that is neither Confluent (`0x00`) nor single-object (`0xC3 0x01`) is read
/// as a raw datum whose first length is negative: `malformed`, never a panic or a guess.
#[test]
fn wrong_magic_is_a_typed_error() {
    let mut bytes = encoded(&record(), Framing::SingleObject);
    for magic in [[0xC3, 0x02], [0xC3, 0x00], [0xC3, 0xFF]] {
        bytes[..2].copy_from_slice(&magic);
        assert_eq!(reason(&bytes), "malformed", "magic {magic:02x?}");
        assert_eq!(prediction_reason(&bytes), "malformed", "magic {magic:02x?}");
    }
}

#[test]
fn the_helper_prediction_is_valid_when_the_distribution_is() {
    // Guards the crafted-bytes helper above: with 7 items it must decode.
    let (p, _) = decode_prediction(&raw_prediction_with_distribution(7)).unwrap();
    assert_eq!(p.attributes.valence.distribution, [0.1; 7]);
}

// ---- robustness -----------------------------------------------------------------------------

fn assert_typed(result: Result<(), DecodeError>) -> Result<(), TestCaseError> {
    if let Err(e) = result {
        prop_assert!(DecodeError::REASONS.contains(&e.reason()), "{e:?}");
        prop_assert!(!e.to_string().is_empty());
    }
    Ok(())
}

/// Decodes with both decoders; whatever the feature decoder accepts must satisfy its contract.
fn decode_anything(bytes: &[u8]) -> Result<(), TestCaseError> {
    let decoder = FeatureDecoder::new(DIMS);
    let features = decoder.decode(bytes).map(|r| {
        assert!(!r.utterance_id.is_empty() && r.features.len() == DIMS);
        assert!(r.features.iter().all(|v| v.is_finite()));
    });
    assert_typed(features)?;
    assert_typed(decode_prediction(bytes).map(drop))
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::Set(i, b) if len > 0 => bytes[i % len] = b,
            Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Mutation::Remove(i) if len > 0 => {
                bytes.remove(i % len);
            }
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_bytes_never_panic(
        framing in framing(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = Vec::new();
        framing.write_header(RecordSchema::FeatureRecord, &mut bytes);
        bytes.extend_from_slice(&body);
        decode_anything(&bytes)?;
        decode_anything(&body)?;
    }

    #[test]
    fn mutated_records_never_panic(
        framing in framing(),
        mutations in proptest::collection::vec(mutation(), 1..6),
        cut in any::<proptest::sample::Index>(),
    ) {
        for mut bytes in [encoded(&record(), framing), encoded_prediction(&prediction(), framing)] {
            mutate(&mut bytes, &mutations);
            decode_anything(&bytes)?;
            let keep = cut.index(bytes.len() + 1);
            decode_anything(&bytes[..keep])?;
        }
    }

    #[test]
    fn every_strict_prefix_is_truncated(framing in framing(), cut in any::<proptest::sample::Index>()) {
        let features = encoded(&record(), framing);
        prop_assert_eq!(reason(&features[..cut.index(features.len())]), "truncated");
        let p = encoded_prediction(&prediction(), framing);
        prop_assert_eq!(prediction_reason(&p[..cut.index(p.len())]), "truncated");
    }
}
