//! The CUDA execution provider, on a GPU machine only (`make test-gpu`: feature `cuda`, the
//! `onnxruntime-gpu` library): a CUDA session of the committed default model gives the CPU
//! provider's answers, and `auto` picks CUDA and says so in `emogate bench`'s report.
#![cfg(feature = "cuda")]

mod common;

use std::path::PathBuf;

use emogate::model::{Model, ModelOptions, ProviderChoice, ProviderKind};
use emogate::Attribute;
use rand::{Rng, SeedableRng};

fn default_model() -> PathBuf {
    common::repo_root().join("models/default")
}

fn options(provider: ProviderChoice) -> ModelOptions {
    ModelOptions { provider, ..ModelOptions::default() }
}

#[test]
fn cuda_session_answers_like_the_cpu_one() {
    let mut gpu = Model::load(&default_model(), &options(ProviderChoice::Cuda)).expect("a CUDA session");
    assert_eq!(gpu.provider().kind, ProviderKind::Cuda);
    assert!(gpu.provider().fallback_reason.is_none());
    let mut cpu = Model::load(&default_model(), &options(ProviderChoice::Cpu)).unwrap();

    let dims = cpu.manifest().feature_dims;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let features: Vec<f32> = (0..64 * dims).map(|_| rng.random_range(-3.0f32..3.0)).collect();
    let (on_gpu, on_cpu) = (gpu.infer(&features).unwrap(), cpu.infer(&features).unwrap());
    assert_eq!(on_gpu.len(), on_cpu.len());
    // The noise bank is a constant of the graph, so only float rounding differs (cuBLAS may sum
    // in another order, or in TF32): entropies and values agree to well under a threshold step.
    let mut max_diff = 0.0f32;
    for (g, c) in on_gpu.iter().zip(&on_cpu) {
        for a in Attribute::ALL {
            max_diff = max_diff.max((g[a].value - c[a].value).abs()).max((g[a].entropy - c[a].entropy).abs());
        }
    }
    assert!(max_diff < 1e-2, "CUDA vs CPU max abs diff {max_diff}");
}

#[test]
fn auto_picks_cuda_and_the_bench_report_says_so() {
    let report = common::emogate(&[
        "bench",
        "--model",
        default_model().to_str().unwrap(),
        "--raw-only",
        "--records",
        "256",
        "--execution-provider",
        "auto",
    ]);
    let report: serde_json::Value = serde_json::from_str(&report).expect("one JSON object");
    assert_eq!(report["execution_provider"], "cuda", "{report}");
}
