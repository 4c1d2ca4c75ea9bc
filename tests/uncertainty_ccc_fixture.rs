//! Our CCC and Pearson against `audmetric` (numpy), through values computed once by
//! `scripts/ccc_fixture.py` and committed in `tests/fixtures/uncertainty/ccc_audmetric.json`.
//! No Python at test time; `tests/uncertainty_python_reference.rs` re-derives the file.

use emogate::uncertainty::{ccc, pearson};
use serde::Deserialize;

const TOLERANCE: f64 = 1e-9;

#[derive(Deserialize)]
struct Fixture {
    audmetric_version: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    /// float32 values in their shortest round-trip decimal form. serde_json parses them
    /// through f64 (possibly an ulp off), and rounding that to f32 recovers the exact float32
    /// audmetric used: an f64 ulp is far below half an f32 ulp.
    pred: Vec<f32>,
    truth: Vec<f32>,
    /// `null` where audmetric returns NaN.
    ccc: Option<f64>,
    pearson: Option<f64>,
}

fn load() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/uncertainty/ccc_audmetric.json");
    let text = std::fs::read_to_string(path).expect("read the committed CCC fixture");
    serde_json::from_str(&text).expect("parse the CCC fixture")
}

fn assert_matches(name: &str, metric: &str, ours: f64, theirs: Option<f64>) {
    match theirs {
        Some(want) => assert!(
            (ours - want).abs() <= TOLERANCE,
            "{name}: {metric} = {ours}, audmetric {want} (diff {:e})",
            (ours - want).abs()
        ),
        None => assert!(ours.is_nan(), "{name}: {metric} = {ours}, audmetric NaN"),
    }
}

#[test]
fn ccc_and_pearson_equal_audmetric() {
    let fixture = load();
    assert_eq!(fixture.audmetric_version, "1.4.2");
    assert!(fixture.cases.len() >= 10, "fixture lost cases");
    for case in &fixture.cases {
        assert_eq!(case.pred.len(), case.truth.len(), "{}", case.name);
        assert_matches(&case.name, "ccc", ccc(&case.pred, &case.truth).unwrap(), case.ccc);
        assert_matches(&case.name, "pearson", pearson(&case.pred, &case.truth).unwrap(), case.pearson);
    }
}

#[test]
fn fixture_covers_the_documented_cases() {
    let fixture = load();
    let value = |name: &str| {
        let case = fixture.cases.iter().find(|c| c.name == name);
        case.unwrap_or_else(|| panic!("fixture case {name} missing")).ccc
    };
    // audmetric's docstring: concordance_cc([0, 1, 2], [0, 1, 1]) == 0.6666666666666665.
    assert_eq!(value("audmetric_docstring_n3"), Some(0.6666666666666665));
    assert_eq!(value("identical_n40"), Some(1.0));
    assert!(value("shifted_copy_n50").is_some_and(|c| c < 1.0));
    assert!(value("negatively_correlated_n300").is_some_and(|c| c < -0.5));
    assert_eq!(value("both_constant_different_n10"), Some(0.0));
    assert_eq!(value("both_constant_equal_n10"), None);
}
