//! Infer-stage flow tests on librdkafka's in-process mock cluster: N records in → exactly N
//! answers out (predictions + dead letters), checked by an independent consumer
//! (confluent-kafka + fastavro), in both delivery modes; restart mid-stream; a failed
//! transaction rewinds without losing input.
//!
//! Two gaps of the mock cluster shape what runs here:
//! * it shows aborted transactional records to `read_committed` readers (like Tansu 0.6), so
//!   the abort test checks for loss only;
//! * its TxnOffsetCommit handler acknowledges offsets without storing them (librdkafka
//!   `rdkafka_mock_handlers.c`), so an exactly-once *restart* re-reads from the start here;
//!   that case runs against Tansu in `pipeline_broker.rs`.
#![cfg(feature = "testkit")]

mod common;
mod pipeline_support;

use std::time::Duration;

use emogate::config::{DeliveryMode, TopicsConfig};
use emogate::pipeline::router::{HEADER_ERROR, HEADER_ERROR_DETAIL, HEADER_INPUT, HEADER_MODEL};
use emogate::testkit::cluster::{self, KeyedPayload, MockKafka};
use emogate::testkit::synthetic::BadMessage;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use common::wait::wait_for;
use pipeline_support::*;

const GOOD: usize = 240;
const TIMEOUT: Duration = Duration::from_secs(120);

struct Mock {
    mock: MockKafka,
    brokers: String,
}

/// A mock cluster with the pipeline's topics (named after `tag`), and `GOOD` good records (from
/// `seed`) plus the deliberately bad ones already produced to the input topic.
async fn mock_with_input(tag: &str, seed: u64) -> (Mock, TopicsConfig, Vec<KeyedPayload>, Vec<BadMessage>) {
    let topics = unique_topics(tag);
    let mock = MockKafka::new(1).unwrap();
    cluster::create_topics(&mock.cluster(), &topics, PARTITIONS).unwrap();
    let brokers = mock.bootstrap_servers();
    let (messages, bad) = input_messages(GOOD, seed);
    cluster::produce_all(&brokers, &topics.input, &messages, &[]).await.unwrap();
    (Mock { mock, brokers }, topics, messages, bad)
}

