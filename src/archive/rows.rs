//! The row buffer: `(EmotionPrediction, offset)` of one (topic, partition) appended straight
//! into Arrow column builders, finished into a [`RecordBatch`] of [`super::schema::archive_schema`].
//!
//! Pure and synchronous; it knows nothing of files, hours or Kafka clients. Building columns
//! as rows arrive keeps a full buffer compact (no per-row `String`s held until the roll).

use arrow_array::builder::{
    BooleanBuilder, Float32Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::ArrowError;
use std::sync::Arc;

use super::schema::{archive_schema, distribution_item, TIME_ZONE};
use crate::attribute::{Attribute, PerAttribute};
use crate::codec::EmotionPrediction;

/// A row that cannot be appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// Offsets of a partition must increase; anything else means the consumer re-read or
    /// skipped backwards without the buffer being reset.
    #[error("offset {got} after {last} in {topic}/{partition}: offsets must increase")]
    OffsetOrder { topic: String, partition: i32, last: i64, got: i64 },
    /// Kafka offsets are never negative.
    #[error("negative offset {0}")]
    NegativeOffset(i64),
}

/// The columns of one attribute.
struct AttributeColumns {
    value: Float32Builder,
    consensus: Float32Builder,
    distribution: ListBuilder<Float32Builder>,
    entropy: Float32Builder,
    uncertainty: Float32Builder,
    uncertainty_source: StringBuilder,
    accepted: BooleanBuilder,
}

impl AttributeColumns {
    fn new() -> Self {
        AttributeColumns {
            value: Float32Builder::new(),
            consensus: Float32Builder::new(),
            distribution: ListBuilder::new(Float32Builder::new()).with_field(distribution_item()),
            entropy: Float32Builder::new(),
            uncertainty: Float32Builder::new(),
            uncertainty_source: StringBuilder::new(),
            accepted: BooleanBuilder::new(),
        }
    }
}

/// A finished buffer: the batch and the Kafka range it covers.
#[derive(Debug, Clone)]
pub struct FinishedRows {
    /// Kafka topic of every row.
    pub topic: String,
    /// Kafka partition of every row.
    pub partition: i32,
    /// Offset of the first row.
    pub first_offset: i64,
    /// Offset of the last row.
    pub last_offset: i64,
    /// `processed_at` of the first row: it names the file's hive partition.
    pub first_processed_at_ms: i64,
    /// The rows, in offset order.
    pub batch: RecordBatch,
}

/// Rows of one (topic, partition), in offset order.
pub struct RowBuffer {
    topic: String,
    partition: i32,
    utterance_id: StringBuilder,
    speaker_id: StringBuilder,
    source: StringBuilder,
    timestamp: TimestampMillisecondBuilder,
    processed_at: TimestampMillisecondBuilder,
    model_version: StringBuilder,
    decision: StringBuilder,
    attributes: PerAttribute<AttributeColumns>,
    kafka_topic: StringBuilder,
    kafka_partition: Int32Builder,
    kafka_offset: Int64Builder,
    first_offset: Option<i64>,
    last_offset: Option<i64>,
    first_processed_at_ms: Option<i64>,
    rows: usize,
}

impl RowBuffer {
    /// An empty buffer for `topic`/`partition`.
    pub fn new(topic: &str, partition: i32) -> Self {
        RowBuffer {
            topic: topic.to_string(),
            partition,
            utterance_id: StringBuilder::new(),
            speaker_id: StringBuilder::new(),
            source: StringBuilder::new(),
            timestamp: TimestampMillisecondBuilder::new().with_timezone(TIME_ZONE),
            processed_at: TimestampMillisecondBuilder::new().with_timezone(TIME_ZONE),
            model_version: StringBuilder::new(),
            decision: StringBuilder::new(),
            attributes: PerAttribute::from_fn(|_| AttributeColumns::new()),
            kafka_topic: StringBuilder::new(),
            kafka_partition: Int32Builder::new(),
            kafka_offset: Int64Builder::new(),
            first_offset: None,
            last_offset: None,
            first_processed_at_ms: None,
            rows: 0,
        }
    }

