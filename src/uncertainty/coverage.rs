//! The reject option: keep the most certain predictions and measure what that buys.
//!
//! The paper evaluates uncertainty in two ways, both built on one ordering of the test set
//! by predicted uncertainty (most certain first):
//!
//! * **Coverage curves** (§V-B, Fig. 3): reject the most uncertain samples and report CCC
//!   on the accepted fraction (the *coverage*), from 100% down to 20%.
//! * **Uncertainty quintiles** (§V-A, Fig. 2): split the ordered set into five equal parts
//!   and report CCC per part; good uncertainty gives falling CCC from the first to the fifth.
//!
//! emogate also needs the deployment side of the reject option: a threshold on uncertainty,
//! calibrated on the development split for a target coverage ([`threshold_for_coverage`]),
//! and the fraction it accepts on other data ([`accepted_fraction`]).
//!
//! # Conventions
//!
//! * **Order and ties.** Items are ordered by uncertainty ascending; equal uncertainties keep
//!   their original index order (a stable sort), so results never depend on the sort
//!   algorithm and equal-uncertainty items are kept first-come-first-kept. `0.0` and `-0.0`
//!   are equal. See [`uncertainty_order`].
//! * **Kept count.** Coverage `c` of `n` items keeps `round(c·n)` items, rounding halves up
//!   ([`kept_count`]).
//! * **Subsets keep the input order.** CCC of a kept subset or a quintile is computed over
//!   its items in their original order (a boolean mask, as numpy code would do), so the 100%
//!   point is bit-for-bit the CCC of the whole set.

use std::cmp::Ordering;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::ccc::{ccc_unchecked, check_finite, check_pair};
use super::error::MetricError;

/// Lowest coverage of the paper's reject-option curves (Fig. 3 goes from 100% to 20%).
pub const MIN_STANDARD_COVERAGE: f64 = 0.2;

/// Number of uncertainty groups of Fig. 2.
pub const QUINTILES: usize = 5;

/// Slack added before rounding `c·n` (scaled by `n`): decimal coverages are not exact in
/// binary, so `0.7·45` evaluates to `31.499999999999996` and would round down while
/// `0.25·10 = 2.5` rounds up. 1e-12 is orders of magnitude above that representation error
/// and far below any coverage anyone means.
const ROUND_SLACK: f64 = 1e-12;

/// One point of a coverage curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CoveragePoint {
    /// The requested coverage, as given.
    pub coverage: f64,
    /// Items kept: `round(coverage·n)`.
    pub n: usize,
    /// CCC on the kept items; NaN where it is undefined (kept pred and truth constant and
    /// equal, see [`super::ccc::ccc`]).
    pub ccc: f64,
}

/// How many of `n` items a coverage keeps: `round(coverage·n)`, halves rounded up.
///
/// A slack of `1e-12·(1 + n)` is added before rounding so that decimal coverages whose
/// product comes out a hair low round as their decimal value does: `0.7·45` is
/// `31.499999999999996` in `f64` but keeps 32, like 0.25 of 10 keeps 3.
///
/// # Errors
///
/// [`MetricError::InvalidCoverage`] unless `0 ≤ coverage ≤ 1`.
pub fn kept_count(n: usize, coverage: f64) -> Result<usize, MetricError> {
    if !(0.0..=1.0).contains(&coverage) {
        return Err(MetricError::InvalidCoverage(coverage));
    }
    let n_f = n as f64;
    let kept = (coverage * n_f + 0.5 + ROUND_SLACK * (1.0 + n_f)).floor();
    // `kept` is in [0, n + 1) here; the `min` keeps a coverage of exactly 1 at n.
    Ok((kept as usize).min(n))
}

/// Indices of `uncertainty` from most to least certain (ascending), ties in index order.
///
/// # Errors
///
/// [`MetricError::NonFinite`] for the first NaN or infinite uncertainty: such a value has no
/// place in the order, and silently putting it first or last would bias every metric.
pub fn uncertainty_order(uncertainty: &[f32]) -> Result<Vec<usize>, MetricError> {
    check_finite("uncertainty", uncertainty)?;
    let mut order: Vec<usize> = (0..uncertainty.len()).collect();
    // Stable: equal keys keep index order. All values are finite, so `partial_cmp` is total.
    order.sort_by(|&a, &b| uncertainty[a].partial_cmp(&uncertainty[b]).unwrap_or(Ordering::Equal));
    Ok(order)
}

