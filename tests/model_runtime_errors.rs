//! ONNX Runtime loading failures, in their own test process: a process can load ONNX
//! Runtime only once, so no test here may load it successfully.

use emogate::model::runtime::{ensure_runtime, library_file_name, ORT_VERSION};
use emogate::model::ModelError;

#[test]
fn a_missing_configured_library_names_the_path_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("libonnxruntime.so.0.0.0");
    let err = ensure_runtime(Some(&missing)).unwrap_err();
    assert!(matches!(err, ModelError::RuntimeNotFound { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("libonnxruntime.so.0.0.0") && msg.contains("make deps"), "{msg}");
}

#[test]
fn a_file_that_is_not_onnx_runtime_is_refused_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join(library_file_name(ORT_VERSION));
    std::fs::write(&fake, b"\x7fELF but not really").unwrap();
    let err = ensure_runtime(Some(&fake)).unwrap_err();
    assert!(matches!(err, ModelError::RuntimeLoad { .. }), "{err}");
    assert!(err.to_string().contains(ORT_VERSION), "{err}");
}

#[test]
fn a_pool_with_an_unloadable_runtime_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let options = emogate::model::ModelOptions {
        ort_library: Some(dir.path().join("missing.so")),
        ..Default::default()
    };
    let model = emogate::model::LoadedModel::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fixture"),
    )
    .unwrap();
    let err = emogate::model::ModelPool::new(&model, &options, 1, 1).err().expect("must fail");
    assert!(matches!(err, ModelError::RuntimeNotFound { .. }), "{err}");
}
