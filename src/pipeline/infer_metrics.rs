//! What the infer stage reports, as events: the steps and the processor call
//! [`InferMetrics`] and know nothing of Prometheus or of `/readyz`, as the archive stage does
//! through `ArchiveMetrics`. [`ServiceMetrics`] is the implementation the service runs with:
//! the process's Prometheus registry (DESIGN §8) and its health flags.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::codec::EmotionPrediction;
use crate::telemetry::{Health, Metrics};

/// Events of the infer stage. Every method has a no-op default; implementations must be cheap
/// and must not block (they run on the thread that polls Kafka).
pub trait InferMetrics: Send + Sync {
    /// One input record was consumed.
    fn record_consumed(&self) {}
    /// A batch of `rows` decoded records was handed to the model.
    fn batch_dispatched(&self, _rows: usize) {}
    /// The model ran one batch in `run_seconds` (queueing excluded).
    fn batch_inferred(&self, _run_seconds: f64) {}
    /// A prediction was delivered (and, at least once, its offsets queued for commit);
    /// `latency_seconds` is from the input record's Kafka timestamp.
    fn prediction_delivered(
        &self,
        _prediction: &EmotionPrediction,
        _accepted: bool,
        _latency_seconds: Option<f64>,
    ) {
    }
    /// A record was delivered to the dead-letter topic for `reason`.
    fn dead_lettered(&self, _reason: &'static str) {}
    /// A whole batch was delivered.
    fn batch_delivered(&self) {}
    /// An exactly-once transaction holding `batches` batches committed.
    fn transaction_committed(&self, _batches: usize) {}
    /// An exactly-once transaction was aborted.
    fn transaction_aborted(&self) {}
    /// Work in flight was thrown away and the consumer sought back to re-read it.
    fn rewound(&self) {}
    /// A producer retired after a fatal error was replaced by a new one.
    fn producer_renewed(&self) {}
    /// The consumer's assignment was paused (backpressure) or resumed.
    fn paused(&self, _paused: bool) {}
    /// librdkafka's statistics gave a partition's consumer lag.
    fn consumer_lag(&self, _partition: i32, _lag: i64) {}
    /// Partitions joined the assignment.
    fn partitions_assigned(&self, _partitions: &[i32]) {}
    /// Partitions left the assignment.
    fn partitions_revoked(&self, _partitions: &[i32]) {}
    /// librdkafka reported every broker down.
    fn brokers_down(&self) {}
    /// A connection failed authentication or its TLS handshake (`detail`: librdkafka's reason).
    fn authentication_failed(&self, _detail: &str) {}
    /// The stage stopped consuming (it owns no partitions any more).
    fn stopped(&self) {}
}

/// The service's implementation: Prometheus metrics and `/readyz` health.
pub struct ServiceMetrics {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    topic: String,
    /// `emogate_records_consumed_total{topic}` of the input topic, resolved once.
    consumed: prometheus::IntCounter,
}

impl ServiceMetrics {
    pub fn new(metrics: Arc<Metrics>, health: Arc<Health>, input_topic: &str) -> ServiceMetrics {
        let consumed = metrics.records_consumed.with_label_values(&[input_topic]);
        ServiceMetrics { metrics, health, topic: input_topic.to_string(), consumed }
    }
}

impl InferMetrics for ServiceMetrics {
    fn record_consumed(&self) {
        self.consumed.inc();
    }

    fn batch_dispatched(&self, rows: usize) {
        self.metrics.batch_size.observe(rows as f64);
    }

    fn batch_inferred(&self, run_seconds: f64) {
        self.metrics.inference_seconds.observe(run_seconds);
    }

    fn prediction_delivered(
        &self,
        prediction: &EmotionPrediction,
        accepted: bool,
        latency_seconds: Option<f64>,
    ) {
        self.metrics.observe_prediction(
            accepted,
            prediction.attributes.iter().map(|(a, x)| (a, x.entropy, x.accepted)),
        );
        if let Some(seconds) = latency_seconds {
            self.metrics.end_to_end_latency_seconds.observe(seconds);
        }
    }

    fn dead_lettered(&self, reason: &'static str) {
        self.metrics.records_dead_lettered.with_label_values(&[reason]).inc();
    }

    fn batch_delivered(&self) {
        self.metrics.batches.inc();
    }

    fn transaction_committed(&self, batches: usize) {
        self.metrics.transaction_batches.observe(batches as f64);
    }

    fn transaction_aborted(&self) {
        self.metrics.transactions_aborted.inc();
    }

    fn rewound(&self) {
        self.metrics.rewinds.inc();
    }

    fn producer_renewed(&self) {
        self.metrics.producer_renewals.inc();
    }

    fn paused(&self, paused: bool) {
        self.metrics.paused.set(i64::from(paused));
    }

    fn consumer_lag(&self, partition: i32, lag: i64) {
        self.metrics.consumer_lag.with_label_values(&[self.topic.as_str(), &partition.to_string()]).set(lag);
    }

    fn partitions_assigned(&self, partitions: &[i32]) {
        self.health.assigned_partitions.fetch_add(partitions.len() as i64, Ordering::Relaxed);
        self.health.broker_reachable.store(true, Ordering::Relaxed);
        self.health.set_authentication_failure(None);
    }

    fn partitions_revoked(&self, partitions: &[i32]) {
        self.health.assigned_partitions.fetch_sub(partitions.len() as i64, Ordering::Relaxed);
        for p in partitions {
            let _ = self.metrics.consumer_lag.remove_label_values(&[self.topic.as_str(), &p.to_string()]);
        }
    }

    fn brokers_down(&self) {
        self.health.broker_reachable.store(false, Ordering::Relaxed);
    }

    fn authentication_failed(&self, detail: &str) {
        self.health.set_authentication_failure(Some(detail));
    }

    fn stopped(&self) {
        self.health.assigned_partitions.store(0, Ordering::Relaxed);
    }
}
