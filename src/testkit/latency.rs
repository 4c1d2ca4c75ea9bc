//! End-to-end latency at a fixed offered load (DESIGN §3, `emogate bench`): an open-loop
//! producer sends records on a fixed schedule and an independent consumer of the output
//! topics notes when each record's answer becomes visible (`read_committed`, so after the
//! exactly-once transaction committed).
//!
//! Latency is measured from each record's *scheduled* send time, not from when the producer
//! got round to sending it: if the load generator falls behind (the machine is saturated),
//! the delay counts against the pipeline instead of silently lowering the offered load
//! (coordinated omission). The achieved send rate is reported next to the offered one so a
//! run whose generator could not keep up is visible.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::bench::percentile;
use super::cluster::KeyedPayload;
use crate::pipeline::PipelineError;

/// Offset from the start of the run at which record `index` is due at `rate` records/s.
pub fn due(index: usize, rate: f64) -> Duration {
    Duration::from_secs_f64(index as f64 / rate)
}

/// What the latency run measured.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LatencyReport {
    /// Records/s the schedule asked for.
    pub offered_records_per_sec: f64,
    /// Records/s the producer really sent at (first to last send).
    pub achieved_records_per_sec: f64,
    /// Records whose answer was seen on an output topic.
    pub measured: usize,
    /// Records sent with a key the watcher looks for.
    pub sent: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencyReport {
    /// Summarises per-record latencies (ms, any order).
    pub fn from_latencies(mut latencies_ms: Vec<f64>, sent: usize, offered: f64, achieved: f64) -> Self {
        latencies_ms.sort_by(f64::total_cmp);
        LatencyReport {
            offered_records_per_sec: offered,
            achieved_records_per_sec: achieved,
            measured: latencies_ms.len(),
            sent,
            p50_ms: percentile(&latencies_ms, 0.50),
            p99_ms: percentile(&latencies_ms, 0.99),
            max_ms: latencies_ms.last().copied().unwrap_or(0.0),
        }
    }
}

/// When the paced run started; set once by [`send_paced`], read by [`watch_outputs`].
pub type Origin = Arc<OnceLock<Instant>>;

/// Sends `messages` in order, message `i` at `origin + due(i, rate)`, without waiting for
/// deliveries in between (an open loop), then awaits every delivery report. Returns the
/// achieved rate.
pub async fn send_paced(
    producer: &FutureProducer,
    topic: &str,
    messages: &[KeyedPayload],
    rate: f64,
    origin: &Origin,
) -> Result<f64, PipelineError> {
    let start = *origin.get_or_init(Instant::now);
    let mut deliveries = Vec::with_capacity(messages.len());
    for (i, (key, payload)) in messages.iter().enumerate() {
        tokio::time::sleep_until((start + due(i, rate)).into()).await;
        let mut record = FutureRecord::to(topic).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        // `send_result` enqueues now; `send` would only enqueue when its future is polled.
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| PipelineError::Kafka { action: "produce (enqueue)", source: e })?;
        deliveries.push(delivery);
    }
    let last_send = start.elapsed().as_secs_f64();
    for result in join_all(deliveries).await {
        let delivered = result.map_err(|_| PipelineError::Fatal("producer dropped a delivery".into()))?;
        delivered.map_err(|(e, _)| PipelineError::Kafka { action: "produce", source: e })?;
    }
    Ok(if messages.len() > 1 { (messages.len() - 1) as f64 / last_send.max(1e-9) } else { rate })
}

/// Reads `topics` (all partitions, from the beginning, `read_committed`) until every key in
/// `index_of` was seen once, `stop` is set, or `timeout` passes, and returns each key's
/// latency in ms from its scheduled send time. Blocking: run it on its own thread.
pub fn watch_outputs(
    brokers: &str,
    topics: &[&str],
    index_of: &HashMap<Vec<u8>, usize>,
    rate: f64,
    origin: &Origin,
    stop: &AtomicBool,
    timeout: Duration,
) -> Result<Vec<f64>, PipelineError> {
    // A short fetch wait: the mock cluster holds an empty fetch for the whole wait.
    let consumer = super::cluster::committed_reader(
        brokers,
        "emogate-latency-watch",
        topics,
        &[("fetch.wait.max.ms", "10")],
    )?;
    let started = Instant::now();
    let mut seen = vec![false; index_of.values().max().map_or(0, |m| m + 1)];
    let mut latencies = Vec::with_capacity(index_of.len());
    while latencies.len() < index_of.len() && !stop.load(Ordering::Relaxed) && started.elapsed() < timeout {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) else { continue };
        let arrived = Instant::now();
        let (Some(start), Some(&i)) = (origin.get(), m.key().and_then(|k| index_of.get(k))) else { continue };
        if std::mem::replace(&mut seen[i], true) {
            continue; // a replayed batch's duplicate; the first appearance counts
        }
        let scheduled = *start + due(i, rate);
        latencies.push(arrived.saturating_duration_since(scheduled).as_secs_f64() * 1e3);
    }
    Ok(latencies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_spaces_records_evenly() {
        assert_eq!(due(0, 500.0), Duration::ZERO);
        assert_eq!(due(1, 500.0), Duration::from_millis(2));
        assert_eq!(due(1000, 500.0), Duration::from_secs(2));
        assert_eq!(due(3, 0.5), Duration::from_secs(6));
    }

    #[test]
    fn report_uses_nearest_rank_percentiles() {
        let latencies: Vec<f64> = (1..=200).rev().map(f64::from).collect();
        let r = LatencyReport::from_latencies(latencies, 210, 600.0, 590.0);
        assert_eq!((r.measured, r.sent), (200, 210));
        assert_eq!((r.p50_ms, r.p99_ms, r.max_ms), (100.0, 198.0, 200.0));
        assert_eq!(LatencyReport::from_latencies(Vec::new(), 0, 1.0, 1.0).p99_ms, 0.0);
    }
}
