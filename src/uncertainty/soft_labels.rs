//! Soft labels: the annotators' vote distribution over the seven Likert bins.
//!
//! The paper (§III-A) trains the emotional regressor against the *true annotator
//! distribution* instead of only the averaged (consensus) score: "the soft-labels for
//! emotional attributes are constructed by dividing the attribute space into bins, counting
//! the number of votes in each bin, creating a probability distribution for each sentence".
//! The model's softmax has [`LIKERT_BINS`] = 7 outputs, matching MSP-Podcast's 1–7 scale, so
//! every soft label here lives on those seven bins whatever scale the annotators used.

use crate::attribute::LIKERT_BINS;

/// Width of the 1–7 axis the bins cover (`7 − 1`).
const BIN_AXIS_SPAN: f64 = (LIKERT_BINS - 1) as f64;

/// The rating scale `min..=max` annotators voted on.
///
/// Fields are public so corpora with other scales can be described inline; a scale is only
/// valid when `max > min`, which [`soft_label`] and [`consensus_label`] check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LikertScale {
    pub min: u8,
    pub max: u8,
}

impl LikertScale {
    /// MSP-Podcast: 7-point scale, one bin per integer vote.
    pub const MSP_PODCAST: LikertScale = LikertScale { min: 1, max: 7 };
    /// IEMOCAP: 5-point scale, mapped onto the 7 bins (paper §V-D evaluates it cross-corpus).
    pub const IEMOCAP: LikertScale = LikertScale { min: 1, max: 5 };

    /// Maps a vote on this scale to its position on the 1–7 bin axis.
    ///
    /// `(v − min)·6` is computed before dividing so that votes landing exactly on a bin centre
    /// give an exact integer (a correctly rounded quotient of two exact values), never
    /// `2.9999999999999996`, which would leak a sliver of mass into the neighbouring bin.
    fn to_bin_axis(self, index: usize, vote: f32) -> Result<f64, SoftLabelError> {
        if self.max <= self.min {
            return Err(SoftLabelError::InvalidScale { min: self.min, max: self.max });
        }
        if !vote.is_finite() {
            return Err(SoftLabelError::NonFinite { index, value: vote });
        }
        let (min, max) = (f64::from(self.min), f64::from(self.max));
        let v = f64::from(vote);
        if v < min || v > max {
            return Err(SoftLabelError::OutOfScale { index, value: vote, min: self.min, max: self.max });
        }
        Ok(1.0 + (v - min) * BIN_AXIS_SPAN / (max - min))
    }
}

/// Why a set of votes cannot be turned into a soft or consensus label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SoftLabelError {
    /// A sentence without votes has no distribution (not even a uniform one).
    #[error("no votes: a label needs at least one annotator vote")]
    NoVotes,
    /// NaN or ±infinity among the votes.
    #[error("vote {index} is not a finite number ({value})")]
    NonFinite { index: usize, value: f32 },
    /// A vote below `min` or above `max` of its declared scale.
    #[error("vote {index} = {value} is outside the Likert scale {min}–{max}")]
    OutOfScale { index: usize, value: f32, min: u8, max: u8 },
    /// `max <= min`: the linear map onto 1–7 would divide by zero or flip the axis.
    #[error("invalid Likert scale {min}–{max}: max must be greater than min")]
    InvalidScale { min: u8, max: u8 },
}

/// The soft label of one sentence: the fraction of annotator votes in each of the 7 bins.
///
/// # Vote mapping (contract)
///
/// Bin `k` (index `k − 1`) is centred on the value `k` of the 1–7 axis.
///
/// 1. Every vote `v` on `scale` is mapped linearly onto the 1–7 axis:
///    `v' = 1 + (v − min)·6 / (max − min)`. On [`LikertScale::MSP_PODCAST`] this is the
///    identity, so an integer vote `k` lands in bin `k`.
/// 2. A mapped vote on a bin centre puts its whole unit of mass in that bin. A mapped vote
///    between two centres `k < v' < k + 1` splits its mass linearly: `k + 1 − v'` to bin `k`
///    and `v' − k` to bin `k + 1`. Example: an IEMOCAP (1–5) vote of 2 maps to 2.5 and gives
///    half a vote to bin 2 and half to bin 3; a vote of 3 maps to 4 and lands in bin 4.
/// 3. The bin masses are divided by the number of votes, so the label sums to 1 (up to `f32`
///    rounding) and every entry is in `[0, 1]`.
///
/// Because the split is linear, the mean of the soft label, `Σ k·p_k`, equals the
/// [`consensus_label`] of the same votes: the two training targets of Eq. 3 agree.
///
/// # Errors
///
/// [`SoftLabelError::NoVotes`] for an empty slice; [`SoftLabelError::NonFinite`] or
/// [`SoftLabelError::OutOfScale`] for the first bad vote; [`SoftLabelError::InvalidScale`]
/// when `scale.max <= scale.min`.
pub fn soft_label(votes: &[f32], scale: LikertScale) -> Result<[f32; LIKERT_BINS], SoftLabelError> {
    if votes.is_empty() {
        return Err(SoftLabelError::NoVotes);
    }
    let mut mass = [0.0f64; LIKERT_BINS];
    for (index, &vote) in votes.iter().enumerate() {
        // Offset from bin 1's centre, in [0, 6]; the clamp only guards the indexing below.
        let offset = (scale.to_bin_axis(index, vote)? - 1.0).clamp(0.0, BIN_AXIS_SPAN);
        let lower = offset.floor();
        let upper_share = offset - lower;
        let bin = lower as usize;
        mass[bin] += 1.0 - upper_share;
        if upper_share > 0.0 {
            mass[bin + 1] += upper_share;
        }
    }
    let n = votes.len() as f64;
    Ok(mass.map(|m| (m / n) as f32))
}

