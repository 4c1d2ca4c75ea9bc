//! `emogate serve`: the production service.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use emogate::config::Config;
use emogate::lifecycle::{self, shutdown, StageContext};
use emogate::pipeline::InferStage;
use emogate::service::{self, RunningStage};
use emogate::telemetry::{self, Health, Metrics};

/// `emogate serve`
#[derive(clap::Args)]
pub struct ServeArgs {
    /// TOML config file (EMOGATE_<SECTION>__<KEY> variables override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Which stages to run in this process.
    #[arg(long, value_enum, default_value_t = StageChoice::Both)]
    stage: StageChoice,
    /// When the stages have stopped, print their outcomes as one JSON object on stdout
    /// (`{"stages": [{"stage", "ok", "report" | "error"}]}`); the log has them either way.
    #[arg(long)]
    json: bool,
}

/// The stages one process runs.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StageChoice {
    Infer,
    Archive,
    Both,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let ServeArgs { config: config_path, stage, json } = args;
    let config = Config::load(config_path.as_deref())?;
    telemetry::init_tracing(config.telemetry.log_format, &config.telemetry.log_level)?;
    tracing::info!(config = ?config, "configuration loaded");
    let rt = super::runtime()?;
    rt.block_on(async move {
        let (trigger, listener) = shutdown::channel();
        trigger.trigger_on_signals().context("cannot install signal handlers")?;
        let ctx = StageContext {
            config: Arc::new(config),
            metrics: Arc::new(Metrics::new()?),
            health: Health::new(),
            shutdown: listener.clone(),
        };
        let server = match ctx.config.telemetry.listen {
            Some(addr) => {
                let mut listener = listener;
                let stopped = async move { listener.wait().await };
                let (bound, task) =
                    telemetry::serve_http(addr, Arc::clone(&ctx.metrics), Arc::clone(&ctx.health), stopped)
                        .await?;
                tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
                Some(task)
            }
            None => None,
        };
        let mut stages: Vec<(&'static str, RunningStage)> = Vec::new();
        if stage != StageChoice::Archive {
            let infer = {
                let ctx = ctx.clone();
                tokio::task::spawn_blocking(move || InferStage::new(ctx)).await??
            };
            stages.push(("infer", lifecycle::boxed(infer.run())));
        } else {
            // Readiness describes the infer stage (model, broker, assignment); an archive-only
            // process has none of those to wait for.
            ctx.health.mark_archive_only();
        }
        if stage != StageChoice::Infer {
            stages.push(("archive", service::archive_stage(&ctx)));
        }
        let outcomes = lifecycle::run_together(stages, trigger.clone()).await;
        trigger.trigger();
        if let Some(task) = server {
            let _ = task.await;
        }
        if json {
            println!("{}", serde_json::json!({ "stages": service::outcomes_json(&outcomes) }));
        }
        let mut failed = false;
        for (name, outcome) in outcomes {
            match outcome {
                Ok(summary) => tracing::info!(stage = name, summary = %summary, "stage stopped"),
                Err(e) => {
                    tracing::error!(stage = name, error = %e, "stage failed");
                    failed = true;
                }
            }
        }
        if failed {
            bail!("a stage failed (see the log)");
        }
        Ok(())
    })
}
