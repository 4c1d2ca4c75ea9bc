//! `manifest.json`: what a model file is, where it came from and how to use it (DESIGN §6).
//!
//! The manifest travels next to `model.onnx`. The service trusts the graph only after the
//! manifest's sha256 matches the file, so a half-copied or swapped model refuses to start
//! instead of producing plausible-looking numbers. The reject policy reads its calibrated
//! entropy thresholds from here, which is why `emogate calibrate` writes into it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::attribute::{Attribute, PerAttribute};
use crate::uncertainty::{JointRule, LevelProfile, ScoreKind};

use super::error::ModelError;

/// File name of the manifest inside a model directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of the serving graph inside a model directory.
pub const MODEL_FILE: &str = "model.onnx";

/// How the fixed Monte-Carlo noise bank of the graph was drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum NoiseBank {
    /// i.i.d. standard normal draws, as in the paper.
    #[default]
    Gaussian,
    /// Scrambled Sobol points mapped through the normal inverse CDF.
    Sobol,
    /// Gaussian draws paired with their negations.
    Antithetic,
}

/// Provenance of the training run that produced the model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// Identifier of the training corpus (e.g. `synthetic-v1-seed7` or `msp-podcast-1.6`).
    pub corpus_id: String,
    /// Content hash of the corpus files the model was trained on.
    pub corpus_hash: String,
    /// Command line that reproduces the model, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Hyper-parameters as given to the trainer (free-form, recorded for reproducibility).
    #[serde(default)]
    pub hyperparameters: BTreeMap<String, serde_json::Value>,
}

/// What calibration measured on the dev split, so `serve` and the dashboard can tell whether
/// rejecting helps (issue 15: a model whose reject option lowers CCC must not ship silently).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The score `serve` ranks by when `policy.score` is unset: of the scores calibrated, the
    /// one whose worst attribute gains most at 60 % dev coverage (the promise is "for every
    /// attribute").
    pub score: ScoreKind,
    /// Per attribute, dev CCC at 60 % coverage over dev CCC at 100 %, minus 1 (`+0.1` = +10 %),
    /// ranking by `score`. Negative: rejecting by it removes the better predictions.
    pub dev_gain_at_60: PerAttribute<f64>,
    /// The same for every score calibrated (`score` included), so `serve` can warn about the
    /// one a `policy.score` override picks. Empty in manifests from before it was recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dev_gain_at_60_by_score: BTreeMap<ScoreKind, PerAttribute<f64>>,
}

impl Calibration {
    /// Whether a recorded gain means rejecting hurts: negative, or NaN (no CCC at all), which
    /// must not pass as harmless.
    pub fn hurts(gain: f64) -> bool {
        gain.is_nan() || gain < 0.0
    }

    /// The dev gains of ranking by `kind`, if calibration measured them.
    pub fn gains(&self, kind: ScoreKind) -> Option<&PerAttribute<f64>> {
        self.dev_gain_at_60_by_score.get(&kind).or((kind == self.score).then_some(&self.dev_gain_at_60))
    }

    /// The attributes for which ranking by `kind` was measured to lower the dev CCC (a NaN
    /// gain counts): for them the reject option keeps the worse predictions, which `serve`
    /// says loudly at start. Empty when `kind` was not measured.
    pub fn harmful(&self, kind: ScoreKind) -> Vec<Attribute> {
        self.gains(kind)
            .map(|g| Attribute::ALL.into_iter().filter(|&a| Calibration::hurts(g[a])).collect())
            .unwrap_or_default()
    }
}

/// Thresholds that accept the requested fraction of the dev split, per score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoverageThresholds {
    /// Target coverage as a fraction in (0, 1].
    pub coverage: f64,
    /// A record's attribute is accepted when its entropy is `<=` this value (nats).
    pub entropy: PerAttribute<f32>,
    /// The same for the served `{a}_uncertainty` (present with [`Manifest::uncertainty_profile`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty: Option<PerAttribute<f32>>,
    /// Thresholds with which a record rule accepts `coverage` of the dev *records*, per rule
    /// and score ([`crate::uncertainty::record_coverage`]); empty in older manifests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub record: Vec<RecordThresholds>,
}

