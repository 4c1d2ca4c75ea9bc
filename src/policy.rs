//! The reject policy: which predictions are confident enough to publish as accepted.
//!
//! Per attribute `a`, the model's soft-label entropy `H_a` (nats) is compared with a threshold
//! `t_a` calibrated on the dev split so that a target fraction of utterances (the *coverage*)
//! passes: `a` is accepted when `H_s <= t_s`, where `s` is `a`'s **uncertainty source**. By
//! default `s = a`. Uncertainty transfer (UTL, the paper's Fig. 4) maps an attribute to another
//! one whose entropy predicts its error better, e.g. `valence = "arousal"`: valence is then
//! accepted when arousal's entropy passes arousal's threshold, so both are calibrated at the
//! same coverage. The source is recorded in the output's `uncertainty_source` field.
//!
//! # Record decision rule
//! The record goes to `emotion.accepted` when:
//! * `all` (default): every attribute is accepted — consumers of the accepted topic may use
//!   any of the three values;
//! * `any`: at least one attribute is accepted (consumers must check `accepted` per field);
//! * `<attribute>`: that attribute is accepted; the others are published with their own
//!   verdicts for information.
//!
//! Everything else goes to `emotion.rejected`, with the same fields, so nothing is lost and the
//! archive keeps both. At coverage 1.0 (without a manifest entry) the thresholds are +∞:
//! everything is accepted, which is the "no reject option" baseline.
//!
//! A NaN entropy never passes a threshold (`NaN <= t` is false), so a numerically broken
//! output is rejected rather than published as confident.

use crate::attribute::{Attribute, PerAttribute};
use crate::codec::{AttributePrediction, Decision, EmotionPrediction, RecordMeta};
use crate::config::{DecisionRule, PolicyConfig};
use crate::model::{Manifest, Prediction};

/// Why a policy cannot be built from the config and the manifest.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "model {model} has no entropy thresholds calibrated for coverage {coverage} (manifest has: \
         {available}); run `emogate calibrate --coverage {coverage}`, set policy.coverage to a \
         calibrated value, or give policy.thresholds explicitly"
    )]
    NoThresholds { model: String, coverage: f64, available: String },
}

/// A configured reject policy. Pure: deciding needs no I/O and cannot fail.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectPolicy {
    thresholds: PerAttribute<f32>,
    sources: PerAttribute<Attribute>,
    rule: DecisionRule,
    coverage: f64,
    model_version: String,
}

impl RejectPolicy {
    /// Thresholds: `policy.thresholds` if given, else the manifest's entry for
    /// `policy.coverage`, else (only at coverage 1.0) +∞.
    pub fn new(config: &PolicyConfig, manifest: &Manifest) -> Result<RejectPolicy, PolicyError> {
        let thresholds = match (&config.thresholds, manifest.thresholds_for(config.coverage)) {
            (Some(explicit), _) => *explicit,
            (None, Some(calibrated)) => *calibrated,
            (None, None) if config.coverage >= 1.0 => PerAttribute::from_fn(|_| f32::INFINITY),
            (None, None) => {
                let available = if manifest.thresholds.is_empty() {
                    "none".to_string()
                } else {
                    manifest.thresholds.iter().map(|t| t.coverage.to_string()).collect::<Vec<_>>().join(", ")
                };
                return Err(PolicyError::NoThresholds {
                    model: manifest.model_ref(),
                    coverage: config.coverage,
                    available,
                });
            }
        };
        let sources = PerAttribute::from_fn(|a| config.uncertainty_source.get(&a).copied().unwrap_or(a));
        Ok(RejectPolicy {
            thresholds,
            sources,
            rule: config.decision,
            coverage: config.coverage,
            model_version: manifest.model_ref(),
        })
    }

    /// Thresholds in effect (nats).
    pub fn thresholds(&self) -> &PerAttribute<f32> {
        &self.thresholds
    }

    /// Target coverage the thresholds were calibrated for.
    pub fn coverage(&self) -> f64 {
        self.coverage
    }

    /// Model `id@version` written into every prediction.
    pub fn model_version(&self) -> &str {
        &self.model_version
    }

