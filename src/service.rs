//! The service's stages as a process runs them (`emogate serve`, the demo): the archive stage
//! built from the configuration, and the typed outcome of every stage — [`StageError`] and
//! [`StageReport`] — that [`crate::lifecycle::run_together`] carries to the process boundary.
//!
//! It sits above both stages ([`crate::pipeline`], [`crate::archive`]) and
//! [`crate::lifecycle`], and nothing in them imports it.

use std::fmt;
use std::sync::Arc;

use crate::archive::{ArchiveError, ArchiveKafka, ArchiveMetrics, ArchiveStage, ArchiveSummary};
use crate::lifecycle::{boxed, StageContext, StageFuture, StageTaskFailed};
use crate::pipeline::{InferReport, PipelineError};

/// Why a stage stopped with an error. The message is the stage's own error's.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Infer(#[from] PipelineError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Task(#[from] StageTaskFailed),
}

/// What a stage did, returned when it stopped.
#[derive(Debug, Clone)]
pub enum StageReport {
    Infer(InferReport),
    Archive(ArchiveSummary),
}

impl From<InferReport> for StageReport {
    fn from(r: InferReport) -> Self {
        StageReport::Infer(r)
    }
}

impl From<ArchiveSummary> for StageReport {
    fn from(s: ArchiveSummary) -> Self {
        StageReport::Archive(s)
    }
}

impl fmt::Display for StageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageReport::Infer(r) => {
                let reasons: Vec<String> = r.dead_lettered.iter().map(|(k, v)| format!("{k} {v}")).collect();
                write!(
                    f,
                    "{} predictions (accepted {}, rejected {}) in {} batches, {} dead-lettered ({})",
                    r.predictions,
                    r.accepted,
                    r.rejected,
                    r.batches,
                    r.dead_lettered_total(),
                    reasons.join(", ")
                )
            }
            StageReport::Archive(s) => write!(
                f,
                "{} rows in {} files ({} bytes), {} records skipped, {} offset commits",
                s.rows, s.files, s.bytes, s.skipped_records, s.commits
            ),
        }
    }
}

/// A stage as the process runs it.
pub type RunningStage = StageFuture<StageReport, StageError>;

/// The archive stage over the infer stage's output topics (accepted and rejected; dead letters
/// are not predictions), in its own consumer group (`archive.group_id`), with the same brokers
/// and `kafka.properties`, reporting into the shared metrics. It stops when `ctx.shutdown`
/// fires, after flushing and committing its buffers.
pub fn archive_stage(ctx: &StageContext) -> RunningStage {
    let config = &ctx.config;
    let kafka = ArchiveKafka {
        brokers: config.kafka.brokers.clone(),
        topics: vec![config.kafka.topics.accepted.clone(), config.kafka.topics.rejected.clone()],
        properties: config.kafka.properties.0.clone(),
    };
    let metrics: Arc<dyn ArchiveMetrics> = ctx.metrics.clone();
    let mut shutdown = ctx.shutdown.clone();
    boxed(
        ArchiveStage::new(config.archive.clone(), kafka)
            .with_metrics(metrics)
            .run(async move { shutdown.wait().await }),
    )
}
