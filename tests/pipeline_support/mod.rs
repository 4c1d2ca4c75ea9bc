//! Shared set-up of the pipeline integration tests: brokers (librdkafka mock cluster, a Tansu
//! process started on 127.0.0.1, or an external cluster from `EMOGATE_TEST_BROKERS`), input
//! records, running infer stages until a target, and the independent Python read-back.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use emogate::codec::Framing;
use emogate::config::{Config, DeliveryMode, TopicsConfig};
use emogate::lifecycle::shutdown::{self, ShutdownTrigger};
use emogate::lifecycle::StageContext;
use emogate::pipeline::{InferReport, InferStage, PipelineError};
use emogate::telemetry::{Health, Metrics};
use emogate::testkit::cluster::{self, KeyedPayload};
use emogate::testkit::synthetic::{bad_messages, BadMessage, SyntheticFeatures};

use crate::common;
use crate::common::wait::wait_until;

pub const PARTITIONS: i32 = 4;

/// Unique topic names, so runs against a shared external cluster never see each other.
pub fn unique_topics(tag: &str) -> TopicsConfig {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let id = format!("{tag}-{}-{n}", std::process::id());
    TopicsConfig {
        input: format!("ser.features.{id}"),
        accepted: format!("emotion.accepted.{id}"),
        rejected: format!("emotion.rejected.{id}"),
        dlq: format!("emotion.dlq.{id}"),
    }
}

/// Config for a test stage on the fixture model.
pub fn test_config(brokers: &str, topics: &TopicsConfig, group: &str, mode: DeliveryMode) -> Config {
    let mut c = Config::default();
    c.kafka.brokers = brokers.to_string();
    c.kafka.topics = topics.clone();
    c.kafka.group_id = group.to_string();
    c.archive.group_id = format!("{group}-archive");
    c.model.dir = common::repo_root().join("models/fixture");
    c.model.execution_provider = emogate::model::ProviderChoice::Cpu;
    c.model.intra_threads = 1;
    c.delivery.mode = mode;
    c.delivery.commit_timeout_ms = 20_000;
    c.delivery.transaction_timeout_ms = 30_000;
    c.policy.thresholds = Some(fixture_thresholds(&c));
    c.batch.max_records = 32;
    c.batch.max_wait_ms = 20;
    c.telemetry.listen = None;
    c.telemetry.stats_interval_ms = 0;
    c.shutdown.drain_deadline_ms = 20_000;
    c.kafka.properties.0.insert("session.timeout.ms".into(), "6000".into());
    c.kafka.properties.0.insert("heartbeat.interval.ms".into(), "500".into());
    c
}

/// The fixture has no calibrated thresholds (its entropies all sit just below ln 7): fit ones
/// that accept about half of the synthetic records, once per test binary.
fn fixture_thresholds(config: &Config) -> emogate::PerAttribute<f32> {
    static THRESHOLDS: std::sync::OnceLock<emogate::PerAttribute<f32>> = std::sync::OnceLock::new();
    *THRESHOLDS.get_or_init(|| {
        let mut c = config.clone();
        c.policy.coverage = 0.5;
        emogate::testkit::demo::warm_up_thresholds(&c, 256, 99).expect("warm-up thresholds")
    })
}

/// Feature dimension of the fixture model.
pub fn fixture_dims() -> usize {
    emogate::model::Manifest::load(&common::repo_root().join("models/fixture")).unwrap().feature_dims
}

/// `n` good records (keyed by utterance id) followed by one of each bad kind.
pub fn input_messages(n: usize, seed: u64) -> (Vec<KeyedPayload>, Vec<BadMessage>) {
    let dims = fixture_dims();
    let mut synth = SyntheticFeatures::new(dims, seed);
    let mut messages: Vec<KeyedPayload> = (0..n)
        .map(|i| {
            let framing = if i % 3 == 0 { Framing::Raw } else { Framing::SingleObject };
            let (id, bytes) = synth.encoded(1_700_000_000_000, &framing);
            (Some(id.into_bytes()), bytes)
        })
        .collect();
    let bad = bad_messages(dims, seed);
    messages.extend(bad.iter().map(|b| (None, b.payload.clone())));
    (messages, bad)
}

/// A running infer stage.
pub struct Running {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub trigger: ShutdownTrigger,
    pub handle: tokio::task::JoinHandle<Result<InferReport, PipelineError>>,
}

impl Running {
    /// Graceful stop: drain and commit.
    pub async fn stop(self) -> InferReport {
        self.trigger.trigger();
        self.handle.await.expect("stage task").expect("stage failed")
    }