    /// Kafka topic of the buffer.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Kafka partition of the buffer.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Rows buffered.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row is buffered.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Offset of the first buffered row.
    pub fn first_offset(&self) -> Option<i64> {
        self.first_offset
    }

    /// Offset of the last buffered row.
    pub fn last_offset(&self) -> Option<i64> {
        self.last_offset
    }

    /// Appends the prediction read at `offset`. Offsets must increase (gaps are normal:
    /// transaction markers, aborted or undecodable records).
    pub fn push(&mut self, p: &EmotionPrediction, offset: i64) -> Result<(), RowError> {
        if offset < 0 {
            return Err(RowError::NegativeOffset(offset));
        }
        if let Some(last) = self.last_offset.filter(|&last| offset <= last) {
            return Err(RowError::OffsetOrder {
                topic: self.topic.clone(),
                partition: self.partition,
                last,
                got: offset,
            });
        }
        self.utterance_id.append_value(&p.utterance_id);
        self.speaker_id.append_option(p.speaker_id.as_deref());
        self.source.append_option(p.source.as_deref());
        self.timestamp.append_value(p.timestamp_ms);
        self.processed_at.append_value(p.processed_at_ms);
        self.model_version.append_value(&p.model_version);
        self.decision.append_value(p.decision.symbol());
        for (attribute, prediction) in p.attributes.iter() {
            let columns = &mut self.attributes[attribute];
            columns.value.append_value(prediction.value);
            columns.consensus.append_value(prediction.consensus);
            columns.distribution.values().append_slice(&prediction.distribution);
            columns.distribution.append(true);
            columns.entropy.append_value(prediction.entropy);
            columns.uncertainty.append_option(prediction.uncertainty);
            columns.uncertainty_source.append_value(prediction.uncertainty_source.as_str());
            columns.accepted.append_value(prediction.accepted);
        }
        self.kafka_topic.append_value(&self.topic);
        self.kafka_partition.append_value(self.partition);
        self.kafka_offset.append_value(offset);
        self.first_offset.get_or_insert(offset);
        self.first_processed_at_ms.get_or_insert(p.processed_at_ms);
        self.last_offset = Some(offset);
        self.rows += 1;
        Ok(())
    }

