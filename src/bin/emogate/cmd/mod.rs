//! One file per command, each with its clap arguments beside the code that runs it.

#[cfg(feature = "testkit")]
pub mod bench;
#[cfg(feature = "train")]
pub mod calibrate;
#[cfg(feature = "testkit")]
pub mod demo;
#[cfg(feature = "train")]
pub mod evaluate;
pub mod featurize;
#[cfg(feature = "testkit")]
pub mod produce;
pub mod serve;
#[cfg(feature = "train")]
pub mod synth;
#[cfg(feature = "train")]
pub mod train;

use anyhow::{Context, Result};

/// Pretty logs to stderr at `level` (`RUST_LOG` wins), for the commands other than `serve`.
fn init_tracing(level: &str) -> Result<()> {
    Ok(emogate::telemetry::init_tracing(emogate::config::LogFormat::Pretty, level)?)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    // One worker per core. No stage blocks a worker: the infer and archive stages poll Kafka on
    // threads of their own, and the infer stage's rebalance callback joins its chain there.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A `-X name=value` librdkafka property.
#[cfg(feature = "testkit")]
fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("expected name=value, got `{s}`"))
}
