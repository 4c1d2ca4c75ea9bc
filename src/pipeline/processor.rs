//! The processor: one thread owns the consumer and drives the chain of steps.
//!
//! poll → submit. A record the chain hands back waits in a small stash (in order, before any
//! newer record); when the chain has refused for longer than [`PAUSE_AFTER`], the assignment is
//! paused and the consumer keeps being polled (group membership, rebalances, records fetched
//! before the pause took effect, which join the stash), until the chain takes records again.
//!
//! Revocation: librdkafka runs the rebalance callback inside `poll`, on this thread, so the
//! callback joins the chain itself (everything received is delivered and committed before the
//! partitions move) and replaces it with a fresh one; if the join does not finish within
//! `shutdown.drain_deadline_ms` the chain is terminated and the new owner re-reads what it held.
//!
//! Retry: when the chain reports [`StepError::Retry`], it is terminated, every partition is
//! sought back to the first offset it received and did not complete
//! ([`super::offsets::rewind_points`]), and a fresh chain takes over — the new chain *is* the
//! new attempt, so nothing of the old one can commit. A failed seek stops the stage: going on
//! past records never produced could later commit over them.
//!
//! The chain lives in the consumer's context so the callback can reach it. Only this thread
//! locks it (the loop, or a callback that the loop's `poll` runs), and never across a `poll`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

use super::batch_step::BatchStep;
use super::batcher::{Batcher, Incoming, Position};
use super::deliver_step::{DeliverSettings, DeliverStep};
use super::error::PipelineError;
use super::infer_metrics::InferMetrics;
use super::infer_step::InferStep;
use super::offsets::rewind_points;
use super::route_step::RouteStep;
use super::router::Router;
use super::step::{Step, StepError, JOIN_TICK};
use super::InferReport;
use crate::codec::FeatureDecoder;
use crate::model::ModelPool;

pub(crate) type InferConsumer = BaseConsumer<InferContext>;

type Chain = BatchStep<InferStep<RouteStep<DeliverStep>>>;

/// How long the chain may refuse records before the assignment is paused. A short refusal is
/// the normal rhythm of a busy pipeline; pausing only on long ones keeps pause/resume rare,
/// which matters: every pause/resume bumps librdkafka's per-partition op version and restarts
/// its fetcher.
const PAUSE_AFTER: Duration = Duration::from_secs(1);
/// Longest poll while the chain holds work (its progress is checked between polls).
const BUSY_POLL: Duration = Duration::from_millis(2);
/// Longest poll while idle.
const IDLE_POLL: Duration = Duration::from_millis(100);
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the at-least-once final commit at shutdown.
const FINAL_COMMIT_WAIT: Duration = Duration::from_secs(5);

/// Everything needed to build a chain; a fresh one replaces the chain after every revocation
/// and retry.
pub(crate) struct ChainFactory {
    pub decoder: FeatureDecoder,
    pub max_records: usize,
    pub max_wait: Duration,
    pub pool: Arc<ModelPool>,
    pub max_in_flight: usize,
    pub router: Router,
    pub deliver: DeliverSettings,
}

impl ChainFactory {
    fn build(&self) -> Chain {
        let deliver = DeliverStep::new(self.deliver.clone());
        let route = RouteStep::new(self.router.clone(), deliver);
        let infer =
            InferStep::new(Arc::clone(&self.pool), self.max_in_flight, self.deliver.metrics.clone(), route);
        BatchStep::new(Batcher::new(self.decoder.clone(), self.max_records, self.max_wait), infer)
    }
}

fn deliver_of(chain: &mut Chain) -> &mut DeliverStep {
    &mut chain.next.next.next
}

fn incoming<M: Message>(m: &M) -> Incoming<'_> {
    Incoming {
        position: Position { partition: m.partition(), offset: m.offset() },
        key: m.key(),
        payload: m.payload(),
        kafka_timestamp_ms: m.timestamp().to_millis(),
    }
}

/// What the processor holds besides the consumer.
struct State {
    chain: Chain,
    /// Per partition, the first offset received since the chain was built (where a retry of
    /// this chain must seek back to, unless it completed more).
    received_from: BTreeMap<i32, i64>,
    /// Records received and not yet taken by the chain, oldest first.
    stash: VecDeque<OwnedMessage>,
    /// Since when the chain has refused the stash's first record.
    refused_since: Option<Instant>,
    paused: bool,
    /// Completed positions of earlier chains of this assignment (for the final commit).
    completed: BTreeMap<i32, i64>,
    /// What earlier chains delivered.
    report: InferReport,
    /// Set when the processor has finished: callbacks (the close's revocation) only report.
    finished: bool,
}

