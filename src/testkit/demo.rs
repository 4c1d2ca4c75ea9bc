//! `emogate demo`: the whole flow in one process — an in-process librdkafka mock cluster,
//! synthetic feature records (plus one of each kind of bad input), the infer stage (and any
//! other stage the caller adds, e.g. the archive), then an independent read-back of the
//! output topics and a summary.
//!
//! When the model's manifest has no thresholds for the demo's coverage (the random-weight
//! fixture has none), the demo calibrates them the way `emogate calibrate` would, but on a
//! warm-up sample of synthetic records: entropy thresholds need no labels, only the entropy
//! distribution. The summary says so.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cluster::{self, KeyedPayload, MockKafka, ReadBack};
use super::latency::{self, LatencyReport, Origin};
use super::synthetic::{bad_messages, BadMessage, SyntheticFeatures};
use crate::attribute::{Attribute, PerAttribute};
use crate::codec::Framing;
use crate::config::{Config, DeliveryMode, TopicsConfig};
use crate::human;
use crate::lifecycle::{self, shutdown, StageContext};
use crate::model::{LoadedModel, Manifest, ModelPool};
use crate::pipeline::{router, InferReport, InferStage, PipelineError};
use crate::policy::{CoverageOf, RejectPolicy};
use crate::service::{self, RunningStage, StageError, StageReport};
use crate::telemetry::{Health, Metrics};
use crate::uncertainty::{threshold_for_coverage, ScoreKind};

/// Most input records the demo lets wait in the mock cluster at any time.
const MAX_BACKLOG: u64 = 400;

/// Bytes of input the demo puts in one mock partition at most when it produces everything
/// up front: librdkafka's mock cluster keeps 5 MiB per partition and deletes older data.
const PARTITION_BUDGET: usize = 4 << 20;

/// How the demo feeds the input topic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputMode {
    /// As fast as the stage consumes, while it runs (at most [`MAX_BACKLOG`] waiting), like a
    /// live stream that is always ahead; the producer shares the process's cores with the stage.
    Live,
    /// Everything produced before the stage starts, so the timed section is the consuming
    /// pipeline alone. The input topic gets enough partitions to hold it all
    /// ([`PARTITION_BUDGET`] each).
    Preproduced,
    /// An open-loop producer at this many records/s once the stage has its partitions, and a
    /// watcher of the output topics measuring per-record latency ([`super::latency`]).
    Paced(f64),
}

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Good synthetic records to push through.
    pub records: usize,
    pub model_dir: PathBuf,
    /// Where the archive stage (if run) writes, when `archive_url` is not set.
    pub archive_root: PathBuf,
    /// `archive.url`: an object-store URL (`s3://bucket/prefix`, …) or a path; overrides
    /// `archive_root`.
    pub archive_url: Option<String>,
    /// `archive.object_store` options (`endpoint`, `region`, `allow_http`, …).
    pub archive_options: Vec<(String, String)>,
    pub partitions: i32,
    pub mode: DeliveryMode,
    pub coverage: f64,
    pub seed: u64,
    /// `batch.max_records` of the infer stage.
    pub batch: usize,
    /// `batch.max_wait_ms` of the infer stage.
    pub max_wait_ms: u64,
    /// Inference sessions (`model.workers`), each with `intra_threads` threads.
    pub workers: usize,
    /// ONNX Runtime intra-op threads per session (0: one per core).
    pub intra_threads: usize,
    /// `model.intra_op_spinning`.
    pub intra_op_spinning: bool,
    /// `delivery.transaction_max_batches` (exactly-once).
    pub transaction_max_batches: usize,
    pub input: InputMode,
    /// Extra librdkafka properties for the infer stage's clients (`kafka.properties`).
    pub properties: Vec<(String, String)>,
    /// Extra librdkafka properties for the producer of the input, the upstream the demo
    /// stands in for (e.g. `compression.type`, whose cost the infer stage's consumer pays).
    pub input_properties: Vec<(String, String)>,
    /// Kafka-protocol brokers to run against instead of the in-process mock cluster. The run
    /// creates its own topics (names suffixed with a run id, so runs never see each other's
    /// records) and consumer group, and deletes the topics at the end.
    pub brokers: Option<String>,
}

