//! Routing, without Kafka: turns a batch and its model outputs into the messages to produce —
//! predictions to the accepted or rejected topic, bad input to the dead-letter topic — with
//! their keys and headers (DESIGN §4).
//!
//! Headers on predictions: `emogate.model` (`id@version`), `emogate.input`
//! (`topic/partition/offset` of the input record). On dead letters: `emogate.error` (reason
//! code), `emogate.error.detail` (human-readable), `emogate.input`. The output key is the
//! input key, else the `utterance_id`, so per-utterance ordering follows the input's.
//!
//! Dead-letter reasons are the codec's ([`crate::codec::DecodeError::REASONS`]) plus
//! [`REASON_EMPTY_VALUE`] (a message without a value) and [`REASON_INFERENCE_FAILED`] (the
//! model failed on the batch; the records are re-encoded from their decoded form, in their
//! original framing, so they can be replayed from the dead-letter topic).

use crate::codec::{
    encode_feature_record, encode_prediction, Decision, EmotionPrediction, FeatureRecord, Framing,
};
use crate::config::TopicsConfig;
use crate::model::{ModelError, Prediction};
use crate::policy::RejectPolicy;

pub use super::batcher::REASON_EMPTY_VALUE;
use super::batcher::{Batch, DeadLetter, Position, Row};

/// DLQ reason when the model fails on a batch.
pub const REASON_INFERENCE_FAILED: &str = "inference_failed";

pub const HEADER_MODEL: &str = "emogate.model";
pub const HEADER_INPUT: &str = "emogate.input";
pub const HEADER_ERROR: &str = "emogate.error";
pub const HEADER_ERROR_DETAIL: &str = "emogate.error.detail";
/// On a dead letter whose payload was cut to [`MAX_DEAD_LETTER_PAYLOAD`]: the input's size.
pub const HEADER_TRUNCATED_FROM: &str = "emogate.error.truncated_from";

/// Largest payload a dead letter carries. An input record can be larger than the producer may
/// send (`message.max.bytes`, 1,000,000 by default, and the broker's limit): a topic configured
/// for bigger messages would otherwise make its dead letter fail with `MsgSizeTooLarge` on
/// every retry, stalling the partition for good. Cut payloads keep their first bytes; the full
/// record stays in the input topic at the `emogate.input` coordinates.
pub const MAX_DEAD_LETTER_PAYLOAD: usize = 900 * 1024;

/// What a dead letter of `payload` carries: all of it, or its first [`MAX_DEAD_LETTER_PAYLOAD`]
/// bytes and the full size (for [`HEADER_TRUNCATED_FROM`]). Shared by the infer stage's and the
/// archive's dead-letter topics, so neither stalls on a record it may not produce whole.
pub fn dead_letter_payload(payload: &[u8]) -> (&[u8], Option<usize>) {
    if payload.len() > MAX_DEAD_LETTER_PAYLOAD {
        (&payload[..MAX_DEAD_LETTER_PAYLOAD], Some(payload.len()))
    } else {
        (payload, None)
    }
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Accepted,
    Rejected,
    DeadLetter,
}

/// One message to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub route: Route,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
    /// Input record it answers.
    pub position: Position,
    /// Set for predictions (for metrics and the run report).
    pub prediction: Option<EmotionPrediction>,
    /// Set for dead letters.
    pub reason: Option<&'static str>,
    /// Kafka timestamp of the input (ms), for the end-to-end latency.
    pub input_timestamp_ms: Option<i64>,
}

impl Output {
    /// Topic name for this output's route.
    pub fn topic<'a>(&self, topics: &'a TopicsConfig) -> &'a str {
        match self.route {
            Route::Accepted => &topics.accepted,
            Route::Rejected => &topics.rejected,
            Route::DeadLetter => &topics.dlq,
        }
    }
}

/// Builds outputs; holds what is the same for every batch.
#[derive(Debug, Clone)]
pub struct Router {
    pub policy: RejectPolicy,
    pub input_topic: String,
    /// Framing of the produced predictions (Confluent with the configured id, else single-object).
    pub output_framing: Framing,
}

impl Router {
    fn input_ref(&self, p: Position) -> String {
        format!("{}/{}/{}", self.input_topic, p.partition, p.offset)
    }

