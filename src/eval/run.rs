//! The evaluation run: the evaluated model's analyses on the test split (Figs. 2–4), the
//! cross-corpus folds (Sec. V-D), and the trials that train every method for Tables I–III.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::analysis::{self, TableCell, TABLE_COVERAGES};
use super::methods::{self, Method, MethodInputs, MethodOutput};
use super::report::{
    CorpusInfo, CrossCorpus, EvaluatedAttribute, Fold, MethodCost, ModelInfo, PairCurve, Report, Settings,
};
use super::trials::{self, Fingerprint, TrialCells, TrialRecord, TrialStore};
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
    /// Trial directory: every finished (trial, method) is stored there as it completes, and a
    /// rerun with the same directory skips what is stored and reports on all of it.
    pub resume: Option<PathBuf>,
    /// Start no new (trial, method) run after this many minutes; the report covers the trials
    /// complete by then and a rerun with `--resume` continues.
    pub max_minutes: Option<f64>,
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
        if let Some(dir) = &self.resume {
            c += &format!(" --resume {}", dir.display());
        }
        if let Some(m) = self.max_minutes {
            c += &format!(" --max-minutes {m}");
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

/// What [`cross_corpus_folds`] trains, cached in a `--resume` directory (it depends only on
/// the cross corpus, the schedule and the first seed, all in the store's fingerprint or name).
#[derive(serde::Serialize, serde::Deserialize)]
struct CrossFolds {
    stl: PerAttribute<Vec<f32>>,
    folds: Vec<Fold>,
}

/// The cross corpus split into folds by speaker: fold k tests speakers 2k and 2k+1 (of the
/// sorted speaker list), the next speaker is its dev split, the rest train it. Its STL
/// regressors are trained per fold, or read from `store` when an earlier run trained them.
fn cross_corpus_folds(
    path: &Path,
    (corpus, sha256): (Corpus, String),
    cfg: &TrainConfig,
    mp: &MultiProgress,
    store: Option<&TrialStore>,
) -> Result<CrossData, EvalError> {
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
    let info = CorpusInfo {
        id: corpus.meta.id.clone(),
        path: path.display().to_string(),
        sha256,
        records: rows.len(),
    };
    let cache = format!("cross_folds-seed{}.json", cfg.seed);
    let trained = match store.map(|s| s.read::<CrossFolds>(&cache)).transpose()?.flatten() {
        Some(cached) => {
            eprintln!(
                "cross-corpus fold regressors: read from {}",
                store.expect("read from it").dir().display()
            );
            cached
        }
        None => {
            let trained = train_cross_stl(&corpus, &speakers, per_fold, &fold_of, cfg, mp)?;
            if let Some(s) = store {
                s.write(&cache, &trained)?;
            }
            trained
        }
    };
    Ok(CrossData { corpus, info, rows, fold_of, stl: trained.stl, truth, folds: trained.folds })
}

/// Trains the STL regressors of every cross-corpus fold and predicts its test speakers.
fn train_cross_stl(
    corpus: &Corpus,
    speakers: &[String],
    per_fold: usize,
    fold_of: &[usize],
    cfg: &TrainConfig,
    mp: &MultiProgress,
) -> Result<CrossFolds, EvalError> {
    let rows: Vec<usize> = (0..corpus.utterances.len()).collect();
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
        let scale = |rs: &[usize]| trainer::scale_rows(corpus, &norm, rs);
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
    Ok(CrossFolds { stl, folds })
}

/// One trial's table rows for a method's scores: within corpus (the test split's STL
/// predictions ranked by the method's test uncertainty) and, with a cross corpus, Tables I/II.
fn trial_cells(
    o: &MethodOutput,
    value: &PerAttribute<Vec<f32>>,
    truth: &PerAttribute<Vec<f32>>,
    cross: Option<&CrossData>,
) -> Result<Vec<TrialCells>, EvalError> {
    let mut rows = Vec::new();
    for a in Attribute::ALL {
        let curve = analysis::curve_at(&value[a], &truth[a], &o.test[a], &TABLE_COVERAGES)?;
        rows.push(TrialCells {
            table: "within_corpus".into(),
            attribute: a,
            uncertainty_source: a,
            ccc: curve.iter().map(|p| p.ccc).collect(),
        });
    }
    if let (Some(x), Some(c)) = (cross, &o.cross) {
        for (decided, source) in pairs() {
            rows.push(TrialCells {
                table: if decided == source { "cross_corpus" } else { "cross_corpus_utl" }.into(),
                attribute: decided,
                uncertainty_source: source,
                ccc: x.fold_mean(decided, &c[source], &TABLE_COVERAGES)?,
            });
        }
    }
    Ok(rows)
}

/// Appends one trial's rows of `method` to the table cells (trial values are pushed in the
/// order the trials are given).
fn push_cells(cells: &mut Vec<TableCell>, method: &str, rows: &[TrialCells]) {
    for row in rows {
        for (&coverage, &v) in TABLE_COVERAGES.iter().zip(&row.ccc) {
            let found = cells.iter_mut().find(|c| {
                c.table == row.table
                    && c.method == method
                    && c.attribute == row.attribute
                    && c.uncertainty_source == row.uncertainty_source
                    && (c.coverage - coverage).abs() < 1e-9
            });
            match found {
                Some(c) => c.trials.push(v),
                None => cells.push(TableCell {
                    table: row.table.clone(),
                    attribute: row.attribute,
                    uncertainty_source: row.uncertainty_source,
                    method: method.into(),
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
}

/// What one `emogate evaluate` run did: the report over every complete trial (none yet when a
/// budget stopped the run before the first trial was whole) and where the trials stand.
pub struct Evaluation {
    pub report: Option<Report>,
    /// Trials with every method finished (stored earlier or in this run).
    pub complete_trials: usize,
    pub requested_trials: usize,
    /// (trial, method) runs trained in this run, and read from the `--resume` directory.
    pub trained_runs: usize,
    pub resumed_runs: usize,
    /// `--max-minutes` stopped the run before every requested trial was complete.
    pub stopped_by_budget: bool,
}

/// Runs the whole evaluation and writes the report, CSVs and figures into `opts.out`.
pub fn run_evaluate(opts: &EvaluateOptions) -> Result<Evaluation, EvalError> {
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
    // The cross corpus is read once: its sha256 goes into the trial store's fingerprint, the
    // corpus itself into the folds.
    let cross_corpus = opts.cross_corpus.as_ref().map(|p| load_corpus(p).map(|c| (p, c))).transpose()?;
    let store = match &opts.resume {
        Some(dir) => {
            let fingerprint = Fingerprint {
                format: trials::STORE_FORMAT,
                model_sha256: manifest.sha256.clone(),
                corpus_sha256: corpus_sha.clone(),
                cross_corpus_sha256: cross_corpus.as_ref().map(|(_, (_, sha))| sha.clone()),
                mc_samples: opts.mc_samples,
                schedule: serde_json::to_value(opts.train_config(0)).expect("config serialises"),
            };
            Some(TrialStore::open(dir, &fingerprint)?)
        }
        None => None,
    };
    let cross = cross_corpus
        .map(|(p, loaded)| cross_corpus_folds(p, loaded, &base_cfg, &mp, store.as_ref()))
        .transpose()?;
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

    // Trials: every method trained per seed on the main corpus, each finished run stored
    // (with --resume) before the next starts.
    let data = Prepared::new(&corpus)?;
    let test_x = trainer::scale_rows(&corpus, &data.norm, &test_rows);
    let cross_x = cross.as_ref().map(|x| trainer::scale_rows(&x.corpus, &data.norm, &x.rows));
    let seeds: Vec<u64> = (0..trials as u64).map(|k| opts.seed + k).collect();
    let deadline = opts.max_minutes.map(|m| started + Duration::from_secs_f64(m.max(0.0) * 60.0));
    let overall = trial_bar(&mp, trials * methods.len());
    let (mut records, mut trained_runs, mut resumed_runs, mut stopped_by_budget) = (Vec::new(), 0, 0, false);
    // Within a trial the fast MCD family runs first, so the first stored runs already give the
    // ETA one time per family (the report keeps the methods' own order).
    let mut run_order = methods.clone();
    run_order.sort_by_key(|m| !m.is_mcd_family());
    // Everything stored, read up front: the progress count and the ETA include it from the
    // first line on, whatever order the runs are reached in.
    let mut stored = Vec::new();
    if let Some(s) = &store {
        for &seed in &seeds {
            for m in &run_order {
                stored.extend(s.load(seed, m.name())?);
            }
        }
    }
    let is_stored =
        |seed: u64, m: &Method| stored.iter().any(|r: &TrialRecord| r.seed == seed && r.method == m.name());
    'trials: for (k, &seed) in seeds.iter().enumerate() {
        let cfg = opts.train_config(seed);
        let bank = serving::noise_bank(NoiseBank::Gaussian, opts.mc_samples, seed.wrapping_add(2020))?;
        for (i, &m) in run_order.iter().enumerate() {
            if let Some(r) = stored.iter().find(|r| r.seed == seed && r.method == m.name()) {
                records.push(r.clone());
                resumed_runs += 1;
                overall.inc(1);
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                stopped_by_budget = true;
                break 'trials;
            }
            let remaining: Vec<&str> = seeds[k..]
                .iter()
                .enumerate()
                .flat_map(|(j, &s)| {
                    run_order[if j == 0 { i } else { 0 }..]
                        .iter()
                        .filter(move |m| !is_stored(s, m))
                        .map(|m| m.name())
                })
                .collect();
            // Stored runs, and the runs trained since this process started.
            let timed: Vec<TrialRecord> =
                stored.iter().chain(records.iter().filter(|r| !stored.contains(r))).cloned().collect();
            let what = format!("trial {}/{trials} (seed {seed}): {}", k + 1, m.label());
            let same_family = |a: &str, b: &str| {
                let mcd = |name: &str| Method::parse(name).is_some_and(Method::is_mcd_family);
                mcd(a) == mcd(b)
            };
            let eta = trials::eta_seconds(&timed, &remaining, same_family)
                .map_or(String::new(), |s| format!(", about {} left", crate::human::duration(s)));
            overall.set_message(what.clone());
            eprintln!("{what} [{}/{} runs done{eta}]", timed.len(), trials * methods.len());
            let inputs = MethodInputs {
                data: &data,
                test_x: &test_x,
                cross_x: cross_x.as_deref(),
                bank: &bank,
                mc_samples: opts.mc_samples,
                cfg: &cfg,
                mp: &mp,
            };
            let t0 = Instant::now();
            let o = methods::run_method(m, &inputs)?;
            let record = TrialRecord {
                seed,
                method: m.name().into(),
                cells: trial_cells(&o, &value, &truth, cross.as_ref())?,
                cost: cost(m, &o, test_rows.len()),
                seconds: t0.elapsed().as_secs_f64(),
            };
            if let Some(s) = &store {
                s.save(&record)?;
            }
            records.push(record);
            trained_runs += 1;
            overall.inc(1);
        }
    }
    overall.finish_and_clear();

    // The report covers the complete trials only, in seed order.
    let complete: Vec<u64> = seeds
        .iter()
        .copied()
        .filter(|&seed| {
            methods.iter().all(|m| records.iter().any(|r| r.seed == seed && r.method == m.name()))
        })
        .collect();
    let mut evaluation = Evaluation {
        report: None,
        complete_trials: complete.len(),
        requested_trials: trials,
        trained_runs,
        resumed_runs,
        stopped_by_budget,
    };
    if complete.is_empty() {
        return Ok(evaluation);
    }
    let of = |seed: u64, m: Method| {
        records
            .iter()
            .find(|r| r.seed == seed && r.method == m.name())
            .expect("complete trials have every method")
    };
    let mut cells = Vec::new();
    for &seed in &complete {
        for &m in &methods {
            push_cells(&mut cells, m.name(), &of(seed, m).cells);
        }
    }
    analysis::mark_significance(&mut cells, Method::VaeEr.name());
    let inference = methods.iter().map(|&m| of(complete[0], m).cost.clone()).collect();

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
            trials: complete.len(),
            trials_requested: trials,
            seeds: complete,
            resume_dir: opts.resume.as_ref().map(|d| d.display().to_string()),
            mc_samples: opts.mc_samples,
            methods: methods.iter().map(|m| m.name().to_string()).collect(),
            train_config: serde_json::to_value(&base_cfg).expect("config serialises"),
            schedules: methods.iter().map(|&m| methods::schedule(m, &base_cfg)).collect(),
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
    evaluation.report = Some(report);
    Ok(evaluation)
}

/// The overall bar: (trial, method) runs done of all, with indicatif's ETA beside it.
fn trial_bar(mp: &MultiProgress, runs: usize) -> ProgressBar {
    let pb = mp.add(ProgressBar::new(runs as u64));
    pb.set_style(
        ProgressStyle::with_template("{prefix:>22} [{bar:25}] {pos:>3}/{len} {msg} (ETA {eta})")
            .expect("valid progress template")
            .progress_chars("=> "),
    );
    pb.set_prefix("evaluation runs");
    pb
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