impl State {
    /// Retires the chain (terminated or joined) and builds a fresh one.
    fn replace_chain(&mut self, factory: &ChainFactory) {
        let deliver = deliver_of(&mut self.chain);
        for (partition, next) in deliver.completed() {
            let slot = self.completed.entry(*partition).or_insert(*next);
            *slot = (*slot).max(*next);
        }
        self.report.merge(deliver.take_report());
        self.chain = factory.build();
        self.received_from.clear();
        for m in &self.stash {
            self.received_from.entry(m.partition()).or_insert(m.offset());
        }
    }

    /// Terminates the chain; `Err` if aborting its transaction failed.
    fn terminate_chain(&mut self) -> Result<(), PipelineError> {
        self.chain.terminate();
        match deliver_of(&mut self.chain).take_abort_failure() {
            Some(e) => Err(PipelineError::Fatal(format!(
                "the transaction of a dropped chain could not be aborted: {e}"
            ))),
            None => Ok(()),
        }
    }

    /// Offers the stash to the chain, oldest first, until it refuses one.
    fn feed_stash(&mut self, metrics: &dyn InferMetrics) {
        while let Some(m) = self.stash.front() {
            if self.chain.submit(incoming(m)).is_err() {
                self.refused_since.get_or_insert_with(Instant::now);
                return;
            }
            metrics.record_consumed();
            self.stash.pop_front();
        }
        self.refused_since = None;
    }

    /// Everything completed, for the final synchronous commit.
    fn all_completed(&mut self) -> BTreeMap<i32, i64> {
        let mut all = self.completed.clone();
        for (partition, next) in deliver_of(&mut self.chain).completed() {
            let slot = all.entry(*partition).or_insert(*next);
            *slot = (*slot).max(*next);
        }
        all
    }
}

/// Consumer context of the infer stage: owns the chain so the rebalance callback can join it.
pub struct InferContext {
    topic: String,
    metrics: Arc<dyn InferMetrics>,
    factory: ChainFactory,
    /// How long a revocation waits for the chain to deliver and commit what it holds.
    revoke_wait: Duration,
    state: Mutex<State>,
    /// First error raised inside a callback, for the loop to return.
    failure: Mutex<Option<PipelineError>>,
}

impl InferContext {
    pub(crate) fn new(
        topic: String,
        metrics: Arc<dyn InferMetrics>,
        factory: ChainFactory,
        revoke_wait: Duration,
    ) -> InferContext {
        let state = State {
            chain: factory.build(),
            received_from: BTreeMap::new(),
            stash: VecDeque::new(),
            refused_since: None,
            paused: false,
            completed: BTreeMap::new(),
            report: InferReport::default(),
            finished: false,
        };
        InferContext {
            topic,
            metrics,
            factory,
            revoke_wait,
            state: Mutex::new(state),
            failure: Mutex::new(None),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&self, error: PipelineError) {
        let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(error);
    }

    fn take_failure(&self) -> Option<PipelineError> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn partitions_of(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements().iter().filter(|e| e.topic() == self.topic).map(|e| e.partition()).collect()
    }
}

impl ClientContext for InferContext {
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            for (partition, stats) in &topic.partitions {
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    self.metrics.consumer_lag(*partition, stats.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) => self.metrics.brokers_down(),
            // A SASL/TLS misconfiguration never heals by retrying: say so on /readyz, not only
            // in librdkafka's log lines (cleared once partitions are assigned).
            Some(
                RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SSL
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::UnsupportedSASLMechanism,
            ) => self.metrics.authentication_failed(reason),
            _ => {}
        }
        tracing::error!(error = %error, reason, "kafka client error");
    }
}

impl ConsumerContext for InferContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else { return };
        let partitions = self.partitions_of(tpl);
        let mut state = self.state();
        if !state.finished {
            // Finish what the chain holds before the partitions move, so the new owner starts
            // exactly where this member stopped. If that takes too long, drop it instead:
            // nothing of it is committed, so the new owner re-reads it (a transaction in
            // flight is aborted).
            match state.chain.join(Instant::now() + self.revoke_wait, consumer) {
                Ok(()) => {}
                Err(StepError::Fatal(e)) => self.fail(e),
                Err(e) => {
                    tracing::warn!(
                        partitions = ?partitions,
                        wait_ms = self.revoke_wait.as_millis() as u64,
                        reason = %e,
                        "rebalance: in-flight batches not finished, abandoning them (they will be re-read)"
                    );
                    self.metrics.rewound();
                }
            }
            if let Err(e) = state.terminate_chain() {
                self.fail(e);
            }
            state.stash.retain(|m| !partitions.contains(&m.partition()));
            state.replace_chain(&self.factory);
            state.completed.retain(|p, _| !partitions.contains(p));
        }
        self.metrics.partitions_revoked(&partitions);
        tracing::info!(partitions = ?partitions, "partitions revoked");
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions = self.partitions_of(tpl);
                // librdkafka keeps a partition's pause flag across a revoke and re-assign, so a
                // partition paused before a rebalance would stay paused for good once the
                // processor resumed an (empty) assignment in between — the stall the fault
                // suite's broker-restart test found. Each new assignment is therefore set to the
                // processor's pause state when it arrives.
                let paused = self.state().paused;
                let result = if paused { consumer.pause(tpl) } else { consumer.resume(tpl) };
                if let Err(e) = result {
                    tracing::warn!(error = %e, paused, "cannot set the pause state of the new assignment");
                }
                self.metrics.partitions_assigned(&partitions);
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