    /// All outputs of a batch: one per input record, in input order within each kind
    /// (predictions first, then dead letters). `predictions` is the model's answer for the
    /// batch's rows; `features` the rows' features (needed only to dead-letter them).
    pub fn route(
        &self,
        batch: &Batch,
        features: &[f32],
        predictions: Result<&[Prediction], &ModelError>,
        processed_at_ms: i64,
    ) -> Vec<Output> {
        let mut outputs = Vec::with_capacity(batch.len());
        match predictions {
            Ok(predictions) if predictions.len() == batch.rows.len() => {
                for (row, prediction) in batch.rows.iter().zip(predictions) {
                    outputs.push(self.prediction_output(row, prediction, processed_at_ms));
                }
            }
            other => {
                let detail = match other {
                    Err(e) => e.to_string(),
                    Ok(p) => format!("model returned {} predictions for {} rows", p.len(), batch.rows.len()),
                };
                let dims = if batch.rows.is_empty() { 1 } else { features.len() / batch.rows.len() };
                for (row, row_features) in batch.rows.iter().zip(features.chunks(dims.max(1))) {
                    let record = FeatureRecord::from_parts(row.meta.clone(), row_features.to_vec());
                    let mut payload = Vec::new();
                    encode_feature_record(&record, &row.framing, &mut payload);
                    outputs.push(self.dead_letter_output(&DeadLetter {
                        position: row.position,
                        key: row.key.clone(),
                        payload,
                        reason: REASON_INFERENCE_FAILED,
                        detail: detail.clone(),
                    }));
                }
            }
        }
        outputs.extend(batch.dead.iter().map(|d| self.dead_letter_output(d)));
        outputs
    }

    fn prediction_output(&self, row: &Row, prediction: &Prediction, processed_at_ms: i64) -> Output {
        let record = self.policy.build(&row.meta, prediction, processed_at_ms);
        let mut payload = Vec::with_capacity(256);
        encode_prediction(&record, &self.output_framing, &mut payload);
        Output {
            route: match record.decision {
                Decision::Accepted => Route::Accepted,
                Decision::Rejected => Route::Rejected,
            },
            key: Some(row.key.clone().unwrap_or_else(|| row.meta.utterance_id.clone().into_bytes())),
            payload,
            headers: vec![
                (HEADER_MODEL, self.policy.model_version().to_string()),
                (HEADER_INPUT, self.input_ref(row.position)),
            ],
            position: row.position,
            prediction: Some(record),
            reason: None,
            input_timestamp_ms: row.kafka_timestamp_ms,
        }
    }

