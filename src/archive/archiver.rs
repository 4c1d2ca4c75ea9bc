//! The archive's core, without Kafka: per-(topic, partition) buffers, rolls, Parquet files in a
//! sink, retries in place, and the offsets that may be committed once a file is durable.
//!
//! The Kafka stage ([`super::stage`]) feeds it every record it polls, commits what it returns
//! and pauses or resumes the partitions it names ([`Archiver::take_flow_changes`]); tests feed
//! it directly. Keeping the offset bookkeeping here makes "commit only what is durable"
//! testable without a broker.
//!
//! # Rolls
//! A roll is three steps: *seal* (pure: close the partition's buffer, take its rows as an Arrow
//! batch with the file key they go to), *store* (encode Parquet, put it in the sink, count it:
//! the only step with I/O, done by the archiver's writer) and *advance* (pure: the offset that
//! is now durable, when it moved past the last commit).
//!
//! # Offsets
//! For each partition the archiver tracks `next`, the offset after the last record it has
//! handled (buffered or dead-lettered). When a buffer is sealed, every handled record is either
//! in that file or was dead-lettered, so `next` at seal time is the offset to commit once the
//! file is durable. It is only returned when it moved past the last commit, so an idle
//! partition is not committed again and again.
//!
//! # Failed puts: retry in place
//! A put that fails for a reason that may heal keeps the encoded file as the partition's
//! *pending* file and asks the stage to pause the partition. The put is tried again from
//! [`Archiver::tick`] after the [`RetryPolicy`]'s backoff. While a file is pending its partition
//! takes no new rows: a record that still arrives (fetched before the pause took effect) is
//! not handled, and the resume seeks back to `next`, so it is read again. So a partition never
//! has more than one uncommitted file (the replay argument in `roll.rs` holds) and memory is
//! bounded by one encoded file per partition. A failure that cannot heal
//! ([`super::SinkError::is_permanent`]) stops the archiver as before. Every failure counts
//! towards the sink's health: after `unhealthy_after` consecutive failures it is reported
//! unhealthy until a put succeeds.
//!
//! # Undecodable records
//! The output topics are written by emogate itself, so a record that is empty or does not
//! decode as an `EmotionPrediction` is unexpected (another producer, a schema change). It is
//! sent to the archive's dead-letter topic ([`ArchiveDeadLetters`]) with its reason, counted
//! ([`ArchiveMetrics::record_dead_lettered`]) and logged with its coordinates; its offset is
//! committed with the next file. An archiver without a dead-letter sink (unit tests, library
//! callers that opt out) logs and counts it only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::dead_letter::{ArchiveDeadLetters, UndecodableRecord};
use super::error::ArchiveError;
use super::metrics::{ArchiveMetrics, ArchiveSummary, WrittenFile};
use super::partition::{FileKey, HourPartition};
use super::retry::RetryPolicy;
use super::roll::{OpenBuffer, RollPolicy, RollReason};
use super::rows::{FinishedRows, RowBuffer, RowError};
use super::sink::{ArchiveSink, SinkError};
use super::writer::{encode_parquet, ParquetSettings};
use crate::codec::WriterSchemas;

/// Offsets the caller should commit: everything of `topic`/`partition` before `next_offset`
/// is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// The next offset to read (last handled offset + 1), Kafka's commit convention.
    pub next_offset: i64,
}

/// Partitions the stage should pause (a file of theirs is waiting for a retry) or resume (it
/// became durable; fetch again from `seek_to`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowChange {
    /// `(topic, partition)` to pause.
    pub pause: Vec<(String, i32)>,
    /// `(topic, partition, seek_to)` to resume, reading from offset `seek_to`.
    pub resume: Vec<(String, i32, i64)>,
}

impl FlowChange {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.pause.is_empty() && self.resume.is_empty()
    }
}

/// An encoded file, ready to put (again).
struct EncodedFile {
    key: FileKey,
    /// `key.relative_path()`, the sink key.
    path: String,
    bytes: Vec<u8>,
    rows: u64,
    first_offset: i64,
    last_offset: i64,
    reason: RollReason,
}

/// A file whose put failed and will be retried; its partition is paused.
struct PendingFile {
    file: EncodedFile,
    /// The partition's `next` when the file was sealed: committed once the file is durable.
    durable_next: Option<i64>,
    /// Failed attempts so far.
    failures: u32,
    first_failure: Instant,
    retry_at: Instant,
}

/// State of one assigned partition.
struct PartitionState {
    rows: RowBuffer,
    open: Option<OpenBuffer>,
    /// Offset after the last handled record.
    next: Option<i64>,
    /// Last offset returned for commit.
    committed: Option<i64>,
    /// A file waiting for a retry (the partition is paused meanwhile).
    pending: Option<PendingFile>,
}

impl PartitionState {
    fn new(topic: &str, partition: i32) -> Self {
        PartitionState {
            rows: RowBuffer::new(topic, partition),
            open: None,
            next: None,
            committed: None,
            pending: None,
        }
    }

    fn id(&self) -> (String, i32) {
        (self.rows.topic().to_string(), self.rows.partition())
    }

