//! emogate command line (DESIGN §3). Parsing and wiring only; the work is in the library.

#[cfg(feature = "testkit")]
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

#[cfg(feature = "testkit")]
use emogate::codec::Framing;
use emogate::config::Config;
#[cfg(feature = "testkit")]
use emogate::config::DeliveryMode;
use emogate::lifecycle::{self, shutdown, StageContext};
#[cfg(feature = "testkit")]
use emogate::model::{LoadedModel, ModelOptions, ProviderChoice};
use emogate::pipeline::InferStage;
use emogate::service::{self, RunningStage};
use emogate::telemetry::{self, Health, Metrics};
#[cfg(feature = "testkit")]
use emogate::testkit::bench::{
    bracketed_ratios, median, peak_rss_mb, raw_inference, RawBenchConfig, RawBenchResult,
};
#[cfg(feature = "testkit")]
use emogate::testkit::demo::{self, DemoOptions, InputMode};
#[cfg(feature = "testkit")]
use emogate::testkit::load::{self as produce, ProduceOptions, RecordSource};

#[derive(Parser)]
#[command(name = "emogate", version, about = "Uncertainty-aware speech emotion recognition on Kafka")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[cfg(feature = "testkit")]
    /// End-to-end run on an in-process mock Kafka cluster with synthetic records; prints a summary.
    Demo {
        /// Synthetic records to send (five malformed ones are added).
        #[arg(long, default_value_t = 2000)]
        records: usize,
        /// Model directory (default: models/default if present, else models/fixture).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Delivery mode of the infer stage.
        #[arg(long, value_enum, default_value_t = Mode::ExactlyOnce)]
        delivery: Mode,
    },
    /// The production service.
    Serve {
        /// TOML config file (EMOGATE_<SECTION>__<KEY> variables override it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Which stages to run in this process.
        #[arg(long, value_enum, default_value_t = StageChoice::Both)]
        stage: StageChoice,
    },
    #[cfg(feature = "testkit")]
    /// Load generator / corpus replay: send feature records to a topic.
    Produce {
        #[arg(long)]
        brokers: String,
        #[arg(long, default_value = "ser.features")]
        topic: String,
        /// Corpus directory (features.csv, or features.npy + features_index.csv).
        #[arg(long, conflicts_with = "synthetic", required_unless_present = "synthetic")]
        corpus: Option<PathBuf>,
        /// Number of synthetic records.
        #[arg(long)]
        synthetic: Option<usize>,
        /// Records per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
        /// Feature dimension of synthetic records.
        #[arg(long, default_value_t = 6373)]
        dims: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Confluent framing with this schema id (default: Avro single-object encoding).
        #[arg(long)]
        schema_id: Option<u32>,
        /// Extra librdkafka property, `name=value` (repeatable).
        #[arg(long = "property", short = 'X', value_parser = parse_property)]
        properties: Vec<(String, String)>,
    },
    #[cfg(feature = "testkit")]
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
    /// Reproduces the paper's analyses, baselines and ablations: report.json + CSV + PNG (feature `train`).
    #[cfg(feature = "train")]
    Evaluate(emogate::eval::EvaluateOptions),
}

