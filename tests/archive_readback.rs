//! The archive read back by independent readers (pyarrow, DuckDB, pandas): every column of
//! every row equals what was written, files sit in the right hive partition under their
//! deterministic names, are zstd-compressed with statistics, and no temporary file is left.

mod archive_support;
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use archive_support::{expected_row, rows_without_partition_columns};
use common::archive::readback;
use common::predictions::{encode, prediction, T0_MS};
use emogate::archive::{
    ArchiveCounters, Archiver, FileKey, HourPartition, LocalFsSink, ParquetSettings, RollPolicy, RollReason,
};
use serde_json::{json, Value};

const HOUR_MS: i64 = 3_600_000;

/// One partition's input: (offset, prediction). Offsets have gaps (as transaction markers make),
/// and `processed_at` crosses an hour boundary after `cross_at` records.
fn partition_input(seed0: u64, n: u64, cross_at: u64) -> Vec<(i64, emogate::codec::EmotionPrediction)> {
    // The hour boundary after T0 (22:13:20) is 23:00:00.
    let boundary = (T0_MS / HOUR_MS + 1) * HOUR_MS;
    (0..n)
        .map(|i| {
            let processed_at = if i < cross_at {
                boundary - 1_000 * (cross_at - i) as i64
            } else {
                boundary + 250 * i as i64
            };
            (i as i64 * 2 + (i as i64 / 7), prediction(seed0 + i, processed_at))
        })
        .collect()
}

#[test]
fn every_column_reads_back_in_pyarrow_duckdb_and_pandas() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archive");
    let counters = Arc::new(ArchiveCounters::default());
    let max_rows = 40;
    let row_group_rows = 16;
    let mut archiver = Archiver::new(
        RollPolicy { max_rows, max_age: Duration::from_secs(3_600) },
        ParquetSettings { zstd_level: 3, row_group_rows },
        Arc::new(LocalFsSink::new(&root)),
        counters.clone(),
    );

    let inputs = [
        ("emotion.accepted", 0, partition_input(0, 95, 30)),
        ("emotion.accepted", 1, partition_input(1_000, 12, 12)),
        ("emotion.rejected", 0, partition_input(2_000, 50, 5)),
    ];
    let mut expected = Vec::new();
    let mut expected_files = BTreeSet::new();
    let now = Instant::now();
    for (topic, partition, records) in &inputs {
        // Expected files, computed independently of the roll policy's code: split at the hour
        // change, then every `max_rows` rows.
        let mut first: Option<(i64, i64, usize)> = None; // (first offset, hour, rows)
        for (offset, p) in records {
            let hour = p.processed_at_ms.div_euclid(HOUR_MS);
            match first {
                Some((start, h, rows)) if h == hour && rows < max_rows => first = Some((start, h, rows + 1)),
                _ => {
                    let name = FileKey::new(
                        topic,
                        *partition,
                        *offset,
                        HourPartition::from_epoch_ms(p.processed_at_ms),
                    )
                    .unwrap()
                    .relative_path();
                    expected_files.insert(name);
                    first = Some((*offset, hour, 1));
                }
            }
            archiver.record(topic, *partition, *offset, Some(&encode(p)), now).unwrap();
            expected.push(expected_row(p, topic, *partition, *offset));
        }
    }
    archiver.flush_all(RollReason::Shutdown).unwrap();
    let n = expected.len();
    assert_eq!(counters.summary().rows, n as u64);

    let out = readback(&root);

    // Files: the expected names, nothing else (no temp files), zstd, statistics, row groups.
    let files = out["files"].as_array().unwrap();
    let names: BTreeSet<String> = files.iter().map(|f| f["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, expected_files);
    assert_eq!(names.len() as u64, counters.summary().files);
    assert_eq!(out["other_files"], json!([]), "temporary files left behind");
    let mut rows_in_files = 0;
    for f in files {
        let path = f["path"].as_str().unwrap();
        assert_eq!(f["codecs"], json!(["ZSTD"]), "{path}");
        assert_eq!(f["columns_without_statistics"], json!([]), "{path}");
        for rg in f["row_group_rows"].as_array().unwrap() {
            assert!(rg.as_u64().unwrap() <= row_group_rows as u64, "{path}: row group of {rg}");
        }
        let name = path.rsplit('/').next().unwrap();
        let (topic, partition, first) = FileKey::parse_file_name(name).unwrap();
        assert_eq!(f["metadata"]["emogate.kafka.topic"], json!(topic));
        assert_eq!(f["metadata"]["emogate.kafka.partition"], json!(partition.to_string()));
        assert_eq!(f["metadata"]["emogate.kafka.first_offset"], json!(first.to_string()));
        rows_in_files += f["num_rows"].as_u64().unwrap();
    }
    assert_eq!(rows_in_files, n as u64);
    assert!(
        files.iter().any(|f| f["num_row_groups"].as_u64().unwrap() > 1),
        "no multi-row-group file exercised"
    );

    // pyarrow and DuckDB see exactly the rows written, every column.
    for reader in ["pyarrow", "duckdb"] {
        let rows = rows_without_partition_columns(&out[reader]["rows"]);
        assert_eq!(rows.len(), n, "{reader}");
        for (got, want) in rows.iter().zip(&expected) {
            assert_eq!(
                Value::Object(got.clone()),
                archive_support::floats_as_f32(Value::Object(want.clone())),
                "{reader} row differs"
            );
        }
    }
    // The partition columns DuckDB derives from paths agree with every row's processed_at.
    let duck = &out["duckdb"];
    assert_eq!((duck["count"].as_u64(), duck["distinct_keys"].as_u64()), (Some(n as u64), Some(n as u64)));
    assert_eq!(duck["partition_mismatches"], json!(0));
    assert_eq!(duck["types"]["dt"], json!("DATE"));
    assert_eq!(duck["types"]["hour"], json!("BIGINT"));
    assert_eq!(duck["types"]["processed_at"], json!("TIMESTAMP WITH TIME ZONE"));
    assert_eq!(duck["types"]["valence_distribution"], json!("FLOAT[]"));
    assert_eq!(duck["types"]["dominance_accepted"], json!("BOOLEAN"));
    let hours: BTreeSet<i64> =
        out["duckdb"]["rows"].as_array().unwrap().iter().map(|r| r["hour"].as_i64().unwrap()).collect();
    assert_eq!(hours, BTreeSet::from([22, 23]));

    // pyarrow's types are the archive schema's.
    let schema = &out["pyarrow"]["schema"];
    assert_eq!(schema["timestamp"], json!("timestamp[ms, tz=UTC]"));
    assert_eq!(schema["arousal_distribution"], json!("list<item: float not null>"));
    assert_eq!(schema["kafka_partition"], json!("int32"));
    let nullable = out["pyarrow"]["nullable"].as_object().unwrap();
    let optional: Vec<&String> = nullable
        .iter()
        .filter(|(k, v)| **v == json!(true) && !["dt", "hour"].contains(&k.as_str()))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        optional,
        ["arousal_uncertainty", "dominance_uncertainty", "source", "speaker_id", "valence_uncertainty"]
    );
    assert_eq!(schema["valence_uncertainty"], json!("float"));

    // pandas reads the whole archive, partition columns included.
    assert_eq!(out["pandas"]["rows"], json!(n));
    assert_eq!(out["pandas"]["dtypes"]["processed_at"], json!("datetime64[ms, UTC]"));
    assert!(out["pandas"]["dtypes"].get("dt").is_some_and(Value::is_string));
}
