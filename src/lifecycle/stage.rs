//! What a stage receives from the process, so `serve` and `demo` can run the infer and the
//! archive stage side by side (DESIGN §1: "it may run in the same process, the default, or
//! alone").
//!
//! A stage is an async function `fn(StageContext) -> Result<Report, Error>`: it builds its
//! clients from `ctx.config`, records into
//! the shared `ctx.metrics`, and returns after `ctx.shutdown` fires and its work is drained
//! within `config.shutdown.drain_deadline_ms`. [`run_together`] drives several and stops the
//! others when one fails; `crate::service::archive_stage` is the archive stage in that form.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::shutdown::{Shutdown, ShutdownTrigger};
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

/// A running stage: a future resolving to its report `R` or its error `E`.
pub type StageFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

/// Boxes a stage's future, converting its report and its error into the process's types
/// (e.g. an `InferReport` into a `StageReport`, a `PipelineError` into a `StageError`).
pub fn boxed<R, E, T, F>(fut: impl Future<Output = Result<T, F>> + Send + 'static) -> StageFuture<R, E>
where
    R: From<T>,
    E: From<F>,
{
    Box::pin(async move { fut.await.map(R::from).map_err(E::from) })
}

/// A stage's task panicked or was cancelled before the stage returned.
#[derive(Debug, thiserror::Error)]
#[error("stage task failed: {0}")]
pub struct StageTaskFailed(#[source] pub tokio::task::JoinError);

impl From<StageTaskFailed> for String {
    fn from(e: StageTaskFailed) -> String {
        e.to_string()
    }
}

/// Runs the stages concurrently. When one fails, shutdown is triggered so the others drain
/// and stop too. Returns each stage's outcome, in the given order.
pub async fn run_together<R, E>(
    stages: Vec<(&'static str, StageFuture<R, E>)>,
    trigger: ShutdownTrigger,
) -> Vec<(&'static str, Result<R, E>)>
where
    R: Send + 'static,
    E: std::fmt::Display + From<StageTaskFailed> + Send + 'static,
{
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
        outcomes.push((name, handle.await.unwrap_or_else(|e| Err(StageTaskFailed(e).into()))));
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::shutdown;

    #[tokio::test]
    async fn a_failing_stage_stops_the_others() {
        let (trigger, listener) = shutdown::channel();
        let mut waiting = listener.clone();
        let patient = boxed(async move {
            waiting.wait().await;
            Ok::<_, String>("drained")
        });
        let failing = boxed(async { Err::<&str, _>("broker gone") });
        let outcomes: Vec<(&str, Result<String, String>)> =
            run_together(vec![("infer", patient), ("archive", failing)], trigger).await;
        assert_eq!(outcomes[0], ("infer", Ok("drained".to_string())));
        assert_eq!(outcomes[1], ("archive", Err("broker gone".to_string())));
        assert!(listener.is_triggered());
    }
}