    /// Crash: drop the stage mid-flight, no drain, no commit.
    pub async fn crash(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

pub fn start(config: Config) -> Running {
    // Logs go to the test's captured output (shown for failing tests); RUST_LOG adjusts them.
    emogate::telemetry::init_tracing(emogate::config::LogFormat::Pretty, "warn,emogate=info").unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let (trigger, listener) = shutdown::channel();
    let health = Health::new();
    let ctx = StageContext {
        config: Arc::new(config),
        metrics: Arc::clone(&metrics),
        health: Arc::clone(&health),
        shutdown: listener,
    };
    let stage = tokio::task::block_in_place(|| InferStage::new(ctx)).expect("stage set-up");
    Running { metrics, health, trigger, handle: tokio::spawn(stage.run()) }
}

/// The independent read-back (confluent-kafka + fastavro) as JSON.
pub fn python_read_back(brokers: &str, topics: &TopicsConfig, expected: usize) -> serde_json::Value {
    let list = format!("{},{},{}", topics.accepted, topics.rejected, topics.dlq);
    let out = common::run_python(
        "scripts/kafka_readback.py",
        &["--brokers", brokers, "--topics", &list, "--expected", &expected.to_string()],
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("read-back printed non-JSON ({e}): {out}"))
}

/// Checks the read-back: every input answered, `max_duplicates` at most, DLQ reasons as sent.
pub fn assert_complete(v: &serde_json::Value, good: usize, bad: &[BadMessage], allow_duplicates: bool) {
    assert!(v["problems"].as_array().unwrap().is_empty(), "read-back problems: {v}");
    assert_eq!(
        v["distinct_inputs"].as_u64().unwrap() as usize,
        good + bad.len(),
        "every input answered: {v}"
    );
    let decisions = &v["decisions"];
    let predictions =
        decisions["ACCEPTED"].as_u64().unwrap_or(0) + decisions["REJECTED"].as_u64().unwrap_or(0);
    let dups = v["duplicates"].as_u64().unwrap() as usize;
    if !allow_duplicates {
        assert_eq!(dups, 0, "duplicates: {v}");
        assert_eq!(predictions as usize, good, "exactly one prediction per good record: {v}");
    } else {
        assert!(predictions as usize >= good, "{v}");
    }
    for b in bad {
        assert!(
            v["dlq_reasons"][b.expected_reason].as_u64().unwrap_or(0) >= 1,
            "missing DLQ reason {}: {v}",
            b.expected_reason
        );
    }
}

/// A Tansu broker process on a free 127.0.0.1 port, killed (by PID) on drop; or the external
/// cluster in `EMOGATE_TEST_BROKERS`.
pub struct Broker {
    pub brokers: String,
    child: Option<Child>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Path of the Tansu binary: `EMOGATE_TANSU` or `.cache/bin/tansu` (installed by `make deps`).
pub fn tansu_binary() -> PathBuf {
    let path = std::env::var_os("EMOGATE_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_root().join(".cache/bin/tansu"));
    assert!(
        path.exists(),
        "Tansu broker not found at {} — run `make deps` (or set EMOGATE_TANSU)",
        path.display()
    );
    path
}

impl Broker {
    /// `EMOGATE_TEST_BROKERS` if set, else a fresh Tansu.
    pub fn start() -> Broker {
        if let Ok(brokers) = std::env::var("EMOGATE_TEST_BROKERS") {
            if !brokers.trim().is_empty() {
                return Broker { brokers, child: None };
            }
        }
        Broker::tansu()
    }

    /// A handle on brokers this value does not own (nothing is killed on drop).
    pub fn at(brokers: &str) -> Broker {
        Broker { brokers: brokers.to_string(), child: None }
    }

    /// True when the tests run against an external cluster.
    pub fn is_external(&self) -> bool {
        self.child.is_none()
    }

    pub fn tansu() -> Broker {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let broker = Broker { brokers: format!("127.0.0.1:{port}"), child: Some(child) };
        wait_until(&format!("tansu listening on {port}"), Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        broker
    }

    /// Creates the topics explicitly (auto-creation would pick its own partition count).
    pub async fn create_topics(&self, topics: &TopicsConfig) {
        cluster::create_topics_on(&self.brokers, topics, PARTITIONS).await.expect("create topics");
    }

    pub async fn produce(&self, topic: &str, messages: &[KeyedPayload]) {
        cluster::produce_all(&self.brokers, topic, messages, &[]).await.expect("produce input");
    }
}
