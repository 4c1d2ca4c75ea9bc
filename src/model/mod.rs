//! The model layer: ONNX Runtime loading, the serving-graph contract, the manifest, and
//! batch inference on a pool of sessions.

pub mod contract;
pub mod error;
pub mod manifest;

pub use error::ModelError;
pub use manifest::{CoverageThresholds, Manifest, NoiseBank, TrainingInfo};