impl DemoOptions {
    /// Where the archive goes: `archive_url`, else `archive_root`.
    pub fn archive_location(&self) -> String {
        self.archive_url.clone().unwrap_or_else(|| self.archive_root.display().to_string())
    }
}

impl Default for DemoOptions {
    fn default() -> Self {
        let model_dir = if PathBuf::from("models/default/manifest.json").exists() {
            PathBuf::from("models/default")
        } else {
            PathBuf::from("models/fixture")
        };
        DemoOptions {
            records: 2000,
            model_dir,
            archive_root: PathBuf::from("demo-output/archive"),
            archive_url: None,
            archive_options: Vec::new(),
            partitions: 4,
            mode: DeliveryMode::ExactlyOnce,
            coverage: 0.8,
            seed: 7,
            batch: crate::config::BatchConfig::default().max_records,
            max_wait_ms: crate::config::BatchConfig::default().max_wait_ms,
            workers: crate::config::ModelConfig::default().workers,
            intra_threads: 0,
            intra_op_spinning: crate::config::ModelConfig::default().intra_op_spinning,
            transaction_max_batches: crate::config::DeliveryConfig::default().transaction_max_batches,
            input: InputMode::Live,
            properties: Vec::new(),
            input_properties: Vec::new(),
            brokers: None,
        }
    }
}

