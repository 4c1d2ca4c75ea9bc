//! The trainer's label arithmetic on a corpus's raw integer votes: the soft-label target
//! ([`vote_histogram`]), the consensus target ([`vote_mean`]) and annotator disagreement
//! ([`vote_std`]). [`crate::train::corpus::Corpus::labels`] derives every training and
//! evaluation label through these.
//!
//! # Relation to [`crate::uncertainty::soft_label`] and [`crate::uncertainty::consensus_label`]
//!
//! The `uncertainty` functions are the paper's labels for votes on any declared Likert scale;
//! these are the trainer's, on the corpus's own scale. On a 7-point corpus (every vote in
//! `1..=7`, at least one vote) — the only kind the trainer trains on (`Prepared::new` refuses
//! others) — they give the **same bits**:
//!
//! * `vote_histogram(v) == soft_label(v as f32, LikertScale::MSP_PODCAST)`: on the 1–7 scale
//!   every vote lands on a bin centre, so both count whole votes; the counts are exact in `f32`
//!   and `f64`, and `count / n` rounded once to `f32` equals it rounded to `f64` and then to
//!   `f32` (53 ≥ 2·24 + 2 bits, so double rounding of a quotient is innocuous);
//! * `vote_mean(v) == consensus_label(v as f32, LikertScale::MSP_PODCAST)`, for the same reason
//!   (integer sums are exact below 2²⁴ votes).
//!
//! They differ, on purpose, where the committed results depend on the trainer's behaviour:
//!
//! * **Other scales.** `soft_label` maps a vote on a 1–5 scale onto 1–7 and may split it
//!   between two bins; `vote_histogram` puts vote `k` in bin `k` (a 5-point corpus fills bins
//!   1–5) and `vote_mean` is the mean on the corpus's scale. `emogate evaluate` scores the
//!   cross-corpus (IEMOCAP-style, 5-point) split against these labels, as in the documented run
//!   (`docs/results/`).
//! * **No votes.** An empty slice is a histogram of zeros and a NaN mean here (unlabeled
//!   utterances are never used as targets), `SoftLabelError::NoVotes` there.
//! * **Votes outside `1..=7`.** Left out of the histogram (and of its normaliser) here; a
//!   typed error there. Corpus loading already refuses them (`Corpus::validate`).
//!
//! The test `agrees_bit_for_bit_with_the_uncertainty_labels_on_7_point_votes` pins this.

use crate::attribute::LIKERT_BINS;

/// Soft-label target: the histogram of the votes over the `LIKERT_BINS` bins, normalised to 1.
/// Votes are 1-based Likert points on the corpus's own scale (vote `k` counts in bin `k`; a
/// 5-point scale fills the first five bins); votes outside `1..=LIKERT_BINS` are left out, and
/// no (valid) votes give all zeros. See the module docs for how this relates to
/// [`crate::uncertainty::soft_label`].
pub fn vote_histogram(votes: &[u8]) -> [f32; LIKERT_BINS] {
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

/// Consensus target: the mean vote on the corpus's scale (MSP-Podcast's consensus for
/// attributes); NaN without votes.
pub fn vote_mean(votes: &[u8]) -> f32 {
    if votes.is_empty() {
        return f32::NAN;
    }
    votes.iter().map(|&v| v as f32).sum::<f32>() / votes.len() as f32
}

/// Population standard deviation of the votes (annotator disagreement).
pub fn vote_std(votes: &[u8]) -> f32 {
    let m = vote_mean(votes);
    (votes.iter().map(|&v| (v as f32 - m).powi(2)).sum::<f32>() / votes.len().max(1) as f32).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uncertainty::{self, consensus_label, soft_label, LikertScale, SoftLabelError};

    #[test]
    fn soft_labels_are_vote_histograms() {
        let p = vote_histogram(&[1, 1, 3, 7]);
        assert_eq!(p, [0.5, 0.0, 0.25, 0.0, 0.0, 0.0, 0.25]);
        assert_eq!(vote_mean(&[1, 1, 3, 7]), 3.0);
        assert!((uncertainty::entropy_nats(&p) - 1.0397208).abs() < 1e-6);
        assert_eq!(uncertainty::entropy_nats(&vote_histogram(&[4, 4, 4])), 0.0);
    }

    fn bits<const N: usize>(x: [f32; N]) -> [u32; N] {
        x.map(f32::to_bits)
    }

    fn assert_same_bits(votes: &[u8]) {
        let as_f32: Vec<f32> = votes.iter().map(|&v| f32::from(v)).collect();
        let msp = LikertScale::MSP_PODCAST;
        assert_eq!(bits(vote_histogram(votes)), bits(soft_label(&as_f32, msp).unwrap()), "{votes:?}");
        assert_eq!(vote_mean(votes).to_bits(), consensus_label(&as_f32, msp).unwrap().to_bits(), "{votes:?}");
    }

    #[test]
    fn agrees_bit_for_bit_with_the_uncertainty_labels_on_7_point_votes() {
        // Every vote multiset of up to four votes (as sequences), then long pseudo-random ones
        // (odd counts such as 3, 7 or 13 give quotients that are not exact in binary).
        for len in 1..=4u32 {
            for code in 0..7u32.pow(len) {
                let votes: Vec<u8> = (0..len).map(|k| (code / 7u32.pow(k) % 7) as u8 + 1).collect();
                assert_same_bits(&votes);
            }
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 5..=60 {
            for _ in 0..50 {
                let votes: Vec<u8> = (0..len)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        (state >> 33) as u8 % 7 + 1
                    })
                    .collect();
                assert_same_bits(&votes);
            }
        }
    }

    #[test]
    fn differs_from_the_uncertainty_labels_off_the_7_point_scale_and_without_votes() {
        // A 5-point vote of 2: bin 2 here; 2.5 on the 1–7 axis there, split between bins 2 and 3.
        assert_eq!(vote_histogram(&[2]), [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(soft_label(&[2.0], LikertScale::IEMOCAP).unwrap(), [0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(vote_mean(&[5, 5]), 5.0);
        assert_eq!(consensus_label(&[5.0, 5.0], LikertScale::IEMOCAP).unwrap(), 7.0);
        // No votes.
        assert_eq!(vote_histogram(&[]), [0.0; LIKERT_BINS]);
        assert!(vote_mean(&[]).is_nan());
        assert_eq!(soft_label(&[], LikertScale::MSP_PODCAST), Err(SoftLabelError::NoVotes));
        // Out-of-range votes are left out here, an error there.
        assert_eq!(vote_histogram(&[0, 4, 9]), [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        assert!(soft_label(&[0.0, 4.0], LikertScale::MSP_PODCAST).is_err());
    }
}