/// The Monte-Carlo estimator of the graph and its measured error (issue 15: the bank and S are
/// chosen by measured error against a much larger reference bank).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McInfo {
    pub bank: NoiseBank,
    pub samples: usize,
    pub seed: u64,
    /// Mean over records and attributes of |H − H_ref| (nats) on `split`.
    pub entropy_error_vs_reference: f64,
    /// Gaussian samples of the reference bank.
    pub reference_samples: usize,
    pub reference_seed: u64,
    pub split: String,
}

/// Per-attribute thresholds calibrated for a record coverage under one rule and score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordThresholds {
    pub rule: JointRule,
    pub score: ScoreKind,
    pub thresholds: PerAttribute<f32>,
    /// The per-attribute coverage these thresholds amount to on dev.
    pub attribute_coverage: f64,
    /// The fraction of dev records the rule accepts with them.
    pub dev_accepted: f64,
}

impl CoverageThresholds {
    /// The thresholds of one score, if calibrated.
    pub fn of(&self, kind: ScoreKind) -> Option<&PerAttribute<f32>> {
        match kind {
            ScoreKind::Entropy => Some(&self.entropy),
            ScoreKind::Uncertainty => self.uncertainty.as_ref(),
        }
    }

    /// The record-coverage thresholds of one rule and score, if calibrated.
    pub fn for_records(&self, rule: JointRule, kind: ScoreKind) -> Option<&RecordThresholds> {
        self.record.iter().find(|r| r.rule == rule && r.score == kind)
    }
}

/// The parsed `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: String,
    pub version: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// ONNX opset the graph was exported with.
    pub opset: u32,
    /// Hex sha256 of `model.onnx`.
    pub sha256: String,
    /// Feature extractor configuration the model expects, e.g. `ComParE_2016`.
    pub feature_set: String,
    /// Length of the input feature vector (6,373 for ComParE/IS13).
    pub feature_dims: usize,
    /// Monte-Carlo samples S in the graph's noise bank.
    pub mc_samples: usize,
    /// Width of the VAE latent space (the noise bank is `[S, latent_dims]`).
    pub latent_dims: usize,
    #[serde(default)]
    pub noise_bank: NoiseBank,
    /// Attributes the graph predicts (all three for the serving graph).
    pub attributes: Vec<Attribute>,
    #[serde(default)]
    pub training: TrainingInfo,
    /// Dev/test metrics, free-form (e.g. `{"test": {"valence": {"ccc": 0.41}}}`).
    #[serde(default)]
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// Calibrated thresholds, one entry per target coverage, sorted by coverage.
    #[serde(default)]
    pub thresholds: Vec<CoverageThresholds>,
    /// Absent in manifests written before calibration recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// Per attribute, the dev entropy profile over the predicted value that turns the entropy
    /// into the served `{a}_uncertainty` ([`LevelProfile::score`]); absent in manifests from
    /// before it existed (the outputs then carry no uncertainty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_profile: Option<PerAttribute<LevelProfile>>,
    /// How well the noise bank estimates the S → ∞ entropy, measured at export
    /// (`--mc-reference-samples`); absent when not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mc: Option<McInfo>,
    #[serde(default)]
    pub description: String,
}

impl Manifest {
    /// Reads and validates `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest, ModelError> {
        let path = dir.join(MANIFEST_FILE);
        let text =
            std::fs::read_to_string(&path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
        Manifest::from_json(&text).map_err(|reason| ModelError::Manifest { path, reason })
    }

