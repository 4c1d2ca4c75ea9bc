//! The last step: produce a batch's messages and complete its offsets — the two delivery
//! modes differ only here.
//!
//! * **at-least-once** (acked): idempotent producer. All outputs of a batch are sent, every
//!   delivery report is collected, and only then are the batch's input offsets committed
//!   (asynchronously). A crash between the two replays the batch (duplicates, no loss).
//! * **exactly-once** (transactional): begin, produce every output of one or more consecutive
//!   batches, `send_offsets_to_transaction` with the consumer's group metadata (so a member that
//!   lost its partitions in a rebalance is fenced), commit; when to commit is the pure
//!   [`TransactionPolicy`]. On any failure the transaction is aborted; with a broker that hides
//!   aborted records from `read_committed` readers, nothing is duplicated.
//!
//! Produce and commit are one step because a transaction spans batches. The step owns the
//! chain's [`OffsetBook`]. A failure that a new attempt may heal is [`StepError::Retry`] (the
//! processor throws the chain away and re-reads from the first record not completed). A fatal
//! producer error (fenced, e.g. by a restarted broker, or the idempotent producer's fatal
//! state) retires the producer ([`ProducerSlot`]) and retries the same way: the next chain
//! gets a new producer with the same settings and `transactional.id`, so the stage survives a
//! broker restart in place. Only when renewals exceed their rate is it [`StepError::Fatal`].
//!
//! Sending never blocks the polling thread: a full librdkafka queue leaves the rest of the
//! batch unsent until the next poll, and the step refuses new batches meanwhile.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::error::PipelineError;
use super::infer_metrics::InferMetrics;
use super::offsets::OffsetBook;
use super::processor::InferConsumer;
use super::producer_slot::ProducerSlot;
use super::route_step::{now_ms, Routed};
use super::router::{Output, Route, HEADER_ERROR_DETAIL};
use super::step::{poll_until, Rejected, Step, StepError};
use super::transaction_policy::TransactionPolicy;
use super::InferReport;
use crate::config::{DeliveryMode, TopicsConfig};

/// Why delivery failed.
#[derive(Debug)]
enum Failure {
    /// A new attempt may succeed (transaction aborted, delivery timed out, commit failed).
    Retry(String),
    /// The producer cannot go on.
    Fatal(String),
}

/// Sorts a transaction call's error: fatal transaction errors stop the stage, the rest retry.
fn classify(e: KafkaError) -> Failure {
    match &e {
        KafkaError::Transaction(t) if t.is_fatal() => Failure::Fatal(e.to_string()),
        _ => Failure::Retry(e.to_string()),
    }
}

fn is_queue_full(e: &KafkaError) -> bool {
    e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
}

/// The settings of a deliver step (the same for every chain of a stage).
#[derive(Clone)]
pub(crate) struct DeliverSettings {
    pub producer: Arc<ProducerSlot>,
    pub mode: DeliveryMode,
    pub topics: TopicsConfig,
    pub input_topic: String,
    /// Bound of every blocking producer call and of a delivery.
    pub timeout: Duration,
    pub transactions: TransactionPolicy,
    /// Most batches held at once (at least once: being acknowledged; exactly-once: in the open
    /// transaction).
    pub max_batches: usize,
    pub metrics: Arc<dyn InferMetrics>,
}

/// A batch being produced.
struct Sending {
    id: u64,
    outputs: Vec<Output>,
    /// Outputs handed to the producer so far (the rest wait for room in its queue).
    sent: usize,
    /// Delivery reports not yet received, in send order.
    acks: VecDeque<DeliveryFuture>,
    /// Delivery reports received (the next report answers `outputs[acked]`).
    acked: usize,
}

impl Sending {
    fn is_sent(&self) -> bool {
        self.sent == self.outputs.len()
    }
}

pub(crate) struct DeliverStep {
    settings: DeliverSettings,
    /// The stage's producer; `None` while a retired one is being rebuilt (batches are refused
    /// meanwhile, so every batch held was taken with a producer).
    producer: Option<FutureProducer>,
    book: OffsetBook,
    batches: VecDeque<Sending>,
    /// Exactly-once: when the open transaction began.
    transaction: Option<Instant>,
    /// Whether the last batch said more were behind it.
    more_coming: bool,
    /// A failure found while taking a batch, reported by the next poll.
    failure: Option<Failure>,
    /// An abort that failed while terminating (the producer's state is then unknown).
    abort_failure: Option<String>,
    report: InferReport,
}

