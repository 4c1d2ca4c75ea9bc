//! Loading a model directory and running batches on one ONNX Runtime session.
//!
//! Loading is strict on purpose: the manifest's sha256 must match the file and the graph
//! must expose exactly the inputs and outputs of the contract (DESIGN §6) with the
//! manifest's feature dimension. A model that passes these checks cannot be silently
//! misused by the pipeline; one that fails them stops the service at start-up with a
//! message naming the file and the mismatch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights};
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};
use sha2::{Digest, Sha256};

use super::contract::{output_name, OutputKind, INPUT_NAME};
use super::error::ModelError;
use super::manifest::{Manifest, MODEL_FILE};
use super::prediction::{AttributeOutput, Prediction};
use super::provider::{self, ActiveProvider, ProviderChoice};
use super::runtime;
use crate::attribute::{Attribute, PerAttribute, LIKERT_BINS};

/// How sessions are created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelOptions {
    pub provider: ProviderChoice,
    /// Intra-op threads per session; 0 lets ONNX Runtime decide (one per core).
    pub intra_threads: usize,
    /// Explicit ONNX Runtime library (file or directory); see [`runtime`] for the search.
    pub ort_library: Option<PathBuf>,
    /// Let ONNX Runtime's intra-op threads spin while they wait for work (its default). Spinning
    /// shortens a lone `run` but keeps the cores busy between batches, which starves the Kafka
    /// client and codec threads that share them in the service.
    pub intra_op_spinning: bool,
    /// Rows of one warm-up batch each pool session runs before it takes work (0: none). A
    /// session's first run is slower than the next (53 ms against about 34 ms for 64 rows of
    /// the default model, docs/benchmarks.md); warming up keeps that off the first real batch,
    /// and a model that cannot run at all fails at start-up instead of on every batch.
    pub warm_up_rows: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            provider: ProviderChoice::Auto,
            intra_threads: 0,
            ort_library: None,
            intra_op_spinning: true,
            warm_up_rows: 0,
        }
    }
}

/// A model directory read into memory and verified against its manifest.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// The graph bytes, shared by every session of a pool.
    pub bytes: Arc<[u8]>,
}

impl LoadedModel {
    /// Reads `dir/manifest.json` and `dir/model.onnx` and checks the sha256.
    pub fn load(dir: &Path) -> Result<LoadedModel, ModelError> {
        let manifest = Manifest::load(dir)?;
        let path = dir.join(MODEL_FILE);
        let bytes = std::fs::read(&path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if !actual.eq_ignore_ascii_case(&manifest.sha256) {
            return Err(ModelError::ChecksumMismatch { path, expected: manifest.sha256.clone(), actual });
        }
        Ok(LoadedModel { dir: dir.to_path_buf(), manifest, bytes: bytes.into() })
    }

    /// Path of the graph file (for messages).
    pub fn model_path(&self) -> PathBuf {
        self.dir.join(MODEL_FILE)
    }
}

/// One ONNX Runtime session over a verified model. Running needs `&mut self` (ORT sessions
/// are not shared between threads here); [`super::pool::ModelPool`] gives one to each worker.
pub struct InferenceSession {
    session: Session,
    dims: usize,
    provider: ActiveProvider,
}

impl InferenceSession {
    /// Creates a session; `prepacked` lets sessions of a pool share pre-packed weights.
    pub fn new(
        model: &LoadedModel,
        options: &ModelOptions,
        prepacked: Option<&PrepackedWeights>,
    ) -> Result<InferenceSession, ModelError> {
        let runtime = runtime::ensure_runtime(options.ort_library.as_deref())?;
        let mut builder =
            Session::builder(runtime.environment())?.with_optimization_level(GraphOptimizationLevel::All)?;
        if options.intra_threads > 0 {
            builder = builder.with_intra_threads(options.intra_threads)?;
        }
        builder = builder.with_intra_op_spinning(options.intra_op_spinning)?;
        if let Some(weights) = prepacked {
            builder = builder.with_prepacked_weights(weights)?;
        }
        let (mut builder, provider) = provider::apply(builder, options.provider)?;
        let session = builder.commit_from_memory(&model.bytes)?;
        verify_contract(&session, &model.manifest, &model.model_path())?;
        Ok(InferenceSession { session, dims: model.manifest.feature_dims, provider })
    }

    /// The provider this session runs on.
    pub fn provider(&self) -> &ActiveProvider {
        &self.provider
    }

    /// Feature dimension of one input row.
    pub fn feature_dims(&self) -> usize {
        self.dims
    }

