//! Evaluation of a serving graph on a corpus split, and entropy-threshold calibration.
//!
//! The reject policy accepts an attribute when its entropy is at most a threshold. The
//! threshold for a target coverage c is the c-quantile of the entropies the model produces
//! on the dev split (never the test split, which reports how well that generalises). Both
//! run the candle reference of the graph on the weights read back from `model.onnx`, so
//! what is calibrated is exactly what is served.

use std::path::Path;

use serde::Serialize;

use super::corpus::{Corpus, Split};
use super::serving::{self, AttributeOutputs, ServingParams};
use super::TrainError;
use super::{labels, metrics};
use crate::attribute::{Attribute, PerAttribute};
use crate::model::manifest::{CoverageThresholds, Manifest, MODEL_FILE};
use crate::uncertainty;

/// One point of a reject curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CoveragePoint {
    pub coverage: f64,
    pub ccc: f64,
}

/// Metrics of one attribute on one split (the `value` output scored against consensus
/// labels, records ordered by the attribute's own `entropy`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeEval {
    pub n: usize,
    pub ccc_full: f64,
    pub ccc_consensus_head: f64,
    pub mean_entropy: f64,
    /// Mean KLD(soft labels ‖ predicted distribution).
    pub kld_soft: f64,
    pub coverage_curve: Vec<CoveragePoint>,
    /// CCC per uncertainty quintile, most certain fifth first.
    pub quintile_ccc: [f64; 5],
    /// Pearson correlation of entropy with annotator disagreement (vote standard deviation).
    pub entropy_vs_disagreement: f64,
}

impl AttributeEval {
    /// CCC at the given coverage of the curve.
    pub fn ccc_at(&self, coverage: f64) -> f64 {
        self.coverage_curve
            .iter()
            .find(|p| (p.coverage - coverage).abs() < 1e-9)
            .map(|p| p.ccc)
            .unwrap_or(f64::NAN)
    }

    /// Whether quintile CCC falls strictly from the most to the least certain fifth.
    pub fn quintiles_fall(&self) -> bool {
        self.quintile_ccc.windows(2).all(|w| w[0] > w[1])
    }
}

/// Runs the serving computation on a split; returns outputs and the rows used.
pub fn run_split(
    params: &ServingParams,
    corpus: &Corpus,
    split: Split,
) -> Result<(Vec<usize>, PerAttribute<AttributeOutputs>), TrainError> {
    let rows = corpus.indices(split);
    if rows.is_empty() {
        return Err(TrainError::Corpus {
            path: corpus.meta.id.clone().into(),
            reason: format!("the {} split is empty", split.as_str()),
        });
    }
    if corpus.dims != params.dims() {
        return Err(TrainError::Config(format!(
            "corpus has {}-dim features, the model expects {}",
            corpus.dims,
            params.dims()
        )));
    }
    let out = serving::forward(params, &corpus.gather(&rows), 128)?;
    Ok((rows, out))
}

/// Scores outputs of [`run_split`] against the corpus labels, with the same
/// [`crate::uncertainty`] functions `emogate evaluate` uses, so the manifest's numbers and
/// the evaluation report agree.
pub fn score(
    corpus: &Corpus,
    rows: &[usize],
    out: &PerAttribute<AttributeOutputs>,
) -> Result<PerAttribute<AttributeEval>, TrainError> {
    PerAttribute::try_from_fn(|a| {
        let o = &out[a];
        let labels = corpus.labels(rows, a);
        let sd: Vec<f32> = rows.iter().map(|&i| labels::vote_std(&corpus.ratings(i, a))).collect();
        let kld = super::trainer::mean_kld(&labels.soft, &o.distribution);
        let curve =
            uncertainty::coverage_curve(&o.value, &labels.consensus, &o.entropy, &metrics::coverage_grid())?;
        Ok(AttributeEval {
            n: rows.len(),
            ccc_full: uncertainty::ccc(&o.value, &labels.consensus)?,
            ccc_consensus_head: uncertainty::ccc(&o.consensus, &labels.consensus)?,
            mean_entropy: o.entropy.iter().map(|&e| e as f64).sum::<f64>() / rows.len() as f64,
            kld_soft: kld,
            coverage_curve: curve
                .into_iter()
                .map(|p| CoveragePoint { coverage: p.coverage, ccc: p.ccc })
                .collect(),
            quintile_ccc: uncertainty::quintile_ccc(&o.value, &labels.consensus, &o.entropy)?,
            entropy_vs_disagreement: metrics::pearson(&o.entropy, &sd),
        })
    })
}

