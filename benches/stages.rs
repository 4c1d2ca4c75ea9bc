//! Per-record cost of the infer stage's steps after the model and of the archive's Parquet
//! writer: the reject policy turning a model answer into an output record, and encoding a
//! batch of archived predictions as a Parquet file (Arrow rows + zstd), per record. Decoding
//! and Avro encoding are in `benches/decode.rs`. Results go in docs/benchmarks.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use emogate::archive::{encode_parquet, ParquetSettings, RowBuffer};
use emogate::codec::RecordMeta;
use emogate::config::PolicyConfig;
use emogate::model::{AttributeOutput, Manifest, Prediction};
use emogate::policy::RejectPolicy;
use emogate::PerAttribute;

mod common;

/// Rows per archived file in the Parquet bench (a busy partition's roll).
const ROWS: usize = 4096;

fn policy(c: &mut Criterion) {
    let manifest = Manifest::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fixture"))
        .expect("fixture manifest");
    let config = PolicyConfig { thresholds: Some(PerAttribute::from_fn(|_| 1.6)), ..PolicyConfig::default() };
    let policy = RejectPolicy::new(&config, &manifest).expect("policy");
    let p = common::prediction();
    let meta = RecordMeta {
        utterance_id: p.utterance_id.clone(),
        speaker_id: p.speaker_id.clone(),
        source: p.source.clone(),
        timestamp_ms: p.timestamp_ms,
        feature_set: "ComParE_2016".into(),
    };
    let answer: Prediction = PerAttribute::from_fn(|a| {
        let x = &p.attributes[a];
        AttributeOutput {
            value: x.value,
            consensus: x.consensus,
            distribution: x.distribution,
            entropy: x.entropy,
        }
    });
    let mut group = c.benchmark_group("policy");
    group.throughput(Throughput::Elements(1));
    group.bench_function("build_output_record", |b| {
        b.iter(|| policy.build(black_box(&meta), black_box(&answer), 1_731_000_000_250).decision)
    });
    group.finish();
}

fn parquet(c: &mut Criterion) {
    let p = common::prediction();
    let mut rows = RowBuffer::new("emotion.accepted", 0);
    for offset in 0..ROWS as i64 {
        rows.push(&p, offset).expect("row");
    }
    let finished = rows.finish().expect("arrow").expect("rows");
    let settings = ParquetSettings::default();
    let mut group = c.benchmark_group("parquet");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("encode_4096_rows_zstd3", |b| {
        b.iter(|| encode_parquet(black_box(&finished), &settings).expect("parquet").len())
    });
    group.bench_function("arrow_rows_4096", |b| {
        b.iter(|| {
            let mut rows = RowBuffer::new("emotion.accepted", 0);
            for offset in 0..ROWS as i64 {
                rows.push(black_box(&p), offset).expect("row");
            }
            rows.finish().expect("arrow").map(|r| r.batch.num_rows())
        })
    });
    group.finish();
}

criterion_group!(benches, policy, parquet);
criterion_main!(benches);
