//! The committed `models/default`, loaded the way `emogate serve` loads it: before this test
//! only `make demo` touched it, so a re-export with a stale sha256, a missing threshold or a
//! graph that broke the contract would have reached users first.
#![cfg(feature = "testkit")]

mod common;

use std::path::PathBuf;

use emogate::config::PolicyConfig;
use emogate::model::{Model, ModelOptions, ProviderChoice};
use emogate::policy::RejectPolicy;
use emogate::testkit::synthetic::SyntheticFeatures;
use emogate::uncertainty::{standard_coverages, ScoreKind, MAX_ENTROPY};
use emogate::{Attribute, LIKERT_BINS};

fn default_dir() -> PathBuf {
    common::repo_root().join("models/default")
}

#[test]
fn loads_with_its_checksum_contract_and_thresholds() {
    // Model::load checks the manifest, the sha256 of model.onnx and the graph's inputs and
    // outputs against the contract (DESIGN §6).
    let options = ModelOptions { provider: ProviderChoice::Cpu, intra_threads: 2, ..ModelOptions::default() };
    let mut model = Model::load(&default_dir(), &options).expect("models/default loads");
    let manifest = model.manifest().clone();
    manifest.validate().expect("manifest is valid");
    assert_eq!(manifest.feature_dims, 6373, "the ComParE/IS13 input the paper uses");
    assert_eq!(manifest.attributes, Attribute::ALL);

    // Every coverage of the paper's reject curves has calibrated thresholds, and the service's
    // default policy builds from the manifest alone.
    for coverage in standard_coverages(0.1).unwrap() {
        for score in ScoreKind::ALL {
            assert!(
                manifest.thresholds_for(coverage, score).is_some(),
                "no {score} thresholds for coverage {coverage}"
            );
        }
    }
    // The served score is the one calibration chose, and it did not hurt any attribute on dev.
    let calibration = manifest.calibration.clone().expect("the manifest records its calibration");
    assert!(calibration.harmful(calibration.score).is_empty(), "{calibration:?}");
    let policy = RejectPolicy::new(&PolicyConfig::default(), &manifest).expect("default policy builds");
    assert_eq!(policy.score(), calibration.score);
    let entropy_policy = RejectPolicy::new(
        &PolicyConfig { score: Some(ScoreKind::Entropy), ..PolicyConfig::default() },
        &manifest,
    )
    .expect("the paper's entropy policy builds");
    assert!(entropy_policy.thresholds().iter().all(|(_, &t)| t > 0.0 && t <= MAX_ENTROPY));

    // It answers real-shaped records with finite values, distributions and entropies.
    let mut generator = SyntheticFeatures::new(manifest.feature_dims, 11);
    let rows = 16;
    let features: Vec<f32> = (0..rows).flat_map(|_| generator.features()).collect();
    let predictions = model.infer(&features).expect("inference runs");
    assert_eq!(predictions.len(), rows);
    for p in &predictions {
        for a in Attribute::ALL {
            let out = &p[a];
            assert!(out.value.is_finite() && out.consensus.is_finite(), "{a}: {out:?}");
            assert_eq!(out.distribution.len(), LIKERT_BINS);
            let mass: f32 = out.distribution.iter().sum();
            assert!((mass - 1.0).abs() < 1e-3, "{a}: distribution sums to {mass}");
            assert!(out.entropy >= 0.0 && out.entropy <= MAX_ENTROPY + 1e-4, "{a}: entropy {}", out.entropy);
        }
    }
    // A model whose entropies are all equal cannot rank anything.
    let entropies: Vec<f32> = predictions.iter().map(|p| p[Attribute::Arousal].entropy).collect();
    assert!(entropies.iter().any(|&h| (h - entropies[0]).abs() > 1e-4), "constant entropy {entropies:?}");
    // Every prediction carries a finite served uncertainty next to the entropy.
    for p in &predictions {
        let u = policy.uncertainty(p).expect("the manifest has level profiles");
        assert!(u.iter().all(|(_, v)| v.is_finite()), "{u:?}");
    }
}

/// `policy.coverage` means the fraction of *records* accepted: calibrated on the synthetic
/// corpus's dev split for the default rule `all`, it must hold on the held-out test split the
/// committed model never saw, for both scores (0.03 is about three binomial standard errors).
#[cfg(feature = "train")]
#[test]
fn the_record_coverage_holds_on_the_held_out_test_split() {
    use emogate::policy::CoverageOf;
    use emogate::train::corpus::{msp, Split};

    let tmp = tempfile::tempdir().unwrap();
    let corpus_dir = tmp.path().join("corpus");
    // The corpus models/default was trained and calibrated on (docs/model-card.md).
    common::emogate(&["synth", "--out", common::s(&corpus_dir), "--seed", "7"]);
    let corpus = msp::load(&corpus_dir).unwrap();
    let rows = corpus.indices(Split::Test);
    let options = ModelOptions { provider: ProviderChoice::Cpu, intra_threads: 2, ..ModelOptions::default() };
    let mut model = Model::load(&default_dir(), &options).unwrap();
    let manifest = model.manifest().clone();
    assert_eq!(manifest.training.corpus_hash, msp::content_hash(&corpus_dir).unwrap(), "same corpus");
    let mut predictions = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(256) {
        predictions.extend(model.infer(&corpus.gather(chunk)).unwrap());
    }
    for score in ScoreKind::ALL {
        let config = PolicyConfig { coverage: 0.8, score: Some(score), ..PolicyConfig::default() };
        let policy = RejectPolicy::new(&config, &manifest).unwrap();
        assert_eq!(policy.coverage_of(), CoverageOf::Records);
        let accepted =
            predictions.iter().filter(|p| policy.decide(p).0 == emogate::codec::Decision::Accepted).count();
        let rate = accepted as f64 / predictions.len() as f64;
        eprintln!(
            "{score}: {accepted} of {} test records accepted ({:.1} %)",
            predictions.len(),
            100.0 * rate
        );
        assert!(
            (rate - 0.8).abs() <= 0.03,
            "{score}: {accepted} of {} test records accepted",
            predictions.len()
        );
    }
}
