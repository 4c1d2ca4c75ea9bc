//! `emogate bench`: raw ONNX Runtime throughput on pre-decoded batches, end-to-end runs of the
//! demo flow on the mock cluster, latency at a fixed offered load, the process's peak memory,
//! and the one JSON object the command prints ([`BenchReport`]).
//!
//! Raw throughput is the ceiling the streaming pipeline is compared against (DESIGN §3:
//! `e2e_to_raw_ratio`), so it is measured the way the pipeline runs inference: through the
//! same [`ModelPool`], with batches already in the pool's row-major layout.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::demo::{run_demo, DemoOptions, DemoSummary, InputMode};
use crate::lifecycle::StageContext;
use crate::model::{LoadedModel, ModelError, ModelOptions, ModelPool, ProviderChoice};
use crate::pipeline::PipelineError;

/// How to run the raw measurement.
#[derive(Debug, Clone)]
pub struct RawBenchConfig {
    pub batch: usize,
    /// Records to time (rounded up to whole batches); each session runs one warm-up batch first.
    pub records: usize,
    pub workers: usize,
    pub options: ModelOptions,
    pub seed: u64,
}

/// Result of the raw measurement.
#[derive(Debug, Clone, Serialize)]
pub struct RawBenchResult {
    pub records: usize,
    pub batches: usize,
    pub seconds: f64,
    pub records_per_sec: f64,
    /// Per-batch wall time percentiles, milliseconds.
    pub batch_p50_ms: f64,
    pub batch_p99_ms: f64,
    pub execution_provider: String,
}

impl RawBenchResult {
    /// Mean wall time per batch, milliseconds (one worker: the model's own batch time).
    pub fn batch_mean_ms(&self) -> f64 {
        1e3 * self.seconds / self.batches.max(1) as f64
    }
}

/// Runs `records` rows of deterministic random features through a pool, `workers` batches in
/// flight at a time, and reports the sustained rate.
pub fn raw_inference(model: &LoadedModel, config: &RawBenchConfig) -> Result<RawBenchResult, ModelError> {
    let batch = config.batch.max(1);
    let dims = model.manifest.feature_dims;
    let workers = config.workers.max(1);
    // Every session warms up with one batch before the clock starts, as in the service.
    let options = ModelOptions { warm_up_rows: batch, ..config.options.clone() };
    let pool = ModelPool::new(model, &options, workers, workers)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let template: Vec<f32> = (0..batch * dims).map(|_| rng.random_range(-2.0f32..2.0)).collect();

    let batches = config.records.div_ceil(batch).max(1);
    let (tx, rx) = std::sync::mpsc::channel();
    let started = Instant::now();
    let mut in_flight = 0;
    let mut latencies = Vec::with_capacity(batches);
    let mut failure = None;
    for _ in 0..batches {
        if in_flight == workers {
            let (t, result): (f64, Result<(), ModelError>) = rx.recv().map_err(|_| ModelError::PoolClosed)?;
            latencies.push(t);
            failure = failure.or(result.err());
            in_flight -= 1;
        }
        let tx = tx.clone();
        let submitted = Instant::now();
        pool.submit(template.clone(), move |r| {
            let _ = tx.send((submitted.elapsed().as_secs_f64() * 1e3, r.predictions.map(|_| ())));
        })?;
        in_flight += 1;
    }
    for _ in 0..in_flight {
        let (t, result) = rx.recv().map_err(|_| ModelError::PoolClosed)?;
        latencies.push(t);
        failure = failure.or(result.err());
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(e) = failure {
        return Err(e);
    }
    latencies.sort_by(f64::total_cmp);
    let records = batches * batch;
    Ok(RawBenchResult {
        records,
        batches,
        seconds,
        records_per_sec: records as f64 / seconds,
        batch_p50_ms: percentile(&latencies, 0.50),
        batch_p99_ms: percentile(&latencies, 0.99),
        execution_provider: pool.provider().kind.to_string(),
    })
}

/// Nearest-rank percentile of sorted values (0 for an empty slice).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of `values` (mean of the middle two for an even count; 0 for none).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Each end-to-end rate over the mean of the raw rates measured just before and just after it
/// (`raw` has one more entry than `e2e`; extra raw runs are ignored, a missing closing one
/// leaves the last ratio unbracketed).
///
/// Why bracketed: on a shared VM the cores' speed drifts within seconds (two adjacent raw runs
/// differed with a standard deviation of 13 %, docs/benchmarks.md), so a raw run taken only
/// before the end-to-end run mixes that drift into the ratio; averaging both neighbours cancels
/// a linear drift and halves the variance of the raw side's independent noise.
pub fn bracketed_ratios(raw: &[f64], e2e: &[f64]) -> Vec<f64> {
    e2e.iter()
        .enumerate()
        .map(|(i, e)| {
            let neighbours: Vec<f64> = raw.iter().skip(i).take(2).copied().collect();
            e / (neighbours.iter().sum::<f64>() / neighbours.len().max(1) as f64)
        })
        .collect()
}

/// Peak resident set size of this process in MiB (`VmHWM`), when the OS reports it.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// How the end-to-end throughput runs get their input: all of it produced before the stage
/// starts (the stage alone is timed), or produced while it runs in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum E2eInput {
    Preproduced,
    Live,
}

