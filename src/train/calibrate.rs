//! Evaluation of a serving graph on a corpus split, and threshold calibration.
//!
//! The reject policy accepts an attribute when its score is at most a threshold. Two scores are
//! calibrated ([`ScoreKind`]): the paper's entropy, and the served uncertainty, the entropy
//! standardised within the predicted value by a [`LevelProfile`] fitted here on dev. The
//! threshold for a target coverage c is the c-quantile of the scores the model produces on the
//! dev split (never the test split, which reports how well that generalises). The dev reject
//! curve of each score decides which one `serve` ranks by by default ([`choose_score`]). All of
//! it runs the candle reference of the graph on the weights read back from `model.onnx`, so
//! what is calibrated is exactly what is served.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::corpus::{Corpus, Split};
use super::serving::{self, AttributeOutputs, ServingParams};
use super::TrainError;
use super::{labels, metrics};
use crate::attribute::{Attribute, PerAttribute};
use crate::model::manifest::{Calibration, CoverageThresholds, Manifest, RecordThresholds, MODEL_FILE};
use crate::uncertainty::{self, JointRule, LevelProfile, ScoreKind};

/// One point of a reject curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CoveragePoint {
    pub coverage: f64,
    pub ccc: f64,
}

/// Metrics of one attribute on one split (the `value` output scored against consensus
/// labels, records ordered by the attribute's own `ranking` score).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeEval {
    pub n: usize,
    pub ccc_full: f64,
    pub ccc_consensus_head: f64,
    pub mean_entropy: f64,
    /// Mean KLD(soft labels ‖ predicted distribution).
    pub kld_soft: f64,
    /// The score the curve and quintiles rank by.
    pub ranking: ScoreKind,
    pub coverage_curve: Vec<CoveragePoint>,
    /// CCC per uncertainty quintile, most certain fifth first.
    pub quintile_ccc: [f64; 5],
    /// Pearson correlation of entropy with annotator disagreement (vote standard deviation).
    pub entropy_vs_disagreement: f64,
    /// The same for the `ranking` score.
    pub ranking_vs_disagreement: f64,
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

/// Scores outputs of [`run_split`] against the corpus labels, ranking by the entropy, with the
/// same [`crate::uncertainty`] functions `emogate evaluate` uses, so the manifest's numbers and
/// the evaluation report agree.
pub fn score(
    corpus: &Corpus,
    rows: &[usize],
    out: &PerAttribute<AttributeOutputs>,
) -> Result<PerAttribute<AttributeEval>, TrainError> {
    let entropy = PerAttribute::from_fn(|a| out[a].entropy.clone());
    score_by(corpus, rows, out, ScoreKind::Entropy, &entropy)
}

/// [`score`], ranking by `ranking` (the values of score `kind`, one per row).
pub fn score_by(
    corpus: &Corpus,
    rows: &[usize],
    out: &PerAttribute<AttributeOutputs>,
    kind: ScoreKind,
    ranking: &PerAttribute<Vec<f32>>,
) -> Result<PerAttribute<AttributeEval>, TrainError> {
    PerAttribute::try_from_fn(|a| {
        let (o, r) = (&out[a], &ranking[a]);
        let labels = corpus.labels(rows, a);
        let sd: Vec<f32> = rows.iter().map(|&i| labels::vote_std(&corpus.ratings(i, a))).collect();
        let kld = super::trainer::mean_kld(&labels.soft, &o.distribution);
        let curve = uncertainty::coverage_curve(&o.value, &labels.consensus, r, &metrics::coverage_grid())?;
        Ok(AttributeEval {
            n: rows.len(),
            ccc_full: uncertainty::ccc(&o.value, &labels.consensus)?,
            ccc_consensus_head: uncertainty::ccc(&o.consensus, &labels.consensus)?,
            mean_entropy: o.entropy.iter().map(|&e| e as f64).sum::<f64>() / rows.len() as f64,
            kld_soft: kld,
            ranking: kind,
            coverage_curve: curve
                .into_iter()
                .map(|p| CoveragePoint { coverage: p.coverage, ccc: p.ccc })
                .collect(),
            quintile_ccc: uncertainty::quintile_ccc(&o.value, &labels.consensus, r)?,
            entropy_vs_disagreement: metrics::pearson(&o.entropy, &sd),
            ranking_vs_disagreement: metrics::pearson(r, &sd),
        })
    })
}

