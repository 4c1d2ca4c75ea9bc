//! The infer stage's feature decoder on arbitrary bytes, in every framing (raw, single-object,
//! Confluent: the framing is read from the bytes, so the fuzzer reaches all three), with the
//! checks the service turns on: dimension, registry ids, feature set. It must return a record
//! or a `DecodeError` with a reason code, never panic; a decoded record must re-encode to a
//! message that decodes to the same record.
use emogate::codec::{encode_feature_record, FeatureDecoder, Framing};

/// Feature dimension of the target (the seeds are encoded with it).
const DIMS: usize = 8;

fn main() {
    let decoder = FeatureDecoder::new(DIMS).with_schema_ids([7, 42]).with_feature_set("ComParE_2016");
    afl::fuzz!(|data: &[u8]| {
        match decoder.decode(data) {
            Ok(record) => {
                let mut again = Vec::new();
                encode_feature_record(&record, &Framing::Raw, &mut again);
                let back = decoder.decode(&again).expect("a decoded record re-encodes to a valid one");
                assert_eq!(back, record);
            }
            Err(e) => {
                assert!(emogate::codec::DecodeError::REASONS.contains(&e.reason()), "{e}");
            }
        }
        let mut row = [0f32; DIMS];
        let _ = decoder.decode_into(data, &mut row);
    });
}