impl DeliverStep {
    pub fn new(settings: DeliverSettings) -> DeliverStep {
        DeliverStep {
            producer: settings.producer.get(),
            settings,
            book: OffsetBook::new(),
            batches: VecDeque::new(),
            transaction: None,
            more_coming: false,
            failure: None,
            abort_failure: None,
            report: InferReport::default(),
        }
    }

    /// Next offset to read per partition after everything this step completed.
    pub fn completed(&self) -> &BTreeMap<i32, i64> {
        self.book.completed()
    }

    /// What the step delivered so far, taken out (a chain's report outlives the chain).
    pub fn take_report(&mut self) -> InferReport {
        std::mem::take(&mut self.report)
    }

    /// The error of an abort that failed during [`Step::terminate`], if any.
    pub fn take_abort_failure(&mut self) -> Option<String> {
        self.abort_failure.take()
    }

    fn exactly_once(&self) -> bool {
        self.settings.mode == DeliveryMode::ExactlyOnce
    }

    /// Hands the unsent outputs of the newest batch to the producer until its queue is full.
    fn send_pending(&mut self) -> Result<(), Failure> {
        let settings = &self.settings;
        let Some(producer) = &self.producer else { return Ok(()) };
        let Some(batch) = self.batches.back_mut() else { return Ok(()) };
        while batch.sent < batch.outputs.len() {
            let output = &batch.outputs[batch.sent];
            let mut headers = OwnedHeaders::new_with_capacity(output.headers.len());
            for (key, value) in &output.headers {
                headers = headers.insert(Header { key, value: Some(value.as_str()) });
            }
            let topic = output.topic(&settings.topics);
            let mut record = FutureRecord::to(topic).payload(&output.payload).headers(headers);
            if let Some(key) = &output.key {
                record = record.key(key);
            }
            match producer.send_result(record) {
                Ok(ack) => {
                    batch.acks.push_back(ack);
                    batch.sent += 1;
                }
                Err((e, _)) if is_queue_full(&e) => return Ok(()),
                Err((e, _)) => {
                    let output = batch.outputs[batch.sent].clone();
                    return Err(self.delivery_failure(output, &e));
                }
            }
        }
        Ok(())
    }

