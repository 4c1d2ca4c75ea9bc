//! Writes the seed corpora under `fuzz/corpus/<target>/` (run once, committed; rerun after a
//! schema change: `cargo run --release --bin seeds` in `fuzz/`). Valid inputs of every kind the
//! targets parse, so the fuzzer starts from the real formats instead of from nothing.
use std::path::Path;

use emogate::codec::{
    encode_feature_record, encode_prediction, AttributePrediction, Decision, EmotionPrediction,
    FeatureRecord, Framing,
};
use emogate::PerAttribute;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let framings = [
        ("raw", Framing::Raw),
        ("single_object", Framing::SingleObject),
        ("confluent", Framing::Confluent { schema_id: 42 }),
    ];
    let record = FeatureRecord {
        utterance_id: "utt-1".into(),
        speaker_id: Some("spk-1".into()),
        source: None,
        timestamp_ms: 1_700_000_000_000,
        feature_set: "ComParE_2016".into(),
        features: vec![0.0, 1.5, -2.25, 3.0e-5, 1.0e6, -0.5, 7.0, 0.125],
    };
    let prediction = EmotionPrediction {
        utterance_id: "utt-1".into(),
        speaker_id: None,
        source: Some("podcast-1".into()),
        timestamp_ms: 1_700_000_000_000,
        processed_at_ms: 1_700_000_000_500,
        model_version: "emogate-vae-er@2".into(),
        decision: Decision::Rejected,
        attributes: PerAttribute::from_fn(|a| AttributePrediction {
            value: 4.5,
            consensus: 4.25,
            distribution: [0.05, 0.1, 0.15, 0.4, 0.15, 0.1, 0.05],
            entropy: 1.7,
            uncertainty_source: a,
            accepted: a != emogate::Attribute::Arousal,
            uncertainty: Some(0.3),
        }),
    };
    for (name, framing) in framings {
        let mut bytes = Vec::new();
        encode_feature_record(&record, &framing, &mut bytes);
        write("feature_decoder", name, &bytes);
        bytes.clear();
        encode_prediction(&prediction, &framing, &mut bytes);
        write("prediction_decoder", name, &bytes);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = std::fs::read_to_string(repo.join("deploy/emogate.toml")).unwrap();
    write("config", "deploy_emogate_toml", config.as_bytes());
    write(
        "config",
        "overrides",
        b"[batch]\nmax_records = 16\n\0EMOGATE_POLICY__COVERAGE=0.7\nEMOGATE_DELIVERY__MODE=at-least-once\n",
    );
    let manifest = std::fs::read(repo.join("models/fixture/manifest.json")).unwrap();
    write("manifest", "fixture", &manifest);
}