impl From<E2eInput> for InputMode {
    fn from(input: E2eInput) -> InputMode {
        match input {
            E2eInput::Preproduced => InputMode::Preproduced,
            E2eInput::Live => InputMode::Live,
        }
    }
}

/// `emogate bench` settings (the command's flags describe each).
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Model directory; `None`: the demo's default.
    pub model: Option<PathBuf>,
    pub records: usize,
    /// Raw and end-to-end runs alternated this many times, closed by one more raw run.
    pub repeat: usize,
    pub batch: usize,
    pub workers: usize,
    pub threads: usize,
    pub ort_spinning: bool,
    pub transaction_max_batches: usize,
    pub execution_provider: ProviderChoice,
    /// Python interpreter to run `scripts/ort_bench.py` with, for the reference rate.
    pub python_reference: Option<PathBuf>,
    pub raw_only: bool,
    pub e2e_input: E2eInput,
    pub max_wait_ms: u64,
    /// Offered load of the latency run, records/s (default: half the end-to-end rate).
    pub offered_load: Option<f64>,
    /// Length of the latency run, seconds (0 skips it).
    pub latency_seconds: f64,
    /// librdkafka properties of the infer stage's clients in the end-to-end runs.
    pub properties: Vec<(String, String)>,
    /// librdkafka properties of the end-to-end runs' input producer.
    pub input_properties: Vec<(String, String)>,
    /// Brokers of the end-to-end runs (`None`: the in-process mock cluster).
    pub brokers: Option<String>,
}

/// Why the bench stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("loading model {}", dir.display())]
    Load {
        dir: PathBuf,
        #[source]
        source: ModelError,
    },
    /// A raw inference run failed (`run` names which).
    #[error("{run}")]
    Raw {
        run: &'static str,
        #[source]
        source: ModelError,
    },
    /// An end-to-end run failed (`run` names which).
    #[error("{run}")]
    EndToEnd {
        run: &'static str,
        #[source]
        source: PipelineError,
    },
    /// A run finished but measured what it must not (lost answers, no latency).
    #[error("{0}")]
    Incomplete(String),
    /// `scripts/ort_bench.py` could not be run or printed no rate.
    #[error("{0}")]
    Reference(String),
}

/// The one JSON object `emogate bench` prints (DESIGN §3). Rates are records/s, times ms.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub model: String,
    /// Median of the raw runs.
    pub raw_records_per_sec: f64,
    pub raw_runs: Vec<f64>,
    pub raw_batch_p50_ms: f64,
    pub raw_batch_p99_ms: f64,
    pub records: usize,
    pub batch: usize,
    pub workers: usize,
    pub threads: usize,
    pub ort_spinning: bool,
    pub mc_samples: usize,
    pub execution_provider: String,
    pub peak_rss_mb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python_onnxruntime_records_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_to_python_ratio: Option<f64>,
    /// The end-to-end figures (absent with `--raw-only`).
    #[serde(flatten)]
    pub e2e: Option<EndToEndFigures>,
}

/// The end-to-end part of [`BenchReport`].
#[derive(Debug, Clone, Serialize)]
pub struct EndToEndFigures {
    /// Where the end-to-end runs ran: `mock` (in-process librdkafka mock cluster) or `brokers`.
    pub e2e_cluster: &'static str,
    /// `bootstrap.servers` of an external cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e_brokers: Option<String>,
    pub e2e_input: E2eInput,
    pub e2e_input_properties: Vec<String>,
    /// Median of the end-to-end runs.
    pub e2e_records_per_sec: f64,
    pub e2e_runs: Vec<f64>,
    /// Median of [`bracketed_ratios`].
    pub e2e_to_raw_ratio: f64,
    pub e2e_to_raw_ratios: Vec<f64>,
    /// Where the end-to-end time goes: the share of the timed window the model was running,
    /// and its mean batch time next to the raw run's (slower batches = contention for the
    /// cores; a low share = the model waited for input or for the sink).
    pub e2e_model_busy: f64,
    pub e2e_batch_mean_ms: f64,
    pub raw_batch_mean_ms: f64,
    pub max_wait_ms: u64,
    pub transaction_max_batches: usize,
    /// Latency at the fixed offered load (absent when `--latency-seconds 0`).
    #[serde(flatten)]
    pub latency: Option<LatencyFigures>,
}

