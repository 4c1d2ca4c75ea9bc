//! The archive's core, without Kafka: per-(topic, partition) buffers, rolls, Parquet files in a
//! sink, and the offsets that may be committed once a file is durable.
//!
//! The Kafka stage ([`super::stage`]) feeds it every record it polls and commits what it
//! returns; tests feed it directly. Keeping the offset bookkeeping here makes "commit only what
//! is durable" testable without a broker.
//!
//! # Rolls
//! A roll is three steps: *seal* (pure: close the partition's buffer, take its rows as an Arrow
//! batch with the file key they go to), *store* (encode Parquet, put it in the sink, count it:
//! the only step with I/O, done by the archiver's writer) and *advance* (pure: the offset that
//! is now durable, when it moved past the last commit).
//!
//! # Offsets
//! For each partition the archiver tracks `next`, the offset after the last record it has
//! handled (buffered or skipped). When a buffer is rolled, every handled record is either in a
//! durable file or was skipped, so `next` is the offset to commit. It is only returned when it
//! moved past the last commit, so an idle partition is not committed again and again.
//!
//! # Undecodable records
//! The output topics are written by emogate itself, so a record that is empty or does not
//! decode as an `EmotionPrediction` is unexpected (another producer, a schema change). It is
//! counted ([`ArchiveMetrics::record_skipped`]) and logged with its coordinates, and skipped:
//! the archive stage keeps going and its offset is committed with the next file. The record
//! stays in Kafka for as long as the topic's retention keeps it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::error::ArchiveError;
use super::metrics::{ArchiveMetrics, ArchiveSummary, WrittenFile};
use super::partition::{FileKey, HourPartition};
use super::roll::{OpenBuffer, RollPolicy, RollReason};
use super::rows::{FinishedRows, RowBuffer, RowError};
use super::sink::ArchiveSink;
use super::writer::{encode_parquet, ParquetSettings};
use crate::codec::decode_prediction;

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

/// State of one assigned partition.
struct PartitionState {
    rows: RowBuffer,
    open: Option<OpenBuffer>,
    /// Offset after the last handled record.
    next: Option<i64>,
    /// Last offset returned for commit.
    committed: Option<i64>,
}

impl PartitionState {
    fn new(topic: &str, partition: i32) -> Self {
        PartitionState { rows: RowBuffer::new(topic, partition), open: None, next: None, committed: None }
    }

