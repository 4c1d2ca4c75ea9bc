//! Parquet encoding of a finished buffer with the `parquet` crate's `ArrowWriter`.
//!
//! Settings, and why:
//! - zstd (level 3 by default): the DESIGN's codec; every reader in scope decodes it and it
//!   beats snappy on these float- and string-heavy rows.
//! - row groups of up to `row_group_rows` rows (default 122,880, DuckDB's own row-group size):
//!   big enough for column-chunk scans and parallel reads, and with the default roll size
//!   (100,000 rows) a full file is exactly one row group.
//! - page-level statistics and the page index on (min/max per column chunk and page), so
//!   filters on `processed_at`, `timestamp`, `kafka_offset` or entropies skip data.
//! - a bloom filter on `utterance_id` (sized for a full row group, folded down to the rows
//!   present when written) for "show me this utterance".
//! - key-value metadata naming the Kafka range (`emogate.kafka.*`), for audits.
//!
//! The output is a pure function of the rows and the settings — no clock, no random ids — so
//! a replay of the same offsets produces a byte-identical file.

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::rows::FinishedRows;

/// Version of the archive layout, stored as `emogate.archive.version` in each file. 2 added
/// the nullable `{a}_uncertainty` columns (docs/archive.md: reading a mixed archive).
pub const ARCHIVE_FORMAT_VERSION: &str = "2";

/// Parquet writer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParquetSettings {
    /// zstd compression level (1–22).
    pub zstd_level: i32,
    /// Maximum rows per row group.
    pub row_group_rows: usize,
}

impl Default for ParquetSettings {
    fn default() -> Self {
        ParquetSettings { zstd_level: 3, row_group_rows: 122_880 }
    }
}

/// Encodes `rows` as a complete Parquet file.
pub fn encode_parquet(rows: &FinishedRows, settings: &ParquetSettings) -> Result<Vec<u8>, ParquetError> {
    let utterance_id = ColumnPath::from("utterance_id");
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(settings.zstd_level)?))
        .set_max_row_group_row_count(Some(settings.row_group_rows.max(1)))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_column_bloom_filter_enabled(utterance_id.clone(), true)
        .set_column_bloom_filter_max_ndv(utterance_id, settings.row_group_rows.max(1) as u64)
        .set_key_value_metadata(Some(vec![
            KeyValue::new("emogate.archive.version".into(), ARCHIVE_FORMAT_VERSION.to_string()),
            KeyValue::new("emogate.kafka.topic".into(), rows.topic.clone()),
            KeyValue::new("emogate.kafka.partition".into(), rows.partition.to_string()),
            KeyValue::new("emogate.kafka.first_offset".into(), rows.first_offset.to_string()),
            KeyValue::new("emogate.kafka.last_offset".into(), rows.last_offset.to_string()),
        ]))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, rows.batch.schema(), Some(props))?;
    writer.write(&rows.batch)?;
    writer.close()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::rows::RowBuffer;
    use crate::archive::schema::archive_schema;
    use crate::archive::testing::prediction;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    fn finished(n: usize) -> FinishedRows {
        let mut buffer = RowBuffer::new("emotion.rejected", 1);
        for i in 0..n {
            buffer.push(&prediction(i as u64), 100 + 2 * i as i64).unwrap();
        }
        buffer.finish().unwrap().unwrap()
    }

    #[test]
    fn file_reads_back_with_zstd_row_groups_and_statistics() {
        let rows = finished(25);
        let settings = ParquetSettings { zstd_level: 3, row_group_rows: 10 };
        let bytes = encode_parquet(&rows, &settings).unwrap();

        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes.clone())).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().num_rows(), 25);
        assert_eq!(meta.num_row_groups(), 3, "25 rows in groups of 10");
        for rg in meta.row_groups() {
            for column in rg.columns() {
                // The level is not stored in the file, only the codec.
                assert!(matches!(column.compression(), Compression::ZSTD(_)), "{:?}", column.compression());
                assert!(column.statistics().is_some(), "{} has no statistics", column.column_path());
            }
        }
        let kv = meta.file_metadata().key_value_metadata().unwrap();
        let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
        assert_eq!(get("emogate.kafka.first_offset").as_deref(), Some("100"));
        assert_eq!(get("emogate.kafka.last_offset").as_deref(), Some("148"));
        assert_eq!(get("emogate.kafka.topic").as_deref(), Some("emotion.rejected"));

        let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(batches.len(), 1, "25 rows fit one reader batch");
        assert_eq!(batches[0].schema().fields(), archive_schema().fields());
        assert_eq!(batches[0], rows.batch);
    }

    #[test]
    fn encoding_is_deterministic() {
        let settings = ParquetSettings::default();
        assert_eq!(
            encode_parquet(&finished(7), &settings).unwrap(),
            encode_parquet(&finished(7), &settings).unwrap()
        );
        assert_ne!(
            encode_parquet(&finished(7), &settings).unwrap(),
            encode_parquet(&finished(8), &settings).unwrap()
        );
    }

    #[test]
    fn bad_zstd_level_is_an_error_not_a_panic() {
        assert!(
            encode_parquet(&finished(1), &ParquetSettings { zstd_level: 99, row_group_rows: 10 }).is_err()
        );
    }
}
