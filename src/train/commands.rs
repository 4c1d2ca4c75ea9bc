//! `emogate synth`, `emogate train` and `emogate calibrate` (DESIGN §3): their options as
//! plain structs and the glue between files, the trainer, the exporter and the manifest. The
//! command line (clap, flag help) is the binary's, `src/bin/emogate/cmd/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::MultiProgress;

use super::arch::LATENT;
use super::calibrate::{self, AttributeEval};
use super::corpus::msp::{self, FeatureFormat};
use super::corpus::synth::{self, Sizes, SynthConfig, Variant};
use super::corpus::{Corpus, Split};
use super::serving::{self, AttributeParams, Normalizer, ServingParams};
use super::trainer::{self, AttributeReport, Plateau, Prepared, TrainConfig};
use super::{metrics, onnx, TrainError};
use crate::attribute::{Attribute, PerAttribute};
use crate::model::manifest::{Manifest, MODEL_FILE};
use crate::model::{McInfo, NoiseBank, TrainingInfo};
use crate::uncertainty::ScoreKind;

/// `emogate synth`
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Output directory (created).
    pub out: PathBuf,
    /// Seed; the corpus is a pure function of seed, variant and sizes.
    pub seed: u64,
    /// `tiny`, `default`, `paper` (MSP-Podcast 1.6 / IEMOCAP sizes) or
    /// `train=N,dev=N,test=N,unlabeled=N`.
    pub sizes: String,
    /// `msp` (7-point votes, ≥ 5 raters, unlabeled pool), `iemocap` (cross-corpus role:
    /// 5-point votes, ≥ 2 raters, shifted features) or `scenes` (the second generative family).
    pub variant: Variant,
    /// Write features as openSMILE-style CSV instead of `.npy`.
    pub csv: bool,
}

/// Dev CCC floor of a VAE-ER head. The failure it catches (issue 15): heads stuck at dev CCC
/// 0.05 → 0.00 whose entropy then ranked records backwards; the committed model's heads reach
/// 0.37–0.58, those trained on the second synthetic family 0.57–0.77.
pub const DEFAULT_MIN_HEAD_CCC: f64 = 0.1;

/// `emogate train`
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Corpus directory (MSP-Podcast-style layout, see docs/model-card.md).
    pub corpus: PathBuf,
    /// Model directory to write (model.onnx, manifest.json, parts/).
    pub out: PathBuf,
    /// Train only this attribute (its checkpoint goes to OUT/parts/); the serving graph is
    /// exported once all three attributes have checkpoints there.
    pub attribute: Option<Attribute>,
    /// One or two epochs per phase: exercises the whole path in seconds.
    pub quick: bool,
    /// Train nothing: fuse the checkpoints already in OUT/parts/ into the serving graph
    /// (e.g. again with another --mc-samples or --noise-bank), evaluate and calibrate.
    pub export_only: bool,
    /// Take trained weights (and normalisation) from this model directory's model.onnx instead
    /// of OUT/parts/. With --export-only: re-export it, e.g. with another noise bank. With
    /// --attribute A: retrain only A and take the other two attributes from it. Its manifest
    /// must name the same corpus.
    pub weights_from: Option<PathBuf>,
    pub seed: u64,
    /// Monte-Carlo samples S in the exported noise bank.
    pub mc_samples: usize,
    pub noise_bank: NoiseBank,
    /// Seed of the noise bank (recorded in the manifest).
    pub noise_seed: u64,
    /// Gaussian samples of the reference bank the export measures its entropy error against
    /// on the test split (0: not measured).
    pub mc_reference_samples: usize,
    /// Seed of the reference bank (must differ from `noise_seed`).
    pub mc_reference_seed: u64,
    /// Smallest dev CCC a VAE-ER consensus head must reach (None: [`DEFAULT_MIN_HEAD_CCC`], or
    /// 0 with `quick`, whose one or two epochs only exercise the path).
    pub min_head_ccc: Option<f64>,
    /// Joint epochs a head below that floor may train past its schedule, one at a time, until
    /// its selected epoch clears it (None: [`DEFAULT_PLATEAU_EPOCHS`]; 0: refuse at once).
    pub plateau_epochs: Option<usize>,
    pub epochs: EpochOptions,
    pub batch: Option<usize>,
    /// Eq. (3) weight of NLL_VAE.
    pub alpha: Option<f64>,
    /// Eq. (3) weight of (1 − CCC) on consensus labels.
    pub beta: Option<f64>,
    /// Eq. (3) weight of KLD on soft labels.
    pub gamma: Option<f64>,
    /// Latent MC samples per utterance in a training step.
    pub mc_train: Option<usize>,
    /// Dropout rate of the ER/STL hidden layers for valence.
    pub dropout_valence: Option<f32>,
    /// Dropout rate of the ER/STL hidden layers for arousal and dominance.
    pub dropout_arousal_dominance: Option<f32>,
    /// Also apply dropout to the VAE encoder's hidden layers.
    pub encoder_dropout: bool,
    /// Model id written to the manifest.
    pub id: String,
    pub version: String,
}