#[cfg(feature = "testkit")]
#[derive(clap::Args)]
struct BenchArgs {
    /// Model directory (default: models/default if present, else models/fixture).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 2048)]
    records: usize,
    /// Raw and end-to-end runs, alternated this many times and closed by one more raw run; the
    /// report gives their medians and the median of the ratios of each end-to-end run to the
    /// mean of the raw runs on either side of it (on a shared VM, consecutive runs differed by
    /// up to ±25 %, docs/benchmarks.md, so one pair proves little).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Inference workers (sessions); each runs `threads` intra-op threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Intra-op threads per session (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// ONNX Runtime intra-op spinning (`model.intra_op_spinning`) in every run of the bench.
    #[arg(long, default_value_t = emogate::config::ModelConfig::default().intra_op_spinning, action = clap::ArgAction::Set)]
    ort_spinning: bool,
    /// Most micro-batches per exactly-once transaction in the end-to-end runs
    /// (`delivery.transaction_max_batches`; 1 = one transaction per batch).
    #[arg(long, default_value_t = emogate::config::DeliveryConfig::default().transaction_max_batches)]
    transaction_max_batches: usize,
    #[arg(long, value_enum, default_value_t = ProviderChoice::Auto)]
    execution_provider: ProviderChoice,
    /// Also run scripts/ort_bench.py (plain Python onnxruntime) with this interpreter on the
    /// same model, batch and threads in this run, and report the ratio.
    #[arg(long)]
    python_reference: Option<PathBuf>,
    /// Only the raw inference measurement (no mock cluster runs).
    #[arg(long)]
    raw_only: bool,
    /// How the end-to-end throughput run gets its input: all of it produced before the stage
    /// starts (the stage alone is timed), or produced while it runs in this process.
    #[arg(long, value_enum, default_value_t = E2eInput::Preproduced)]
    e2e_input: E2eInput,
    /// `batch.max_wait_ms` of the infer stage in the end-to-end runs.
    #[arg(long, default_value_t = emogate::config::BatchConfig::default().max_wait_ms)]
    max_wait_ms: u64,
    /// Offered load of the latency run, records/s (default: half the measured end-to-end rate).
    /// Above the sustainable rate the backlog outgrows the mock cluster's 5 MiB per partition,
    /// which deletes old input as retention would, and the run fails for the lost answers.
    #[arg(long)]
    offered_load: Option<f64>,
    /// Length of the latency run at the offered load, seconds (0 skips it).
    #[arg(long, default_value_t = 5.0)]
    latency_seconds: f64,
    /// librdkafka property for the infer stage's clients in the end-to-end runs, `name=value`
    /// (repeatable). Default `fetch.wait.max.ms=20`: the mock cluster holds a fetch that finds
    /// no data for the whole `fetch.wait.max.ms` (500 ms by default) instead of answering when
    /// data arrives as a real broker does, which put a 0–500 ms floor under every latency.
    #[arg(long = "property", short = 'X', value_parser = parse_property)]
    properties: Vec<(String, String)>,
    /// librdkafka property for the producer of the end-to-end runs' input, the upstream the
    /// bench stands in for, `name=value` (repeatable); e.g. `compression.type=zstd` to measure
    /// what a compressing upstream costs the infer stage's consumer.
    #[arg(long = "input-property", value_parser = parse_property)]
    input_properties: Vec<(String, String)>,
}

#[cfg(feature = "testkit")]
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum E2eInput {
    Preproduced,
    Live,
}

#[cfg(feature = "testkit")]
#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    ExactlyOnce,
    AtLeastOnce,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StageChoice {
    Infer,
    Archive,
    Both,
}

#[cfg(feature = "testkit")]
fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("expected name=value, got `{s}`"))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    // At least two workers: a rebalance callback may block one while the other finishes
    // the in-flight batches it waits for.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        #[cfg(feature = "testkit")]
        Command::Demo { records, model, delivery } => {
            telemetry::init_tracing(emogate::config::LogFormat::Pretty, "warn")?;
            let mut options = DemoOptions { records, ..DemoOptions::default() };
            if let Some(model) = model {
                options.model_dir = model;
            }
            options.mode = match delivery {
                Mode::ExactlyOnce => DeliveryMode::ExactlyOnce,
                Mode::AtLeastOnce => DeliveryMode::AtLeastOnce,
            };
            let summary = runtime()?
                .block_on(demo::run_demo(
                    options,
                    Box::new(|ctx: &StageContext| vec![("archive", service::archive_stage(ctx))]),
                ))
                .context("demo failed")?;
            println!("{summary}");
            let expected = summary.options.records + summary.bad_sent;
            let read: usize = summary.read_back.values().sum();
            if read != expected || summary.duplicates > 0 {
                bail!("read back {read} outputs for {expected} inputs ({} duplicates)", summary.duplicates);
            }
            if summary.archive_rows < summary.report.predictions {
                bail!(
                    "archive holds {} rows for {} predictions",
                    summary.archive_rows,
                    summary.report.predictions
                );
            }
            Ok(())
        }
        Command::Serve { config, stage } => serve(config, stage),
        #[cfg(feature = "testkit")]
        Command::Bench(args) => {
            telemetry::init_tracing(emogate::config::LogFormat::Pretty, "warn")?;
            bench(args)
        }
        #[cfg(feature = "train")]
        Command::Synth(args) => {
            telemetry::init_tracing(emogate::config::LogFormat::Pretty, "info")?;
            Ok(emogate::train::cli::run_synth(&args)?)
        }
        #[cfg(feature = "train")]
        Command::Train(args) => {
            telemetry::init_tracing(emogate::config::LogFormat::Pretty, "info")?;
            Ok(emogate::train::cli::run_train(&args)?)
        }
        #[cfg(feature = "train")]
        Command::Calibrate(args) => {
            telemetry::init_tracing(emogate::config::LogFormat::Pretty, "info")?;
            Ok(emogate::train::cli::run_calibrate(&args)?)
        }
        #[cfg(feature = "train")]
        Command::Evaluate(args) => {
            telemetry::init_tracing(emogate::config::LogFormat::Pretty, "info")?;
            let report = emogate::eval::run_evaluate(&args)?;
            print!("{}", report.summary());
            println!("report, CSVs and figures: {}", args.out.display());
            Ok(())
        }
        #[cfg(feature = "testkit")]
        Command::Produce { brokers, topic, corpus, synthetic, rate, dims, seed, schema_id, properties } => {
            telemetry::init_tracing(emogate::config::LogFormat::Pretty, "info")?;
            let source = match (corpus, synthetic) {
                (Some(dir), _) => RecordSource::Corpus(dir),
                (None, Some(count)) => RecordSource::Synthetic { count, dims, seed },
                (None, None) => bail!("give --corpus DIR or --synthetic N"),
            };
            let framing =
                schema_id.map_or(Framing::SingleObject, |schema_id| Framing::Confluent { schema_id });
            let options = ProduceOptions { brokers, topic, source, rate, framing, properties };
            let report = runtime()?.block_on(produce::produce(&options)).context("produce failed")?;
            println!(
                "sent {} records to {} in {:.2} s ({:.0} records/s)",
                report.records,
                options.topic,
                report.seconds,
                report.records as f64 / report.seconds.max(1e-9)
            );
            Ok(())
        }
    }
}