async fn n_in_n_out(mode: DeliveryMode, tag: &str) {
    let (m, topics, messages, bad) = mock_with_input(tag, 11).await;

    let stage = start(test_config(&m.brokers, &topics, &format!("g-{tag}"), mode));
    let metrics = stage.metrics.clone();
    wait_for("all records answered", TIMEOUT, || metrics.records_out() >= messages.len() as u64).await;
    let report = stage.stop().await;

    assert_eq!(report.predictions as usize, GOOD);
    assert_eq!(report.accepted + report.rejected, report.predictions);
    assert!(
        report.accepted > 0 && report.rejected > 0,
        "the thresholds should split the fixture's outputs: {report:?}"
    );
    assert_eq!(report.dead_lettered_total() as usize, bad.len());
    assert_eq!(metrics.consumed_total() as usize, messages.len());
    for b in &bad {
        assert_eq!(metrics.dead_lettered(b.expected_reason), 1, "metric for {}", b.expected_reason);
    }
    assert_eq!(metrics.records_out() as usize, messages.len(), "nothing counted twice");
    if mode == DeliveryMode::ExactlyOnce {
        let in_transactions = metrics.transaction_batches.get_sample_sum() as u64;
        assert_eq!(in_transactions, report.batches, "every batch committed in a transaction");
    }

    // Our own read-back: headers and keys as the contract says.
    let outputs = tokio::task::block_in_place(|| {
        cluster::read_back(
            &m.brokers,
            &[&topics.accepted, &topics.rejected, &topics.dlq],
            messages.len(),
            Duration::from_millis(300),
            Duration::from_secs(30),
        )
    })
    .unwrap();
    assert_eq!(outputs.len(), messages.len());
    let model_ref =
        emogate::model::Manifest::load(&common::repo_root().join("models/fixture")).unwrap().model_ref();
    for o in &outputs {
        let input = o.headers.get(HEADER_INPUT).expect("emogate.input header");
        assert!(input.starts_with(&format!("{}/", topics.input)), "{input}");
        if o.topic == topics.dlq {
            assert!(o.headers.contains_key(HEADER_ERROR) && o.headers.contains_key(HEADER_ERROR_DETAIL));
        } else {
            assert_eq!(o.headers.get(HEADER_MODEL), Some(&model_ref), "{:?}", o.headers);
            assert!(o.key.as_deref().is_some_and(|k| k.starts_with(b"synth-")), "keyed by the input key");
        }
    }

    // The independent read-back.
    let v = python_read_back(&m.brokers, &topics, messages.len());
    assert_complete(&v, GOOD, &bad, false);
    drop(m.mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_at_least_once_n_in_n_out_with_dead_letters() {
    n_in_n_out(DeliveryMode::AtLeastOnce, "alo").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_exactly_once_n_in_n_out_with_dead_letters() {
    n_in_n_out(DeliveryMode::ExactlyOnce, "eos").await;
}

/// Under a backlog, exactly-once transactions collect several batches (fewer transactions for
/// the broker) but never more than `transaction_max_batches`, and every record is still
/// answered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_exactly_once_transactions_share_batches_under_load() {
    let (m, topics, messages, bad) = mock_with_input("eos-share", 14).await;

    let mut config = test_config(&m.brokers, &topics, "g-eos-share", DeliveryMode::ExactlyOnce);
    config.batch.max_records = 8;
    config.delivery.transaction_max_batches = 4;
    let stage = start(config);
    let metrics = stage.metrics.clone();
    wait_for("all records answered", TIMEOUT, || metrics.records_out() >= messages.len() as u64).await;
    let report = stage.stop().await;

    let committed = metrics.transaction_batches.get_sample_count();
    let batches_committed = metrics.transaction_batches.get_sample_sum() as u64;
    assert_eq!(batches_committed, report.batches, "every batch was committed in some transaction");
    assert_eq!(metrics.transactions_aborted.get(), 0);
    assert!(
        committed < report.batches,
        "{committed} transactions for {} batches: none held more than one",
        report.batches
    );
    assert!(committed * 4 >= report.batches, "a transaction held more than 4 batches");
    let v = python_read_back(&m.brokers, &topics, messages.len());
    assert_complete(&v, GOOD, &bad, false);
}

/// Stop after part of the stream, start again in the same group: nothing lost, and with a
/// graceful stop nothing duplicated either (everything produced was committed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_restart_mid_stream_at_least_once() {
    let (mode, tag) = (DeliveryMode::AtLeastOnce, "restart-alo");
    let (m, topics, messages, bad) = mock_with_input(tag, 12).await;
    let group = format!("g-{tag}");

    let mut config = test_config(&m.brokers, &topics, &group, mode);
    config.batch.max_records = 8;
    let first = start(config.clone());
    let metrics = first.metrics.clone();
    wait_for("a third of the records", TIMEOUT, || metrics.records_out() >= (GOOD / 3) as u64).await;
    let r1 = first.stop().await;
    assert!((r1.predictions as usize) < GOOD, "the first run must stop mid-stream: {r1:?}");

    let second = start(config);
    let metrics2 = second.metrics.clone();
    let total = messages.len() as u64;
    let first_out = r1.predictions + r1.dead_lettered_total();
    wait_for("the rest", TIMEOUT, || first_out + metrics2.records_out() >= total).await;
    second.stop().await;

    let v = python_read_back(&m.brokers, &topics, messages.len());
    assert_complete(&v, GOOD, &bad, false);
}

/// Produce requests fail for a while: transactions abort, the source rewinds, and every
/// record is still answered once the broker recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_failed_transactions_rewind_and_lose_nothing() {
    let (m, topics, messages, bad) = mock_with_input("abort", 13).await;

    let mut config = test_config(&m.brokers, &topics, "g-abort", DeliveryMode::ExactlyOnce);
    config.batch.max_records = 16;
    let stage = start(config);
    let metrics = stage.metrics.clone();
    wait_for("some output", TIMEOUT, || metrics.records_out() >= 32).await;
    m.mock
        .cluster()
        .request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD; 3]);
    wait_for("an aborted transaction", TIMEOUT, || metrics.transactions_aborted.get() >= 1).await;
    assert!(metrics.rewinds.get() >= 1);
    wait_for("all records answered", TIMEOUT, || {
        metrics.records_accepted.get() + metrics.records_rejected.get() >= GOOD as u64
            && metrics.dead_lettered_total() >= bad.len() as u64
    })
    .await;
    stage.stop().await;

    let v = python_read_back(&m.brokers, &topics, messages.len());
    // Aborted records are visible on the mock cluster: check loss, not duplicates.
    assert_complete(&v, GOOD, &bad, true);
}

/// `emogate demo`'s flow, smaller: every record answered once, read back independently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let options = emogate::testkit::demo::DemoOptions {
        records: 150,
        model_dir: common::repo_root().join("models/fixture"),
        archive_root: dir.path().join("archive"),
        mode: DeliveryMode::ExactlyOnce,
        ..Default::default()
    };
    let summary = emogate::testkit::demo::run_demo(options, Box::new(|_| Vec::new())).await.unwrap();
    assert_eq!(summary.report.predictions, 150);
    assert_eq!(summary.report.dead_lettered_total() as usize, summary.bad_sent);
    assert_eq!(summary.read_back.values().sum::<usize>(), 150 + summary.bad_sent);
    assert_eq!(summary.duplicates, 0);
    assert!(summary.thresholds_origin.contains("warm-up"), "the fixture has no calibrated thresholds");
    let text = summary.to_string();
    for needle in ["records/s", "accepted", "mean entropy", "dead-lettered", "archive"] {
        assert!(text.contains(needle), "summary lacks `{needle}`:\n{text}");
    }
}