/// CCC after rejecting the most uncertain items, at each requested coverage (Fig. 3).
///
/// For each `c` in `coverages` (in the order given) keeps the [`kept_count`]`(n, c)` items
/// with the lowest uncertainty (ties by original index) and computes CCC on them. An empty
/// `coverages` gives an empty curve.
///
/// # Errors
///
/// Input checks of [`super::ccc::ccc`] on `pred`/`truth`; [`MetricError::LengthMismatch`]
/// if `uncertainty` is not as long as `pred`; [`MetricError::NonFinite`] for a non-finite
/// uncertainty; [`MetricError::InvalidCoverage`] for a coverage outside `[0, 1]`;
/// [`MetricError::CoverageTooSmall`] when a coverage keeps fewer than 2 items.
pub fn coverage_curve(
    pred: &[f32],
    truth: &[f32],
    uncertainty: &[f32],
    coverages: &[f64],
) -> Result<Vec<CoveragePoint>, MetricError> {
    let order = checked_order(pred, truth, uncertainty)?;
    let n = pred.len();
    let rank = ranks(&order);
    coverages
        .iter()
        .map(|&coverage| {
            let kept = kept_count(n, coverage)?;
            if kept < 2 {
                return Err(MetricError::CoverageTooSmall { coverage, kept, n });
            }
            let ccc = subset_ccc(pred, truth, |i| rank[i] < kept);
            Ok(CoveragePoint { coverage, n: kept, ccc })
        })
        .collect()
}

/// Coverages `1.0, 1.0 − step, …` down to [`MIN_STANDARD_COVERAGE`] (inclusive when it is
/// hit): step 0.05 gives the 17 points 1.00, 0.95, …, 0.20; step 0.1 gives 1.0, 0.9, …, 0.2.
///
/// Each value is computed from its index (`1 − i·step`) rather than by repeated subtraction,
/// and snapped to the nearest multiple of 1e-9, so 0.95 is the same `f64` as the literal
/// `0.95` and no point drifts below 0.2 or goes missing. A step that does not divide 0.8
/// stops at the last point ≥ 0.2.
///
/// # Errors
///
/// [`MetricError::InvalidStep`] unless `0.001 ≤ step ≤ 0.8`.
pub fn standard_coverages(step: f64) -> Result<Vec<f64>, MetricError> {
    if !(0.001..=0.8).contains(&step) {
        return Err(MetricError::InvalidStep(step));
    }
    let span = 1.0 - MIN_STANDARD_COVERAGE;
    let points = (span / step + 1e-9).floor() as usize;
    Ok((0..=points).map(|i| ((1.0 - i as f64 * step) * 1e9).round() / 1e9).collect())
}

/// The five uncertainty groups of `n` ordered items, as ranges of positions in
/// [`uncertainty_order`] (most certain fifth first).
///
/// Every group has `n / 5` items and the remainder `n mod 5` goes one each to the *first*
/// groups: sizes differ by at most one, sum to `n`, and the extra items sit with the more
/// certain groups. For `n < 5` some groups are empty.
pub fn quintile_groups(n: usize) -> [Range<usize>; QUINTILES] {
    let (base, remainder) = (n / QUINTILES, n % QUINTILES);
    let mut start = 0;
    std::array::from_fn(|group| {
        let size = base + usize::from(group < remainder);
        let range = start..start + size;
        start += size;
        range
    })
}

/// CCC per uncertainty quintile (Fig. 2): most certain fifth first.
///
/// Items are ordered as in [`uncertainty_order`], split by [`quintile_groups`], and each
/// group's CCC is computed over its items in original order. A group whose pred and truth
/// are constant and equal has CCC NaN (see [`super::ccc::ccc`]).
///
/// # Errors
///
/// As [`coverage_curve`], and [`MetricError::TooFew`] for fewer than 10 items (each group
/// needs 2 for CCC).
pub fn quintile_ccc(
    pred: &[f32],
    truth: &[f32],
    uncertainty: &[f32],
) -> Result<[f64; QUINTILES], MetricError> {
    let order = checked_order(pred, truth, uncertainty)?;
    let n = pred.len();
    if n < 2 * QUINTILES {
        return Err(MetricError::TooFew { needed: 2 * QUINTILES, found: n });
    }
    let rank = ranks(&order);
    let groups = quintile_groups(n);
    Ok(groups.map(|group| subset_ccc(pred, truth, |i| group.contains(&rank[i]))))
}

