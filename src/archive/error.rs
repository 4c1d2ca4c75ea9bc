//! The archive's error type: one enum for the layer, each variant with the context an
//! operator needs (which file, which partition, which Kafka call).

use arrow_schema::ArrowError;
use parquet::errors::ParquetError;
use rdkafka::error::KafkaError;

use super::config::InvalidArchiveConfig;
use super::dead_letter::DeadLetterError;
use super::object_sink::ObjectStoreSetupError;
use super::partition::InvalidTopicName;
use super::rows::RowError;
use super::sink::SinkError;

/// Why the archive stage stopped (or a file could not be made).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The `[archive]` settings are out of range.
    #[error(transparent)]
    Config(#[from] InvalidArchiveConfig),
    /// The stage was given no topics.
    #[error("the archive stage needs at least one topic")]
    NoTopics,
    /// A topic name that cannot be part of a file name.
    #[error(transparent)]
    Topic(#[from] InvalidTopicName),
    /// A record arrived out of offset order.
    #[error(transparent)]
    Rows(#[from] RowError),
    /// Building the Arrow batch failed (a schema bug, not bad data).
    #[error("building the record batch for {topic}/{partition}: {source}")]
    Arrow {
        topic: String,
        partition: i32,
        #[source]
        source: ArrowError,
    },
    /// Encoding the Parquet file failed.
    #[error("encoding {key}: {source}")]
    Parquet {
        key: String,
        #[source]
        source: ParquetError,
    },
    /// The sink could not store a file for a reason that cannot heal (see
    /// `SinkError::is_permanent`); its offsets were not committed.
    #[error("storing {key} failed and cannot succeed by retrying: {source}")]
    Sink {
        key: String,
        /// Boxed: an object-store error is large and this enum travels in every `Result`.
        #[source]
        source: Box<SinkError>,
    },
    /// Creating or subscribing the consumer failed.
    #[error("kafka {context}: {source}")]
    Kafka {
        context: &'static str,
        #[source]
        source: KafkaError,
    },
    /// Committing offsets after a durable file failed. The stage stops so that a partition never
    /// has more than one uncommitted file (see `roll`); the file is rewritten on replay.
    #[error("committing {topic}/{partition} at offset {offset}: {source}")]
    Commit {
        topic: String,
        partition: i32,
        offset: i64,
        #[source]
        source: KafkaError,
    },
    /// `archive.writer_schemas_dir` could not be read, or holds a schema that cannot be used.
    #[error("archive.writer_schemas_dir: {0}")]
    WriterSchemas(String),
    /// The object-store client could not be set up.
    #[error(transparent)]
    Storage(Box<ObjectStoreSetupError>),
    /// An undecodable record could not be dead-lettered; its offset was not committed.
    #[error(transparent)]
    DeadLetter(Box<DeadLetterError>),
    /// The stage stopped (shutdown) while files were still failing to store. Their offsets
    /// were not committed: the next start reads and writes them again.
    #[error("stopped with {files} archive file(s) not stored (storage failing); their records are archived on the next start")]
    Unstored { files: u64 },
    /// An earlier error stopped the archiver: nothing more is written or committed, and the
    /// rows it held are read again by the partitions' next owner.
    #[error("the archiver stopped after an earlier error")]
    Stopped,
    /// The consumer thread could not start or died.
    #[error("archive consumer thread: {0}")]
    Thread(String),
}

// Boxed variants: their errors are large, and this enum travels in every `Result` of the stage.
impl From<ObjectStoreSetupError> for ArchiveError {
    fn from(e: ObjectStoreSetupError) -> Self {
        ArchiveError::Storage(Box::new(e))
    }
}

impl From<DeadLetterError> for ArchiveError {
    fn from(e: DeadLetterError) -> Self {
        ArchiveError::DeadLetter(Box::new(e))
    }
}
