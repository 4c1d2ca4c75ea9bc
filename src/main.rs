//! The `emogate` command line (DESIGN §3). Only argument parsing and wiring live here;
//! `anyhow` is used in this file and nowhere else.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use emogate::bench::{peak_rss_mb, raw_inference, RawBenchConfig};
use emogate::codec::{encode_feature_record, FeatureDecoder, FeatureRecord, Framing};
use emogate::model::{LoadedModel, ModelOptions, ModelPool, ProviderChoice};
use emogate::Attribute;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

#[derive(Parser)]
#[command(name = "emogate", version, about = "Uncertainty-aware speech emotion recognition over Kafka")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Offline end-to-end run: synthetic feature records are Avro-encoded, decoded, and
    /// scored by the model's worker pool; prints per-record predictions and a summary.
    Demo {
        #[arg(long, default_value_t = 64)]
        records: usize,
        /// Model directory (model.onnx + manifest.json); defaults to models/default, else models/fixture.
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = ProviderChoice::Auto)]
        execution_provider: ProviderChoice,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Measures inference throughput and prints one JSON object (DESIGN §3).
    Bench(BenchArgs),
    /// Writes a synthetic corpus with per-annotator votes (feature `train`).
    #[cfg(feature = "train")]
    Synth(emogate::train::cli::SynthArgs),
    /// Trains VAE-ER and the STL regressors, exports model.onnx + manifest.json (feature `train`).
    #[cfg(feature = "train")]
    Train(emogate::train::cli::TrainArgs),
    /// Fits entropy thresholds for target coverages on the dev split (feature `train`).
    #[cfg(feature = "train")]
    Calibrate(emogate::train::cli::CalibrateArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Model directory; defaults to models/default, else models/fixture.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 2048)]
    records: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Inference workers (sessions); each runs `threads` intra-op threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Intra-op threads per session (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(long, value_enum, default_value_t = ProviderChoice::Auto)]
    execution_provider: ProviderChoice,
    /// Also run scripts/ort_bench.py (plain Python onnxruntime) on the same model, batch and
    /// threads in this run, and report the ratio.
    #[arg(long)]
    python_reference: Option<PathBuf>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Demo { records, model, execution_provider, batch, seed } => {
            demo(records, &model.unwrap_or_else(default_model_dir), execution_provider, batch, seed)
        }
        Command::Bench(args) => bench(args),
        #[cfg(feature = "train")]
        Command::Synth(args) => Ok(emogate::train::cli::run_synth(&args)?),
        #[cfg(feature = "train")]
        Command::Train(args) => Ok(emogate::train::cli::run_train(&args)?),
        #[cfg(feature = "train")]
        Command::Calibrate(args) => Ok(emogate::train::cli::run_calibrate(&args)?),
    }
}

/// `models/default` when the trained model is present, else the committed fixture.
fn default_model_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let default = root.join("models/default");
    if default.join("manifest.json").exists() {
        default
    } else {
        root.join("models/fixture")
    }
}

