//! Lin's concordance correlation coefficient (CCC), the paper's performance measure.
//!
//! CCC rewards predictions that are both correlated with the truth *and* on the same scale
//! and offset, which Pearson's correlation ignores; the paper reports every result in CCC
//! and trains the regressor with `1 − CCC` (Eq. 3). The numbers must match the research
//! tooling exactly, so the definition here is `audmetric.concordance_cc` (audmetric 1.4.2),
//! checked against committed reference values in `tests/uncertainty_ccc_fixture.rs`.

use super::error::MetricError;

/// Lin's concordance correlation coefficient with population statistics:
///
/// ```text
///          2·Σ (x − x̄)(y − ȳ)
/// ρc = ───────────────────────────────────────
///      Σ (x − x̄)² + Σ (y − ȳ)² + n·(x̄ − ȳ)²
/// ```
///
/// which equals `2ρσxσy / (σx² + σy² + (μx − μy)²)` with population (1/n) moments, as in
/// audmetric. The inputs are `f32` (model outputs, labels); all arithmetic is `f64`.
///
/// # Degenerate cases (as audmetric)
///
/// * One side constant, the other not: the numerator is 0, so `ρc = 0`.
/// * Both constant with different values: `ρc = 0` (the offset term keeps the denominator
///   positive).
/// * Both constant with the *same* value: the denominator is 0 and `ρc` is undefined;
///   audmetric returns NaN and so does this function (`Ok(f64::NAN)`). It is a value, not an
///   error, so that one degenerate subset does not abort a whole coverage curve; callers
///   that need a number must check `is_nan()`. The case is detected reliably: `f32` inputs
///   have 24-bit significands, so `Σx` of a constant slice is exact in `f64` (for fewer than
///   2²⁹ items) and its mean is the constant itself, leaving every deviation exactly 0.
///
/// Rounding can push `|ρc|` a few ulps past 1 when `x ≈ y`; the result is clamped to
/// `[−1, 1]`.
///
/// # Errors
///
/// [`MetricError::LengthMismatch`] (`truth` vs `pred`), [`MetricError::TooFew`] for fewer
/// than 2 items (audmetric returns NaN there; a typed error is more useful to callers), and
/// [`MetricError::NonFinite`] for the first NaN/infinite value (`pred` checked first).
pub fn ccc(pred: &[f32], truth: &[f32]) -> Result<f64, MetricError> {
    check_pair(pred, truth)?;
    Ok(ccc_unchecked(pred, truth))
}

/// Pearson's correlation coefficient, `Σab / √(Σa²·Σb²)` with `a = x − x̄`, `b = y − ȳ`.
///
/// Returned as a companion to [`ccc`] (CCC is Pearson times a bias-correction factor), with
/// the same input checks. If either side is constant the coefficient is undefined and the
/// result is `Ok(f64::NAN)`, as `audmetric.pearson_cc` returns. Clamped to `[−1, 1]`.
///
/// # Errors
///
/// The same as [`ccc`].
pub fn pearson(pred: &[f32], truth: &[f32]) -> Result<f64, MetricError> {
    check_pair(pred, truth)?;
    let m = Moments::of(pred, truth);
    let denominator = (m.sxx * m.syy).sqrt();
    if denominator == 0.0 {
        return Ok(f64::NAN);
    }
    Ok((m.sxy / denominator).clamp(-1.0, 1.0))
}

/// Validates a (pred, truth) pair for [`ccc`]/[`pearson`].
pub(crate) fn check_pair(pred: &[f32], truth: &[f32]) -> Result<(), MetricError> {
    if truth.len() != pred.len() {
        return Err(MetricError::LengthMismatch { what: "truth", expected: pred.len(), found: truth.len() });
    }
    if pred.len() < 2 {
        return Err(MetricError::TooFew { needed: 2, found: pred.len() });
    }
    check_finite("pred", pred)?;
    check_finite("truth", truth)
}

/// Errors on the first non-finite value of `values`.
pub(crate) fn check_finite(what: &'static str, values: &[f32]) -> Result<(), MetricError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(MetricError::NonFinite { what, index, value: values[index] }),
        None => Ok(()),
    }
}

/// CCC of a pair already validated by [`check_pair`] (equal lengths ≥ 2, finite).
pub(crate) fn ccc_unchecked(pred: &[f32], truth: &[f32]) -> f64 {
    let m = Moments::of(pred, truth);
    let n = pred.len() as f64;
    let offset = m.mean_x - m.mean_y;
    let denominator = m.sxx + m.syy + n * offset * offset;
    if denominator == 0.0 {
        return f64::NAN;
    }
    (2.0 * m.sxy / denominator).clamp(-1.0, 1.0)
}

