//! The Kafka side of the archive: a consumer in its own group over the output topics, feeding
//! an [`Archiver`] and committing what it says is durable.
//!
//! # Threading
//! The consumer is an `rdkafka` `BaseConsumer` on a dedicated OS thread rather than a
//! `StreamConsumer` on the async runtime: everything this stage does besides polling is
//! blocking work (Parquet encoding, `fsync`, synchronous commits), and the rebalance callback
//! must finish that work *before* librdkafka hands the partitions to another member — the
//! callback runs on the polling thread either way. One thread owning the consumer and the
//! buffers keeps that simple and keeps fsyncs off the runtime's workers. [`ArchiveStage::run`]
//! is the async face: it starts the thread and stops it when the shutdown future completes.
//!
//! # Consumer settings
//! `group.id` comes from [`ArchiveConfig::group_id`]; `enable.auto.commit=false` and
//! `enable.auto.offset.store=false` (offsets are committed explicitly, per partition, after the
//! file is durable); `isolation.level=read_committed` (rows of aborted infer transactions are
//! never archived); `auto.offset.reset=earliest` unless `properties` says otherwise (a new
//! archive group starts with what the topics still hold). Other `properties` (SASL, TLS, …) are
//! passed through; the four settings above always win.
//!
//! # Failed writes
//! The archiver keeps a file whose put failed (for a reason that may heal) and names its
//! partition for a pause; this loop applies pauses and resumes ([`apply_flow`]) after every
//! archiver call and keeps polling, so the group membership is kept, retries run from the
//! archiver's deadlines and a shutdown request is seen within [`MAX_POLL`]. A paused
//! partition is not fetched, so memory stays bounded; on resume the consumer seeks back to
//! the first record the archiver has not handled.
//!
//! # Rebalance and shutdown
//! On revocation the buffers of the revoked partitions are rolled and committed inside the
//! callback, before the partitions go. On shutdown every buffer is rolled and committed, then the
//! consumer leaves the group. Commits are synchronous. A failed store, or a failed commit while
//! the stage keeps the partition, stops the stage with an error and writes nothing more (see
//! `roll.rs` for why that keeps replays duplicate-free); a failed commit on revocation is only
//! logged, because the partition's state leaves with it and its next owner rewrites the one
//! uncommitted file under the same name. (librdkafka's mock cluster refuses commits while the
//! group rebalances, so the tests exercise that path; Kafka brokers accept commits from the
//! current generation while a rebalance is being prepared.)

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;

use super::archiver::{Archiver, CommitRequest};
use super::config::ArchiveConfig;
use super::dead_letter::KafkaDeadLetters;
use super::error::ArchiveError;
use super::location::ArchiveLocation;
use super::metrics::{ArchiveMetrics, ArchiveSummary, NoMetrics};
use super::object_sink::ObjectStoreSink;
use super::partition::validate_topic;
use super::roll::RollReason;
use super::sink::{ArchiveSink, LocalFsSink};
use crate::codec::WriterSchemas;
use crate::kafka_settings::ClientSettings;

/// Longest wait in one poll: bounds how late a shutdown request or an age roll is noticed.
const MAX_POLL: Duration = Duration::from_millis(100);

/// Where the archive stage reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveKafka {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Topics to archive: the infer stage's outputs (`emotion.accepted`, `emotion.rejected`).
    pub topics: Vec<String>,
    /// Extra librdkafka properties (security settings and the like), as in `kafka.properties`.
    pub properties: BTreeMap<String, String>,
}

impl ArchiveKafka {
    /// The default output topics on `brokers`, no extra properties.
    pub fn new(brokers: impl Into<String>) -> Self {
        ArchiveKafka {
            brokers: brokers.into(),
            topics: vec!["emotion.accepted".to_string(), "emotion.rejected".to_string()],
            properties: BTreeMap::new(),
        }
    }
}

