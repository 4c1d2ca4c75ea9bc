//! Fixtures shared by the criterion benches.
#![allow(dead_code)]

use emogate::codec::{AttributePrediction, Decision, EmotionPrediction};
use emogate::{Attribute, PerAttribute};

/// A typical output record (all fields set, one attribute rejected).
pub fn prediction() -> EmotionPrediction {
    EmotionPrediction {
        utterance_id: "MSP-PODCAST_0153_0317".into(),
        speaker_id: Some("spk-0153".into()),
        source: Some("opensmile-3.0".into()),
        timestamp_ms: 1_731_000_000_000,
        processed_at_ms: 1_731_000_000_250,
        model_version: "vae-er@1.0.0".into(),
        decision: Decision::Accepted,
        attributes: PerAttribute::from_fn(|a| AttributePrediction {
            value: 4.2,
            consensus: 4.0,
            distribution: [0.02, 0.05, 0.18, 0.35, 0.25, 0.1, 0.05],
            entropy: 1.62,
            uncertainty_source: a,
            accepted: a != Attribute::Dominance,
            uncertainty: Some(-0.4),
        }),
    }
}
