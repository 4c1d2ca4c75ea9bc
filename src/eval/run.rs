//! The evaluation run: the evaluated model's analyses on the test split (Figs. 2–4), the
//! cross-corpus folds (Sec. V-D), and the trials that train every method for Tables I–III.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::MultiProgress;

use super::analysis::{self, TableCell, TABLE_COVERAGES};
use super::methods::{self, Method, MethodInputs, MethodOutput};
use super::report::{
    CorpusInfo, CrossCorpus, EvaluatedAttribute, Fold, MethodCost, ModelInfo, PairCurve, Report, Settings,
};
use super::{plot, EvalError};
use crate::attribute::{Attribute, PerAttribute};
use crate::config::PolicyConfig;
use crate::model::manifest::{Manifest, MODEL_FILE};
use crate::model::NoiseBank;
use crate::policy::RejectPolicy;
use crate::train::calibrate;
use crate::train::commands::{load_corpus, now_rfc3339, EpochOptions};
use crate::train::corpus::{Corpus, Split};
use crate::train::serving::{self, Normalizer};
use crate::train::trainer::{self, Prepared, SplitData, TrainConfig};
use crate::train::{onnx, TrainError};
use crate::uncertainty::ScoreKind;

/// Folds of the cross-corpus evaluation (two test speakers each on IEMOCAP's ten).
pub const CROSS_FOLDS: usize = 5;

/// `emogate evaluate` (the command line, with its defaults, is the binary's).
#[derive(Debug, Clone)]
pub struct EvaluateOptions {
    /// Model directory (model.onnx + manifest.json) to evaluate.
    pub model: PathBuf,
    /// Main corpus (its test split is scored; baselines train on its train/dev splits).
    pub corpus: PathBuf,
    /// Cross corpus (e.g. `emogate synth --variant iemocap`): Tables I/II. Optional.
    pub cross_corpus: Option<PathBuf>,
    /// Output directory for report.json, CSVs and PNGs.
    pub out: PathBuf,
    /// Trials (seeds) per method for the significance tests [default: 10, the paper's; 2
    /// with --quick].
    pub trials: Option<usize>,
    /// Seed of the first trial (trial k uses seed + k).
    pub seed: u64,
    /// Methods to train, comma-separated (vae_er is always included): vae_er, no_soft_labels,
    /// one_mc_sample, no_vae, ae_mcd, mcd, mcd_soft, mcd_mtl.
    pub methods: Vec<String>,
    /// Latent samples (VAE family) and dropout passes (MCD family) at inference.
    pub mc_samples: usize,
    /// Seconds-scale run for tests: the quick trainer schedule, 2 trials unless --trials.
    pub quick: bool,
    /// Epochs per phase of every method in each trial (default: the trainer's schedule);
    /// `--stl-epochs` also sets the MCD DNNs' and the cross-corpus STL regressors'.
    pub epochs: EpochOptions,
    /// Skip the PNG figures.
    pub no_plots: bool,
}

impl EvaluateOptions {
    fn train_config(&self, seed: u64) -> TrainConfig {
        self.epochs.schedule(self.quick, seed)
    }

    /// `--trials`, else 10 (the paper's), or 2 with `--quick`.
    fn trials(&self) -> usize {
        self.trials.unwrap_or(if self.quick { 2 } else { 10 })
    }

    fn methods(&self) -> Result<Vec<Method>, EvalError> {
        let mut set = BTreeSet::from([Method::VaeEr]);
        for name in self.methods.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            set.insert(Method::parse(name).ok_or_else(|| {
                EvalError::Config(format!(
                    "unknown method `{name}` (known: {})",
                    Method::ALL.map(Method::name).join(", ")
                ))
            })?);
        }
        Ok(set.into_iter().collect())
    }

    fn command_line(&self) -> String {
        let mut c = format!(
            "emogate evaluate --model {} --corpus {} --out {} --trials {} --seed {} --mc-samples {} --methods {}",
            self.model.display(),
            self.corpus.display(),
            self.out.display(),
            self.trials(),
            self.seed,
            self.mc_samples,
            self.methods.join(",")
        );
        if let Some(x) = &self.cross_corpus {
            c += &format!(" --cross-corpus {}", x.display());
        }
        for (flag, v) in self.epochs.flags() {
            if let Some(v) = v {
                c += &format!(" {flag} {v}");
            }
        }
        if self.quick {
            c += " --quick";
        }
        c
    }
}

/// Consensus labels of `rows` per attribute.
fn truths(corpus: &Corpus, rows: &[usize]) -> PerAttribute<Vec<f32>> {
    PerAttribute::from_fn(|a| corpus.labels(rows, a).consensus)
}