/// How the processor is told to stop.
#[derive(Debug, Default)]
pub(crate) struct StopFlags {
    /// Shutdown: stop consuming, drain within the deadline, commit.
    pub drain: AtomicBool,
    /// The stage's future was dropped: stop at once, finishing and committing nothing (what
    /// was not committed is re-read by the partitions' next owner).
    pub abandon: AtomicBool,
}

impl StopFlags {
    fn any(&self) -> bool {
        self.drain.load(Ordering::SeqCst) || self.abandon.load(Ordering::SeqCst)
    }
}

/// Runs the processor on the calling thread until a stop flag is set (on `drain`, it drains
/// within `drain_deadline`) or the stage fails. Returns what was delivered.
pub(crate) fn run(
    consumer: Arc<InferConsumer>,
    stop: &StopFlags,
    drain_deadline: Duration,
) -> Result<InferReport, PipelineError> {
    let context = consumer.context();
    let outcome = consume(&consumer, stop).and_then(|()| {
        if stop.abandon.load(Ordering::SeqCst) {
            return Err(PipelineError::Fatal("the stage was dropped; nothing held was finished".into()));
        }
        drain(&consumer, drain_deadline)
    });
    let mut state = context.state();
    if outcome.is_err() {
        if let Err(e) = state.terminate_chain() {
            tracing::error!(error = %e, "after the stage failed");
        }
    }
    let report = {
        let mut report = std::mem::take(&mut state.report);
        report.merge(deliver_of(&mut state.chain).take_report());
        report
    };
    state.finished = true;
    drop(state);
    outcome.map(|()| report)
}