/// The consensus label of one sentence: the mean vote, mapped onto the 1–7 axis.
///
/// This is the paper's hard target (the `(1 − CCC)_consensus` term of Eq. 3). The vote
/// mapping is the one documented on [`soft_label`]; as the map is linear it does not matter
/// whether votes are averaged before or after mapping. Computed in `f64`.
///
/// # Errors
///
/// The same as [`soft_label`].
pub fn consensus_label(votes: &[f32], scale: LikertScale) -> Result<f32, SoftLabelError> {
    if votes.is_empty() {
        return Err(SoftLabelError::NoVotes);
    }
    let mut sum = 0.0f64;
    for (index, &vote) in votes.iter().enumerate() {
        sum += scale.to_bin_axis(index, vote)?;
    }
    Ok((sum / votes.len() as f64) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_label(got: [f32; LIKERT_BINS], want: [f32; LIKERT_BINS]) {
        for (k, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() < 1e-6, "bin {}: got {g}, want {w} (label {got:?})", k + 1);
        }
    }

    #[test]
    fn msp_podcast_votes_are_counted_per_bin() {
        let label = soft_label(&[1.0, 1.0, 2.0, 7.0, 7.0], LikertScale::MSP_PODCAST).unwrap();
        assert_label(label, [0.4, 0.2, 0.0, 0.0, 0.0, 0.0, 0.4]);
    }

    #[test]
    fn unanimous_vote_is_one_hot() {
        let label = soft_label(&[4.0; 6], LikertScale::MSP_PODCAST).unwrap();
        assert_eq!(label, [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn iemocap_votes_map_linearly_and_split_between_bins() {
        // 2 on 1–5 is 2.5 on 1–7: half a vote to bin 2, half to bin 3.
        let two = soft_label(&[2.0], LikertScale::IEMOCAP).unwrap();
        assert_eq!(two, [0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0]);
        // 1 → 1, 2 → 2.5, 3 → 4, 4 → 5.5, 5 → 7.
        let all = soft_label(&[1.0, 2.0, 3.0, 4.0, 5.0], LikertScale::IEMOCAP).unwrap();
        assert_label(all, [0.2, 0.1, 0.1, 0.2, 0.1, 0.1, 0.2]);
    }

    #[test]
    fn fractional_vote_splits_by_distance() {
        let label = soft_label(&[3.25], LikertScale::MSP_PODCAST).unwrap();
        assert_eq!(label, [0.0, 0.0, 0.75, 0.25, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn other_scales_with_exact_bin_centres_stay_one_hot() {
        // 0–100 slider: 50 is the middle of the axis, bin 4, with no sliver in bin 3 or 5.
        let scale = LikertScale { min: 0, max: 100 };
        assert_eq!(soft_label(&[50.0], scale).unwrap(), [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(soft_label(&[100.0], scale).unwrap(), [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn consensus_is_the_mapped_mean() {
        assert!(
            (consensus_label(&[1.0, 1.0, 2.0, 7.0, 7.0], LikertScale::MSP_PODCAST).unwrap() - 3.6).abs()
                < 1e-6
        );
        assert_eq!(consensus_label(&[2.0, 4.0], LikertScale::IEMOCAP).unwrap(), 4.0);
        assert_eq!(consensus_label(&[5.0], LikertScale::IEMOCAP).unwrap(), 7.0);
    }

    #[test]
    fn soft_label_mean_equals_consensus() {
        let votes = [1.0, 2.0, 2.0, 3.0, 5.0, 4.0];
        let label = soft_label(&votes, LikertScale::IEMOCAP).unwrap();
        let mean: f32 = label.iter().enumerate().map(|(k, p)| (k + 1) as f32 * p).sum();
        let consensus = consensus_label(&votes, LikertScale::IEMOCAP).unwrap();
        assert!((mean - consensus).abs() < 1e-5, "{mean} vs {consensus}");
    }

    #[test]
    fn bad_votes_are_typed_errors() {
        let msp = LikertScale::MSP_PODCAST;
        assert_eq!(soft_label(&[], msp), Err(SoftLabelError::NoVotes));
        assert_eq!(consensus_label(&[], msp), Err(SoftLabelError::NoVotes));
        assert_eq!(
            soft_label(&[3.0, 0.0], msp),
            Err(SoftLabelError::OutOfScale { index: 1, value: 0.0, min: 1, max: 7 })
        );
        assert_eq!(
            consensus_label(&[7.5], msp),
            Err(SoftLabelError::OutOfScale { index: 0, value: 7.5, min: 1, max: 7 })
        );
        assert_eq!(
            soft_label(&[6.0], LikertScale::IEMOCAP),
            Err(SoftLabelError::OutOfScale { index: 0, value: 6.0, min: 1, max: 5 })
        );
        assert!(matches!(soft_label(&[f32::NAN], msp), Err(SoftLabelError::NonFinite { index: 0, .. })));
        assert_eq!(
            consensus_label(&[2.0, f32::INFINITY], msp),
            Err(SoftLabelError::NonFinite { index: 1, value: f32::INFINITY })
        );
    }

    #[test]
    fn degenerate_scales_are_rejected() {
        for scale in [LikertScale { min: 3, max: 3 }, LikertScale { min: 5, max: 1 }] {
            let want = SoftLabelError::InvalidScale { min: scale.min, max: scale.max };
            assert_eq!(soft_label(&[3.0], scale), Err(want.clone()));
            assert_eq!(consensus_label(&[3.0], scale), Err(want));
        }
    }
}