/// Fits each attribute's [`LevelProfile`] on dev outputs (level = the served `value`).
pub fn fit_profiles(dev: &PerAttribute<AttributeOutputs>) -> Result<PerAttribute<LevelProfile>, TrainError> {
    PerAttribute::try_from_fn(|a| {
        Ok(LevelProfile::fit(&dev[a].value, &dev[a].entropy, uncertainty::level_score::DEFAULT_KNOTS)?)
    })
}

/// The served uncertainty of every output row, exactly as `policy.rs` computes it.
pub fn served_uncertainty(
    profiles: &PerAttribute<LevelProfile>,
    out: &PerAttribute<AttributeOutputs>,
) -> PerAttribute<Vec<f32>> {
    PerAttribute::from_fn(|a| {
        out[a].value.iter().zip(&out[a].entropy).map(|(&v, &h)| profiles[a].score(v, h)).collect()
    })
}

/// Thresholds for each coverage from per-attribute dev entropies and, when given, served
/// uncertainties, by [`uncertainty::threshold_for_coverage`] (the rule the evaluation's
/// coverage curves use, so `score <= threshold` accepts the fraction c of the dev split).
/// Coverage 1.0 accepts everything, also beyond the dev split's largest score: ln 7 for the
/// entropy, `f32::MAX` for the unbounded uncertainty (JSON has no infinity).
pub fn thresholds(
    entropy: &PerAttribute<Vec<f32>>,
    served: Option<&PerAttribute<Vec<f32>>>,
    coverages: &[f64],
) -> Result<Vec<CoverageThresholds>, TrainError> {
    let mut cs = coverages.to_vec();
    cs.sort_by(f64::total_cmp);
    cs.dedup();
    let at = |scores: &PerAttribute<Vec<f32>>, c: f64, all: f32| {
        PerAttribute::try_from_fn(|a| {
            if c >= 1.0 {
                Ok(all)
            } else {
                uncertainty::threshold_for_coverage(&scores[a], c)
            }
        })
    };
    let by_score: Vec<(ScoreKind, &PerAttribute<Vec<f32>>, f32)> = [
        (ScoreKind::Entropy, Some(entropy), (crate::LIKERT_BINS as f32).ln()),
        (ScoreKind::Uncertainty, served, f32::MAX),
    ]
    .into_iter()
    .filter_map(|(k, s, all)| s.map(|s| (k, s, all)))
    .collect();
    cs.into_iter()
        .map(|c| {
            let mut record = Vec::new();
            for &(score, scores, all) in &by_score {
                for rule in [JointRule::All, JointRule::Any] {
                    record.push(record_thresholds_at(scores, c, rule, score, all)?);
                }
            }
            Ok(CoverageThresholds {
                coverage: c,
                entropy: at(entropy, c, (crate::LIKERT_BINS as f32).ln())?,
                uncertainty: served.map(|u| at(u, c, f32::MAX)).transpose()?,
                record,
            })
        })
        .collect()
}

