//! Synthetic feature records for the demo and the load generator, and deliberately broken
//! messages that the infer stage must dead-letter.
//!
//! openSMILE functionals span many orders of magnitude (energies near 0, spectral slopes in
//! the hundreds, F0 means in Hz), so each dimension gets its own seeded location and
//! log-normal scale, and every utterance is a draw around them driven by three latent
//! "emotion" factors plus noise. These vectors only look like features — they carry no
//! labels; the trained model's synthetic corpus lives in `emogate synth`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use crate::codec::{encode_feature_record, encode_prediction, FeatureRecord, Framing};

/// Seed of the per-dimension profile shared by all generators.
const PROFILE_SEED: u64 = 0x0065_6d6f_6761_7465; // "emogate"

/// Seeded generator of plausible feature vectors of a fixed dimension.
#[derive(Debug, Clone)]
pub struct SyntheticFeatures {
    dims: usize,
    location: Vec<f32>,
    scale: Vec<f32>,
    loading: Vec<[f32; 3]>,
    rng: StdRng,
    next: u64,
    prefix: String,
}

impl SyntheticFeatures {
    /// Utterances drawn with `seed`; the per-dimension profile (location, scale, loadings) is
    /// the same for every seed, as the feature space is the same for every stream.
    pub fn new(dims: usize, seed: u64) -> SyntheticFeatures {
        let mut rng = StdRng::seed_from_u64(PROFILE_SEED);
        let unit = Normal::new(0.0f32, 1.0).expect("unit normal");
        let location =
            (0..dims).map(|_| unit.sample(&mut rng) * 10f32.powf(rng.random_range(-2.0..2.5))).collect();
        let scale = (0..dims).map(|_| (unit.sample(&mut rng) * 1.5).exp() * 0.1).collect();
        let loading = (0..dims)
            .map(|_| [unit.sample(&mut rng), unit.sample(&mut rng), unit.sample(&mut rng)])
            .collect();
        let rng = StdRng::seed_from_u64(seed);
        SyntheticFeatures { dims, location, scale, loading, rng, next: 0, prefix: format!("synth-{seed}") }
    }

    /// The next utterance's features.
    pub fn features(&mut self) -> Vec<f32> {
        let unit = Normal::new(0.0f32, 1.0).expect("unit normal");
        let latent = [unit.sample(&mut self.rng), unit.sample(&mut self.rng), unit.sample(&mut self.rng)];
        (0..self.dims)
            .map(|i| {
                let l = &self.loading[i];
                let z = 0.6 * (l[0] * latent[0] + l[1] * latent[1] + l[2] * latent[2])
                    + unit.sample(&mut self.rng);
                self.location[i] + self.scale[i] * z
            })
            .collect()
    }

    /// The next complete record (`utterance_id` = `synth-{seed}-{n}`).
    pub fn record(&mut self, timestamp_ms: i64) -> FeatureRecord {
        let n = self.next;
        self.next += 1;
        FeatureRecord {
            utterance_id: format!("{}-{n}", self.prefix),
            speaker_id: Some(format!("spk{}", n % 50)),
            source: Some("emogate-synthetic".into()),
            timestamp_ms,
            feature_set: "ComParE_2016".into(),
            features: self.features(),
        }
    }

    /// The next record encoded with `framing`.
    pub fn encoded(&mut self, timestamp_ms: i64, framing: &Framing) -> (String, Vec<u8>) {
        let record = self.record(timestamp_ms);
        let mut out = Vec::with_capacity(self.dims * 4 + 96);
        encode_feature_record(&record, framing, &mut out);
        (record.utterance_id, out)
    }
}

/// A broken message and the dead-letter reason it must get.
#[derive(Debug, Clone, PartialEq)]
pub struct BadMessage {
    pub payload: Vec<u8>,
    pub expected_reason: &'static str,
}

/// One message per kind of bad input the issue names: malformed bytes, wrong dimension, NaN,
/// wrong schema (a prediction sent to the feature topic), plus a truncated record.
pub fn bad_messages(dims: usize, seed: u64) -> Vec<BadMessage> {
    let mut synth = SyntheticFeatures::new(dims, seed);
    let mut encode = |mutate: &dyn Fn(&mut FeatureRecord)| {
        let mut record = synth.record(0);
        mutate(&mut record);
        let mut out = Vec::new();
        encode_feature_record(&record, &Framing::SingleObject, &mut out);
        out
    };
    let wrong_dimension = encode(&|r| r.features.truncate(dims.saturating_sub(1).max(1)));
    let other_extractor = encode(&|r| r.feature_set = "eGeMAPSv02".into());
    let nan = encode(&|r| r.features[dims / 2] = f32::NAN);
    let mut truncated = encode(&|_| {});
    truncated.truncate(truncated.len() / 2);
    let mut wrong_schema = Vec::new();
    encode_prediction(&sample_prediction(), &Framing::SingleObject, &mut wrong_schema);
    vec![
        BadMessage { payload: b"\x03not avro at all".to_vec(), expected_reason: "malformed" },
        BadMessage { payload: wrong_dimension, expected_reason: "wrong_dimension" },
        BadMessage { payload: nan, expected_reason: "non_finite" },
        BadMessage { payload: wrong_schema, expected_reason: "unknown_schema" },
        BadMessage { payload: truncated, expected_reason: "truncated" },
        BadMessage { payload: other_extractor, expected_reason: "feature_set_mismatch" },
    ]
}

fn sample_prediction() -> crate::codec::EmotionPrediction {
    use crate::attribute::PerAttribute;
    use crate::codec::{AttributePrediction, Decision, EmotionPrediction};
    EmotionPrediction {
        utterance_id: "not-a-feature-record".into(),
        speaker_id: None,
        source: None,
        timestamp_ms: 0,
        processed_at_ms: 0,
        model_version: "x@1".into(),
        decision: Decision::Accepted,
        attributes: PerAttribute::from_fn(|a| AttributePrediction {
            value: 4.0,
            consensus: 4.0,
            distribution: [1.0 / 7.0; 7],
            entropy: 1.0,
            uncertainty_source: a,
            accepted: true,
            uncertainty: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::FeatureDecoder;

    #[test]
    fn records_decode_and_are_reproducible() {
        let mut a = SyntheticFeatures::new(64, 7);
        let mut b = SyntheticFeatures::new(64, 7);
        let (id, bytes) = a.encoded(5, &Framing::SingleObject);
        assert_eq!(b.encoded(5, &Framing::SingleObject), (id.clone(), bytes.clone()));
        let record = FeatureDecoder::new(64).decode(&bytes).unwrap();
        assert_eq!(record.utterance_id, id);
        assert!(record.features.iter().all(|x| x.is_finite()));
        let spread = record.features.iter().map(|x| x.abs()).fold(0.0f32, f32::max)
            / record.features.iter().map(|x| x.abs()).fold(f32::INFINITY, f32::min).max(1e-9);
        assert!(spread > 100.0, "dimensions should span orders of magnitude, got {spread}");
        assert_ne!(a.encoded(5, &Framing::Raw).0, id, "ids are unique");
    }

    #[test]
    fn bad_messages_fail_with_their_reason() {
        // The infer stage's decoder checks the model's feature set; so does this one.
        let decoder = FeatureDecoder::new(32).with_feature_set("ComParE_2016");
        for bad in bad_messages(32, 1) {
            let err = decoder.decode(&bad.payload).unwrap_err();
            assert_eq!(err.reason(), bad.expected_reason, "{err}");
        }
    }
}