/// A configured archive stage; [`ArchiveStage::run`] (async) or
/// [`ArchiveStage::run_blocking`] runs it.
pub struct ArchiveStage {
    config: ArchiveConfig,
    kafka: ArchiveKafka,
    /// `None`: built from `config.url`/`config.root` when the stage starts.
    sink: Option<Arc<dyn ArchiveSink>>,
    metrics: Arc<dyn ArchiveMetrics>,
}

impl ArchiveStage {
    /// A stage writing where `config` says (`url`, else `root`): a [`LocalFsSink`] or an
    /// [`ObjectStoreSink`], without metrics.
    pub fn new(config: ArchiveConfig, kafka: ArchiveKafka) -> Self {
        ArchiveStage { config, kafka, sink: None, metrics: Arc::new(NoMetrics) }
    }

    /// Stores files in `sink` instead.
    pub fn with_sink(mut self, sink: Arc<dyn ArchiveSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The configured sink (checked settings; an object-store client is built, no request is
    /// made).
    fn sink(&self) -> Result<(Arc<dyn ArchiveSink>, String), ArchiveError> {
        let location = self.config.location().map_err(|e| {
            ArchiveError::Config(super::config::InvalidArchiveConfig { field: "url", problem: e.problem })
        })?;
        if let Some(sink) = &self.sink {
            return Ok((Arc::clone(sink), sink.location("").trim_end_matches('/').to_string()));
        }
        let sink: Arc<dyn ArchiveSink> = match &location {
            ArchiveLocation::Local(root) => Arc::new(LocalFsSink::new(root.clone())),
            remote => Arc::new(ObjectStoreSink::connect(remote, &self.config.object_store.0)?),
        };
        Ok((sink, location.to_string()))
    }

    /// Reports to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn ArchiveMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The librdkafka configuration of the consumer (see the module docs).
    pub fn client_config(&self) -> ClientConfig {
        ClientSettings::new(&self.kafka.brokers)
            .default_value("auto.offset.reset", "earliest")
            .default_value("client.id", "emogate-archive")
            .properties(&self.kafka.properties)
            .owned("group.id", self.config.group_id.clone())
            .owned("enable.auto.commit", "false")
            .owned("enable.auto.offset.store", "false")
            .owned("isolation.level", "read_committed")
            .build()
    }

    /// Runs the stage on a dedicated thread until `shutdown` completes (then flushes, commits
    /// and returns the totals) or the stage fails. Dropping the returned future also stops it.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<ArchiveSummary, ArchiveError> {
        let stop = Arc::new(AtomicBool::new(false));
        let _stop_on_drop = StopOnDrop(stop.clone());
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
        let thread_stop = stop.clone();
        std::thread::Builder::new()
            .name("emogate-archive".to_string())
            .spawn(move || {
                // The receiver is gone only if the caller dropped the future; nothing to report then.
                let _ = done_tx.send(self.run_blocking(&thread_stop));
            })
            .map_err(|e| ArchiveError::Thread(format!("cannot start: {e}")))?;
        let thread_died = |_| Err(ArchiveError::Thread("it panicked".to_string()));
        tokio::pin!(shutdown);
        tokio::select! {
            result = &mut done_rx => return result.unwrap_or_else(thread_died),
            () = &mut shutdown => {}
        }
        tracing::info!("archive stage stopping: flushing buffers");
        stop.store(true, Ordering::SeqCst);
        done_rx.await.unwrap_or_else(thread_died)
    }

    /// Runs the stage on the calling thread until `stop` is set (then flushes, commits and
    /// returns the totals) or the stage fails.
    pub fn run_blocking(self, stop: &AtomicBool) -> Result<ArchiveSummary, ArchiveError> {
        self.config.validate()?;
        if self.kafka.topics.is_empty() {
            return Err(ArchiveError::NoTopics);
        }
        for topic in &self.kafka.topics {
            validate_topic(topic)?;
        }
        let client_config = self.client_config();
        let (sink, location) = self.sink()?;
        let dead_letters =
            KafkaDeadLetters::new(&self.kafka.brokers, &self.kafka.properties, &self.config.dlq_topic)?;
        self.metrics.sink_health(true);
        let schemas = match &self.config.writer_schemas_dir {
            Some(dir) => load_writer_schemas(dir)?,
            None => WriterSchemas::new(),
        };
        let archiver =
            Archiver::new(self.config.roll_policy(), self.config.parquet(), sink, self.metrics.clone())
                .with_retry(self.config.retry_policy())
                .with_writer_schemas(schemas)
                .with_dead_letters(Arc::new(dead_letters));
        let context = ArchiveContext {
            archiver: Mutex::new(archiver),
            failure: Mutex::new(None),
            metrics: self.metrics,
        };
        let consumer: BaseConsumer<ArchiveContext> = client_config
            .create_with_context(context)
            .map_err(|source| ArchiveError::Kafka { context: "creating the consumer", source })?;
        let topics: Vec<&str> = self.kafka.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| ArchiveError::Kafka { context: "subscribing", source })?;
        tracing::info!(topics = ?topics, group = %self.config.group_id, archive = %location, dlq = %self.config.dlq_topic, "archive stage started");

        let result = consume(&consumer, stop).and_then(|()| {
            let abandoned = consumer.context().archiver().abandoned_files();
            let commits = consumer.context().archiver().flush_all(RollReason::Shutdown)?;
            commit(&consumer, &commits)?;
            match consumer.context().archiver().abandoned_files() - abandoned {
                0 => Ok(()),
                files => Err(ArchiveError::Unstored { files }),
            }
        });
        if result.is_err() {
            consumer.context().archiver().stop();
        }
        let summary = consumer.context().archiver().summary();
        // Leaving the group runs the revoke callback with empty buffers (or a stopped archiver).
        drop(consumer);
        match result {
            Ok(()) => {
                tracing::info!(?summary, "archive stage stopped");
                Ok(summary)
            }
            Err(e) => {
                tracing::error!(error = %e, ?summary, "archive stage failed");
                Err(e)
            }
        }
    }
}

