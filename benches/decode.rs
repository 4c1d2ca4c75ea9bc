//! Avro codec throughput: the hand-written FeatureRecord decoder (the infer stage's hot path)
//! against apache-avro's generic `Value` decoder on the same 6,373-float message, and the
//! prediction encoder. Throughput is in records; a plain copy of the message is measured as
//! the floor. Results go in docs/benchmarks.md.

use std::hint::black_box;

use apache_avro::from_avro_datum;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use emogate::codec::{
    encode_feature_record, encode_prediction, FeatureDecoder, FeatureRecord, Framing, RecordSchema,
};

mod common;
use common::prediction;

const DIMS: usize = 6373;

fn record() -> FeatureRecord {
    FeatureRecord {
        utterance_id: "MSP-PODCAST_0153_0317".into(),
        speaker_id: Some("spk-0153".into()),
        source: Some("opensmile-3.0".into()),
        timestamp_ms: 1_731_000_000_000,
        feature_set: "ComParE_2016".into(),
        features: (0..DIMS).map(|i| (i as f32 * 0.37).sin() * 10.0).collect(),
    }
}

fn decode(c: &mut Criterion) {
    let mut framed = Vec::new();
    encode_feature_record(&record(), &Framing::SingleObject, &mut framed);
    let mut raw = Vec::new();
    encode_feature_record(&record(), &Framing::Raw, &mut raw);
    let decoder = FeatureDecoder::new(DIMS);
    let mut row = vec![0.0f32; DIMS];

    let mut group = c.benchmark_group("feature_record_decode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("fast_decode_into", |b| {
        b.iter(|| decoder.decode_into(black_box(&framed), &mut row).map(|(meta, _)| meta.timestamp_ms))
    });
    group.bench_function("apache_avro_from_avro_datum", |b| {
        let schema = RecordSchema::FeatureRecord.schema();
        b.iter(|| from_avro_datum(schema, &mut black_box(&raw[..]), None).is_ok())
    });
    group.bench_function("memcpy_reference", |b| {
        // Not a decoder: copying the same message once, the floor the fast path is compared to.
        let mut copy = vec![0u8; framed.len()];
        b.iter(|| copy.copy_from_slice(black_box(&framed)))
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let prediction = prediction();
    let mut out = Vec::with_capacity(256);
    let mut group = c.benchmark_group("prediction_encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_prediction", |b| {
        b.iter(|| {
            out.clear();
            encode_prediction(black_box(&prediction), &Framing::SingleObject, &mut out);
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
