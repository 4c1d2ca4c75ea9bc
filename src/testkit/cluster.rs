//! Helpers around a Kafka cluster for the demo, the load generator and the tests: an
//! in-process librdkafka mock cluster, topic creation on it or on real brokers, bulk
//! producing, and an independent read-back of the output topics (a plain assign-and-read
//! consumer, no group, `read_committed`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, DefaultProducerContext, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::TopicsConfig;
use crate::pipeline::PipelineError;

/// An in-process librdkafka mock cluster whose consumer groups form at once.
///
/// `MockCluster::new` keeps librdkafka's default initial rebalance delay of 3 s (the broker's
/// `group.initial.rebalance.delay.ms`), so every group's first join sat idle for 3 s: in the
/// demo, in each `emogate bench` end-to-end run between the raw run and the timed window, and
/// in every mock-cluster test. Here the cluster lives inside a client of its own
/// (`test.mock.num.brokers`) and the delay is set to 0, which rdkafka's wrapper does not expose.
/// Later joins still rebalance as a real broker does.
pub struct MockKafka {
    /// Owns the mock cluster: it lives as long as this client.
    client: BaseProducer,
}

impl MockKafka {
    /// Starts a cluster of `brokers` brokers.
    pub fn new(brokers: i32) -> Result<Self, PipelineError> {
        let client: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", brokers.to_string())
            .create()
            .map_err(PipelineError::kafka("start mock cluster"))?;
        // SAFETY: the handle is the live client's own mock cluster (checked non-null), and the
        // call only stores the delay under the cluster's lock.
        unsafe {
            let cluster = rdkafka::bindings::rd_kafka_handle_mock_cluster(client.client().native_ptr());
            if cluster.is_null() {
                return Err(PipelineError::Fatal("librdkafka created no mock cluster".into()));
            }
            rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
        }
        Ok(MockKafka { client })
    }

    /// The cluster, for creating topics and injecting faults.
    pub fn cluster(&self) -> MockCluster<'_, DefaultProducerContext> {
        self.client.client().mock_cluster().expect("the client was created with a mock cluster")
    }

    /// `bootstrap.servers` of the cluster.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster().bootstrap_servers()
    }
}

/// Creates the pipeline's topics on a mock cluster (its CreateTopics API is not supported;
/// auto-created topics would get a default partition count).
pub fn create_topics(
    mock: &MockCluster<'_, impl rdkafka::ClientContext>,
    topics: &TopicsConfig,
    partitions: i32,
) -> Result<(), PipelineError> {
    for (topic, count) in topic_specs(topics, partitions) {
        mock.create_topic(topic, count, 1).map_err(PipelineError::kafka("create mock topic"))?;
    }
    Ok(())
}

/// The pipeline's topics with their partition counts (the dead-letter topic has one).
fn topic_specs(topics: &TopicsConfig, partitions: i32) -> [(&str, i32); 4] {
    [
        (topics.input.as_str(), partitions),
        (topics.accepted.as_str(), partitions),
        (topics.rejected.as_str(), partitions),
        (topics.dlq.as_str(), 1),
    ]
}

