//! The archive on a real S3 API: moto's server on 127.0.0.1 (from the Python test
//! environment), read back with pyarrow's `S3FileSystem`, DuckDB over the pyarrow dataset and
//! pandas (`scripts/archive_readback.py s3://…`).
//!
//! - `emogate demo --archive-url s3://…` (credentials from the environment, the endpoint as an
//!   `--archive-option`) archives every prediction exactly once with the local archive's types.
//! - An S3 outage in the middle of the stream (the endpoint stops answering: a proxy in front
//!   of moto is closed, then opened again on the same port) is survived in place: no commit
//!   passes a stored object, nothing is lost or duplicated, the stage never exits.
//! - Replaying the same offsets (a new group, as after a crash between PUT and commit) PUTs
//!   the same keys with the same bytes.
#![cfg(feature = "testkit")]

mod archive_support;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use archive_support::{committed_offsets, mock_cluster_with};
use common::archive::row_keys;
use common::predictions::{encode, prediction, T0_MS};
use emogate::archive::{ArchiveConfig, ArchiveCounters, ArchiveKafka, ArchiveStage, ArchiveSummary};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{json, Value};

const KEY: &str = "testing";
const TOPICS: [(&str, i32); 2] = [("emotion.accepted", 2), ("emotion.rejected", 1)];
const TIMEOUT: Duration = Duration::from_secs(90);