    /// First step of a roll (pure): closes the open buffer and takes its rows, with the file
    /// they belong in. `None` when no rows are buffered.
    fn seal(&mut self) -> Result<Option<SealedFile>, ArchiveError> {
        self.open = None;
        let (topic, partition) = self.id();
        let finished = self.rows.finish().map_err(|source| ArchiveError::Arrow {
            topic: topic.clone(),
            partition,
            source,
        })?;
        let Some(rows) = finished else { return Ok(None) };
        let hour = HourPartition::from_epoch_ms(rows.first_processed_at_ms);
        let key = FileKey::new(&topic, partition, rows.first_offset, hour)?;
        Ok(Some(SealedFile { path: key.relative_path(), key, rows }))
    }

    /// Last step of a roll (pure): every record handled before the file was sealed is now
    /// durable or dead-lettered, so `next` (the partition's `next` at seal time) may be
    /// committed; returns it when it moved past the last commit.
    fn advance_to(&mut self, next: Option<i64>) -> Option<i64> {
        let next = next.filter(|&next| self.committed < Some(next))?;
        self.committed = Some(next);
        Some(next)
    }
}

/// The rows of a closed buffer and the file they go to.
struct SealedFile {
    key: FileKey,
    /// `key.relative_path()`, the sink key.
    path: String,
    rows: FinishedRows,
}

/// The part of the archiver that writes: Parquet encoding, the sink and its retries, the
/// metric hooks and the totals. [`ArchiveWriter::roll`] is seal → store → advance.
struct ArchiveWriter {
    parquet: ParquetSettings,
    sink: Arc<dyn ArchiveSink>,
    metrics: Arc<dyn ArchiveMetrics>,
    summary: ArchiveSummary,
    retry: RetryPolicy,
    /// Failed puts since the last successful one, over all partitions.
    consecutive_failures: u32,
    healthy: bool,
    /// Pauses and resumes for the stage, accumulated until taken.
    flow: FlowChange,
    /// State of the jitter generator (xorshift; jitter needs spread, not quality).
    jitter_state: u64,
}

impl ArchiveWriter {
    /// Writes the buffer of `state` (if it has rows) and returns the commit it allows. A put
    /// that fails and may heal makes the file pending (and returns no commit).
    fn roll(
        &mut self,
        state: &mut PartitionState,
        reason: RollReason,
        now: Instant,
    ) -> Result<Option<CommitRequest>, ArchiveError> {
        if state.pending.is_some() {
            // The partition takes no rows while a file is pending, so there is nothing new to
            // write; the retry commits.
            return Ok(None);
        }
        let durable_next = state.next;
        if let Some(sealed) = state.seal()? {
            let file = self.encode(sealed, reason)?;
            if let Err(error) = self.put(&file) {
                self.failed(state, file, durable_next, error, now)?;
                return Ok(None);
            }
        }
        Ok(self.commit(state, durable_next))
    }

    /// Puts the pending file of `state` again; on success returns its commit and asks for the
    /// partition's resume.
    fn retry(
        &mut self,
        state: &mut PartitionState,
        now: Instant,
    ) -> Result<Option<CommitRequest>, ArchiveError> {
        let Some(mut pending) = state.pending.take() else { return Ok(None) };
        match self.put(&pending.file) {
            Ok(()) => {
                let waited = now.saturating_duration_since(pending.first_failure);
                tracing::info!(file = %self.sink.location(&pending.file.path), attempts = pending.failures + 1, waited_s = waited.as_secs_f64(), "archive file stored after retrying");
                self.metrics.write_recovered(waited);
                let (topic, partition) = state.id();
                if let Some(next) = state.next {
                    self.flow.resume.push((topic, partition, next));
                }
                Ok(self.commit(state, pending.durable_next))
            }
            Err(error) => {
                pending.failures += 1;
                let failures = pending.failures;
                self.count_failure(error, &pending.file.path)?;
                let unit = self.jitter();
                pending.retry_at = now + self.retry.delay(failures, unit);
                state.pending = Some(pending);
                Ok(None)
            }
        }
    }

    /// Records a first failure: permanent → error; otherwise the file becomes pending and the
    /// partition is paused.
    fn failed(
        &mut self,
        state: &mut PartitionState,
        file: EncodedFile,
        durable_next: Option<i64>,
        error: SinkError,
        now: Instant,
    ) -> Result<(), ArchiveError> {
        self.count_failure(error, &file.path)?;
        let unit = self.jitter();
        let retry_at = now + self.retry.delay(1, unit);
        self.flow.pause.push(state.id());
        state.pending = Some(PendingFile { file, durable_next, failures: 1, first_failure: now, retry_at });
        Ok(())
    }

    /// Counts a failed put, updates the sink's health, and turns a permanent failure into the
    /// error that stops the stage.
    fn count_failure(&mut self, error: SinkError, path: &str) -> Result<(), ArchiveError> {
        self.summary.write_errors += 1;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.metrics.write_failed(error.reason());
        if self.healthy && self.retry.is_unhealthy(self.consecutive_failures) {
            self.healthy = false;
            self.metrics.sink_health(false);
        }
        let location = self.sink.location(path);
        if error.is_permanent() {
            return Err(ArchiveError::Sink { key: location, source: Box::new(error) });
        }
        tracing::warn!(file = %location, reason = error.reason(), error = %error, consecutive_failures = self.consecutive_failures, "archive write failed; retrying in place with the partition paused");
        Ok(())
    }

