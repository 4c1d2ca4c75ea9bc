//! What a stage receives from the process, so `serve` and `demo` can run the infer and the
//! archive stage side by side (DESIGN §1: "it may run in the same process, the default, or
//! alone").
//!
//! A stage is an async function `fn(StageContext) -> Result<Report, Error>`: it builds its
//! clients from `ctx.config`, records into
//! the shared `ctx.metrics`, and returns after `ctx.shutdown` fires and its work is drained
//! within `config.shutdown.drain_deadline_ms`. [`archive_stage`] is the archive stage in that
//! form; [`run_together`] drives several and stops the others when one fails.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::shutdown::{Shutdown, ShutdownTrigger};
use crate::archive::{ArchiveKafka, ArchiveMetrics, ArchiveStage};
use crate::config::Config;
use crate::telemetry::{Health, Metrics};

/// Everything a stage shares with the rest of the process.
#[derive(Debug, Clone)]
pub struct StageContext {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub shutdown: Shutdown,
}

/// A running stage: its name and a future resolving to its one-line summary or its error.
pub type StageFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// Boxes a stage's future, turning its report and error into display strings.
pub fn boxed<R, E>(fut: impl Future<Output = Result<R, E>> + Send + 'static) -> StageFuture
where
    R: std::fmt::Debug,
    E: std::fmt::Display,
{
    Box::pin(async move { fut.await.map(|r| format!("{r:?}")).map_err(|e| e.to_string()) })
}

/// The archive stage over the infer stage's output topics (accepted and rejected; dead letters
/// are not predictions), in its own consumer group (`archive.group_id`), with the same brokers
/// and `kafka.properties`, reporting into the shared metrics. It stops when `ctx.shutdown`
/// fires, after flushing and committing its buffers.
pub fn archive_stage(ctx: &StageContext) -> StageFuture {
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

/// Runs the stages concurrently. When one fails, shutdown is triggered so the others drain
/// and stop too. Returns each stage's outcome, in the given order.
pub async fn run_together(
    stages: Vec<(&'static str, StageFuture)>,
    trigger: ShutdownTrigger,
) -> Vec<(&'static str, Result<String, String>)> {
    let handles: Vec<_> = stages
        .into_iter()
        .map(|(name, fut)| {
            let trigger = trigger.clone();
            (
                name,
                tokio::spawn(async move {
                    let result = fut.await;
                    if let Err(e) = &result {
                        tracing::error!(stage = name, error = %e, "stage failed; stopping the others");
                        trigger.trigger();
                    }
                    result
                }),
            )
        })
        .collect();
    let mut outcomes = Vec::with_capacity(handles.len());
    for (name, handle) in handles {
        outcomes.push((name, handle.await.unwrap_or_else(|e| Err(format!("stage task failed: {e}")))));
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::shutdown;

    #[tokio::test]
    async fn a_failing_stage_stops_the_others() {
        let (trigger, listener) = shutdown::channel();
        let mut waiting = listener.clone();
        let patient = boxed(async move {
            waiting.wait().await;
            Ok::<_, String>("drained")
        });
        let failing = boxed(async { Err::<(), _>("broker gone") });
        let outcomes = run_together(vec![("infer", patient), ("archive", failing)], trigger).await;
        assert_eq!(outcomes[0], ("infer", Ok("\"drained\"".to_string())));
        assert_eq!(outcomes[1], ("archive", Err("broker gone".to_string())));
        assert!(listener.is_triggered());
    }
}
