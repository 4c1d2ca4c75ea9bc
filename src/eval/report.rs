//! The evaluation report: `report.json` holds every number; one CSV per figure and table
//! holds the same numbers in the shape analysts load into pandas/DuckDB.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::analysis::{AttributeAnalysis, CurvePoint, TableCell, UtlCurve};
use super::methods::MethodSchedule;
use super::EvalError;
use crate::attribute::{Attribute, PerAttribute};
use crate::uncertainty::ScoreKind;

/// Identity of a corpus in the report.
#[derive(Debug, Clone, Serialize)]
pub struct CorpusInfo {
    pub id: String,
    pub path: String,
    /// sha256 over the corpus files (as the manifest records it).
    pub sha256: String,
    /// Records scored (the test split; every utterance for the cross corpus).
    pub records: usize,
}

/// Identity of the evaluated model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub id: String,
    pub version: String,
    pub sha256: String,
    pub mc_samples: usize,
    pub training_corpus: String,
}

/// Settings of the run (enough to repeat it).
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub command: String,
    pub quick: bool,
    /// Complete trials in the report (every method finished for the seed).
    pub trials: usize,
    /// Trials asked for (`--trials`); more than `trials` while a resumable run is unfinished.
    pub trials_requested: usize,
    /// Seeds of the complete trials.
    pub seeds: Vec<u64>,
    /// The trial directory of `--resume`, if any.
    pub resume_dir: Option<String>,
    /// Latent samples (VAE family) / dropout passes (MCD family) at inference.
    pub mc_samples: usize,
    pub methods: Vec<String>,
    /// The trainer configuration of trial 0 (later trials differ only in the seed).
    pub train_config: serde_json::Value,
    /// Each method's training schedule in every trial.
    pub schedules: Vec<MethodSchedule>,
}

/// Inference cost of one method on the test split (trial 0; same batch, same machine).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct MethodCost {
    pub method: String,
    pub label: String,
    pub uncertainty: String,
    pub parameters: usize,
    pub parameters_at_inference: usize,
    /// Seconds to score the whole test split for the three attributes.
    pub test_seconds: f64,
    pub records_per_sec: f64,
    /// MCD family: every dropout pass through the whole network (Keras-style MC dropout).
    pub test_seconds_full_passes: Option<f64>,
    /// Training samples per second of the method's main supervised phase (trial 0).
    pub training_samples_per_sec: f64,
}

/// One cross-corpus fold (two test speakers).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Fold {
    pub test_speakers: Vec<String>,
    pub dev_speaker: String,
    pub records: usize,
    /// CCC of the fold's STL regressors on its test speakers.
    pub stl_ccc: PerAttribute<f64>,
}

/// Sec. V-D: the model trained on the main corpus scores the cross corpus, whose own STL
/// regressors are trained per fold.
#[derive(Debug, Clone, Serialize)]
pub struct CrossCorpus {
    pub folds: Vec<Fold>,
    /// STL CCC at full coverage, averaged over folds.
    pub stl_ccc_full: PerAttribute<f64>,
    /// The evaluated (committed) model's uncertainty on the cross corpus: CCC at the table
    /// coverages averaged over folds, per (decided, source) pair.
    pub model: Vec<PairCurve>,
}

/// Fold-mean CCC at the table coverages for one (decided, source) pair.
#[derive(Debug, Clone, Serialize)]
pub struct PairCurve {
    pub attribute: Attribute,
    pub uncertainty_source: Attribute,
    pub coverages: Vec<f64>,
    pub ccc: Vec<f64>,
}

/// Figs. 2 and 3 for one attribute of the evaluated model: the headline ranked by the score
/// the model serves (`score`), and the paper's entropy ranking beside it.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluatedAttribute {
    #[serde(flatten)]
    pub headline: AttributeAnalysis,
    /// The ranking of the headline `coverage_curve` and `quintile_ccc`: what `serve` ranks by
    /// with this manifest and the default policy.
    pub score: ScoreKind,
    /// The same analysis ranked by the VAE-ER entropy (equal to the headline when
    /// `score = entropy`).
    pub entropy_curve: Vec<CurvePoint>,
    pub entropy_quintile_ccc: [f64; 5],
    pub entropy_relative_gain_at_60: f64,
}