    /// Parses and validates a manifest's JSON text (what [`Manifest::load`] reads; the fuzz
    /// target `manifest` feeds it arbitrary bytes).
    pub fn from_json(text: &str) -> Result<Manifest, String> {
        let manifest: Manifest = serde_json::from_str(text).map_err(|e| e.to_string())?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Writes the manifest as pretty JSON to `dir/manifest.json`.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        let path = dir.join(MANIFEST_FILE);
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| ModelError::Manifest { path: path.clone(), reason: e.to_string() })?;
        text.push('\n');
        std::fs::write(&path, text).map_err(|source| ModelError::Io { path, source })
    }

    /// `id@version`, the value of the `emogate.model` Kafka header and Avro `model_version`.
    pub fn model_ref(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }

    /// The thresholds entry for exactly `coverage` (within 1e-9), if any.
    pub fn coverage_entry(&self, coverage: f64) -> Option<&CoverageThresholds> {
        self.thresholds.iter().find(|t| (t.coverage - coverage).abs() < 1e-9)
    }

    /// `kind`'s thresholds calibrated for exactly `coverage` (within 1e-9), if any.
    pub fn thresholds_for(&self, coverage: f64, kind: ScoreKind) -> Option<&PerAttribute<f32>> {
        self.coverage_entry(coverage).and_then(|t| t.of(kind))
    }

    /// Checks the fields that the service relies on; returns a human-readable reason.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.trim().is_empty() || self.version.trim().is_empty() {
            return Err("`id` and `version` must be non-empty".into());
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`sha256` must be 64 hex digits, got {:?}", self.sha256));
        }
        if self.feature_dims == 0 || self.mc_samples == 0 || self.latent_dims == 0 {
            return Err("`feature_dims`, `mc_samples` and `latent_dims` must be positive".into());
        }
        if self.attributes != Attribute::ALL {
            return Err(format!(
                "`attributes` must be [\"valence\", \"arousal\", \"dominance\"] for a serving graph, got {:?}",
                self.attributes
            ));
        }
        let max_entropy = (crate::attribute::LIKERT_BINS as f32).ln();
        for t in &self.thresholds {
            if !(t.coverage > 0.0 && t.coverage <= 1.0) {
                return Err(format!("threshold coverage {} is not in (0, 1]", t.coverage));
            }
            for (a, &h) in t.entropy.iter() {
                if h.is_nan() || h < 0.0 || (h.is_finite() && h > max_entropy + 1e-4) {
                    return Err(format!(
                        "threshold for {a} at coverage {} is {h}, outside [0, ln 7]",
                        t.coverage
                    ));
                }
            }
        }
        if let Some(profiles) = &self.uncertainty_profile {
            for (a, p) in profiles.iter() {
                p.validate().map_err(|e| format!("uncertainty_profile.{a}: {e}"))?;
            }
        }
        // Uncertainty thresholds (per attribute or per record rule) need the profile that
        // defines the score, and no threshold may be NaN (it would reject everything).
        for t in &self.thresholds {
            let sets = t.uncertainty.iter().map(|u| ("uncertainty", ScoreKind::Uncertainty, u));
            let records = t.record.iter().map(|r| ("record", r.score, &r.thresholds));
            for (what, score, thresholds) in sets.chain(records) {
                if score == ScoreKind::Uncertainty && self.uncertainty_profile.is_none() {
                    return Err(format!(
                        "{what} thresholds by uncertainty at coverage {} without an `uncertainty_profile`",
                        t.coverage
                    ));
                }
                if let Some((a, _)) = thresholds.iter().find(|(_, v)| v.is_nan()) {
                    return Err(format!("{what} threshold for {a} at coverage {} is NaN", t.coverage));
                }
            }
        }
        if self.thresholds.windows(2).any(|w| w[0].coverage >= w[1].coverage) {
            return Err("`thresholds` must be sorted by strictly increasing coverage".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            id: "test".into(),
            version: "1".into(),
            created: "2026-11-25T00:00:00Z".into(),
            opset: 17,
            sha256: "0".repeat(64),
            feature_set: "ComParE_2016".into(),
            feature_dims: 6373,
            mc_samples: 100,
            latent_dims: 256,
            noise_bank: NoiseBank::Gaussian,
            attributes: Attribute::ALL.to_vec(),
            training: TrainingInfo::default(),
            metrics: BTreeMap::new(),
            thresholds: vec![
                CoverageThresholds {
                    coverage: 0.6,
                    entropy: PerAttribute::from_fn(|_| 1.2),
                    uncertainty: Some(PerAttribute::from_fn(|_| 0.25)),
                    record: vec![RecordThresholds {
                        rule: JointRule::All,
                        score: ScoreKind::Uncertainty,
                        thresholds: PerAttribute::from_fn(|_| 0.6),
                        attribute_coverage: 0.75,
                        dev_accepted: 0.6,
                    }],
                },
                CoverageThresholds {
                    coverage: 1.0,
                    entropy: PerAttribute::from_fn(|_| 1.9),
                    uncertainty: Some(PerAttribute::from_fn(|_| f32::MAX)),
                    record: Vec::new(),
                },
            ],
            calibration: Some(Calibration {
                score: ScoreKind::Uncertainty,
                dev_gain_at_60: PerAttribute::from_fn(|a| a.index() as f64 * 0.1 - 0.05),
                dev_gain_at_60_by_score: BTreeMap::from([
                    (ScoreKind::Uncertainty, PerAttribute::from_fn(|a| a.index() as f64 * 0.1 - 0.05)),
                    (ScoreKind::Entropy, PerAttribute::from_fn(|_| -0.2)),
                ]),
            }),
            uncertainty_profile: Some(PerAttribute::from_fn(|_| LevelProfile {
                level: vec![2.0, 4.0],
                mean: vec![1.5, 1.7],
                sd: vec![0.1, 0.2],
            })),
            mc: Some(McInfo {
                bank: NoiseBank::Sobol,
                samples: 10,
                seed: 2020,
                entropy_error_vs_reference: 0.0027,
                reference_samples: 2000,
                reference_seed: 7919,
                split: "test".into(),
            }),
            description: String::new(),
        }
    }

    #[test]
    fn round_trips_through_json_and_finds_thresholds() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample();
        m.save(dir.path()).unwrap();
        let back = Manifest::load(dir.path()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.thresholds_for(0.6, ScoreKind::Entropy).unwrap().arousal, 1.2);
        assert_eq!(back.thresholds_for(0.6, ScoreKind::Uncertainty).unwrap().arousal, 0.25);
        assert_eq!(back.thresholds_for(1.0, ScoreKind::Uncertainty).unwrap().arousal, f32::MAX);
        assert!(back.thresholds_for(0.7, ScoreKind::Entropy).is_none());
        let c = back.calibration.as_ref().unwrap();
        assert_eq!(c.harmful(ScoreKind::Uncertainty), vec![Attribute::Valence]);
        assert_eq!(c.harmful(ScoreKind::Entropy), Attribute::ALL.to_vec());
        // A manifest from before the served uncertainty: no thresholds, no profile, no warning.
        let mut old = m.clone();
        old.uncertainty_profile = None;
        old.thresholds.iter_mut().for_each(|t| {
            t.uncertainty = None;
            t.record.clear();
        });
        old.calibration = Some(Calibration {
            score: ScoreKind::Entropy,
            dev_gain_at_60: PerAttribute::from_fn(|_| 0.1),
            dev_gain_at_60_by_score: BTreeMap::new(),
        });
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("uncertainty") && !json.contains("by_score"), "{json}");
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert!(back.thresholds_for(0.6, ScoreKind::Uncertainty).is_none());
        assert!(back.calibration.as_ref().unwrap().harmful(ScoreKind::Uncertainty).is_empty());
        assert_eq!(back.model_ref(), "test@1");
    }

    #[test]
    fn rejects_what_the_service_cannot_use() {
        let mut m = sample();
        m.sha256 = "abc".into();
        assert!(m.validate().unwrap_err().contains("sha256"));
        let mut m = sample();
        m.attributes = vec![Attribute::Valence];
        assert!(m.validate().unwrap_err().contains("attributes"));
        let mut m = sample();
        m.thresholds.reverse();
        assert!(m.validate().unwrap_err().contains("sorted"));
        let mut m = sample();
        m.thresholds[0].entropy.valence = 3.0;
        assert!(m.validate().unwrap_err().contains("outside"));
        let mut m = sample();
        m.uncertainty_profile = None;
        assert!(m.validate().unwrap_err().contains("without an `uncertainty_profile`"));
        let mut m = sample();
        m.uncertainty_profile.as_mut().unwrap().arousal.sd[1] = 0.0;
        assert!(m.validate().unwrap_err().contains("uncertainty_profile.arousal"));
        let mut m = sample();
        m.thresholds[0].uncertainty.as_mut().unwrap().dominance = f32::NAN;
        assert!(m.validate().unwrap_err().contains("NaN"));
    }
}
