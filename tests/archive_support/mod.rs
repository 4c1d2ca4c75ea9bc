//! Shared by the archive integration tests: the archive rows expected for sample predictions
//! ([`crate::common::predictions`]) and the files of an archive directory; the read-back itself
//! is [`crate::common::archive`].
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use emogate::testkit::cluster::MockKafka;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use emogate::codec::EmotionPrediction;
use serde_json::{json, Map, Value};

/// The archive row a reader should see for `p` at (topic, partition, offset), in the JSON
/// form `archive_readback.py` prints (timestamps as epoch ms). `dt`/`hour` are left out: the
/// read-back checks them against each row's own `processed_at`.
pub fn expected_row(p: &EmotionPrediction, topic: &str, partition: i32, offset: i64) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("utterance_id".into(), json!(p.utterance_id));
    row.insert("speaker_id".into(), json!(p.speaker_id));
    row.insert("source".into(), json!(p.source));
    row.insert("timestamp".into(), json!(p.timestamp_ms));
    row.insert("processed_at".into(), json!(p.processed_at_ms));
    row.insert("model_version".into(), json!(p.model_version));
    row.insert("decision".into(), json!(p.decision.symbol()));
    for (a, ap) in p.attributes.iter() {
        let dist: Vec<f64> = ap.distribution.iter().map(|&x| f64::from(x)).collect();
        row.insert(format!("{a}_value"), json!(f64::from(ap.value)));
        row.insert(format!("{a}_consensus"), json!(f64::from(ap.consensus)));
        row.insert(format!("{a}_distribution"), json!(dist));
        row.insert(format!("{a}_entropy"), json!(f64::from(ap.entropy)));
        row.insert(format!("{a}_uncertainty"), json!(ap.uncertainty.map(f64::from)));
        row.insert(format!("{a}_uncertainty_source"), json!(ap.uncertainty_source.as_str()));
        row.insert(format!("{a}_accepted"), json!(ap.accepted));
    }
    row.insert("kafka_topic".into(), json!(topic));
    row.insert("kafka_partition".into(), json!(partition));
    row.insert("kafka_offset".into(), json!(offset));
    row
}

/// Rows of one reader without `dt`/`hour`, floats rounded to `f32` ([`floats_as_f32`]).
pub fn rows_without_partition_columns(rows: &Value) -> Vec<Map<String, Value>> {
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let Value::Object(mut r) = floats_as_f32(r.clone()) else { panic!("row is not an object: {r}") };
            r.remove("dt");
            r.remove("hour");
            r
        })
        .collect()
}

/// Every regular file under `root`, relative, `/`-separated, with its bytes.
pub fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read(&path).expect("read file"));
            }
        }
    }
    out
}

/// Rounds every non-integer JSON number to `f32`. The archive stores `float`s; readers print
/// them widened to double, and serde_json's default float parsing can be one double ULP off,
/// which never changes the `f32` the number stands for.
pub fn floats_as_f32(value: Value) -> Value {
    match value {
        Value::Number(n) if !(n.is_i64() || n.is_u64()) => {
            json!(f64::from(n.as_f64().expect("finite number") as f32))
        }
        Value::Array(items) => Value::Array(items.into_iter().map(floats_as_f32).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, floats_as_f32(v))).collect()),
        other => other,
    }
}

/// A mock cluster with `topics` (name, partitions) created; keep the cluster alive while its
/// bootstrap servers (returned) are used.
pub fn mock_cluster_with(topics: &[(&str, i32)]) -> (MockKafka, String) {
    let kafka = MockKafka::new(1).unwrap();
    let brokers = {
        let cluster = kafka.cluster();
        for (topic, n) in topics {
            cluster.create_topic(topic, *n, 1).unwrap();
        }
        cluster.bootstrap_servers()
    };
    (kafka, brokers)
}

/// `group`'s committed offset (`None` if none) and the end offset of every partition of
/// `topics`.
pub fn committed_offsets(
    brokers: &str,
    group: &str,
    topics: &[(&str, i32)],
    timeout: Duration,
) -> BTreeMap<(String, i32), (Option<i64>, i64)> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for (topic, n) in topics {
        for p in 0..*n {
            tpl.add_partition(topic, p);
        }
    }
    let committed = consumer.committed_offsets(tpl, timeout).unwrap();
    committed
        .elements()
        .iter()
        .map(|e| {
            let offset = if let Offset::Offset(o) = e.offset() { Some(o) } else { None };
            let (_, high) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout).unwrap();
            ((e.topic().to_string(), e.partition()), (offset, high))
        })
        .collect()
}
