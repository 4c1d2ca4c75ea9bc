//! The inference core against real ONNX Runtime and the committed fixture model:
//! parity with Python onnxruntime, the worker pool, and strict loading.

mod common;

use std::path::PathBuf;

use emogate::model::{LoadedModel, Model, ModelError, ModelOptions, ModelPool, Prediction, ProviderChoice};
use emogate::{Attribute, LIKERT_BINS};
use rand::{Rng, SeedableRng};

fn fixture_dir() -> PathBuf {
    common::repo_root().join("models/fixture")
}

fn cpu_options() -> ModelOptions {
    ModelOptions { provider: ProviderChoice::Cpu, intra_threads: 1, ..ModelOptions::default() }
}

fn random_features(rows: usize, dims: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..rows * dims).map(|_| rng.random_range(-3.0f32..3.0)).collect()
}

/// Flattens predictions in the reference script's order (attribute-major, then kind).
fn flatten(predictions: &[Prediction]) -> Vec<f32> {
    let mut out = Vec::new();
    for a in Attribute::ALL {
        out.extend(predictions.iter().map(|p| p[a].value));
        out.extend(predictions.iter().map(|p| p[a].consensus));
        out.extend(predictions.iter().flat_map(|p| p[a].distribution));
        out.extend(predictions.iter().map(|p| p[a].entropy));
    }
    out
}

#[test]
fn matches_python_onnxruntime_on_the_same_inputs() {
    let mut model = Model::load(&fixture_dir(), &cpu_options()).unwrap();
    let dims = model.manifest().feature_dims;
    let rows = 37;
    let features = random_features(rows, dims, 7);
    let predictions = model.infer(&features).unwrap();
    assert_eq!(predictions.len(), rows);

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x.f32");
    let output = dir.path().join("y.f32");
    std::fs::write(&input, features.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    common::run_python(
        "scripts/ort_reference.py",
        &[
            "--model",
            fixture_dir().to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--dims",
            &dims.to_string(),
            "--out",
            output.to_str().unwrap(),
        ],
    );
    let reference: Vec<f32> = std::fs::read(&output)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let ours = flatten(&predictions);
    assert_eq!(ours.len(), reference.len());
    let max_diff = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_diff <= 1e-5, "max abs diff vs Python onnxruntime = {max_diff}");
}

#[test]
fn outputs_are_well_formed_distributions() {
    let mut model = Model::load(&fixture_dir(), &cpu_options()).unwrap();
    let dims = model.manifest().feature_dims;
    for p in model.infer(&random_features(8, dims, 3)).unwrap() {
        for (_, out) in p.iter() {
            let sum: f32 = out.distribution.iter().sum();
            assert!((sum - 1.0).abs() < 1e-4, "distribution sums to {sum}");
            assert!(out.entropy >= 0.0 && out.entropy <= (LIKERT_BINS as f32).ln() + 1e-5);
            let h: f32 =
                -out.distribution.iter().map(|&q| if q > 0.0 { q * q.ln() } else { 0.0 }).sum::<f32>();
            assert!((h - out.entropy).abs() < 1e-4, "in-graph entropy {} vs recomputed {h}", out.entropy);
        }
    }
}

#[test]
fn batches_are_row_independent() {
    // A record's prediction must not depend on what else is in its micro-batch.
    let mut model = Model::load(&fixture_dir(), &cpu_options()).unwrap();
    let dims = model.manifest().feature_dims;
    let features = random_features(5, dims, 11);
    let batch = model.infer(&features).unwrap();
    for (i, row) in features.chunks(dims).enumerate() {
        let single = model.infer(row).unwrap();
        for a in Attribute::ALL {
            assert!((single[0][a].entropy - batch[i][a].entropy).abs() < 1e-5);
            assert!((single[0][a].value - batch[i][a].value).abs() < 1e-5);
        }
    }
    assert!(model.infer(&[]).unwrap().is_empty());
    assert!(matches!(model.infer(&features[..dims + 1]), Err(ModelError::BatchShape { .. })));
}

#[test]
fn pool_workers_agree_with_a_single_session() {
    let loaded = LoadedModel::load(&fixture_dir()).unwrap();
    let dims = loaded.manifest.feature_dims;
    // Warmed up as the infer stage does: the warm-up batch must leave no trace in the answers.
    let pool = ModelPool::new(&loaded, &ModelOptions { warm_up_rows: 16, ..cpu_options() }, 2, 4).unwrap();
    assert_eq!(pool.workers(), 2);
    let mut single = Model::load(&fixture_dir(), &cpu_options()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let batches: Vec<Vec<f32>> = (0..6).map(|i| random_features(4, dims, 100 + i)).collect();
    for (i, batch) in batches.iter().enumerate() {
        let tx = tx.clone();
        pool.submit(batch.clone(), move |result| tx.send((i, result)).unwrap()).unwrap();
    }
    drop(tx);
    let mut seen = 0;
    for (i, result) in rx {
        assert_eq!(result.features, batches[i], "the input buffer comes back unchanged");
        let expected = single.infer(&batches[i]).unwrap();
        assert_eq!(result.predictions.unwrap(), expected);
        seen += 1;
    }
    assert_eq!(seen, batches.len());
    let again = pool.infer(batches[0].clone()).unwrap();
    assert_eq!(again.predictions.unwrap().len(), 4);
    pool.shutdown();
}

fn copy_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "manifest.json"] {
        std::fs::copy(fixture_dir().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn edit_manifest(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

#[test]
fn refuses_a_model_whose_checksum_does_not_match() {
    let dir = copy_fixture();
    let mut bytes = std::fs::read(dir.path().join("model.onnx")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(dir.path().join("model.onnx"), bytes).unwrap();
    let err = LoadedModel::load(dir.path()).unwrap_err();
    assert!(matches!(err, ModelError::ChecksumMismatch { .. }), "{err}");
    assert!(err.to_string().contains("model.onnx"));
}

#[test]
fn refuses_a_graph_that_breaks_the_manifest_contract() {
    let dir = copy_fixture();
    edit_manifest(dir.path(), |m| m["feature_dims"] = 88.into());
    let err = Model::load(dir.path(), &cpu_options()).err().expect("must refuse");
    assert!(matches!(err, ModelError::Contract { .. }), "{err}");
    assert!(err.to_string().contains("[N, 88]"), "{err}");
}

#[test]
fn refuses_missing_or_invalid_files_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = LoadedModel::load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("manifest.json"), "{err}");
    let dir = copy_fixture();
    std::fs::write(dir.path().join("manifest.json"), b"{not json").unwrap();
    assert!(matches!(LoadedModel::load(dir.path()), Err(ModelError::Manifest { .. })));
}

#[test]
fn cuda_request_without_cuda_is_a_clear_error_and_auto_falls_back_loudly() {
    let options = ModelOptions { provider: ProviderChoice::Cuda, ..cpu_options() };
    if cfg!(feature = "cuda") {
        return; // covered by `make test-gpu` on a GPU machine
    }
    let err = Model::load(&fixture_dir(), &options).err().expect("no CUDA in this build");
    assert!(matches!(err, ModelError::ProviderUnavailable { .. }), "{err}");
    let auto = Model::load(&fixture_dir(), &ModelOptions { provider: ProviderChoice::Auto, ..cpu_options() })
        .unwrap();
    assert_eq!(auto.provider().kind, emogate::model::ProviderKind::Cpu);
    assert!(auto.provider().fallback_reason.as_deref().unwrap().contains("cuda"));
}
