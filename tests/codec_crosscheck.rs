//! Cross-check with fastavro (`scripts/avro_crosscheck.py`), an independent Avro
//! implementation: records Rust encodes are read by fastavro, records fastavro writes are
//! decoded by Rust, in all three framings, and both sides agree on the schema fingerprints.
//! Each side prints the same JSON shape (floats as f32 bit patterns), compared field by field.

mod common;

use std::path::Path;

use common::codec::bits;

use emogate::codec::{
    decode_prediction, encode_feature_record, encode_prediction, legacy_prediction_fingerprint,
    AttributePrediction, Decision, EmotionPrediction, FeatureDecoder, FeatureRecord, Framing, RecordSchema,
};
use emogate::{Attribute, PerAttribute};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const SCRIPT: &str = "scripts/avro_crosscheck.py";
const RECORDS: usize = 30;

// ---- the JSON both sides print -----------------------------------------------------------

fn framing_fields(framing: &Framing) -> (&'static str, Option<u32>) {
    match framing {
        Framing::Raw => ("raw", None),
        Framing::SingleObject => ("single_object", None),
        Framing::Confluent { schema_id } => ("confluent", Some(*schema_id)),
    }
}

fn feature_json(r: &FeatureRecord, framing: &Framing) -> Value {
    let (framing, schema_id) = framing_fields(framing);
    json!({
        "framing": framing, "schema_id": schema_id,
        "utterance_id": r.utterance_id, "speaker_id": r.speaker_id, "source": r.source,
        "timestamp": r.timestamp_ms, "feature_set": r.feature_set, "features": bits(&r.features),
    })
}

fn attribute_json(a: &AttributePrediction) -> Value {
    json!({
        "value": a.value.to_bits(), "consensus": a.consensus.to_bits(),
        "distribution": bits(&a.distribution), "entropy": a.entropy.to_bits(),
        "uncertainty_source": a.uncertainty_source.as_str(), "accepted": a.accepted,
        "uncertainty": a.uncertainty.map(f32::to_bits),
    })
}

fn prediction_json(p: &EmotionPrediction, framing: &Framing) -> Value {
    let (framing, schema_id) = framing_fields(framing);
    let mut out = json!({
        "framing": framing, "schema_id": schema_id,
        "utterance_id": p.utterance_id, "speaker_id": p.speaker_id, "source": p.source,
        "timestamp": p.timestamp_ms, "processed_at": p.processed_at_ms,
        "model_version": p.model_version, "decision": p.decision.symbol(),
    });
    for (attribute, prediction) in p.attributes.iter() {
        out[attribute.as_str()] = attribute_json(prediction);
    }
    out
}

/// Field-by-field comparison so a failure names the file and the field.
fn assert_same_json(file: &str, got: &Value, want: &Value) {
    let (Some(got), Some(want)) = (got.as_object(), want.as_object()) else {
        panic!("{file}: not JSON objects: {got} vs {want}");
    };
    let mut keys: Vec<_> = got.keys().chain(want.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        assert_eq!(got.get(key), want.get(key), "{file}: field `{key}` differs");
    }
}

fn assert_fingerprints(report: &Value) {
    for (kind, fingerprint) in [
        ("feature", RecordSchema::FeatureRecord.fingerprint()),
        ("prediction", RecordSchema::EmotionPrediction.fingerprint()),
        ("prediction_legacy", legacy_prediction_fingerprint()),
    ] {
        let ours = hex::encode(fingerprint.to_le_bytes());
        assert_eq!(report["fingerprints"][kind].as_str(), Some(ours.as_str()), "{kind} fingerprint");
    }
}

fn run(args: &[&str]) -> Value {
    serde_json::from_str(&common::run_python(SCRIPT, args)).expect("crosscheck script prints JSON")
}

// ---- random records on the Rust side -----------------------------------------------------

fn text(rng: &mut StdRng, min_len: usize) -> String {
    let len = rng.random_range(min_len..=20);
    (0..len).map(|_| rng.random::<char>()).collect()
}

fn maybe_text(rng: &mut StdRng) -> Option<String> {
    rng.random_bool(0.7).then(|| text(rng, 0))
}

fn finite(rng: &mut StdRng) -> f32 {
    loop {
        let v = f32::from_bits(rng.random());
        if v.is_finite() {
            return v;
        }
    }
}

fn random_record(rng: &mut StdRng, dims: usize) -> FeatureRecord {
    FeatureRecord {
        utterance_id: text(rng, 1),
        speaker_id: maybe_text(rng),
        source: maybe_text(rng),
        timestamp_ms: rng.random(),
        feature_set: text(rng, 0),
        features: (0..dims).map(|_| finite(rng)).collect(),
    }
}

fn random_prediction(rng: &mut StdRng) -> EmotionPrediction {
    let attribute = |rng: &mut StdRng| AttributePrediction {
        value: finite(rng),
        consensus: finite(rng),
        distribution: std::array::from_fn(|_| finite(rng)),
        entropy: finite(rng),
        uncertainty_source: Attribute::ALL[rng.random_range(0..3)],
        accepted: rng.random(),
        uncertainty: rng.random::<bool>().then(|| finite(rng)),
    };
    EmotionPrediction {
        utterance_id: text(rng, 1),
        speaker_id: maybe_text(rng),
        source: maybe_text(rng),
        timestamp_ms: rng.random(),
        processed_at_ms: rng.random(),
        model_version: text(rng, 0),
        decision: Decision::ALL[rng.random_range(0..2)],
        attributes: PerAttribute {
            valence: attribute(rng),
            arousal: attribute(rng),
            dominance: attribute(rng),
        },
    }
}