/// The cross corpus split into folds by speaker, with per-fold STL predictions.
struct CrossData {
    corpus: Corpus,
    info: CorpusInfo,
    /// Every utterance, in corpus order.
    rows: Vec<usize>,
    /// Fold of each position in `rows`.
    fold_of: Vec<usize>,
    /// STL predictions per position in `rows` (from the fold that tests it).
    stl: PerAttribute<Vec<f32>>,
    truth: PerAttribute<Vec<f32>>,
    folds: Vec<Fold>,
}

impl CrossData {
    /// `(pred, truth, uncertainty)` of each fold for `decided` ranked by `unc`.
    fn folds_for(&self, decided: Attribute, unc: &[f32]) -> Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        (0..self.folds.len())
            .map(|f| {
                let pos: Vec<usize> = (0..self.rows.len()).filter(|&i| self.fold_of[i] == f).collect();
                let pick = |v: &[f32]| pos.iter().map(|&i| v[i]).collect::<Vec<f32>>();
                (pick(&self.stl[decided]), pick(&self.truth[decided]), pick(unc))
            })
            .collect()
    }

    fn fold_mean(&self, decided: Attribute, unc: &[f32], coverages: &[f64]) -> Result<Vec<f64>, EvalError> {
        let folds = self.folds_for(decided, unc);
        let refs: Vec<(&[f32], &[f32], &[f32])> =
            folds.iter().map(|(p, t, u)| (p.as_slice(), t.as_slice(), u.as_slice())).collect();
        analysis::fold_mean_ccc(&refs, coverages)
    }
}

/// Trains the cross corpus' STL regressors per fold: fold k tests speakers 2k and 2k+1 (of the
/// sorted speaker list), the next speaker is its dev split, the rest train it.
fn cross_corpus_folds(path: &Path, cfg: &TrainConfig, mp: &MultiProgress) -> Result<CrossData, EvalError> {
    let (corpus, sha256) = load_corpus(path)?;
    let rows: Vec<usize> = (0..corpus.utterances.len()).collect();
    let speakers: Vec<String> =
        corpus.utterances.iter().map(|u| u.speaker.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    if speakers.len() < CROSS_FOLDS + 1 {
        return Err(EvalError::Config(format!(
            "the cross corpus has {} speakers; {CROSS_FOLDS} folds need at least {}",
            speakers.len(),
            CROSS_FOLDS + 1
        )));
    }
    let per_fold = speakers.len() / CROSS_FOLDS;
    let fold_of_speaker =
        |s: &str| speakers.iter().position(|x| x == s).map(|i| (i / per_fold).min(CROSS_FOLDS - 1));
    let fold_of: Vec<usize> = rows
        .iter()
        .map(|&r| fold_of_speaker(&corpus.utterances[r].speaker).expect("known speaker"))
        .collect();
    let truth = truths(&corpus, &rows);
    let mut stl = PerAttribute::from_fn(|_| vec![f32::NAN; rows.len()]);
    let mut folds = Vec::new();
    let d = corpus.dims;
    for f in 0..CROSS_FOLDS {
        let test_speakers: Vec<String> = speakers
            .iter()
            .enumerate()
            .filter(|(i, _)| (i / per_fold).min(CROSS_FOLDS - 1) == f)
            .map(|(_, s)| s.clone())
            .collect();
        let dev_speaker =
            speakers[(speakers.iter().position(|s| s == test_speakers.last().unwrap()).unwrap() + 1)
                % speakers.len()]
            .clone();
        let test: Vec<usize> = rows.iter().copied().filter(|&r| fold_of[r] == f).collect();
        let dev: Vec<usize> =
            rows.iter().copied().filter(|&r| corpus.utterances[r].speaker == dev_speaker).collect();
        let train: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|&r| fold_of[r] != f && corpus.utterances[r].speaker != dev_speaker)
            .collect();
        let norm = Normalizer::fit(&corpus.features, d, &train);
        let scale = |rs: &[usize]| trainer::scale_rows(&corpus, &norm, rs);
        let (train_x, dev_x, test_x) = (scale(&train), scale(&dev), scale(&test));
        let mut stl_ccc = PerAttribute::default();
        for a in Attribute::ALL {
            let (ty, dy) = (corpus.labels(&train, a), corpus.labels(&dev, a));
            let run = trainer::train_stl(
                SplitData { x: &train_x, y: &ty },
                SplitData { x: &dev_x, y: &dy },
                d,
                cfg,
                cfg.dropout[a],
                cfg.seed.wrapping_mul(977).wrapping_add((f * 3 + a.index()) as u64),
                trainer::bar(mp, cfg.stl_epochs, format!("cross fold {} {a} STL", f + 1)),
            )?;
            let pred = trainer::predict_rows(&test_x, d, 1024, |x| run.net.forward(x, None))?;
            stl_ccc[a] = crate::uncertainty::ccc(&pred, &corpus.labels(&test, a).consensus)?;
            test.iter().zip(pred).for_each(|(&r, p)| stl[a][r] = p);
        }
        folds.push(Fold { test_speakers, dev_speaker, records: test.len(), stl_ccc });
    }
    let info = CorpusInfo {
        id: corpus.meta.id.clone(),
        path: path.display().to_string(),
        sha256,
        records: rows.len(),
    };
    Ok(CrossData { corpus, info, rows, fold_of, stl, truth, folds })
}