    /// A failed delivery retries; when the producer can never deliver again (fenced:
    /// `ProducerFenced`, which a restarted Tansu also answers to an idempotent producer, or
    /// holding a librdkafka fatal error) it is [`Failure::Fatal`], which [`Self::fail`] turns
    /// into a renewal of the producer and a retry.
    fn delivery_failure(&self, output: Output, e: &KafkaError) -> Failure {
        let reason = format!(
            "delivery to {} for input {}/{} failed: {e}",
            output.topic(&self.settings.topics),
            output.position.partition,
            output.position.offset
        );
        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::ProducerFenced) {
            return Failure::Fatal(reason);
        }
        match self.producer.as_ref().and_then(|p| p.client().fatal_error()) {
            Some((code, fatal)) => {
                Failure::Fatal(format!("{reason}; fatal producer error {code:?}: {fatal}"))
            }
            None => Failure::Retry(reason),
        }
    }

    /// Takes in the delivery reports that have arrived for `batches[index]`; true once every
    /// output of it is sent and acknowledged. Reports arrive roughly in send order: only the
    /// oldest is looked at, so a poll costs one check per report received plus one.
    fn collect_acks(&mut self, index: usize) -> Result<bool, Failure> {
        let batch = &mut self.batches[index];
        while let Some(ack) = batch.acks.front_mut() {
            let failed = match ack.now_or_never() {
                None => break,
                Some(Ok(Ok(_))) => None,
                Some(Ok(Err((e, _)))) => Some(e),
                Some(Err(_canceled)) => Some(KafkaError::Canceled),
            };
            batch.acks.pop_front();
            batch.acked += 1;
            if let Some(e) = failed {
                let output = batch.outputs[batch.acked - 1].clone();
                return Err(self.delivery_failure(output, &e));
            }
        }
        Ok(batch.is_sent() && batch.acks.is_empty())
    }

    /// At-least-once: completes the batches at the front whose every delivery is acknowledged.
    fn complete_acknowledged(&mut self, consumer: &InferConsumer) -> Result<(), Failure> {
        while !self.batches.is_empty() && self.collect_acks(0)? {
            let batch = self.batches.pop_front().expect("checked above");
            let commit = self.book.complete(batch.id).unwrap_or_default();
            self.commit_async(consumer, &commit);
            self.account(&batch.outputs);
        }
        Ok(())
    }

    /// Exactly-once: whether every output of the open transaction is acknowledged. Committing
    /// before that makes `commit_transaction` flush, which waits for the producer's polling
    /// thread to serve the delivery reports (100 ms a commit on the mock cluster, measured).
    fn transaction_acknowledged(&mut self) -> Result<bool, Failure> {
        let mut all = true;
        for index in 0..self.batches.len() {
            all &= self.collect_acks(index)?;
        }
        Ok(all)
    }

    fn offsets_tpl(&self, offsets: &BTreeMap<i32, i64>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (partition, next) in offsets {
            // Offsets come from consumed messages, so they are always representable.
            let _ = tpl.add_partition_offset(&self.settings.input_topic, *partition, Offset::Offset(*next));
        }
        tpl
    }

    fn commit_async(&self, consumer: &InferConsumer, offsets: &BTreeMap<i32, i64>) {
        if offsets.is_empty() {
            return;
        }
        if let Err(e) = consumer.commit(&self.offsets_tpl(offsets), CommitMode::Async) {
            tracing::warn!(error = %e, offsets = ?offsets, "offset commit could not be queued (records will be replayed)");
        }
    }

    /// Exactly-once: commits the open transaction with the input offsets of all its batches.
    fn commit_transaction(&mut self, consumer: &InferConsumer) -> Result<(), Failure> {
        if self.transaction.is_none() {
            return Ok(());
        }
        let last = self.batches.back().expect("a transaction begins with its first batch").id;
        let offsets = self.book.commit_offsets_through(last).unwrap_or_default();
        let tpl = self.offsets_tpl(&offsets);
        let metadata = consumer
            .group_metadata()
            .ok_or_else(|| Failure::Retry("consumer has no group metadata yet".into()))?;
        let producer = self.producer.as_ref().ok_or_else(|| Failure::Retry("no producer".into()))?;
        producer.send_offsets_to_transaction(&tpl, &metadata, self.settings.timeout).map_err(classify)?;
        producer.commit_transaction(self.settings.timeout).map_err(classify)?;
        tracing::debug!(batches = self.batches.len(), offsets = ?offsets, "transaction committed");
        self.transaction = None;
        let batches: Vec<Sending> = self.batches.drain(..).collect();
        for batch in &batches {
            self.book.complete(batch.id);
            self.account(&batch.outputs);
        }
        self.settings.metrics.transaction_committed(batches.len());
        Ok(())
    }

    /// Aborts the open transaction, if any; `Err` with the reason if the abort failed.
    fn abort_transaction(&mut self) -> Result<(), String> {
        if self.transaction.take().is_none() {
            return Ok(());
        }
        self.settings.metrics.transaction_aborted();
        tracing::warn!(batches = self.batches.len(), "aborting the transaction");
        match &self.producer {
            Some(producer) => producer.abort_transaction(self.settings.timeout).map_err(|e| e.to_string()),
            // Retired: its successor's init_transactions aborts what it left open.
            None => Ok(()),
        }
    }

    /// Turns a failure into the step's error, aborting what was open.
    fn fail(&mut self, failure: Failure) -> StepError {
        let failure = match self.abort_transaction() {
            Ok(()) => failure,
            Err(e) => Failure::Fatal(format!("{failure:?}; then abort failed: {e}")),
        };
        self.batches.clear();
        match failure {
            Failure::Retry(reason) => {
                tracing::warn!(%reason, "delivery failed; rewinding");
                StepError::Retry(reason)
            }
            Failure::Fatal(reason) => match self.settings.producer.retire(&reason) {
                Ok(()) => {
                    self.producer = None;
                    StepError::Retry(format!("producer failed fatally, rebuilding it: {reason}"))
                }
                Err(reason) => PipelineError::Fatal(format!("producer failed fatally: {reason}")).into(),
            },
        }
    }

    fn progress(&mut self, consumer: &InferConsumer, force_commit: bool) -> Result<(), StepError> {
        let result = self.failure.take().map_or(Ok(()), Err).and_then(|()| {
            self.send_pending()?;
            if !self.exactly_once() {
                return self.complete_acknowledged(consumer);
            }
            let Some(started) = self.transaction else { return Ok(()) };
            let commit = force_commit
                || self.settings.transactions.commit_now(
                    self.batches.len(),
                    started.elapsed(),
                    self.more_coming,
                );
            if commit && self.transaction_acknowledged()? {
                self.commit_transaction(consumer)?;
            }
            Ok(())
        });
        result.map_err(|failure| self.fail(failure))
    }

    /// Metrics and report for a delivered batch.
    fn account(&mut self, outputs: &[Output]) {
        let metrics = &self.settings.metrics;
        let now = now_ms();
        let mut rows = 0;
        for o in outputs {
            match (&o.prediction, o.reason) {
                (Some(p), _) => {
                    rows += 1;
                    let latency = o.input_timestamp_ms.map(|ts| (now - ts).max(0) as f64 / 1000.0);
                    metrics.prediction_delivered(p, o.route == Route::Accepted, latency);
                    self.report.add_prediction(p);
                }
                (None, Some(reason)) => {
                    metrics.dead_lettered(reason);
                    *self.report.dead_lettered.entry(reason.to_string()).or_default() += 1;
                    let detail = o.headers.iter().find(|(k, _)| *k == HEADER_ERROR_DETAIL);
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
        metrics.batch_delivered();
        self.report.batches += 1;
        self.report.last_output_at = Some(Instant::now());
        tracing::debug!(rows, outputs = outputs.len(), "batch delivered and committed");
    }
}

impl Step<Routed> for DeliverStep {
    fn poll(&mut self, consumer: &InferConsumer) -> Result<(), StepError> {
        self.progress(consumer, false)
    }

    fn submit(&mut self, routed: Routed) -> Result<(), Rejected<Routed>> {
        let full = self.batches.len() >= self.settings.max_batches.max(1);
        if self.failure.is_some() || full || self.batches.back().is_some_and(|b| !b.is_sent()) {
            return Err(Rejected(routed));
        }
        if self.producer.is_none() {
            self.producer = self.settings.producer.get();
        }
        let Some(producer) = &self.producer else {
            // Being rebuilt: backpressure until it is.
            return Err(Rejected(routed));
        };
        if self.exactly_once() && self.transaction.is_none() {
            if let Err(e) = producer.begin_transaction() {
                // Taken and reported by the next poll, which rewinds (or stops) the chain.
                self.failure = Some(classify(e));
                return Ok(());
            }
            self.transaction = Some(Instant::now());
        }
        self.more_coming = routed.more_coming;
        self.book.push(routed.id, routed.ranges);
        self.batches.push_back(Sending {
            id: routed.id,
            outputs: routed.outputs,
            sent: 0,
            acks: VecDeque::new(),
            acked: 0,
        });
        if let Err(failure) = self.send_pending() {
            self.failure = Some(failure);
        }
        Ok(())
    }

    fn join(&mut self, deadline: Instant, consumer: &InferConsumer) -> Result<(), StepError> {
        poll_until(
            self,
            deadline,
            consumer,
            |step, consumer| step.progress(consumer, true),
            |step| step.batches.is_empty() && step.transaction.is_none(),
        )
    }

    fn terminate(&mut self) {
        if let Err(e) = self.abort_transaction() {
            // The broker may be away (a restart): retire the producer instead of stopping. Its
            // successor's init_transactions, with the same transactional.id, aborts the
            // transaction left open and fences this producer.
            match self
                .settings
                .producer
                .retire(&format!("aborting the transaction of a terminated chain failed: {e}"))
            {
                Ok(()) => self.producer = None,
                Err(reason) => {
                    tracing::error!(%reason, "aborting the transaction of a terminated chain failed");
                    self.abort_failure = Some(reason);
                }
            }
        }
        self.batches.clear();
        self.failure = None;
    }

    fn is_busy(&self) -> bool {
        !self.batches.is_empty() || self.transaction.is_some()
    }
}
