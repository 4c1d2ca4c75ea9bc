//! Telemetry: `tracing` logs (pretty or JSON), the Prometheus metrics of DESIGN §8 and a small
//! HTTP server for `/metrics`, `/healthz` and `/readyz`.
//!
//! Metrics live in one [`Metrics`] value created per process (not in globals), so tests can run
//! several pipelines side by side and read their own counters. All names carry the `emogate_`
//! prefix; dead letters are labelled by the stable reason codes of the codec (plus the
//! pipeline's own `empty_value` and `inference_failed`), which dashboards and alerts match on.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::attribute::{Attribute, PerAttribute};
use crate::config::LogFormat;

/// Errors of telemetry set-up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("metric registration failed: {0}")]
    Metric(#[from] prometheus::Error),
    #[error("cannot listen on {addr} for /metrics: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("invalid log filter `{filter}`: {reason}")]
    Filter { filter: String, reason: String },
}

/// Installs the global `tracing` subscriber. `RUST_LOG` wins over `level` when set. Calling it
/// twice is harmless (the second call keeps the first subscriber), which tests rely on.
pub fn init_tracing(format: LogFormat, level: &str) -> Result<(), TelemetryError> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => EnvFilter::try_new(&env)
            .map_err(|e| TelemetryError::Filter { filter: env.clone(), reason: e.to_string() })?,
        _ => EnvFilter::try_new(level)
            .map_err(|e| TelemetryError::Filter { filter: level.to_string(), reason: e.to_string() })?,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _already_set = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    Ok(())
}

/// Number of recent records the rolling-coverage gauge averages over.
pub const COVERAGE_WINDOW: usize = 1000;