fn demo(records: usize, model_dir: &Path, provider: ProviderChoice, batch: usize, seed: u64) -> Result<()> {
    let loaded =
        LoadedModel::load(model_dir).with_context(|| format!("loading model {}", model_dir.display()))?;
    let options = ModelOptions { provider, ..ModelOptions::default() };
    let pool = ModelPool::new(&loaded, &options, 1, 2).context("starting inference")?;
    let dims = loaded.manifest.feature_dims;
    let decoder = FeatureDecoder::new(dims);
    let messages = synthetic_messages(records, dims, &loaded.manifest.feature_set, seed);

    let started = Instant::now();
    let mut metas = Vec::with_capacity(records);
    let mut predictions = Vec::with_capacity(records);
    for chunk in messages.chunks(batch.max(1)) {
        let mut features = vec![0.0f32; chunk.len() * dims];
        for (message, row) in chunk.iter().zip(features.chunks_mut(dims)) {
            let (meta, _) = decoder.decode_into(message, row).context("decoding a synthetic record")?;
            metas.push(meta);
        }
        predictions.extend(pool.infer(features)?.predictions?);
    }
    let elapsed = started.elapsed().as_secs_f64();

    println!(
        "{:<14} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "utterance", "val", "H(val)", "aro", "H(aro)", "dom", "H(dom)"
    );
    for (meta, p) in metas.iter().zip(&predictions).take(10) {
        println!(
            "{:<14} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
            meta.utterance_id,
            p.valence.value,
            p.valence.entropy,
            p.arousal.value,
            p.arousal.entropy,
            p.dominance.value,
            p.dominance.entropy
        );
    }
    println!("\nmodel            {} ({})", loaded.manifest.model_ref(), model_dir.display());
    println!("provider         {}", pool.provider().kind);
    println!("records          {records} in {elapsed:.3} s ({:.0} records/s)", records as f64 / elapsed);
    for a in Attribute::ALL {
        let mean =
            predictions.iter().map(|p| p[a].entropy as f64).sum::<f64>() / predictions.len().max(1) as f64;
        println!("mean entropy     {a:<9} {mean:.4} nats");
    }
    Ok(())
}

/// Avro single-object messages with normally distributed features, deterministic by seed.
fn synthetic_messages(count: usize, dims: usize, feature_set: &str, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 1.0).expect("unit normal");
    (0..count)
        .map(|i| {
            let scale = rng.random_range(0.5f32..1.5);
            let record = FeatureRecord {
                utterance_id: format!("demo-{i:05}"),
                speaker_id: Some(format!("spk-{}", i % 7)),
                source: Some("emogate-demo".into()),
                timestamp_ms: 1_764_000_000_000 + i as i64 * 1000,
                feature_set: feature_set.to_string(),
                features: (0..dims).map(|_| normal.sample(&mut rng) * scale).collect(),
            };
            let mut out = Vec::new();
            encode_feature_record(&record, &Framing::SingleObject, &mut out);
            out
        })
        .collect()
}

fn bench(args: BenchArgs) -> Result<()> {
    let model_dir = args.model.clone().unwrap_or_else(default_model_dir);
    let loaded =
        LoadedModel::load(&model_dir).with_context(|| format!("loading model {}", model_dir.display()))?;
    let options = ModelOptions {
        provider: args.execution_provider,
        intra_threads: args.threads,
        ..ModelOptions::default()
    };
    let config =
        RawBenchConfig { batch: args.batch, records: args.records, workers: args.workers, options, seed: 7 };
    let raw = raw_inference(&loaded, &config).context("raw inference benchmark")?;
    let mut report = serde_json::json!({
        "model": loaded.manifest.model_ref(),
        "raw_records_per_sec": raw.records_per_sec,
        "raw_batch_p50_ms": raw.batch_p50_ms,
        "raw_batch_p99_ms": raw.batch_p99_ms,
        "records": raw.records,
        "batch": args.batch,
        "workers": args.workers,
        "threads": args.threads,
        "mc_samples": loaded.manifest.mc_samples,
        "execution_provider": raw.execution_provider,
        "peak_rss_mb": peak_rss_mb(),
    });
    if let Some(python) = &args.python_reference {
        let reference = python_reference(python, &model_dir, &args, loaded.manifest.feature_dims)?;
        let rate = reference["records_per_sec"].as_f64().context("reference printed no records_per_sec")?;
        report["python_onnxruntime_records_per_sec"] = rate.into();
        report["raw_to_python_ratio"] = (raw.records_per_sec / rate).into();
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Runs `scripts/ort_bench.py` with the same model, batch, thread count and record count.
fn python_reference(
    python: &Path,
    model_dir: &Path,
    args: &BenchArgs,
    dims: usize,
) -> Result<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ort_bench.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args(["--model", &model_dir.display().to_string()])
        .args(["--batch", &args.batch.to_string(), "--threads", &args.threads.to_string()])
        .args(["--records", &args.records.to_string(), "--dims", &dims.to_string()])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    anyhow::ensure!(out.status.success(), "ort_bench.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).context("parsing ort_bench.py output")
}