/// Creates the pipeline's topics on real brokers with the admin API (replication factor 1:
/// the demo and the bench run against one local broker).
pub async fn create_topics_on(
    brokers: &str,
    topics: &TopicsConfig,
    partitions: i32,
) -> Result<(), PipelineError> {
    let admin = admin(brokers)?;
    let specs: Vec<NewTopic<'_>> = topic_specs(topics, partitions)
        .into_iter()
        .map(|(name, count)| NewTopic::new(name, count, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(&specs, &AdminOptions::new())
        .await
        .map_err(PipelineError::kafka("create topics"))?;
    for r in results {
        r.map_err(|(topic, code)| PipelineError::Fatal(format!("cannot create topic {topic}: {code:?}")))?;
    }
    Ok(())
}

/// Deletes the pipeline's topics from real brokers (best effort: a broker that refuses only
/// leaves them behind, which the caller reports).
pub async fn delete_topics_on(brokers: &str, topics: &TopicsConfig) -> Result<(), PipelineError> {
    let admin = admin(brokers)?;
    let names: Vec<&str> = topic_specs(topics, 1).iter().map(|(name, _)| *name).collect();
    let results = admin
        .delete_topics(&names, &AdminOptions::new())
        .await
        .map_err(PipelineError::kafka("delete topics"))?;
    for r in results {
        r.map_err(|(topic, code)| PipelineError::Fatal(format!("cannot delete topic {topic}: {code:?}")))?;
    }
    Ok(())
}

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>, PipelineError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(PipelineError::kafka("create admin client"))
}

/// A message to produce: key and value.
pub type KeyedPayload = (Option<Vec<u8>>, Vec<u8>);

/// An idempotent producer (acknowledged by all replicas) of feature records for the demo, the
/// bench, `emogate produce` and the tests. `extra` properties are applied after the defaults
/// (SASL/TLS, or `compression.type`).
///
/// Uncompressed by default: float feature vectors barely compress (zstd level 3 saved 7.6 % of
/// the synthetic corpus's bytes, lz4 nothing), while decompressing them raised the infer
/// stage's consumer thread from 1.9–2.2 % to 3.5–3.6 % of the process's CPU, taken from the
/// model's cores (docs/benchmarks.md).
pub fn producer(brokers: &str, extra: &[(String, String)]) -> Result<FutureProducer, PipelineError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "none");
    for (k, v) in extra {
        config.set(k, v);
    }
    config.create().map_err(PipelineError::kafka("create producer"))
}

/// Produces `messages` to `topic` with `producer` and waits for every delivery report.
/// Reusing one producer matters: creating an idempotent producer costs a round of broker
/// requests, which dominated the demo's end-to-end time when it made one per chunk.
pub async fn send_all(
    producer: &FutureProducer,
    topic: &str,
    messages: &[KeyedPayload],
) -> Result<(), PipelineError> {
    for chunk in messages.chunks(1000) {
        let sends = chunk.iter().map(|(key, payload)| {
            let mut record = FutureRecord::to(topic).payload(payload);
            if let Some(key) = key {
                record = record.key(key);
            }
            producer.send(record, Timeout::After(Duration::from_secs(30)))
        });
        for result in join_all(sends).await {
            result.map_err(|(e, _)| PipelineError::Kafka { action: "produce", source: e })?;
        }
    }
    Ok(())
}

/// Produces `messages` to `topic` with a fresh [`producer`] and waits for every delivery report.
pub async fn produce_all(
    brokers: &str,
    topic: &str,
    messages: &[KeyedPayload],
    extra: &[(String, String)],
) -> Result<(), PipelineError> {
    send_all(&producer(brokers, extra)?, topic, messages).await
}

/// One message read back from an output topic.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadBack {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

/// A plain consumer (no group membership: `assign`, nothing committed) of every partition
/// of `topics` from the beginning, seeing only committed transactional output
/// (`read_committed`). `extra` properties are applied last.
pub fn committed_reader(
    brokers: &str,
    group: &str,
    topics: &[&str],
    extra: &[(&str, &str)],
) -> Result<BaseConsumer, PipelineError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config.create().map_err(PipelineError::kafka("create reader"))?;
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(PipelineError::kafka("reader metadata"))?;
        for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .map_err(PipelineError::kafka("assign"))?;
        }
    }
    consumer.assign(&tpl).map_err(PipelineError::kafka("assign"))?;
    Ok(consumer)
}

/// Reads every committed message of `topics` (all their partitions) from the beginning until
/// `expected` messages were seen and nothing more arrives for `settle`, or `timeout` passes.
/// Blocking (call it from a blocking context).
pub fn read_back(
    brokers: &str,
    topics: &[&str],
    expected: usize,
    settle: Duration,
    timeout: Duration,
) -> Result<Vec<ReadBack>, PipelineError> {
    let consumer = committed_reader(brokers, "emogate-read-back", topics, &[])?;
    let started = Instant::now();
    let mut last_message = Instant::now();
    let mut out = Vec::new();
    while started.elapsed() < timeout {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last_message = Instant::now();
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(ReadBack {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers,
                });
            }
            Some(Err(e)) => tracing::debug!(error = %e, "read-back poll error"),
            None => {
                if out.len() >= expected && last_message.elapsed() >= settle {
                    break;
                }
            }
        }
    }
    Ok(out)
}