/// Epoch counts that override a schedule (`emogate train` and `emogate evaluate` share them).
#[derive(Debug, Clone, Default)]
pub struct EpochOptions {
    /// Epochs of phase 1 (VAE pre-training on the unlabeled pool).
    pub pretrain_epochs: Option<usize>,
    /// Epochs of phase 2 (joint VAE-ER).
    pub joint_epochs: Option<usize>,
    /// Epochs of the STL regressors (and of evaluate's MCD DNNs).
    pub stl_epochs: Option<usize>,
}

impl EpochOptions {
    /// The quick or standard schedule for `seed` with these epoch counts applied.
    pub fn schedule(&self, quick: bool, seed: u64) -> TrainConfig {
        let mut c = if quick { TrainConfig::quick(seed) } else { TrainConfig::standard(seed) };
        c.pretrain_epochs = self.pretrain_epochs.unwrap_or(c.pretrain_epochs);
        c.joint_epochs = self.joint_epochs.unwrap_or(c.joint_epochs);
        c.stl_epochs = self.stl_epochs.unwrap_or(c.stl_epochs);
        c
    }

    /// The flags as given, for recorded command lines.
    pub fn flags(&self) -> [(&'static str, Option<String>); 3] {
        [
            ("--pretrain-epochs", self.pretrain_epochs.map(|v| v.to_string())),
            ("--joint-epochs", self.joint_epochs.map(|v| v.to_string())),
            ("--stl-epochs", self.stl_epochs.map(|v| v.to_string())),
        ]
    }
}

/// `emogate calibrate`
#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    /// Model directory (model.onnx + manifest.json).
    pub model: PathBuf,
    /// Corpus whose dev split calibrates the thresholds.
    pub corpus: PathBuf,
    /// Target coverage in (0, 1]; default: the grid 0.2, 0.3, …, 1.0.
    pub coverage: Option<f64>,
    /// Calibrate even if rejecting lowers dev CCC at 60 % coverage for an attribute.
    pub allow_harmful_reject: bool,
}

