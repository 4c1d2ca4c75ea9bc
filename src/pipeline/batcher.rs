//! Micro-batching, without Kafka: records go in one at a time, batches come out when they
//! hold `max_records` records or their first record is `max_wait` old, whichever comes first.
//!
//! Features are decoded straight into the batch's row-major tensor (no per-record `Vec`), and a
//! record that fails to decode becomes a [`DeadLetter`] *in the same batch*, so its offset is
//! committed only together with the batch, after the dead letter itself was produced. Time is
//! passed in by the caller (`now`), which keeps the closing rule testable without sleeping.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::codec::{FeatureDecoder, Framing, RecordMeta};

/// A record's place in the input topic (the pipeline consumes one topic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// A decoded record's metadata, one per tensor row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub position: Position,
    /// Kafka message key, reused as the output key.
    pub key: Option<Vec<u8>>,
    pub meta: RecordMeta,
    /// The input's framing; inference failures are re-encoded the same way for the DLQ.
    pub framing: Framing,
    /// Kafka message timestamp (ms), for the end-to-end latency histogram.
    pub kafka_timestamp_ms: Option<i64>,
}

/// A record that goes to the dead-letter topic instead of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub position: Position,
    pub key: Option<Vec<u8>>,
    /// The original message value, byte for byte (or the re-encoded record, see `dlq`).
    pub payload: Vec<u8>,
    /// Stable reason code (`emogate.error` header, metric label).
    pub reason: &'static str,
    /// Human-readable detail (`emogate.error.detail` header).
    pub detail: String,
}

/// First and last offset a batch holds for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRange {
    pub first: i64,
    pub last: i64,
}

/// A closed micro-batch.
#[derive(Debug, Default)]
pub struct Batch {
    /// Sequence number, unique within a process.
    pub id: u64,
    /// Decoded records, in consumption order; row `i` is `features[i*dims..(i+1)*dims]`.
    pub rows: Vec<Row>,
    pub features: Vec<f32>,
    pub dead: Vec<DeadLetter>,
    /// Offsets covered per partition (decoded and dead-lettered records alike).
    pub ranges: BTreeMap<i32, OffsetRange>,
}

impl Batch {
    /// Records in the batch, decoded or not.
    pub fn len(&self) -> usize {
        self.rows.len() + self.dead.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch without the records of partitions for which `keep` is false (revoked
    /// partitions: the new owner consumes them again). `dims` is the row width.
    pub fn retain_partitions(self, dims: usize, keep: impl Fn(i32) -> bool) -> Batch {
        let mut kept = Batch { id: self.id, ..Batch::default() };
        for (row, features) in self.rows.into_iter().zip(self.features.chunks_exact(dims.max(1))) {
            if keep(row.position.partition) {
                kept.features.extend_from_slice(features);
                kept.rows.push(row);
            }
        }
        kept.dead = self.dead.into_iter().filter(|d| keep(d.position.partition)).collect();
        kept.ranges = self.ranges.into_iter().filter(|(p, _)| keep(*p)).collect();
        kept
    }
}

/// One input message as the batcher sees it.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub position: Position,
    pub key: Option<&'a [u8]>,
    /// `None` for a tombstone (no value), which is dead-lettered as `empty_value`.
    pub payload: Option<&'a [u8]>,
    pub kafka_timestamp_ms: Option<i64>,
}

/// DLQ reason for a message without a value (not a codec error: there are no bytes to decode).
pub const REASON_EMPTY_VALUE: &str = "empty_value";

/// Accumulates records into batches.
#[derive(Debug)]
pub struct Batcher {
    decoder: FeatureDecoder,
    max_records: usize,
    max_wait: Duration,
    current: Batch,
    opened_at: Option<Instant>,
    next_id: u64,
}

impl Batcher {
    pub fn new(decoder: FeatureDecoder, max_records: usize, max_wait: Duration) -> Batcher {
        let max_records = max_records.max(1);
        Batcher { decoder, max_records, max_wait, current: Batch::default(), opened_at: None, next_id: 0 }
    }

    /// Feature dimension of one row.
    pub fn dims(&self) -> usize {
        self.decoder.expected_dims()
    }

