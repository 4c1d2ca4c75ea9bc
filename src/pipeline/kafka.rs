//! librdkafka clients: the settings the pipeline's guarantees depend on, and the consumer
//! context that keeps the offset book consistent across rebalances.
//!
//! emogate owns the properties in [`crate::config::OWNED_PROPERTIES`] (auto-commit off, offsets
//! stored by the pipeline, `read_committed`, idempotence, `transactional.id`); everything in
//! `kafka.properties` is applied on top, so SASL/TLS and tuning work as with any librdkafka
//! client.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::TopicPartitionList;

use super::offsets::OffsetBook;
use crate::config::{Config, DeliveryMode};
use crate::telemetry::{Health, Metrics};

/// Settings common to every client: brokers, statistics, then the passthrough properties.
fn base_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka.brokers);
    if config.telemetry.stats_interval_ms > 0 {
        c.set("statistics.interval.ms", config.telemetry.stats_interval_ms.to_string());
    }
    c.set_log_level(RDKafkaLogLevel::Warning);
    c
}

fn apply_properties(mut c: ClientConfig, config: &Config) -> ClientConfig {
    for (k, v) in config.kafka.properties.iter() {
        c.set(k, v);
    }
    c
}

/// A consumer of `group`: manual offset management, `read_committed` (so a transactional
/// upstream's aborted records are skipped), `earliest` on a new group (so a fresh deployment
/// processes the backlog rather than silently skipping it; override `auto.offset.reset`).
/// The archive stage uses this with `kafka.archive_group_id`.
pub fn consumer_config(config: &Config, group: &str) -> ClientConfig {
    let mut c = base_config(config);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest");
    apply_properties(c, config)
}

/// The infer stage's producer: idempotent always; transactional in exactly-once mode.
///
/// `message.timeout.ms` defaults to `delivery.commit_timeout_ms` (which validation keeps at
/// most the transaction timeout): librdkafka's own default of 5 minutes would keep a batch's delivery reports
/// pending that long after a broker restart, holding its in-flight permit while nothing moves
/// (found by the fault suite's broker-restart test). A delivery that times out fails the batch,
/// which is rewound and re-read — never lost. `kafka.properties` may still override it.
///
/// `compression.type` defaults to lz4: the predictions are about 1 % of the input's bytes, so
/// their compression ratio hardly matters, but zstd built a compression context per message set
/// and took 0.3–0.8 % more of the process's CPU than lz4, from the model's cores
/// (docs/benchmarks.md).
pub fn producer_config(config: &Config) -> ClientConfig {
    let mut c = base_config(config);
    c.set("enable.idempotence", "true").set("linger.ms", "5").set("compression.type", "lz4");
    if config.delivery.mode == DeliveryMode::ExactlyOnce {
        c.set("transactional.id", config.transactional_id())
            .set("transaction.timeout.ms", config.delivery.transaction_timeout_ms.to_string());
    }
    c.set("message.timeout.ms", config.delivery.commit_timeout_ms.to_string());
    apply_properties(c, config)
}

/// The offset book shared by the source (dispatch, rewind), the sink (complete, fail) and
/// the rebalance callback (wait for in-flight work, revoke).
#[derive(Debug, Default)]
pub struct SharedBook {
    book: Mutex<OffsetBook>,
    idle: Condvar,
    /// Mirror of the book's epoch, so the source can notice a rewind without locking.
    epoch: AtomicU64,
}

impl SharedBook {
    pub fn lock(&self) -> BookGuard<'_> {
        BookGuard { shared: self, guard: Some(self.book.lock().unwrap_or_else(|p| p.into_inner())) }
    }

    /// Epoch without taking the lock.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Waits until no batch is in flight; false if `timeout` passed first.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.book.lock().unwrap_or_else(|p| p.into_inner());
        while guard.in_flight() > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = self.idle.wait_timeout(guard, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }
}

/// Lock on the book that publishes the epoch and wakes idle waiters on release.
pub struct BookGuard<'a> {
    shared: &'a SharedBook,
    guard: Option<MutexGuard<'a, OffsetBook>>,
}

impl std::ops::Deref for BookGuard<'_> {
    type Target = OffsetBook;
    fn deref(&self) -> &OffsetBook {
        self.guard.as_ref().expect("guard is present until drop")
    }
}

impl std::ops::DerefMut for BookGuard<'_> {
    fn deref_mut(&mut self) -> &mut OffsetBook {
        self.guard.as_mut().expect("guard is present until drop")
    }
}

impl Drop for BookGuard<'_> {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            self.shared.epoch.store(guard.epoch(), Ordering::Release);
            let idle = guard.in_flight() == 0;
            drop(guard);
            if idle {
                self.shared.idle.notify_all();
            }
        }
    }
}