/// The uncertainty threshold that accepts `coverage` of these items with `u <= threshold`.
///
/// With `k = `[`kept_count`]`(n, coverage)` and the items in [`uncertainty_order`]:
///
/// * `0 < k < n`: the `k`-th smallest uncertainty. On this data `u <= threshold` accepts
///   exactly the `k` most certain items **when the uncertainties are distinct**. If other
///   items tie with the `k`-th value they are accepted too (a `<=` rule cannot split a tie),
///   so the accepted fraction can exceed `coverage`; the threshold never accepts fewer than
///   `k`.
/// * `k == n` (coverage 1, or close enough to round to all items): `+∞`, so that unseen
///   data with a higher uncertainty than any calibration item is still accepted.
/// * `k == 0`: `−∞`, which accepts nothing.
///
/// This is how calibration turns a target coverage on the development split into the
/// threshold the service applies.
///
/// # Errors
///
/// [`MetricError::Empty`] for no items, [`MetricError::NonFinite`] for a non-finite
/// uncertainty, [`MetricError::InvalidCoverage`] for a coverage outside `[0, 1]`.
pub fn threshold_for_coverage(uncertainty: &[f32], coverage: f64) -> Result<f32, MetricError> {
    if uncertainty.is_empty() {
        return Err(MetricError::Empty { what: "uncertainty" });
    }
    let order = uncertainty_order(uncertainty)?;
    let n = uncertainty.len();
    Ok(match kept_count(n, coverage)? {
        0 => f32::NEG_INFINITY,
        k if k == n => f32::INFINITY,
        k => uncertainty[order[k - 1]],
    })
}

/// Fraction of items the gate accepts with `u <= threshold`.
///
/// NaN uncertainties count as rejected, exactly as the comparison treats them in the
/// service (a prediction without a usable uncertainty is never accepted). `threshold` may be
/// `±∞`.
///
/// # Errors
///
/// [`MetricError::Empty`] for no items, [`MetricError::NanThreshold`] for a NaN threshold.
pub fn accepted_fraction(uncertainty: &[f32], threshold: f32) -> Result<f64, MetricError> {
    if uncertainty.is_empty() {
        return Err(MetricError::Empty { what: "uncertainty" });
    }
    if threshold.is_nan() {
        return Err(MetricError::NanThreshold);
    }
    let accepted = uncertainty.iter().filter(|&&u| u <= threshold).count();
    Ok(accepted as f64 / uncertainty.len() as f64)
}

/// Validates the triple and returns the uncertainty order.
fn checked_order(pred: &[f32], truth: &[f32], uncertainty: &[f32]) -> Result<Vec<usize>, MetricError> {
    check_pair(pred, truth)?;
    if uncertainty.len() != pred.len() {
        return Err(MetricError::LengthMismatch {
            what: "uncertainty",
            expected: pred.len(),
            found: uncertainty.len(),
        });
    }
    uncertainty_order(uncertainty)
}

/// `rank[i]` = position of item `i` in `order`.
fn ranks(order: &[usize]) -> Vec<usize> {
    let mut rank = vec![0; order.len()];
    for (position, &item) in order.iter().enumerate() {
        rank[item] = position;
    }
    rank
}

/// CCC over the items selected by `keep`, in original order. Callers guarantee at least 2
/// selected items and validated (finite) values.
fn subset_ccc(pred: &[f32], truth: &[f32], keep: impl Fn(usize) -> bool) -> f64 {
    let (kept_pred, kept_truth): (Vec<f32>, Vec<f32>) =
        (0..pred.len()).filter(|&i| keep(i)).map(|i| (pred[i], truth[i])).unzip();
    ccc_unchecked(&kept_pred, &kept_truth)
}

#[cfg(test)]
mod tests {
    use super::super::ccc::ccc;
    use super::*;

