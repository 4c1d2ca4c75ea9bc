//! The Arrow schema of the archive (DESIGN §5): one row per `EmotionPrediction`, the
//! attribute records flattened into `{attribute}_{field}` columns, plus the Kafka coordinates.
//!
//! Type choices, made for the three readers analysts use (DuckDB, pandas via pyarrow, Spark):
//!
//! - `timestamp`, `processed_at`: `Timestamp(Millisecond, "UTC")`, stored as Parquet
//!   `TIMESTAMP(MILLIS, isAdjustedToUTC=true)`. All three read it as an instant
//!   (`TIMESTAMP WITH TIME ZONE`, `datetime64[ms, UTC]`, `TimestampType`), and it is the Avro
//!   `timestamp-millis` value unchanged.
//! - `decision`, `{a}_uncertainty_source`: plain `Utf8` holding the Avro enum symbol. Parquet
//!   dictionary-encodes the column anyway (two or three distinct values), so an Arrow
//!   `Dictionary` type would only change what pandas returns (categorical) and add a type
//!   that Spark ignores.
//! - `{a}_distribution`: `List<Float32>` with non-null items. Parquet has no fixed-size list:
//!   a `FixedSizeList` would be written as the same `LIST` and only arrow readers would see the
//!   fixed size back, so DuckDB, pandas and Spark would disagree on the type. The Avro field
//!   is an `array<float>` too; the length (7) is a writer invariant checked by the codec.
//! - `{a}_uncertainty`: nullable `Float32`, the Avro `["null", "float"]` union (null when the
//!   model has no level profile, or for records written before the field existed).
//! - `kafka_partition` is `Int32` and `kafka_offset` is `Int64`, as in Kafka.
//!
//! The hive partition columns `dt` and `hour` are *not* stored in the files: they come from
//! the directory names (see [`super::partition`]). Spark refuses files whose columns repeat
//! partition columns, and DuckDB/pyarrow add them from the path.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::attribute::Attribute;

/// Time zone of the two timestamp columns.
pub const TIME_ZONE: &str = "UTC";

/// Name of the list item field of the distribution columns (Arrow's default).
pub const LIST_ITEM: &str = "item";

/// Per-attribute column suffixes, in column order.
pub const ATTRIBUTE_FIELDS: [&str; 7] =
    ["value", "consensus", "distribution", "entropy", "uncertainty", "uncertainty_source", "accepted"];

/// Number of columns in [`archive_schema`].
pub const COLUMN_COUNT: usize = 7 + 3 * ATTRIBUTE_FIELDS.len() + 3;

/// The timestamp type of `timestamp` and `processed_at`.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some(TIME_ZONE.into()))
}

/// The item field of a distribution list.
pub fn distribution_item() -> Arc<Field> {
    Arc::new(Field::new(LIST_ITEM, DataType::Float32, false))
}

/// `{attribute}_{field}`, e.g. `valence_entropy`.
pub fn attribute_column(attribute: Attribute, field: &str) -> String {
    format!("{}_{field}", attribute.as_str())
}

/// The archive's Arrow schema (built once).
pub fn archive_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA.get_or_init(build_schema).clone()
}

fn build_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("utterance_id", DataType::Utf8, false),
        Field::new("speaker_id", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, true),
        Field::new("timestamp", timestamp_type(), false),
        Field::new("processed_at", timestamp_type(), false),
        Field::new("model_version", DataType::Utf8, false),
        Field::new("decision", DataType::Utf8, false),
    ];
    for a in Attribute::ALL {
        fields.extend([
            Field::new(attribute_column(a, "value"), DataType::Float32, false),
            Field::new(attribute_column(a, "consensus"), DataType::Float32, false),
            Field::new(attribute_column(a, "distribution"), DataType::List(distribution_item()), false),
            Field::new(attribute_column(a, "entropy"), DataType::Float32, false),
            // Null for a model without a level profile and for legacy-schema records.
            Field::new(attribute_column(a, "uncertainty"), DataType::Float32, true),
            Field::new(attribute_column(a, "uncertainty_source"), DataType::Utf8, false),
            Field::new(attribute_column(a, "accepted"), DataType::Boolean, false),
        ]);
    }
    fields.extend([
        Field::new("kafka_topic", DataType::Utf8, false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
    ]);
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_follow_the_design_names_and_order() {
        let schema = archive_schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names.len(), COLUMN_COUNT);
        assert_eq!(
            &names[..7],
            [
                "utterance_id",
                "speaker_id",
                "source",
                "timestamp",
                "processed_at",
                "model_version",
                "decision"
            ]
        );
        assert_eq!(
            &names[7..14],
            [
                "valence_value",
                "valence_consensus",
                "valence_distribution",
                "valence_entropy",
                "valence_uncertainty",
                "valence_uncertainty_source",
                "valence_accepted"
            ]
        );
        assert_eq!(names[14], "arousal_value");
        assert_eq!(names[21], "dominance_value");
        assert_eq!(&names[28..], ["kafka_topic", "kafka_partition", "kafka_offset"]);
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate column names");
    }

    #[test]
    fn only_optional_ids_and_the_served_uncertainty_are_nullable() {
        let schema = archive_schema();
        let nullable: Vec<&str> =
            schema.fields().iter().filter(|f| f.is_nullable()).map(|f| f.name().as_str()).collect();
        assert_eq!(
            nullable,
            ["speaker_id", "source", "valence_uncertainty", "arousal_uncertainty", "dominance_uncertainty"]
        );
        assert_eq!(schema.field_with_name("timestamp").unwrap().data_type(), &timestamp_type());
        assert_eq!(
            schema.field_with_name("arousal_distribution").unwrap().data_type(),
            &DataType::List(distribution_item())
        );
        assert!(schema.field_with_name("dt").is_err() && schema.field_with_name("hour").is_err());
    }
}
