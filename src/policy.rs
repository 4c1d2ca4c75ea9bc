//! The reject policy: which predictions are confident enough to publish as accepted.
//!
//! # Scores
//! Every prediction carries the paper's soft-label entropy `H_a` (nats) and, when the model's
//! manifest holds a dev-fitted level profile per attribute, the served uncertainty
//! `U_a = (H_a − m_a(v_a)) / s_a(v_a)`: the entropy standardised within the predicted value
//! `v_a` ([`crate::uncertainty::LevelProfile`]; why in docs/model-card.md). Both go out in every
//! record. The policy ranks by one of them, `policy.score` (default: the one calibration found
//! better on dev, `calibration.score` in the manifest; the entropy for a model without
//! profiles). Computing `U_a` here, from manifest parameters, is the one place it is defined
//! for serving; `emogate calibrate` fits the same function.
//!
//! # Thresholds
//! Per attribute, the chosen score `S_a` is compared with a threshold `t_a` calibrated on the
//! dev split so that a target fraction of utterances (the *coverage*) passes: `a` is accepted
//! when `S_s <= t_s`, where `s` is `a`'s **uncertainty source**. By default `s = a`.
//! Uncertainty transfer (UTL, the paper's Fig. 4) maps an attribute to another one whose score
//! predicts its error better, e.g. `valence = "arousal"`: valence is then accepted when
//! arousal's score passes arousal's threshold, so both are calibrated at the same coverage. The
//! source is recorded in the output's `uncertainty_source` field.
//!
//! # Record coverage
//! With `all` or `any` the thresholds are the manifest's *record* thresholds for the coverage
//! ([`crate::uncertainty::record_coverage`]): `policy.coverage` is then the fraction of dev
//! records the rule accepts, not of each attribute. A single-attribute rule's record rate is
//! that attribute's, so its per-attribute thresholds are already record thresholds. Under
//! uncertainty transfer, or with a manifest calibrated before record thresholds existed, the
//! per-attribute thresholds apply ([`CoverageOf::Attributes`], logged at start).
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
//! A NaN score never passes a threshold (`NaN <= t` is false), so a numerically broken
//! output is rejected rather than published as confident.

use crate::attribute::{Attribute, PerAttribute};
use crate::codec::{AttributePrediction, Decision, EmotionPrediction, RecordMeta};
use crate::config::{DecisionRule, PolicyConfig};
use crate::model::{Manifest, Prediction};
use crate::uncertainty::{JointRule, LevelProfile, ScoreKind};

/// Why a policy cannot be built from the config and the manifest.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "model {model} has no entropy thresholds calibrated for coverage {coverage} (manifest has: \
         {available}); run `emogate calibrate --coverage {coverage}`, set policy.coverage to a \
         calibrated value, or give policy.thresholds explicitly"
    )]
    NoThresholds { model: String, coverage: f64, available: String },
    #[error(
        "policy.score = \"uncertainty\" but model {model} has no `uncertainty_profile` in its manifest \
         (exported before the served uncertainty existed); run `emogate calibrate` on the model to fit \
         it, or set policy.score = \"entropy\""
    )]
    NoUncertaintyProfile { model: String },
}

/// What `policy.coverage` is the dev fraction of, with the thresholds in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoverageOf {
    /// Records the decision rule accepts (record thresholds, or a single-attribute rule).
    Records,
    /// Each attribute separately: a manifest from before record calibration, or uncertainty
    /// transfer (the record rate is then not `coverage`).
    Attributes,
    /// Nothing: `policy.thresholds` were given explicitly.
    Explicit,
}

/// A configured reject policy. Pure: deciding needs no I/O and cannot fail.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectPolicy {
    coverage_of: CoverageOf,
    score: ScoreKind,
    profiles: Option<PerAttribute<LevelProfile>>,
    thresholds: PerAttribute<f32>,
    sources: PerAttribute<Attribute>,
    rule: DecisionRule,
    coverage: f64,
    model_version: String,
}