    /// Takes the buffered rows as a batch and leaves the buffer empty; `None` when it was empty.
    pub fn finish(&mut self) -> Result<Option<FinishedRows>, ArrowError> {
        let fresh = RowBuffer::new(&self.topic, self.partition);
        let mut full = std::mem::replace(self, fresh);
        let (Some(first_offset), Some(last_offset), Some(first_processed_at_ms)) =
            (full.first_offset, full.last_offset, full.first_processed_at_ms)
        else {
            return Ok(None);
        };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(full.utterance_id.finish()),
            Arc::new(full.speaker_id.finish()),
            Arc::new(full.source.finish()),
            Arc::new(full.timestamp.finish()),
            Arc::new(full.processed_at.finish()),
            Arc::new(full.model_version.finish()),
            Arc::new(full.decision.finish()),
        ];
        for attribute in Attribute::ALL {
            let c = &mut full.attributes[attribute];
            columns.push(Arc::new(c.value.finish()));
            columns.push(Arc::new(c.consensus.finish()));
            columns.push(Arc::new(c.distribution.finish()));
            columns.push(Arc::new(c.entropy.finish()));
            columns.push(Arc::new(c.uncertainty.finish()));
            columns.push(Arc::new(c.uncertainty_source.finish()));
            columns.push(Arc::new(c.accepted.finish()));
        }
        columns.push(Arc::new(full.kafka_topic.finish()));
        columns.push(Arc::new(full.kafka_partition.finish()));
        columns.push(Arc::new(full.kafka_offset.finish()));
        let batch = RecordBatch::try_new(archive_schema(), columns)?;
        Ok(Some(FinishedRows {
            topic: full.topic,
            partition: full.partition,
            first_offset,
            last_offset,
            first_processed_at_ms,
            batch,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::testing::prediction;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Int64Type, TimestampMillisecondType};
    use arrow_array::Array;

    #[test]
    fn rows_become_columns_in_offset_order() {
        let mut buffer = RowBuffer::new("emotion.accepted", 2);
        assert!(buffer.finish().unwrap().is_none());
        let (a, b) = (prediction(1), prediction(2));
        buffer.push(&a, 10).unwrap();
        buffer.push(&b, 12).unwrap();
        assert_eq!((buffer.len(), buffer.first_offset(), buffer.last_offset()), (2, Some(10), Some(12)));

        let done = buffer.finish().unwrap().unwrap();
        assert!(buffer.is_empty() && buffer.first_offset().is_none());
        assert_eq!(
            (done.topic.as_str(), done.partition, done.first_offset, done.last_offset),
            ("emotion.accepted", 2, 10, 12)
        );
        assert_eq!(done.first_processed_at_ms, a.processed_at_ms);
        let batch = &done.batch;
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), archive_schema());

        let ids = batch.column_by_name("utterance_id").unwrap().as_string::<i32>();
        assert_eq!((ids.value(0), ids.value(1)), (a.utterance_id.as_str(), b.utterance_id.as_str()));
        let speakers = batch.column_by_name("speaker_id").unwrap().as_string::<i32>();
        assert_eq!(speakers.is_null(0), a.speaker_id.is_none());
        assert_eq!(speakers.is_null(1), b.speaker_id.is_none());
        let processed =
            batch.column_by_name("processed_at").unwrap().as_primitive::<TimestampMillisecondType>();
        assert_eq!(processed.value(1), b.processed_at_ms);
        let decisions = batch.column_by_name("decision").unwrap().as_string::<i32>();
        assert_eq!(decisions.value(0), a.decision.symbol());
        let dist = batch.column_by_name("arousal_distribution").unwrap().as_list::<i32>();
        let second = dist.value(1);
        assert_eq!(
            second.as_primitive::<Float32Type>().values().as_ref(),
            &b.attributes.arousal.distribution
        );
        let source = batch.column_by_name("dominance_uncertainty_source").unwrap().as_string::<i32>();
        assert_eq!(source.value(0), a.attributes.dominance.uncertainty_source.as_str());
        let accepted = batch.column_by_name("valence_accepted").unwrap().as_boolean();
        assert_eq!(accepted.value(1), b.attributes.valence.accepted);
        let offsets = batch.column_by_name("kafka_offset").unwrap().as_primitive::<Int64Type>();
        assert_eq!(offsets.values().as_ref(), &[10, 12]);
        let topics = batch.column_by_name("kafka_topic").unwrap().as_string::<i32>();
        assert_eq!(topics.value(1), "emotion.accepted");
    }

    #[test]
    fn offsets_must_increase() {
        let mut buffer = RowBuffer::new("t", 0);
        buffer.push(&prediction(1), 5).unwrap();
        let err = buffer.push(&prediction(2), 5).unwrap_err();
        assert_eq!(err, RowError::OffsetOrder { topic: "t".into(), partition: 0, last: 5, got: 5 });
        assert!(buffer.push(&prediction(2), 4).is_err());
        assert_eq!(buffer.push(&prediction(2), -1), Err(RowError::NegativeOffset(-1)));
        assert_eq!(buffer.len(), 1, "a refused row leaves the buffer unchanged");
        // After a finish the buffer starts over (a new owner may begin anywhere).
        buffer.finish().unwrap();
        buffer.push(&prediction(3), 0).unwrap();
    }
}