impl EvaluatedAttribute {
    /// Pairs the headline analysis (ranked by `score`) with the entropy's.
    pub fn new(headline: AttributeAnalysis, score: ScoreKind, entropy: AttributeAnalysis) -> Self {
        EvaluatedAttribute {
            headline,
            score,
            entropy_curve: entropy.coverage_curve,
            entropy_quintile_ccc: entropy.quintile_ccc,
            entropy_relative_gain_at_60: entropy.relative_gain_at_60,
        }
    }
}

/// Everything `emogate evaluate` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub emogate_version: String,
    pub created: String,
    pub corpus: CorpusInfo,
    pub cross_corpus_corpus: Option<CorpusInfo>,
    pub model: ModelInfo,
    pub settings: Settings,
    /// The evaluated model on the test split: Fig. 2 and Fig. 3 per attribute (predictions:
    /// the STL `value` output; ranked by the attribute's own served score, and by its entropy).
    pub attributes: PerAttribute<EvaluatedAttribute>,
    /// Fig. 4: every (decided, source) pair on the test split.
    pub utl: Vec<UtlCurve>,
    /// Tables I–III over the trials: `within_corpus` (test split, baselines and ablations),
    /// `cross_corpus` (Table I) and `cross_corpus_utl` (Table II, valence by arousal/dominance).
    pub tables: Vec<TableCell>,
    pub cross_corpus: Option<CrossCorpus>,
    pub inference: Vec<MethodCost>,
    pub wall_seconds: f64,
}

fn fmt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
    } else {
        String::new()
    }
}

fn write_csv(
    dir: &Path,
    name: &str,
    header: &str,
    rows: impl IntoIterator<Item = String>,
) -> Result<(), EvalError> {
    let mut text = format!("{header}\n");
    for r in rows {
        let _ = writeln!(text, "{r}");
    }
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(EvalError::io(&path))
}