    /// Adds one message (decoding it into the next row, or dead-lettering it). Returns the
    /// closed batch when this record filled it.
    pub fn push(&mut self, now: Instant, msg: Incoming<'_>) -> Option<Batch> {
        self.opened_at.get_or_insert(now);
        let dims = self.dims();
        let position = msg.position;
        let key = msg.key.map(<[u8]>::to_vec);
        match msg.payload {
            None => self.current.dead.push(DeadLetter {
                position,
                key,
                payload: Vec::new(),
                reason: REASON_EMPTY_VALUE,
                detail: "message has no value".into(),
            }),
            Some(bytes) => {
                let start = self.current.features.len();
                self.current.features.resize(start + dims, 0.0);
                match self.decoder.decode_into(bytes, &mut self.current.features[start..]) {
                    Ok((meta, framing)) => self.current.rows.push(Row {
                        position,
                        key,
                        meta,
                        framing,
                        kafka_timestamp_ms: msg.kafka_timestamp_ms,
                    }),
                    Err(e) => {
                        self.current.features.truncate(start);
                        self.current.dead.push(DeadLetter {
                            position,
                            key,
                            payload: bytes.to_vec(),
                            reason: e.reason(),
                            detail: e.to_string(),
                        });
                    }
                }
            }
        }
        self.current
            .ranges
            .entry(position.partition)
            .and_modify(|r| {
                r.first = r.first.min(position.offset);
                r.last = r.last.max(position.offset);
            })
            .or_insert(OffsetRange { first: position.offset, last: position.offset });
        (self.current.len() >= self.max_records).then(|| self.take_current())
    }

