//! Label and evaluation arithmetic on plain slices: soft labels from votes, CCC, entropy,
//! coverage curves and uncertainty quintiles.
//!
//! The trainer needs these before any tensor exists (labels) and after the serving graph
//! has run (metrics), so they stay free of candle and are unit-tested on hand-made numbers.

use crate::attribute::LIKERT_BINS;

/// Soft label: the histogram of the votes over the `LIKERT_BINS` bins, normalised to 1.
/// Votes are 1-based Likert points; a 5-point scale fills the first five bins.
pub fn soft_label(votes: &[u8]) -> [f32; LIKERT_BINS] {
    let mut hist = [0f32; LIKERT_BINS];
    let mut n = 0f32;
    for &v in votes {
        if (1..=LIKERT_BINS as u8).contains(&v) {
            hist[(v - 1) as usize] += 1.0;
            n += 1.0;
        }
    }
    if n > 0.0 {
        hist.iter_mut().for_each(|h| *h /= n);
    }
    hist
}

/// Consensus label: the mean vote (MSP-Podcast's consensus for attributes).
pub fn consensus(votes: &[u8]) -> f32 {
    if votes.is_empty() {
        return f32::NAN;
    }
    votes.iter().map(|&v| v as f32).sum::<f32>() / votes.len() as f32
}

/// Shannon entropy in nats, with 0·ln 0 = 0.
pub fn entropy_nats(p: &[f32]) -> f32 {
    -p.iter().filter(|&&q| q > 0.0).map(|&q| q * q.ln()).sum::<f32>()
}

/// Population standard deviation of the votes (annotator disagreement).
pub fn vote_std(votes: &[u8]) -> f32 {
    let m = consensus(votes);
    (votes.iter().map(|&v| (v as f32 - m).powi(2)).sum::<f32>() / votes.len().max(1) as f32).sqrt()
}

/// Lin's concordance correlation coefficient (population moments), in f64.
/// Returns 0 when both series are constant.
pub fn ccc(pred: &[f32], truth: &[f32]) -> f64 {
    assert_eq!(pred.len(), truth.len(), "ccc: length mismatch");
    let n = pred.len() as f64;
    if n == 0.0 {
        return f64::NAN;
    }
    let mp = pred.iter().map(|&x| x as f64).sum::<f64>() / n;
    let mt = truth.iter().map(|&x| x as f64).sum::<f64>() / n;
    let (mut vp, mut vt, mut cov) = (0.0, 0.0, 0.0);
    for (&p, &t) in pred.iter().zip(truth) {
        let (dp, dt) = (p as f64 - mp, t as f64 - mt);
        vp += dp * dp;
        vt += dt * dt;
        cov += dp * dt;
    }
    let denom = vp / n + vt / n + (mp - mt).powi(2);
    if denom == 0.0 {
        0.0
    } else {
        2.0 * cov / n / denom
    }
}

/// Pearson correlation in f64 (0 for a constant series).
pub fn pearson(x: &[f32], y: &[f32]) -> f64 {
    let n = x.len() as f64;
    let mx = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let my = y.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        let (da, db) = (a as f64 - mx, b as f64 - my);
        sxy += da * db;
        sxx += da * da;
        syy += db * db;
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// Indices sorted by increasing uncertainty (ties keep input order, so results are stable).
pub fn order_by_uncertainty(uncertainty: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..uncertainty.len()).collect();
    idx.sort_by(|&a, &b| uncertainty[a].total_cmp(&uncertainty[b]));
    idx
}

/// CCC on the `coverage` fraction of records with the lowest uncertainty.
pub fn ccc_at_coverage(pred: &[f32], truth: &[f32], uncertainty: &[f32], coverage: f64) -> f64 {
    let order = order_by_uncertainty(uncertainty);
    let keep = ((coverage * pred.len() as f64).round() as usize).clamp(1, pred.len());
    let (p, t): (Vec<f32>, Vec<f32>) = order[..keep].iter().map(|&i| (pred[i], truth[i])).unzip();
    ccc(&p, &t)
}