    /// Encodes `sealed` as Parquet.
    fn encode(&self, sealed: SealedFile, reason: RollReason) -> Result<EncodedFile, ArchiveError> {
        let SealedFile { key, path, rows } = sealed;
        let bytes = encode_parquet(&rows, &self.parquet)
            .map_err(|source| ArchiveError::Parquet { key: path.clone(), source })?;
        Ok(EncodedFile {
            key,
            path,
            bytes,
            rows: rows.batch.num_rows() as u64,
            first_offset: rows.first_offset,
            last_offset: rows.last_offset,
            reason,
        })
    }

    /// Puts `file` in the sink; counts it when it is durable.
    fn put(&mut self, file: &EncodedFile) -> Result<(), SinkError> {
        self.sink.put(&file.path, &file.bytes)?;
        if self.consecutive_failures > 0 {
            self.consecutive_failures = 0;
            if !self.healthy {
                self.healthy = true;
                self.metrics.sink_health(true);
            }
        }
        let written = WrittenFile {
            location: self.sink.location(&file.path),
            rows: file.rows,
            bytes: file.bytes.len() as u64,
            last_offset: file.last_offset,
            reason: file.reason,
            key: file.key.clone(),
        };
        tracing::info!(
            file = %written.location, rows = written.rows, bytes = written.bytes,
            first_offset = file.first_offset, last_offset = file.last_offset,
            reason = file.reason.as_str(), "archive file written"
        );
        self.summary.files += 1;
        self.summary.rows += written.rows;
        self.summary.bytes += written.bytes;
        self.metrics.file_written(&written);
        Ok(())
    }

    /// The commit request for `next`, when it moved.
    fn commit(&mut self, state: &mut PartitionState, next: Option<i64>) -> Option<CommitRequest> {
        state.advance_to(next).map(|next_offset| {
            self.summary.commits += 1;
            let (topic, partition) = state.id();
            CommitRequest { topic, partition, next_offset }
        })
    }

    /// A jitter unit in [0, 1).
    fn jitter(&mut self) -> f64 {
        let mut x = self.jitter_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter_state = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Buffers, rolls and writes; see the module docs.
pub struct Archiver {
    policy: RollPolicy,
    writer: ArchiveWriter,
    partitions: BTreeMap<(String, i32), PartitionState>,
    dead_letters: Option<Arc<dyn ArchiveDeadLetters>>,
    /// Writer schemas besides the current and legacy ones (`archive.writer_schemas_dir`).
    schemas: WriterSchemas,
    /// Rows in all buffers.
    buffered: usize,
    /// Pending files given up when their partitions were released (revoked, or shutdown):
    /// their rows are rewritten by the partition's next reader.
    abandoned: u64,
    /// Set by the first error: buffers may have lost rows whose offsets are already handled,
    /// so from then on nothing is written or committed (the next owner replays).
    stopped: bool,
}

impl Archiver {
    /// An archiver with no partitions yet, retrying with the default [`RetryPolicy`] and no
    /// dead-letter topic.
    pub fn new(
        policy: RollPolicy,
        parquet: ParquetSettings,
        sink: Arc<dyn ArchiveSink>,
        metrics: Arc<dyn ArchiveMetrics>,
    ) -> Self {
        Archiver {
            policy,
            writer: ArchiveWriter {
                parquet,
                sink,
                metrics,
                summary: ArchiveSummary::default(),
                retry: RetryPolicy::default(),
                consecutive_failures: 0,
                healthy: true,
                flow: FlowChange::default(),
                jitter_state: jitter_seed(),
            },
            partitions: BTreeMap::new(),
            dead_letters: None,
            schemas: WriterSchemas::new(),
            buffered: 0,
            abandoned: 0,
            stopped: false,
        }
    }

    /// Retries failed puts with `retry`.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.writer.retry = retry;
        self
    }

    /// Resolves records of these writer schemas to the current one (see `codec::resolve`).
    pub fn with_writer_schemas(mut self, schemas: WriterSchemas) -> Self {
        self.schemas = schemas;
        self
    }

    /// Sends undecodable records to `dead_letters`.
    pub fn with_dead_letters(mut self, dead_letters: Arc<dyn ArchiveDeadLetters>) -> Self {
        self.dead_letters = Some(dead_letters);
        self
    }

    /// Handles the record at `offset` of `topic`/`partition` (see [`Archiver::record_keyed`]).
    pub fn record(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        payload: Option<&[u8]>,
        now: Instant,
    ) -> Result<Vec<CommitRequest>, ArchiveError> {
        self.record_keyed(topic, partition, offset, None, payload, now)
    }

    /// Handles the record at `offset` of `topic`/`partition` with Kafka key `key`: buffers it
    /// (rolling first or after as the policy says) or dead-letters it when it does not decode.
    /// Returns the commits made possible.
    pub fn record_keyed(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        now: Instant,
    ) -> Result<Vec<CommitRequest>, ArchiveError> {
        self.guard(|this| this.record_inner(topic, partition, offset, key, payload, now))
    }

    /// Marks the archiver stopped after a failure outside it (a failed commit), so that nothing
    /// more is written or committed.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Pauses and resumes the stage must apply, accumulated since the last call.
    pub fn take_flow_changes(&mut self) -> FlowChange {
        std::mem::take(&mut self.writer.flow)
    }

    /// Runs `f` unless stopped; stops on its error.
    fn guard<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, ArchiveError>) -> Result<T, ArchiveError> {
        if self.stopped {
            return Err(ArchiveError::Stopped);
        }
        let result = f(self);
        self.stopped = result.is_err();
        // One pass for both gauges: this runs after every record.
        let (buffered, paused) = self.partitions.values().fold((0, 0), |(rows, paused), s| {
            (rows + s.rows.len(), paused + usize::from(s.pending.is_some()))
        });
        self.buffered = buffered;
        self.writer.metrics.buffered_rows(buffered);
        self.writer.metrics.paused_partitions(paused);
        result
    }