/// moto's S3 server on a free port of 127.0.0.1, killed on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        let port = free_port();
        let child = Command::new(common::python())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto's server (make deps installs it)");
        let moto = Moto { child, port };
        common::wait::wait_until("moto listening", Duration::from_secs(60), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        moto
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn create_bucket(&self, bucket: &str) {
        let code = format!(
            "import boto3; boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='{KEY}', aws_secret_access_key='{KEY}').create_bucket(Bucket='{bucket}')",
            self.endpoint()
        );
        let status = Command::new(common::python()).args(["-c", &code]).status().unwrap();
        assert!(status.success(), "creating bucket {bucket}");
    }

    /// `scripts/archive_readback.py` over `url`, read from `endpoint`.
    fn readback(&self, url: &str) -> Value {
        let out = Command::new(common::python())
            .arg(common::repo_root().join("scripts/archive_readback.py"))
            .args([url, "--endpoint", &self.endpoint()])
            .envs(credentials())
            .output()
            .unwrap();
        assert!(out.status.success(), "read-back failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn credentials() -> [(&'static str, &'static str); 3] {
    [("AWS_ACCESS_KEY_ID", KEY), ("AWS_SECRET_ACCESS_KEY", KEY), ("AWS_REGION", "us-east-1")]
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn demo_archives_every_prediction_once_to_s3_with_the_local_archives_types() {
    let moto = Moto::start();
    moto.create_bucket("emogate-demo");
    let endpoint = format!("endpoint={}", moto.endpoint());
    let out = Command::new(env!("CARGO_BIN_EXE_emogate"))
        .args(["demo", "--records", "300", "--json", "--archive-url", "s3://emogate-demo/runs/a"])
        .args(["--archive-option", &endpoint, "--archive-option", "allow_http=true"])
        .envs(credentials())
        .current_dir(common::repo_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "demo failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let predictions = summary["predictions"].as_u64().unwrap();
    assert_eq!(summary["archive_rows"].as_u64(), Some(predictions), "{summary}");
    assert_eq!(summary["archive_url"], json!("s3://emogate-demo/runs/a"));

    let back = moto.readback("s3://emogate-demo/runs/a");
    let keys = row_keys(&back, "pyarrow");
    assert_eq!(keys.len() as u64, predictions);
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len() as u64, predictions, "duplicate rows");
    assert_eq!(back["other_files"], json!([]), "only Parquet objects");
    let duck = &back["duckdb"];
    assert_eq!(
        (duck["count"].as_u64(), duck["distinct_keys"].as_u64()),
        (Some(predictions), Some(predictions))
    );
    assert_eq!(duck["partition_mismatches"], json!(0));
    assert_eq!(duck["types"]["processed_at"], json!("TIMESTAMP WITH TIME ZONE"));
    assert_eq!(duck["types"]["valence_distribution"], json!("FLOAT[]"));
    let schema = &back["pyarrow"]["schema"];
    assert_eq!(schema["timestamp"], json!("timestamp[ms, tz=UTC]"));
    assert_eq!(schema["arousal_distribution"], json!("list<item: float not null>"));
    assert_eq!(schema["kafka_partition"], json!("int32"));
    assert_eq!(back["pandas"]["rows"], json!(predictions));
    for file in back["files"].as_array().unwrap() {
        assert_eq!(file["codecs"], json!(["ZSTD"]), "{file}");
        let path = file["path"].as_str().unwrap();
        assert!(path.starts_with("dt=") && path.contains("/hour="), "{path}");
    }
}

/// A TCP proxy in front of moto that can be closed (connections refused, open ones cut) and
/// opened again on the same port: an S3 endpoint that goes away and comes back.
struct Proxy {
    port: u16,
    target: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn open(port: u16, target: u16) -> Proxy {
        let mut proxy = Proxy { port, target, task: None };
        proxy.reopen().await;
        proxy
    }

    async fn reopen(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    /// Stops accepting and drops every open connection (the JoinSet aborts them).
    async fn close(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Produces predictions `seeds` round-robin over the output partitions; waits for delivery.
fn produce(brokers: &str, seeds: std::ops::Range<u64>) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let targets: Vec<(&str, i32)> = TOPICS.iter().flat_map(|&(t, n)| (0..n).map(move |p| (t, p))).collect();
    for seed in seeds {
        let (topic, partition) = targets[seed as usize % targets.len()];
        let payload = encode(&prediction(seed, T0_MS + seed as i64 * 1_000));
        let key = format!("utt-{seed:06}");
        producer.send(BaseRecord::to(topic).partition(partition).key(&key).payload(&payload)).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Committed offset (`None` if none) and end offset of every output partition for `group`.
fn offsets(brokers: &str, group: &str) -> BTreeMap<(String, i32), (Option<i64>, i64)> {
    committed_offsets(brokers, group, &TOPICS, TIMEOUT)
}

/// Stage settings for `url` through `endpoint` (credentials as options: a test process cannot
/// safely set its own environment).
fn s3_config(url: &str, endpoint: &str, group: &str) -> ArchiveConfig {
    let mut config = ArchiveConfig {
        url: Some(url.to_string()),
        group_id: group.to_string(),
        roll_rows: 20,
        roll_age_ms: 600_000,
        retry_initial_ms: 100,
        retry_max_ms: 400,
        ..ArchiveConfig::default()
    };
    for (key, value) in [
        ("endpoint", endpoint),
        ("allow_http", "true"),
        ("region", "us-east-1"),
        ("access_key_id", KEY),
        ("secret_access_key", KEY),
    ] {
        config.object_store.0.insert(key.to_string(), value.to_string());
    }
    config
}

/// Runs the stage until `done(counters)`, calling `during` concurrently; returns the summary.
async fn run_stage<F: std::future::Future<Output = ()>>(
    config: ArchiveConfig,
    brokers: &str,
    during: impl FnOnce(Arc<ArchiveCounters>, tokio::sync::oneshot::Sender<()>) -> F,
) -> ArchiveSummary {
    let counters = Arc::new(ArchiveCounters::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut kafka = ArchiveKafka::new(brokers);
    kafka.topics = TOPICS.iter().map(|(t, _)| t.to_string()).collect();
    kafka.properties.insert("session.timeout.ms".into(), "6000".into());
    let stage = ArchiveStage::new(config, kafka).with_metrics(counters.clone()).run(async {
        let _ = stop_rx.await;
    });
    let (result, ()) = tokio::join!(stage, during(counters, stop_tx));
    result.expect("the archive stage stopped with an error instead of retrying in place")
}

async fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < TIMEOUT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_mid_stream_is_survived_in_place_without_loss_or_duplicates() {
    let moto = Moto::start();
    moto.create_bucket("emogate-outage");
    let mut proxy = Proxy::open(free_port(), moto.port).await;
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let (_kafka, brokers) = mock_cluster_with(&TOPICS);
    let url = "s3://emogate-outage/archive";
    produce(&brokers, 0..120);
    let config = s3_config(url, &endpoint, "archive-outage");

    let summary = run_stage(config, &brokers, |counters, stop| {
        let (brokers, moto, proxy) = (brokers.clone(), &moto, &mut proxy);
        async move {
            wait("the first files", || counters.summary().files >= 3).await;
            // The endpoint goes away mid-stream; more records keep arriving.
            proxy.close().await;
            produce(&brokers, 120..240);
            let errors_before = counters.summary().write_errors;
            wait("failed writes", || counters.summary().write_errors >= errors_before + 5).await;
            wait("the sink reported unhealthy", || !counters.sink_healthy()).await;
            // No committed offset passes what is stored: every prediction below a partition's
            // committed offset is in an object (read straight from moto, past the proxy).
            let committed = tokio::task::spawn_blocking({
                let brokers = brokers.clone();
                move || offsets(&brokers, "archive-outage")
            });
            let committed = committed.await.unwrap();
            let stored: BTreeSet<(String, i64, i64)> =
                row_keys(&moto.readback(url), "pyarrow").into_iter().collect();
            for ((topic, partition), (offset, _)) in &committed {
                for o in 0..offset.unwrap_or(0) {
                    assert!(
                        stored.contains(&(topic.clone(), *partition as i64, o)),
                        "{topic}/{partition}@{o} committed, not stored"
                    );
                }
            }
            // Back on the same port: the stage catches up by itself.
            proxy.reopen().await;
            wait("all 240 rows", || counters.summary().rows >= 240).await;
            assert!(counters.sink_healthy(), "healthy again after a stored file");
            stop.send(()).unwrap();
        }
    })
    .await;
    eprintln!("outage run: {summary:?}");
    assert_eq!(summary.rows, 240);
    assert!(summary.write_errors >= 5);

    let back = moto.readback(url);
    let keys = row_keys(&back, "pyarrow");
    assert_eq!(keys.len(), 240);
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 240, "duplicate rows after the outage");
    let end_state = tokio::task::spawn_blocking(move || offsets(&brokers, "archive-outage")).await.unwrap();
    for (tp, (committed, end)) in end_state {
        assert_eq!(committed, Some(end), "{tp:?} not committed to the end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_uncommitted_offsets_puts_the_same_keys_with_the_same_bytes() {
    let moto = Moto::start();
    moto.create_bucket("emogate-replay");
    let (_kafka, brokers) = mock_cluster_with(&TOPICS);
    // 40 records per partition, rolled every 20 rows only (no age roll): file boundaries
    // depend on offsets alone.
    produce(&brokers, 0..120);
    let url = "s3://emogate-replay/archive";
    let files = |back: &Value| -> BTreeMap<String, Value> {
        back["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["path"].as_str().unwrap().to_string(), f.clone()))
            .collect()
    };
    let mut runs = Vec::new();
    for group in ["replay-first", "replay-second"] {
        // A second group has no commits: it replays every offset, as a restart after a crash
        // between PUT and commit replays the uncommitted ones.
        let config = s3_config(url, &moto.endpoint(), group);
        let summary = run_stage(config, &brokers, |counters, stop| async move {
            wait("120 rows", || counters.summary().rows >= 120).await;
            stop.send(()).unwrap();
        })
        .await;
        assert_eq!(summary.files, 6, "each run PUTs every file: {summary:?}");
        runs.push((files(&moto.readback(url)), etags(&moto, "emogate-replay")));
    }
    assert_eq!(runs[0].0.len(), 6);
    assert_eq!(runs[0].0, runs[1].0, "the replay changed objects (keys, rows or metadata)");
    assert_eq!(runs[0].1.len(), 6, "{:?}", runs[0].1);
    assert_eq!(runs[0].1, runs[1].1, "the replay PUT different bytes under the same keys");
}

/// MD5 ETags of every object in `bucket` (single-part PUTs: the content's MD5).
fn etags(moto: &Moto, bucket: &str) -> BTreeMap<String, String> {
    let code = format!(
        "import boto3, json; c = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
         aws_access_key_id='{KEY}', aws_secret_access_key='{KEY}'); \
         print(json.dumps({{o['Key']: o['ETag'] for o in c.list_objects_v2(Bucket='{bucket}').get('Contents', [])}}))",
        moto.endpoint()
    );
    let out = Command::new(common::python()).args(["-c", &code]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn files_above_the_multipart_threshold_arrive_whole_and_leave_no_open_upload() {
    use emogate::archive::{ArchiveLocation, ArchiveSink, ObjectStoreSink, MULTIPART_THRESHOLD, PART_SIZE};
    let moto = Moto::start();
    moto.create_bucket("emogate-multipart");
    let location = ArchiveLocation::parse("s3://emogate-multipart/big").unwrap();
    let options = s3_config("s3://emogate-multipart/big", &moto.endpoint(), "unused").object_store.0;
    let sink = ObjectStoreSink::connect(&location, &options).unwrap();
    let data: Vec<u8> = (0..MULTIPART_THRESHOLD + PART_SIZE + 12_345).map(|i| (i * 7 % 253) as u8).collect();
    sink.put("dt=2024-01-02/hour=03/t+0+0.parquet", &data).unwrap();
    let code = format!(
        "import boto3, hashlib, json; c = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
         aws_access_key_id='{KEY}', aws_secret_access_key='{KEY}'); \
         body = c.get_object(Bucket='emogate-multipart', Key='big/dt=2024-01-02/hour=03/t+0+0.parquet')['Body'].read(); \
         print(json.dumps({{'size': len(body), 'sha256': hashlib.sha256(body).hexdigest(), \
         'open_uploads': len(c.list_multipart_uploads(Bucket='emogate-multipart').get('Uploads', []))}}))",
        moto.endpoint()
    );
    let out = Command::new(common::python()).args(["-c", &code]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    use sha2::Digest;
    let want = hex::encode(sha2::Sha256::digest(&data));
    assert_eq!(got, json!({"size": data.len(), "sha256": want, "open_uploads": 0}));
}

/// `emogate serve --stage archive` as a child process on the mock cluster (its listener is on
/// 127.0.0.1), archiving to moto: SIGKILLed as soon as the first objects are stored — between a
/// PUT and its commit, or just after one — then started again. Whatever the kill interrupted,
/// objects present before the kill keep their bytes (ETags), and the archive ends with every
/// record once and the offsets committed to the end.
#[test]
fn sigkill_between_put_and_commit_replays_the_same_keys_with_the_same_bytes() {
    let moto = Moto::start();
    moto.create_bucket("emogate-kill");
    let (_kafka, brokers) = mock_cluster_with(&TOPICS);
    produce(&brokers, 0..1200);
    let dir = tempfile::tempdir().unwrap();
    let config = archive_serve_config(
        dir.path(),
        &brokers,
        "s3://emogate-kill/archive",
        "archive-kill",
        "roll_rows = 5\nroll_age_ms = 600000",
        &moto.endpoint(),
    );
    let start = |name: &str| spawn_archive_serve(&config, &dir.path().join(name));
    let log_text = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let mut first = start("first.log");
    common::wait::wait_until("the first objects", TIMEOUT, || {
        assert!(first.try_wait().unwrap().is_none(), "serve exited:\n{}", log_text("first.log"));
        etags(&moto, "emogate-kill").len() >= 2
    });
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let before_kill = etags(&moto, "emogate-kill");
    let committed_at_kill: i64 =
        offsets(&brokers, "archive-kill").values().map(|(c, _)| c.unwrap_or(0)).sum();

    let mut second = start("second.log");
    common::wait::wait_until("every record archived and committed", TIMEOUT, || {
        offsets(&brokers, "archive-kill").values().all(|(c, end)| *c == Some(*end))
    });
    let status = Command::new("kill").args(["-TERM", &second.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(second.wait().unwrap().success(), "graceful stop after the replay:\n{}", log_text("second.log"));

    let after = etags(&moto, "emogate-kill");
    assert_eq!(after.len(), 240, "400 records per partition in 5-row files");
    for (key, etag) in &before_kill {
        assert_eq!(after.get(key), Some(etag), "{key} changed bytes on the replay");
    }
    let keys = row_keys(&moto.readback("s3://emogate-kill/archive"), "pyarrow");
    assert_eq!(keys.len(), 1200);
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 1200, "duplicate rows after the replay");
    // How much the replay rewrote: stored objects minus what the committed offsets covered.
    let covered = committed_at_kill / 5;
    println!(
        "ARCHIVE-KILL objects_before_kill={} committed_records_at_kill={committed_at_kill} \
         objects_rewritten_by_replay={} objects_after={}",
        before_kill.len(),
        (before_kill.len() as i64 - covered).max(0),
        after.len()
    );
}

/// Resident set size of process `pid` in MiB (`VmRSS`).
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

/// `emogate serve --stage archive` (a child process) through an S3 outage while 20,000 more
/// records arrive: its partitions pause, so its RSS stays flat instead of growing with the
/// backlog; after the outage the same process stores every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_stays_flat_through_an_s3_outage_with_a_growing_backlog() {
    let moto = Moto::start();
    moto.create_bucket("emogate-rss");
    let mut proxy = Proxy::open(free_port(), moto.port).await;
    let (_kafka, brokers) = mock_cluster_with(&TOPICS);
    let b = brokers.clone();
    tokio::task::spawn_blocking(move || produce(&b, 0..1_200)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = archive_serve_config(
        dir.path(),
        &brokers,
        "s3://emogate-rss/archive",
        "archive-rss",
        "roll_rows = 400\nroll_age_ms = 2000\nretry_initial_ms = 200\nretry_max_ms = 1000",
        &format!("http://127.0.0.1:{}", proxy.port),
    );
    let mut serve = spawn_archive_serve(&config, &dir.path().join("serve.log"));
    let pid = serve.id();
    let all_committed =
        |brokers: &str| offsets(brokers, "archive-rss").values().all(|(c, end)| *c == Some(*end));
    let started = Instant::now();
    while !all_committed(&brokers) {
        assert!(started.elapsed() < TIMEOUT && serve.try_wait().unwrap().is_none(), "warm-up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let warm = rss_mib(pid);
    proxy.close().await;
    let b = brokers.clone();
    tokio::task::spawn_blocking(move || produce(&b, 1_200..21_200)).await.unwrap();
    let mut peak: f64 = warm;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(serve.try_wait().unwrap().is_none(), "serve exited during the outage");
        peak = peak.max(rss_mib(pid));
    }
    let uncommitted: i64 =
        offsets(&brokers, "archive-rss").values().map(|(c, end)| end - c.unwrap_or(0)).sum();
    proxy.reopen().await;
    let started = Instant::now();
    while !all_committed(&brokers) {
        assert!(started.elapsed() < TIMEOUT * 2 && serve.try_wait().unwrap().is_none(), "catching up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let caught_up = started.elapsed().as_secs_f64();
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    assert!(serve.wait().unwrap().success());
    let keys = row_keys(&moto.readback("s3://emogate-rss/archive"), "pyarrow");
    println!(
        "ARCHIVE-S3-OUTAGE-RSS warm_rss_mib={warm:.1} peak_rss_during_outage_mib={peak:.1} \
         backlog_during_outage={uncommitted} records caught_up_after={caught_up:.1}s rows={} distinct={}",
        keys.len(),
        keys.iter().collect::<BTreeSet<_>>().len()
    );
    assert_eq!(keys.len(), 21_200);
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 21_200, "duplicate rows");
    assert!(uncommitted >= 20_000, "the backlog was not held back during the outage: {uncommitted}");
    assert!(peak - warm < 24.0, "RSS grew {:.1} MiB during the outage", peak - warm);
}

/// Writes the config of an archive-only `serve` on the mock cluster `brokers`, archiving to
/// `url` through `endpoint` in `group`, with the extra `[archive]` lines `archive`.
fn archive_serve_config(
    dir: &std::path::Path,
    brokers: &str,
    url: &str,
    group: &str,
    archive: &str,
    endpoint: &str,
) -> std::path::PathBuf {
    let config = dir.join("emogate.toml");
    let text = format!(
        "[kafka]\nbrokers = \"{brokers}\"\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
         [archive]\nurl = \"{url}\"\ngroup_id = \"{group}\"\n{archive}\n\
         [archive.object_store]\nendpoint = \"{endpoint}\"\nallow_http = \"true\"\n\
         [telemetry]\nlisten = \"127.0.0.1:{}\"\nlog_format = \"pretty\"\n",
        free_port()
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// `emogate serve --stage archive --config config`, credentials in its environment, stderr to `log`.
fn spawn_archive_serve(config: &std::path::Path, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_emogate"))
        .args(["serve", "--stage", "archive", "--config", config.to_str().unwrap()])
        .envs(credentials())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}