/// Starts the archive stage with a [`LocalFsSink`] at `config.root`, reporting to `metrics`,
/// and runs it until `shutdown` completes; returns the run's totals. It borrows its settings, so
/// await it in place (`tokio::join!`/`select!` with the infer stage); to `tokio::spawn` the stage,
/// use the owned `ArchiveStage::new(config, kafka).with_metrics(metrics).run(shutdown)`.
pub async fn run_archive_stage(
    config: &ArchiveConfig,
    kafka: &ArchiveKafka,
    metrics: Arc<dyn ArchiveMetrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<ArchiveSummary, ArchiveError> {
    ArchiveStage::new(config.clone(), kafka.clone()).with_metrics(metrics).run(shutdown).await
}

/// Every `*.avsc` file of `dir`, as writer schemas of `EmotionPrediction`.
fn load_writer_schemas(dir: &std::path::Path) -> Result<WriterSchemas, ArchiveError> {
    let fail = |what: String| ArchiveError::WriterSchemas(what);
    let entries = std::fs::read_dir(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "avsc"))
        .collect();
    paths.sort();
    let mut schemas = WriterSchemas::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        let fingerprint = schemas.add(&path.display().to_string(), &text).map_err(|e| fail(e.to_string()))?;
        tracing::info!(schema = %path.display(), fingerprint = %format!("{fingerprint:016x}"), "archive writer schema loaded");
    }
    Ok(schemas)
}

/// Sets the stop flag when the `run` future is dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Polls until `stop` or an error.
fn consume(consumer: &BaseConsumer<ArchiveContext>, stop: &AtomicBool) -> Result<(), ArchiveError> {
    while !stop.load(Ordering::SeqCst) {
        let deadline = consumer.context().archiver().next_deadline();
        let wait = deadline.map_or(MAX_POLL, |d| d.saturating_duration_since(Instant::now()).min(MAX_POLL));
        match consumer.poll(wait) {
            None => {}
            Some(Ok(message)) => {
                let commits = consumer.context().archiver().record_keyed(
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    message.key(),
                    message.payload(),
                    Instant::now(),
                )?;
                commit(consumer, &commits)?;
            }
            // librdkafka reports broker and fetch problems here and retries by itself.
            Some(Err(e)) => tracing::warn!(error = %e, "archive consumer error"),
        }
        if let Some(failure) = consumer.context().take_failure() {
            return Err(failure);
        }
        let commits = consumer.context().archiver().tick(Instant::now())?;
        commit(consumer, &commits)?;
        apply_flow(consumer)?;
    }
    Ok(())
}