/// What the demo measured and verified.
#[derive(Debug)]
pub struct DemoSummary {
    pub options: DemoOptions,
    pub model: String,
    pub provider: String,
    pub thresholds: PerAttribute<f32>,
    /// The score the thresholds apply to.
    pub score: ScoreKind,
    /// What the target coverage is a dev fraction of, with these thresholds.
    pub coverage_of: CoverageOf,
    /// How the thresholds were obtained.
    pub thresholds_origin: String,
    pub bad_sent: usize,
    /// Wall time from the first record consumed to the last answer.
    pub seconds: f64,
    /// Time the model spent running batches (`emogate_inference_seconds`) and their number.
    pub inference_seconds: f64,
    pub inference_batches: u64,
    pub report: InferReport,
    /// Messages read back independently, per topic.
    pub read_back: BTreeMap<String, usize>,
    /// Input offsets answered more than once in the output topics.
    pub duplicates: usize,
    /// Rows and files the archive stage wrote (0 when it did not run).
    pub archive_rows: u64,
    pub archive_files: u64,
    /// Outcomes of the extra stages (e.g. the archive).
    pub other_stages: Vec<(&'static str, Result<StageReport, StageError>)>,
    /// The Prometheus exposition of the run's metrics at the end (what `/metrics` serves),
    /// so dashboards and alerts can be checked against what the service really exports.
    pub metrics_text: String,
    /// Per-record latency, for [`InputMode::Paced`] runs.
    pub latency: Option<LatencyReport>,
}

impl DemoSummary {
    /// Records per second through the infer stage (good and bad).
    pub fn records_per_sec(&self) -> f64 {
        (self.options.records + self.bad_sent) as f64 / self.seconds.max(1e-9)
    }
}

impl fmt::Display for DemoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        let count = human::count;
        let cluster = match &self.options.brokers {
            Some(b) => format!("brokers {b}"),
            None => "in-process mock Kafka cluster".to_string(),
        };
        writeln!(
            f,
            "emogate demo — {cluster}, {} partitions, {}",
            self.options.partitions,
            delivery_name(self.options.mode)
        )?;
        let model = format!("{} ({} on {})", self.model, self.options.model_dir.display(), self.provider);
        human::row(f, "model", model)?;
        let th = &self.thresholds;
        let thresholds = format!(
            "valence {:.3}  arousal {:.3}  dominance {:.3}  — {}",
            th.valence, th.arousal, th.dominance, self.thresholds_origin
        );
        let unit = match self.score {
            ScoreKind::Entropy => "entropy, nats",
            ScoreKind::Uncertainty => "uncertainty",
        };
        human::row(f, "thresholds", format!("{unit}: {thresholds}"))?;
        let records =
            format!("{} synthetic + {} malformed", count(self.options.records as u64), self.bad_sent);
        human::row(f, "records in", records)?;
        let throughput =
            format!("{} records/s ({:.2} s end to end)", human::whole(self.records_per_sec()), self.seconds);
        human::row(f, "throughput", throughput)?;
        let pct = |n: u64| 100.0 * n as f64 / (r.predictions.max(1)) as f64;
        let predictions = format!(
            "{} — accepted {} ({:.1} %), rejected {} ({:.1} %)",
            count(r.predictions),
            count(r.accepted),
            pct(r.accepted),
            count(r.rejected),
            pct(r.rejected)
        );
        human::row(f, "predictions", predictions)?;
        let target = self.options.coverage;
        let meaning = match self.coverage_of {
            CoverageOf::Records => {
                format!("{:.1} % of records (decision rule calibrated on dev)", 100.0 * target)
            }
            CoverageOf::Attributes => {
                format!("{:.1} % per attribute (no record thresholds for this rule)", 100.0 * target)
            }
            CoverageOf::Explicit => "none (explicit thresholds)".to_string(),
        };
        human::row(f, "coverage target", format!("{meaning}; measured {:.1} %", pct(r.accepted)))?;
        let mean = r.mean_entropy();
        let entropy = format!(
            "valence {:.3}  arousal {:.3}  dominance {:.3} nats",
            mean[Attribute::Valence],
            mean[Attribute::Arousal],
            mean[Attribute::Dominance]
        );
        human::row(f, "mean entropy", entropy)?;
        let reasons: Vec<String> =
            r.dead_lettered.iter().map(|(k, v)| format!("{k} {}", count(*v))).collect();
        human::row(
            f,
            "dead-lettered",
            format!("{} ({})", count(r.dead_lettered_total()), reasons.join(", ")),
        )?;
        let topics: Vec<String> =
            self.read_back.iter().map(|(k, v)| format!("{k} {}", count(*v as u64))).collect();
        let read_back = format!("{} — duplicates by input offset: {}", topics.join(", "), self.duplicates);
        human::row(f, "read back", read_back)?;
        for (name, outcome) in &self.other_stages {
            let label = format!("{name} stage");
            match outcome {
                Ok(report) => human::row(f, &label, report)?,
                Err(e) => human::row(f, &label, format!("FAILED: {e}"))?,
            }
        }
        let archive = format!(
            "{} rows in {} files under {}",
            count(self.archive_rows),
            count(self.archive_files),
            self.options.archive_location()
        );
        human::row(f, "archive", archive)
    }
}

/// The `--delivery` spelling of a mode (`exactly-once`).
fn delivery_name(mode: DeliveryMode) -> String {
    clap::ValueEnum::to_possible_value(&mode)
        .map_or_else(|| format!("{mode:?}"), |v| v.get_name().to_string())
}