/// The latency part of [`EndToEndFigures`].
#[derive(Debug, Clone, Serialize)]
pub struct LatencyFigures {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub latency_max_ms: f64,
    pub latency_records: usize,
    pub offered_records_per_sec: f64,
    pub achieved_records_per_sec: f64,
}

impl BenchReport {
    /// The report as JSON with its keys in alphabetical order, as `emogate bench` has always
    /// printed it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("the bench report serialises")
    }
}

/// Runs the bench: raw and end-to-end runs alternated `repeat` times and closed by a raw run
/// (each end-to-end run bracketed by raw runs, see [`bracketed_ratios`]), the optional Python
/// reference, and the latency run at the offered load. The end-to-end runs are the demo flow
/// (mock cluster, infer stage -> accepted/rejected/DLQ topics, exactly-once) on the same model,
/// batch size and threads, each on `rt`.
pub fn run_bench(options: &BenchOptions, rt: &tokio::runtime::Runtime) -> Result<BenchReport, BenchError> {
    let model_dir = options.model.clone().unwrap_or_else(|| DemoOptions::default().model_dir);
    let loaded = LoadedModel::load(&model_dir)
        .map_err(|source| BenchError::Load { dir: model_dir.clone(), source })?;
    let model_options = ModelOptions {
        provider: options.execution_provider,
        intra_threads: options.threads,
        intra_op_spinning: options.ort_spinning,
        ..ModelOptions::default()
    };
    let config = RawBenchConfig {
        batch: options.batch,
        records: options.records,
        workers: options.workers,
        options: model_options,
        seed: 7,
    };
    let raw_run =
        |run: &'static str| raw_inference(&loaded, &config).map_err(|source| BenchError::Raw { run, source });
    let e2e_run = |run: &'static str, records: usize, input: InputMode| {
        rt.block_on(run_demo(
            e2e_options(options, &model_dir, records, input),
            Box::new(|_: &StageContext| Vec::new()),
        ))
        .map_err(|source| BenchError::EndToEnd { run, source })
    };
    let input = InputMode::from(options.e2e_input);
    let mut raws = Vec::new();
    let mut e2es = Vec::new();
    for _ in 0..options.repeat.max(1) {
        raws.push(raw_run("raw inference benchmark")?);
        if !options.raw_only {
            e2es.push(e2e_run("end-to-end benchmark", options.records, input)?);
        }
    }
    if !options.raw_only {
        raws.push(raw_run("closing raw inference benchmark")?);
    }
    // One figure per raw run, and per end-to-end run; the report gives their medians.
    let per_raw = |f: &dyn Fn(&RawBenchResult) -> f64| -> Vec<f64> { raws.iter().map(f).collect() };
    let raw_rates = per_raw(&|r| r.records_per_sec);
    let raw_rate = median(&raw_rates);
    let raw = &raws[0];
    let mut report = BenchReport {
        model: loaded.manifest.model_ref(),
        raw_records_per_sec: raw_rate,
        raw_runs: raw_rates.clone(),
        raw_batch_p50_ms: median(&per_raw(&|r| r.batch_p50_ms)),
        raw_batch_p99_ms: median(&per_raw(&|r| r.batch_p99_ms)),
        records: raw.records,
        batch: options.batch,
        workers: options.workers,
        threads: options.threads,
        ort_spinning: options.ort_spinning,
        mc_samples: loaded.manifest.mc_samples,
        execution_provider: raw.execution_provider.clone(),
        peak_rss_mb: peak_rss_mb(),
        python_onnxruntime_records_per_sec: None,
        raw_to_python_ratio: None,
        e2e: None,
    };
    if let Some(python) = &options.python_reference {
        let reference = python_reference(python, &model_dir, options, loaded.manifest.feature_dims)?;
        let rate = reference["records_per_sec"]
            .as_f64()
            .ok_or_else(|| BenchError::Reference("reference printed no records_per_sec".into()))?;
        report.python_onnxruntime_records_per_sec = Some(rate);
        report.raw_to_python_ratio = Some(raw_rate / rate);
    }
    if options.raw_only {
        return Ok(report);
    }
    let per_e2e = |f: &dyn Fn(&DemoSummary) -> f64| -> Vec<f64> { e2es.iter().map(f).collect() };
    let e2e_rates = per_e2e(&|e| e.records_per_sec());
    let ratios = bracketed_ratios(&raw_rates, &e2e_rates);
    let e2e_rate = median(&e2e_rates);
    let e2e_batch_ms = per_e2e(&|e| 1e3 * e.inference_seconds / e.inference_batches.max(1) as f64);
    let mut e2e = EndToEndFigures {
        e2e_cluster: if options.brokers.is_some() { "brokers" } else { "mock" },
        e2e_brokers: options.brokers.clone(),
        e2e_input: options.e2e_input,
        e2e_input_properties: options.input_properties.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        e2e_records_per_sec: e2e_rate,
        e2e_runs: e2e_rates.clone(),
        e2e_to_raw_ratio: median(&ratios),
        e2e_to_raw_ratios: ratios,
        e2e_model_busy: median(&per_e2e(&|e| e.inference_seconds / e.seconds.max(1e-9))),
        e2e_batch_mean_ms: median(&e2e_batch_ms),
        raw_batch_mean_ms: median(&per_raw(&|r| r.batch_mean_ms())),
        max_wait_ms: options.max_wait_ms,
        transaction_max_batches: options.transaction_max_batches,
        latency: None,
    };
    // Latency at a fixed offered load (default half the end-to-end maximum just measured).
    let rate = options.offered_load.unwrap_or(e2e_rate / 2.0);
    if options.latency_seconds > 0.0 && rate > 0.0 {
        let records = (rate * options.latency_seconds).ceil() as usize;
        let paced = e2e_run("latency run", records, InputMode::Paced(rate))?;
        let latency = paced
            .latency
            .ok_or_else(|| BenchError::Incomplete("the paced run measured no latency".into()))?;
        if latency.measured != latency.sent {
            return Err(BenchError::Incomplete(format!(
                "saw answers for {} of {} records in the latency run",
                latency.measured, latency.sent
            )));
        }
        e2e.latency = Some(LatencyFigures {
            p50_ms: latency.p50_ms,
            p99_ms: latency.p99_ms,
            latency_max_ms: latency.max_ms,
            latency_records: latency.measured,
            offered_records_per_sec: latency.offered_records_per_sec,
            achieved_records_per_sec: latency.achieved_records_per_sec,
        });
    }
    report.e2e = Some(e2e);
    report.peak_rss_mb = peak_rss_mb();
    Ok(report)
}