impl RejectPolicy {
    /// The score: `policy.score`, else the manifest's `calibration.score` if the manifest can
    /// serve it, else the entropy. Thresholds: `policy.thresholds` if given, else the manifest's
    /// entry for `policy.coverage` and that score, else (only at coverage 1.0) +∞.
    pub fn new(config: &PolicyConfig, manifest: &Manifest) -> Result<RejectPolicy, PolicyError> {
        let profiles = manifest.uncertainty_profile.clone();
        let score = RejectPolicy::score_for(config, manifest)?;
        let sources = PerAttribute::from_fn(|a| config.uncertainty_source.get(&a).copied().unwrap_or(a));
        // Record-rate thresholds exist for `all`/`any` with each attribute its own source.
        let joint = match config.decision {
            DecisionRule::All => Some(JointRule::All),
            DecisionRule::Any => Some(JointRule::Any),
            DecisionRule::Attribute(_) => None,
        }
        .filter(|_| sources.iter().all(|(a, &s)| a == s));
        let record = joint.and_then(|rule| {
            manifest.coverage_entry(config.coverage).and_then(|t| t.for_records(rule, score))
        });
        let coverage_of = match (&config.thresholds, record, config.decision) {
            (Some(_), _, _) => CoverageOf::Explicit,
            (None, Some(_), _) | (None, None, DecisionRule::Attribute(_)) => CoverageOf::Records,
            (None, None, _) => CoverageOf::Attributes,
        };
        let thresholds = match (&config.thresholds, record, manifest.thresholds_for(config.coverage, score)) {
            (Some(explicit), _, _) => *explicit,
            (None, Some(r), _) => r.thresholds,
            (None, None, Some(calibrated)) => *calibrated,
            (None, None, None) if config.coverage >= 1.0 => PerAttribute::from_fn(|_| f32::INFINITY),
            (None, None, None) => {
                let calibrated: Vec<String> = manifest
                    .thresholds
                    .iter()
                    .filter(|t| t.of(score).is_some())
                    .map(|t| t.coverage.to_string())
                    .collect();
                let available =
                    if calibrated.is_empty() { "none".to_string() } else { calibrated.join(", ") };
                return Err(PolicyError::NoThresholds {
                    model: manifest.model_ref(),
                    coverage: config.coverage,
                    available: format!("{available} for {score}"),
                });
            }
        };
        Ok(RejectPolicy {
            coverage_of,
            score,
            profiles,
            thresholds,
            sources,
            rule: config.decision,
            coverage: config.coverage,
            model_version: manifest.model_ref(),
        })
    }

    /// The score a policy built from `config` and `manifest` ranks by (see [`RejectPolicy::new`]).
    pub fn score_for(config: &PolicyConfig, manifest: &Manifest) -> Result<ScoreKind, PolicyError> {
        let servable = manifest.uncertainty_profile.is_some();
        match config.score {
            Some(ScoreKind::Uncertainty) if !servable => {
                Err(PolicyError::NoUncertaintyProfile { model: manifest.model_ref() })
            }
            Some(kind) => Ok(kind),
            None => Ok(match &manifest.calibration {
                Some(c) if c.score == ScoreKind::Entropy || servable => c.score,
                _ => ScoreKind::Entropy,
            }),
        }
    }

    /// What the target coverage is the dev fraction of.
    pub fn coverage_of(&self) -> CoverageOf {
        self.coverage_of
    }

    /// The score the thresholds apply to.
    pub fn score(&self) -> ScoreKind {
        self.score
    }

    /// Thresholds in effect (in the units of [`RejectPolicy::score`]).
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

    /// The served uncertainty of each attribute, when the manifest has profiles.
    pub fn uncertainty(&self, prediction: &Prediction) -> Option<PerAttribute<f32>> {
        let profiles = self.profiles.as_ref()?;
        Some(PerAttribute::from_fn(|a| profiles[a].score(prediction[a].value, prediction[a].entropy)))
    }