    fn record_inner(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        now: Instant,
    ) -> Result<Vec<CommitRequest>, ArchiveError> {
        let mut commits = Vec::new();
        let id = (topic.to_string(), partition);
        let state = self.partitions.entry(id).or_insert_with(|| PartitionState::new(topic, partition));
        if let Some(next) = state.next.filter(|&next| offset < next) {
            return Err(RowError::OffsetOrder {
                topic: topic.to_string(),
                partition,
                last: next - 1,
                got: offset,
            }
            .into());
        }
        if state.pending.is_some() {
            // Fetched before the pause took effect: not handled, read again after the resume.
            tracing::debug!(
                topic,
                partition,
                offset,
                "record of a paused partition left for after the resume"
            );
            return Ok(commits);
        }
        let decoded = match payload {
            None => Err(("empty_payload", "the record has no payload".to_string())),
            Some(bytes) => self.schemas.decode(bytes).map_err(|e| (e.reason(), e.to_string())),
        };
        let prediction = match decoded {
            Ok((prediction, _framing)) => prediction,
            Err((reason, detail)) => {
                let record =
                    UndecodableRecord { topic, partition, offset, key, payload, reason, detail: &detail };
                match &self.dead_letters {
                    Some(dlq) => {
                        dlq.send(&record)?;
                        tracing::warn!(topic, partition, offset, reason, error = %detail, "undecodable record sent to the archive's dead-letter topic");
                    }
                    None => {
                        tracing::warn!(topic, partition, offset, reason, error = %detail, "undecodable record skipped (no dead-letter topic configured)")
                    }
                }
                state.next = Some(offset + 1);
                self.writer.summary.dead_lettered += 1;
                self.writer.metrics.record_dead_lettered(topic, reason);
                return Ok(commits);
            }
        };

        let hour = HourPartition::from_epoch_ms(prediction.processed_at_ms);
        if let Some(reason) = self.policy.before_append(state.open.as_ref(), hour) {
            commits.extend(self.writer.roll(state, reason, now)?);
        }
        state.rows.push(&prediction, offset)?;
        let open = match state.open {
            Some(open) => OpenBuffer { rows: open.rows + 1, ..open },
            None => OpenBuffer { rows: 1, hour, opened_at: now },
        };
        state.open = Some(open);
        state.next = Some(offset + 1);
        if let Some(reason) = self.policy.after_append(&open) {
            commits.extend(self.writer.roll(state, reason, now)?);
        }
        Ok(commits)
    }

    /// Retries pending files whose backoff is over and rolls every buffer whose age expired at
    /// `now`.
    pub fn tick(&mut self, now: Instant) -> Result<Vec<CommitRequest>, ArchiveError> {
        self.guard(|this| {
            let mut commits = Vec::new();
            for state in this.partitions.values_mut() {
                if state.pending.as_ref().is_some_and(|p| p.retry_at <= now) {
                    commits.extend(this.writer.retry(state, now)?);
                }
                let expired = state.open.as_ref().and_then(|open| this.policy.on_tick(open, now));
                if let Some(reason) = expired {
                    commits.extend(this.writer.roll(state, reason, now)?);
                }
            }
            Ok(commits)
        })
    }

    /// The earliest age deadline of an open buffer or retry of a pending file.
    pub fn next_deadline(&self) -> Option<Instant> {
        let ages =
            self.partitions.values().filter_map(|s| s.open.as_ref()).map(|open| self.policy.deadline(open));
        let retries = self.partitions.values().filter_map(|s| s.pending.as_ref()).map(|p| p.retry_at);
        ages.chain(retries).min()
    }