/// `emogate synth`
pub fn run_synth(args: &SynthOptions) -> Result<(), TrainError> {
    let t0 = Instant::now();
    let sizes = Sizes::parse(&args.sizes, args.variant)?;
    let (corpus, truth) = synth::generate(&SynthConfig { seed: args.seed, variant: args.variant, sizes })?;
    let format = if args.csv { FeatureFormat::Csv } else { FeatureFormat::Npy };
    msp::write(&args.out, &corpus, Some(&truth), format)?;
    println!(
        "wrote {} ({} train / {} dev / {} test / {} unlabeled utterances, {} votes, {} features) to {} in {:.1}s",
        corpus.meta.id,
        sizes.train,
        sizes.dev,
        sizes.test,
        sizes.unlabeled,
        corpus.votes.iter().map(Vec::len).sum::<usize>(),
        corpus.dims,
        args.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn load_corpus(dir: &Path) -> Result<(Corpus, String), TrainError> {
    let corpus = msp::load(dir)?;
    let hash = msp::content_hash(dir)?;
    Ok((corpus, hash))
}

fn config_from(args: &TrainOptions) -> TrainConfig {
    let mut c = args.epochs.schedule(args.quick, args.seed);
    c.batch = args.batch.unwrap_or(c.batch).max(2);
    c.alpha = args.alpha.unwrap_or(c.alpha);
    c.beta = args.beta.unwrap_or(c.beta);
    c.gamma = args.gamma.unwrap_or(c.gamma);
    c.mc_train = args.mc_train.unwrap_or(c.mc_train).max(1);
    c.dropout.valence = args.dropout_valence.unwrap_or(c.dropout.valence);
    let other = args.dropout_arousal_dominance.unwrap_or(c.dropout.arousal);
    (c.dropout.arousal, c.dropout.dominance) = (other, other);
    c.encoder_dropout |= args.encoder_dropout;
    let floor = min_head_floor(args);
    let extra = args.plateau_epochs.unwrap_or(DEFAULT_PLATEAU_EPOCHS);
    c.plateau = (floor > 0.0 && extra > 0).then_some(Plateau { floor, max_extra_epochs: extra });
    c
}

/// Extra joint epochs for a head still below the floor at the end of its schedule: the scenes
/// head of the model card needed 3 beyond 6, so 12 (one more schedule's worth) leaves room.
pub const DEFAULT_PLATEAU_EPOCHS: usize = 12;

/// The dev CCC floor every VAE-ER head must clear in this run.
fn min_head_floor(args: &TrainOptions) -> f64 {
    args.min_head_ccc.unwrap_or(if args.quick { 0.0 } else { DEFAULT_MIN_HEAD_CCC })
}

/// What a checkpoint part records next to its weights, so parts from another corpus or
/// noise bank are never fused.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PartInfo {
    corpus_hash: String,
    /// The command that trained this part.
    #[serde(default)]
    command: String,
    noise_seed: u64,
    report: serde_json::Value,
    config: serde_json::Value,
}

/// The `emogate train` command line that `args` stands for (recorded in the manifest).
fn command_line(args: &TrainOptions) -> String {
    let mut c = format!("emogate train --corpus {} --out {}", args.corpus.display(), args.out.display());
    if let Some(a) = args.attribute {
        c += &format!(" --attribute {a}");
    }
    for (flag, on) in [
        (" --quick", args.quick),
        (" --export-only", args.export_only),
        (" --encoder-dropout", args.encoder_dropout),
    ] {
        if on {
            c += flag;
        }
    }
    c += &format!(" --seed {} --mc-samples {} --noise-seed {}", args.seed, args.mc_samples, args.noise_seed);
    if args.noise_bank != NoiseBank::Gaussian {
        c += &format!(" --noise-bank {}", bank_name(args.noise_bank));
    }
    if let Some(dir) = &args.weights_from {
        c += &format!(" --weights-from {}", dir.display());
    }
    if args.mc_reference_samples > 0 {
        c += &format!(
            " --mc-reference-samples {} --mc-reference-seed {}",
            args.mc_reference_samples, args.mc_reference_seed
        );
    }
    let opts = args.epochs.flags().into_iter().chain([
        ("--batch", args.batch.map(|v| v.to_string())),
        ("--alpha", args.alpha.map(|v| v.to_string())),
        ("--beta", args.beta.map(|v| v.to_string())),
        ("--gamma", args.gamma.map(|v| v.to_string())),
        ("--mc-train", args.mc_train.map(|v| v.to_string())),
        ("--dropout-valence", args.dropout_valence.map(|v| v.to_string())),
        ("--dropout-arousal-dominance", args.dropout_arousal_dominance.map(|v| v.to_string())),
        ("--min-head-ccc", args.min_head_ccc.map(|v| v.to_string())),
        ("--plateau-epochs", args.plateau_epochs.map(|v| v.to_string())),
    ]);
    for (flag, v) in opts {
        if let Some(v) = v {
            c += &format!(" {flag} {v}");
        }
    }
    c
}

/// `emogate train`
pub fn run_train(args: &TrainOptions) -> Result<(), TrainError> {
    let cfg = config_from(args);
    if args.mc_samples == 0 {
        return Err(TrainError::Config("--mc-samples must be positive".into()));
    }
    let t_load = Instant::now();
    let (corpus, corpus_hash) = load_corpus(&args.corpus)?;
    let data = Prepared::new(&corpus)?;
    eprintln!(
        "corpus {} ({} utterances, {} features) loaded in {:.1}s",
        corpus.meta.id,
        corpus.utterances.len(),
        corpus.dims,
        t_load.elapsed().as_secs_f64()
    );
    let bank = serving::noise_bank(args.noise_bank, args.mc_samples, args.noise_seed)?;
    let parts = args.out.join("parts");
    if let Some(dir) = &args.weights_from {
        std::fs::create_dir_all(&args.out).map_err(TrainError::io(&args.out))?;
        let (attributes, norm, mut infos) = weights_from(dir, &corpus_hash)?;
        match (args.export_only, args.attribute) {
            (true, _) => {
                let params = ServingParams { norm, noise: bank, mc_samples: args.mc_samples, attributes };
                return export(args, &corpus, &corpus_hash, &params, &infos);
            }
            // The other attributes become checkpoints, so the export below fuses them with
            // the one trained now (same corpus, so the same normaliser).
            (false, Some(trained)) => {
                std::fs::create_dir_all(&parts).map_err(TrainError::io(&parts))?;
                for a in Attribute::ALL.into_iter().filter(|&a| a != trained) {
                    let info = infos.remove(a.as_str()).expect("weights_from covers every attribute");
                    write_part(&parts, a, &attributes[a], &info)?;
                }
            }
            (false, None) => {
                return Err(TrainError::Config(
                    "--weights-from needs --export-only or --attribute (the attribute to retrain)".into(),
                ))
            }
        }
    }
    std::fs::create_dir_all(&parts).map_err(TrainError::io(&parts))?;
    let mp = MultiProgress::new();
    let attributes: Vec<Attribute> = match (args.export_only, args.attribute) {
        (true, _) => vec![],
        (false, Some(a)) => vec![a],
        (false, None) => Attribute::ALL.to_vec(),
    };
    for a in attributes {
        let (params, report) = trainer::train_attribute(&data, a, &cfg, &bank, &mp)?;
        let info = PartInfo {
            corpus_hash: corpus_hash.clone(),
            command: command_line(args),
            noise_seed: args.noise_seed,
            report: serde_json::to_value(&report).expect("report serialises"),
            config: serde_json::to_value(&cfg).expect("config serialises"),
        };
        write_part(&parts, a, &params, &info)?;
        print_throughput(a, &report);
        // After the checkpoint is written, so the weights can still be inspected or exported.
        report.check_head_learned(a, min_head_floor(args))?;
    }

    let missing: Vec<Attribute> =
        Attribute::ALL.into_iter().filter(|a| !parts.join(format!("{a}.safetensors")).exists()).collect();
    if !missing.is_empty() {
        println!(
            "checkpoints for {missing:?} are missing in {}; export happens once all three are trained",
            parts.display()
        );
        return Ok(());
    }
    let mut infos = BTreeMap::new();
    let attributes = PerAttribute::try_from_fn(|a| {
        let path = parts.join(format!("{a}.json"));
        let text = std::fs::read_to_string(&path).map_err(TrainError::io(&path))?;
        let info: PartInfo = serde_json::from_str(&text).map_err(|e| TrainError::Parse {
            path: path.clone(),
            line: e.line(),
            reason: e.to_string(),
        })?;
        if info.corpus_hash != corpus_hash {
            return Err(TrainError::Config(format!(
                "{} was trained on another corpus; retrain {a} (or remove it)",
                path.display()
            )));
        }
        infos.insert(a.as_str().to_string(), info);
        serving::load_attribute(&parts.join(format!("{a}.safetensors")))
    })?;
    let params =
        ServingParams { norm: data.norm.clone(), noise: bank, mc_samples: args.mc_samples, attributes };
    export(args, &corpus, &corpus_hash, &params, &infos)
}

/// Trained layers of the three attributes.
type Layers = PerAttribute<AttributeParams>;

/// Writes one attribute's checkpoint (`{a}.safetensors`) and its provenance (`{a}.json`).
fn write_part(
    parts: &Path,
    a: Attribute,
    params: &AttributeParams,
    info: &PartInfo,
) -> Result<(), TrainError> {
    serving::save_attribute(&parts.join(format!("{a}.safetensors")), params)?;
    let path = parts.join(format!("{a}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(info).expect("part info serialises"))
        .map_err(TrainError::io(&path))
}

/// Layers, normalisation and per-attribute provenance of an exported model, for
/// `--export-only --weights-from DIR`: the committed model has no `parts/`, and retraining
/// it only to change the noise bank would take most of an hour.
fn weights_from(
    dir: &Path,
    corpus_hash: &str,
) -> Result<(Layers, Normalizer, BTreeMap<String, PartInfo>), TrainError> {
    let manifest = Manifest::load(dir).map_err(|e| TrainError::Config(e.to_string()))?;
    if manifest.training.corpus_hash != corpus_hash {
        return Err(TrainError::Config(format!(
            "{} was trained on another corpus ({}); give the corpus it names",
            dir.display(),
            manifest.training.corpus_id
        )));
    }
    let served = onnx::read(&dir.join(MODEL_FILE))?;
    let training = manifest.metrics.get("training");
    let infos = Attribute::ALL
        .into_iter()
        .map(|a| {
            let info = PartInfo {
                corpus_hash: corpus_hash.to_string(),
                command: manifest.training.command.clone().unwrap_or_default(),
                noise_seed: 0,
                report: training.and_then(|t| t.get(a.as_str())).cloned().unwrap_or_default(),
                config: manifest.training.hyperparameters.get(a.as_str()).cloned().unwrap_or_default(),
            };
            (a.as_str().to_string(), info)
        })
        .collect();
    Ok((served.attributes, served.norm, infos))
}

/// The `--noise-bank` value (and manifest spelling) of a bank kind.
fn bank_name(kind: NoiseBank) -> String {
    format!("{kind:?}").to_lowercase()
}

fn print_throughput(a: Attribute, r: &AttributeReport) {
    println!(
        "{a}: best joint epoch {}, best STL epoch {}; throughput samples/s: VAE {:.0}, VAE-ER {:.0}, STL {:.0}",
        r.joint_best_epoch,
        r.stl_best_epoch,
        r.throughput.pretrain.samples_per_sec,
        r.throughput.joint.samples_per_sec,
        r.throughput.stl.samples_per_sec
    );
}

/// RFC 3339 UTC timestamp of now (civil-from-days, no calendar dependency).
pub fn now_rfc3339() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
            as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Prints the paper's central measurements for one split.
pub fn print_eval(split: &str, eval: &PerAttribute<AttributeEval>) {
    let ranking = eval.valence.ranking;
    println!("{split}: CCC of `value`, records ranked by the attribute's own `{ranking}`");
    println!(
        "  {:<10} {:>6} {:>6} {:>6}   quintile CCC (most → least certain)   falls  corr(score, vote sd)",
        "attribute", "n", "100%", "60%"
    );
    for (a, e) in eval.iter() {
        let q: Vec<String> = e.quintile_ccc.iter().map(|v| format!("{v:.3}")).collect();
        println!(
            "  {:<10} {:>6} {:>6.3} {:>6.3}   {}   {:<5}  {:.3}",
            a.as_str(),
            e.n,
            e.ccc_full,
            e.ccc_at(0.6),
            q.join(" "),
            if e.quintiles_fall() { "yes" } else { "no" },
            e.ranking_vs_disagreement
        );
    }
}

fn export(
    args: &TrainOptions,
    corpus: &Corpus,
    corpus_hash: &str,
    params: &ServingParams,
    infos: &BTreeMap<String, PartInfo>,
) -> Result<(), TrainError> {
    let kind = args.noise_bank;
    let model_path = args.out.join(MODEL_FILE);
    let meta = [
        ("emogate.mc_samples", params.mc_samples.to_string()),
        ("emogate.noise_bank", bank_name(kind)),
        ("emogate.noise_seed", args.noise_seed.to_string()),
        ("emogate.corpus", corpus.meta.id.clone()),
    ];
    let sha256 = onnx::write(&model_path, params, &meta)?;
    // Evaluate the weights as written (read back), so metrics describe the file.
    let served = onnx::read(&model_path)?;
    let (dev_rows, dev_out) = calibrate::run_split(&served, corpus, Split::Dev)?;
    let fit = calibrate::DevCalibration::fit(corpus, &dev_rows, &dev_out, &metrics::coverage_grid())?;
    let dev_eval = fit.dev[&ScoreKind::Entropy].clone();
    let (test_rows, test_out) = calibrate::run_split(&served, corpus, Split::Test)?;
    let test_eval = calibrate::score(corpus, &test_rows, &test_out)?;
    let test_served = calibrate::served_uncertainty(&fit.profiles, &test_out);
    let test_uncertainty =
        calibrate::score_by(corpus, &test_rows, &test_out, ScoreKind::Uncertainty, &test_served)?;
    let mc = measure_mc(args, &served, corpus, &test_out)?;
    print_eval("dev", &dev_eval);
    print_eval("test", &test_eval);
    print_eval("dev, by the served uncertainty", &fit.dev[&ScoreKind::Uncertainty]);
    print_eval("test, by the served uncertainty", &test_uncertainty);
    println!("served score (the better on dev, worst attribute first): {}", fit.calibration.score);
    for (_, details) in fit.harmful() {
        // The export still writes the model (its weights are the training's result), but
        // says so loudly; `emogate calibrate` refuses such a model without --allow-harmful-reject.
        tracing::warn!(
            %details,
            score = %fit.calibration.score,
            "rejecting HURTS on dev for this attribute: do not serve it as is"
        );
    }
    // Hyper-parameters as each attribute was trained (they may come from separate runs).
    let mut hyper: BTreeMap<String, serde_json::Value> =
        infos.iter().map(|(a, i)| (a.clone(), i.config.clone())).collect();
    hyper.insert("noise_seed".into(), args.noise_seed.into());
    hyper.insert("mc_samples".into(), params.mc_samples.into());
    let mut metrics_map = BTreeMap::new();
    metrics_map.insert("dev".into(), serde_json::to_value(&dev_eval).expect("metrics serialise"));
    metrics_map.insert("test".into(), serde_json::to_value(&test_eval).expect("metrics serialise"));
    metrics_map.insert(
        "dev_uncertainty".into(),
        serde_json::to_value(&fit.dev[&ScoreKind::Uncertainty]).expect("metrics serialise"),
    );
    metrics_map.insert(
        "test_uncertainty".into(),
        serde_json::to_value(&test_uncertainty).expect("metrics serialise"),
    );
    metrics_map.insert(
        "training".into(),
        serde_json::Value::Object(infos.iter().map(|(k, v)| (k.clone(), v.report.clone())).collect()),
    );
    // What reproduces the model: the training command(s) of the parts, then this export.
    let mut commands: Vec<String> =
        infos.values().map(|i| i.command.clone()).filter(|c| !c.is_empty()).collect();
    commands.dedup();
    let this = command_line(args);
    if !commands.contains(&this) {
        commands.push(this);
    }
    let command = commands.join(" && ");
    let manifest = Manifest {
        id: args.id.clone(),
        version: args.version.clone(),
        created: now_rfc3339(),
        opset: onnx::OPSET as u32,
        sha256,
        feature_set: corpus.meta.feature_set.clone(),
        feature_dims: corpus.dims,
        mc_samples: params.mc_samples,
        latent_dims: LATENT,
        noise_bank: kind,
        attributes: Attribute::ALL.to_vec(),
        training: TrainingInfo {
            corpus_id: corpus.meta.id.clone(),
            corpus_hash: corpus_hash.to_string(),
            command: Some(command),
            hyperparameters: hyper,
        },
        metrics: metrics_map,
        thresholds: fit.thresholds,
        calibration: Some(fit.calibration),
        uncertainty_profile: Some(fit.profiles),
        mc,
        description: format!(
            "VAE-ER with soft labels (uncertainty) and STL regressors (value), one model per attribute, \
             trained on {}{}",
            corpus.meta.id,
            if corpus.meta.id.starts_with("synthetic") {
                "; a synthetic corpus, not a model of real speech"
            } else {
                ""
            }
        ),
    };
    manifest
        .validate()
        .map_err(|reason| TrainError::Config(format!("exported manifest is invalid: {reason}")))?;
    manifest.save(&args.out)?;
    let size = std::fs::metadata(&model_path).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {} ({:.1} MiB) and manifest.json with thresholds for coverages 0.2..1.0",
        model_path.display(),
        size as f64 / 1048576.0
    );
    Ok(())
}

/// With `--mc-reference-samples N`: the exported bank's mean |H − H_ref| on the test split,
/// H_ref from a Gaussian bank of N samples with its own seed (the same weights).
fn measure_mc(
    args: &TrainOptions,
    served: &ServingParams,
    corpus: &Corpus,
    test_out: &PerAttribute<serving::AttributeOutputs>,
) -> Result<Option<McInfo>, TrainError> {
    let n = args.mc_reference_samples;
    if n == 0 {
        return Ok(None);
    }
    if args.mc_reference_seed == args.noise_seed {
        return Err(TrainError::Config(
            "--mc-reference-seed equals --noise-seed: the reference would share the bank's draws".into(),
        ));
    }
    let started = Instant::now();
    let noise = serving::noise_bank(NoiseBank::Gaussian, n, args.mc_reference_seed)?;
    let reference = ServingParams { noise, mc_samples: n, ..served.clone() };
    let (_, ref_out) = calibrate::run_split(&reference, corpus, Split::Test)?;
    let error = Attribute::ALL
        .iter()
        .map(|&a| {
            let (h, r) = (&test_out[a].entropy, &ref_out[a].entropy);
            h.iter().zip(r).map(|(x, y)| f64::from((x - y).abs())).sum::<f64>() / h.len() as f64
        })
        .sum::<f64>()
        / 3.0;
    println!(
        "MC: {} S = {} vs gaussian S = {n} (seed {}): mean |H - H_ref| = {error:.4} nats on the test split ({:.0} s)",
        bank_name(args.noise_bank),
        args.mc_samples,
        args.mc_reference_seed,
        started.elapsed().as_secs_f64()
    );
    Ok(Some(McInfo {
        bank: args.noise_bank,
        samples: args.mc_samples,
        seed: args.noise_seed,
        entropy_error_vs_reference: error,
        reference_samples: n,
        reference_seed: args.mc_reference_seed,
        split: Split::Test.as_str().to_string(),
    }))
}

/// `emogate calibrate`
pub fn run_calibrate(args: &CalibrateOptions) -> Result<(), TrainError> {
    let coverages = match args.coverage {
        Some(c) => vec![calibrate::check_coverage(c)?],
        None => metrics::coverage_grid(),
    };
    let corpus = msp::load(&args.corpus)?;
    let manifest = calibrate::calibrate_model(&args.model, &corpus, &coverages, args.allow_harmful_reject)?;
    for t in manifest.thresholds.iter().filter(|t| coverages.iter().any(|c| (c - t.coverage).abs() < 1e-9)) {
        println!(
            "coverage {:.2}: entropy ≤ valence {:.4}, arousal {:.4}, dominance {:.4}",
            t.coverage, t.entropy.valence, t.entropy.arousal, t.entropy.dominance
        );
        if let Some(u) = t.uncertainty.filter(|_| t.coverage < 1.0) {
            println!(
                "               uncertainty ≤ valence {:.4}, arousal {:.4}, dominance {:.4}",
                u.valence, u.arousal, u.dominance
            );
        }
    }
    if let Some(c) = &manifest.calibration {
        for (kind, g) in &c.dev_gain_at_60_by_score {
            println!(
                "dev CCC gain at 60 % by {kind:<11}: valence {:+.1} %, arousal {:+.1} %, dominance {:+.1} %",
                100.0 * g.valence,
                100.0 * g.arousal,
                100.0 * g.dominance
            );
        }
        println!("served score (policy.score default): {}", c.score);
    }
    println!("updated {}", args.model.join(crate::model::manifest::MANIFEST_FILE).display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}