    /// Per-attribute verdicts and the record's decision.
    pub fn decide(&self, prediction: &Prediction) -> (Decision, PerAttribute<AttributePrediction>) {
        let attributes = PerAttribute::from_fn(|a| {
            let out = &prediction[a];
            let source = self.sources[a];
            AttributePrediction {
                value: out.value,
                consensus: out.consensus,
                distribution: out.distribution,
                entropy: out.entropy,
                uncertainty_source: source,
                accepted: prediction[source].entropy <= self.thresholds[source],
            }
        });
        let accepted = match self.rule {
            DecisionRule::All => attributes.iter().all(|(_, p)| p.accepted),
            DecisionRule::Any => attributes.iter().any(|(_, p)| p.accepted),
            DecisionRule::Attribute(a) => attributes[a].accepted,
        };
        (if accepted { Decision::Accepted } else { Decision::Rejected }, attributes)
    }

    /// The output record for one input record.
    pub fn build(
        &self,
        meta: &RecordMeta,
        prediction: &Prediction,
        processed_at_ms: i64,
    ) -> EmotionPrediction {
        let (decision, attributes) = self.decide(prediction);
        EmotionPrediction {
            utterance_id: meta.utterance_id.clone(),
            speaker_id: meta.speaker_id.clone(),
            source: meta.source.clone(),
            timestamp_ms: meta.timestamp_ms,
            processed_at_ms,
            model_version: self.model_version.clone(),
            decision,
            attributes,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{AttributeOutput, CoverageThresholds, NoiseBank, TrainingInfo};

    fn manifest(thresholds: Vec<CoverageThresholds>) -> Manifest {
        Manifest {
            id: "m".into(),
            version: "2".into(),
            created: "2026-01-01T00:00:00Z".into(),
            opset: 17,
            sha256: "0".repeat(64),
            feature_set: "ComParE_2016".into(),
            feature_dims: 4,
            mc_samples: 10,
            latent_dims: 8,
            noise_bank: NoiseBank::Gaussian,
            attributes: Attribute::ALL.to_vec(),
            training: TrainingInfo::default(),
            metrics: BTreeMap::new(),
            thresholds,
            description: String::new(),
        }
    }

    fn calibrated() -> Manifest {
        manifest(vec![CoverageThresholds {
            coverage: 0.8,
            entropy: PerAttribute { valence: 1.0, arousal: 1.5, dominance: 1.2 },
        }])
    }

    fn prediction(entropy: [f32; 3]) -> Prediction {
        PerAttribute::from_fn(|a| AttributeOutput {
            value: 4.0 + a.index() as f32,
            consensus: 3.5,
            distribution: [1.0 / 7.0; 7],
            entropy: entropy[a.index()],
        })
    }

    fn policy(edit: impl FnOnce(&mut PolicyConfig)) -> RejectPolicy {
        let mut config = PolicyConfig::default();
        edit(&mut config);
        RejectPolicy::new(&config, &calibrated()).unwrap()
    }

    #[test]
    fn thresholds_come_from_the_manifest_at_the_target_coverage() {
        let p = policy(|_| {});
        assert_eq!(p.thresholds().arousal, 1.5);
        assert_eq!(p.model_version(), "m@2");
        // Equal to the threshold is accepted (the manifest's `<=` contract).
        let (d, attrs) = p.decide(&prediction([1.0, 1.5, 1.2]));
        assert_eq!(d, Decision::Accepted);
        assert!(attrs.iter().all(|(a, x)| x.accepted && x.uncertainty_source == a));
        let (d, attrs) = p.decide(&prediction([1.01, 0.1, 0.1]));
        assert_eq!(d, Decision::Rejected);
        assert!(!attrs.valence.accepted && attrs.arousal.accepted);
    }

    #[test]
    fn missing_calibration_is_an_error_except_at_full_coverage() {
        let err =
            RejectPolicy::new(&PolicyConfig { coverage: 0.7, ..PolicyConfig::default() }, &calibrated())
                .unwrap_err();
        assert!(err.to_string().contains("0.7") && err.to_string().contains("has: 0.8"), "{err}");
        let err = RejectPolicy::new(&PolicyConfig::default(), &manifest(vec![])).unwrap_err();
        assert!(err.to_string().contains("has: none"), "{err}");
        let all =
            RejectPolicy::new(&PolicyConfig { coverage: 1.0, ..PolicyConfig::default() }, &manifest(vec![]))
                .unwrap();
        assert_eq!(all.decide(&prediction([1.9, 1.9, 1.9])).0, Decision::Accepted);
        // ... but never a NaN entropy.
        assert_eq!(all.decide(&prediction([f32::NAN, 0.0, 0.0])).0, Decision::Rejected);
    }

    #[test]
    fn explicit_thresholds_override_the_manifest() {
        let p = policy(|c| {
            c.coverage = 0.3;
            c.thresholds = Some(PerAttribute::from_fn(|_| 0.5));
        });
        assert_eq!(p.decide(&prediction([0.4, 0.4, 0.4])).0, Decision::Accepted);
        assert_eq!(p.decide(&prediction([0.4, 0.6, 0.4])).0, Decision::Rejected);
    }

    #[test]
    fn decision_rules() {
        // valence passes, arousal fails, dominance passes.
        let x = prediction([0.5, 1.6, 1.0]);
        assert_eq!(policy(|_| {}).decide(&x).0, Decision::Rejected);
        assert_eq!(policy(|c| c.decision = DecisionRule::Any).decide(&x).0, Decision::Accepted);
        assert_eq!(
            policy(|c| c.decision = DecisionRule::Any).decide(&prediction([2.0; 3])).0,
            Decision::Rejected
        );
        let by = |a| policy(|c| c.decision = DecisionRule::Attribute(a)).decide(&x).0;
        assert_eq!(by(Attribute::Valence), Decision::Accepted);
        assert_eq!(by(Attribute::Arousal), Decision::Rejected);
        assert_eq!(by(Attribute::Dominance), Decision::Accepted);
    }

    #[test]
    fn uncertainty_transfer_uses_the_source_entropy_and_threshold() {
        let p = policy(|c| {
            c.uncertainty_source.insert(Attribute::Valence, Attribute::Arousal);
        });
        // Valence's own entropy is far above its threshold, arousal's passes arousal's.
        let (d, attrs) = p.decide(&prediction([1.9, 1.4, 1.0]));
        assert_eq!(d, Decision::Accepted);
        assert_eq!(attrs.valence.uncertainty_source, Attribute::Arousal);
        assert_eq!(attrs.valence.entropy, 1.9, "the output keeps the attribute's own entropy");
        assert_eq!(attrs.dominance.uncertainty_source, Attribute::Dominance);
        // And the other way round: valence certain, arousal not -> valence rejected.
        let (_, attrs) = p.decide(&prediction([0.1, 1.6, 1.0]));
        assert!(!attrs.valence.accepted && !attrs.arousal.accepted);
    }

    #[test]
    fn sources_are_one_level_so_swaps_work() {
        let p = policy(|c| {
            c.uncertainty_source.insert(Attribute::Valence, Attribute::Arousal);
            c.uncertainty_source.insert(Attribute::Arousal, Attribute::Valence);
        });
        // valence 0.5 passes valence's 1.0; arousal 1.6 fails arousal's 1.5.
        let (_, attrs) = p.decide(&prediction([0.5, 1.6, 0.1]));
        assert!(!attrs.valence.accepted, "valence is decided by arousal");
        assert!(attrs.arousal.accepted, "arousal is decided by valence");
    }

    #[test]
    fn build_copies_ids_and_stamps_the_model() {
        let p = policy(|_| {});
        let meta = RecordMeta {
            utterance_id: "u1".into(),
            speaker_id: Some("spk".into()),
            source: None,
            timestamp_ms: 123,
            feature_set: "ComParE_2016".into(),
        };
        let out = p.build(&meta, &prediction([0.1; 3]), 456);
        assert_eq!(out.utterance_id, "u1");
        assert_eq!(out.speaker_id.as_deref(), Some("spk"));
        assert_eq!((out.timestamp_ms, out.processed_at_ms), (123, 456));
        assert_eq!(out.model_version, "m@2");
        assert_eq!(out.decision, Decision::Accepted);
        assert_eq!(out.attributes.arousal.value, 5.0);
    }
}
