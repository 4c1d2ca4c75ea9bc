//! The producing half of the infer stage: await each batch's model answer (in dispatch
//! order), route it, produce, and commit — the two delivery modes differ only here.
//!
//! * **at-least-once**: idempotent producer. All outputs of a batch are sent, every delivery
//!   report is awaited, and only then are the batch's input offsets committed. A crash between
//!   the two replays the batch (duplicates, no loss).
//! * **exactly-once**: transactional producer, one transaction per batch: begin, produce every
//!   output, `send_offsets_to_transaction` with the consumer's group metadata (so a member that
//!   lost its partitions in a rebalance is fenced), commit. On any failure the transaction is
//!   aborted and the offset book fails the batch, which makes the source seek back; with a
//!   broker that hides aborted records from `read_committed` readers, nothing is duplicated.
//!
//! A fatal producer error (fenced by a newer instance with the same `transactional.id`, or
//! the idempotent producer's fatal state) stops the stage: continuing could only duplicate or
//! reorder output.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::error::PipelineError;
use super::infer::InFlight;
use super::kafka::SharedBook;
use super::router::{Output, Route, Router};
use super::source::InferConsumer;
use super::InferReport;
use crate::config::{DeliveryMode, TopicsConfig};
use crate::model::ModelError;
use crate::telemetry::Metrics;

/// Longest wait for the at-least-once final commit at shutdown.
const FINAL_COMMIT_WAIT: Duration = Duration::from_secs(5);

pub(crate) struct Sink {
    pub consumer: Arc<InferConsumer>,
    pub producer: FutureProducer,
    pub mode: DeliveryMode,
    pub book: Arc<SharedBook>,
    pub router: Router,
    pub topics: TopicsConfig,
    pub metrics: Arc<Metrics>,
    pub timeout: Duration,
    pub report: InferReport,
}

