//! The Grafana dashboard and the Prometheus alert rules may only query metrics the service
//! really exports: run the demo flow (both stages on the mock cluster), take the `/metrics`
//! exposition it ends with, and check every `emogate_*` name and label the dashboard and
//! rules use against it, and the exported set against `deploy/metrics.txt`.
#![cfg(feature = "testkit")]

mod common;

use emogate::config::DeliveryMode;
use emogate::lifecycle::StageContext;
use emogate::service;
use emogate::testkit::demo::{run_demo, DemoOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_query_only_exported_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let options = DemoOptions {
        records: 120,
        model_dir: common::repo_root().join("models/fixture"),
        archive_root: dir.path().join("archive"),
        mode: DeliveryMode::AtLeastOnce,
        ..Default::default()
    };
    let summary =
        run_demo(options, Box::new(|ctx: &StageContext| vec![("archive", service::archive_stage(ctx))]))
            .await
            .unwrap();
    assert_eq!(summary.archive_rows, 120, "the archive stage ran and wrote every prediction");
    let scrape = dir.path().join("metrics.txt");
    std::fs::write(&scrape, &summary.metrics_text).unwrap();
    let out = common::run_python(
        "scripts/check_dashboard_metrics.py",
        &[
            "--metrics-file",
            scrape.to_str().unwrap(),
            "--strict-contract",
            // Labelled families appear once a label value is used: the demo turns librdkafka
            // statistics (where lag comes from) off, its archive dead-letters no record and
            // no archive write fails, and...
            "--allow-absent",
            "emogate_consumer_lag_records",
            "--allow-absent",
            "emogate_archive_dead_lettered_total",
            "--allow-absent",
            "emogate_archive_write_errors_total",
            // Set from the manifest's recorded calibration, which the fixture model has none of.
            "--allow-absent",
            "emogate_calibration_dev_gain_ratio",
        ],
    );
    assert!(out.contains("ok"), "{out}");
}
