//! ONNX Runtime loading failures, in their own test process: a process can load ONNX
//! Runtime only once, so no test here may load it successfully. The `serve_refuses_*` tests
//! start `emogate serve` as a child process on a broken model directory: the service must
//! exit non-zero before touching Kafka, with a message naming the file at fault.
// The shared support modules (fault_support, pipeline_support) build on the testkit.
#![cfg(feature = "testkit")]

mod common;
mod fault_support;
mod pipeline_support;

use std::path::Path;
use std::time::Duration;

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

/// A copy of the fixture model in `dir/model`, with `edit` applied to it.
fn broken_model(dir: &Path, edit: impl FnOnce(&Path)) -> std::path::PathBuf {
    let model = dir.join("model");
    std::fs::create_dir(&model).unwrap();
    for file in ["model.onnx", "manifest.json"] {
        std::fs::copy(common::repo_root().join("models/fixture").join(file), model.join(file)).unwrap();
    }
    edit(&model);
    model
}

/// Runs `emogate serve --stage infer` on `model` (broker 127.0.0.1:9, never reached; telemetry
/// on a free 127.0.0.1 port; explicit thresholds, so the policy is not what refuses) and
/// returns its log once it has exited non-zero.
fn serve_refusal(dir: &Path, model: &Path) -> String {
    let mut config = emogate::config::Config::default();
    config.model.dir = model.to_path_buf();
    config.model.execution_provider = emogate::model::ProviderChoice::Cpu;
    config.kafka.brokers = "127.0.0.1:9".into();
    config.policy.thresholds = Some(emogate::PerAttribute { valence: 1.9, arousal: 1.9, dominance: 1.9 });
    let mut serve = fault_support::Serve::start(&config, "infer", dir, "serve");
    let status = serve.wait_exit(Duration::from_secs(60)).expect("serve did not stop on a broken model");
    let log = std::fs::read_to_string(&serve.log).unwrap();
    assert!(!status.success() && status.code().is_some(), "must exit with an error code: {status}\n{log}");
    log
}

#[test]
fn serve_refuses_a_missing_model_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = broken_model(dir.path(), |m| std::fs::remove_file(m.join("model.onnx")).unwrap());
    let log = serve_refusal(dir.path(), &model);
    assert!(log.contains(&model.join("model.onnx").display().to_string()), "{log}");
}

#[test]
fn serve_refuses_a_corrupt_model_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = broken_model(dir.path(), |m| {
        let bytes = std::fs::read(m.join("model.onnx")).unwrap();
        std::fs::write(m.join("model.onnx"), &bytes[..bytes.len() / 2]).unwrap();
    });
    let log = serve_refusal(dir.path(), &model);
    assert!(log.contains(&model.join("model.onnx").display().to_string()) && log.contains("sha256"), "{log}");
}

#[test]
fn serve_refuses_a_model_of_the_wrong_shape_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = broken_model(dir.path(), |m| {
        let manifest = std::fs::read_to_string(m.join("manifest.json")).unwrap();
        let edited = manifest.replace("\"feature_dims\": 6373", "\"feature_dims\": 88");
        assert_ne!(manifest, edited, "fixture manifest layout changed");
        std::fs::write(m.join("manifest.json"), edited).unwrap();
    });
    let log = serve_refusal(dir.path(), &model);
    assert!(log.contains("model.onnx") && log.contains("6373") && log.contains("88"), "{log}");
}
