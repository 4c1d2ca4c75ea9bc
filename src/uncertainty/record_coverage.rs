//! Thresholds for a *record* coverage: the fraction of records the decision rule accepts.
//!
//! Per-attribute thresholds calibrated at coverage c accept c of the dev split *per attribute*.
//! Under the record rule `all` a record needs all three, so the record accept rate is below c
//! (0.8³ ≈ 0.51 if the attributes' scores were independent; with models/default v1 at 0.8 the
//! synthetic test split accepted 68.6 % of records by the entropy, `tests/default_model.rs`
//! with the record thresholds removed); under `any` it is above.
//! To make `policy.coverage` mean "the fraction of records accepted on dev", every attribute
//! keeps its `k` most certain dev records, with one `k` for all attributes, the smallest for
//! which the rule accepts at least `round(c·n)` records (the count rule of
//! [`super::kept_count`]). One shared `k` keeps the attributes on an equal footing, as the
//! per-attribute calibration does; the resulting per-attribute coverage `k / n` is reported.

use serde::{Deserialize, Serialize};

use super::coverage::{kept_count, uncertainty_order};
use super::error::MetricError;

/// How per-attribute verdicts combine, for the rules whose record coverage differs from the
/// attributes' (a single-attribute rule's record coverage is that attribute's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JointRule {
    /// Accepted when every attribute is.
    All,
    /// Accepted when at least one attribute is.
    Any,
}

impl JointRule {
    fn accepts(self, mut verdicts: impl Iterator<Item = bool>) -> bool {
        match self {
            JointRule::All => verdicts.all(|v| v),
            JointRule::Any => verdicts.any(|v| v),
        }
    }
}

/// Thresholds (one per score column) for a record coverage, and what they achieve on dev.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordCalibration {
    /// Per column, the score of its `k`-th most certain record.
    pub thresholds: Vec<f32>,
    /// `k / n`: the coverage each attribute was calibrated at.
    pub attribute_coverage: f64,
    /// Fraction of the records the rule accepts with these thresholds.
    pub accepted: f64,
}

/// Fraction of the records (rows across `scores`' columns) that `rule` accepts with
/// `thresholds` (`score <= threshold`; a NaN score never passes).
pub fn record_accepted_fraction(scores: &[&[f32]], thresholds: &[f32], rule: JointRule) -> f64 {
    let n = scores.first().map_or(0, |c| c.len());
    if n == 0 {
        return f64::NAN;
    }
    accepted_count(scores, thresholds, rule) as f64 / n as f64
}

fn accepted_count(scores: &[&[f32]], thresholds: &[f32], rule: JointRule) -> usize {
    let n = scores.first().map_or(0, |c| c.len());
    (0..n).filter(|&i| rule.accepts(scores.iter().zip(thresholds).map(|(c, &t)| c[i] <= t))).count()
}

/// The thresholds with which `rule` accepts `coverage` of the records (module doc).
///
/// `scores` holds one column per attribute, all of the same length and finite (as dev scores
/// are). Coverage 1 keeps every record: the thresholds are each column's largest score, so a
/// caller that must also accept beyond the dev range replaces them.
pub fn record_thresholds(
    scores: &[&[f32]],
    coverage: f64,
    rule: JointRule,
) -> Result<RecordCalibration, MetricError> {
    let n = scores.first().map_or(0, |c| c.len());
    if n == 0 {
        return Err(MetricError::Empty { what: "scores" });
    }
    if let Some(c) = scores.iter().find(|c| c.len() != n) {
        return Err(MetricError::LengthMismatch { what: "scores", expected: n, found: c.len() });
    }
    let target = kept_count(n, coverage)?;
    let orders = scores.iter().map(|c| uncertainty_order(c)).collect::<Result<Vec<_>, _>>()?;
    let at = |k: usize| -> Vec<f32> {
        scores
            .iter()
            .zip(&orders)
            .map(|(c, o)| if k == 0 { f32::NEG_INFINITY } else { c[o[k - 1]] })
            .collect()
    };
    let count = |k: usize| accepted_count(scores, &at(k), rule);
    // The accepted count never falls as k grows: binary search the smallest k reaching target.
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if count(mid) >= target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let k = lo.max(1);
    let thresholds = at(k);
    Ok(RecordCalibration {
        accepted: record_accepted_fraction(scores, &thresholds, rule),
        attribute_coverage: k as f64 / n as f64,
        thresholds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random columns in [0, 1).
    fn columns(seed: u64, n: usize, m: usize) -> Vec<Vec<f32>> {
        let mut x = seed;
        (0..m)
            .map(|_| {
                (0..n)
                    .map(|_| {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        ((x >> 40) as f32) / (1u64 << 24) as f32
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_rule_accepts_the_target_fraction_of_records() {
        let cols = columns(3, 1000, 3);
        let refs: Vec<&[f32]> = cols.iter().map(Vec::as_slice).collect();
        for c in [0.2, 0.5, 0.8, 0.9] {
            let all = record_thresholds(&refs, c, JointRule::All).unwrap();
            assert!((all.accepted - c).abs() <= 0.0015, "all at {c}: {all:?}");
            // Independent columns: each attribute must keep about c^(1/3) of its records.
            assert!((all.attribute_coverage - f64::powf(c, 1.0 / 3.0)).abs() < 0.03, "{all:?}");
            let any = record_thresholds(&refs, c, JointRule::Any).unwrap();
            assert!((any.accepted - c).abs() <= 0.0015, "any at {c}: {any:?}");
            assert!(any.attribute_coverage < c && all.attribute_coverage > c);
        }
    }

    #[test]
    fn identical_columns_need_no_correction_and_full_coverage_keeps_everything() {
        let col: Vec<f32> = (0..100).map(|i| i as f32).collect();
        let refs = [col.as_slice(), col.as_slice()];
        let r = record_thresholds(&refs, 0.3, JointRule::All).unwrap();
        assert_eq!((r.attribute_coverage, r.accepted, r.thresholds.clone()), (0.3, 0.3, vec![29.0, 29.0]));
        let full = record_thresholds(&refs, 1.0, JointRule::All).unwrap();
        assert_eq!((full.accepted, full.thresholds), (1.0, vec![99.0, 99.0]));
        assert_eq!(record_accepted_fraction(&refs, &[f32::NAN, 99.0], JointRule::Any), 1.0);
        assert_eq!(record_accepted_fraction(&refs, &[f32::NAN, f32::NAN], JointRule::Any), 0.0);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let a = [0.1f32, 0.2];
        let b = [0.1f32];
        assert!(matches!(record_thresholds(&[], 0.5, JointRule::All), Err(MetricError::Empty { .. })));
        assert!(matches!(
            record_thresholds(&[&a, &b], 0.5, JointRule::All),
            Err(MetricError::LengthMismatch { .. })
        ));
        assert!(matches!(
            record_thresholds(&[&a], 1.5, JointRule::All),
            Err(MetricError::InvalidCoverage(_))
        ));
        assert!(record_thresholds(&[&[f32::NAN, 0.0]], 0.5, JointRule::All).is_err());
    }
}