    /// Rolls the buffers of `partitions` (revoked ones) and forgets them: a later assignment
    /// starts from the committed offset with fresh state. A pending file gets one more
    /// attempt; if that fails too it is given up (counted in [`Archiver::abandoned_files`]):
    /// its offsets were never committed, so whoever reads the partition next rewrites it.
    pub fn release(
        &mut self,
        partitions: &[(String, i32)],
        reason: RollReason,
    ) -> Result<Vec<CommitRequest>, ArchiveError> {
        self.guard(|this| {
            let mut commits = Vec::new();
            let now = Instant::now();
            for id in partitions {
                let Some(mut state) = this.partitions.remove(id) else { continue };
                if state.pending.is_some() {
                    commits.extend(this.writer.retry(&mut state, now)?);
                    if let Some(pending) = &state.pending {
                        tracing::warn!(file = %this.writer.sink.location(&pending.file.path), "partition released with a file not yet stored: its next reader rewrites it");
                        this.abandoned += 1;
                        continue;
                    }
                }
                commits.extend(this.writer.roll(&mut state, reason, now)?);
                if state.pending.is_some() {
                    this.abandoned += 1;
                }
            }
            // Released partitions need no resume: their pause ends with the assignment.
            let kept = |(t, p, _): &(String, i32, i64)| !partitions.iter().any(|(rt, rp)| rt == t && rp == p);
            this.writer.flow.resume.retain(kept);
            this.writer.flow.pause.retain(|id| !partitions.contains(id));
            Ok(commits)
        })
    }

    /// Rolls every buffer (shutdown).
    pub fn flush_all(&mut self, reason: RollReason) -> Result<Vec<CommitRequest>, ArchiveError> {
        let keys: Vec<_> = self.partitions.keys().cloned().collect();
        self.release(&keys, reason)
    }

    /// Rows currently buffered over all partitions.
    pub fn buffered_rows(&self) -> usize {
        self.buffered
    }

    /// Files waiting for a retry (= partitions paused).
    pub fn pending_files(&self) -> usize {
        self.partitions.values().filter(|s| s.pending.is_some()).count()
    }

    /// Pending files given up on release since the archiver started.
    pub fn abandoned_files(&self) -> u64 {
        self.abandoned
    }

    /// Totals so far.
    pub fn summary(&self) -> ArchiveSummary {
        self.writer.summary
    }
}

