//! The service's stages as a process runs them (`emogate serve`, the demo): the archive stage
//! built from the configuration, and the typed outcome of every stage — [`StageError`] and
//! [`StageReport`] — that [`crate::lifecycle::run_together`] carries to the process boundary.
//!
//! It sits above both stages ([`crate::pipeline`], [`crate::archive`]) and
//! [`crate::lifecycle`], and nothing in them imports it.

use std::fmt;
use std::sync::Arc;

use serde_json::json;

use crate::archive::{ArchiveError, ArchiveKafka, ArchiveMetrics, ArchiveStage, ArchiveSummary};
use crate::human;
use crate::lifecycle::{boxed, StageContext, StageFuture, StageTaskFailed};
use crate::pipeline::{InferReport, PipelineError};
use crate::telemetry::ArchiveTelemetry;

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
                let reasons: Vec<String> =
                    r.dead_lettered.iter().map(|(k, v)| format!("{k} {}", human::count(*v))).collect();
                write!(
                    f,
                    "{} predictions (accepted {}, rejected {}) in {} batches, {} dead-lettered",
                    human::count(r.predictions),
                    human::count(r.accepted),
                    human::count(r.rejected),
                    human::count(r.batches),
                    human::count(r.dead_lettered_total()),
                )?;
                if !reasons.is_empty() {
                    write!(f, " ({})", reasons.join(", "))?;
                }
                Ok(())
            }
            StageReport::Archive(s) => write!(
                f,
                "{} rows in {} files ({}), {} records dead-lettered, {} failed writes retried, {} offset commits",
                human::count(s.rows),
                human::count(s.files),
                human::bytes(s.bytes),
                human::count(s.dead_lettered),
                human::count(s.write_errors),
                human::count(s.commits)
            ),
        }
    }
}

impl StageReport {
    /// The report as one JSON object (`--json`): the infer stage's counts and mean entropy per
    /// attribute, or the archive's totals.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            StageReport::Infer(r) => json!({
                "predictions": r.predictions,
                "accepted": r.accepted,
                "rejected": r.rejected,
                "dead_lettered": r.dead_lettered,
                "batches": r.batches,
                "mean_entropy": r.mean_entropy(),
            }),
            StageReport::Archive(s) => json!({
                "files": s.files,
                "rows": s.rows,
                "bytes": s.bytes,
                "dead_lettered": s.dead_lettered,
                "write_errors": s.write_errors,
                "commits": s.commits,
            }),
        }
    }
}

/// Each stage's outcome as one JSON object: `{"stage": …, "ok": true, "report": {…}}` or
/// `{"stage": …, "ok": false, "error": "…"}`.
pub fn outcomes_json(outcomes: &[(&'static str, Result<StageReport, StageError>)]) -> serde_json::Value {
    outcomes
        .iter()
        .map(|(name, outcome)| match outcome {
            Ok(report) => json!({ "stage": name, "ok": true, "report": report.to_json() }),
            Err(e) => json!({ "stage": name, "ok": false, "error": e.to_string() }),
        })
        .collect()
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
    let metrics: Arc<dyn ArchiveMetrics> =
        Arc::new(ArchiveTelemetry { metrics: ctx.metrics.clone(), health: ctx.health.clone() });
    let mut shutdown = ctx.shutdown.clone();
    boxed(
        ArchiveStage::new(config.archive.clone(), kafka)
            .with_metrics(metrics)
            .run(async move { shutdown.wait().await }),
    )
}