/// Why a batch could not be delivered.
#[derive(Debug)]
enum BatchFailure {
    /// Retry by rewinding (transaction aborted, delivery timed out, commit failed).
    Retry(String),
    /// The producer cannot go on.
    Fatal(String),
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Sink {
    pub async fn run(
        mut self,
        mut from_source: mpsc::Receiver<InFlight>,
    ) -> Result<InferReport, PipelineError> {
        while let Some(job) = from_source.recv().await {
            if !self.book.lock().is_current(job.epoch, job.batch.id) {
                continue; // discarded by a rewind; its records are being re-read
            }
            let InFlight { epoch, batch, result, permit } = job;
            let done = match result {
                Some(rx) => Some(rx.await.map_err(|_| PipelineError::Model(ModelError::PoolClosed))?),
                None => None,
            };
            let outputs = match &done {
                Some(done) => {
                    self.metrics.inference_seconds.observe(done.seconds);
                    let predictions = done.result.predictions.as_deref();
                    if let Err(e) = predictions {
                        tracing::error!(batch = batch.id, error = %e, rows = batch.rows.len(), "inference failed; dead-lettering the batch");
                    }
                    self.router.route(&batch, &done.result.features, predictions, now_ms())
                }
                None => self.router.route(&batch, &[], Ok(&[]), now_ms()),
            };
            let first_offsets: BTreeMap<i32, i64> = batch.ranges.iter().map(|(p, r)| (*p, r.first)).collect();
            match self.deliver(epoch, batch.id, &outputs).await {
                Ok(()) => self.account(&outputs),
                Err(BatchFailure::Retry(reason)) => {
                    tracing::warn!(batch = batch.id, first_offsets = ?first_offsets, %reason, "batch failed; rewinding");
                    self.book.lock().fail();
                    self.metrics.rewinds.inc();
                }
                Err(BatchFailure::Fatal(reason)) => {
                    self.book.lock().fail();
                    return Err(PipelineError::Fatal(format!("producer failed fatally: {reason}")));
                }
            }
            drop(permit);
        }
        if self.mode == DeliveryMode::AtLeastOnce {
            self.commit_sync_final();
        }
        Ok(self.report)
    }

    /// Produces `outputs` and commits the batch's offsets according to the delivery mode.
    async fn deliver(&mut self, epoch: u64, id: u64, outputs: &[Output]) -> Result<(), BatchFailure> {
        match self.mode {
            DeliveryMode::AtLeastOnce => {
                self.produce_all(outputs).await?;
                let commit = {
                    let mut book = self.book.lock();
                    if !book.is_current(epoch, id) {
                        // A rebalance gave up on this batch while it was being produced: its
                        // outputs exist, but the new owner re-reads it (at-least-once).
                        return Ok(());
                    }
                    book.complete(id).unwrap_or_default()
                };
                self.commit_async(&commit);
                Ok(())
            }
            DeliveryMode::ExactlyOnce => self.deliver_transaction(epoch, id, outputs).await,
        }
    }

    async fn deliver_transaction(
        &mut self,
        epoch: u64,
        id: u64,
        outputs: &[Output],
    ) -> Result<(), BatchFailure> {
        let classify = |e: KafkaError| {
            let fatal = match &e {
                KafkaError::Transaction(t) => t.is_fatal(),
                _ => false,
            };
            if fatal {
                BatchFailure::Fatal(e.to_string())
            } else {
                BatchFailure::Retry(e.to_string())
            }
        };
        self.producer.begin_transaction().map_err(classify)?;
        let result: Result<(), BatchFailure> = async {
            self.produce_all(outputs).await?;
            let offsets = {
                let book = self.book.lock();
                if !book.is_current(epoch, id) {
                    return Err(BatchFailure::Retry("batch abandoned by a rebalance".into()));
                }
                book.commit_offsets_of(id).unwrap_or_default()
            };
            let tpl = self.offsets_tpl(&offsets);
            let metadata = self
                .consumer
                .group_metadata()
                .ok_or_else(|| BatchFailure::Retry("consumer has no group metadata yet".into()))?;
            let timeout = self.timeout;
            let producer = &self.producer;
            tokio::task::block_in_place(|| {
                producer.send_offsets_to_transaction(&tpl, &metadata, timeout)?;
                producer.commit_transaction(timeout)
            })
            .map_err(classify)
        }
        .await;
        match result {
            Ok(()) => {
                self.book.lock().complete(id);
                Ok(())
            }
            Err(failure) => {
                self.metrics.transactions_aborted.inc();
                let producer = &self.producer;
                let timeout = self.timeout;
                match tokio::task::block_in_place(|| producer.abort_transaction(timeout)) {
                    Ok(()) => Err(failure),
                    Err(e) => Err(BatchFailure::Fatal(format!("{failure:?}; then abort failed: {e}"))),
                }
            }
        }
    }

    /// Sends every output and waits for all delivery reports; the first error wins.
    ///
    /// A failed delivery is retried (rewind and re-read) unless the producer can never
    /// deliver again: fenced (`ProducerFenced`, which a restarted Tansu also answers to an
    /// idempotent producer) or holding a librdkafka fatal error. Retrying those would spin
    /// forever, so the stage stops with the reason and a restarted process (new producer)
    /// continues from the committed offsets.
    async fn produce_all(&self, outputs: &[Output]) -> Result<(), BatchFailure> {
        let sends = outputs.iter().map(|o| {
            let mut headers = OwnedHeaders::new_with_capacity(o.headers.len());
            for (key, value) in &o.headers {
                headers = headers.insert(Header { key, value: Some(value.as_str()) });
            }
            let mut record = FutureRecord::to(o.topic(&self.topics)).payload(&o.payload).headers(headers);
            if let Some(key) = &o.key {
                record = record.key(key);
            }
            self.producer.send(record, Timeout::After(self.timeout))
        });
        for (result, output) in join_all(sends).await.into_iter().zip(outputs) {
            if let Err((e, _)) = result {
                let reason = format!(
                    "delivery to {} for input {}/{} failed: {e}",
                    output.topic(&self.topics),
                    output.position.partition,
                    output.position.offset
                );
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::ProducerFenced) {
                    return Err(BatchFailure::Fatal(reason));
                }
                return Err(match self.producer.client().fatal_error() {
                    Some((code, fatal)) => {
                        BatchFailure::Fatal(format!("{reason}; fatal producer error {code:?}: {fatal}"))
                    }
                    None => BatchFailure::Retry(reason),
                });
            }
        }
        Ok(())
    }

