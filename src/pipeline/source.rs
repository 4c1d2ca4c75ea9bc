//! The consuming half of the infer stage: poll the input topic, decode into micro-batches,
//! dispatch closed batches to the model, and apply backpressure and rewinds.
//!
//! Backpressure: at most `batch.max_in_flight` batches exist between here and the sink (a
//! semaphore permit each). When none is free the source **pauses** its partitions and keeps
//! polling (so rebalances and group heartbeats are served); a message that librdkafka had
//! already fetched is held in a small stash and processed after resuming, so nothing is
//! buffered beyond librdkafka's own prefetch.
//!
//! Rewind: when the sink fails a batch it starts a new epoch in the offset book. The source
//! notices, seeks every partition back to the lowest offset not yet completed — from the book
//! and from the records it holds itself (open batch, stash, a refused dispatch) — and forgets
//! what it held. If a seek fails the stage stops with an error instead of going on: continuing
//! past records that were never produced could later commit over them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, Semaphore};

use super::batcher::{Batch, Batcher, Incoming, OffsetRange, Position};
use super::error::PipelineError;
use super::infer::{self, InFlight};
use super::kafka::{InferContext, SharedBook};
use super::offsets::merge_rewind;
use crate::lifecycle::Shutdown;
use crate::model::ModelPool;
use crate::telemetry::Metrics;

pub(crate) type InferConsumer = StreamConsumer<InferContext>;

const SEEK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the source waits for an in-flight permit before pausing its partitions.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

pub(crate) struct Source {
    pub consumer: Arc<InferConsumer>,
    pub topic: String,
    pub batcher: Batcher,
    pub book: Arc<SharedBook>,
    pub pool: Arc<ModelPool>,
    pub permits: Arc<Semaphore>,
    pub to_sink: mpsc::Sender<InFlight>,
    pub metrics: Arc<Metrics>,
    /// `emogate_records_consumed_total{topic}` of the input topic.
    pub consumed: prometheus::IntCounter,
    pub epoch: u64,
    pub stash: VecDeque<OwnedMessage>,
}

fn incoming<M: Message>(m: &M) -> Incoming<'_> {
    Incoming {
        position: Position { partition: m.partition(), offset: m.offset() },
        key: m.key(),
        payload: m.payload(),
        kafka_timestamp_ms: m.timestamp().to_millis(),
    }
}

impl Source {
    /// Consumes until shutdown, then dispatches what it holds and returns (dropping the
    /// channel, which lets the sink finish).
    pub async fn run(mut self, mut shutdown: Shutdown) -> Result<(), PipelineError> {
        loop {
            self.housekeeping()?;
            let mut closed = None;
            if let Some(m) = self.stash.pop_front() {
                self.consumed.inc();
                closed = self.batcher.push(Instant::now(), incoming(&m));
            } else {
                let deadline = self.batcher.deadline();
                // A local handle, so a received message does not borrow `self`.
                let consumer = Arc::clone(&self.consumer);
                tokio::select! {
                    biased;
                    _ = shutdown.wait() => break,
                    _ = sleep_until(deadline), if deadline.is_some() => {}
                    received = consumer.recv() => match received {
                        Ok(m) => {
                            // A rebalance callback may have run inside this recv: drop what
                            // was held for revoked partitions *before* adding the message,
                            // which already belongs to the new assignment.
                            self.apply_revocations(None);
                            self.consumed.inc();
                            closed = self.batcher.push(Instant::now(), incoming(&m));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "consumer error");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                }
            }
            if let Some(batch) = closed {
                self.dispatch(batch, &mut shutdown).await?;
            }
            if let Some(batch) = self.batcher.poll_deadline(Instant::now()) {
                self.dispatch(batch, &mut shutdown).await?;
            }
        }
        // Drain: what is held goes out too (the sink completes it within the deadline).
        self.housekeeping()?;
        while let Some(m) = self.stash.pop_front() {
            self.consumed.inc();
            if let Some(batch) = self.batcher.push(Instant::now(), incoming(&m)) {
                self.dispatch(batch, &mut shutdown).await?;
            }
        }
        if let Some(batch) = self.batcher.flush() {
            self.dispatch(batch, &mut shutdown).await?;
        }
        Ok(())
    }

    /// Applies revocations and rewinds signalled since the last message.
    fn housekeeping(&mut self) -> Result<(), PipelineError> {
        self.apply_revocations(None);
        if self.book.epoch() != self.epoch {
            self.rewind(None)?;
        }
        Ok(())
    }

    /// Drops what the source holds (open batch, stash, and `held`, a closed batch waiting for
    /// a permit) for partitions revoked since the last call. Rebalance callbacks run only
    /// inside `recv`, so calling this right after every `recv` returns, before its message is
    /// kept, prunes exactly the records consumed under the old assignment — never one that the
    /// new assignment delivered (librdkafka would not deliver it again).
    fn apply_revocations(&mut self, held: Option<&mut Batch>) {
        let revoked = self.consumer.context().take_revoked();
        if revoked.is_empty() {
            return;
        }
        let keep = |p: i32| !revoked.contains(&p);
        self.batcher.retain_partitions(keep);
        self.stash.retain(|m| keep(m.partition()));
        if let Some(batch) = held {
            *batch = std::mem::take(batch).retain_partitions(self.batcher.dims(), keep);
        }
    }

    async fn dispatch(&mut self, mut batch: Batch, shutdown: &mut Shutdown) -> Result<(), PipelineError> {
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => self.wait_for_permit(&mut batch, shutdown).await?,
        };
        if batch.is_empty() {
            return Ok(());
        }
        let dispatched = self.book.lock().dispatch(self.epoch, batch.id, batch.ranges.clone());
        if dispatched.is_err() {
            return self.rewind(Some(&batch.ranges));
        }
        self.metrics.batch_size.observe(batch.rows.len() as f64);
        let result = match infer::submit(&self.pool, &mut batch) {
            Ok(result) => result,
            Err(e) => return Err(PipelineError::Model(e)),
        };
        tracing::debug!(
            batch = batch.id,
            rows = batch.rows.len(),
            dead = batch.dead.len(),
            "batch dispatched"
        );
        self.to_sink
            .send(InFlight { epoch: self.epoch, batch, result, permit })
            .await
            .map_err(|_| PipelineError::Fatal("the producing half of the infer stage stopped".into()))
    }