/// Means and centred sums of squares and products, in `f64`.
struct Moments {
    mean_x: f64,
    mean_y: f64,
    sxx: f64,
    syy: f64,
    sxy: f64,
}

impl Moments {
    fn of(x: &[f32], y: &[f32]) -> Moments {
        let (mean_x, mean_y) = (mean(x), mean(y));
        let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
        for (&xi, &yi) in x.iter().zip(y) {
            let a = f64::from(xi) - mean_x;
            let b = f64::from(yi) - mean_y;
            sxx += a * a;
            syy += b * b;
            sxy += a * b;
        }
        Moments { mean_x, mean_y, sxx, syy, sxy }
    }
}

/// Arithmetic mean in `f64` (callers guarantee a non-empty slice).
fn mean(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v)).sum::<f64>() / x.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_agreement_is_one() {
        let x = [1.0, 2.0, 3.0, 4.5, 7.0];
        assert_eq!(ccc(&x, &x).unwrap(), 1.0);
        assert_eq!(pearson(&x, &x).unwrap(), 1.0);
    }

    #[test]
    fn audmetric_docstring_example() {
        // audmetric.concordance_cc([0, 1, 2], [0, 1, 1]) == 0.6666666666666665
        let c = ccc(&[0.0, 1.0, 1.0], &[0.0, 1.0, 2.0]).unwrap();
        assert!((c - 2.0 / 3.0).abs() < 1e-15, "{c}");
    }

    #[test]
    fn shifted_copy_is_below_one_while_pearson_stays_one() {
        // truth 1..=5: Σb² = 10, n = 5; pred = truth + 1: CCC = 2·10 / (10 + 10 + 5·1) = 0.8.
        let truth = [1.0, 2.0, 3.0, 4.0, 5.0];
        let pred = truth.map(|v| v + 1.0);
        assert!((ccc(&pred, &truth).unwrap() - 0.8).abs() < 1e-12);
        assert!((pearson(&pred, &truth).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn scaled_copy_is_penalised() {
        // pred = 2·truth, truth = [−1, 0, 1]: Σab = 4, Σa² = 8, Σb² = 2, equal means.
        // CCC = 8 / 10 = 0.8.
        let c = ccc(&[-2.0, 0.0, 2.0], &[-1.0, 0.0, 1.0]).unwrap();
        assert!((c - 0.8).abs() < 1e-12);
    }

    #[test]
    fn reversed_is_minus_one() {
        assert_eq!(ccc(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap(), -1.0);
        assert_eq!(pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap(), -1.0);
    }

    #[test]
    fn degenerate_cases_follow_audmetric() {
        // One side constant: 0 (Pearson undefined).
        assert_eq!(ccc(&[2.0, 2.0, 2.0], &[1.0, 2.0, 3.0]).unwrap(), 0.0);
        assert!(pearson(&[2.0, 2.0, 2.0], &[1.0, 2.0, 3.0]).unwrap().is_nan());
        assert!(pearson(&[1.0, 2.0, 3.0], &[2.0, 2.0, 2.0]).unwrap().is_nan());
        // Both constant, different: 0.
        assert_eq!(ccc(&[1.0, 1.0], &[3.0, 3.0]).unwrap(), 0.0);
        // Both constant, equal: undefined, NaN — also for constants such as 0.1 that are not
        // exact binary fractions.
        assert!(ccc(&[4.0, 4.0, 4.0], &[4.0, 4.0, 4.0]).unwrap().is_nan());
        assert!(ccc(&[0.1; 7], &[0.1; 7]).unwrap().is_nan());
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        assert_eq!(
            ccc(&[1.0, 2.0], &[1.0]),
            Err(MetricError::LengthMismatch { what: "truth", expected: 2, found: 1 })
        );
        assert_eq!(ccc(&[1.0], &[1.0]), Err(MetricError::TooFew { needed: 2, found: 1 }));
        assert_eq!(pearson(&[], &[]), Err(MetricError::TooFew { needed: 2, found: 0 }));
        assert!(matches!(
            ccc(&[1.0, f32::NAN], &[1.0, 2.0]),
            Err(MetricError::NonFinite { what: "pred", index: 1, .. })
        ));
        assert_eq!(
            ccc(&[1.0, 2.0], &[f32::NEG_INFINITY, 2.0]),
            Err(MetricError::NonFinite { what: "truth", index: 0, value: f32::NEG_INFINITY })
        );
    }

    #[test]
    fn large_values_do_not_overflow() {
        let x = [f32::MAX, -f32::MAX, 0.0];
        assert_eq!(ccc(&x, &x).unwrap(), 1.0);
    }
}
