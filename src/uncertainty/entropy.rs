//! Entropy of a predicted soft label: the model's uncertainty score.
//!
//! The paper (§III-B) averages the soft-label distributions of several Monte Carlo samples
//! of the VAE's latent space and takes "the entropy of the predicted distribution to quantify
//! its uncertainty": a sharp distribution (low entropy) is a confident prediction. emogate
//! gates on this number, so it must be well defined for every model output.

use crate::attribute::LIKERT_BINS;

/// Largest possible entropy of a 7-bin distribution, `ln 7` nats (the uniform distribution).
pub const MAX_ENTROPY: f32 = 1.945_910_1;

/// Shannon entropy `−Σ p·ln p` in nats, with `0·ln 0 = 0`.
///
/// # Behaviour on imperfect input
///
/// * **Slightly unnormalised input** (softmax outputs summing to `1 ± 1e-6`, or their MC
///   average): the entropy is computed on the values *as given*, without renormalising,
///   because renormalising would change the number the model actually produced and would
///   hide a broken output layer behind a plausible score. The sum is done in `f64`, and the
///   result is clamped into `[0, ln len]` (`[0, MAX_ENTROPY]` for 7 bins) only so that
///   rounding near the ends cannot report `−1e-8` for a one-hot output or a value just above
///   `ln 7` for a near-uniform one. Grossly unnormalised input is not detected here; the
///   model module checks its outputs.
/// * **Not a distribution** (an empty slice, a negative entry, NaN or ±infinity): returns
///   `NaN`. A NaN uncertainty fails every `u <= threshold` comparison, so the gate rejects
///   such a prediction instead of accepting it with a made-up score, and the coverage
///   functions in this module report it as a typed error.
pub fn entropy_nats(p: &[f32]) -> f32 {
    if p.is_empty() || p.iter().any(|&x| !x.is_finite() || x < 0.0) {
        return f32::NAN;
    }
    let h: f64 = p.iter().map(|&x| f64::from(x)).filter(|&x| x > 0.0).map(|x| -x * x.ln()).sum();
    let max = (p.len() as f64).ln();
    // `as f32` rounds monotonically, so a 7-bin result never exceeds MAX_ENTROPY.
    h.clamp(0.0, max) as f32
}

/// Compile-time reminder that [`MAX_ENTROPY`] is tied to the number of bins.
const _: () = assert!(LIKERT_BINS == 7, "MAX_ENTROPY is ln 7; update it with LIKERT_BINS");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_entropy_is_ln_7_in_f32() {
        assert_eq!(MAX_ENTROPY, 7.0f64.ln() as f32);
    }

    #[test]
    fn uniform_has_max_entropy_and_one_hot_has_none() {
        assert_eq!(entropy_nats(&[1.0 / 7.0; 7]), MAX_ENTROPY);
        assert_eq!(entropy_nats(&[0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn hand_computed_values() {
        // Two equal bins: ln 2.
        let two = entropy_nats(&[0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert!((f64::from(two) - 2.0f64.ln()).abs() < 1e-7);
        // [.4, .2, 0, 0, 0, 0, .4]: −(2·0.4·ln 0.4 + 0.2·ln 0.2) = 1.0549201679861442.
        let h = entropy_nats(&[0.4, 0.2, 0.0, 0.0, 0.0, 0.0, 0.4]);
        assert!((f64::from(h) - 1.054_920_167_986_144_2).abs() < 1e-6, "{h}");
    }

    #[test]
    fn rounding_is_clamped_into_range() {
        // Sums to 1 + 7e-7: unclamped entropy would exceed ln 7.
        let over = entropy_nats(&[(1.0 + 1e-6) / 7.0; 7]);
        assert_eq!(over, MAX_ENTROPY);
        // One-hot above 1: −1.000001·ln 1.000001 < 0 is clamped to 0.
        assert_eq!(entropy_nats(&[1.000_001, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn unnormalised_input_is_not_renormalised() {
        // As given: −2·0.3·ln 0.3 ≈ 0.7224. Renormalised to [0.5, 0.5] it would be ln 2 ≈ 0.6931.
        let h = f64::from(entropy_nats(&[0.3, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0]));
        let want = -2.0 * 0.3f64 * 0.3f64.ln();
        assert!((h - want).abs() < 1e-6, "{h} vs {want}");
        assert!((h - 2.0f64.ln()).abs() > 0.02);
    }

    #[test]
    fn non_distributions_give_nan() {
        assert!(entropy_nats(&[]).is_nan());
        assert!(entropy_nats(&[0.5, f32::NAN, 0.5]).is_nan());
        assert!(entropy_nats(&[0.5, f32::INFINITY]).is_nan());
        assert!(entropy_nats(&[1.1, -0.1]).is_nan());
    }

    #[test]
    fn negative_zero_counts_as_zero() {
        assert_eq!(entropy_nats(&[-0.0, 1.0]), 0.0);
    }
}