/// Record-coverage thresholds of one rule and score ([`uncertainty::record_thresholds`]);
/// coverage 1.0 accepts everything with `all` as the threshold.
fn record_thresholds_at(
    scores: &PerAttribute<Vec<f32>>,
    coverage: f64,
    rule: JointRule,
    score: ScoreKind,
    all: f32,
) -> Result<RecordThresholds, TrainError> {
    if coverage >= 1.0 {
        let thresholds = PerAttribute::from_fn(|_| all);
        return Ok(RecordThresholds { rule, score, thresholds, attribute_coverage: 1.0, dev_accepted: 1.0 });
    }
    let columns: Vec<&[f32]> = Attribute::ALL.iter().map(|&a| scores[a].as_slice()).collect();
    let r = uncertainty::record_thresholds(&columns, coverage, rule)?;
    Ok(RecordThresholds {
        rule,
        score,
        thresholds: PerAttribute::from_fn(|a| r.thresholds[a.index()]),
        attribute_coverage: r.attribute_coverage,
        dev_accepted: r.accepted,
    })
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

/// The coverage at which the reject option's benefit is judged (the paper's headline, Fig. 3).
pub const GAIN_COVERAGE: f64 = 0.6;

/// Per attribute, the relative CCC gain at 60 % coverage of one dev evaluation.
pub fn gains_at_60(dev: &PerAttribute<AttributeEval>) -> PerAttribute<f64> {
    PerAttribute::from_fn(|a| dev[a].ccc_at(GAIN_COVERAGE) / dev[a].ccc_full - 1.0)
}

/// The score whose *worst* attribute gains most on dev (the promise is that accepted means
/// more reliable for every attribute; a NaN gain counts as the worst); a tie keeps the
/// paper's entropy.
pub fn choose_score(gains: &BTreeMap<ScoreKind, PerAttribute<f64>>) -> ScoreKind {
    let worst = |g: &PerAttribute<f64>| {
        g.iter().map(|(_, &v)| if v.is_nan() { f64::NEG_INFINITY } else { v }).fold(f64::INFINITY, f64::min)
    };
    let mut best = ScoreKind::Entropy;
    for (&kind, g) in gains {
        if gains.get(&best).is_none_or(|b| worst(g) > worst(b)) {
            best = kind;
        }
    }
    best
}

/// What the dev split says about rejecting: the gains of every evaluated score and the one
/// chosen ([`choose_score`]).
pub fn calibration(dev_by_score: &BTreeMap<ScoreKind, PerAttribute<AttributeEval>>) -> Calibration {
    let by_score: BTreeMap<ScoreKind, PerAttribute<f64>> =
        dev_by_score.iter().map(|(&k, dev)| (k, gains_at_60(dev))).collect();
    let score = choose_score(&by_score);
    Calibration {
        score,
        dev_gain_at_60: by_score.get(&score).cloned().unwrap_or_else(|| PerAttribute::from_fn(|_| f64::NAN)),
        dev_gain_at_60_by_score: by_score,
    }
}

/// Everything calibration derives from a model's dev outputs.
#[derive(Debug, Clone)]
pub struct DevCalibration {
    pub profiles: PerAttribute<LevelProfile>,
    pub thresholds: Vec<CoverageThresholds>,
    /// Dev evaluation ranked by each score.
    pub dev: BTreeMap<ScoreKind, PerAttribute<AttributeEval>>,
    pub calibration: Calibration,
}

impl DevCalibration {
    /// Fits profiles, thresholds for both scores at `coverages`, and the dev reject curves.
    pub fn fit(
        corpus: &Corpus,
        rows: &[usize],
        out: &PerAttribute<AttributeOutputs>,
        coverages: &[f64],
    ) -> Result<DevCalibration, TrainError> {
        let profiles = fit_profiles(out)?;
        let served = served_uncertainty(&profiles, out);
        let entropy = PerAttribute::from_fn(|a| out[a].entropy.clone());
        let dev = BTreeMap::from([
            (ScoreKind::Entropy, score_by(corpus, rows, out, ScoreKind::Entropy, &entropy)?),
            (ScoreKind::Uncertainty, score_by(corpus, rows, out, ScoreKind::Uncertainty, &served)?),
        ]);
        Ok(DevCalibration {
            thresholds: thresholds(&entropy, Some(&served), coverages)?,
            calibration: calibration(&dev),
            profiles,
            dev,
        })
    }

    /// The dev evaluation of the chosen score.
    pub fn chosen(&self) -> &PerAttribute<AttributeEval> {
        &self.dev[&self.calibration.score]
    }

    /// Attributes whose chosen score lowers dev CCC at 60 % ([`harmful_attributes`]).
    pub fn harmful(&self) -> Vec<(Attribute, String)> {
        harmful_attributes(self.chosen())
    }
}

/// The attributes for which keeping the most certain 60 % gives a lower dev CCC than keeping
/// everything (or no CCC at all), with a readable account of each; empty when rejecting helps
/// or is neutral for all three.
///
/// Judged on the recorded gain ([`gains_at_60`], [`Calibration::hurts`]), the same rule
/// `serve` warns by, so the refusal and the start-up warning cannot disagree.
pub fn harmful_attributes(dev: &PerAttribute<AttributeEval>) -> Vec<(Attribute, String)> {
    let gains = gains_at_60(dev);
    Attribute::ALL
        .into_iter()
        .filter(|&a| Calibration::hurts(gains[a]))
        .map(|a| {
            let (full, at) = (dev[a].ccc_full, dev[a].ccc_at(GAIN_COVERAGE));
            (a, format!("{a} CCC {full:.3} at 100 % coverage but {at:.3} at 60 %"))
        })
        .collect()
}

/// Checks a coverage target given on the command line.
pub fn check_coverage(c: f64) -> Result<f64, TrainError> {
    if c > 0.0 && c <= 1.0 {
        Ok(c)
    } else {
        Err(TrainError::Config(format!("coverage {c} is not in (0, 1]")))
    }
}

/// `emogate calibrate`: fits the level profiles and both scores' thresholds on the dev split
/// of `corpus` for the model in `model_dir` (at `coverages` and at every coverage the manifest
/// already has) and writes them into its manifest. Returns the updated manifest.
///
/// It first measures the dev reject curves and picks the score ([`choose_score`]): if keeping
/// the 60 % most certain records by it lowers CCC for an attribute, it refuses
/// ([`TrainError::HarmfulReject`], nothing written) unless `allow_harmful` is set. The measured
/// gains go into the manifest either way.
pub fn calibrate_model(
    model_dir: &Path,
    corpus: &Corpus,
    coverages: &[f64],
    allow_harmful: bool,
) -> Result<Manifest, TrainError> {
    let mut manifest = Manifest::load(model_dir)?;
    let params = super::onnx::read(&model_dir.join(MODEL_FILE))?;
    let (rows, out) = run_split(&params, corpus, Split::Dev)?;
    // Every coverage already in the manifest is refitted with the requested ones: the profile
    // is refitted too, and an uncertainty threshold only means something with its profile.
    let all: Vec<f64> =
        coverages.iter().copied().chain(manifest.thresholds.iter().map(|t| t.coverage)).collect();
    let fit = DevCalibration::fit(corpus, &rows, &out, &all)?;
    let score = fit.calibration.score;
    let harmful = fit.harmful();
    if !harmful.is_empty() {
        let details = harmful.iter().map(|(_, d)| d.as_str()).collect::<Vec<_>>().join("; ");
        if !allow_harmful {
            return Err(TrainError::HarmfulReject { score: score.to_string(), details });
        }
        tracing::warn!(%details, %score, "calibrating a reject option that hurts on dev (--allow-harmful-reject)");
    }
    manifest.thresholds = merge_thresholds(&manifest.thresholds, fit.thresholds.clone());
    if manifest.uncertainty_profile.as_ref() != Some(&fit.profiles) {
        // The export's test figures ranked by the old profile's score; calibrate has no test
        // pass to replace them, so they go rather than describe another score.
        manifest.metrics.remove("test_uncertainty");
    }
    manifest.uncertainty_profile = Some(fit.profiles.clone());
    manifest.metrics.insert(
        "dev_uncertainty".into(),
        serde_json::to_value(&fit.dev[&ScoreKind::Uncertainty]).expect("metrics serialise"),
    );
    manifest.calibration = Some(fit.calibration);
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
        let t = thresholds(&e, None, &[1.0, 0.5, 0.5]).unwrap();
        assert!(t.iter().all(|t| t.uncertainty.is_none()));
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].coverage, 0.5);
        assert!((t[0].entropy.valence - 0.4).abs() < 1e-6);
        assert!((t[0].entropy.dominance - 0.6).abs() < 1e-6);
        assert!((t[1].entropy.valence - 7f32.ln()).abs() < 1e-6);
        let old = vec![CoverageThresholds {
            coverage: 0.5,
            entropy: PerAttribute::from_fn(|_| 9.0),
            uncertainty: None,
            record: Vec::new(),
        }];
        let u = PerAttribute::from_fn(|a| e[a].iter().map(|x| 3.0 - 4.0 * x).collect::<Vec<f32>>());
        let merged = merge_thresholds(&old, thresholds(&e, Some(&u), &[0.5, 0.2, 1.0]).unwrap());
        assert_eq!(merged.iter().map(|t| t.coverage).collect::<Vec<_>>(), vec![0.2, 0.5, 1.0]);
        let u50 = merged[1].uncertainty.unwrap();
        // The 0.5-quantile of 3 − 4·{0.0 … 0.9} (valence) is 3 − 4·0.5 = 1.0 … as `<=` accepts half.
        assert_eq!(u.valence.iter().filter(|&&x| x <= u50.valence).count(), 5);
        assert_eq!(merged[2].uncertainty.unwrap().arousal, f32::MAX, "full coverage accepts any score");
        // Record thresholds for both rules and both scores; `all` needs more per attribute.
        let t50 = &merged[1];
        assert_eq!(t50.record.len(), 4);
        let all = t50.for_records(JointRule::All, ScoreKind::Entropy).unwrap();
        let any = t50.for_records(JointRule::Any, ScoreKind::Uncertainty).unwrap();
        assert!((all.dev_accepted - 0.5).abs() < 1e-9 && (any.dev_accepted - 0.5).abs() < 1e-9);
        assert!(all.attribute_coverage >= 0.5 && any.attribute_coverage <= 0.5);
        assert_eq!(
            merged[2].for_records(JointRule::All, ScoreKind::Uncertainty).unwrap().thresholds.valence,
            f32::MAX
        );
        assert!(t.iter().all(|t| t.record.iter().all(|r| r.score == ScoreKind::Entropy)));
        assert!(merged[1].entropy.arousal < 1.0);
        assert!(check_coverage(0.0).is_err() && check_coverage(1.0).is_ok());
    }

    fn eval_with(full: f64, at_60: f64) -> AttributeEval {
        AttributeEval {
            n: 100,
            ccc_full: full,
            ccc_consensus_head: full,
            mean_entropy: 1.5,
            kld_soft: 0.5,
            ranking: ScoreKind::Entropy,
            coverage_curve: vec![
                CoveragePoint { coverage: 0.6, ccc: at_60 },
                CoveragePoint { coverage: 1.0, ccc: full },
            ],
            quintile_ccc: [0.0; 5],
            entropy_vs_disagreement: 0.0,
            ranking_vs_disagreement: 0.0,
        }
    }

    #[test]
    fn a_reject_curve_that_falls_at_60_percent_is_harmful_and_its_gain_is_recorded() {
        let dev = PerAttribute {
            valence: eval_with(0.40, 0.44),
            arousal: eval_with(0.50, 0.35),
            dominance: eval_with(0.50, f64::NAN),
        };
        let harmful = harmful_attributes(&dev);
        assert_eq!(
            harmful.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            vec![Attribute::Arousal, Attribute::Dominance]
        );
        assert!(harmful[0].1.contains("0.500") && harmful[0].1.contains("0.350"), "{}", harmful[0].1);
        let neutral = PerAttribute::from_fn(|_| eval_with(0.5, 0.5));
        assert!(harmful_attributes(&neutral).is_empty(), "equal CCC is not harmful");
        // Ranking by the uncertainty: every attribute gains, the worst by +4 % — it is chosen,
        // and its gains are the ones recorded as the served score's.
        let better = PerAttribute {
            valence: eval_with(0.40, 0.416),
            arousal: eval_with(0.50, 0.60),
            dominance: eval_with(0.50, 0.55),
        };
        let c = calibration(&BTreeMap::from([(ScoreKind::Entropy, dev), (ScoreKind::Uncertainty, better)]));
        assert_eq!(c.score, ScoreKind::Uncertainty);
        assert!((c.dev_gain_at_60.valence - 0.04).abs() < 1e-12);
        assert!(c.dev_gain_at_60_by_score[&ScoreKind::Entropy].dominance.is_nan());
        assert!((c.dev_gain_at_60_by_score[&ScoreKind::Entropy].arousal + 0.3).abs() < 1e-12);
        assert_eq!(c.harmful(ScoreKind::Entropy), vec![Attribute::Arousal, Attribute::Dominance]);
        assert!(c.harmful(ScoreKind::Uncertainty).is_empty());
    }

    #[test]
    fn the_entropy_is_kept_unless_the_other_score_is_better_for_its_worst_attribute() {
        let g = |v: f64, a: f64, d: f64| PerAttribute { valence: v, arousal: a, dominance: d };
        let pick =
            |e, u| choose_score(&BTreeMap::from([(ScoreKind::Entropy, e), (ScoreKind::Uncertainty, u)]));
        // Higher mean but a worse worst attribute: the entropy stays.
        assert_eq!(pick(g(0.10, 0.10, 0.10), g(0.5, 0.5, 0.05)), ScoreKind::Entropy);
        assert_eq!(pick(g(0.01, 0.15, 0.18), g(0.15, 0.18, 0.18)), ScoreKind::Uncertainty);
        assert_eq!(pick(g(0.1, 0.1, 0.1), g(0.1, 0.1, 0.1)), ScoreKind::Entropy, "a tie keeps the paper's");
        assert_eq!(pick(g(0.1, f64::NAN, 0.1), g(0.0, 0.0, 0.0)), ScoreKind::Uncertainty, "NaN is worst");
        assert_eq!(choose_score(&BTreeMap::new()), ScoreKind::Entropy);
    }
}
