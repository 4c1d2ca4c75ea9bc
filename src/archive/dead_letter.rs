//! Output records the archive cannot decode go to a dead-letter topic of their own
//! (`archive.dlq_topic`, default `emotion.archive.dlq`) before their offsets are committed.
//!
//! The output topics are written by emogate, so such a record means another producer or a
//! schema the archive does not know. Skipping it would silently empty the archive after a
//! schema change; stopping would stall it. Dead-lettering keeps the archive going and the
//! record (with why) where an operator can find and replay it. The headers are those of the
//! infer stage's dead letters (`emogate.error`, `emogate.error.detail`, `emogate.input`), so one
//! tool reads both.
//!
//! [`KafkaDeadLetters::send`] waits for the broker's acknowledgement (idempotent producer,
//! `acks=all`): the archiver commits past the record only once it is stored.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use crate::kafka_settings::ClientSettings;
use crate::pipeline::router::{
    dead_letter_payload, HEADER_ERROR, HEADER_ERROR_DETAIL, HEADER_INPUT, HEADER_TRUNCATED_FROM,
};

/// How long one dead letter may take to be acknowledged (librdkafka retries within it).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// An output record that is not an `EmotionPrediction`.
#[derive(Debug, Clone, Copy)]
pub struct UndecodableRecord<'a> {
    /// Output topic it was read from.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key, copied to the dead letter.
    pub key: Option<&'a [u8]>,
    /// Its payload (`None`: a tombstone), copied unchanged up to
    /// [`crate::pipeline::router::MAX_DEAD_LETTER_PAYLOAD`] (then cut, with the full size in
    /// `emogate.error.truncated_from`: a letter over the producer's limit would never be stored).
    pub payload: Option<&'a [u8]>,
    /// Stable reason code (`empty_payload` or the codec's).
    pub reason: &'static str,
    /// Human-readable detail.
    pub detail: &'a str,
}

/// A dead letter that could not be stored. `what` reads `topic/partition/offset to dlq`.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The producer could not be created.
    #[error("creating the archive dead-letter producer: {0}")]
    Create(#[source] Box<KafkaError>),
    /// The broker did not acknowledge it.
    #[error("dead-lettering {what}: {source}")]
    Delivery {
        what: String,
        #[source]
        source: Box<KafkaError>,
    },
    /// No acknowledgement within the delivery timeout.
    #[error("dead-lettering {what}: no acknowledgement within {timeout:?}")]
    Timeout { what: String, timeout: Duration },
}

/// Where undecodable records go.
pub trait ArchiveDeadLetters: Send + Sync {
    /// Stores `record` in the dead-letter topic; returns once it is acknowledged.
    fn send(&self, record: &UndecodableRecord<'_>) -> Result<(), DeadLetterError>;
}

/// The dead-letter topic on the archive's Kafka cluster.
pub struct KafkaDeadLetters {
    producer: BaseProducer<DeliveryContext>,
    topic: String,
}

impl KafkaDeadLetters {
    /// A producer to `topic` on `brokers`, with the cluster's pass-through `properties` (SASL,
    /// TLS); idempotence and `acks=all` always.
    pub fn new(
        brokers: &str,
        properties: &BTreeMap<String, String>,
        topic: &str,
    ) -> Result<KafkaDeadLetters, DeadLetterError> {
        let producer = ClientSettings::new(brokers)
            .default_value("client.id", "emogate-archive-dlq")
            .default_value("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string())
            .properties(properties)
            .owned("enable.idempotence", "true")
            .owned("acks", "all")
            .build()
            .create_with_context(DeliveryContext)
            .map_err(|e| DeadLetterError::Create(Box::new(e)))?;
        Ok(KafkaDeadLetters { producer, topic: topic.to_string() })
    }
}

impl ArchiveDeadLetters for KafkaDeadLetters {
    fn send(&self, record: &UndecodableRecord<'_>) -> Result<(), DeadLetterError> {
        let input = format!("{}/{}/{}", record.topic, record.partition, record.offset);
        let (payload, cut_from) = match record.payload {
            Some(p) => {
                let (kept, cut_from) = dead_letter_payload(p);
                (Some(kept), cut_from.map(|n| n.to_string()))
            }
            None => (None, None),
        };
        let mut headers = OwnedHeaders::new()
            .insert(Header { key: HEADER_ERROR, value: Some(record.reason) })
            .insert(Header { key: HEADER_ERROR_DETAIL, value: Some(record.detail) })
            .insert(Header { key: HEADER_INPUT, value: Some(&input) });
        if let Some(size) = &cut_from {
            headers = headers.insert(Header { key: HEADER_TRUNCATED_FROM, value: Some(size) });
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let mut message: BaseRecord<'_, [u8], [u8], _> =
            BaseRecord::with_opaque_to(&self.topic, Box::new(tx)).headers(headers);
        if let Some(key) = record.key {
            message = message.key(key);
        }
        if let Some(payload) = payload {
            message = message.payload(payload);
        }
        let what = || format!("{input} to {}", self.topic);
        let failed = |source| DeadLetterError::Delivery { what: what(), source: Box::new(source) };
        self.producer.send(message).map_err(|(e, _)| failed(e))?;
        // Queue-full or transient errors are retried by librdkafka within message.timeout.ms;
        // the extra second covers the final delivery report.
        let deadline = Instant::now() + DELIVERY_TIMEOUT + Duration::from_secs(1);
        loop {
            self.producer.poll(Duration::from_millis(50));
            match rx.try_recv() {
                Ok(result) => return result.map_err(failed),
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(failed(KafkaError::Canceled));
                }
                Err(mpsc::TryRecvError::Empty) if Instant::now() >= deadline => {
                    return Err(DeadLetterError::Timeout { what: what(), timeout: DELIVERY_TIMEOUT });
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
        }
    }
}

impl Drop for KafkaDeadLetters {
    fn drop(&mut self) {
        // Every send waited for its acknowledgement, so there is nothing left to flush; this
        // only bounds the close.
        let _ = self.producer.flush(Duration::from_secs(5));
    }
}

/// Hands each delivery report to the `send` that waits for it.
struct DeliveryContext;

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<mpsc::SyncSender<Result<(), KafkaError>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, reply: Self::DeliveryOpaque) {
        let _ = reply.send(result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
    }
}