/// Every metric of the service (DESIGN §8).
pub struct Metrics {
    registry: Registry,
    /// By input topic.
    pub records_consumed: IntCounterVec,
    pub records_accepted: IntCounter,
    pub records_rejected: IntCounter,
    pub records_dead_lettered: IntCounterVec,
    pub batches: IntCounter,
    pub batch_size: Histogram,
    pub inference_seconds: Histogram,
    pub end_to_end_latency_seconds: Histogram,
    pub entropy: HistogramVec,
    /// Per attribute: fraction of the last [`COVERAGE_WINDOW`] predictions whose attribute was
    /// accepted — what the thresholds were calibrated to hold at the target.
    pub coverage: GaugeVec,
    pub coverage_target: Gauge,
    /// Per attribute, the dev CCC gain at 60 % coverage the model was calibrated with (from the
    /// manifest): negative means rejecting by the served score removes the better predictions.
    pub calibration_dev_gain: GaugeVec,
    pub consumer_lag: IntGaugeVec,
    pub transactions_aborted: IntCounter,
    /// Batches per committed exactly-once transaction (its count: transactions committed).
    pub transaction_batches: Histogram,
    pub rewinds: IntCounter,
    pub producer_renewals: IntCounter,
    pub paused: IntGauge,
    pub execution_provider: IntGaugeVec,
    /// 1 when `/readyz` would answer 200.
    pub ready: IntGauge,
    pub archive_files: IntCounter,
    pub archive_rows: IntCounter,
    pub archive_bytes: IntCounter,
    pub archive_dead_lettered: IntCounterVec,
    pub archive_write_errors: IntCounterVec,
    /// Time a file waited from its first failed write to its durable write.
    pub archive_retry_seconds: Histogram,
    pub archive_sink_healthy: IntGauge,
    pub archive_paused_partitions: IntGauge,
    pub archive_buffered_rows: IntGauge,
    pub archive_assigned_partitions: IntGauge,
    coverage_windows: Mutex<PerAttribute<CoverageWindow>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, TelemetryError> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> Result<IntCounter, TelemetryError> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| -> Result<Histogram, TelemetryError> {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let latency_buckets =
            vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        let entropy = HistogramVec::new(
            HistogramOpts::new(
                "emogate_entropy_nats",
                "Soft-label entropy per attribute (nats; max ln 7 = 1.95)",
            )
            .buckets((1..=20).map(|i| f64::from(i) * 0.1).collect()),
            &["attribute"],
        )?;
        registry.register(Box::new(entropy.clone()))?;
        let dead = IntCounterVec::new(
            Opts::new(
                "emogate_records_dead_lettered_total",
                "Records sent to the dead-letter topic, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(dead.clone()))?;
        let lag = IntGaugeVec::new(
            Opts::new("emogate_consumer_lag_records", "Consumer lag in records (librdkafka statistics)"),
            &["topic", "partition"],
        )?;
        registry.register(Box::new(lag.clone()))?;
        let provider = IntGaugeVec::new(
            Opts::new(
                "emogate_execution_provider_info",
                "1 for the execution provider the model runs on; fallback=true when `auto` fell back to CPU",
            ),
            &["provider", "fallback"],
        )?;
        registry.register(Box::new(provider.clone()))?;
        let coverage = GaugeVec::new(
            Opts::new(
                "emogate_coverage_ratio",
                "Per attribute, fraction of the last 1000 predictions accepted; alert when it drifts from the target",
            ),
            &["attribute"],
        )?;
        registry.register(Box::new(coverage.clone()))?;
        let target =
            Gauge::new("emogate_coverage_target_ratio", "Coverage the thresholds were calibrated for")?;
        registry.register(Box::new(target.clone()))?;
        let calibration_dev_gain = GaugeVec::new(
            Opts::new(
                "emogate_calibration_dev_gain_ratio",
                "Per attribute, dev CCC at 60 % coverage over dev CCC at 100 %, minus 1, from the model manifest; negative = rejecting hurts",
            ),
            &["attribute"],
        )?;
        registry.register(Box::new(calibration_dev_gain.clone()))?;
        let ready = IntGauge::new(
            "emogate_ready",
            "1 when the service is ready (model loaded, broker reachable, assigned)",
        )?;
        registry.register(Box::new(ready.clone()))?;
        let archive_dead_lettered = IntCounterVec::new(
            Opts::new(
                "emogate_archive_dead_lettered_total",
                "Output records the archive sent to its dead-letter topic (empty or not an EmotionPrediction), by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(archive_dead_lettered.clone()))?;
        let archive_write_errors = IntCounterVec::new(
            Opts::new(
                "emogate_archive_write_errors_total",
                "Failed archive writes (each failed retry counts), by reason; retried in place unless permanent",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(archive_write_errors.clone()))?;
        let archive_sink_healthy = IntGauge::new(
            "emogate_archive_sink_healthy",
            "1 while archive writes succeed; 0 after archive.unhealthy_after_failures consecutive failures",
        )?;
        registry.register(Box::new(archive_sink_healthy.clone()))?;
        archive_sink_healthy.set(1);
        let archive_paused = IntGauge::new(
            "emogate_archive_paused_partitions",
            "Archive partitions paused while their file is retried",
        )?;
        registry.register(Box::new(archive_paused.clone()))?;
        let archive_buffered =
            IntGauge::new("emogate_archive_buffered_rows", "Rows buffered, not yet in a file")?;
        registry.register(Box::new(archive_buffered.clone()))?;
        let archive_assigned = IntGauge::new(
            "emogate_archive_assigned_partitions",
            "Partitions assigned to the archive consumer",
        )?;
        registry.register(Box::new(archive_assigned.clone()))?;
        let consumed = IntCounterVec::new(
            Opts::new("emogate_records_consumed_total", "Input records consumed"),
            &["topic"],
        )?;
        registry.register(Box::new(consumed.clone()))?;
        let paused =
            IntGauge::new("emogate_consumer_paused", "1 while the consumer is paused for backpressure")?;
        registry.register(Box::new(paused.clone()))?;
        Ok(Metrics {
            records_consumed: consumed,
            records_accepted: counter(
                "emogate_records_accepted_total",
                "Predictions produced to the accepted topic",
            )?,
            records_rejected: counter(
                "emogate_records_rejected_total",
                "Predictions produced to the rejected topic",
            )?,
            records_dead_lettered: dead,
            batches: counter("emogate_batches_total", "Micro-batches completed")?,
            batch_size: histogram(
                "emogate_batch_size",
                "Records per micro-batch sent to the model",
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
            )?,
            inference_seconds: histogram(
                "emogate_inference_seconds",
                "Model run time per batch (ONNX Runtime)",
                latency_buckets.clone(),
            )?,
            end_to_end_latency_seconds: histogram(
                "emogate_end_to_end_latency_seconds",
                "Input message timestamp to output acknowledged",
                latency_buckets,
            )?,
            entropy,
            coverage,
            coverage_target: target,
            calibration_dev_gain,
            consumer_lag: lag,
            transactions_aborted: counter(
                "emogate_transactions_aborted_total",
                "Exactly-once transactions aborted (their input is replayed)",
            )?,
            transaction_batches: histogram(
                "emogate_transaction_batches",
                "Micro-batches per committed exactly-once transaction",
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
            )?,
            rewinds: counter(
                "emogate_rewinds_total",
                "Times in-flight work was discarded and the input re-read",
            )?,
            producer_renewals: counter(
                "emogate_producer_renewals_total",
                "Producers rebuilt in place after a fatal error (fenced, e.g. by a broker restart)",
            )?,
            paused,
            execution_provider: provider,
            ready,
            archive_files: counter(
                "emogate_archive_files_total",
                "Parquet files written by the archive stage",
            )?,
            archive_rows: counter("emogate_archive_rows_total", "Rows written by the archive stage")?,
            archive_bytes: counter(
                "emogate_archive_bytes_total",
                "Bytes of Parquet written by the archive stage",
            )?,
            archive_dead_lettered,
            archive_write_errors,
            archive_retry_seconds: histogram(
                "emogate_archive_retry_seconds",
                "Time an archive file waited from its first failed write to its durable write",
                vec![0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0],
            )?,
            archive_sink_healthy,
            archive_paused_partitions: archive_paused,
            archive_buffered_rows: archive_buffered,
            archive_assigned_partitions: archive_assigned,
            coverage_windows: Mutex::new(PerAttribute::from_fn(|_| CoverageWindow::new(COVERAGE_WINDOW))),
            registry,
        })
    }

    /// The registry, for stages that add metrics of their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records one published prediction: the record's route, and per attribute its entropy
    /// and whether it was accepted.
    pub fn observe_prediction(
        &self,
        accepted: bool,
        attributes: impl IntoIterator<Item = (Attribute, f32, bool)>,
    ) {
        if accepted {
            self.records_accepted.inc();
        } else {
            self.records_rejected.inc();
        }
        let mut windows = self.coverage_windows.lock().unwrap_or_else(|p| p.into_inner());
        for (a, h, attribute_accepted) in attributes {
            self.entropy.with_label_values(&[a.as_str()]).observe(f64::from(h));
            let coverage = windows[a].push(attribute_accepted);
            self.coverage.with_label_values(&[a.as_str()]).set(coverage);
        }
    }

    /// Records consumed, all input topics together.
    pub fn consumed_total(&self) -> u64 {
        use prometheus::core::Collector;
        self.records_consumed
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// Marks the execution provider in use.
    pub fn set_execution_provider(&self, provider: &str, fallback: bool) {
        self.execution_provider
            .with_label_values(&[provider, if fallback { "true" } else { "false" }])
            .set(1);
    }

    /// Dead letters counted so far, all reasons together.
    pub fn dead_lettered_total(&self) -> u64 {
        use prometheus::core::Collector;
        self.records_dead_lettered
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// Input records fully handled: predictions produced plus dead letters.
    pub fn records_out(&self) -> u64 {
        self.records_accepted.get() + self.records_rejected.get() + self.dead_lettered_total()
    }

    /// Dead letters counted so far for `reason`.
    pub fn dead_lettered(&self, reason: &str) -> u64 {
        self.records_dead_lettered.with_label_values(&[reason]).get()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The archive stage's hooks as a process wires them: into the registry, and the storage's
/// health into `/readyz`.
pub struct ArchiveTelemetry {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

impl crate::archive::ArchiveMetrics for ArchiveTelemetry {
    fn file_written(&self, file: &crate::archive::WrittenFile) {
        self.metrics.file_written(file);
    }

    fn record_dead_lettered(&self, topic: &str, reason: &'static str) {
        self.metrics.record_dead_lettered(topic, reason);
    }

    fn write_failed(&self, reason: &'static str) {
        self.metrics.write_failed(reason);
    }

    fn write_recovered(&self, waited: std::time::Duration) {
        self.metrics.write_recovered(waited);
    }

    fn sink_health(&self, healthy: bool) {
        self.metrics.sink_health(healthy);
        self.health.archive_storage_failing.store(!healthy, Ordering::Relaxed);
    }

    fn paused_partitions(&self, partitions: usize) {
        self.metrics.paused_partitions(partitions);
    }

    fn buffered_rows(&self, rows: usize) {
        self.metrics.buffered_rows(rows);
    }

    fn assignment_changed(&self, partitions: usize) {
        self.metrics.assignment_changed(partitions);
    }
}

/// The archive stage reports through these hooks into the same registry.
impl crate::archive::ArchiveMetrics for Metrics {
    fn file_written(&self, file: &crate::archive::WrittenFile) {
        self.archive_files.inc();
        self.archive_rows.inc_by(file.rows);
        self.archive_bytes.inc_by(file.bytes);
    }

    fn record_dead_lettered(&self, _topic: &str, reason: &'static str) {
        self.archive_dead_lettered.with_label_values(&[reason]).inc();
    }

    fn write_failed(&self, reason: &'static str) {
        self.archive_write_errors.with_label_values(&[reason]).inc();
    }

    fn write_recovered(&self, waited: std::time::Duration) {
        self.archive_retry_seconds.observe(waited.as_secs_f64());
    }

    fn sink_health(&self, healthy: bool) {
        self.archive_sink_healthy.set(i64::from(healthy));
    }

    fn paused_partitions(&self, partitions: usize) {
        self.archive_paused_partitions.set(partitions as i64);
    }

    fn buffered_rows(&self, rows: usize) {
        self.archive_buffered_rows.set(rows as i64);
    }

    fn assignment_changed(&self, partitions: usize) {
        self.archive_assigned_partitions.set(partitions as i64);
    }
}

/// Fixed-size ring of recent decisions.
#[derive(Debug)]
struct CoverageWindow {
    slots: Vec<bool>,
    next: usize,
    filled: usize,
    accepted: usize,
}

impl CoverageWindow {
    fn new(size: usize) -> CoverageWindow {
        CoverageWindow { slots: vec![false; size.max(1)], next: 0, filled: 0, accepted: 0 }
    }

    fn push(&mut self, accepted: bool) -> f64 {
        if self.filled == self.slots.len() {
            self.accepted -= usize::from(self.slots[self.next]);
        } else {
            self.filled += 1;
        }
        self.slots[self.next] = accepted;
        self.accepted += usize::from(accepted);
        self.next = (self.next + 1) % self.slots.len();
        self.accepted as f64 / self.filled as f64
    }
}

/// Liveness and readiness inputs (DESIGN §8: ready = model loaded, broker reachable, assigned).
#[derive(Debug, Default)]
pub struct Health {
    pub model_loaded: AtomicBool,
    pub broker_reachable: AtomicBool,
    /// Partitions currently assigned to the infer stage's consumer.
    pub assigned_partitions: AtomicI64,
    /// Set while the archive's storage fails (`archive.unhealthy_after_failures` consecutive
    /// failed writes, until one succeeds).
    pub archive_storage_failing: AtomicBool,
    /// The last SASL/TLS failure librdkafka reported, until partitions are assigned again.
    authentication_failure: std::sync::Mutex<Option<String>>,
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// For a process running only the archive stage: there is no model to load and no infer
    /// assignment to wait for, so it is ready once started.
    pub fn mark_archive_only(&self) {
        self.model_loaded.store(true, Ordering::Relaxed);
        self.broker_reachable.store(true, Ordering::Relaxed);
        self.assigned_partitions.store(1, Ordering::Relaxed);
    }

    /// Records (or, with `None`, clears) a Kafka authentication or TLS failure.
    pub fn set_authentication_failure(&self, detail: Option<&str>) {
        *self.authentication_failure.lock().unwrap_or_else(|p| p.into_inner()) = detail.map(str::to_owned);
    }

    /// `Ok` when ready, otherwise what is missing.
    pub fn readiness(&self) -> Result<(), String> {
        let mut missing = Vec::new();
        let auth = self.authentication_failure.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let auth = auth.map(|d| {
            format!(
                "kafka authentication failing ({d}; check security.protocol, sasl.* and ssl.* in kafka.properties)"
            )
        });
        if !self.model_loaded.load(Ordering::Relaxed) {
            missing.push("model not loaded");
        }
        if !self.broker_reachable.load(Ordering::Relaxed) {
            missing.push("broker not reachable");
        }
        if self.assigned_partitions.load(Ordering::Relaxed) <= 0 {
            missing.push("no partitions assigned");
        }
        if self.archive_storage_failing.load(Ordering::Relaxed) {
            missing
                .push("archive storage failing (writes are retried; see emogate_archive_write_errors_total)");
        }
        if let Some(auth) = &auth {
            missing.push(auth);
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join(", "))
        }
    }
}

/// Binds `addr` and serves `/metrics`, `/healthz`, `/readyz` until `shutdown` completes (e.g.
/// `async move { listener.wait().await }` on a `lifecycle::Shutdown`). Returns the bound address
/// (useful with port 0) and the server task.
pub async fn serve_http(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), TelemetryError> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|source| TelemetryError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| TelemetryError::Bind { addr, source })?;
    let task = tokio::spawn(async move {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else { continue };
            let metrics = Arc::clone(&metrics);
            let health = Arc::clone(&health);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let response = respond(req.uri().path(), &metrics, &health);
                    async move { Ok::<_, Infallible>(response) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await
                {
                    tracing::debug!(error = %e, "telemetry connection ended with an error");
                }
            });
        }
    });
    Ok((bound, task))
}

fn respond(path: &str, metrics: &Metrics, health: &Health) -> Response<Full<Bytes>> {
    metrics.ready.set(i64::from(health.readiness().is_ok()));
    let (status, content_type, body) = match path {
        "/metrics" => (StatusCode::OK, "text/plain; version=0.0.4", metrics.render()),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" => match health.readiness() {
            Ok(()) => (StatusCode::OK, "text/plain", "ready\n".to_string()),
            Err(missing) => {
                (StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("not ready: {missing}\n"))
            }
        },
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_string()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_window_averages_the_most_recent_decisions() {
        let mut w = CoverageWindow::new(4);
        assert_eq!(w.push(true), 1.0);
        assert_eq!(w.push(false), 0.5);
        w.push(false);
        assert_eq!(w.push(false), 0.25);
        assert_eq!(w.push(false), 0.0, "the first (accepted) decision fell out of the window");
        assert_eq!(w.push(true), 0.25);
    }

    #[test]
    fn metrics_render_with_design_names() {
        let m = Metrics::new().unwrap();
        m.records_consumed.with_label_values(&["ser.features"]).inc_by(3);
        m.records_dead_lettered.with_label_values(&["non_finite"]).inc();
        m.observe_prediction(true, [(Attribute::Valence, 0.5, true), (Attribute::Arousal, 0.5, true)]);
        m.observe_prediction(false, [(Attribute::Valence, 1.5, false), (Attribute::Arousal, 0.5, true)]);
        m.set_execution_provider("cpu", true);
        m.coverage_target.set(0.8);
        m.calibration_dev_gain.with_label_values(&["arousal"]).set(-0.25);
        let text = m.render();
        for name in [
            "emogate_records_consumed_total{topic=\"ser.features\"} 3",
            "emogate_records_accepted_total 1",
            "emogate_records_rejected_total 1",
            "emogate_records_dead_lettered_total{reason=\"non_finite\"} 1",
            "emogate_entropy_nats_count{attribute=\"valence\"} 2",
            "emogate_coverage_ratio{attribute=\"valence\"} 0.5",
            "emogate_coverage_ratio{attribute=\"arousal\"} 1",
            "emogate_coverage_target_ratio 0.8",
            "emogate_calibration_dev_gain_ratio{attribute=\"arousal\"} -0.25",
            "emogate_execution_provider_info{fallback=\"true\",provider=\"cpu\"} 1",
        ] {
            assert!(text.contains(name), "missing `{name}` in\n{text}");
        }
        assert_eq!(m.dead_lettered("non_finite"), 1);
        assert_eq!(m.dead_lettered("truncated"), 0);
        m.records_dead_lettered.with_label_values(&["truncated"]).inc_by(2);
        assert_eq!(m.dead_lettered_total(), 3);
        assert_eq!(m.records_out(), 5);
        assert_eq!(m.consumed_total(), 3);
    }

    #[tokio::test]
    async fn http_endpoints_answer() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let metrics = Arc::new(Metrics::new().unwrap());
        metrics.records_consumed.with_label_values(&["t"]).inc();
        let health = Health::new();
        let (trigger, listener) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = listener.await;
        };
        let (addr, task) =
            serve_http("127.0.0.1:0".parse().unwrap(), metrics, Arc::clone(&health), shutdown).await.unwrap();
        let get = |path: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        };
        let metrics_page = get("/metrics").await;
        assert!(metrics_page.starts_with("HTTP/1.1 200"), "{metrics_page}");
        assert!(metrics_page.contains("emogate_records_consumed_total{topic=\"t\"} 1"));
        assert!(metrics_page.contains("emogate_ready 0"));
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        let not_ready = get("/readyz").await;
        assert!(
            not_ready.starts_with("HTTP/1.1 503") && not_ready.contains("model not loaded"),
            "{not_ready}"
        );
        health.model_loaded.store(true, Ordering::Relaxed);
        health.broker_reachable.store(true, Ordering::Relaxed);
        health.assigned_partitions.store(1, Ordering::Relaxed);
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        trigger.send(()).unwrap();
        task.await.unwrap();
    }

    #[test]
    fn readiness_lists_what_is_missing() {
        let h = Health::default();
        assert_eq!(
            h.readiness().unwrap_err(),
            "model not loaded, broker not reachable, no partitions assigned"
        );
        h.model_loaded.store(true, Ordering::Relaxed);
        h.broker_reachable.store(true, Ordering::Relaxed);
        h.assigned_partitions.store(2, Ordering::Relaxed);
        assert!(h.readiness().is_ok());
        h.set_authentication_failure(Some("SASL PLAIN mechanism handshake failed"));
        let msg = h.readiness().unwrap_err();
        assert!(msg.contains("kafka authentication failing (SASL PLAIN") && msg.contains("sasl.*"), "{msg}");
        h.set_authentication_failure(None);
        assert!(h.readiness().is_ok());
    }
}
