//! `emogate bench` from outside: one run on the fixture model (two end-to-end runs bracketed by
//! three raw runs),
//! checking that the JSON object carries every DESIGN §3 field (throughput, ratio, latency at a
//! fixed offered load, memory, provider, MC samples, batch) plus the per-run figures, and that
//! the numbers are consistent with each other; and the same against a Kafka-protocol broker
//! (Tansu on 127.0.0.1, or `EMOGATE_TEST_BROKERS`) with `--brokers`.
#![cfg(feature = "testkit")]

mod common;
mod pipeline_support;

use std::process::Command;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

#[test]
fn bench_reports_throughput_latency_and_memory() {
    let model = common::repo_root().join("models/fixture");
    let out = Command::new(env!("CARGO_BIN_EXE_emogate"))
        .current_dir(common::repo_root())
        .args(["bench", "--model", model.to_str().unwrap(), "--records", "128", "--batch", "16"])
        .args([
            "--threads",
            "1",
            "--execution-provider",
            "cpu",
            "--offered-load",
            "40",
            "--latency-seconds",
            "1",
            "--repeat",
            "2",
        ])
        .output()
        .expect("run emogate bench");
    assert!(out.status.success(), "emogate bench failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let num = |key: &str| report[key].as_f64().unwrap_or_else(|| panic!("no number `{key}` in {report}"));

    let runs = |key: &str| -> Vec<f64> {
        let v = report[key].as_array().unwrap_or_else(|| panic!("no array `{key}` in {report}"));
        v.iter().map(|x| x.as_f64().expect("a number")).collect()
    };
    let (raw_runs, e2e_runs, ratios) = (runs("raw_runs"), runs("e2e_runs"), runs("e2e_to_raw_ratios"));
    assert_eq!((raw_runs.len(), e2e_runs.len(), ratios.len()), (3, 2, 2), "{report}");
    assert!(raw_runs.iter().chain(&e2e_runs).all(|&r| r > 0.0), "{report}");
    for i in 0..2 {
        // Each end-to-end run against the raw runs before and after it.
        let bracket = (raw_runs[i] + raw_runs[i + 1]) / 2.0;
        assert!((ratios[i] - e2e_runs[i] / bracket).abs() < 1e-9, "pair {i}: {report}");
    }
    // Medians of two: their means; of three: the middle one.
    let mean = |v: &[f64]| (v[0] + v[1]) / 2.0;
    let mut sorted_raw = raw_runs.clone();
    sorted_raw.sort_by(f64::total_cmp);
    assert!((num("raw_records_per_sec") - sorted_raw[1]).abs() < 1e-9, "{report}");
    assert!((num("e2e_records_per_sec") - mean(&e2e_runs)).abs() < 1e-9, "{report}");
    assert!((num("e2e_to_raw_ratio") - mean(&ratios)).abs() < 1e-9, "{report}");
    // One session: it cannot be busy for longer than the timed window (10 ms polling slack).
    let busy = num("e2e_model_busy");
    assert!(busy > 0.0 && busy <= 1.05, "model busy {busy}: {report}");
    assert!(num("e2e_batch_mean_ms") > 0.0 && num("raw_batch_mean_ms") > 0.0, "{report}");
    assert_eq!(num("transaction_max_batches"), 8.0);
    assert_eq!(report["e2e_input"], "preproduced");
    // 40 records/s for 1 s: every record's answer was seen and timed.
    assert_eq!(num("offered_records_per_sec"), 40.0);
    assert_eq!(num("latency_records"), 40.0);
    let achieved = num("achieved_records_per_sec");
    assert!((30.0..=50.0).contains(&achieved), "achieved {achieved} records/s for 40 offered");
    let (p50, p99, max) = (num("p50_ms"), num("p99_ms"), num("latency_max_ms"));
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report}");
    assert!(num("peak_rss_mb") > 1.0);
    assert_eq!(report["execution_provider"], "cpu");
    assert_eq!((num("mc_samples"), num("batch")), (100.0, 16.0));
}

#[test]
fn bench_runs_end_to_end_against_real_brokers_and_removes_its_topics() {
    let broker = pipeline_support::Broker::start();
    let model = common::repo_root().join("models/fixture");
    let out = Command::new(env!("CARGO_BIN_EXE_emogate"))
        .current_dir(common::repo_root())
        .args(["bench", "--model", model.to_str().unwrap(), "--records", "128", "--batch", "16"])
        .args(["--threads", "1", "--execution-provider", "cpu", "--offered-load", "40"])
        .args(["--latency-seconds", "1", "--brokers", &broker.brokers])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run emogate bench");
    let pid = out.id();
    let out = out.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "emogate bench --brokers failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["e2e_cluster"], "brokers", "{report}");
    assert_eq!(report["e2e_brokers"], broker.brokers.as_str(), "{report}");
    let rate = report["e2e_records_per_sec"].as_f64().unwrap();
    assert!(rate > 0.0 && report["e2e_to_raw_ratio"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["latency_records"], 40, "every paced record's answer was timed: {report}");

    // Each run made its own topics (suffix `.run-<pid>-<ms>`) and deleted them at the end.
    let mine = format!(".run-{pid}-");
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &broker.brokers).create().unwrap();
    let metadata = consumer.fetch_metadata(None, std::time::Duration::from_secs(10)).unwrap();
    let left: Vec<&str> = metadata.topics().iter().map(|t| t.name()).filter(|n| n.contains(&mine)).collect();
    assert!(left.is_empty(), "topics left behind: {left:?}");
}