/// Thresholds for each coverage from per-attribute dev entropies, by
/// [`uncertainty::threshold_for_coverage`] (the rule the evaluation's coverage curves use, so
/// `entropy <= threshold` accepts the fraction c of the dev split); coverage 1.0 gives ln 7,
/// accepting everything.
pub fn thresholds(
    entropy: &PerAttribute<Vec<f32>>,
    coverages: &[f64],
) -> Result<Vec<CoverageThresholds>, TrainError> {
    let mut cs = coverages.to_vec();
    cs.sort_by(f64::total_cmp);
    cs.dedup();
    // Full coverage accepts every record, also beyond the dev split's largest entropy: ln 7.
    let max_entropy = (crate::LIKERT_BINS as f32).ln();
    cs.into_iter()
        .map(|c| {
            let entropy = PerAttribute::try_from_fn(|a| {
                if c >= 1.0 {
                    Ok(max_entropy)
                } else {
                    uncertainty::threshold_for_coverage(&entropy[a], c)
                }
            })?;
            Ok(CoverageThresholds { coverage: c, entropy })
        })
        .collect()
}

/// Merges new thresholds into existing ones (same coverage replaced), sorted by coverage.
pub fn merge_thresholds(
    existing: &[CoverageThresholds],
    new: Vec<CoverageThresholds>,
) -> Vec<CoverageThresholds> {
    let mut all: Vec<CoverageThresholds> = existing
        .iter()
        .filter(|e| !new.iter().any(|n| (n.coverage - e.coverage).abs() < 1e-9))
        .cloned()
        .collect();
    all.extend(new);
    all.sort_by(|a, b| a.coverage.total_cmp(&b.coverage));
    all
}

/// Checks a coverage target given on the command line.
pub fn check_coverage(c: f64) -> Result<f64, TrainError> {
    if c > 0.0 && c <= 1.0 {
        Ok(c)
    } else {
        Err(TrainError::Config(format!("coverage {c} is not in (0, 1]")))
    }
}

/// `emogate calibrate`: fits thresholds on the dev split of `corpus` for the model in
/// `model_dir` and writes them into its manifest. Returns the updated manifest.
pub fn calibrate_model(model_dir: &Path, corpus: &Corpus, coverages: &[f64]) -> Result<Manifest, TrainError> {
    let mut manifest = Manifest::load(model_dir)?;
    let params = super::onnx::read(&model_dir.join(MODEL_FILE))?;
    let (_, out) = run_split(&params, corpus, Split::Dev)?;
    let entropy = PerAttribute::from_fn(|a: Attribute| out[a].entropy.clone());
    manifest.thresholds = merge_thresholds(&manifest.thresholds, thresholds(&entropy, coverages)?);
    manifest
        .validate()
        .map_err(|reason| TrainError::Config(format!("calibrated manifest is invalid: {reason}")))?;
    manifest.save(model_dir)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_sorted_quantiles_and_merge_replaces_by_coverage() {
        let e =
            PerAttribute::from_fn(|a| (0..10).map(|i| (i + a.index()) as f32 * 0.1).collect::<Vec<f32>>());
        let t = thresholds(&e, &[1.0, 0.5, 0.5]).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].coverage, 0.5);
        assert!((t[0].entropy.valence - 0.4).abs() < 1e-6);
        assert!((t[0].entropy.dominance - 0.6).abs() < 1e-6);
        assert!((t[1].entropy.valence - 7f32.ln()).abs() < 1e-6);
        let old = vec![CoverageThresholds { coverage: 0.5, entropy: PerAttribute::from_fn(|_| 9.0) }];
        let merged = merge_thresholds(&old, thresholds(&e, &[0.5, 0.2]).unwrap());
        assert_eq!(merged.iter().map(|t| t.coverage).collect::<Vec<_>>(), vec![0.2, 0.5]);
        assert!(merged[1].entropy.arousal < 1.0);
        assert!(check_coverage(0.0).is_err() && check_coverage(1.0).is_ok());
    }
}
