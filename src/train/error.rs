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
    /// An uncertainty (VAE-ER) head whose consensus output never tracked the labels on dev:
    /// its entropy would rank errors at random or backwards (issue 15).
    #[error(
        "the VAE-ER head of {attribute} did not learn: dev CCC of its consensus output {ccc:.3} at the \
         selected joint epoch {epoch}, below the floor {floor}; its entropy would not rank errors. Its \
         checkpoint is in OUT/parts/ but no model was exported. Try more joint epochs (--joint-epochs), \
         smaller loss weights on the uncertainty terms (--beta, --gamma), or less dropout \
         (--dropout-valence / --dropout-arousal-dominance); --min-head-ccc 0 exports it anyway"
    )]
    HeadDidNotLearn { attribute: crate::attribute::Attribute, ccc: f64, epoch: usize, floor: f64 },
}

impl TrainError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.into();
        move |source| TrainError::Io { path, source }
    }
}
