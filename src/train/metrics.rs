//! Thin training-time wrappers over [`crate::uncertainty`], which owns CCC, entropy, coverage
//! curves, quintiles and thresholds for the trainer, `calibrate` and the service alike. The
//! label arithmetic on votes is in [`super::labels`].

use crate::uncertainty;

/// [`uncertainty::ccc`] for training-time monitoring, where a degenerate slice (fewer than two
/// values) is a NaN score rather than an error: NaN never beats the best epoch so far.
pub fn ccc(pred: &[f32], truth: &[f32]) -> f64 {
    uncertainty::ccc(pred, truth).unwrap_or(f64::NAN)
}

/// [`uncertainty::pearson`], NaN where it is undefined (see [`ccc`]).
pub fn pearson(x: &[f32], y: &[f32]) -> f64 {
    uncertainty::pearson(x, y).unwrap_or(f64::NAN)
}

/// The coverage grid of the paper's Fig. 3 and of `emogate calibrate`: 0.2, 0.3, …, 1.0.
pub fn coverage_grid() -> Vec<f64> {
    (2..=10).map(|k| k as f64 / 10.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ccc_matches_hand_computation() {
        assert!((ccc(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]) - 1.0).abs() < 1e-12);
        // pred = truth + 1: var 2/3 each, cov 2/3, bias 1 → 2·(2/3)/(4/3 + 1) = 4/7.
        assert!((ccc(&[2.0, 3.0, 4.0], &[1.0, 2.0, 3.0]) - 4.0 / 7.0).abs() < 1e-12);
        assert!((ccc(&[3.0, 2.0, 1.0], &[1.0, 2.0, 3.0]) + 1.0).abs() < 1e-12);
        assert!(ccc(&[1.0], &[1.0]).is_nan());
    }
}