    /// Waits for a permit. A short wait is the normal rhythm of a busy pipeline and is spent
    /// without pausing; past [`PAUSE_AFTER`] the assignment is paused and the consumer keeps
    /// being served (rebalances, the stash) until a permit frees up, then resumed. Pausing
    /// only on long waits keeps pause/resume rare, which matters: every pause/resume bumps
    /// librdkafka's per-partition op version and restarts its fetcher.
    async fn wait_for_permit(
        &mut self,
        batch: &mut Batch,
        shutdown: &mut Shutdown,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, PipelineError> {
        let permits = Arc::clone(&self.permits);
        let consumer = Arc::clone(&self.consumer);
        let acquire = permits.acquire_owned();
        tokio::pin!(acquire);
        if let Ok(permit) = tokio::time::timeout(PAUSE_AFTER, &mut acquire).await {
            return permit.map_err(|_| PipelineError::Fatal("in-flight semaphore closed".into()));
        }
        let mut paused = self.set_paused(true);
        tracing::debug!(partitions = ?paused, "backpressure: consumer paused");
        let permit = loop {
            tokio::select! {
                biased;
                permit = &mut acquire => break permit,
                received = consumer.recv(), if !shutdown.is_triggered() => match received {
                    Ok(m) => {
                        // Fetched before the pause took effect: hold it. If a rebalance
                        // changed the assignment meanwhile, pause the new one too.
                        self.apply_revocations(Some(batch));
                        self.stash.push_back(m.detach());
                        if self.assigned_partitions() != paused {
                            paused = self.set_paused(true);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "consumer error while paused"),
                },
                _ = shutdown.wait(), if !shutdown.is_triggered() => {}
            }
        };
        // The last recv may have run a rebalance without returning a message.
        self.apply_revocations(Some(batch));
        self.set_paused(false);
        tracing::debug!("backpressure: consumer resumed");
        permit.map_err(|_| PipelineError::Fatal("in-flight semaphore closed".into()))
    }

    fn assigned_partitions(&self) -> Vec<i32> {
        self.consumer
            .assignment()
            .map(|a| a.elements_for_topic(&self.topic).iter().map(|e| e.partition()).collect())
            .unwrap_or_default()
    }

    /// Pauses or resumes the current assignment; returns its partitions.
    fn set_paused(&self, paused: bool) -> Vec<i32> {
        self.consumer.context().paused.store(paused, std::sync::atomic::Ordering::Release);
        let assignment = match self.consumer.assignment() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the assignment to pause/resume");
                return Vec::new();
            }
        };
        let result =
            if paused { self.consumer.pause(&assignment) } else { self.consumer.resume(&assignment) };
        if let Err(e) = result {
            tracing::warn!(error = %e, paused, "pause/resume failed");
        }
        self.metrics.paused.set(i64::from(paused));
        assignment.elements_for_topic(&self.topic).iter().map(|e| e.partition()).collect()
    }

    /// Seeks back to every record not completed and forgets what is held.
    fn rewind(&mut self, refused: Option<&BTreeMap<i32, OffsetRange>>) -> Result<(), PipelineError> {
        let (epoch, mut points) = {
            let mut book = self.book.lock();
            (book.epoch(), book.take_rewind())
        };
        merge_rewind(&mut points, self.batcher.open_ranges());
        if let Some(ranges) = refused {
            merge_rewind(&mut points, ranges);
        }
        for m in &self.stash {
            let point = points.entry(m.partition()).or_insert(m.offset());
            *point = (*point).min(m.offset());
        }
        self.stash.clear();
        self.batcher.clear();
        self.epoch = epoch;
        let assignment = self.consumer.assignment().map_err(PipelineError::kafka("read assignment"))?;
        let assigned: Vec<i32> =
            assignment.elements_for_topic(&self.topic).iter().map(|e| e.partition()).collect();
        let mut seek = TopicPartitionList::new();
        for (partition, offset) in points.iter().filter(|(p, _)| assigned.contains(p)) {
            seek.add_partition_offset(&self.topic, *partition, Offset::Offset(*offset))
                .map_err(PipelineError::kafka("build seek list"))?;
        }
        tracing::warn!(epoch, points = ?points, "rewinding: in-flight work discarded, re-reading from these offsets");
        if seek.count() > 0 {
            let result =
                self.consumer.seek_partitions(seek, SEEK_TIMEOUT).map_err(PipelineError::kafka("seek"))?;
            for e in result.elements() {
                if let Err(err) = e.error() {
                    return Err(PipelineError::Fatal(format!(
                        "seek of {}/{} to {:?} failed ({err}); stopping without committing so the \
                         records are re-read after restart",
                        e.topic(),
                        e.partition(),
                        e.offset()
                    )));
                }
            }
        }
        Ok(())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