    /// When the open batch must close (its first record's arrival + `max_wait`).
    pub fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.max_wait)
    }

    /// Closes the open batch if its deadline has passed.
    pub fn poll_deadline(&mut self, now: Instant) -> Option<Batch> {
        match self.deadline() {
            Some(deadline) if now >= deadline => Some(self.take_current()),
            _ => None,
        }
    }

    /// Closes the open batch now, if it holds anything (shutdown, rebalance).
    pub fn flush(&mut self) -> Option<Batch> {
        (!self.current.is_empty()).then(|| self.take_current())
    }

    /// The open batch's first offset per partition (what a rewind must seek back to).
    pub fn open_ranges(&self) -> &BTreeMap<i32, OffsetRange> {
        &self.current.ranges
    }

    /// Drops the open batch's records of partitions for which `keep` is false (revoked
    /// partitions: their records will be consumed again by the new owner).
    pub fn retain_partitions(&mut self, keep: impl Fn(i32) -> bool) {
        let kept = std::mem::take(&mut self.current).retain_partitions(self.dims(), keep);
        if kept.is_empty() {
            self.opened_at = None;
        }
        self.current = kept;
    }

    /// Discards the open batch (after a rewind, its records will be consumed again).
    pub fn clear(&mut self) {
        self.current = Batch::default();
        self.opened_at = None;
    }

    fn take_current(&mut self) -> Batch {
        self.opened_at = None;
        let mut batch = std::mem::take(&mut self.current);
        batch.id = self.next_id;
        self.next_id += 1;
        self.current.features.reserve(batch.features.len());
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_feature_record, FeatureRecord};

    const DIMS: usize = 3;

    fn record(id: &str, features: Vec<f32>) -> Vec<u8> {
        let mut out = Vec::new();
        let record = FeatureRecord {
            utterance_id: id.into(),
            speaker_id: None,
            source: None,
            timestamp_ms: 7,
            feature_set: "ComParE_2016".into(),
            features,
        };
        encode_feature_record(&record, &Framing::SingleObject, &mut out);
        out
    }

    fn msg(partition: i32, offset: i64, payload: &[u8]) -> Incoming<'_> {
        Incoming {
            position: Position { partition, offset },
            key: Some(b"k"),
            payload: Some(payload),
            kafka_timestamp_ms: Some(1),
        }
    }

    fn batcher(max_records: usize) -> Batcher {
        Batcher::new(FeatureDecoder::new(DIMS), max_records, Duration::from_millis(50))
    }

    #[test]
    fn closes_on_max_records_with_rows_in_order() {
        let t0 = Instant::now();
        let mut b = batcher(3);
        let good = |i: usize| record(&format!("u{i}"), vec![i as f32; DIMS]);
        assert!(b.push(t0, msg(0, 10, &good(0))).is_none());
        assert!(b.push(t0, msg(1, 5, &good(1))).is_none());
        let batch = b.push(t0, msg(0, 11, &good(2))).expect("third record fills the batch");
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.features, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        let ids: Vec<_> = batch.rows.iter().map(|r| r.meta.utterance_id.as_str()).collect();
        assert_eq!(ids, ["u0", "u1", "u2"]);
        assert_eq!(batch.ranges[&0], OffsetRange { first: 10, last: 11 });
        assert_eq!(batch.ranges[&1], OffsetRange { first: 5, last: 5 });
        assert_eq!(batch.rows[0].framing, Framing::SingleObject);
        assert!(b.deadline().is_none(), "a new batch opens only with its first record");
        let next = b.push(t0, msg(0, 12, &good(3)));
        assert!(next.is_none());
        let batch2 = b.flush().unwrap();
        assert_eq!(batch2.id, batch.id + 1);
    }

    #[test]
    fn closes_on_max_wait_counted_from_the_first_record() {
        let t0 = Instant::now();
        let mut b = batcher(100);
        assert!(b.poll_deadline(t0 + Duration::from_secs(10)).is_none(), "nothing open");
        b.push(t0, msg(0, 0, &record("a", vec![1.0; DIMS])));
        b.push(t0 + Duration::from_millis(40), msg(0, 1, &record("b", vec![1.0; DIMS])));
        assert_eq!(b.deadline(), Some(t0 + Duration::from_millis(50)));
        assert!(b.poll_deadline(t0 + Duration::from_millis(49)).is_none());
        let batch = b.poll_deadline(t0 + Duration::from_millis(50)).unwrap();
        assert_eq!(batch.rows.len(), 2);
        assert!(b.flush().is_none());
    }

    #[test]
    fn bad_records_become_dead_letters_in_the_same_batch() {
        let t0 = Instant::now();
        let mut b = batcher(5);
        b.push(t0, msg(0, 0, &record("good", vec![1.0, 2.0, 3.0])));
        b.push(t0, msg(0, 1, &record("short", vec![1.0, 2.0])));
        b.push(t0, msg(0, 2, &record("nan", vec![1.0, f32::NAN, 3.0])));
        b.push(t0, msg(0, 3, &[0xff, 0xff, 0xff]));
        let batch = b
            .push(
                t0,
                Incoming {
                    position: Position { partition: 0, offset: 4 },
                    key: None,
                    payload: None,
                    kafka_timestamp_ms: None,
                },
            )
            .unwrap();
        assert_eq!(batch.rows.len(), 1);
        assert_eq!(batch.features, [1.0, 2.0, 3.0], "failed rows leave no features behind");
        let reasons: Vec<_> = batch.dead.iter().map(|d| (d.position.offset, d.reason)).collect();
        assert_eq!(
            reasons,
            [(1, "wrong_dimension"), (2, "non_finite"), (3, "truncated"), (4, REASON_EMPTY_VALUE)]
        );
        assert_eq!(batch.dead[2].payload, [0xff, 0xff, 0xff], "original bytes are kept");
        assert!(batch.dead[0].detail.contains("expected 3"));
        assert_eq!(batch.ranges[&0], OffsetRange { first: 0, last: 4 });
    }

    #[test]
    fn revoked_partitions_leave_the_open_batch() {
        let t0 = Instant::now();
        let mut b = batcher(10);
        b.push(t0, msg(0, 0, &record("a", vec![0.0; DIMS])));
        b.push(t0, msg(1, 0, &record("b", vec![1.0; DIMS])));
        b.push(t0, msg(1, 1, &[1, 2]));
        b.push(t0, msg(2, 0, &record("c", vec![2.0; DIMS])));
        b.retain_partitions(|p| p != 1);
        let batch = b.flush().unwrap();
        let ids: Vec<_> = batch.rows.iter().map(|r| r.meta.utterance_id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(batch.features, [0.0, 0.0, 0.0, 2.0, 2.0, 2.0]);
        assert!(batch.dead.is_empty());
        assert_eq!(batch.ranges.keys().copied().collect::<Vec<_>>(), [0, 2]);

        b.push(t0, msg(1, 5, &record("d", vec![0.0; DIMS])));
        b.retain_partitions(|p| p != 1);
        assert!(b.deadline().is_none() && b.flush().is_none(), "an emptied batch is closed");
    }
}