/// Polls and feeds the chain until `stop` or an error.
fn consume(consumer: &Arc<InferConsumer>, stop: &StopFlags) -> Result<(), PipelineError> {
    let context = consumer.context();
    while !stop.any() {
        if let Some(failure) = context.take_failure() {
            return Err(failure);
        }
        let wait = {
            let mut state = context.state();
            progress(consumer, &mut state)?;
            match (state.stash.is_empty(), state.paused) {
                // Refused and not yet paused: wait for the chain, not for more records.
                (false, false) => None,
                _ if state.chain.is_busy() => Some(BUSY_POLL),
                _ => Some(
                    state
                        .chain
                        .deadline()
                        .map_or(IDLE_POLL, |d| d.saturating_duration_since(Instant::now()).min(IDLE_POLL)),
                ),
            }
        };
        let Some(wait) = wait else {
            std::thread::sleep(JOIN_TICK);
            continue;
        };
        match consumer.poll(wait) {
            None => {}
            Some(Ok(m)) => {
                let mut state = context.state();
                state.received_from.entry(m.partition()).or_insert(m.offset());
                let taken = state.stash.is_empty() && state.chain.submit(incoming(&m)).is_ok();
                if taken {
                    context.metrics.record_consumed();
                } else {
                    state.stash.push_back(m.detach());
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
        }
    }
    Ok(())
}

/// One round of work between polls: the chain's progress (a retry rewinds), the stash, and
/// the pause state.
fn progress(consumer: &InferConsumer, state: &mut State) -> Result<(), PipelineError> {
    let metrics = consumer.context().metrics.as_ref();
    match state.chain.poll(consumer) {
        Ok(()) => {}
        Err(StepError::Retry(reason)) => rewind(consumer, state, &reason)?,
        Err(StepError::Timeout) => unreachable!("only join has a deadline"),
        Err(StepError::Fatal(e)) => return Err(e),
    }
    state.feed_stash(metrics);
    let refusing_long = state.refused_since.is_some_and(|t| t.elapsed() >= PAUSE_AFTER);
    if refusing_long != state.paused {
        set_paused(consumer, state, refusing_long);
    }
    Ok(())
}

/// Pauses or resumes the current assignment.
fn set_paused(consumer: &InferConsumer, state: &mut State, paused: bool) {
    state.paused = paused;
    match consumer.assignment() {
        Ok(assignment) => {
            let result = if paused { consumer.pause(&assignment) } else { consumer.resume(&assignment) };
            if let Err(e) = result {
                tracing::warn!(error = %e, paused, "pause/resume failed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the assignment to pause/resume"),
    }
    consumer.context().metrics.paused(paused);
    tracing::debug!(paused, "backpressure: consumer {}", if paused { "paused" } else { "resumed" });
}

/// Throws the chain away and seeks back to the first record of each partition not completed.
fn rewind(consumer: &InferConsumer, state: &mut State, reason: &str) -> Result<(), PipelineError> {
    let context = consumer.context();
    let points = rewind_points(&state.received_from, deliver_of(&mut state.chain).completed());
    state.terminate_chain()?;
    state.stash.clear();
    state.replace_chain(&context.factory);
    context.metrics.rewound();
    tracing::warn!(points = ?points, %reason, "rewinding: in-flight work discarded, re-reading from these offsets");
    let assignment = consumer.assignment().map_err(PipelineError::kafka("read assignment"))?;
    let assigned: Vec<i32> = context.partitions_of(&assignment);
    let mut seek = TopicPartitionList::new();
    for (partition, offset) in points.iter().filter(|(p, _)| assigned.contains(p)) {
        seek.add_partition_offset(&context.topic, *partition, Offset::Offset(*offset))
            .map_err(PipelineError::kafka("build seek list"))?;
    }
    if seek.count() == 0 {
        return Ok(());
    }
    let result = consumer.seek_partitions(seek, SEEK_TIMEOUT).map_err(PipelineError::kafka("seek"))?;
    for e in result.elements() {
        if let Err(err) = e.error() {
            return Err(PipelineError::Fatal(format!(
                "seek of {}/{} to {:?} failed ({err}); stopping without committing so the records \
                 are re-read after restart",
                e.topic(),
                e.partition(),
                e.offset()
            )));
        }
    }
    Ok(())
}

/// Shutdown: what was received goes through the chain too, within `deadline`; then the
/// final commit.
fn drain(consumer: &Arc<InferConsumer>, drain_deadline: Duration) -> Result<(), PipelineError> {
    let context = consumer.context();
    let deadline = Instant::now() + drain_deadline;
    let mut state = context.state();
    let mut joined = Ok(());
    while !state.stash.is_empty() {
        if let Err(e) = progress(consumer, &mut state) {
            joined = Err(StepError::Fatal(e));
            break;
        }
        if Instant::now() >= deadline {
            joined = Err(StepError::Timeout);
            break;
        }
        std::thread::sleep(JOIN_TICK);
    }
    let joined = joined.and_then(|()| state.chain.join(deadline, consumer));
    match joined {
        Ok(()) => {}
        Err(StepError::Retry(reason)) => {
            // Not completed, so not committed: the next owner re-reads it.
            tracing::warn!(%reason, "delivery failed while draining; the next owner re-reads the rest");
        }
        Err(StepError::Timeout) => {
            tracing::warn!(
                deadline_ms = drain_deadline.as_millis() as u64,
                "drain deadline passed; uncommitted batches will be re-read by the next owner"
            );
            return Err(PipelineError::Fatal("drain deadline passed".into()));
        }
        Err(StepError::Fatal(e)) => return Err(e),
    }
    if context.factory.deliver.mode == crate::config::DeliveryMode::AtLeastOnce {
        let completed = state.all_completed();
        drop(state);
        commit_sync_final(consumer, &context.topic, &completed, context.factory.deliver.timeout);
    }
    Ok(())
}

/// Re-commits everything completed, synchronously, before the stage exits, so the last
/// asynchronous commits cannot be lost with the consumer. librdkafka's synchronous commit has
/// no timeout and a broker may hold it while a rebalance waits for members that no longer poll
/// (this thread has stopped polling), so it runs on its own thread and is waited for at most
/// [`FINAL_COMMIT_WAIT`]; if it does not finish, the batches since the last acknowledged commit
/// are replayed by the next owner (at-least-once).
fn commit_sync_final(
    consumer: &Arc<InferConsumer>,
    topic: &str,
    completed: &BTreeMap<i32, i64>,
    timeout: Duration,
) {
    if completed.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (partition, next) in completed {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
    }
    let consumer = Arc::clone(consumer);
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().name("emogate-final-commit".into()).spawn(move || {
        let _ = tx.send(consumer.commit(&tpl, CommitMode::Sync));
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the final commit (records since the last commit will be replayed)");
        return;
    }
    let wait = timeout.min(FINAL_COMMIT_WAIT);
    match rx.recv_timeout(wait) {
        Ok(Ok(())) => tracing::info!(offsets = ?completed, "final offsets committed"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "final offset commit failed (records since the last commit will be replayed)")
        }
        Err(_) => tracing::warn!(
            wait_ms = wait.as_millis() as u64,
            "final offset commit not acknowledged in time (records since the last commit will be replayed)"
        ),
    }
}
