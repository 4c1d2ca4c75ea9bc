//! Errors of the streaming pipeline. Per-record problems are not errors (they become dead
//! letters); these are the failures that stop a stage, each with what to check.

use crate::config::ConfigError;
use crate::model::ModelError;
use crate::policy::PolicyError;
use crate::telemetry::TelemetryError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error("kafka {action}: {source}")]
    Kafka { action: &'static str, source: rdkafka::error::KafkaError },
    #[error("{0}")]
    Fatal(String),
}

impl PipelineError {
    pub(crate) fn kafka(action: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> PipelineError {
        move |source| PipelineError::Kafka { action, source }
    }
}