    /// Runs one batch: `features` holds N rows of `feature_dims` values, row-major. The slice
    /// is handed to ONNX Runtime without copying.
    pub fn run(&mut self, features: &[f32]) -> Result<Vec<Prediction>, ModelError> {
        if features.is_empty() {
            return Ok(Vec::new());
        }
        if features.len() % self.dims != 0 {
            return Err(ModelError::BatchShape { got: features.len(), dims: self.dims });
        }
        let rows = features.len() / self.dims;
        let input = TensorRef::from_array_view(([rows, self.dims], features))?;
        let outputs = self.session.run(ort::inputs![INPUT_NAME => input])?;
        let extract = |a: Attribute, kind: OutputKind| -> Result<&[f32], ModelError> {
            let name = output_name(a, kind);
            let (_, data) = outputs[name.as_str()].try_extract_tensor::<f32>()?;
            let expected = rows * kind.width();
            if data.len() != expected {
                return Err(ModelError::Contract {
                    path: PathBuf::from("<running session>"),
                    reason: format!(
                        "output {name} has {} values for {rows} rows, expected {expected}",
                        data.len()
                    ),
                });
            }
            Ok(data)
        };
        let columns = PerAttribute::try_from_fn(|a| -> Result<_, ModelError> {
            Ok([
                extract(a, OutputKind::Value)?,
                extract(a, OutputKind::Consensus)?,
                extract(a, OutputKind::Distribution)?,
                extract(a, OutputKind::Entropy)?,
            ])
        })?;
        Ok((0..rows)
            .map(|i| {
                PerAttribute::from_fn(|a| {
                    let [value, consensus, dist, entropy] = columns[a];
                    let mut distribution = [0.0; LIKERT_BINS];
                    distribution.copy_from_slice(&dist[i * LIKERT_BINS..(i + 1) * LIKERT_BINS]);
                    AttributeOutput {
                        value: value[i],
                        consensus: consensus[i],
                        distribution,
                        entropy: entropy[i],
                    }
                })
            })
            .collect())
    }
}

/// Checks the graph's input and outputs against the contract and the manifest.
fn verify_contract(session: &Session, manifest: &Manifest, path: &Path) -> Result<(), ModelError> {
    let fail = |reason: String| ModelError::Contract { path: path.to_path_buf(), reason };
    let input = session
        .inputs()
        .iter()
        .find(|i| i.name() == INPUT_NAME)
        .ok_or_else(|| fail(format!("no input named `{INPUT_NAME}`")))?;
    if session.inputs().len() != 1 {
        return Err(fail(format!("expected exactly one input, found {}", session.inputs().len())));
    }
    let dims = float_tensor_shape(input.dtype()).map_err(|e| fail(format!("input `{INPUT_NAME}`: {e}")))?;
    if dims.len() != 2 || dims[1] != manifest.feature_dims as i64 {
        return Err(fail(format!(
            "input `{INPUT_NAME}` has shape {dims:?}, expected [N, {}] (manifest feature_dims)",
            manifest.feature_dims
        )));
    }
    for a in Attribute::ALL {
        for kind in OutputKind::ALL {
            let name = output_name(a, kind);
            let outlet = session
                .outputs()
                .iter()
                .find(|o| o.name() == name)
                .ok_or_else(|| fail(format!("missing output `{name}`")))?;
            let shape =
                float_tensor_shape(outlet.dtype()).map_err(|e| fail(format!("output `{name}`: {e}")))?;
            let width_ok = kind.rank() == 1 || shape.get(1).is_some_and(|&d| d == kind.width() as i64);
            if shape.len() != kind.rank() || !width_ok {
                return Err(fail(format!(
                    "output `{name}` has shape {shape:?}, expected rank {}",
                    kind.rank()
                )));
            }
        }
    }
    Ok(())
}

fn float_tensor_shape(dtype: &ValueType) -> Result<Vec<i64>, String> {
    match dtype {
        ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } => {
            Ok(shape.iter().copied().collect())
        }
        other => Err(format!("expected a float32 tensor, found {other:?}")),
    }
}

/// A verified model with one session: the simple API for tools (`predict`, `calibrate`,
/// `evaluate`) that run batches from one thread. The service uses [`super::pool::ModelPool`].
pub struct Model {
    loaded: LoadedModel,
    session: InferenceSession,
}

impl Model {
    /// Loads and verifies `dir`, then creates one session.
    pub fn load(dir: &Path, options: &ModelOptions) -> Result<Model, ModelError> {
        let loaded = LoadedModel::load(dir)?;
        let session = InferenceSession::new(&loaded, options, None)?;
        Ok(Model { loaded, session })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.loaded.manifest
    }

    pub fn provider(&self) -> &ActiveProvider {
        self.session.provider()
    }

    /// Runs one batch (N rows of `feature_dims` values, row-major).
    pub fn infer(&mut self, features: &[f32]) -> Result<Vec<Prediction>, ModelError> {
        self.session.run(features)
    }
}