impl DemoSummary {
    /// The summary as one JSON object (`emogate demo --json`): what the human summary says,
    /// unrounded, plus the other stages' outcomes and, for paced runs, the latency.
    pub fn to_json(&self) -> serde_json::Value {
        let r = &self.report;
        serde_json::json!({
            "model": self.model,
            "model_dir": self.options.model_dir,
            "provider": self.provider,
            "brokers": self.options.brokers,
            "delivery": self.options.mode,
            "partitions": self.options.partitions,
            "thresholds": self.thresholds,
            "thresholds_origin": self.thresholds_origin,
            "score": self.score,
            "coverage_target": self.options.coverage,
            "coverage_of": format!("{:?}", self.coverage_of).to_lowercase(),
            "records": self.options.records,
            "bad_sent": self.bad_sent,
            "seconds": self.seconds,
            "records_per_sec": self.records_per_sec(),
            "inference_seconds": self.inference_seconds,
            "inference_batches": self.inference_batches,
            "predictions": r.predictions,
            "accepted": r.accepted,
            "rejected": r.rejected,
            "dead_lettered": r.dead_lettered,
            "mean_entropy": r.mean_entropy(),
            "read_back": self.read_back,
            "duplicates": self.duplicates,
            "archive_rows": self.archive_rows,
            "archive_files": self.archive_files,
            "archive_root": self.options.archive_root,
            "archive_url": self.options.archive_location(),
            "stages": service::outcomes_json(&self.other_stages),
            "latency": self.latency,
        })
    }
}

/// The configuration the demo runs the stages with.
pub fn demo_config(brokers: &str, options: &DemoOptions) -> Config {
    let mut config = Config::default();
    config.kafka.brokers = brokers.to_string();
    config.model.dir = options.model_dir.clone();
    config.model.execution_provider = crate::model::ProviderChoice::Cpu;
    config.delivery.mode = options.mode;
    config.delivery.transaction_max_batches = options.transaction_max_batches;
    config.policy.coverage = options.coverage;
    config.batch.max_records = options.batch;
    config.batch.max_wait_ms = options.max_wait_ms;
    config.model.workers = options.workers;
    // One batch more in flight than sessions, so every session has work while the sink
    // produces the previous answer.
    config.batch.max_in_flight = config.batch.max_in_flight.max(options.workers + 1);
    config.model.intra_threads = options.intra_threads;
    config.model.intra_op_spinning = options.intra_op_spinning;
    config.kafka.properties.0.extend(options.properties.iter().cloned());
    config.archive.root = options.archive_root.clone();
    config.archive.url = options.archive_url.clone();
    config.archive.object_store.0.extend(options.archive_options.iter().cloned());
    // Roll archive files every second so the demo's rows are on disk while it runs.
    config.archive.roll_age_ms = 1000;
    config.telemetry.listen = None;
    config.telemetry.stats_interval_ms = 0;
    config
}

/// Entropy thresholds accepting `coverage` of a warm-up sample of synthetic records (the
/// same rule `emogate calibrate` applies to a dev split: [`threshold_for_coverage`]).
pub fn warm_up_thresholds(
    config: &Config,
    samples: usize,
    seed: u64,
) -> Result<PerAttribute<f32>, PipelineError> {
    let loaded = LoadedModel::load(&config.model.dir)?;
    let pool = ModelPool::new(&loaded, &config.model.options(), 1, 1)?;
    let mut synth = SyntheticFeatures::new(loaded.manifest.feature_dims, seed ^ 0x5eed);
    let mut entropies: PerAttribute<Vec<f32>> = PerAttribute::default();
    let mut left = samples.max(1);
    while left > 0 {
        let n = left.min(64);
        let features: Vec<f32> = (0..n).flat_map(|_| synth.features()).collect();
        for p in pool.infer(features)?.predictions? {
            for a in Attribute::ALL {
                entropies[a].push(p[a].entropy);
            }
        }
        left -= n;
    }
    PerAttribute::try_from_fn(|a| threshold_for_coverage(&entropies[a], config.policy.coverage))
        .map_err(|e| PipelineError::Fatal(format!("warm-up thresholds: {e}")))
}

