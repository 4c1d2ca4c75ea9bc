//! The archive stage (DESIGN §1, §5): a consumer group of its own over the output topics,
//! writing every prediction as a row of hive-partitioned, zstd-compressed Parquet files.
//!
//! | file | job | I/O? |
//! |---|---|---|
//! | `schema.rs` | the Arrow schema: flattened attributes, UTC timestamps, Kafka coordinates | pure |
//! | `rows.rs` | [`RowBuffer`]: predictions of one partition → Arrow `RecordBatch` | pure |
//! | `partition.rs` | `dt=YYYY-MM-DD/hour=HH/{topic}+{partition}+{first_offset}.parquet` | pure |
//! | `roll.rs` | [`RollPolicy`]: when a buffer becomes a file (rows, age, hour change, revoke, shutdown) | pure |
//! | `writer.rs` | Parquet encoding (zstd, row groups, statistics), deterministic bytes | pure |
//! | `location.rs` | [`ArchiveLocation`]: `archive.url` → a local directory or an object-store prefix | pure |
//! | `retry.rs` | [`RetryPolicy`]: backoff with jitter for failed writes, when the sink is unhealthy | pure |
//! | `sink.rs` | [`ArchiveSink`] (durable atomic put), [`LocalFsSink`] (temp + fsync + rename + fsync dir), which failures heal | files |
//! | `object_sink.rs` | [`ObjectStoreSink`]: S3/GCS/Azure through `object_store`, multipart for large files | network |
//! | `archiver.rs` | [`Archiver`]: buffers per partition, rolls, writes, retries in place, says which offsets may be committed and which partitions to pause | files |
//! | `dead_letter.rs` | [`ArchiveDeadLetters`]: undecodable output records → `emotion.archive.dlq` | Kafka |
//! | `stage.rs` | the Kafka consumer: rebalance flushes, pause/resume while retrying, commits after durability, shutdown | Kafka |
//! | `metrics.rs` | [`ArchiveMetrics`] hooks for telemetry, [`ArchiveCounters`] | — |
//! | `config.rs` | [`ArchiveConfig`], the `[archive]` section | — |
//!
//! # Guarantees
//! - A file is written to a temporary name, fsynced, renamed and its directory fsynced before
//!   its offsets are committed, so a committed row is always in a durable file.
//! - File names are a function of the records (first offset, first row's `processed_at` hour),
//!   so a replay after a crash rewrites the same file: `N` records in → `N` rows, unique by
//!   (topic, partition, offset). The argument is in `roll.rs`.
//! - A file that cannot be stored for a reason that may heal (a refused connection, a timeout,
//!   a full disk) is retried in place while its partition is paused; nothing past it is
//!   committed. The stage stops (with an error) only when a failure cannot heal (a bucket that
//!   does not exist, access denied) or offsets cannot be committed.
//! - An output record that does not decode goes to the archive's dead-letter topic with a
//!   reason header before its offset is committed.
//!
//! Readers: `docs/archive.md` has DuckDB and pandas queries.

mod archiver;
mod config;
mod dead_letter;
mod error;
mod location;
mod metrics;
mod object_sink;
mod partition;
mod retry;
mod roll;
mod rows;
mod schema;
mod sink;
mod stage;
mod writer;

pub use archiver::{Archiver, CommitRequest, FlowChange};
pub use config::{ArchiveConfig, InvalidArchiveConfig, ObjectStoreOptions};
pub use dead_letter::{ArchiveDeadLetters, DeadLetterError, KafkaDeadLetters, UndecodableRecord};
pub use error::ArchiveError;
pub use location::{ArchiveLocation, InvalidArchiveUrl, StoreKind};
pub use metrics::{ArchiveCounters, ArchiveMetrics, ArchiveSummary, NoMetrics, WrittenFile};
pub use object_sink::{ObjectStoreSetupError, ObjectStoreSink, MULTIPART_THRESHOLD, PART_SIZE};
pub use partition::{validate_topic, FileKey, HourPartition, InvalidTopicName};
pub use retry::RetryPolicy;
pub use roll::{OpenBuffer, RollPolicy, RollReason};
pub use rows::{FinishedRows, RowBuffer, RowError};
pub use schema::{archive_schema, attribute_column, ATTRIBUTE_FIELDS, COLUMN_COUNT};
pub use sink::{ArchiveSink, LocalFsSink, SinkError};
pub use stage::{run_archive_stage, ArchiveKafka, ArchiveStage};
pub use writer::{encode_parquet, ParquetSettings, ARCHIVE_FORMAT_VERSION};

/// Deterministic sample predictions for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use crate::attribute::{Attribute, PerAttribute, LIKERT_BINS};
    use crate::codec::{AttributePrediction, Decision, EmotionPrediction};

    /// 2023-11-14T22:13:20Z.
    pub const T0_MS: i64 = 1_700_000_000_000;

    /// Prediction number `i`: varied optional fields, decisions and values; `processed_at` is
    /// `T0_MS + i` seconds.
    pub fn prediction(i: u64) -> EmotionPrediction {
        let f = |k: u64| ((i * 31 + k * 7) % 97) as f32 / 16.0 + 1.0;
        EmotionPrediction {
            utterance_id: format!("utt-{i:05}"),
            speaker_id: (i % 3 != 0).then(|| format!("spk-{}", i % 5)),
            source: (i % 4 == 1).then(|| "podcast".to_string()),
            timestamp_ms: T0_MS - 5_000 + i as i64 * 700,
            processed_at_ms: T0_MS + i as i64 * 1_000,
            model_version: "vae-er@1.0.0".to_string(),
            decision: if i % 2 == 0 { Decision::Accepted } else { Decision::Rejected },
            attributes: PerAttribute::from_fn(|a| {
                let k = a.index() as u64;
                let mut distribution = [0.0f32; LIKERT_BINS];
                for (b, d) in distribution.iter_mut().enumerate() {
                    *d = f(k * 10 + b as u64) / 40.0;
                }
                AttributePrediction {
                    value: f(k),
                    consensus: f(k + 3),
                    distribution,
                    entropy: f(k + 5) / 4.0,
                    uncertainty_source: Attribute::ALL[((i + k) % 3) as usize],
                    accepted: (i + k) % 3 != 0,
                    uncertainty: (i % 2 == 0).then(|| f(k + 6) - 1.0),
                }
            }),
        }
    }
}