fn framing_for(i: usize, rng: &mut StdRng) -> Framing {
    match i % 3 {
        0 => Framing::Raw,
        1 => Framing::SingleObject,
        _ => Framing::Confluent { schema_id: rng.random() },
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write temp file");
}

// ---- the two directions ------------------------------------------------------------------

#[test]
fn records_encoded_by_rust_read_identically_in_fastavro() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rng = StdRng::seed_from_u64(20_240_611);
    let mut expected = serde_json::Map::new();
    for i in 0..RECORDS {
        let dims = if i == 0 { 6373 } else { rng.random_range(0..100) };
        let (record, framing) = (random_record(&mut rng, dims), framing_for(i, &mut rng));
        let mut bytes = Vec::new();
        encode_feature_record(&record, &framing, &mut bytes);
        let name = format!("feature-{i:03}.bin");
        write_file(dir.path(), &name, &bytes);
        expected.insert(name, feature_json(&record, &framing));

        let (prediction, framing) = (random_prediction(&mut rng), framing_for(i, &mut rng));
        let mut bytes = Vec::new();
        encode_prediction(&prediction, &framing, &mut bytes);
        let name = format!("prediction-{i:03}.bin");
        write_file(dir.path(), &name, &bytes);
        expected.insert(name, prediction_json(&prediction, &framing));
    }
    assert_fingerprints(&assert_script_reads("read", dir.path(), &expected));
}

/// Runs the script's reading `mode` on `dir` and checks it read exactly `expected`; returns
/// its report.
fn assert_script_reads(mode: &str, dir: &Path, expected: &serde_json::Map<String, Value>) -> Value {
    let report = run(&[mode, dir.to_str().expect("UTF-8 temp path")]);
    let files = report["files"].as_object().expect("files object");
    assert_eq!(files.len(), expected.len());
    for (name, want) in expected {
        assert_same_json(name, &files[name], want);
    }
    report
}

#[test]
fn records_written_by_fastavro_decode_identically_in_rust() {
    const DIMS: usize = 64;
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_arg = dir.path().to_str().expect("UTF-8 temp path");
    let report = run(&["write", dir_arg, &RECORDS.to_string(), "7", &DIMS.to_string()]);
    assert_fingerprints(&report);
    let files = report["files"].as_object().expect("files object");
    assert_eq!(files.len(), 2 * RECORDS);
    let decoder = FeatureDecoder::new(DIMS);
    for (name, want) in files {
        let bytes = std::fs::read(dir.path().join(name)).expect("read fastavro output");
        let got = if name.starts_with("feature-") {
            let mut row = vec![0.0; DIMS];
            let (meta, framing) =
                decoder.decode_into(&bytes, &mut row).unwrap_or_else(|e| panic!("{name}: {e}"));
            feature_json(&FeatureRecord::from_parts(meta, row), &framing)
        } else {
            let (prediction, framing) = decode_prediction(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            prediction_json(&prediction, &framing)
        };
        assert_same_json(name, &got, want);
    }
}

// ---- schema evolution: `uncertainty` added after version 0 --------------------------------

#[test]
fn a_reader_of_the_legacy_schema_decodes_new_records_without_the_uncertainty() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rng = StdRng::seed_from_u64(20_261_203);
    let mut expected = serde_json::Map::new();
    for i in 0..RECORDS {
        let (prediction, framing) = (random_prediction(&mut rng), framing_for(i, &mut rng));
        let mut bytes = Vec::new();
        encode_prediction(&prediction, &framing, &mut bytes);
        let name = format!("prediction-{i:03}.bin");
        write_file(dir.path(), &name, &bytes);
        let mut want = prediction_json(&prediction, &framing);
        for a in Attribute::ALL {
            want[a.as_str()].as_object_mut().expect("attribute object").remove("uncertainty");
        }
        expected.insert(name, want);
    }
    assert_script_reads("read-legacy", dir.path(), &expected);
}

#[test]
fn legacy_single_object_records_decode_in_rust_with_no_uncertainty() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_arg = dir.path().to_str().expect("UTF-8 temp path");
    let report = run(&["write-legacy", dir_arg, &RECORDS.to_string(), "11"]);
    assert_fingerprints(&report);
    let files = report["files"].as_object().expect("files object");
    assert_eq!(files.len(), RECORDS);
    for (name, want) in files {
        let bytes = std::fs::read(dir.path().join(name)).expect("read fastavro output");
        let (prediction, framing) = decode_prediction(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(framing, Framing::SingleObject);
        let mut want = want.clone();
        for a in Attribute::ALL {
            assert!(prediction.attributes[a].uncertainty.is_none(), "{name}: {a}");
            want[a.as_str()]["uncertainty"] = Value::Null;
        }
        assert_same_json(name, &prediction_json(&prediction, &framing), &want);
    }
}
