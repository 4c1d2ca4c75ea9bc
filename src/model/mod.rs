//! The model layer: ONNX Runtime loading, the serving-graph contract, the manifest, and
//! batch inference on one session ([`Model`]) or a pool of them ([`ModelPool`]).
//!
//! | file | job |
//! |---|---|
//! | `runtime` | find and load `libonnxruntime.so` once per process |
//! | `contract` | input/output names and shapes of the serving graph (DESIGN §6) |
//! | `manifest` | `manifest.json`: provenance, sha256, calibrated thresholds |
//! | `provider` | execution provider choice (`auto`/`cuda`/`cpu`), never a silent fallback |
//! | `session` | verified loading and running batches on one session |
//! | `pool` | worker threads with one session each, bounded queue for backpressure |

pub mod contract;
pub mod error;
pub mod manifest;
pub mod pool;
pub mod prediction;
pub mod provider;
pub mod runtime;
pub mod session;

pub use error::ModelError;
pub use manifest::{
    Calibration, CoverageThresholds, Manifest, McInfo, NoiseBank, RecordThresholds, TrainingInfo,
};
pub use pool::{BatchResult, ModelPool, TrySubmitError};
pub use prediction::{AttributeOutput, Prediction};
pub use provider::{ActiveProvider, ProviderChoice, ProviderKind};
pub use session::{InferenceSession, LoadedModel, Model, ModelOptions};
