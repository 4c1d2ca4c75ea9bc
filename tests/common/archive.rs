//! The independent read-back of a Parquet archive (`scripts/archive_readback.py`: pyarrow,
//! DuckDB and pandas) and the row keys in it.

use std::path::Path;

use serde_json::Value;

/// Runs the read-back script on `root`; its JSON has one `{"rows": [...]}` per reader
/// (`pyarrow`, `duckdb`, `pandas`).
pub fn readback(root: &Path) -> Value {
    let out = super::run_python("scripts/archive_readback.py", &[root.to_str().expect("UTF-8 path")]);
    serde_json::from_str(&out).expect("read-back printed JSON")
}

/// `(kafka_topic, kafka_partition, kafka_offset)` of every row `reader` read, in its order.
pub fn row_keys(out: &Value, reader: &str) -> Vec<(String, i64, i64)> {
    out[reader]["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no {reader} rows in the read-back"))
        .iter()
        .map(|r| {
            (
                r["kafka_topic"].as_str().unwrap().to_string(),
                r["kafka_partition"].as_i64().unwrap(),
                r["kafka_offset"].as_i64().unwrap(),
            )
        })
        .collect()
}