/// The coverage grid of the paper's Fig. 3 and of `emogate calibrate`: 0.2, 0.3, …, 1.0.
pub fn coverage_grid() -> Vec<f64> {
    (2..=10).map(|k| k as f64 / 10.0).collect()
}

/// `(coverage, ccc)` for every coverage of [`coverage_grid`].
pub fn coverage_curve(pred: &[f32], truth: &[f32], uncertainty: &[f32]) -> Vec<(f64, f64)> {
    coverage_grid().into_iter().map(|c| (c, ccc_at_coverage(pred, truth, uncertainty, c))).collect()
}

/// CCC within each fifth of the records sorted by uncertainty, most certain fifth first.
pub fn quintile_ccc(pred: &[f32], truth: &[f32], uncertainty: &[f32]) -> [f64; 5] {
    let order = order_by_uncertainty(uncertainty);
    let n = order.len();
    std::array::from_fn(|q| {
        let (lo, hi) = (q * n / 5, (q + 1) * n / 5);
        let (p, t): (Vec<f32>, Vec<f32>) = order[lo..hi].iter().map(|&i| (pred[i], truth[i])).unzip();
        ccc(&p, &t)
    })
}

/// Entropy threshold that accepts (`entropy <= threshold`) the `coverage` fraction of the
/// given values: the value at rank ceil(coverage·n) − 1 of the sorted sample. Coverage 1.0
/// gives the maximum, so every calibration record is accepted.
pub fn threshold_for_coverage(uncertainty: &[f32], coverage: f64) -> f32 {
    assert!(!uncertainty.is_empty(), "threshold_for_coverage: empty sample");
    let mut sorted = uncertainty.to_vec();
    sorted.sort_by(f32::total_cmp);
    let k = ((coverage * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[k - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_labels_are_vote_histograms() {
        let p = soft_label(&[1, 1, 3, 7]);
        assert_eq!(p, [0.5, 0.0, 0.25, 0.0, 0.0, 0.0, 0.25]);
        assert_eq!(consensus(&[1, 1, 3, 7]), 3.0);
        assert!((entropy_nats(&p) - 1.0397208).abs() < 1e-6);
        assert_eq!(entropy_nats(&soft_label(&[4, 4, 4])), 0.0);
    }

    #[test]
    fn ccc_matches_hand_computation() {
        assert!((ccc(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]) - 1.0).abs() < 1e-12);
        // pred = truth + 1: var 2/3 each, cov 2/3, bias 1 → 2·(2/3)/(4/3 + 1) = 4/7.
        assert!((ccc(&[2.0, 3.0, 4.0], &[1.0, 2.0, 3.0]) - 4.0 / 7.0).abs() < 1e-12);
        assert!((ccc(&[3.0, 2.0, 1.0], &[1.0, 2.0, 3.0]) + 1.0).abs() < 1e-12);
    }

    #[test]
    fn rejecting_the_uncertain_errors_raises_ccc() {
        let truth: Vec<f32> = (0..100).map(|i| (i % 10) as f32).collect();
        let unc: Vec<f32> = (0..100).map(|i| (i % 7) as f32).collect();
        let pred: Vec<f32> =
            truth.iter().zip(&unc).map(|(t, u)| t + if *u >= 4.0 { 5.0 } else { 0.0 }).collect();
        let curve = coverage_curve(&pred, &truth, &unc);
        assert_eq!(curve.len(), 9);
        assert!(curve[3].1 > curve[8].1, "{curve:?}");
        let q = quintile_ccc(&pred, &truth, &unc);
        assert!(q[0] > q[4], "{q:?}");
    }

    #[test]
    fn thresholds_accept_the_requested_fraction() {
        let u: Vec<f32> = (0..10).map(|i| i as f32).collect();
        assert_eq!(threshold_for_coverage(&u, 0.2), 1.0);
        assert_eq!(threshold_for_coverage(&u, 0.6), 5.0);
        assert_eq!(threshold_for_coverage(&u, 1.0), 9.0);
        let accepted = u.iter().filter(|&&x| x <= threshold_for_coverage(&u, 0.6)).count();
        assert_eq!(accepted, 6);
    }
}
