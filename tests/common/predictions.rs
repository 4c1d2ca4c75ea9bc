//! Sample predictions: a deterministic family indexed by a seed, and their wire form.

use emogate::attribute::{Attribute, PerAttribute, LIKERT_BINS};
use emogate::codec::{AttributePrediction, Decision, EmotionPrediction, Framing};

/// 2023-11-14T22:13:20Z.
pub const T0_MS: i64 = 1_700_000_000_000;

/// A prediction with values derived from `seed`, processed at `processed_at_ms`. Optional
/// fields, decisions, sources and floats (including non-round ones) vary with the seed.
pub fn prediction(seed: u64, processed_at_ms: i64) -> EmotionPrediction {
    let f = |k: u64| {
        let x = (seed.wrapping_mul(2_654_435_761).wrapping_add(k * 40_503)) % 1_000_003;
        1.0 + 6.0 * (x as f32 / 1_000_003.0)
    };
    EmotionPrediction {
        utterance_id: format!("utt-{seed:06}"),
        speaker_id: (seed % 3 != 0).then(|| format!("spk-{}", seed % 7)),
        source: (seed % 4 == 1).then(|| "msp-podcast".to_string()),
        timestamp_ms: processed_at_ms - 1_500 - (seed as i64 % 997),
        processed_at_ms,
        model_version: "vae-er@1.0.0".to_string(),
        decision: if seed % 5 < 3 { Decision::Accepted } else { Decision::Rejected },
        attributes: PerAttribute::from_fn(|a| {
            let k = a.index() as u64 * 100;
            let mut distribution = [0.0f32; LIKERT_BINS];
            for (b, d) in distribution.iter_mut().enumerate() {
                *d = f(k + 10 + b as u64) / 42.0;
            }
            AttributePrediction {
                value: f(k + 1),
                consensus: f(k + 2),
                distribution,
                entropy: f(k + 3) / 3.6,
                uncertainty_source: Attribute::ALL[((seed + k / 100) % 3) as usize],
                accepted: (seed + k / 100) % 4 != 0,
                // Both union branches: the archive keeps a missing score as null.
                uncertainty: ((seed + k / 100) % 3 != 0).then(|| f(k + 4) - 2.0),
            }
        }),
    }
}

/// `p` in single-object framing, as the infer stage produces it.
pub fn encode(p: &EmotionPrediction) -> Vec<u8> {
    super::codec::encoded_prediction(p, Framing::SingleObject)
}