    fn dead_letter_output(&self, d: &DeadLetter) -> Output {
        let mut headers = vec![
            (HEADER_ERROR, d.reason.to_string()),
            (HEADER_ERROR_DETAIL, d.detail.clone()),
            (HEADER_INPUT, self.input_ref(d.position)),
        ];
        let (kept, cut_from) = dead_letter_payload(&d.payload);
        if let Some(size) = cut_from {
            headers.push((HEADER_TRUNCATED_FROM, size.to_string()));
        }
        Output {
            route: Route::DeadLetter,
            key: d.key.clone(),
            payload: kept.to_vec(),
            headers,
            position: d.position,
            prediction: None,
            reason: Some(d.reason),
            input_timestamp_ms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::attribute::{Attribute, PerAttribute};
    use crate::codec::{decode_prediction, FeatureDecoder};
    use crate::config::PolicyConfig;
    use crate::model::{AttributeOutput, CoverageThresholds, Manifest, NoiseBank, TrainingInfo};
    use crate::pipeline::batcher::{Batcher, Incoming};

    fn router() -> Router {
        let manifest = Manifest {
            id: "m".into(),
            version: "1".into(),
            created: String::new(),
            opset: 17,
            sha256: "0".repeat(64),
            feature_set: "x".into(),
            feature_dims: 2,
            mc_samples: 1,
            latent_dims: 1,
            noise_bank: NoiseBank::Gaussian,
            attributes: Attribute::ALL.to_vec(),
            training: TrainingInfo::default(),
            metrics: Default::default(),
            thresholds: vec![CoverageThresholds {
                coverage: 0.8,
                entropy: PerAttribute::from_fn(|_| 1.0),
                uncertainty: None,
                record: Vec::new(),
            }],
            calibration: None,
            uncertainty_profile: None,
            mc: None,
            description: String::new(),
        };
        Router {
            policy: RejectPolicy::new(&PolicyConfig::default(), &manifest).unwrap(),
            input_topic: "ser.features".into(),
            output_framing: Framing::Confluent { schema_id: 9 },
        }
    }

    fn batch() -> Batch {
        let mut b = Batcher::new(FeatureDecoder::new(2), 10, Duration::from_secs(1));
        let now = Instant::now();
        for (offset, id, key) in [(5, "u5", Some(&b"k5"[..])), (6, "u6", None)] {
            let mut bytes = Vec::new();
            let record = FeatureRecord {
                utterance_id: id.into(),
                speaker_id: None,
                source: None,
                timestamp_ms: 1,
                feature_set: "x".into(),
                features: vec![offset as f32, 1.0],
            };
            encode_feature_record(&record, &Framing::Raw, &mut bytes);
            b.push(
                now,
                Incoming {
                    position: Position { partition: 2, offset },
                    key,
                    payload: Some(&bytes),
                    kafka_timestamp_ms: Some(3),
                },
            );
        }
        b.push(
            now,
            Incoming {
                position: Position { partition: 2, offset: 7 },
                key: None,
                payload: Some(&[9, 9]),
                kafka_timestamp_ms: None,
            },
        );
        b.flush().unwrap()
    }

    fn prediction(entropy: f32) -> Prediction {
        PerAttribute::from_fn(|_| AttributeOutput {
            value: 4.0,
            consensus: 4.0,
            distribution: [1.0 / 7.0; 7],
            entropy,
        })
    }

    fn header<'a>(o: &'a Output, name: &str) -> &'a str {
        o.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()).unwrap()
    }

    #[test]
    fn predictions_are_routed_by_decision_with_headers_and_keys() {
        let b = batch();
        let out = router().route(&b, &b.features, Ok(&[prediction(0.5), prediction(1.5)]), 99);
        assert_eq!(out.len(), 3, "one output per input record");
        assert_eq!(out[0].route, Route::Accepted);
        assert_eq!(out[1].route, Route::Rejected);
        assert_eq!(out[0].key.as_deref(), Some(&b"k5"[..]));
        assert_eq!(out[1].key.as_deref(), Some(&b"u6"[..]), "no input key: keyed by utterance_id");
        assert_eq!(header(&out[0], HEADER_MODEL), "m@1");
        assert_eq!(header(&out[1], HEADER_INPUT), "ser.features/2/6");
        let (decoded, framing) = decode_prediction(&out[1].payload).unwrap();
        assert_eq!(framing, Framing::Confluent { schema_id: 9 });
        assert_eq!(decoded.utterance_id, "u6");
        assert_eq!(decoded.decision, Decision::Rejected);
        assert_eq!(decoded.processed_at_ms, 99);

        let dlq = &out[2];
        assert_eq!(dlq.route, Route::DeadLetter);
        assert_eq!(header(dlq, HEADER_ERROR), "malformed", "0x09 is a negative string length");
        assert_eq!(header(dlq, HEADER_INPUT), "ser.features/2/7");
        assert!(!header(dlq, HEADER_ERROR_DETAIL).is_empty());
        assert_eq!(dlq.payload, [9, 9]);
    }

    #[test]
    fn inference_failure_dead_letters_the_rows_re_encoded() {
        let b = batch();
        let err = ModelError::PoolClosed;
        let out = router().route(&b, &b.features, Err(&err), 0);
        let reasons: Vec<_> = out.iter().map(|o| o.reason.unwrap()).collect();
        assert_eq!(reasons, [REASON_INFERENCE_FAILED, REASON_INFERENCE_FAILED, "malformed"]);
        let record = FeatureDecoder::new(2).decode(&out[1].payload).unwrap();
        assert_eq!(record.utterance_id, "u6");
        assert_eq!(record.features, [6.0, 1.0]);
        assert!(header(&out[0], HEADER_ERROR_DETAIL).contains("shut down"));
        // A wrong number of predictions is a failure too, never a silent truncation.
        let out = router().route(&b, &b.features, Ok(&[prediction(0.1)]), 0);
        assert_eq!(out.iter().filter(|o| o.reason == Some(REASON_INFERENCE_FAILED)).count(), 2);
    }

    #[test]
    fn oversized_dead_letters_are_cut_below_the_producer_limit_and_say_so() {
        let router = router();
        let dead = |len: usize| DeadLetter {
            position: Position { partition: 0, offset: 7 },
            key: None,
            payload: vec![0xAB; len],
            reason: "malformed",
            detail: "d".into(),
        };
        let big = router.dead_letter_output(&dead(3 * 1024 * 1024));
        assert_eq!(big.payload.len(), MAX_DEAD_LETTER_PAYLOAD);
        assert!(big.payload.len() < 1_000_000, "below librdkafka's default message.max.bytes");
        let cut = big.headers.iter().find(|(k, _)| *k == HEADER_TRUNCATED_FROM).map(|(_, v)| v.as_str());
        assert_eq!(cut, Some("3145728"));
        let small = router.dead_letter_output(&dead(100));
        assert_eq!(small.payload.len(), 100);
        assert!(small.headers.iter().all(|(k, _)| *k != HEADER_TRUNCATED_FROM));
    }
}
