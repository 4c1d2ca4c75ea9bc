//! The producing half of the infer stage: await each batch's model answer (in dispatch
//! order), route it, produce, and commit — the two delivery modes differ only here.
//!
//! * **at-least-once**: idempotent producer. All outputs of a batch are sent, every delivery
//!   report is awaited, and only then are the batch's input offsets committed. A crash between
//!   the two replays the batch (duplicates, no loss).
//! * **exactly-once**: transactional producer: begin, produce every output of one or more
//!   consecutive batches, `send_offsets_to_transaction` with the consumer's group metadata (so
//!   a member that lost its partitions in a rebalance is fenced), commit. The transaction is
//!   committed as soon as no further batch is waiting, so at low load it holds one batch and
//!   adds no latency; under load it collects up to `delivery.transaction_max_batches` batches
//!   or `delivery.transaction_max_ms`, so a backlog costs the broker fewer transactions
//!   (markers on every partition touched, offset commits). It does not speed up inference:
//!   the model was busy 98 % of the time with one batch per transaction too
//!   (docs/benchmarks.md, "Where the end-to-end time goes").
//!   On any failure the transaction is aborted and the offset book fails every batch not
//!   completed, which makes the source seek back; with a broker that hides aborted records
//!   from `read_committed` readers, nothing is duplicated.
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
    /// Exactly-once: most batches per transaction (`delivery.transaction_max_batches`).
    pub transaction_max_batches: usize,
    /// Exactly-once: longest a transaction collects batches (`delivery.transaction_max_ms`).
    pub transaction_max_age: Duration,
    pub report: InferReport,
}

/// An exactly-once transaction that has begun and is collecting batches.
struct OpenTransaction {
    started: Instant,
    /// Every batch produced in it, oldest first (completed and accounted at the commit).
    batches: Vec<TransactionBatch>,
}

struct TransactionBatch {
    epoch: u64,
    id: u64,
    outputs: Vec<Output>,
}

/// Why a batch could not be delivered.
#[derive(Debug)]
enum BatchFailure {
    /// Retry by rewinding (transaction aborted, delivery timed out, commit failed).
    Retry(String),
    /// The producer cannot go on.
    Fatal(String),
}