/// The demo settings of an end-to-end run: the bench's model, batch, threads and delivery
/// settings, and `fetch.wait.max.ms=20` unless given (the mock cluster holds a fetch that
/// finds no data for the whole wait instead of answering when data arrives).
fn e2e_options(options: &BenchOptions, model_dir: &Path, records: usize, input: InputMode) -> DemoOptions {
    let mut properties = options.properties.clone();
    if !properties.iter().any(|(k, _)| k == "fetch.wait.max.ms") {
        properties.push(("fetch.wait.max.ms".into(), "20".into()));
    }
    DemoOptions {
        records,
        model_dir: model_dir.to_path_buf(),
        batch: options.batch,
        max_wait_ms: options.max_wait_ms,
        workers: options.workers,
        intra_threads: options.threads,
        intra_op_spinning: options.ort_spinning,
        transaction_max_batches: options.transaction_max_batches,
        input,
        properties,
        input_properties: options.input_properties.clone(),
        brokers: options.brokers.clone(),
        ..DemoOptions::default()
    }
}

/// Runs `scripts/ort_bench.py` with the same model, batch, thread count and record count.
fn python_reference(
    python: &Path,
    model_dir: &Path,
    options: &BenchOptions,
    dims: usize,
) -> Result<serde_json::Value, BenchError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ort_bench.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args(["--model", &model_dir.display().to_string()])
        .args(["--batch", &options.batch.to_string(), "--threads", &options.threads.to_string()])
        .args(["--records", &options.records.to_string(), "--dims", &dims.to_string()])
        .output()
        .map_err(|e| BenchError::Reference(format!("running {}: {e}", python.display())))?;
    if !out.status.success() {
        return Err(BenchError::Reference(format!(
            "ort_bench.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| BenchError::Reference(format!("parsing ort_bench.py output: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn medians_of_odd_even_and_empty_sets() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[f64::INFINITY, 1.0, 0.5]), 1.0);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn ratios_are_bracketed_by_the_raw_runs_on_either_side() {
        // Raw speed drifts up linearly; each e2e run sits halfway and runs at 90 % of it.
        let raw = [1000.0, 1200.0, 1400.0];
        let e2e = [990.0, 1170.0];
        let ratios = bracketed_ratios(&raw, &e2e);
        assert_eq!(ratios.len(), 2);
        assert!((ratios[0] - 0.9).abs() < 1e-12 && (ratios[1] - 0.9).abs() < 1e-12, "{ratios:?}");
        // Without the closing raw run the last ratio uses the raw run before it alone.
        assert_eq!(bracketed_ratios(&[1000.0], &[900.0]), vec![0.9]);
        assert!(bracketed_ratios(&raw, &[]).is_empty());
    }

    #[test]
    fn peak_rss_is_reported_on_linux() {
        let rss = peak_rss_mb().expect("VmHWM in /proc/self/status");
        assert!(rss > 1.0 && rss < 64.0 * 1024.0, "{rss}");
    }
}
