//! Errors of the model layer. Each variant says what to do about it, because most of them
//! surface at start-up to an operator reading one log line.

use std::path::PathBuf;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "ONNX Runtime shared library not found (looked in: {searched}). Run `make deps` to install it \
         into .cache/, or point ORT_DYLIB_PATH (or `model.ort_library` in the config) at \
         libonnxruntime.so.{expected_version}"
    )]
    RuntimeNotFound { searched: String, expected_version: String },

    #[error(
        "could not load ONNX Runtime from {path}: {reason}. emogate needs ONNX Runtime \
         {expected_version} (a 1.x library at least as new as the API it was built for); \
         run `make deps` or set ORT_DYLIB_PATH"
    )]
    RuntimeLoad { path: PathBuf, reason: String, expected_version: String },

    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("invalid model manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },

    #[error(
        "model file {path} does not match its manifest: sha256 is {actual}, manifest says {expected} \
         (the file was changed or copied incompletely; re-export it or fix the manifest)"
    )]
    ChecksumMismatch { path: PathBuf, expected: String, actual: String },

    #[error("model graph {path} breaks the serving contract (DESIGN §6): {reason}")]
    Contract { path: PathBuf, reason: String },

    #[error("execution provider `{requested}` is not available: {reason}")]
    ProviderUnavailable { requested: String, reason: String },

    #[error("batch has {got} values, which is not a whole number of {dims}-dimensional feature rows")]
    BatchShape { got: usize, dims: usize },

    #[error("ONNX Runtime failed: {0}")]
    Runtime(#[from] ort::Error),

    #[error("inference worker pool is shut down")]
    PoolClosed,
}

impl From<ort::Error<ort::session::builder::SessionBuilder>> for ModelError {
    fn from(e: ort::Error<ort::session::builder::SessionBuilder>) -> Self {
        ModelError::Runtime(e.into())
    }
}
