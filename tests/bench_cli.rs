//! `emogate bench` from outside: one run on the fixture model, checking that the JSON object
//! carries every DESIGN §3 field (throughput, ratio, latency at a fixed offered load, memory,
//! provider, MC samples, batch) and that the numbers are consistent with each other.

mod common;

use std::process::Command;

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
        ])
        .output()
        .expect("run emogate bench");
    assert!(out.status.success(), "emogate bench failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let num = |key: &str| report[key].as_f64().unwrap_or_else(|| panic!("no number `{key}` in {report}"));

    let (raw, e2e) = (num("raw_records_per_sec"), num("e2e_records_per_sec"));
    assert!(raw > 0.0 && e2e > 0.0, "{report}");
    assert!((num("e2e_to_raw_ratio") - e2e / raw).abs() < 1e-9, "{report}");
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
