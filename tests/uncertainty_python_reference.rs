//! The reject option against an independent numpy + audmetric implementation
//! (`scripts/ccc_fixture.py --reference`), and the committed CCC fixture against a fresh
//! run of the script that generated it. Needs the reference venv (`make deps`).

mod common;

use emogate::uncertainty::{
    coverage_curve, quintile_ccc, quintile_groups, standard_coverages, threshold_for_coverage,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

const SCRIPT: &str = "scripts/ccc_fixture.py";

#[derive(Deserialize)]
struct Reference {
    curve: Vec<Point>,
    /// A number, or "inf" / "-inf".
    thresholds: Vec<serde_json::Value>,
    quintile_sizes: Vec<usize>,
    quintile_ccc: Vec<Option<f64>>,
}

#[derive(Deserialize)]
struct Point {
    coverage: f64,
    n: usize,
    ccc: Option<f64>,
}

fn reference(pred: &[f32], truth: &[f32], uncertainty: &[f32], coverages: &[f64]) -> Reference {
    let input = serde_json::json!({
        "pred": pred, "truth": truth, "uncertainty": uncertainty, "coverages": coverages,
    });
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), input.to_string()).expect("write reference input");
    let path = file.path().to_str().expect("UTF-8 temp path");
    serde_json::from_str(&common::run_python(SCRIPT, &["--reference", path])).expect("parse reference output")
}

fn threshold_value(value: &serde_json::Value) -> f32 {
    match value.as_str() {
        Some("inf") => f32::INFINITY,
        Some("-inf") => f32::NEG_INFINITY,
        _ => value.as_f64().expect("numeric threshold") as f32,
    }
}

fn assert_close(what: &str, ours: f64, theirs: Option<f64>) {
    match theirs {
        Some(want) => assert!((ours - want).abs() <= 1e-9, "{what}: ours {ours}, numpy {want}"),
        None => assert!(ours.is_nan(), "{what}: ours {ours}, numpy NaN"),
    }
}

/// A noisy regressor whose error grows with its uncertainty, uncertainties rounded to a
/// coarse grid (`grid` distinct values) so that ties cross group and coverage boundaries.
fn synthetic(seed: u64, n: usize, grid: u32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pred = Vec::with_capacity(n);
    let mut truth = Vec::with_capacity(n);
    let mut uncertainty = Vec::with_capacity(n);
    for _ in 0..n {
        let t: f32 = rng.random_range(1.0..7.0);
        let level = rng.random_range(0..grid);
        let u = level as f32 * 1.9 / grid as f32;
        let noise: f32 = rng.random_range(-1.0..1.0) * (0.2 + u);
        truth.push(t);
        pred.push(t + noise);
        uncertainty.push(u);
    }
    (pred, truth, uncertainty)
}

#[test]
fn committed_ccc_fixture_is_reproducible() {
    let out = common::run_python(SCRIPT, &["--check"]);
    assert!(out.contains("cases match"), "{out}");
}

#[test]
fn reject_option_matches_numpy_reference() {
    // n mod 5 = 2 and 3 (quintile remainders), many ties, and a small set.
    for (seed, n, grid) in [(1, 537, 40), (2, 23, 3), (3, 1003, 1000)] {
        let (pred, truth, unc) = synthetic(seed, n, grid);
        let mut coverages = standard_coverages(0.05).unwrap();
        coverages.extend([0.7, 0.29, 0.57]);
        if n < 100 {
            coverages.retain(|&c| c >= 0.1);
        }
        let theirs = reference(&pred, &truth, &unc, &coverages);

        let curve = coverage_curve(&pred, &truth, &unc, &coverages).unwrap();
        assert_eq!(curve.len(), theirs.curve.len());
        for (ours, want) in curve.iter().zip(&theirs.curve) {
            // serde_json's float parser may be an ulp off; the coverage only labels the point.
            assert!((ours.coverage - want.coverage).abs() < 1e-12);
            assert_eq!(ours.n, want.n, "n = {n}: kept count at coverage {}", ours.coverage);
            assert_close(&format!("n = {n}: CCC at {}", ours.coverage), ours.ccc, want.ccc);
        }

        for (&coverage, want) in coverages.iter().zip(&theirs.thresholds) {
            let ours = threshold_for_coverage(&unc, coverage).unwrap();
            assert_eq!(ours, threshold_value(want), "n = {n}: threshold at {coverage}");
        }

        let sizes = quintile_groups(n).map(|g| g.len());
        assert_eq!(sizes.to_vec(), theirs.quintile_sizes, "n = {n}");
        let ours = quintile_ccc(&pred, &truth, &unc).unwrap();
        for (group, (&c, &want)) in ours.iter().zip(&theirs.quintile_ccc).enumerate() {
            assert_close(&format!("n = {n}: quintile {}", group + 1), c, want);
        }
    }
}
