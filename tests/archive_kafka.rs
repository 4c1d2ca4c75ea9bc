//! The archive stage against librdkafka's mock cluster: records produced to both output topics
//! (several partitions) are archived exactly once, the group's committed offsets reach the end
//! of every partition, an undecodable record goes to the archive's dead-letter topic (with its reason) without
//! stopping the stage, a restart
//! continues where the first run committed — new files only, old ones untouched — and a second
//! member joining makes the first write its buffers on revocation, without duplicate rows.
#![cfg(feature = "testkit")]

mod archive_support;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use archive_support::{committed_offsets, files, mock_cluster_with};
use common::archive::{readback, row_keys};
use common::predictions::{encode, prediction, T0_MS};
use common::wait::wait_for;
use emogate::archive::{
    run_archive_stage, ArchiveConfig, ArchiveCounters, ArchiveKafka, ArchiveMetrics, ArchiveSummary, FileKey,
    RollReason, WrittenFile,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

const TOPICS: [(&str, i32); 2] = [("emotion.accepted", 3), ("emotion.rejected", 2)];
const GROUP: &str = "emogate-archive-test";
const TIMEOUT: Duration = Duration::from_secs(60);
/// How long a step inside a test may take.
const WAIT: Duration = Duration::from_secs(30);

/// Produces predictions `seeds` round-robin over all partitions of both topics, plus the raw
/// `extra` payloads to `emotion.rejected`/0; waits for delivery. Prediction `seed` is processed
/// at `T0_MS + seed × spacing_ms`.
fn produce(brokers: &str, seeds: std::ops::Range<u64>, spacing_ms: i64, extra: &[&[u8]]) {
    // Large enough for the oversized stray record below (librdkafka's default is 1,000,000).
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap();
    let targets: Vec<(&str, i32)> = TOPICS.iter().flat_map(|&(t, n)| (0..n).map(move |p| (t, p))).collect();
    for seed in seeds {
        let (topic, partition) = targets[seed as usize % targets.len()];
        let payload = encode(&prediction(seed, T0_MS + seed as i64 * spacing_ms));
        let key = format!("utt-{seed}");
        producer.send(BaseRecord::to(topic).partition(partition).key(&key).payload(&payload)).unwrap();
        producer.poll(Duration::ZERO);
    }
    for payload in extra {
        producer.send(BaseRecord::<(), [u8]>::to("emotion.rejected").partition(0).payload(*payload)).unwrap();
    }
    producer.flush(TIMEOUT).unwrap();
}

fn config(root: &Path) -> ArchiveConfig {
    ArchiveConfig {
        root: root.to_path_buf(),
        group_id: GROUP.to_string(),
        roll_rows: 25,
        roll_age_ms: 300,
        ..ArchiveConfig::default()
    }
}

/// Runs the stage until `counters` shows `rows` rows and `skipped` dead-lettered records, then stops it.
async fn archive_until(brokers: &str, root: &Path, rows: u64, skipped: u64) -> (ArchiveSummary, Duration) {
    let counters = Arc::new(ArchiveCounters::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut kafka = ArchiveKafka::new(brokers);
    // The stage leaves the group on shutdown (librdkafka logs LeaveGroup sent and answered), but
    // the mock cluster keeps the departed member until its session times out, which would hold
    // the restarted stage's first rebalance for the default 45 s.
    kafka.properties.insert("session.timeout.ms".into(), "6000".into());
    let config = config(root);
    let started = Instant::now();
    let stage = run_archive_stage(&config, &kafka, counters.clone(), async {
        let _ = stop_rx.await;
    });
    let watcher = async {
        while counters.summary().rows < rows || counters.summary().dead_lettered < skipped {
            assert!(
                started.elapsed() < TIMEOUT,
                "stage archived only {:?} of {rows} rows",
                counters.summary()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop_tx.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(stage, watcher);
    let summary = result.expect("archive stage failed");
    assert_eq!(summary, counters.summary(), "summary and metric hooks disagree");
    (summary, started.elapsed())
}

/// The first `n` records of the archive's dead-letter topic: payload and headers.
fn dead_letters(brokers: &str, n: usize) -> Vec<(Vec<u8>, BTreeMap<String, String>)> {
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["emotion.archive.dlq"]).unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    while out.len() < n {
        assert!(started.elapsed() < WAIT, "only {} of {n} dead letters", out.len());
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = message.unwrap();
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push((message.payload().unwrap_or_default().to_vec(), headers));
    }
    out
}

/// The group's committed offset (`None` if none) and the high watermark of every partition.
fn offsets(brokers: &str) -> BTreeMap<(String, i32), (Option<i64>, i64)> {
    committed_offsets(brokers, GROUP, &TOPICS, TIMEOUT)
}

/// Like [`offsets`], but every partition must have a committed offset.
fn committed_and_end(brokers: &str) -> BTreeMap<(String, i32), (i64, i64)> {
    offsets(brokers)
        .into_iter()
        .map(|(tp, (committed, end))| {
            let committed = committed.unwrap_or_else(|| panic!("{tp:?} has no committed offset"));
            (tp, (committed, end))
        })
        .collect()
}

/// Records not yet committed by the group, over all partitions.
fn uncommitted(brokers: &str) -> u64 {
    offsets(brokers).values().map(|&(committed, end)| (end - committed.unwrap_or(0)) as u64).sum()
}

#[tokio::test]
async fn stage_archives_each_record_once_commits_to_the_end_and_resumes() {
    let (_kafka, brokers) = mock_cluster_with(&TOPICS);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archive");

    // Run 1: 400 predictions and two records that are not predictions, one of them larger than
    // a producer may send by default (its dead letter is cut, or it would never be stored).
    let n = 400;
    let huge = vec![0x5Au8; 1_200_000];
    // 40 s between records from 22:13:20: hours change inside the run.
    produce(&brokers, 0..n, 40_000, &[b"not avro at all", &huge]);
    let (summary, took) = archive_until(&brokers, &root, n, 2).await;
    eprintln!("run 1: {summary:?} in {took:?}");
    assert_eq!((summary.rows, summary.dead_lettered), (n, 2));
    let mut dead = dead_letters(&brokers, 2);
    dead.sort_by_key(|(payload, _)| payload.len());
    assert_eq!(dead[1].0.len(), emogate::pipeline::router::MAX_DEAD_LETTER_PAYLOAD);
    assert_eq!(dead[1].1.get("emogate.error.truncated_from").map(String::as_str), Some("1200000"));
    assert_eq!(dead[0].0, b"not avro at all".to_vec(), "the payload is kept as it was");
    assert!(!dead[0].1.contains_key("emogate.error.truncated_from"));
    let input = dead[0].1.get("emogate.input").cloned().unwrap_or_default();
    assert!(input.starts_with("emotion.rejected/0/"), "emogate.input header {input:?}");
    assert!(dead[0].1.contains_key("emogate.error") && dead[0].1.contains_key("emogate.error.detail"));

    let out = readback(&root);
    let keys = row_keys(&out, "pyarrow");
    assert_eq!(keys.len() as u64, n);
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len() as u64, n, "duplicate (topic, partition, offset)");
    assert_eq!(out["duckdb"]["partition_mismatches"], Value::from(0));
    assert_eq!(out["other_files"], Value::Array(vec![]));
    let ids: BTreeSet<String> = out["pyarrow"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["utterance_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, (0..n).map(|s| format!("utt-{s:06}")).collect::<BTreeSet<_>>());

    let offsets = committed_and_end(&brokers);
    assert_eq!(offsets.len(), 5);
    for (tp, (committed, end)) in &offsets {
        assert_eq!(committed, end, "{tp:?}: committed offset is not the end of the partition");
    }
    let first_run = files(&root);

    // Run 2: more records; the restarted stage starts at the committed offsets.
    let m = 150;
    produce(&brokers, n..n + m, 40_000, &[]);
    let (summary, took) = archive_until(&brokers, &root, m, 0).await;
    eprintln!("run 2: {summary:?} in {took:?}");
    assert_eq!(summary.rows, m, "the restart re-archived committed records");

    let out = readback(&root);
    let keys = row_keys(&out, "pyarrow");
    assert_eq!(keys.len() as u64, n + m);
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len() as u64, n + m, "duplicates after restart");
    for (tp, (committed, end)) in committed_and_end(&brokers) {
        assert_eq!(committed, end, "{tp:?} after restart");
    }
    // Files of run 1 are untouched; each file of run 2 starts at or after where run 1 committed.
    let second_run = files(&root);
    for (path, bytes) in &first_run {
        assert_eq!(second_run.get(path), Some(bytes), "{path} changed");
    }
    for path in second_run.keys().filter(|p| !first_run.contains_key(*p)) {
        let (topic, partition, first) = FileKey::parse_file_name(path.rsplit('/').next().unwrap()).unwrap();
        let (committed, _) = offsets[&(topic, partition)];
        assert!(first >= committed, "{path} starts before run 1's commit {committed}");
    }
}

/// Counters plus the list of files written, to see why each was rolled.
#[derive(Default)]
struct Recorder {
    counters: ArchiveCounters,
    files: Mutex<Vec<WrittenFile>>,
}

impl ArchiveMetrics for Recorder {
    fn file_written(&self, file: &WrittenFile) {
        self.counters.file_written(file);
        self.files.lock().unwrap().push(file.clone());
    }
    fn record_dead_lettered(&self, topic: &str, reason: &'static str) {
        self.counters.record_dead_lettered(topic, reason);
    }
    fn offsets_committed(&self, topic: &str, partition: i32, next_offset: i64) {
        self.counters.offsets_committed(topic, partition, next_offset);
    }
    fn buffered_rows(&self, rows: usize) {
        self.counters.buffered_rows(rows);
    }
    fn assignment_changed(&self, partitions: usize) {
        self.counters.assignment_changed(partitions);
    }
}

#[tokio::test]
async fn revoked_partitions_are_flushed_before_they_go_and_no_row_is_duplicated() {
    let (_kafka, brokers) = mock_cluster_with(&TOPICS);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archive");
    // Neither rows nor age roll during the test: only a revocation or a shutdown writes files.
    let config = ArchiveConfig { roll_rows: 100_000, roll_age_ms: 600_000, ..config(&root) };
    let mut kafka = ArchiveKafka::new(&brokers);
    kafka.properties.insert("session.timeout.ms".into(), "6000".into());
    let n = 300;
    // All within one hour, so no hour change rolls a buffer either.
    produce(&brokers, 0..n, 1, &[]);

    let (a, b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let (stop_a_tx, stop_a_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_b_tx, stop_b_rx) = tokio::sync::oneshot::channel::<()>();
    let (start_b_tx, start_b_rx) = tokio::sync::oneshot::channel::<()>();
    let stage_a = run_archive_stage(&config, &kafka, a.clone(), async {
        let _ = stop_a_rx.await;
    });
    let stage_b = async {
        start_b_rx.await.unwrap();
        run_archive_stage(&config, &kafka, b.clone(), async {
            let _ = stop_b_rx.await;
        })
        .await
    };
    let control = async {
        wait_for("A to buffer every record", WAIT, || a.counters.buffered() == n).await;
        assert_eq!(a.counters.summary().files, 0, "a file was written before any revocation");
        start_b_tx.send(()).unwrap();
        // B joining makes the group rebalance: A's revoke callback must write and commit its
        // buffers before B is assigned anything.
        wait_for("the rebalance", WAIT, || {
            b.counters.assigned_partitions() > 0
                && a.counters.assigned_partitions() >= 0
                && a.counters.assigned_partitions() < 5
        })
        .await;
        // Distinct offsets, not a sum of rows: when the mock group rebalances more than once,
        // A re-reads what it could not commit and writes those files again under the same
        // names (overwrites, not duplicates; the final read-back checks that).
        let revoked: BTreeSet<(String, i32, i64)> = a
            .files
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.reason == RollReason::Revoked)
            .flat_map(|f| {
                (f.key.first_offset..=f.last_offset).map(move |o| (f.key.topic.clone(), f.key.partition, o))
            })
            .collect();
        assert_eq!(revoked.len() as u64, n, "A's buffers were not all flushed on revocation");
        // More records, now spread over both members; shutdown writes them.
        produce(&brokers, n..n + 100, 1, &[]);
        // Each member reads its partitions from the group's committed offsets: the new records,
        // plus A's revocation files again if the mock refused the commit made on revocation
        // (it does while the group rebalances) — those are rewritten under the same names
        // (all of A's revocation commits refused, or only some, when it rebalanced twice).
        let pending = uncommitted(&brokers);
        assert!((100..=n + 100).contains(&pending), "{pending} uncommitted records");
        wait_for("A and B to read their partitions", WAIT, || {
            a.counters.buffered() + b.counters.buffered() == pending
        })
        .await;
        // B leaves; A takes every partition back and is stopped once it has read them all.
        stop_b_tx.send(()).unwrap();
        wait_for("A to own every partition again", WAIT, || {
            a.counters.assigned_partitions() == 5 && a.counters.buffered() == uncommitted(&brokers)
        })
        .await;
        stop_a_tx.send(()).unwrap();
    };
    let (ra, rb, ()) = tokio::join!(stage_a, stage_b, control);
    let (ra, rb) = (ra.expect("stage A failed"), rb.expect("stage B failed"));
    eprintln!("A: {ra:?}\nB: {rb:?}");
    assert!(rb.rows > 0, "B archived nothing");

    let out = readback(&root);
    let keys = row_keys(&out, "pyarrow");
    assert_eq!(keys.len() as u64, n + 100, "A {ra:?} + B {rb:?}");
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), keys.len(), "duplicates across members");
    for (tp, (committed, end)) in committed_and_end(&brokers) {
        assert_eq!(committed, end, "{tp:?}");
    }
}

/// The local sink, refusing every file with "no space left" while `broken` is set (a full
/// disk that an operator then cleans up), or for ever with a permanent error.
struct BreakableSink {
    inner: emogate::archive::LocalFsSink,
    broken: std::sync::atomic::AtomicBool,
    permanent: bool,
}

impl emogate::archive::ArchiveSink for BreakableSink {
    fn put(&self, key: &str, data: &[u8]) -> Result<(), emogate::archive::SinkError> {
        if self.permanent {
            return Err(emogate::archive::SinkError::InvalidKey(format!("{key} (refused for the test)")));
        }
        if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(emogate::archive::SinkError::Io {
                op: "write",
                path: key.into(),
                source: std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left"),
            });
        }
        self.inner.put(key, data)
    }
    fn location(&self, key: &str) -> String {
        self.inner.location(key)
    }
}

#[tokio::test]
async fn a_full_disk_is_retried_in_place_and_nothing_is_committed_until_files_are_stored() {
    use std::sync::atomic::Ordering::SeqCst;
    let (_kafka, brokers) = mock_cluster_with(&TOPICS);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archive");
    produce(&brokers, 0..80, 1, &[]);
    let sink = Arc::new(BreakableSink {
        inner: emogate::archive::LocalFsSink::new(&root),
        broken: true.into(),
        permanent: false,
    });
    let mut config = config(&root);
    config.retry_initial_ms = 100;
    config.retry_max_ms = 400;
    let counters = Arc::new(ArchiveCounters::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stage = emogate::archive::ArchiveStage::new(config, ArchiveKafka::new(&brokers))
        .with_sink(sink.clone())
        .with_metrics(counters.clone())
        .run(async {
            let _ = stop_rx.await;
        });
    let control = async {
        // Broken: failures pile up and are retried, the sink turns unhealthy, nothing is
        // committed and the stage keeps running.
        let started = Instant::now();
        while counters.summary().write_errors < 8 || counters.sink_healthy() {
            assert!(started.elapsed() < WAIT, "no retries seen: {:?}", counters.summary());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let offsets_while_broken = tokio::task::spawn_blocking({
            let brokers = brokers.clone();
            move || offsets(&brokers)
        })
        .await
        .unwrap();
        for (tp, (committed, _)) in offsets_while_broken {
            assert_eq!(committed, None, "{tp:?} committed although nothing was stored");
        }
        assert_eq!(counters.summary().rows, 0);
        // Repaired: every row arrives once, without a restart.
        sink.broken.store(false, SeqCst);
        while counters.summary().rows < 80 {
            assert!(started.elapsed() < TIMEOUT, "after the repair only {:?}", counters.summary());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(counters.sink_healthy(), "a stored file makes the sink healthy again");
        stop_tx.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(stage, control);
    let summary = result.expect("the stage stopped instead of retrying in place");
    assert_eq!(summary.rows, 80);
    assert!(summary.write_errors >= 8, "{summary:?}");
    let keys = row_keys(&readback(&root), "pyarrow");
    assert_eq!(keys.len(), 80);
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 80, "duplicates after retrying");
    for (tp, (committed, end)) in committed_and_end(&brokers) {
        assert_eq!(committed, end, "{tp:?}");
    }
}

#[tokio::test]
async fn a_failure_that_cannot_heal_stops_the_stage_and_commits_nothing() {
    let (_kafka, brokers) = mock_cluster_with(&TOPICS);
    let tmp = tempfile::tempdir().unwrap();
    produce(&brokers, 0..40, 1, &[]);
    let sink = BreakableSink {
        inner: emogate::archive::LocalFsSink::new(tmp.path()),
        broken: true.into(),
        permanent: true,
    };
    let stage = emogate::archive::ArchiveStage::new(config(tmp.path()), ArchiveKafka::new(&brokers))
        .with_sink(Arc::new(sink));
    // Never asked to stop: it must end by itself, with the sink's error.
    let result = tokio::time::timeout(TIMEOUT, stage.run(std::future::pending::<()>()))
        .await
        .expect("stage did not stop");
    let err = result.expect_err("the stage went on without storing files");
    assert!(matches!(err, emogate::archive::ArchiveError::Sink { .. }), "{err}");
    assert!(err.to_string().contains("refused for the test"), "{err}");
    for (tp, (committed, _)) in offsets(&brokers) {
        assert_eq!(committed, None, "{tp:?} committed although nothing was stored");
    }
}