/// Sorts a producer error: fatal transaction errors stop the stage, the rest rewind.
fn classify(e: KafkaError) -> BatchFailure {
    let fatal = match &e {
        KafkaError::Transaction(t) => t.is_fatal(),
        _ => false,
    };
    if fatal {
        BatchFailure::Fatal(e.to_string())
    } else {
        BatchFailure::Retry(e.to_string())
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Sink {
    pub async fn run(
        mut self,
        mut from_source: mpsc::Receiver<InFlight>,
    ) -> Result<InferReport, PipelineError> {
        let mut open: Option<OpenTransaction> = None;
        loop {
            let next = match &open {
                None => from_source.recv().await,
                // An open transaction waits for more batches only until it is old enough.
                Some(txn) => {
                    let deadline = tokio::time::Instant::from_std(txn.started + self.transaction_max_age);
                    match tokio::time::timeout_at(deadline, from_source.recv()).await {
                        Ok(next) => next,
                        Err(_) => {
                            self.commit_open(&mut open).await?;
                            continue;
                        }
                    }
                }
            };
            let Some(job) = next else { break };
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
                    self.metrics.inference_seconds.observe(done.run_seconds);
                    let predictions = done.predictions.as_deref();
                    if let Err(e) = predictions {
                        tracing::error!(batch = batch.id, error = %e, rows = batch.rows.len(), "inference failed; dead-lettering the batch");
                    }
                    self.router.route(&batch, &done.features, predictions, now_ms())
                }
                None => self.router.route(&batch, &[], Ok(&[]), now_ms()),
            };
            match self.mode {
                DeliveryMode::AtLeastOnce => {
                    let delivered = self.deliver_acknowledged(epoch, batch.id, &outputs).await;
                    match delivered {
                        Ok(()) => self.account(&outputs),
                        Err(failure) => self.fail(failure)?,
                    }
                    drop(permit);
                }
                DeliveryMode::ExactlyOnce => {
                    let produced = self.produce_in_transaction(&mut open, epoch, batch.id, outputs).await;
                    if let Err(failure) = produced {
                        self.abort_open(&mut open, failure)?;
                    }
                    // The batch's outputs are with the producer: the source may form the next.
                    drop(permit);
                    let commit_now = open.as_ref().is_some_and(|txn| {
                        txn.batches.len() >= self.transaction_max_batches
                            || txn.started.elapsed() >= self.transaction_max_age
                            || from_source.is_empty()
                    });
                    if commit_now {
                        self.commit_open(&mut open).await?;
                    }
                }
            }
        }
        self.commit_open(&mut open).await?;
        if self.mode == DeliveryMode::AtLeastOnce {
            self.commit_sync_final();
        }
        Ok(self.report)
    }

    /// A failed batch: rewind (every batch not completed is re-read), or stop on a fatal one.
    fn fail(&mut self, failure: BatchFailure) -> Result<(), PipelineError> {
        let rewind_to = {
            let mut book = self.book.lock();
            book.fail();
            book.rewind_points().clone()
        };
        match failure {
            BatchFailure::Retry(reason) => {
                tracing::warn!(rewind_to = ?rewind_to, %reason, "delivery failed; rewinding");
                self.metrics.rewinds.inc();
                Ok(())
            }
            BatchFailure::Fatal(reason) => {
                Err(PipelineError::Fatal(format!("producer failed fatally: {reason}")))
            }
        }
    }

    /// At-least-once: produces `outputs`, waits for every acknowledgement, then commits the
    /// batch's offsets asynchronously.
    async fn deliver_acknowledged(
        &mut self,
        epoch: u64,
        id: u64,
        outputs: &[Output],
    ) -> Result<(), BatchFailure> {
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

    /// Exactly-once: produces a batch inside the open transaction, beginning one if none is
    /// open. The batch completes only when [`Sink::commit_open`] commits the transaction.
    async fn produce_in_transaction(
        &mut self,
        open: &mut Option<OpenTransaction>,
        epoch: u64,
        id: u64,
        outputs: Vec<Output>,
    ) -> Result<(), BatchFailure> {
        if open.is_none() {
            self.producer.begin_transaction().map_err(classify)?;
            *open = Some(OpenTransaction { started: Instant::now(), batches: Vec::new() });
        }
        let txn = open.as_mut().expect("opened above");
        let produced = self.produce_all(&outputs).await;
        // Held even when producing failed: the abort that follows logs how many batches it drops.
        txn.batches.push(TransactionBatch { epoch, id, outputs });
        produced
    }

    /// Commits the open transaction (if any): the input offsets of all its batches, then the
    /// commit. On failure it is aborted and every batch not completed is re-read.
    async fn commit_open(&mut self, open: &mut Option<OpenTransaction>) -> Result<(), PipelineError> {
        let Some(txn) = open.as_ref() else { return Ok(()) };
        let last = txn.batches.last().expect("a transaction begins with its first batch");
        let offsets = {
            let book = self.book.lock();
            if txn.batches.iter().any(|b| !book.is_current(b.epoch, b.id)) {
                Err(BatchFailure::Retry("batch abandoned by a rebalance".into()))
            } else {
                Ok(book.commit_offsets_through(last.id).unwrap_or_default())
            }
        };
        let committed = match offsets {
            Ok(offsets) => self.send_offsets_and_commit(&offsets),
            Err(failure) => Err(failure),
        };
        match committed {
            Ok(()) => {
                let txn = open.take().expect("checked above");
                {
                    let mut book = self.book.lock();
                    for batch in &txn.batches {
                        book.complete(batch.id);
                    }
                }
                for batch in &txn.batches {
                    self.account(&batch.outputs);
                }
                self.metrics.transaction_batches.observe(txn.batches.len() as f64);
                Ok(())
            }
            Err(failure) => self.abort_open(open, failure),
        }
    }

    fn send_offsets_and_commit(&self, offsets: &BTreeMap<i32, i64>) -> Result<(), BatchFailure> {
        let tpl = self.offsets_tpl(offsets);
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

    /// Aborts the open transaction after `failure`; all its batches (and every later one) are
    /// re-read. A failed abort is fatal: the producer's state is unknown.
    fn abort_open(
        &mut self,
        open: &mut Option<OpenTransaction>,
        failure: BatchFailure,
    ) -> Result<(), PipelineError> {
        let batches = open.take().map_or(0, |txn| txn.batches.len());
        self.metrics.transactions_aborted.inc();
        tracing::warn!(batches, "aborting the transaction");
        let producer = &self.producer;
        let timeout = self.timeout;
        let failure = match tokio::task::block_in_place(|| producer.abort_transaction(timeout)) {
            Ok(()) => failure,
            Err(e) => BatchFailure::Fatal(format!("{failure:?}; then abort failed: {e}")),
        };
        self.fail(failure)
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
