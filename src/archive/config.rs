//! Configuration of the archive stage: the `[archive]` section of the service's TOML file.
//!
//! The service configuration (`crate::config`) embeds [`ArchiveConfig`]; every field has a
//! default, so an absent section means "archive to `./archive` with the defaults".

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::location::ArchiveLocation;
use super::retry::RetryPolicy;
use super::roll::RollPolicy;
use super::writer::ParquetSettings;

/// `[archive]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Archive root directory (local path or mounted volume). Default `archive`. Used when
    /// `url` is not set.
    pub root: PathBuf,
    /// Where the archive goes, as a URL: `s3://bucket/prefix`, `gs://…`, `az://…`,
    /// `abfs[s]://…`, `file:///path`, or a plain path (see `location.rs`). Overrides `root`.
    pub url: Option<String>,
    /// Options of the object store's client builder (`endpoint`, `region`, `allow_http`, …),
    /// passed through; values may be `${env:NAME}` or `${file:/path}`. `Debug` redacts them.
    pub object_store: ObjectStoreOptions,
    /// Dead-letter topic for output records the archive cannot decode. Default
    /// `emotion.archive.dlq`.
    pub dlq_topic: String,
    /// Directory of extra writer schemas (`*.avsc`) of `EmotionPrediction`: records written
    /// with one of them (a newer emogate during a rolling upgrade, a compatible evolution) are
    /// resolved to the current schema and archived instead of dead-lettered. Default: none.
    pub writer_schemas_dir: Option<PathBuf>,
    /// First wait before a failed file is put again, in milliseconds. Default 500.
    pub retry_initial_ms: u64,
    /// Longest wait between two attempts of one file, in milliseconds. Default 30,000.
    pub retry_max_ms: u64,
    /// Consecutive failed writes after which `/readyz` reports the archive storage. Default 3.
    pub unhealthy_after_failures: u32,
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
        let retry = RetryPolicy::default();
        ArchiveConfig {
            root: PathBuf::from("archive"),
            url: None,
            object_store: ObjectStoreOptions::default(),
            dlq_topic: "emotion.archive.dlq".to_string(),
            writer_schemas_dir: None,
            retry_initial_ms: retry.initial.as_millis() as u64,
            retry_max_ms: retry.max.as_millis() as u64,
            unhealthy_after_failures: retry.unhealthy_after,
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
        let location =
            self.location().map_err(|e| InvalidArchiveConfig { field: "url", problem: e.problem })?;
        if !location.is_remote() && !self.object_store.0.is_empty() {
            return fail("object_store", "options need an object-store archive.url (s3://, gs://, az://)");
        }
        if self.dlq_topic.trim().is_empty() {
            return fail("dlq_topic", "must not be empty");
        }
        if self.retry_initial_ms == 0 {
            return fail("retry_initial_ms", "must be at least 1");
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return fail("retry_max_ms", "must be at least retry_initial_ms");
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

    /// Where files go: `url` when set, otherwise the local `root`.
    pub fn location(&self) -> Result<ArchiveLocation, super::location::InvalidArchiveUrl> {
        match &self.url {
            Some(url) => ArchiveLocation::parse(url),
            None => Ok(ArchiveLocation::Local(self.root.clone())),
        }
    }

    /// The retry-in-place settings.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(self.retry_initial_ms),
            max: Duration::from_millis(self.retry_max_ms),
            unhealthy_after: self.unhealthy_after_failures,
        }
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

/// `archive.object_store`: the store builder's options, passed through. `Debug` shows the keys
/// only, since values may be credentials resolved from the environment or files.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectStoreOptions(pub BTreeMap<String, String>);

impl fmt::Debug for ObjectStoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, "<redacted>"))).finish()
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
    fn url_overrides_root_and_options_need_a_remote_url() {
        let config: ArchiveConfig = toml::from_str(
            "url = \"s3://bucket/archive\"\n[object_store]\nendpoint = \"http://127.0.0.1:9000\"\naws_secret_access_key = \"hush\"",
        )
        .unwrap();
        config.validate().unwrap();
        assert!(config.location().unwrap().is_remote());
        let shown = format!("{config:?}");
        assert!(shown.contains("endpoint") && !shown.contains("hush") && !shown.contains("9000"), "{shown}");
        let local = ArchiveConfig { object_store: config.object_store.clone(), ..ArchiveConfig::default() };
        assert_eq!(local.validate().unwrap_err().field, "object_store");
        assert_eq!(ArchiveConfig::default().location().unwrap(), ArchiveLocation::Local("archive".into()));
        assert_eq!(ArchiveConfig::default().retry_policy(), RetryPolicy::default());
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        type Mutation = fn(&mut ArchiveConfig);
        let cases: [(&str, Mutation); 9] = [
            ("roll_rows", |c| c.roll_rows = 0),
            ("roll_age_ms", |c| c.roll_age_ms = 0),
            ("zstd_level", |c| c.zstd_level = 23),
            ("group_id", |c| c.group_id = " ".into()),
            ("root", |c| c.root = PathBuf::new()),
            ("url", |c| c.url = Some("memory:///".into())),
            ("dlq_topic", |c| c.dlq_topic = String::new()),
            ("retry_initial_ms", |c| c.retry_initial_ms = 0),
            ("retry_max_ms", |c| c.retry_max_ms = 1),
        ];
        for (field, mutate) in cases {
            let mut config = ArchiveConfig::default();
            mutate(&mut config);
            assert_eq!(config.validate().unwrap_err().field, field);
        }
    }
}
