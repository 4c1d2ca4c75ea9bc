//! Errors of the trainer. One enum for the whole `train` feature: corpus files, numerics,
//! the ONNX writer and the manifest all surface to the same three CLI commands, and each
//! message names the file or setting to fix.

use std::path::PathBuf;

/// Everything that can go wrong in `emogate synth`, `train` or `calibrate`.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("cannot access {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{path}:{line}: {reason}")]
    Parse { path: PathBuf, line: usize, reason: String },

    #[error("{path}: {source}")]
    Npy { path: PathBuf, source: crate::codec::npy::NpyError },

    #[error("corpus {path} is not usable: {reason}")]
    Corpus { path: PathBuf, reason: String },

    #[error("invalid option: {0}")]
    Config(String),

    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),

    #[error("ONNX model {path}: {reason}")]
    Onnx { path: PathBuf, reason: String },

    #[error(transparent)]
    Model(#[from] crate::model::ModelError),

    #[error("evaluation: {0}")]
    Metric(#[from] crate::uncertainty::MetricError),

    #[error("training diverged: {0}")]
    Diverged(String),

    /// Calibration found that rejecting by the score lowers dev CCC for some attribute.
    #[error(
        "rejecting by {score} hurts on the dev split: {details}. Nothing was written. Retrain \
         that attribute (e.g. more joint epochs or another dropout), decide it by another \
         attribute's uncertainty (policy.uncertainty_source), or pass --allow-harmful-reject \
         to calibrate anyway"
    )]
    HarmfulReject { score: String, details: String },
}

impl TrainError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.into();
        move |source| TrainError::Io { path, source }
    }
}
