//! Codec helpers of the Avro tests: float bit patterns, the framing strategy, encoding to bytes.

use emogate::codec::{encode_prediction, EmotionPrediction, Framing};
use proptest::prelude::*;

/// The bit patterns of `values`, so that comparisons are exact (NaN payloads, −0.0 included).
pub fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// Every framing; Confluent with any schema id (decoders built without
/// `with_schema_ids` accept them all).
pub fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        Just(Framing::Raw),
        Just(Framing::SingleObject),
        any::<u32>().prop_map(|schema_id| Framing::Confluent { schema_id }),
    ]
}

/// `p` encoded in `framing`.
pub fn encoded_prediction(p: &EmotionPrediction, framing: Framing) -> Vec<u8> {
    let mut out = Vec::new();
    encode_prediction(p, &framing, &mut out);
    out
}
