//! Errors of the audio front end, in two kinds: [`FeaturizeError`] stops a run (no library,
//! an unusable output directory), [`FileError`] belongs to one audio file, which is reported,
//! counted and skipped while the others go on.

use std::path::PathBuf;

/// What stops a featurize run.
#[derive(Debug, thiserror::Error)]
pub enum FeaturizeError {
    #[error(
        "openSMILE (libSMILEapi.so with its config/ folder) not found (looked in: {searched}). Run \
         `make deps` to install it from the opensmile {version} wheel into .cache/opensmile/{version}/, \
         or point {env} (or --opensmile) at a folder holding libSMILEapi.so and config/"
    )]
    NotFound { searched: String, version: &'static str, env: &'static str },

    #[error("could not load openSMILE from {path}: {reason}")]
    Load { path: PathBuf, reason: String },

    #[error("openSMILE {call} failed (code {code}): {message}")]
    Api { call: &'static str, code: i32, message: String },

    #[error("cannot {op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },

    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl FeaturizeError {
    /// Maps an I/O error of `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| FeaturizeError::Io { op, path, source }
    }
}

/// Why one audio file gave no feature vector.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FileProblem {
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    #[error("not audio in a supported format (WAV, FLAC, MP3): {0}")]
    Unsupported(String),
    #[error("corrupt audio: {0}")]
    Corrupt(String),
    #[error("no audio samples")]
    Empty,
    #[error("{seconds:.3} s of audio is too short for the ComParE functionals (openSMILE gave no vector)")]
    TooShort { seconds: f64 },
    #[error("cannot resample from {from} Hz: {reason}")]
    Resample { from: u32, reason: String },
    #[error("openSMILE failed on it: {0}")]
    Extractor(String),
    #[error("openSMILE gave {got} values, expected {expected}")]
    WrongDims { got: usize, expected: usize },
    #[error("openSMILE gave a non-finite value for feature {index}")]
    NonFinite { index: usize },
}

impl FileProblem {
    /// Short stable label for counts and reports (`featurize_report.json`, the summary).
    pub fn reason(&self) -> &'static str {
        match self {
            FileProblem::Unreadable(_) => "unreadable",
            FileProblem::Unsupported(_) => "unsupported_format",
            FileProblem::Corrupt(_) => "corrupt",
            FileProblem::Empty => "empty",
            FileProblem::TooShort { .. } => "too_short",
            FileProblem::Resample { .. } => "resample_failed",
            FileProblem::Extractor(_) => "extractor_failed",
            FileProblem::WrongDims { .. } => "wrong_dims",
            FileProblem::NonFinite { .. } => "non_finite",
        }
    }
}

/// One audio file that gave no feature vector, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub problem: FileProblem,
}
