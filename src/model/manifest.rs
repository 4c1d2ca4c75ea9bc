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

/// Entropy thresholds (nats) that accept the requested fraction of the dev split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoverageThresholds {
    /// Target coverage as a fraction in (0, 1].
    pub coverage: f64,
    /// A record's attribute is accepted when its entropy is `<=` this value.
    pub entropy: PerAttribute<f32>,
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
    #[serde(default)]
    pub description: String,
}

impl Manifest {
    /// Reads and validates `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest, ModelError> {
        let path = dir.join(MANIFEST_FILE);
        let text =
            std::fs::read_to_string(&path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| ModelError::Manifest { path: path.clone(), reason: e.to_string() })?;
        manifest.validate().map_err(|reason| ModelError::Manifest { path, reason })?;
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

    /// Thresholds calibrated for exactly `coverage` (within 1e-9), if any.
    pub fn thresholds_for(&self, coverage: f64) -> Option<&PerAttribute<f32>> {
        self.thresholds.iter().find(|t| (t.coverage - coverage).abs() < 1e-9).map(|t| &t.entropy)
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
                CoverageThresholds { coverage: 0.6, entropy: PerAttribute::from_fn(|_| 1.2) },
                CoverageThresholds { coverage: 1.0, entropy: PerAttribute::from_fn(|_| 1.9) },
            ],
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
        assert_eq!(back.thresholds_for(0.6).unwrap().arousal, 1.2);
        assert!(back.thresholds_for(0.7).is_none());
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
    }
}