    /// First step of a roll (pure): closes the open buffer and takes its rows, with the file
    /// they belong in. `None` when no rows are buffered.
    fn seal(&mut self) -> Result<Option<SealedFile>, ArchiveError> {
        self.open = None;
        let (topic, partition) = (self.rows.topic().to_string(), self.rows.partition());
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

    /// Last step of a roll (pure): every handled record is now durable or skipped, so `next` may
    /// be committed; returns it when it moved past the last commit.
    fn advance(&mut self) -> Option<i64> {
        let next = self.next.filter(|&next| self.committed < Some(next))?;
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

/// The part of the archiver that writes: Parquet encoding, the sink, the metric hooks and the
/// totals. [`ArchiveWriter::roll`] is seal → store → advance.
struct ArchiveWriter {
    parquet: ParquetSettings,
    sink: Arc<dyn ArchiveSink>,
    metrics: Arc<dyn ArchiveMetrics>,
    summary: ArchiveSummary,
}

impl ArchiveWriter {
    /// Writes the buffer of `state` (if it has rows) and returns the commit it allows.
    fn roll(
        &mut self,
        state: &mut PartitionState,
        reason: RollReason,
    ) -> Result<Option<CommitRequest>, ArchiveError> {
        if let Some(sealed) = state.seal()? {
            self.store(sealed, reason)?;
        }
        Ok(state.advance().map(|next_offset| {
            self.summary.commits += 1;
            CommitRequest {
                topic: state.rows.topic().to_string(),
                partition: state.rows.partition(),
                next_offset,
            }
        }))
    }

    /// Encodes `sealed` as Parquet and puts it in the sink; counts it.
    fn store(&mut self, sealed: SealedFile, reason: RollReason) -> Result<WrittenFile, ArchiveError> {
        let SealedFile { key, path, rows } = sealed;
        let bytes = encode_parquet(&rows, &self.parquet)
            .map_err(|source| ArchiveError::Parquet { key: path.clone(), source })?;
        self.sink.put(&path, &bytes).map_err(|source| ArchiveError::Sink { key: path.clone(), source })?;
        let file = WrittenFile {
            location: self.sink.location(&path),
            rows: rows.batch.num_rows() as u64,
            bytes: bytes.len() as u64,
            last_offset: rows.last_offset,
            reason,
            key,
        };
        tracing::info!(
            file = %file.location, rows = file.rows, bytes = file.bytes,
            first_offset = rows.first_offset, last_offset = rows.last_offset,
            reason = reason.as_str(), "archive file written"
        );
        self.summary.files += 1;
        self.summary.rows += file.rows;
        self.summary.bytes += file.bytes;
        self.metrics.file_written(&file);
        Ok(file)
    }
}

/// Buffers, rolls and writes; see the module docs.
pub struct Archiver {
    policy: RollPolicy,
    writer: ArchiveWriter,
    partitions: BTreeMap<(String, i32), PartitionState>,
    /// Rows in all buffers.
    buffered: usize,
    /// Set by the first error: buffers may have lost rows whose offsets are already handled,
    /// so from then on nothing is written or committed (the next owner replays).
    stopped: bool,
}

impl Archiver {
    /// An archiver with no partitions yet.
    pub fn new(
        policy: RollPolicy,
        parquet: ParquetSettings,
        sink: Arc<dyn ArchiveSink>,
        metrics: Arc<dyn ArchiveMetrics>,
    ) -> Self {
        Archiver {
            policy,
            writer: ArchiveWriter { parquet, sink, metrics, summary: ArchiveSummary::default() },
            partitions: BTreeMap::new(),
            buffered: 0,
            stopped: false,
        }
    }

    /// Handles the record at `offset` of `topic`/`partition`: buffers it (rolling first or after
    /// as the policy says) or skips it when it does not decode. Returns the commits made possible.
    pub fn record(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        payload: Option<&[u8]>,
        now: Instant,
    ) -> Result<Vec<CommitRequest>, ArchiveError> {
        self.guard(|this| this.record_inner(topic, partition, offset, payload, now))
    }

    /// Marks the archiver stopped after a failure outside it (a failed commit), so that nothing
    /// more is written or committed.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Runs `f` unless stopped; stops on its error.
    fn guard<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, ArchiveError>) -> Result<T, ArchiveError> {
        if self.stopped {
            return Err(ArchiveError::Stopped);
        }
        let result = f(self);
        self.stopped = result.is_err();
        self.buffered = self.partitions.values().map(|s| s.rows.len()).sum();
        self.writer.metrics.buffered_rows(self.buffered);
        result
    }

    fn record_inner(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        payload: Option<&[u8]>,
        now: Instant,
    ) -> Result<Vec<CommitRequest>, ArchiveError> {
        let mut commits = Vec::new();
        let key = (topic.to_string(), partition);
        let state = self.partitions.entry(key).or_insert_with(|| PartitionState::new(topic, partition));
        if let Some(next) = state.next.filter(|&next| offset < next) {
            return Err(RowError::OffsetOrder {
                topic: topic.to_string(),
                partition,
                last: next - 1,
                got: offset,
            }
            .into());
        }
        let decoded = match payload {
            None => Err("empty_payload"),
            Some(bytes) => decode_prediction(bytes).map_err(|e| {
                tracing::warn!(topic, partition, offset, reason = e.reason(), error = %e, "skipping undecodable record");
                e.reason()
            }),
        };
        let prediction = match decoded {
            Ok((prediction, _framing)) => prediction,
            Err(reason) => {
                if reason == "empty_payload" {
                    tracing::warn!(topic, partition, offset, "skipping record without payload");
                }
                state.next = Some(offset + 1);
                self.writer.summary.skipped_records += 1;
                self.writer.metrics.record_skipped(topic, reason);
                return Ok(commits);
            }
        };

        let hour = HourPartition::from_epoch_ms(prediction.processed_at_ms);
        if let Some(reason) = self.policy.before_append(state.open.as_ref(), hour) {
            commits.extend(self.writer.roll(state, reason)?);
        }
        state.rows.push(&prediction, offset)?;
        let open = match state.open {
            Some(open) => OpenBuffer { rows: open.rows + 1, ..open },
            None => OpenBuffer { rows: 1, hour, opened_at: now },
        };
        state.open = Some(open);
        state.next = Some(offset + 1);
        if let Some(reason) = self.policy.after_append(&open) {
            commits.extend(self.writer.roll(state, reason)?);
        }
        Ok(commits)
    }

    /// Rolls every buffer whose age expired at `now`.
    pub fn tick(&mut self, now: Instant) -> Result<Vec<CommitRequest>, ArchiveError> {
        self.guard(|this| {
            let mut commits = Vec::new();
            for state in this.partitions.values_mut() {
                let expired = state.open.as_ref().and_then(|open| this.policy.on_tick(open, now));
                if let Some(reason) = expired {
                    commits.extend(this.writer.roll(state, reason)?);
                }
            }
            Ok(commits)
        })
    }

    /// The earliest age deadline of an open buffer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.partitions.values().filter_map(|s| s.open.as_ref()).map(|open| self.policy.deadline(open)).min()
    }

    /// Rolls the buffers of `partitions` (revoked ones) and forgets them: a later assignment
    /// starts from the committed offset with fresh state.
    pub fn release(
        &mut self,
        partitions: &[(String, i32)],
        reason: RollReason,
    ) -> Result<Vec<CommitRequest>, ArchiveError> {
        self.guard(|this| {
            let mut commits = Vec::new();
            for key in partitions {
                if let Some(mut state) = this.partitions.remove(key) {
                    commits.extend(this.writer.roll(&mut state, reason)?);
                }
            }
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

    /// Totals so far.
    pub fn summary(&self) -> ArchiveSummary {
        self.writer.summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::metrics::ArchiveCounters;
    use crate::archive::sink::{LocalFsSink, SinkError};
    use crate::archive::testing::{prediction, T0_MS};
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
        assert_eq!(state.advance(), None, "nothing handled yet");
        state.next = Some(5);
        assert_eq!(state.advance(), Some(5));
        assert_eq!(state.advance(), None, "an idle partition is not committed again");
        state.next = Some(9);
        assert_eq!(state.advance(), Some(9));
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
    fn undecodable_records_are_skipped_counted_and_committed_with_the_next_file() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut a, counters) = archiver(tmp.path(), 2);
        let now = Instant::now();
        assert!(a.record("t", 0, 0, Some(b"\xC3\x01garbage"), now).unwrap().is_empty());
        assert!(a.record("t", 0, 1, None, now).unwrap().is_empty());
        assert!(a.record("t", 0, 2, Some(&encoded(1)), now).unwrap().is_empty());
        assert_eq!(a.record("t", 0, 4, Some(&encoded(2)), now).unwrap(), [commit("t", 0, 5)]);
        assert_eq!(parquet_files(tmp.path()), ["dt=2023-11-14/hour=22/t+0+2.parquet"]);
        assert_eq!((a.summary().skipped_records, counters.summary().skipped_records), (2, 2));
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
}