/// Pauses the partitions whose file failed and resumes (seeking back) those whose file is now
/// stored.
fn apply_flow(consumer: &BaseConsumer<ArchiveContext>) -> Result<(), ArchiveError> {
    let flow = consumer.context().archiver().take_flow_changes();
    if flow.is_empty() {
        return Ok(());
    }
    let kafka = |context| move |source| ArchiveError::Kafka { context, source };
    if !flow.pause.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in &flow.pause {
            tpl.add_partition(topic, *partition);
        }
        consumer.pause(&tpl).map_err(kafka("pausing partitions"))?;
        tracing::warn!(partitions = ?flow.pause, "archive partitions paused until their file is stored");
    }
    for (topic, partition, seek_to) in &flow.resume {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, *partition);
        consumer.resume(&tpl).map_err(kafka("resuming a partition"))?;
        consumer
            .seek(topic, *partition, Offset::Offset(*seek_to), Duration::from_secs(10))
            .map_err(kafka("seeking a resumed partition"))?;
        tracing::info!(topic, partition, seek_to, "archive partition resumed");
    }
    Ok(())
}

/// Commits `commits` synchronously and reports them.
fn commit(consumer: &BaseConsumer<ArchiveContext>, commits: &[CommitRequest]) -> Result<(), ArchiveError> {
    let Some(first) = commits.first() else {
        return Ok(());
    };
    let fail = |source| ArchiveError::Commit {
        topic: first.topic.clone(),
        partition: first.partition,
        offset: first.next_offset,
        source,
    };
    let mut tpl = TopicPartitionList::new();
    for c in commits {
        tpl.add_partition_offset(&c.topic, c.partition, Offset::Offset(c.next_offset)).map_err(fail)?;
    }
    consumer.commit(&tpl, CommitMode::Sync).map_err(fail)?;
    let metrics = &consumer.context().metrics;
    for c in commits {
        tracing::debug!(topic = %c.topic, partition = c.partition, next_offset = c.next_offset, "offsets committed");
        metrics.offsets_committed(&c.topic, c.partition, c.next_offset);
    }
    Ok(())
}

/// Consumer context: owns the archiver so the rebalance callback can flush revoked partitions.
struct ArchiveContext {
    archiver: Mutex<Archiver>,
    /// First error raised inside a callback, for the polling loop to return.
    failure: Mutex<Option<ArchiveError>>,
    metrics: Arc<dyn ArchiveMetrics>,
}

impl ArchiveContext {
    /// The archiver. Only the consumer thread locks it (the loop, or a callback it runs), so
    /// the lock is never contended; a poisoned lock is taken over as is, since the archiver
    /// marks itself stopped before any error leaves it.
    fn archiver(&self) -> MutexGuard<'_, Archiver> {
        self.archiver.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take_failure(&self) -> Option<ArchiveError> {
        self.failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }

    fn fail(&self, error: ArchiveError) {
        let mut slot = self.failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            *slot = Some(error);
        }
    }
}

impl ClientContext for ArchiveContext {}

