//! Errors of `emogate evaluate`.

use std::path::PathBuf;

/// What can stop an evaluation; each message names the file or option to fix.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),

    #[error("evaluation metric: {0}")]
    Metric(#[from] crate::uncertainty::MetricError),

    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("cannot draw {path}: {reason}")]
    Plot { path: PathBuf, reason: String },

    #[error("invalid option: {0}")]
    Config(String),
}

impl EvalError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EvalError {
        let path = path.into();
        move |source| EvalError::Io { path, source }
    }
}