    /// Per-attribute verdicts and the record's decision.
    pub fn decide(&self, prediction: &Prediction) -> (Decision, PerAttribute<AttributePrediction>) {
        let uncertainty = self.uncertainty(prediction);
        let ranked = |a: Attribute| match (self.score, &uncertainty) {
            (ScoreKind::Uncertainty, Some(u)) => u[a],
            // `new` refuses `uncertainty` without profiles; the entropy is the only other score.
            _ => prediction[a].entropy,
        };
        let attributes = PerAttribute::from_fn(|a| {
            let out = &prediction[a];
            let source = self.sources[a];
            AttributePrediction {
                value: out.value,
                consensus: out.consensus,
                distribution: out.distribution,
                entropy: out.entropy,
                uncertainty_source: source,
                accepted: ranked(source) <= self.thresholds[source],
                uncertainty: uncertainty.as_ref().map(|u| u[a]),
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
            calibration: None,
            uncertainty_profile: None,
            mc: None,
            description: String::new(),
        }
    }

    fn calibrated() -> Manifest {
        manifest(vec![CoverageThresholds {
            coverage: 0.8,
            entropy: PerAttribute { valence: 1.0, arousal: 1.5, dominance: 1.2 },
            uncertainty: None,
            record: Vec::new(),
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
        policy_on(&calibrated(), edit)
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
        assert!(err.to_string().contains("0.7") && err.to_string().contains("has: 0.8 for entropy"), "{err}");
        let err = RejectPolicy::new(&PolicyConfig::default(), &manifest(vec![])).unwrap_err();
        assert!(err.to_string().contains("has: none for entropy"), "{err}");
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

    /// `calibrated()` plus level profiles (mean entropy 1.0 + 0.1·(value − 4), sd 0.5) and
    /// uncertainty thresholds of 0.0 (accept when the entropy is at most the level's mean).
    fn with_profiles(chosen: ScoreKind) -> Manifest {
        let mut m = calibrated();
        m.uncertainty_profile = Some(PerAttribute::from_fn(|_| LevelProfile {
            level: vec![4.0, 6.0],
            mean: vec![1.0, 1.2],
            sd: vec![0.5, 0.5],
        }));
        m.thresholds[0].uncertainty = Some(PerAttribute::from_fn(|_| 0.0));
        m.calibration = Some(crate::model::Calibration {
            score: chosen,
            dev_gain_at_60: PerAttribute::from_fn(|_| 0.1),
            dev_gain_at_60_by_score: BTreeMap::new(),
        });
        m
    }

    #[test]
    fn the_served_uncertainty_is_the_entropy_standardised_at_the_predicted_value() {
        let m = with_profiles(ScoreKind::Uncertainty);
        let p = RejectPolicy::new(&PolicyConfig::default(), &m).unwrap();
        assert_eq!(p.score(), ScoreKind::Uncertainty, "the default is the manifest's choice");
        assert_eq!(p.thresholds().arousal, 0.0);
        // Values 4, 5, 6 (prediction()): level means 1.0, 1.1, 1.2.
        let x = prediction([1.25, 1.0, 1.1]);
        let u = p.uncertainty(&x).unwrap();
        let close = |a: f32, b: f32| (a - b).abs() < 1e-6;
        assert!(close(u.valence, 0.5) && close(u.arousal, -0.2) && close(u.dominance, -0.2), "{u:?}");
        let (d, attrs) = p.decide(&x);
        // The uncertainty decides: valence's entropy is above its level's mean (u = 0.5 > 0),
        // arousal's and dominance's are below theirs (−0.2), though dominance's 1.1 is a
        // higher entropy than arousal's 1.0.
        assert_eq!(d, Decision::Rejected);
        assert!(!attrs.valence.accepted && attrs.arousal.accepted && attrs.dominance.accepted);
        assert_eq!(attrs.valence.uncertainty, Some(u.valence));
        assert_eq!(attrs.valence.entropy, 1.25, "the paper's entropy goes out unchanged");
        // The same record under the paper's entropy: arousal's 1.0 passes 1.5, valence fails 1.0.
        let e = RejectPolicy::new(
            &PolicyConfig { score: Some(ScoreKind::Entropy), ..PolicyConfig::default() },
            &m,
        )
        .unwrap();
        let (_, attrs) = e.decide(&prediction([0.9, 1.6, 1.0]));
        assert!(attrs.valence.accepted && !attrs.arousal.accepted, "entropy 0.9 ≤ 1.0, 1.6 > 1.5");
        assert!(attrs.valence.uncertainty.is_some(), "both scores go out whichever decides");
        // Uncertainty transfer compares the source's uncertainty with the source's threshold.
        let utl = RejectPolicy::new(
            &PolicyConfig {
                uncertainty_source: BTreeMap::from([(Attribute::Valence, Attribute::Arousal)]),
                ..PolicyConfig::default()
            },
            &m,
        )
        .unwrap();
        let (_, attrs) = utl.decide(&x);
        assert!(attrs.valence.accepted, "valence decided by arousal's uncertainty −0.2 ≤ 0");
        assert_eq!(utl.decide(&prediction([1.25, f32::NAN, 1.0])).0, Decision::Rejected);
    }

    #[test]
    fn a_model_without_profiles_serves_the_entropy_and_refuses_an_explicit_uncertainty() {
        let m = calibrated();
        let p = RejectPolicy::new(&PolicyConfig::default(), &m).unwrap();
        assert_eq!(p.score(), ScoreKind::Entropy);
        assert!(p.decide(&prediction([0.5; 3])).1.iter().all(|(_, x)| x.uncertainty.is_none()));
        let err = RejectPolicy::new(
            &PolicyConfig { score: Some(ScoreKind::Uncertainty), ..PolicyConfig::default() },
            &m,
        )
        .unwrap_err();
        assert!(err.to_string().contains("emogate calibrate"), "{err}");
        // A manifest that chose the uncertainty but has no profile falls back to the entropy.
        let mut broken = with_profiles(ScoreKind::Uncertainty);
        broken.uncertainty_profile = None;
        broken.thresholds[0].uncertainty = None;
        assert_eq!(RejectPolicy::new(&PolicyConfig::default(), &broken).unwrap().score(), ScoreKind::Entropy);
        // Profiles but no uncertainty thresholds for the coverage asked: a clear error.
        let mut m = with_profiles(ScoreKind::Uncertainty);
        m.thresholds[0].uncertainty = None;
        let err = RejectPolicy::new(&PolicyConfig::default(), &m).unwrap_err();
        assert!(err.to_string().contains("none for uncertainty"), "{err}");
    }

    #[test]
    fn record_rules_use_the_record_thresholds_of_their_rule_and_score() {
        let mut m = calibrated();
        let rec = |rule, score, t: f32| crate::model::RecordThresholds {
            rule,
            score,
            thresholds: PerAttribute::from_fn(|_| t),
            attribute_coverage: 0.9,
            dev_accepted: 0.8,
        };
        m.thresholds[0].record =
            vec![rec(JointRule::All, ScoreKind::Entropy, 1.7), rec(JointRule::Any, ScoreKind::Entropy, 0.3)];
        let all = RejectPolicy::new(&PolicyConfig::default(), &m).unwrap();
        assert_eq!((all.coverage_of(), all.thresholds().valence), (CoverageOf::Records, 1.7));
        let any = policy_on(&m, |c| c.decision = DecisionRule::Any);
        assert_eq!((any.coverage_of(), any.thresholds().arousal), (CoverageOf::Records, 0.3));
        // A single attribute's rule is its own record rate: the per-attribute thresholds.
        let one = policy_on(&m, |c| c.decision = DecisionRule::Attribute(Attribute::Arousal));
        assert_eq!((one.coverage_of(), one.thresholds().arousal), (CoverageOf::Records, 1.5));
        // Uncertainty transfer changes which columns decide: the record thresholds do not apply.
        let utl = policy_on(&m, |c| {
            c.uncertainty_source.insert(Attribute::Valence, Attribute::Arousal);
        });
        assert_eq!((utl.coverage_of(), utl.thresholds().valence), (CoverageOf::Attributes, 1.0));
        let explicit = policy_on(&m, |c| c.thresholds = Some(PerAttribute::from_fn(|_| 0.5)));
        assert_eq!(explicit.coverage_of(), CoverageOf::Explicit);
        // Older manifests (no record thresholds) keep the per-attribute ones and say so.
        assert_eq!(policy(|_| {}).coverage_of(), CoverageOf::Attributes);
    }

    fn policy_on(m: &Manifest, edit: impl FnOnce(&mut PolicyConfig)) -> RejectPolicy {
        let mut config = PolicyConfig::default();
        edit(&mut config);
        RejectPolicy::new(&config, m).unwrap()
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