/// Table cells of one method for one trial's outputs, appended to `cells` (trial values are
/// pushed in trial order).
fn push_cells(
    cells: &mut Vec<TableCell>,
    table: &str,
    method: Method,
    attribute: Attribute,
    source: Attribute,
    values: &[f64],
) {
    for (&coverage, &v) in TABLE_COVERAGES.iter().zip(values) {
        let found = cells.iter_mut().find(|c| {
            c.table == table
                && c.method == method.name()
                && c.attribute == attribute
                && c.uncertainty_source == source
                && (c.coverage - coverage).abs() < 1e-9
        });
        match found {
            Some(c) => c.trials.push(v),
            None => cells.push(TableCell {
                table: table.into(),
                attribute,
                uncertainty_source: source,
                method: method.name().into(),
                coverage,
                trials: vec![v],
                mean: f64::NAN,
                std: f64::NAN,
                p_proposed_better: None,
                best: false,
                significant: false,
            }),
        }
    }
}

/// Runs the whole evaluation and writes the report, CSVs and figures into `opts.out`.
pub fn run_evaluate(opts: &EvaluateOptions) -> Result<Report, EvalError> {
    let started = Instant::now();
    let trials = opts.trials();
    if trials == 0 || opts.mc_samples == 0 {
        return Err(EvalError::Config("--trials and --mc-samples must be positive".into()));
    }
    let methods = opts.methods()?;
    let manifest = Manifest::load(&opts.model).map_err(TrainError::from)?;
    let params = onnx::read(&opts.model.join(MODEL_FILE))?;
    let (corpus, corpus_sha) = load_corpus(&opts.corpus)?;
    let mp = MultiProgress::new();

    // The evaluated model on the test split: Figs. 2–4.
    eprintln!("scoring {} on the test split of {}", manifest.model_ref(), corpus.meta.id);
    let (test_rows, out) = calibrate::run_split(&params, &corpus, Split::Test)?;
    let truth = truths(&corpus, &test_rows);
    let value = PerAttribute::from_fn(|a| out[a].value.clone());
    let entropy = PerAttribute::from_fn(|a| out[a].entropy.clone());
    // The headline ranks by the score `serve` would use with this manifest (default policy),
    // the paper's entropy beside it (issue 15: both series in Figs. 2 and 3).
    let score = RejectPolicy::score_for(&PolicyConfig::default(), &manifest)
        .map_err(|e| EvalError::Config(e.to_string()))?;
    let served = match (&manifest.uncertainty_profile, score) {
        (Some(profiles), ScoreKind::Uncertainty) => calibrate::served_uncertainty(profiles, &out),
        _ => entropy.clone(),
    };
    let attributes = PerAttribute::try_from_fn(|a| {
        let by_entropy = analysis::analyse(&value[a], &truth[a], &entropy[a])?;
        let headline = analysis::analyse(&value[a], &truth[a], &served[a])?;
        Ok::<_, EvalError>(EvaluatedAttribute::new(headline, score, by_entropy))
    })?;
    let utl = analysis::utl_matrix(&value, &truth, &entropy)?;

    let base_cfg = opts.train_config(opts.seed);
    let cross = opts.cross_corpus.as_ref().map(|p| cross_corpus_folds(p, &base_cfg, &mp)).transpose()?;
    let cross_model = match &cross {
        Some(x) => {
            let o = serving::forward(&params, &x.corpus.gather(&x.rows), 128)?;
            let mut curves = Vec::new();
            for (decided, source) in pairs() {
                let ccc = x.fold_mean(decided, &o[source].entropy, &TABLE_COVERAGES)?;
                curves.push(PairCurve {
                    attribute: decided,
                    uncertainty_source: source,
                    coverages: TABLE_COVERAGES.to_vec(),
                    ccc,
                });
            }
            curves
        }
        None => Vec::new(),
    };

    // Trials: every method trained per seed on the main corpus.
    let data = Prepared::new(&corpus)?;
    let test_x = trainer::scale_rows(&corpus, &data.norm, &test_rows);
    let cross_x = cross.as_ref().map(|x| trainer::scale_rows(&x.corpus, &data.norm, &x.rows));
    let mut cells = Vec::new();
    let mut inference = Vec::new();
    let seeds: Vec<u64> = (0..trials as u64).map(|k| opts.seed + k).collect();
    for (k, &seed) in seeds.iter().enumerate() {
        let cfg = opts.train_config(seed);
        let bank = serving::noise_bank(NoiseBank::Gaussian, opts.mc_samples, seed.wrapping_add(2020))?;
        let inputs = MethodInputs {
            data: &data,
            test_x: &test_x,
            cross_x: cross_x.as_deref(),
            bank: &bank,
            mc_samples: opts.mc_samples,
            cfg: &cfg,
            mp: &mp,
        };
        for &m in &methods {
            eprintln!("trial {}/{trials} (seed {seed}): {}", k + 1, m.label());
            let o = methods::run_method(m, &inputs)?;
            for a in Attribute::ALL {
                let curve = analysis::curve_at(&value[a], &truth[a], &o.test[a], &TABLE_COVERAGES)?;
                push_cells(
                    &mut cells,
                    "within_corpus",
                    m,
                    a,
                    a,
                    &curve.iter().map(|p| p.ccc).collect::<Vec<_>>(),
                );
            }
            if let (Some(x), Some(c)) = (&cross, &o.cross) {
                for (decided, source) in pairs() {
                    let table = if decided == source { "cross_corpus" } else { "cross_corpus_utl" };
                    push_cells(
                        &mut cells,
                        table,
                        m,
                        decided,
                        source,
                        &x.fold_mean(decided, &c[source], &TABLE_COVERAGES)?,
                    );
                }
            }
            if k == 0 {
                inference.push(cost(m, &o, test_rows.len()));
            }
        }
    }
    analysis::mark_significance(&mut cells, Method::VaeEr.name());

    let report = Report {
        emogate_version: env!("CARGO_PKG_VERSION").into(),
        created: now_rfc3339(),
        corpus: CorpusInfo {
            id: corpus.meta.id.clone(),
            path: opts.corpus.display().to_string(),
            sha256: corpus_sha,
            records: test_rows.len(),
        },
        cross_corpus_corpus: cross.as_ref().map(|x| x.info.clone()),
        model: ModelInfo {
            id: manifest.id.clone(),
            version: manifest.version.clone(),
            sha256: manifest.sha256.clone(),
            mc_samples: manifest.mc_samples,
            training_corpus: manifest.training.corpus_id.clone(),
        },
        settings: Settings {
            command: opts.command_line(),
            quick: opts.quick,
            trials,
            seeds,
            mc_samples: opts.mc_samples,
            methods: methods.iter().map(|m| m.name().to_string()).collect(),
            train_config: serde_json::to_value(&base_cfg).expect("config serialises"),
        },
        attributes,
        utl,
        tables: cells,
        cross_corpus: cross.map(|x| CrossCorpus {
            stl_ccc_full: PerAttribute::from_fn(|a| {
                x.folds.iter().map(|f| f.stl_ccc[a]).sum::<f64>() / x.folds.len() as f64
            }),
            folds: x.folds,
            model: cross_model,
        }),
        inference,
        wall_seconds: started.elapsed().as_secs_f64(),
    };
    report.write(&opts.out)?;
    if !opts.no_plots {
        plot::draw_all(&report, &opts.out)?;
    }
    Ok(report)
}

/// The (decided, source) pairs of Tables I/II: each attribute by its own uncertainty, and
/// valence by arousal's and by dominance's (the paper reports UTL cross-corpus for valence only).
fn pairs() -> Vec<(Attribute, Attribute)> {
    let mut p: Vec<_> = Attribute::ALL.into_iter().map(|a| (a, a)).collect();
    p.push((Attribute::Valence, Attribute::Arousal));
    p.push((Attribute::Valence, Attribute::Dominance));
    p
}

fn cost(m: Method, o: &MethodOutput, records: usize) -> MethodCost {
    MethodCost {
        method: m.name().into(),
        label: m.label().into(),
        uncertainty: serde_json::to_value(m.score())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        parameters: o.parameters,
        parameters_at_inference: o.parameters_at_inference,
        test_seconds: o.test_seconds,
        records_per_sec: records as f64 / o.test_seconds.max(1e-9),
        test_seconds_full_passes: o.test_seconds_full_passes,
        training_samples_per_sec: o.training.samples_per_sec,
    }
}