    fn offsets_tpl(&self, offsets: &BTreeMap<i32, i64>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (partition, next) in offsets {
            // Offsets come from consumed messages, so they are always representable.
            let _ = tpl.add_partition_offset(&self.router.input_topic, *partition, Offset::Offset(*next));
        }
        tpl
    }

    fn commit_async(&self, offsets: &BTreeMap<i32, i64>) {
        if offsets.is_empty() {
            return;
        }
        if let Err(e) = self.consumer.commit(&self.offsets_tpl(offsets), CommitMode::Async) {
            tracing::warn!(error = %e, offsets = ?offsets, "offset commit could not be queued (records will be replayed)");
        }
    }

    /// Re-commits everything completed, synchronously, before the stage exits, so the last
    /// asynchronous commits cannot be lost with the consumer. librdkafka's synchronous commit
    /// has no timeout and a broker may hold it while a rebalance waits for members that no
    /// longer poll (the source has stopped), so it runs on its own thread and is waited for at
    /// most [`FINAL_COMMIT_WAIT`]; if it does not finish, the batches since the last
    /// acknowledged commit are replayed by the next owner (at-least-once).
    fn commit_sync_final(&self) {
        let committed = self.book.lock().committed().clone();
        if committed.is_empty() {
            return;
        }
        let tpl = self.offsets_tpl(&committed);
        let consumer = Arc::clone(&self.consumer);
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new().name("emogate-final-commit".into()).spawn(move || {
            let _ = tx.send(consumer.commit(&tpl, CommitMode::Sync));
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the final commit (records since the last commit will be replayed)");
            return;
        }
        let wait = self.timeout.min(FINAL_COMMIT_WAIT);
        match tokio::task::block_in_place(|| rx.recv_timeout(wait)) {
            Ok(Ok(())) => tracing::info!(offsets = ?committed, "final offsets committed"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "final offset commit failed (records since the last commit will be replayed)")
            }
            Err(_) => tracing::warn!(
                wait_ms = wait.as_millis() as u64,
                "final offset commit not acknowledged in time (records since the last commit will be replayed)"
            ),
        }
    }

    /// Metrics and report for a delivered batch.
    fn account(&mut self, outputs: &[Output]) {
        let now = now_ms();
        let mut rows = 0;
        for o in outputs {
            match (&o.prediction, o.reason) {
                (Some(p), _) => {
                    rows += 1;
                    let accepted = o.route == Route::Accepted;
                    self.metrics.observe_prediction(
                        accepted,
                        p.attributes.iter().map(|(a, x)| (a, x.entropy, x.accepted)),
                    );
                    self.report.add_prediction(p);
                    if let Some(ts) = o.input_timestamp_ms {
                        self.metrics.end_to_end_latency_seconds.observe((now - ts).max(0) as f64 / 1000.0);
                    }
                }
                (None, Some(reason)) => {
                    self.metrics.records_dead_lettered.with_label_values(&[reason]).inc();
                    *self.report.dead_lettered.entry(reason.to_string()).or_default() += 1;
                    let detail = o.headers.iter().find(|(k, _)| *k == super::router::HEADER_ERROR_DETAIL);
                    tracing::warn!(
                        partition = o.position.partition,
                        offset = o.position.offset,
                        reason,
                        detail = detail.map_or("", |(_, v)| v.as_str()),
                        "record dead-lettered"
                    );
                }
                (None, None) => {}
            }
        }
        self.metrics.batches.inc();
        self.report.batches += 1;
        self.report.last_output_at = Some(Instant::now());
        tracing::debug!(rows, outputs = outputs.len(), "batch delivered and committed");
    }
}