fn serve(config_path: Option<PathBuf>, stage: StageChoice) -> Result<()> {
    let config = Config::load(config_path.as_deref())?;
    telemetry::init_tracing(config.telemetry.log_format, &config.telemetry.log_level)?;
    tracing::info!(config = ?config, "configuration loaded");
    let rt = runtime()?;
    rt.block_on(async move {
        let (trigger, listener) = shutdown::channel();
        trigger.trigger_on_signals().context("cannot install signal handlers")?;
        let ctx = StageContext {
            config: Arc::new(config),
            metrics: Arc::new(Metrics::new()?),
            health: Health::new(),
            shutdown: listener.clone(),
        };
        let server = match ctx.config.telemetry.listen {
            Some(addr) => {
                let (bound, task) = telemetry::serve_http(
                    addr,
                    Arc::clone(&ctx.metrics),
                    Arc::clone(&ctx.health),
                    async move {
                        let mut listener = listener;
                        listener.wait().await
                    },
                )
                .await?;
                tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
                Some(task)
            }
            None => None,
        };
        let mut stages: Vec<(&'static str, RunningStage)> = Vec::new();
        if stage != StageChoice::Archive {
            let infer = {
                let ctx = ctx.clone();
                tokio::task::spawn_blocking(move || InferStage::new(ctx)).await??
            };
            stages.push(("infer", lifecycle::boxed(infer.run())));
        } else {
            // Readiness describes the infer stage (model, broker, assignment); an archive-only
            // process has none of those to wait for.
            ctx.health.mark_archive_only();
        }
        if stage != StageChoice::Infer {
            stages.push(("archive", service::archive_stage(&ctx)));
        }
        let outcomes = lifecycle::run_together(stages, trigger.clone()).await;
        trigger.trigger();
        if let Some(task) = server {
            let _ = task.await;
        }
        let mut failed = false;
        for (name, outcome) in outcomes {
            match outcome {
                Ok(summary) => tracing::info!(stage = name, summary = %summary, "stage stopped"),
                Err(e) => {
                    tracing::error!(stage = name, error = %e, "stage failed");
                    failed = true;
                }
            }
        }
        if failed {
            bail!("a stage failed (see the log)");
        }
        Ok(())
    })
}

#[cfg(feature = "testkit")]
fn bench(args: BenchArgs) -> Result<()> {
    let model_dir = args.model.clone().unwrap_or_else(|| DemoOptions::default().model_dir);
    let loaded =
        LoadedModel::load(&model_dir).with_context(|| format!("loading model {}", model_dir.display()))?;
    let options = ModelOptions {
        provider: args.execution_provider,
        intra_threads: args.threads,
        intra_op_spinning: args.ort_spinning,
        ..ModelOptions::default()
    };
    let config =
        RawBenchConfig { batch: args.batch, records: args.records, workers: args.workers, options, seed: 7 };
    // End to end: the demo flow (mock cluster, infer stage -> accepted/rejected/DLQ topics,
    // exactly-once) on the same model, batch size and threads.
    let mut properties = args.properties.clone();
    if !properties.iter().any(|(k, _)| k == "fetch.wait.max.ms") {
        properties.push(("fetch.wait.max.ms".into(), "20".into()));
    }
    let e2e_options = |records: usize, input: InputMode| DemoOptions {
        records,
        model_dir: model_dir.clone(),
        batch: args.batch,
        max_wait_ms: args.max_wait_ms,
        workers: args.workers,
        intra_threads: args.threads,
        intra_op_spinning: args.ort_spinning,
        transaction_max_batches: args.transaction_max_batches,
        input,
        properties: properties.clone(),
        input_properties: args.input_properties.clone(),
        ..DemoOptions::default()
    };
    let rt = runtime()?;
    let run =
        |options: DemoOptions| rt.block_on(demo::run_demo(options, Box::new(|_: &StageContext| Vec::new())));
    let input = match args.e2e_input {
        E2eInput::Preproduced => InputMode::Preproduced,
        E2eInput::Live => InputMode::Live,
    };
    // Raw and end-to-end runs alternate, and a closing raw run follows the last end-to-end run,
    // so each end-to-end run is bracketed by raw runs (see `bracketed_ratios`).
    let mut raws = Vec::new();
    let mut e2es = Vec::new();
    for _ in 0..args.repeat.max(1) {
        raws.push(raw_inference(&loaded, &config).context("raw inference benchmark")?);
        if !args.raw_only {
            e2es.push(run(e2e_options(args.records, input)).context("end-to-end benchmark")?);
        }
    }
    if !args.raw_only {
        raws.push(raw_inference(&loaded, &config).context("closing raw inference benchmark")?);
    }
    // One figure per raw run, and per end-to-end run; the report gives their medians.
    let per_raw = |f: &dyn Fn(&RawBenchResult) -> f64| -> Vec<f64> { raws.iter().map(f).collect() };
    let raw_rates = per_raw(&|r| r.records_per_sec);
    let raw_rate = median(&raw_rates);
    let raw = &raws[0];
    let mut report = serde_json::json!({
        "model": loaded.manifest.model_ref(),
        "raw_records_per_sec": raw_rate,
        "raw_runs": raw_rates,
        "raw_batch_p50_ms": median(&per_raw(&|r| r.batch_p50_ms)),
        "raw_batch_p99_ms": median(&per_raw(&|r| r.batch_p99_ms)),
        "records": raw.records,
        "batch": args.batch,
        "workers": args.workers,
        "threads": args.threads,
        "ort_spinning": args.ort_spinning,
        "mc_samples": loaded.manifest.mc_samples,
        "execution_provider": raw.execution_provider,
        "peak_rss_mb": peak_rss_mb(),
    });
    if let Some(python) = &args.python_reference {
        let reference = python_reference(python, &model_dir, &args, loaded.manifest.feature_dims)?;
        let rate = reference["records_per_sec"].as_f64().context("reference printed no records_per_sec")?;
        report["python_onnxruntime_records_per_sec"] = rate.into();
        report["raw_to_python_ratio"] = (raw_rate / rate).into();
    }
    if args.raw_only {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let per_e2e = |f: &dyn Fn(&demo::DemoSummary) -> f64| -> Vec<f64> { e2es.iter().map(f).collect() };
    let e2e_rates = per_e2e(&|e| e.records_per_sec());
    let ratios = bracketed_ratios(&raw_rates, &e2e_rates);
    let e2e_rate = median(&e2e_rates);
    report["e2e_input"] = format!("{input:?}").to_lowercase().into();
    report["e2e_input_properties"] =
        args.input_properties.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().into();
    report["e2e_records_per_sec"] = e2e_rate.into();
    report["e2e_runs"] = e2e_rates.into();
    report["e2e_to_raw_ratio"] = median(&ratios).into();
    report["e2e_to_raw_ratios"] = ratios.into();
    // Where the end-to-end time goes: the share of the timed window the model was running, and
    // its mean batch time next to the raw run's (slower batches = contention for the cores;
    // a low share = the model waited for input or for the sink).
    report["e2e_model_busy"] = median(&per_e2e(&|e| e.inference_seconds / e.seconds.max(1e-9))).into();
    let e2e_batch_ms = per_e2e(&|e| 1e3 * e.inference_seconds / e.inference_batches.max(1) as f64);
    report["e2e_batch_mean_ms"] = median(&e2e_batch_ms).into();
    report["raw_batch_mean_ms"] = median(&per_raw(&|r| r.batch_mean_ms())).into();
    report["max_wait_ms"] = args.max_wait_ms.into();
    report["transaction_max_batches"] = args.transaction_max_batches.into();
    // Latency at a fixed offered load (default half the end-to-end maximum just measured).
    let rate = args.offered_load.unwrap_or(e2e_rate / 2.0);
    if args.latency_seconds > 0.0 && rate > 0.0 {
        let records = (rate * args.latency_seconds).ceil() as usize;
        let paced = run(e2e_options(records, InputMode::Paced(rate))).context("latency run")?;
        let latency = paced.latency.context("the paced run measured no latency")?;
        anyhow::ensure!(
            latency.measured == latency.sent,
            "saw answers for {} of {} records in the latency run",
            latency.measured,
            latency.sent
        );
        report["p50_ms"] = latency.p50_ms.into();
        report["p99_ms"] = latency.p99_ms.into();
        report["latency_max_ms"] = latency.max_ms.into();
        report["latency_records"] = latency.measured.into();
        report["offered_records_per_sec"] = latency.offered_records_per_sec.into();
        report["achieved_records_per_sec"] = latency.achieved_records_per_sec.into();
    }
    report["peak_rss_mb"] = peak_rss_mb().into();
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

#[cfg(feature = "testkit")]
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
