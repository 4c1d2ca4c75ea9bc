//! Plain Rust mirrors of the two Avro records.
//!
//! They are deliberately dumb structs (no serde, no validation) so the decoders own every
//! check and the rest of the service works with ordinary fields. [`RecordMeta`] exists because
//! the infer stage writes features straight into a batch row and only keeps the rest.

use crate::attribute::{Attribute, PerAttribute, LIKERT_BINS};

/// One utterance's feature vector (`emogate.v1.FeatureRecord`).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRecord {
    /// Unique id of the utterance; never empty once decoded.
    pub utterance_id: String,
    /// Speaker, when the producer knows it.
    pub speaker_id: Option<String>,
    /// Producer or corpus the record came from.
    pub source: Option<String>,
    /// Capture time, milliseconds since the Unix epoch (`timestamp`, timestamp-millis).
    pub timestamp_ms: i64,
    /// Feature extractor configuration, e.g. `ComParE_2016`.
    pub feature_set: String,
    /// Functionals in extractor order.
    pub features: Vec<f32>,
}

/// Everything of a [`FeatureRecord`] except its features.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordMeta {
    /// See [`FeatureRecord::utterance_id`].
    pub utterance_id: String,
    /// See [`FeatureRecord::speaker_id`].
    pub speaker_id: Option<String>,
    /// See [`FeatureRecord::source`].
    pub source: Option<String>,
    /// See [`FeatureRecord::timestamp_ms`].
    pub timestamp_ms: i64,
    /// See [`FeatureRecord::feature_set`].
    pub feature_set: String,
}

impl FeatureRecord {
    /// Splits the record into its metadata and its features.
    pub fn into_parts(self) -> (RecordMeta, Vec<f32>) {
        let FeatureRecord { utterance_id, speaker_id, source, timestamp_ms, feature_set, features } = self;
        (RecordMeta { utterance_id, speaker_id, source, timestamp_ms, feature_set }, features)
    }

    /// Joins metadata and features back into a record.
    pub fn from_parts(meta: RecordMeta, features: Vec<f32>) -> Self {
        let RecordMeta { utterance_id, speaker_id, source, timestamp_ms, feature_set } = meta;
        FeatureRecord { utterance_id, speaker_id, source, timestamp_ms, feature_set, features }
    }
}

/// The reject policy's verdict (`emogate.v1.Decision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Routed to `emotion.accepted`.
    Accepted,
    /// Routed to `emotion.rejected`.
    Rejected,
}

impl Decision {
    /// Enum symbols in schema order.
    pub const ALL: [Decision; 2] = [Decision::Accepted, Decision::Rejected];

    /// The Avro enum symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Decision::Accepted => "ACCEPTED",
            Decision::Rejected => "REJECTED",
        }
    }

    /// Position of the symbol in the schema (the encoded enum index).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One attribute's prediction (`emogate.v1.AttributePrediction`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttributePrediction {
    /// STL regressor prediction on the 1–7 scale.
    pub value: f32,
    /// VAE-ER consensus head, mean over the MC samples.
    pub consensus: f32,
    /// Soft-label distribution over the Likert bins.
    pub distribution: [f32; LIKERT_BINS],
    /// Entropy of `distribution` in nats.
    pub entropy: f32,
    /// Attribute whose score decided acceptance (differs under uncertainty transfer).
    pub uncertainty_source: Attribute,
    /// Whether this attribute passed its threshold.
    pub accepted: bool,
    /// The served uncertainty (the entropy standardised within the predicted level); `None`
    /// when the model has no level profile, or in a record written with schema version 0.
    pub uncertainty: Option<f32>,
}

/// The infer stage's output record (`emogate.v1.EmotionPrediction`).
#[derive(Debug, Clone, PartialEq)]
pub struct EmotionPrediction {
    /// Copied from the input record.
    pub utterance_id: String,
    /// Copied from the input record.
    pub speaker_id: Option<String>,
    /// Copied from the input record.
    pub source: Option<String>,
    /// Copied from the input record (`timestamp`, milliseconds since the epoch).
    pub timestamp_ms: i64,
    /// When emogate produced the prediction (`processed_at`, milliseconds since the epoch).
    pub processed_at_ms: i64,
    /// Model `id@version` from the manifest.
    pub model_version: String,
    /// Overall verdict.
    pub decision: Decision,
    /// Per-attribute predictions (`valence`, `arousal`, `dominance` fields).
    pub attributes: PerAttribute<AttributePrediction>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let record = FeatureRecord {
            utterance_id: "u1".into(),
            speaker_id: Some("s".into()),
            source: None,
            timestamp_ms: -5,
            feature_set: "ComParE_2016".into(),
            features: vec![1.0, 2.0],
        };
        let (meta, features) = record.clone().into_parts();
        assert_eq!(meta.utterance_id, "u1");
        assert_eq!(FeatureRecord::from_parts(meta, features), record);
    }

    #[test]
    fn decision_symbols_follow_schema_order() {
        let symbols: Vec<_> = Decision::ALL.iter().map(|d| (d.index(), d.symbol())).collect();
        assert_eq!(symbols, [(0, "ACCEPTED"), (1, "REJECTED")]);
    }
}