/// Consumer context of the infer stage.
pub struct InferContext {
    pub(crate) topic: String,
    pub(crate) book: Arc<SharedBook>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) health: Arc<Health>,
    /// How long a revocation waits for in-flight batches to be produced and committed.
    pub(crate) revoke_wait: Duration,
    /// Partitions revoked since the source last looked (it drops their held records).
    pub(crate) revoked: Mutex<Vec<i32>>,
    pub(crate) revoked_flag: AtomicBool,
    /// Whether the source wants its assignment paused (backpressure). librdkafka keeps a
    /// partition's pause flag across a revoke and re-assign, so a partition paused before a
    /// rebalance would stay paused for good once the source resumed an (empty) assignment in
    /// between — the stall the fault suite's broker-restart test found. Each new assignment is
    /// therefore set to this state when it arrives.
    pub(crate) paused: AtomicBool,
}

impl InferContext {
    fn partitions_of(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements().iter().filter(|e| e.topic() == self.topic).map(|e| e.partition()).collect()
    }

    /// Revoked partitions since the last call.
    pub(crate) fn take_revoked(&self) -> Vec<i32> {
        if !self.revoked_flag.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl ClientContext for InferContext {
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            for (partition, stats) in &topic.partitions {
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[self.topic.as_str(), &partition.to_string()])
                        .set(stats.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.health.broker_reachable.store(false, Ordering::Relaxed);
        }
        tracing::error!(error = %error, reason, "kafka client error");
    }
}

impl ConsumerContext for InferContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else { return };
        let partitions = self.partitions_of(tpl);
        // Finish in-flight work before the partitions move, so the new owner starts exactly
        // where this member stopped. If it takes too long, drop it instead: nothing of it is
        // committed, so the new owner re-reads it (a transaction in flight is fenced by the
        // new group generation and aborted).
        if !self.book.wait_idle(self.revoke_wait) {
            tracing::warn!(
                partitions = ?partitions,
                wait_ms = self.revoke_wait.as_millis() as u64,
                "rebalance: in-flight batches not finished in time, abandoning them (they will be re-read)"
            );
            self.book.lock().fail();
            self.metrics.rewinds.inc();
        }
        self.book.lock().revoke(&partitions);
        self.revoked.lock().unwrap_or_else(|p| p.into_inner()).extend(&partitions);
        self.revoked_flag.store(true, Ordering::Release);
        self.health.assigned_partitions.fetch_sub(partitions.len() as i64, Ordering::Relaxed);
        for p in &partitions {
            let _ = self.metrics.consumer_lag.remove_label_values(&[self.topic.as_str(), &p.to_string()]);
        }
        tracing::info!(partitions = ?partitions, "partitions revoked");
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions = self.partitions_of(tpl);
                let paused = self.paused.load(Ordering::Acquire);
                let result = if paused { consumer.pause(tpl) } else { consumer.resume(tpl) };
                if let Err(e) = result {
                    tracing::warn!(error = %e, paused, "cannot set the pause state of the new assignment");
                }
                self.health.assigned_partitions.fetch_add(partitions.len() as i64, Ordering::Relaxed);
                self.health.broker_reachable.store(true, Ordering::Relaxed);
                tracing::info!(partitions = ?partitions, "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance error"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            // Only at-least-once commits land here; a lost commit means a replay (duplicates),
            // never a loss, because offsets are committed only after delivery.
            tracing::warn!(error = %e, offsets = ?offsets.to_topic_map(), "offset commit failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer_setting(config: &Config, name: &str) -> Option<String> {
        producer_config(config).get(name).map(str::to_string)
    }

    #[test]
    fn producer_defaults_to_lz4_and_kafka_properties_override_it() {
        let mut config = Config::default();
        assert_eq!(producer_setting(&config, "compression.type").as_deref(), Some("lz4"));
        assert_eq!(producer_setting(&config, "enable.idempotence").as_deref(), Some("true"));
        let timeout = config.delivery.commit_timeout_ms.to_string();
        assert_eq!(producer_setting(&config, "message.timeout.ms"), Some(timeout));

        config.kafka.properties.0.insert("compression.type".into(), "zstd".into());
        assert_eq!(producer_setting(&config, "compression.type").as_deref(), Some("zstd"));
    }

    #[test]
    fn exactly_once_producer_is_transactional_and_at_least_once_is_not() {
        let mut config = Config::default();
        config.delivery.mode = DeliveryMode::ExactlyOnce;
        assert_eq!(producer_setting(&config, "transactional.id"), Some(config.transactional_id()));
        config.delivery.mode = DeliveryMode::AtLeastOnce;
        assert_eq!(producer_setting(&config, "transactional.id"), None);
    }
}