/// Seeds the jitter from the clock and the process, so replicas draw different waits.
fn jitter_seed() -> u64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ (u64::from(std::process::id()) << 32)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::metrics::ArchiveCounters;
    use crate::archive::sink::{LocalFsSink, SinkError};
    use crate::archive::testing::{prediction, T0_MS};
    use crate::archive::{ArchiveDeadLetters, UndecodableRecord};
    use crate::codec::{encode_prediction, Framing};
    use std::path::Path;
    use std::time::Duration;

    fn encoded(i: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_prediction(&prediction(i), &Framing::SingleObject, &mut out);
        out
    }

    fn archiver(root: &Path, max_rows: usize) -> (Archiver, Arc<ArchiveCounters>) {
        let counters = Arc::new(ArchiveCounters::default());
        let policy = RollPolicy { max_rows, max_age: Duration::from_secs(60) };
        let a = Archiver::new(
            policy,
            ParquetSettings::default(),
            Arc::new(LocalFsSink::new(root)),
            counters.clone(),
        );
        (a, counters)
    }

    fn commit(topic: &str, partition: i32, next_offset: i64) -> CommitRequest {
        CommitRequest { topic: topic.to_string(), partition, next_offset }
    }

    fn parquet_files(root: &Path) -> Vec<String> {
        crate::archive::sink::files_under(root)
    }

    #[test]
    fn seal_takes_the_buffered_rows_with_their_file_key_without_touching_files() {
        let mut state = PartitionState::new("emotion.accepted", 3);
        state.open = Some(OpenBuffer {
            rows: 2,
            hour: HourPartition::from_epoch_ms(T0_MS),
            opened_at: Instant::now(),
        });
        state.rows.push(&prediction(0), 7).unwrap();
        state.rows.push(&prediction(1), 8).unwrap();
        let sealed = state.seal().unwrap().expect("rows were buffered");
        assert_eq!(sealed.path, "dt=2023-11-14/hour=22/emotion.accepted+3+7.parquet");
        assert_eq!(sealed.path, sealed.key.relative_path());
        assert_eq!(
            (sealed.rows.first_offset, sealed.rows.last_offset, sealed.rows.batch.num_rows()),
            (7, 8, 2)
        );
        assert!(state.open.is_none() && state.rows.is_empty());
        // Nothing buffered: nothing to store, the buffer is still closed.
        assert!(state.seal().unwrap().is_none());
    }

    #[test]
    fn advance_offers_each_new_offset_for_commit_once() {
        let mut state = PartitionState::new("t", 0);
        assert_eq!(state.advance_to(state.next), None, "nothing handled yet");
        state.next = Some(5);
        assert_eq!(state.advance_to(state.next), Some(5));
        assert_eq!(state.advance_to(state.next), None, "an idle partition is not committed again");
        state.next = Some(9);
        assert_eq!(state.advance_to(Some(9)), Some(9));
        assert_eq!(state.committed, Some(9));
    }

    #[test]
    fn rolls_by_rows_and_commits_after_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut a, counters) = archiver(tmp.path(), 3);
        let now = Instant::now();
        let mut commits = Vec::new();
        for i in 0..7u64 {
            commits.extend(a.record("emotion.accepted", 1, 10 + i as i64, Some(&encoded(i)), now).unwrap());
        }
        // Two full files (offsets 10–12, 13–15); offset 16 is still buffered and not committed.
        assert_eq!(commits, [commit("emotion.accepted", 1, 13), commit("emotion.accepted", 1, 16)]);
        assert_eq!(a.buffered_rows(), 1);
        assert_eq!(
            parquet_files(tmp.path()),
            [
                "dt=2023-11-14/hour=22/emotion.accepted+1+10.parquet",
                "dt=2023-11-14/hour=22/emotion.accepted+1+13.parquet"
            ]
        );
        assert_eq!(a.flush_all(RollReason::Shutdown).unwrap(), [commit("emotion.accepted", 1, 17)]);
        let summary = a.summary();
        assert_eq!((summary.files, summary.rows, summary.commits), (3, 7, 3));
        assert_eq!(counters.summary().rows, 7);
        assert_eq!(counters.summary().bytes, summary.bytes);
        // Nothing new: no file, no commit.
        assert!(a.flush_all(RollReason::Shutdown).unwrap().is_empty());
    }

    #[test]
    fn a_row_of_the_next_hour_closes_the_file_first() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut a, _) = archiver(tmp.path(), 1_000);
        let now = Instant::now();
        // processed_at = T0 + i s; T0 is 22:13:20, so i = 2800 is 23:00:00.
        let mut commits = Vec::new();
        for (offset, i) in [(0, 0u64), (1, 2_799), (2, 2_800), (3, 2_801)] {
            commits.extend(a.record("t", 0, offset, Some(&encoded(i)), now).unwrap());
        }
        assert_eq!(commits, [commit("t", 0, 2)], "the 22h file holds offsets 0 and 1");
        a.flush_all(RollReason::Shutdown).unwrap();
        assert_eq!(
            parquet_files(tmp.path()),
            ["dt=2023-11-14/hour=22/t+0+0.parquet", "dt=2023-11-14/hour=23/t+0+2.parquet"]
        );
        assert_eq!(HourPartition::from_epoch_ms(T0_MS + 2_800_000).dir(), "dt=2023-11-14/hour=23");
    }

    #[test]
    fn undecodable_records_are_counted_and_committed_with_the_next_file() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut a, counters) = archiver(tmp.path(), 2);
        let now = Instant::now();
        assert!(a.record("t", 0, 0, Some(b"\xC3\x01garbage"), now).unwrap().is_empty());
        assert!(a.record("t", 0, 1, None, now).unwrap().is_empty());
        assert!(a.record("t", 0, 2, Some(&encoded(1)), now).unwrap().is_empty());
        assert_eq!(a.record("t", 0, 4, Some(&encoded(2)), now).unwrap(), [commit("t", 0, 5)]);
        assert_eq!(parquet_files(tmp.path()), ["dt=2023-11-14/hour=22/t+0+2.parquet"]);
        assert_eq!((a.summary().dead_lettered, counters.summary().dead_lettered), (2, 2));
        // Only bad records since the last file: committed on the next roll without a file.
        a.record("t", 0, 5, Some(b""), now).unwrap();
        assert_eq!(a.flush_all(RollReason::Shutdown).unwrap(), [commit("t", 0, 6)]);
        assert_eq!(a.summary().files, 1);
    }

    #[test]
    fn age_rolls_only_expired_buffers_and_release_forgets_partitions() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut a, _) = archiver(tmp.path(), 1_000);
        let t0 = Instant::now();
        a.record("t", 0, 0, Some(&encoded(0)), t0).unwrap();
        a.record("t", 1, 0, Some(&encoded(1)), t0 + Duration::from_secs(30)).unwrap();
        assert_eq!(a.next_deadline(), Some(t0 + Duration::from_secs(60)));
        assert!(a.tick(t0 + Duration::from_secs(59)).unwrap().is_empty());
        assert_eq!(a.tick(t0 + Duration::from_secs(60)).unwrap(), [commit("t", 0, 1)]);
        assert_eq!(a.next_deadline(), Some(t0 + Duration::from_secs(90)));
        assert_eq!(a.release(&[("t".to_string(), 1)], RollReason::Revoked).unwrap(), [commit("t", 1, 1)]);
        assert_eq!((a.buffered_rows(), a.next_deadline()), (0, None));
        // A released partition may come back at any offset (the next owner's commit).
        a.record("t", 1, 0, Some(&encoded(1)), t0).unwrap();
    }

    #[test]
    fn offsets_going_backwards_are_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut a, _) = archiver(tmp.path(), 10);
        let now = Instant::now();
        a.record("t", 0, 5, Some(b"bad"), now).unwrap();
        assert!(matches!(a.record("t", 0, 5, Some(&encoded(0)), now), Err(ArchiveError::Rows(_))));
    }

    /// A sink that always fails, as a full disk would.
    struct FailingSink;

    impl ArchiveSink for FailingSink {
        fn put(&self, key: &str, _data: &[u8]) -> Result<(), SinkError> {
            Err(SinkError::InvalidKey(key.to_string()))
        }
        fn location(&self, key: &str) -> String {
            key.to_string()
        }
    }

    #[test]
    fn a_failed_store_commits_nothing_then_or_later() {
        let policy = RollPolicy { max_rows: 2, max_age: Duration::from_secs(60) };
        let mut a = Archiver::new(
            policy,
            ParquetSettings::default(),
            Arc::new(FailingSink),
            Arc::new(crate::archive::metrics::NoMetrics),
        );
        let now = Instant::now();
        a.record("t", 0, 0, Some(&encoded(0)), now).unwrap();
        a.record("t", 1, 0, Some(&encoded(0)), now).unwrap();
        let err = a.record("t", 0, 1, Some(&encoded(1)), now).unwrap_err();
        assert!(matches!(err, ArchiveError::Sink { .. }), "{err}");
        // Partition 0's rows are gone from memory but were never committed; nothing may be
        // committed from now on, including on the revoke that follows the stage's exit.
        assert!(matches!(a.flush_all(RollReason::Revoked), Err(ArchiveError::Stopped)));
        assert!(matches!(a.tick(now + Duration::from_secs(120)), Err(ArchiveError::Stopped)));
        assert_eq!(a.summary().commits, 0);
    }

    /// The local sink, failing with "disk full" while `failures` is above zero.
    struct FlakySink {
        inner: LocalFsSink,
        failures: std::sync::atomic::AtomicUsize,
    }

    impl FlakySink {
        fn new(root: &Path, failures: usize) -> Arc<FlakySink> {
            Arc::new(FlakySink { inner: LocalFsSink::new(root), failures: failures.into() })
        }
    }

    impl ArchiveSink for FlakySink {
        fn put(&self, key: &str, data: &[u8]) -> Result<(), SinkError> {
            use std::sync::atomic::Ordering::SeqCst;
            if self.failures.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok() {
                let source = std::io::Error::from(std::io::ErrorKind::StorageFull);
                return Err(SinkError::Io { op: "write", path: key.into(), source });
            }
            self.inner.put(key, data)
        }
        fn location(&self, key: &str) -> String {
            self.inner.location(key)
        }
    }

    fn flaky_archiver(root: &Path, failures: usize) -> (Archiver, Arc<ArchiveCounters>) {
        let counters = Arc::new(ArchiveCounters::default());
        let policy = RollPolicy { max_rows: 2, max_age: Duration::from_secs(600) };
        let retry =
            RetryPolicy { initial: Duration::from_secs(1), max: Duration::from_secs(8), unhealthy_after: 2 };
        let sink = FlakySink::new(root, failures);
        let a = Archiver::new(policy, ParquetSettings::default(), sink, counters.clone()).with_retry(retry);
        (a, counters)
    }

    #[test]
    fn a_failed_put_pauses_the_partition_and_is_retried_in_place_until_it_is_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut a, counters) = flaky_archiver(tmp.path(), 3);
        let t0 = Instant::now();
        a.record("t", 0, 0, Some(&encoded(0)), t0).unwrap();
        // The roll at two rows fails: no commit, the partition is to be paused, the sink is
        // still healthy after one failure.
        assert!(a.record("t", 0, 1, Some(&encoded(1)), t0).unwrap().is_empty());
        assert_eq!(a.take_flow_changes(), FlowChange { pause: vec![("t".into(), 0)], resume: vec![] });
        assert_eq!((a.pending_files(), counters.summary().write_errors), (1, 1));
        assert!(counters.sink_healthy());
        // A record fetched before the pause took effect is left for after the resume.
        assert!(a.record("t", 0, 2, Some(&encoded(2)), t0).unwrap().is_empty());
        assert_eq!(a.buffered_rows(), 0);
        // Other partitions go on.
        a.record("t", 1, 0, Some(&encoded(0)), t0).unwrap();
        // Retries follow the backoff (1 s, then 2 s, with up to half of it jittered away).
        let first = a.next_deadline().unwrap();
        assert!(
            first >= t0 + Duration::from_millis(500) && first <= t0 + Duration::from_secs(1),
            "{first:?}"
        );
        assert!(a.tick(first - Duration::from_millis(1)).unwrap().is_empty());
        assert!(a.tick(first).unwrap().is_empty(), "second failure");
        assert!(!counters.sink_healthy(), "two consecutive failures make the sink unhealthy");
        let second = a.next_deadline().unwrap();
        assert!(second >= first + Duration::from_secs(1) && second <= first + Duration::from_secs(2));
        assert!(a.tick(second).unwrap().is_empty(), "third failure");
        assert!(a.take_flow_changes().is_empty(), "still paused, no new pause");
        let third = a.next_deadline().unwrap();
        // Fourth attempt: stored, committed up to what the file holds, resumed at offset 2.
        assert_eq!(a.tick(third).unwrap(), [commit("t", 0, 2)]);
        assert_eq!(a.take_flow_changes(), FlowChange { pause: vec![], resume: vec![("t".into(), 0, 2)] });
        assert!(counters.sink_healthy());
        assert_eq!((a.pending_files(), a.summary().write_errors, a.summary().files), (0, 3, 1));
        // The re-read record goes on from where the file ended.
        a.record("t", 0, 2, Some(&encoded(2)), third).unwrap();
        assert_eq!(a.record("t", 0, 3, Some(&encoded(3)), third).unwrap(), [commit("t", 0, 4)]);
        assert_eq!(
            parquet_files(tmp.path()),
            ["dt=2023-11-14/hour=22/t+0+0.parquet", "dt=2023-11-14/hour=22/t+0+2.parquet"]
        );
    }

    #[test]
    fn a_file_failing_at_release_is_given_up_uncommitted_for_the_next_reader() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut a, _) = flaky_archiver(tmp.path(), 2);
        let now = Instant::now();
        a.record("t", 0, 0, Some(&encoded(0)), now).unwrap();
        a.record("t", 0, 1, Some(&encoded(1)), now).unwrap();
        a.record("t", 1, 0, Some(&encoded(0)), now).unwrap();
        // Partition 0's retry at release fails again; partition 1's buffer is stored.
        assert_eq!(a.flush_all(RollReason::Shutdown).unwrap(), [commit("t", 1, 1)]);
        assert_eq!((a.abandoned_files(), a.pending_files()), (1, 0));
        assert!(a.take_flow_changes().resume.is_empty(), "released partitions are not resumed");
        assert_eq!(parquet_files(tmp.path()), ["dt=2023-11-14/hour=22/t+1+0.parquet"]);
    }

    /// A dead letter as the log keeps it: offset, reason, key.
    type Sent = (i64, &'static str, Option<Vec<u8>>);

    /// Collects dead letters, or refuses them.
    #[derive(Default)]
    struct DeadLetterLog {
        sent: std::sync::Mutex<Vec<Sent>>,
        refuse: bool,
    }

    impl ArchiveDeadLetters for DeadLetterLog {
        fn send(&self, r: &UndecodableRecord<'_>) -> Result<(), crate::archive::DeadLetterError> {
            if self.refuse {
                let what = format!("{}/{}/{} to dlq", r.topic, r.partition, r.offset);
                return Err(crate::archive::DeadLetterError::Timeout {
                    what,
                    timeout: Duration::from_secs(1),
                });
            }
            self.sent.lock().unwrap().push((r.offset, r.reason, r.key.map(<[u8]>::to_vec)));
            Ok(())
        }
    }

    #[test]
    fn undecodable_records_go_to_the_dead_letter_topic_before_their_offset_is_committed() {
        let tmp = tempfile::tempdir().unwrap();
        let log = Arc::new(DeadLetterLog::default());
        let (a, _) = archiver(tmp.path(), 1);
        let mut a = a.with_dead_letters(log.clone());
        let now = Instant::now();
        assert!(a.record_keyed("t", 0, 0, Some(b"k0"), Some(b"\xC3\x01garbage"), now).unwrap().is_empty());
        assert!(a.record("t", 0, 1, None, now).unwrap().is_empty());
        assert_eq!(a.record("t", 0, 2, Some(&encoded(2)), now).unwrap(), [commit("t", 0, 3)]);
        let sent = log.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 2);
        assert_eq!((sent[0].0, sent[0].2.as_deref()), (0, Some(&b"k0"[..])));
        assert_eq!((sent[1].0, sent[1].1), (1, "empty_payload"));

        // A dead letter that cannot be stored stops the archiver before its offset moves.
        let refusing = Arc::new(DeadLetterLog { refuse: true, ..DeadLetterLog::default() });
        let (b, _) = archiver(tmp.path(), 1);
        let mut b = b.with_dead_letters(refusing);
        let err = b.record("t", 0, 0, Some(b"bad"), now).unwrap_err();
        assert!(matches!(err, ArchiveError::DeadLetter(_)), "{err}");
        assert!(matches!(b.flush_all(RollReason::Shutdown), Err(ArchiveError::Stopped)));
        assert_eq!(b.summary().commits, 0);
    }

    #[test]
    fn a_record_of_a_known_newer_schema_is_archived_and_an_unknown_one_dead_lettered() {
        let tmp = tempfile::tempdir().unwrap();
        let (v2, bytes) = crate::codec::resolve_testing::added_field_record(&prediction(4));
        let now = Instant::now();
        let (mut plain, _) = archiver(tmp.path(), 1);
        assert!(plain.record("t", 0, 0, Some(&bytes), now).unwrap().is_empty());
        assert_eq!((plain.summary().dead_lettered, plain.summary().rows), (1, 0));

        let mut schemas = WriterSchemas::new();
        schemas.add("emotion_prediction.v2.avsc", &v2).unwrap();
        let (resolving, _) = archiver(tmp.path(), 1);
        let mut resolving = resolving.with_writer_schemas(schemas);
        assert_eq!(resolving.record("t", 1, 0, Some(&bytes), now).unwrap(), [commit("t", 1, 1)]);
        assert_eq!((resolving.summary().dead_lettered, resolving.summary().rows), (0, 1));
    }
}