impl Report {
    /// The headline numbers as text: per attribute CCC at 100 % and 60 % and the quintiles;
    /// per table the mean CCC at 60 % per method (`†` = significantly best, p ≤ 0.05).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "model {}@{} on {} ({} test records)",
            self.model.id, self.model.version, self.corpus.id, self.corpus.records
        );
        for (a, ev) in self.attributes.iter() {
            let an = &ev.headline;
            let _ = writeln!(
                s,
                "  {a:<10} CCC 100% {:.3}  60% {:.3} ({:+.1}%)  quintiles {}  (by {}; by entropy {:+.1}%, quintiles {})",
                an.ccc_full,
                super::analysis::ccc_at(&an.coverage_curve, 0.6),
                an.relative_gain_at_60 * 100.0,
                an.quintile_ccc.map(|q| format!("{q:.3}")).join(" / "),
                ev.score,
                ev.entropy_relative_gain_at_60 * 100.0,
                ev.entropy_quintile_ccc.map(|q| format!("{q:.3}")).join(" / ")
            );
        }
        let mut tables: Vec<&str> = self.tables.iter().map(|c| c.table.as_str()).collect();
        tables.dedup();
        for table in tables {
            let _ = writeln!(s, "{table}: mean CCC at 60% coverage over {} trial(s)", self.settings.trials);
            for c in self.tables.iter().filter(|c| c.table == table && (c.coverage - 0.6).abs() < 1e-9) {
                let _ = writeln!(
                    s,
                    "  {:<10} by {:<10} {:<15} {:.3} ± {:.3}{}",
                    c.attribute.as_str(),
                    c.uncertainty_source.as_str(),
                    c.method,
                    c.mean,
                    c.std,
                    if c.significant { " †" } else { "" }
                );
            }
        }
        let _ = writeln!(s, "VAE-ER vs each method at 60% coverage (one-tailed Welch t-test, p <= 0.05):");
        for line in super::analysis::verdicts(&self.tables, 0.6, "vae_er") {
            let _ = writeln!(s, "  {line}");
        }
        s
    }

    /// Writes `report.json` and the CSV files into `dir`; returns the file names written.
    pub fn write(&self, dir: &Path) -> Result<Vec<String>, EvalError> {
        std::fs::create_dir_all(dir).map_err(EvalError::io(dir))?;
        let path = dir.join("report.json");
        let json = serde_json::to_string_pretty(self).expect("the report serialises");
        std::fs::write(&path, json + "\n").map_err(EvalError::io(&path))?;
        let mut files = vec!["report.json".to_string()];

        let fig3 = self.attributes.iter().flat_map(|(a, ev)| {
            ev.headline
                .coverage_curve
                .iter()
                .map(move |p| format!("{a},{},{},{}", p.coverage, p.n, fmt(p.ccc)))
        });
        write_csv(dir, "fig3_coverage.csv", "attribute,coverage,n,ccc", fig3)?;
        let fig3_entropy = self.attributes.iter().flat_map(|(a, ev)| {
            ev.entropy_curve.iter().map(move |p| format!("{a},{},{},{}", p.coverage, p.n, fmt(p.ccc)))
        });
        write_csv(dir, "fig3_coverage_by_entropy.csv", "attribute,coverage,n,ccc", fig3_entropy)?;
        let fig2 = self.attributes.iter().flat_map(|(a, ev)| {
            let an = &ev.headline;
            (0..5).map(move |q| format!("{a},{},{},{}", q + 1, an.quintile_sizes[q], fmt(an.quintile_ccc[q])))
        });
        write_csv(dir, "fig2_quintiles.csv", "attribute,quintile,n,ccc", fig2)?;
        let fig2_entropy = self.attributes.iter().flat_map(|(a, ev)| {
            let n = ev.headline.quintile_sizes;
            (0..5).map(move |q| format!("{a},{},{},{}", q + 1, n[q], fmt(ev.entropy_quintile_ccc[q])))
        });
        write_csv(dir, "fig2_quintiles_by_entropy.csv", "attribute,quintile,n,ccc", fig2_entropy)?;
        let fig4 = self.utl.iter().flat_map(|c| {
            c.coverage_curve
                .iter()
                .map(move |p| format!("{},{},{},{}", c.decided, c.source, p.coverage, fmt(p.ccc)))
        });
        write_csv(dir, "fig4_utl.csv", "attribute,uncertainty_source,coverage,ccc", fig4)?;
        files.extend(
            [
                "fig3_coverage.csv",
                "fig3_coverage_by_entropy.csv",
                "fig2_quintiles.csv",
                "fig2_quintiles_by_entropy.csv",
                "fig4_utl.csv",
            ]
            .map(String::from),
        );

        for (table, file) in [
            ("within_corpus", "table_within_corpus.csv"),
            ("cross_corpus", "table1_cross_corpus.csv"),
            ("cross_corpus_utl", "table2_cross_corpus_utl.csv"),
        ] {
            let rows: Vec<String> = self
                .tables
                .iter()
                .filter(|c| c.table == table)
                .map(|c| {
                    format!(
                        "{},{},{},{},{},{},{},{},{},{}",
                        c.attribute,
                        c.uncertainty_source,
                        c.method,
                        c.coverage,
                        c.trials.len(),
                        fmt(c.mean),
                        fmt(c.std),
                        c.p_proposed_better.map(fmt).unwrap_or_default(),
                        c.best,
                        c.significant
                    )
                })
                .collect();
            if !rows.is_empty() {
                write_csv(
                    dir,
                    file,
                    "attribute,uncertainty_source,method,coverage,trials,ccc_mean,ccc_std,p_proposed_better,best,significant",
                    rows,
                )?;
                files.push(file.into());
            }
        }
        let costs = self.inference.iter().map(|m| {
            format!(
                "{},{},{},{},{},{},{}",
                m.method,
                m.uncertainty,
                m.parameters,
                m.parameters_at_inference,
                fmt(m.test_seconds),
                fmt(m.records_per_sec),
                m.test_seconds_full_passes.map(fmt).unwrap_or_default()
            )
        });
        write_csv(
            dir,
            "inference_time.csv",
            "method,uncertainty,parameters,parameters_at_inference,test_seconds,records_per_sec,test_seconds_full_passes",
            costs,
        )?;
        files.push("inference_time.csv".into());
        Ok(files)
    }
}