    /// truth 1..=10; pred equals truth on items with low uncertainty and is far off on the
    /// three most uncertain ones.
    fn example() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let truth: Vec<f32> = (1..=10).map(|v| v as f32).collect();
        let mut pred = truth.clone();
        pred[1] = 9.0;
        pred[4] = 1.0;
        pred[8] = 2.0;
        let uncertainty = vec![0.1, 1.5, 0.2, 0.3, 1.9, 0.4, 0.5, 0.6, 1.7, 0.7];
        (pred, truth, uncertainty)
    }

    #[test]
    fn kept_count_rounds_half_up_despite_decimal_error() {
        assert_eq!(kept_count(10, 1.0), Ok(10));
        assert_eq!(kept_count(10, 0.0), Ok(0));
        assert_eq!(kept_count(10, 0.25), Ok(3));
        assert_eq!(kept_count(10, 0.35), Ok(4));
        assert_eq!(kept_count(10, 0.45), Ok(5));
        assert_eq!(kept_count(10, 0.34), Ok(3));
        // 0.7·45 is 31.499999999999996 in f64 but 31.5 in decimal: rounds up, to 32.
        assert_eq!(kept_count(45, 0.7), Ok(32));
        assert_eq!(kept_count(50, 0.29), Ok(15));
        assert_eq!(kept_count(10_124, 0.6), Ok(6074)); // 6074.4
        assert_eq!(kept_count(0, 0.5), Ok(0));
        for bad in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
            assert!(matches!(kept_count(10, bad), Err(MetricError::InvalidCoverage(_))));
        }
    }

    #[test]
    fn order_is_ascending_with_ties_by_index() {
        assert_eq!(uncertainty_order(&[0.5, 0.1, 0.5, 0.0, -0.0, 0.1]).unwrap(), vec![3, 4, 1, 5, 0, 2]);
        assert_eq!(uncertainty_order(&[]).unwrap(), Vec::<usize>::new());
        assert!(matches!(
            uncertainty_order(&[0.1, f32::NAN]),
            Err(MetricError::NonFinite { what: "uncertainty", index: 1, .. })
        ));
    }

    #[test]
    fn coverage_curve_rejects_the_most_uncertain() {
        let (pred, truth, unc) = example();
        let curve = coverage_curve(&pred, &truth, &unc, &[1.0, 0.7, 0.2]).unwrap();
        assert_eq!(curve.iter().map(|p| p.n).collect::<Vec<_>>(), vec![10, 7, 2]);
        assert_eq!(curve[0].ccc, ccc(&pred, &truth).unwrap());
        assert!(curve[0].ccc < 0.6, "{}", curve[0].ccc);
        // At 70% the three bad items (the most uncertain) are gone: perfect agreement.
        assert_eq!(curve[1].ccc, 1.0);
        assert_eq!(curve[2].ccc, 1.0);
        assert_eq!(curve[1].coverage, 0.7);
    }

    #[test]
    fn coverage_curve_tie_break_keeps_lower_indices() {
        // All uncertainties equal: 50% keeps items 0..2 (a perfect pair), not items 2..4.
        let pred = [1.0, 2.0, 9.0, -3.0];
        let truth = [1.0, 2.0, 3.0, 4.0];
        let curve = coverage_curve(&pred, &truth, &[0.5; 4], &[0.5]).unwrap();
        assert_eq!(curve[0].n, 2);
        assert_eq!(curve[0].ccc, 1.0);
    }

    #[test]
    fn coverage_curve_errors() {
        let (pred, truth, unc) = example();
        assert_eq!(
            coverage_curve(&pred, &truth, &unc[..9], &[1.0]),
            Err(MetricError::LengthMismatch { what: "uncertainty", expected: 10, found: 9 })
        );
        assert_eq!(
            coverage_curve(&pred, &truth, &unc, &[0.1]),
            Err(MetricError::CoverageTooSmall { coverage: 0.1, kept: 1, n: 10 })
        );
        assert_eq!(coverage_curve(&pred, &truth, &unc, &[1.5]), Err(MetricError::InvalidCoverage(1.5)));
        assert!(matches!(
            coverage_curve(&pred, &truth[..9], &unc, &[1.0]),
            Err(MetricError::LengthMismatch { what: "truth", .. })
        ));
        assert_eq!(coverage_curve(&pred, &truth, &unc, &[]), Ok(vec![]));
    }

    #[test]
    fn standard_coverages_have_no_drift() {
        let fine = standard_coverages(0.05).unwrap();
        assert_eq!(
            fine,
            vec![1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2]
        );
        assert_eq!(standard_coverages(0.1).unwrap(), vec![1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]);
        assert_eq!(standard_coverages(0.2).unwrap(), vec![1.0, 0.8, 0.6, 0.4, 0.2]);
        assert_eq!(standard_coverages(0.15).unwrap(), vec![1.0, 0.85, 0.7, 0.55, 0.4, 0.25]);
        assert_eq!(standard_coverages(0.8).unwrap(), vec![1.0, 0.2]);
        for bad in [0.0, -0.05, 0.9, 0.0001, f64::NAN] {
            assert!(matches!(standard_coverages(bad), Err(MetricError::InvalidStep(_))));
        }
    }

    #[test]
    fn quintile_remainder_goes_to_the_first_groups() {
        assert_eq!(quintile_groups(10), [0..2, 2..4, 4..6, 6..8, 8..10]);
        assert_eq!(quintile_groups(13), [0..3, 3..6, 6..9, 9..11, 11..13]);
        assert_eq!(quintile_groups(3), [0..1, 1..2, 2..3, 3..3, 3..3]);
        assert_eq!(quintile_groups(0), [0..0, 0..0, 0..0, 0..0, 0..0]);
    }

    #[test]
    fn quintile_ccc_is_most_certain_first() {
        let (pred, truth, unc) = example();
        let q = quintile_ccc(&pred, &truth, &unc).unwrap();
        // Ordered items: 0,2,3,5,6,7,9,1,8,4 → groups {0,2},{3,5},{6,7},{9,1},{8,4}.
        assert_eq!(&q[..3], &[1.0, 1.0, 1.0]);
        // Group {1, 9}: pred [9, 10], truth [2, 10]: Σab = 4, Σa² = 0.5, Σb² = 32, means 9.5
        // and 6 → 2·4 / (0.5 + 32 + 2·3.5²) = 8/57.
        assert!((q[3] - 8.0 / 57.0).abs() < 1e-12, "{}", q[3]);
        // Group {4, 8}: pred [1, 2], truth [5, 9]: Σab = 2, Σa² = 0.5, Σb² = 8, means 1.5 and
        // 7 → 2·2 / (0.5 + 8 + 2·5.5²) = 4/69.
        assert!((q[4] - 4.0 / 69.0).abs() < 1e-12, "{}", q[4]);
    }

    #[test]
    fn quintile_ccc_needs_two_items_per_group() {
        let (pred, truth, unc) = example();
        assert_eq!(
            quintile_ccc(&pred[..9], &truth[..9], &unc[..9]),
            Err(MetricError::TooFew { needed: 10, found: 9 })
        );
    }

    #[test]
    fn threshold_accepts_the_requested_coverage() {
        let unc = [0.3, 0.1, 0.4, 0.2, 0.5];
        assert_eq!(threshold_for_coverage(&unc, 0.6), Ok(0.3));
        assert_eq!(accepted_fraction(&unc, 0.3), Ok(0.6));
        assert_eq!(threshold_for_coverage(&unc, 1.0), Ok(f32::INFINITY));
        assert_eq!(threshold_for_coverage(&unc, 0.05), Ok(f32::NEG_INFINITY));
        assert_eq!(accepted_fraction(&unc, f32::NEG_INFINITY), Ok(0.0));
        assert_eq!(accepted_fraction(&unc, f32::INFINITY), Ok(1.0));
    }

    #[test]
    fn threshold_ties_accept_the_whole_tie() {
        // 40% of 5 = 2 items, but three share the 2nd-smallest value: all three are accepted.
        let unc = [0.0, 0.2, 0.2, 0.2, 0.9];
        let t = threshold_for_coverage(&unc, 0.4).unwrap();
        assert_eq!(t, 0.2);
        assert_eq!(accepted_fraction(&unc, t), Ok(0.8));
    }

    #[test]
    fn threshold_errors_and_nan_handling() {
        assert_eq!(threshold_for_coverage(&[], 0.5), Err(MetricError::Empty { what: "uncertainty" }));
        assert!(matches!(threshold_for_coverage(&[0.1, f32::NAN], 0.5), Err(MetricError::NonFinite { .. })));
        assert_eq!(threshold_for_coverage(&[0.1], -0.5), Err(MetricError::InvalidCoverage(-0.5)));
        assert_eq!(accepted_fraction(&[], 0.5), Err(MetricError::Empty { what: "uncertainty" }));
        assert_eq!(accepted_fraction(&[0.1], f32::NAN), Err(MetricError::NanThreshold));
        // NaN uncertainty is never accepted, even by an infinite threshold.
        assert_eq!(accepted_fraction(&[0.1, f32::NAN], f32::INFINITY), Ok(0.5));
    }
}
