//! Configuration of the archive stage: the `[archive]` section of the service's TOML file.
//!
//! The service configuration (`crate::config`) embeds [`ArchiveConfig`]; every field has a
//! default, so an absent section means "archive to `./archive` with the defaults".

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::roll::RollPolicy;
use super::writer::ParquetSettings;

/// `[archive]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Archive root directory (local path or mounted volume). Default `archive`.
    pub root: PathBuf,
    /// Consumer group of the archive stage, separate from the infer stage's. Default
    /// `emogate-archive`.
    pub group_id: String,
    /// Roll a (topic, partition) buffer into a file at this many rows. Default 100,000.
    pub roll_rows: usize,
    /// Roll a buffer when its first row has waited this long, in milliseconds. Default
    /// 300,000 (5 minutes): the archive is at most this far behind the topics.
    pub roll_age_ms: u64,
    /// Maximum rows per Parquet row group. Default 122,880.
    pub row_group_rows: usize,
    /// zstd level, 1–22. Default 3.
    pub zstd_level: i32,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        let parquet = ParquetSettings::default();
        ArchiveConfig {
            root: PathBuf::from("archive"),
            group_id: "emogate-archive".to_string(),
            roll_rows: 100_000,
            roll_age_ms: 300_000,
            row_group_rows: parquet.row_group_rows,
            zstd_level: parquet.zstd_level,
        }
    }
}

/// A setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("archive.{field}: {problem}")]
pub struct InvalidArchiveConfig {
    /// The offending key.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl ArchiveConfig {
    /// Checks ranges; called by the stage before it starts.
    pub fn validate(&self) -> Result<(), InvalidArchiveConfig> {
        let fail = |field, problem: &str| Err(InvalidArchiveConfig { field, problem: problem.to_string() });
        if self.root.as_os_str().is_empty() {
            return fail("root", "must not be empty");
        }
        if self.group_id.trim().is_empty() {
            return fail("group_id", "must not be empty");
        }
        if self.roll_rows == 0 {
            return fail("roll_rows", "must be at least 1");
        }
        if self.roll_age_ms == 0 {
            return fail("roll_age_ms", "must be at least 1");
        }
        if self.row_group_rows == 0 {
            return fail("row_group_rows", "must be at least 1");
        }
        if !(1..=22).contains(&self.zstd_level) {
            return fail("zstd_level", &format!("{} is outside 1..=22", self.zstd_level));
        }
        Ok(())
    }

    /// The roll policy these settings describe.
    pub fn roll_policy(&self) -> RollPolicy {
        RollPolicy { max_rows: self.roll_rows, max_age: Duration::from_millis(self.roll_age_ms) }
    }

    /// The Parquet writer settings.
    pub fn parquet(&self) -> ParquetSettings {
        ParquetSettings { zstd_level: self.zstd_level, row_group_rows: self.row_group_rows }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_section_gives_valid_defaults() {
        let config: ArchiveConfig = toml::from_str("").unwrap();
        assert_eq!(config, ArchiveConfig::default());
        config.validate().unwrap();
        assert_eq!(config.roll_policy().max_age, Duration::from_secs(300));
    }

    #[test]
    fn fields_override_and_typos_are_refused() {
        let config: ArchiveConfig =
            toml::from_str("root = \"/data/a\"\nroll_rows = 5\nroll_age_ms = 250").unwrap();
        assert_eq!((config.root, config.roll_rows, config.roll_age_ms), (PathBuf::from("/data/a"), 5, 250));
        assert!(toml::from_str::<ArchiveConfig>("roll_row = 5").is_err());
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        type Mutation = fn(&mut ArchiveConfig);
        let cases: [(&str, Mutation); 5] = [
            ("roll_rows", |c| c.roll_rows = 0),
            ("roll_age_ms", |c| c.roll_age_ms = 0),
            ("zstd_level", |c| c.zstd_level = 23),
            ("group_id", |c| c.group_id = " ".into()),
            ("root", |c| c.root = PathBuf::new()),
        ];
        for (field, mutate) in cases {
            let mut config = ArchiveConfig::default();
            mutate(&mut config);
            assert_eq!(config.validate().unwrap_err().field, field);
        }
    }
}
