//! Label arithmetic on integer votes (soft labels, consensus, disagreement) and thin
//! training-time wrappers over [`crate::uncertainty`], which owns CCC, entropy, coverage
//! curves, quintiles and thresholds for the trainer, `calibrate` and the service alike.

use crate::attribute::LIKERT_BINS;
use crate::uncertainty;

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

/// Population standard deviation of the votes (annotator disagreement).
pub fn vote_std(votes: &[u8]) -> f32 {
    let m = consensus(votes);
    (votes.iter().map(|&v| (v as f32 - m).powi(2)).sum::<f32>() / votes.len().max(1) as f32).sqrt()
}

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
    fn soft_labels_are_vote_histograms() {
        let p = soft_label(&[1, 1, 3, 7]);
        assert_eq!(p, [0.5, 0.0, 0.25, 0.0, 0.0, 0.0, 0.25]);
        assert_eq!(consensus(&[1, 1, 3, 7]), 3.0);
        assert!((uncertainty::entropy_nats(&p) - 1.0397208).abs() < 1e-6);
        assert_eq!(uncertainty::entropy_nats(&soft_label(&[4, 4, 4])), 0.0);
    }

    #[test]
    fn ccc_matches_hand_computation() {
        assert!((ccc(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]) - 1.0).abs() < 1e-12);
        // pred = truth + 1: var 2/3 each, cov 2/3, bias 1 → 2·(2/3)/(4/3 + 1) = 4/7.
        assert!((ccc(&[2.0, 3.0, 4.0], &[1.0, 2.0, 3.0]) - 4.0 / 7.0).abs() < 1e-12);
        assert!((ccc(&[3.0, 2.0, 1.0], &[1.0, 2.0, 3.0]) + 1.0).abs() < 1e-12);
        assert!(ccc(&[1.0], &[1.0]).is_nan());
    }
}