impl ConsumerContext for ArchiveContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let revoked: Vec<(String, i32)> =
            tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
        tracing::info!(partitions = ?revoked, "archive partitions revoked: flushing");
        let commits = match self.archiver().release(&revoked, RollReason::Revoked) {
            Ok(commits) => commits,
            // Already stopped: the failure that stopped it is being reported.
            Err(ArchiveError::Stopped) => return,
            Err(e) => {
                self.archiver().stop();
                self.fail(e);
                return;
            }
        };
        if let Err(e) = commit(consumer, &commits) {
            // Not fatal: the partitions and their state are gone from this consumer, so each has
            // exactly one file whose offsets are not committed (all earlier ones were, or the
            // stage would have stopped). The next owner starts at the last committed offset,
            // whose first row is that file's first row, and rewrites the same file.
            tracing::warn!(error = %e, "commit on revocation failed: the next owner rewrites the last file of each partition");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Error(e) = rebalance {
            tracing::warn!(error = %e, "archive rebalance error");
        }
        let assigned = consumer.assignment().map(|tpl| tpl.count()).unwrap_or(0);
        tracing::info!(assigned, "archive assignment changed");
        self.metrics.assignment_changed(assigned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_and_isolation_settings_cannot_be_overridden() {
        let mut kafka = ArchiveKafka::new("127.0.0.1:9092");
        for (k, v) in [
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "true"),
            ("isolation.level", "read_uncommitted"),
            ("group.id", "emogate-infer"),
            ("bootstrap.servers", "elsewhere:9092"),
            ("auto.offset.reset", "latest"),
            ("security.protocol", "SASL_SSL"),
        ] {
            kafka.properties.insert(k.to_string(), v.to_string());
        }
        let config = ArchiveConfig { group_id: "archive-a".into(), ..ArchiveConfig::default() };
        let c = ArchiveStage::new(config, kafka).client_config();
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        assert_eq!(c.get("group.id"), Some("archive-a"));
        assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:9092"));
        // Pass-through settings stay, including a chosen reset policy.
        assert_eq!(c.get("auto.offset.reset"), Some("latest"));
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        let defaults = ArchiveStage::new(ArchiveConfig::default(), ArchiveKafka::new("b:1")).client_config();
        assert_eq!(defaults.get("auto.offset.reset"), Some("earliest"));
    }

    #[test]
    fn the_owned_run_future_can_be_spawned() {
        fn spawnable<F: Future + Send + 'static>(_: &F) {}
        let future = ArchiveStage::new(ArchiveConfig::default(), ArchiveKafka::new("b:1")).run(async {});
        spawnable(&future);
    }

    #[test]
    fn bad_settings_fail_before_connecting() {
        let stop = AtomicBool::new(false);
        let mut kafka = ArchiveKafka::new("127.0.0.1:1");
        kafka.topics = vec![];
        let err = ArchiveStage::new(ArchiveConfig::default(), kafka.clone()).run_blocking(&stop).unwrap_err();
        assert!(matches!(err, ArchiveError::NoTopics), "{err}");
        kafka.topics = vec!["../etc".into()];
        let err = ArchiveStage::new(ArchiveConfig::default(), kafka.clone()).run_blocking(&stop).unwrap_err();
        assert!(matches!(err, ArchiveError::Topic(_)), "{err}");
        let config = ArchiveConfig { roll_rows: 0, ..ArchiveConfig::default() };
        let err =
            ArchiveStage::new(config, ArchiveKafka::new("127.0.0.1:1")).run_blocking(&stop).unwrap_err();
        assert!(matches!(err, ArchiveError::Config(_)), "{err}");
    }

    #[test]
    fn writer_schemas_load_from_avsc_files_and_bad_ones_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (v2, _) =
            crate::codec::resolve_testing::added_field_record(&crate::archive::testing::prediction(1));
        std::fs::write(dir.path().join("emotion_prediction.v2.avsc"), &v2).unwrap();
        std::fs::write(dir.path().join("README.txt"), "not a schema, not loaded").unwrap();
        assert_eq!(load_writer_schemas(dir.path()).unwrap().len(), 1);
        std::fs::write(dir.path().join("broken.avsc"), "{").unwrap();
        let err = load_writer_schemas(dir.path()).unwrap_err();
        assert!(err.to_string().contains("broken.avsc"), "{err}");
        let err = load_writer_schemas(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