/// Stops the latency watcher thread when the demo returns, also on an early error (the
/// runtime would otherwise wait for the thread's deadline when it shuts down).
#[derive(Default)]
struct StopOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl StopOnDrop {
    fn stop(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Extra stages to run next to the infer stage, built from its context.
pub type ExtraStages = Box<dyn FnOnce(&StageContext) -> Vec<(&'static str, RunningStage)>>;

/// Runs the demo end to end.
pub async fn run_demo(options: DemoOptions, extra: ExtraStages) -> Result<DemoSummary, PipelineError> {
    let mock = match options.brokers {
        Some(_) => None,
        None => Some(MockKafka::new(1)?),
    };
    let brokers = match (&options.brokers, &mock) {
        (Some(external), _) => external.clone(),
        (None, Some(m)) => m.bootstrap_servers(),
        (None, None) => unreachable!("a mock cluster is started when no brokers are given"),
    };
    let mut config = demo_config(&brokers, &options);
    if options.brokers.is_some() {
        let run = run_id();
        let t = &mut config.kafka.topics;
        for name in [&mut t.input, &mut t.accepted, &mut t.rejected, &mut t.dlq] {
            *name = format!("{name}.{run}");
        }
        config.kafka.group_id = format!("{}.{run}", config.kafka.group_id);
    }

    let manifest = LoadedModel::load(&config.model.dir)?.manifest;
    let thresholds_origin = resolve_thresholds(&mut config, &manifest, options.seed)?;
    let (messages, bad) = input_messages(manifest.feature_dims, options.records, options.seed);
    let expected = messages.len() as u64;
    let partitions = match options.input {
        InputMode::Preproduced => {
            let bytes: usize = messages.iter().map(|(_, m)| m.len()).sum();
            options.partitions.max(bytes.div_ceil(PARTITION_BUDGET) as i32)
        }
        InputMode::Live | InputMode::Paced(_) => options.partitions,
    };
    match &mock {
        Some(m) => cluster::create_topics(&m.cluster(), &config.kafka.topics, partitions)?,
        None => cluster::create_topics_on(&brokers, &config.kafka.topics, partitions).await?,
    }
    if options.input == InputMode::Preproduced {
        cluster::produce_all(&brokers, &config.kafka.topics.input, &messages, &options.input_properties)
            .await?;
    }

    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new()?);
    let (trigger, listener) = shutdown::channel();
    let ctx = StageContext {
        config: Arc::clone(&config),
        metrics: Arc::clone(&metrics),
        health: Health::new(),
        shutdown: listener,
    };
    let infer = tokio::task::block_in_place(|| InferStage::new(ctx.clone()))?;
    let policy_thresholds = *infer.policy().thresholds();
    let (score, coverage_of) = (infer.policy().score(), infer.policy().coverage_of());
    let model = infer.policy().model_version().to_string();
    let provider = infer.provider().to_string();

    let mut others = extra(&ctx);
    let wait_for_archive = others.iter().any(|(name, _)| *name == "archive");
    let infer_handle = tokio::spawn(infer.run());
    let origin = Origin::default();
    let watch_stop = StopOnDrop::default();
    let deadline = Duration::from_secs(120) + Duration::from_millis(20 * expected);
    let latency_watch = match options.input {
        InputMode::Paced(rate) => {
            let index_of: std::collections::HashMap<Vec<u8>, usize> =
                messages.iter().enumerate().filter_map(|(i, (key, _))| key.clone().map(|k| (k, i))).collect();
            let (brokers, origin, stop) = (brokers.clone(), Arc::clone(&origin), Arc::clone(&watch_stop.0));
            let topics = [config.kafka.topics.accepted.clone(), config.kafka.topics.rejected.clone()];
            Some(tokio::task::spawn_blocking(move || {
                let topics = [topics[0].as_str(), topics[1].as_str()];
                let latencies =
                    latency::watch_outputs(&brokers, &topics, &index_of, rate, &origin, &stop, deadline)?;
                Ok::<_, PipelineError>((latencies, index_of.len()))
            }))
        }
        _ => None,
    };
    let producer = tokio::spawn(feed_input(
        messages,
        options.input,
        brokers.clone(),
        config.kafka.topics.input.clone(),
        options.input_properties.clone(),
        (Arc::clone(&metrics), Arc::clone(&ctx.health), Arc::clone(&origin)),
    ));
    let watcher = tokio::spawn(time_and_stop(
        Arc::clone(&metrics),
        trigger.clone(),
        expected,
        deadline,
        wait_for_archive,
    ));
    let other_outcomes = if others.is_empty() {
        Vec::new()
    } else {
        lifecycle::run_together(std::mem::take(&mut others), trigger.clone()).await
    };
    let elapsed = watcher.await.map_err(|e| PipelineError::Fatal(format!("watcher failed: {e}")))?;
    let report =
        infer_handle.await.map_err(|e| PipelineError::Fatal(format!("infer stage panicked: {e}")))??;
    let achieved =
        producer.await.map_err(|e| PipelineError::Fatal(format!("input producer panicked: {e}")))??;
    let latency = match (latency_watch, options.input, achieved) {
        (Some(mut watch), InputMode::Paced(rate), Some(achieved)) => {
            // Every answer is committed by now; give the watcher time to read the last ones.
            let joined = match tokio::time::timeout(Duration::from_secs(10), &mut watch).await {
                Ok(joined) => joined,
                Err(_) => {
                    watch_stop.stop();
                    watch.await
                }
            };
            let (latencies, sent) =
                joined.map_err(|e| PipelineError::Fatal(format!("latency watcher panicked: {e}")))??;
            Some(LatencyReport::from_latencies(latencies, sent, rate, achieved))
        }
        _ => None,
    };
    if metrics.records_out() < expected {
        return Err(PipelineError::Fatal(format!(
            "demo timed out: {} of {expected} records handled",
            metrics.records_out()
        )));
    }

    let (read_back, duplicates) = count_outputs(&brokers, &config.kafka.topics, expected as usize)?;
    match mock {
        Some(m) => drop(m),
        None => {
            if let Err(e) = cluster::delete_topics_on(&brokers, &config.kafka.topics).await {
                tracing::warn!(error = %e, "the run's topics were left on the brokers");
            }
        }
    }
    Ok(DemoSummary {
        options,
        model,
        provider,
        thresholds: policy_thresholds,
        score,
        coverage_of,
        thresholds_origin,
        bad_sent: bad.len(),
        seconds: elapsed.as_secs_f64(),
        inference_seconds: metrics.inference_seconds.get_sample_sum(),
        inference_batches: metrics.inference_seconds.get_sample_count(),
        report,
        read_back,
        duplicates,
        archive_rows: metrics.archive_rows.get(),
        archive_files: metrics.archive_files.get(),
        other_stages: other_outcomes,
        metrics_text: metrics.render(),
        latency,
    })
}

/// A suffix no other run of this machine uses: process id and start time in milliseconds.
fn run_id() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("run-{}-{ms}", std::process::id())
}

/// Leaves the manifest's thresholds for the demo's coverage in place, or fits them on a
/// warm-up sample ([`warm_up_thresholds`]) into `config`; says which.
fn resolve_thresholds(config: &mut Config, manifest: &Manifest, seed: u64) -> Result<String, PipelineError> {
    let score = RejectPolicy::score_for(&config.policy, manifest)?;
    Ok(match manifest.thresholds_for(config.policy.coverage, score) {
        Some(_) => format!("calibrated (manifest, coverage {}, {score})", config.policy.coverage),
        None => {
            let samples = 512;
            let th = tokio::task::block_in_place(|| warm_up_thresholds(config, samples, seed))?;
            // The warm-up fits entropy thresholds: they must be compared with the entropy.
            config.policy.score = Some(ScoreKind::Entropy);
            config.policy.thresholds = Some(th);
            format!(
                "manifest has none for coverage {} and {score}: entropy thresholds fitted on {samples} \
                 synthetic warm-up records",
                config.policy.coverage
            )
        }
    })
}

/// The demo's input: good records keyed by utterance (spread over the partitions), then the
/// bad ones, unkeyed; and the bad ones themselves.
fn input_messages(dims: usize, records: usize, seed: u64) -> (Vec<KeyedPayload>, Vec<BadMessage>) {
    let mut synth = SyntheticFeatures::new(dims, seed);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut messages: Vec<KeyedPayload> = (0..records)
        .map(|_| {
            let (id, bytes) = synth.encoded(now_ms, &Framing::SingleObject);
            (Some(id.into_bytes()), bytes)
        })
        .collect();
    let bad = bad_messages(dims, seed);
    messages.extend(bad.iter().map(|b| (None, b.payload.clone())));
    (messages, bad)
}

/// Feeds the input topic the way `input` says (nothing more for [`InputMode::Preproduced`]);
/// returns the achieved rate of a paced run.
async fn feed_input(
    messages: Vec<KeyedPayload>,
    input: InputMode,
    brokers: String,
    topic: String,
    input_properties: Vec<(String, String)>,
    (metrics, health, origin): (Arc<Metrics>, Arc<Health>, Origin),
) -> Result<Option<f64>, PipelineError> {
    let producer = cluster::producer(&brokers, &input_properties)?;
    match input {
        InputMode::Preproduced => Ok(None),
        // Produced while the stage runs, like a live stream, keeping the backlog under
        // MAX_BACKLOG: the mock cluster keeps only 5 MB per partition (~200 records of
        // 6,373 floats) and deletes older data, as retention would.
        InputMode::Live => {
            let mut sent = 0u64;
            for chunk in messages.chunks(100) {
                while sent.saturating_sub(metrics.consumed_total()) > MAX_BACKLOG {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                cluster::send_all(&producer, &topic, chunk).await?;
                sent += chunk.len() as u64;
            }
            Ok(None)
        }
        // The clock starts once the stage owns its partitions, so the group join is
        // not counted as latency.
        InputMode::Paced(rate) => {
            while health.readiness().is_err() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            latency::send_paced(&producer, &topic, &messages, rate, &origin).await.map(Some)
        }
    }
}

/// Times the run from the first record consumed (after the group join) until `expected`
/// records were handled or `deadline` passed, lets the archive (when it runs) catch up with
/// the predictions, then triggers shutdown. Returns the timed window.
async fn time_and_stop(
    metrics: Arc<Metrics>,
    trigger: lifecycle::ShutdownTrigger,
    expected: u64,
    deadline: Duration,
    wait_for_archive: bool,
) -> Duration {
    let t0 = Instant::now();
    while metrics.consumed_total() == 0 && t0.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let first = Instant::now();
    while metrics.records_out() < expected && t0.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let done = first.elapsed();
    let predictions = metrics.records_accepted.get() + metrics.records_rejected.get();
    let catch_up = Instant::now();
    while wait_for_archive
        && metrics.archive_rows.get() < predictions
        && catch_up.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    trigger.trigger();
    done
}

/// Reads the output topics back independently: messages per topic, and input offsets
/// answered more than once.
fn count_outputs(
    brokers: &str,
    topics: &TopicsConfig,
    expected: usize,
) -> Result<(BTreeMap<String, usize>, usize), PipelineError> {
    let outputs: Vec<ReadBack> = tokio::task::block_in_place(|| {
        cluster::read_back(
            brokers,
            &[&topics.accepted, &topics.rejected, &topics.dlq],
            expected,
            Duration::from_millis(300),
            Duration::from_secs(30),
        )
    })?;
    let mut read_back: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut duplicates = 0;
    for o in &outputs {
        *read_back.entry(o.topic.clone()).or_default() += 1;
        if let Some(input) = o.headers.get(router::HEADER_INPUT) {
            if !seen.insert(input.clone()) {
                duplicates += 1;
            }
        }
    }
    Ok((read_back, duplicates))
}
