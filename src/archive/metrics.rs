//! Metric hooks of the archive stage (DESIGN §8: archive files/rows/bytes).
//!
//! The archive does not depend on a metrics library: it calls [`ArchiveMetrics`], which the
//! telemetry module implements with its Prometheus registry (e.g.
//! `emogate_archive_files_total`, `emogate_archive_rows_total`, `emogate_archive_bytes_total`,
//! `emogate_archive_dead_lettered_total{reason}`, `emogate_archive_write_errors_total{reason}`,
//! `emogate_archive_retry_seconds`, `emogate_archive_sink_healthy`,
//! `emogate_archive_paused_partitions`, `emogate_archive_buffered_rows`,
//! `emogate_archive_assigned_partitions`).
//! [`ArchiveCounters`] is a ready-made atomic implementation (tests, demo summaries).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use super::partition::FileKey;
use super::roll::RollReason;

/// A file that is durable in the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Its identity (topic, partition, first offset, hour).
    pub key: FileKey,
    /// Where it is (path or URL).
    pub location: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// Offset of the last row.
    pub last_offset: i64,
    /// Why the buffer was rolled.
    pub reason: RollReason,
}

/// Callbacks for the stage's metrics. Every method has a no-op default; implementations must
/// be cheap and must not block (they run on the consuming thread).
pub trait ArchiveMetrics: Send + Sync {
    /// A file became durable.
    fn file_written(&self, _file: &WrittenFile) {}

    /// A record of `topic` went to the archive's dead-letter topic: its payload was empty or
    /// not an `EmotionPrediction`. `reason` is a codec reason code (see
    /// [`crate::codec::DecodeError::reason`]) or `empty_payload`.
    fn record_dead_lettered(&self, _topic: &str, _reason: &'static str) {}

    /// A put failed (`reason`: [`super::SinkError::reason`]); it is retried unless permanent.
    fn write_failed(&self, _reason: &'static str) {}

    /// A file that had failed became durable after waiting `waited` since its first failure.
    fn write_recovered(&self, _waited: Duration) {}

    /// The sink became healthy or unhealthy (`archive.unhealthy_after_failures` consecutive
    /// failures; for `/readyz`).
    fn sink_health(&self, _healthy: bool) {}

    /// Partitions now paused while their file is retried.
    fn paused_partitions(&self, _partitions: usize) {}

    /// Offsets up to `next_offset` (exclusive) of `topic`/`partition` were committed.
    fn offsets_committed(&self, _topic: &str, _partition: i32, _next_offset: i64) {}

    /// Rows now held in memory, read but not yet in a durable file, over all partitions (a
    /// gauge: memory in use and what a crash would make the stage read again). Called after
    /// every record and every roll.
    fn buffered_rows(&self, _rows: usize) {}

    /// The consumer now owns `partitions` partitions (for `/readyz`).
    fn assignment_changed(&self, _partitions: usize) {}
}

/// Ignores every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMetrics;

impl ArchiveMetrics for NoMetrics {}

/// Totals of a stage run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// Files written (rewrites of a replayed file count again).
    pub files: u64,
    /// Rows written.
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Undecodable records sent to the archive's dead-letter topic.
    pub dead_lettered: u64,
    /// Failed puts (each retry that fails counts again).
    pub write_errors: u64,
    /// Offset commits requested (one per roll that moved a partition's offset). A commit the
    /// broker refused on revocation still counts; any other refusal stops the stage.
    pub commits: u64,
}

/// Atomic counters implementing [`ArchiveMetrics`].
#[derive(Debug, Default)]
pub struct ArchiveCounters {
    files: AtomicU64,
    rows: AtomicU64,
    bytes: AtomicU64,
    dead_lettered: AtomicU64,
    write_errors: AtomicU64,
    unhealthy: AtomicBool,
    commits: AtomicU64,
    assigned: AtomicI64,
    buffered: AtomicU64,
}

impl ArchiveCounters {
    /// The totals so far.
    pub fn summary(&self) -> ArchiveSummary {
        ArchiveSummary {
            files: self.files.load(Ordering::Relaxed),
            rows: self.rows.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
        }
    }

    /// Whether the sink is healthy now.
    pub fn sink_healthy(&self) -> bool {
        !self.unhealthy.load(Ordering::Relaxed)
    }

    /// Rows currently buffered.
    pub fn buffered(&self) -> u64 {
        self.buffered.load(Ordering::Relaxed)
    }

    /// Partitions currently assigned (`-1` before the first assignment).
    pub fn assigned_partitions(&self) -> i64 {
        self.assigned.load(Ordering::Relaxed) - 1
    }
}

impl ArchiveMetrics for ArchiveCounters {
    fn file_written(&self, file: &WrittenFile) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(file.rows, Ordering::Relaxed);
        self.bytes.fetch_add(file.bytes, Ordering::Relaxed);
    }

    fn record_dead_lettered(&self, _topic: &str, _reason: &'static str) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    fn write_failed(&self, _reason: &'static str) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
    }

    fn sink_health(&self, healthy: bool) {
        self.unhealthy.store(!healthy, Ordering::Relaxed);
    }

    fn offsets_committed(&self, _topic: &str, _partition: i32, _next_offset: i64) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    fn buffered_rows(&self, rows: usize) {
        self.buffered.store(rows as u64, Ordering::Relaxed);
    }

    fn assignment_changed(&self, partitions: usize) {
        self.assigned.store(partitions as i64 + 1, Ordering::Relaxed);
    }
}
