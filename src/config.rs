//! Typed service configuration: a TOML file, then `EMOGATE_*` environment overrides, then
//! validation — all before anything connects to Kafka or loads a model, so a bad deployment
//! fails in one log line that names the key.
//!
//! # Environment overrides
//! `EMOGATE_<SECTION>__<KEY>[__<KEY>...]` sets `section.key...` (double underscore between
//! levels, case-insensitive): `EMOGATE_BATCH__MAX_RECORDS=128`,
//! `EMOGATE_KAFKA__TOPICS__INPUT=features.v2`. The value is read as a TOML value when it parses
//! as one (`128`, `true`, `0.8`, `["a"]`) and as a string otherwise. Under `kafka.properties`
//! the rest of the name is the librdkafka property with `_` for `.`:
//! `EMOGATE_KAFKA__PROPERTIES__SASL_PASSWORD` sets `sasl.password`. Variables without `__`
//! (`EMOGATE_PYTHON`, `EMOGATE_TEST_BROKERS`, ...) are not configuration and are ignored.
//! An override of an unknown key is an error, like an unknown key in the file.
//!
//! # Secrets
//! A `kafka.properties` value of the form `${env:NAME}` or `${file:/path}` is replaced by the
//! variable's value or the file's contents (trailing newline trimmed) at load time, so
//! passwords live in the environment or in mounted secret files, not in the config file.
//! [`KafkaProperties`]' `Debug` redacts every property whose name suggests a secret, and the
//! service only ever logs that form.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::archive::ArchiveConfig;
use crate::attribute::{Attribute, PerAttribute};
use crate::model::{ModelOptions, ProviderChoice};
use crate::uncertainty::ScoreKind;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "EMOGATE_";

/// Why a configuration could not be loaded. Every variant names the key or file involved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("environment override {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), reason: reason.into() }
}

/// The whole configuration. Every section has defaults, so an empty file is a valid local
/// setup (broker on localhost:9092, committed default model).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub model: ModelConfig,
    pub kafka: KafkaConfig,
    pub batch: BatchConfig,
    pub policy: PolicyConfig,
    pub delivery: DeliveryConfig,
    pub telemetry: TelemetryConfig,
    pub archive: ArchiveConfig,
    pub shutdown: ShutdownConfig,
}

/// `[model]`: which model to serve and how to run it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Directory with `model.onnx` and `manifest.json`.
    pub dir: PathBuf,
    /// `auto` (CUDA when available, CPU with a warning otherwise), `cuda` or `cpu`.
    pub execution_provider: ProviderChoice,
    /// Intra-op threads per session; 0 lets ONNX Runtime use one per core.
    pub intra_threads: usize,
    /// Inference worker threads, each with its own session.
    pub workers: usize,
    /// Explicit `libonnxruntime.so` (file or directory); otherwise the usual search.
    pub ort_library: Option<PathBuf>,
    /// ONNX Runtime intra-op threads spin while waiting for work (see [`ModelOptions`]).
    pub intra_op_spinning: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            dir: PathBuf::from("models/default"),
            execution_provider: ProviderChoice::Auto,
            intra_threads: 0,
            workers: 1,
            ort_library: None,
            intra_op_spinning: true,
        }
    }
}

impl ModelConfig {
    /// The session options this section describes.
    pub fn options(&self) -> ModelOptions {
        ModelOptions {
            provider: self.execution_provider,
            intra_threads: self.intra_threads,
            ort_library: self.ort_library.clone(),
            intra_op_spinning: self.intra_op_spinning,
            ..ModelOptions::default()
        }
    }
}

/// `[kafka]`: brokers, groups, topics and librdkafka passthrough.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer group of the infer stage (the archive stage's is `archive.group_id`).
    pub group_id: String,
    /// `transactional.id` for exactly-once delivery. Unset: `{group_id}-{hostname}-{pid}`,
    /// unique per process. Set it to a stable per-replica value (e.g. the StatefulSet pod
    /// name) to fence a zombie of the same replica after a restart.
    pub transactional_id: Option<String>,
    /// Schema-registry id of `EmotionPrediction`. Set: outputs use Confluent framing with
    /// this id. Unset: Avro single-object encoding (DESIGN §4).
    pub output_schema_id: Option<u32>,
    /// Confluent schema ids accepted on the input; empty accepts any id.
    pub input_schema_ids: Vec<u32>,
    pub topics: TopicsConfig,
    /// Any librdkafka property, applied to every client after emogate's own settings.
    pub properties: KafkaProperties,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "localhost:9092".into(),
            group_id: "emogate-infer".into(),
            transactional_id: None,
            output_schema_id: None,
            input_schema_ids: Vec::new(),
            topics: TopicsConfig::default(),
            properties: KafkaProperties::default(),
        }
    }
}

/// `[kafka.topics]`, defaults from DESIGN §4.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    pub input: String,
    pub accepted: String,
    pub rejected: String,
    pub dlq: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            input: "ser.features".into(),
            accepted: "emotion.accepted".into(),
            rejected: "emotion.rejected".into(),
            dlq: "emotion.dlq".into(),
        }
    }
}

/// librdkafka properties passed through verbatim. `Debug` redacts secrets.
#[derive(Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(transparent)]
pub struct KafkaProperties(pub BTreeMap<String, String>);

impl KafkaProperties {
    /// Whether a property's value must never be logged.
    pub fn is_secret(name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        ["password", "secret", "ssl.key.pem", "ssl.keystore", "sasl.jaas", "token", "credentials"]
            .iter()
            .any(|s| name.contains(s))
    }

    /// (name, value) pairs to apply to a client.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(k, v)| (k, if KafkaProperties::is_secret(k) { "<redacted>" } else { v.as_str() })),
            )
            .finish()
    }
}

/// `[batch]`: micro-batching of the infer stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// A batch closes when it holds this many records...
    pub max_records: usize,
    /// ...or this long after its first record arrived, whichever comes first.
    pub max_wait_ms: u64,
    /// Closed batches allowed between consuming and producing (in inference or waiting to
    /// be produced). When they are all taken the consumer pauses its partitions.
    pub max_in_flight: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_records: 64, max_wait_ms: 50, max_in_flight: 2 }
    }
}

impl BatchConfig {
    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }
}

/// How per-attribute verdicts combine into the record's decision (see [`crate::policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecisionRule {
    /// Accepted only if every attribute is accepted (the default: a downstream consumer
    /// of `emotion.accepted` can trust all three values).
    #[default]
    All,
    /// Accepted if at least one attribute is accepted.
    Any,
    /// Accepted if this attribute is accepted; the others are informational.
    Attribute(Attribute),
}

impl fmt::Display for DecisionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecisionRule::All => f.write_str("all"),
            DecisionRule::Any => f.write_str("any"),
            DecisionRule::Attribute(a) => write!(f, "{a}"),
        }
    }
}

impl std::str::FromStr for DecisionRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "all" => Ok(DecisionRule::All),
            "any" => Ok(DecisionRule::Any),
            other => other.parse::<Attribute>().map(DecisionRule::Attribute).map_err(|_| {
                format!("unknown decision rule `{s}` (expected all, any, valence, arousal or dominance)")
            }),
        }
    }
}

impl Serialize for DecisionRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DecisionRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// `[policy]`: the reject option.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Target coverage in (0, 1]; the manifest must hold thresholds calibrated for it
    /// (`emogate calibrate --coverage C`) unless `thresholds` is given. 1.0 accepts all.
    pub coverage: f64,
    /// `all` (default), `any`, or an attribute name.
    pub decision: DecisionRule,
    /// The score thresholds apply to: `entropy` (the paper's) or `uncertainty` (the entropy
    /// standardised within the predicted value). Unset: the manifest's `calibration.score`, the
    /// one that ranked dev errors better (the entropy for a model without level profiles).
    pub score: Option<ScoreKind>,
    /// Uncertainty transfer (UTL): `valence = "arousal"` decides valence by arousal's
    /// score against arousal's threshold. Unlisted attributes use their own score.
    pub uncertainty_source: BTreeMap<Attribute, Attribute>,
    /// Explicit thresholds in the units of the score in force, overriding the manifest's for
    /// all attributes.
    pub thresholds: Option<PerAttribute<f32>>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            coverage: 0.8,
            decision: DecisionRule::All,
            score: None,
            uncertainty_source: BTreeMap::new(),
            thresholds: None,
        }
    }
}

/// Delivery guarantee of the infer stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Transactional producer; input offsets committed inside the transaction.
    #[default]
    ExactlyOnce,
    /// Idempotent producer; offsets committed after every output is acknowledged.
    AtLeastOnce,
}

/// `[delivery]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    pub mode: DeliveryMode,
    /// `transaction.timeout.ms` of the transactional producer.
    pub transaction_timeout_ms: u64,
    /// Longest wait for a commit, a transaction call or all delivery reports of a batch
    /// before the batch is treated as failed (and, exactly-once, aborted and replayed).
    pub commit_timeout_ms: u64,
    /// Exactly-once: most micro-batches one transaction may hold. A transaction is committed
    /// as soon as no further batch is waiting, so this only matters under load, where it cuts
    /// the transactions (markers, offset commits) the broker has to write.
    pub transaction_max_batches: usize,
    /// Exactly-once: longest a transaction stays open collecting batches (bounds the extra
    /// latency that sharing a transaction adds under load).
    pub transaction_max_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            mode: DeliveryMode::ExactlyOnce,
            transaction_timeout_ms: 60_000,
            commit_timeout_ms: 30_000,
            transaction_max_batches: 8,
            transaction_max_ms: 100,
        }
    }
}

impl DeliveryConfig {
    pub fn commit_timeout(&self) -> Duration {
        Duration::from_millis(self.commit_timeout_ms)
    }

    pub fn transaction_max_age(&self) -> Duration {
        Duration::from_millis(self.transaction_max_ms)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default on a terminal).
    #[default]
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Address of the `/metrics`, `/healthz`, `/readyz` server; unset disables it.
    pub listen: Option<SocketAddr>,
    pub log_format: LogFormat,
    /// `tracing` filter (`RUST_LOG` syntax); `RUST_LOG` itself wins when set.
    pub log_level: String,
    /// librdkafka `statistics.interval.ms`, the source of the consumer-lag gauge; 0 disables.
    pub stats_interval_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            listen: Some(SocketAddr::from(([0, 0, 0, 0], 9464))),
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
            stats_interval_ms: 5_000,
        }
    }
}

/// `[shutdown]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// After SIGTERM: stop consuming, finish in-flight batches and commit within this time;
    /// what is not committed by then is left to be replayed (never lost).
    pub drain_deadline_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { drain_deadline_ms: 20_000 }
    }
}

impl ShutdownConfig {
    pub fn drain_deadline(&self) -> Duration {
        Duration::from_millis(self.drain_deadline_ms)
    }
}

impl Config {
    /// Loads `path` (or only defaults when `None`), applies the process environment's
    /// overrides, resolves secrets and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => Some(
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.into(), source })?,
            ),
            None => None,
        };
        let origin = path.map_or_else(|| "<defaults>".to_string(), |p| p.display().to_string());
        Config::from_sources(text.as_deref(), &origin, std::env::vars(), &|name| std::env::var(name).ok())
    }

    /// The pure core of [`Config::load`]: TOML text, environment variables, and a lookup for
    /// `${env:...}` secrets. Files named by `${file:...}` are read from disk.
    pub fn from_sources(
        toml_text: Option<&str>,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
        lookup_env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = match toml_text {
            Some(text) => toml::from_str(text)
                .map_err(|e| ConfigError::Parse { origin: origin.to_string(), message: e.to_string() })?,
            None => toml::Table::new(),
        };
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.len() > ENV_PREFIX.len() && k.starts_with(ENV_PREFIX) && k.contains("__"))
            .collect();
        overrides.sort();
        let base = table.clone();
        for (var, value) in &overrides {
            apply_override(&mut table, var, value)?;
        }
        let mut config: Config = match toml::Value::Table(table).try_into::<Config>() {
            Ok(config) => config,
            Err(e) => {
                // Name the override that broke it, if one did: a type error alone does not
                // say which key it was about.
                let base_ok = toml::Value::Table(base.clone()).try_into::<Config>().is_ok();
                for (var, value) in overrides.iter().filter(|_| base_ok) {
                    let mut single = base.clone();
                    apply_override(&mut single, var, value)?;
                    if let Err(e) = toml::Value::Table(single).try_into::<Config>() {
                        return Err(ConfigError::Env { var: var.clone(), reason: e.message().to_string() });
                    }
                }
                return Err(ConfigError::Parse {
                    origin: origin.to_string(),
                    message: e.message().to_string(),
                });
            }
        };
        config.resolve_secrets(lookup_env)?;
        config.validate()?;
        Ok(config)
    }

    fn resolve_secrets(&mut self, lookup_env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for (name, value) in self.kafka.properties.0.iter_mut() {
            let key = format!("kafka.properties.\"{name}\"");
            if let Some(var) = value.strip_prefix("${env:").and_then(|v| v.strip_suffix('}')) {
                *value = lookup_env(var)
                    .ok_or_else(|| invalid(&key, format!("environment variable {var} is not set")))?;
            } else if let Some(file) = value.strip_prefix("${file:").and_then(|v| v.strip_suffix('}')) {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| invalid(&key, format!("cannot read secret file {file}: {e}")))?;
                *value = text.trim_end_matches(['\n', '\r']).to_string();
            }
        }
        Ok(())
    }

    /// Checks ranges and cross-field rules; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.model.workers == 0 {
            return Err(invalid("model.workers", "must be at least 1"));
        }
        let k = &self.kafka;
        for (key, value) in [
            ("kafka.brokers", &k.brokers),
            ("kafka.group_id", &k.group_id),
            ("kafka.topics.input", &k.topics.input),
            ("kafka.topics.accepted", &k.topics.accepted),
            ("kafka.topics.rejected", &k.topics.rejected),
            ("kafka.topics.dlq", &k.topics.dlq),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        if k.group_id == self.archive.group_id {
            return Err(invalid(
                "archive.group_id",
                "must differ from kafka.group_id (the stages keep separate offsets)",
            ));
        }
        let t = &k.topics;
        if [&t.accepted, &t.rejected, &t.dlq].contains(&&t.input) {
            return Err(invalid("kafka.topics.input", "must differ from the output and dead-letter topics"));
        }
        if t.dlq == t.accepted || t.dlq == t.rejected {
            return Err(invalid("kafka.topics.dlq", "must differ from the accepted and rejected topics"));
        }
        if k.transactional_id.as_deref().is_some_and(|id| id.trim().is_empty()) {
            return Err(invalid("kafka.transactional_id", "must not be empty when set"));
        }
        for name in k.properties.0.keys() {
            if OWNED_PROPERTIES.contains(&name.as_str()) {
                return Err(invalid(
                    &format!("kafka.properties.\"{name}\""),
                    "is set by emogate itself (use the dedicated config key or delivery.mode)",
                ));
            }
        }
        let b = &self.batch;
        if b.max_records == 0 || b.max_records > 65_536 {
            return Err(invalid("batch.max_records", format!("must be in 1..=65536, got {}", b.max_records)));
        }
        if b.max_wait_ms == 0 || b.max_wait_ms > 60_000 {
            return Err(invalid("batch.max_wait_ms", format!("must be in 1..=60000, got {}", b.max_wait_ms)));
        }
        if b.max_in_flight == 0 {
            return Err(invalid("batch.max_in_flight", "must be at least 1"));
        }
        let p = &self.policy;
        if !(p.coverage > 0.0 && p.coverage <= 1.0) {
            return Err(invalid("policy.coverage", format!("must be in (0, 1], got {}", p.coverage)));
        }
        if let Some(th) = &p.thresholds {
            for (a, &h) in th.iter() {
                if h.is_nan() || h < 0.0 {
                    return Err(invalid(
                        &format!("policy.thresholds.{a}"),
                        format!("must be a non-negative entropy in nats, got {h}"),
                    ));
                }
            }
        }
        let d = &self.delivery;
        if d.commit_timeout_ms == 0 {
            return Err(invalid("delivery.commit_timeout_ms", "must be positive"));
        }
        if d.mode == DeliveryMode::ExactlyOnce && d.transaction_timeout_ms < d.commit_timeout_ms {
            return Err(invalid(
                "delivery.transaction_timeout_ms",
                "must be at least delivery.commit_timeout_ms (the broker would abort transactions the \
                 service still waits for)",
            ));
        }
        if d.transaction_max_batches == 0 {
            return Err(invalid("delivery.transaction_max_batches", "must be at least 1"));
        }
        if d.mode == DeliveryMode::ExactlyOnce
            && d.transaction_max_ms.saturating_add(d.commit_timeout_ms) > d.transaction_timeout_ms
        {
            return Err(invalid(
                "delivery.transaction_max_ms",
                "plus delivery.commit_timeout_ms must not exceed delivery.transaction_timeout_ms (the \
                 broker would abort a transaction that is still collecting batches)",
            ));
        }
        self.archive.validate().map_err(|e| invalid(&format!("archive.{}", e.field), e.problem))?;
        if self.shutdown.drain_deadline_ms == 0 {
            return Err(invalid("shutdown.drain_deadline_ms", "must be positive"));
        }
        Ok(())
    }

    /// The transactional id this process uses in exactly-once mode.
    pub fn transactional_id(&self) -> String {
        self.kafka.transactional_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "emogate".into());
            format!("{}-{}-{}", self.kafka.group_id, host, std::process::id())
        })
    }
}

/// librdkafka properties whose values the pipeline's correctness depends on; the config has
/// dedicated keys for what may vary.
pub const OWNED_PROPERTIES: [&str; 8] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "isolation.level",
    "enable.idempotence",
    "transactional.id",
    "enable.partition.eof",
];

/// Applies one `EMOGATE_A__B__C=value` override to the raw TOML table.
fn apply_override(table: &mut toml::Table, var: &str, raw: &str) -> Result<(), ConfigError> {
    let env_err = |reason: String| ConfigError::Env { var: var.to_string(), reason };
    let rest = &var[ENV_PREFIX.len()..];
    let mut path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
    if path.iter().any(String::is_empty) {
        return Err(env_err("empty path segment (use exactly two underscores between levels)".into()));
    }
    if path.len() >= 3 && path[0] == "kafka" && path[1] == "properties" {
        // librdkafka property names are dotted; env names cannot contain dots.
        let property = path[2..].join(".").replace('_', ".");
        path.truncate(2);
        path.push(property);
    }
    let is_property = path.len() == 3 && path[1] == "properties";
    // Typed value when it parses as TOML; properties are always strings for librdkafka.
    let value = if is_property {
        toml::Value::String(raw.to_string())
    } else {
        match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
            Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_string())),
            Err(_) => toml::Value::String(raw.to_string()),
        }
    };
    let (last, parents) = path.split_last().expect("split of a non-empty string has one item");
    let mut node = table;
    for (i, segment) in parents.iter().enumerate() {
        let entry = node.entry(segment.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry
            .as_table_mut()
            .ok_or_else(|| env_err(format!("`{}` is not a section", path[..=i].join("."))))?;
    }
    node.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_sources(Some(text), "test.toml", env, &|name| {
            (name == "KAFKA_PASSWORD").then(|| "hunter2".to_string())
        })
    }

    fn key_of(err: ConfigError) -> String {
        match err {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("expected Invalid, got {other}"),
        }
    }

    #[test]
    fn empty_file_gives_design_defaults() {
        let c = parse("", &[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.kafka.topics.input, "ser.features");
        assert_eq!(c.kafka.topics.accepted, "emotion.accepted");
        assert_eq!(c.kafka.topics.rejected, "emotion.rejected");
        assert_eq!(c.kafka.topics.dlq, "emotion.dlq");
        assert_eq!(c.delivery.mode, DeliveryMode::ExactlyOnce);
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            r#"
            [model]
            dir = "models/x"
            execution_provider = "cpu"
            workers = 2
            [kafka]
            brokers = "b1:9092,b2:9092"
            output_schema_id = 42
            [kafka.topics]
            input = "in"
            [kafka.properties]
            "security.protocol" = "SASL_SSL"
            "sasl.password" = "${env:KAFKA_PASSWORD}"
            [batch]
            max_records = 128
            max_wait_ms = 20
            [policy]
            coverage = 0.6
            decision = "arousal"
            uncertainty_source = { valence = "arousal" }
            [delivery]
            mode = "at_least_once"
            [telemetry]
            listen = "127.0.0.1:9100"
            log_format = "json"
            [archive]
            root = "/data/archive"
            [shutdown]
            drain_deadline_ms = 5000
            "#,
            &[],
        )
        .unwrap();
        assert_eq!(c.model.execution_provider, ProviderChoice::Cpu);
        assert_eq!(c.model.workers, 2);
        assert_eq!(c.kafka.output_schema_id, Some(42));
        assert_eq!(c.kafka.topics.input, "in");
        assert_eq!(c.kafka.topics.dlq, "emotion.dlq");
        assert_eq!(c.kafka.properties.0["sasl.password"], "hunter2");
        assert_eq!(c.batch.max_records, 128);
        assert_eq!(c.policy.decision, DecisionRule::Attribute(Attribute::Arousal));
        assert_eq!(c.policy.uncertainty_source[&Attribute::Valence], Attribute::Arousal);
        assert_eq!(c.delivery.mode, DeliveryMode::AtLeastOnce);
        assert_eq!(c.telemetry.log_format, LogFormat::Json);
        assert_eq!(c.archive.root, PathBuf::from("/data/archive"));
        assert_eq!(c.shutdown.drain_deadline(), Duration::from_secs(5));
    }

    #[test]
    fn env_overrides_are_typed_and_nested() {
        let c = parse(
            "[batch]\nmax_records = 8\n",
            &[
                ("EMOGATE_BATCH__MAX_RECORDS", "256"),
                ("EMOGATE_KAFKA__TOPICS__INPUT", "features.v2"),
                ("EMOGATE_KAFKA__BROKERS", "kafka:9092"),
                ("EMOGATE_POLICY__COVERAGE", "0.5"),
                ("EMOGATE_DELIVERY__MODE", "at_least_once"),
                ("EMOGATE_KAFKA__PROPERTIES__SASL_MECHANISM", "PLAIN"),
                ("EMOGATE_PYTHON", "/not/config"),
                ("OTHER__THING", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.batch.max_records, 256);
        assert_eq!(c.kafka.topics.input, "features.v2");
        assert_eq!(c.kafka.brokers, "kafka:9092");
        assert_eq!(c.policy.coverage, 0.5);
        assert_eq!(c.delivery.mode, DeliveryMode::AtLeastOnce);
        assert_eq!(c.kafka.properties.0["sasl.mechanism"], "PLAIN");
    }

    #[test]
    fn unknown_keys_are_errors_in_file_and_env() {
        let err = parse("[batch]\nmax_record = 8\n", &[]).unwrap_err().to_string();
        assert!(err.contains("max_record"), "{err}");
        let err = parse("", &[("EMOGATE_BATCH__MAX_RECORD", "8")]).unwrap_err().to_string();
        assert!(err.contains("max_record") && err.contains("EMOGATE_BATCH__MAX_RECORD"), "{err}");
        let err = parse("", &[("EMOGATE_BATCH__MAX_RECORDS", "many")]).unwrap_err().to_string();
        assert!(err.contains("EMOGATE_BATCH__MAX_RECORDS") && err.contains("string"), "{err}");
        let err = parse("", &[("EMOGATE_BATCH__MAX_RECORDS__X", "8")]).unwrap_err().to_string();
        assert!(err.contains("EMOGATE_BATCH__MAX_RECORDS__X"), "{err}");
        let err = parse("[nope]\n", &[]).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        for (toml, key) in [
            ("[batch]\nmax_records = 0", "batch.max_records"),
            ("[batch]\nmax_wait_ms = 0", "batch.max_wait_ms"),
            ("[policy]\ncoverage = 1.5", "policy.coverage"),
            ("[model]\nworkers = 0", "model.workers"),
            ("[kafka.topics]\ndlq = \"emotion.accepted\"", "kafka.topics.dlq"),
            ("[kafka.topics]\ninput = \"emotion.dlq\"", "kafka.topics.input"),
            ("[policy.thresholds]\nvalence = -1.0\narousal = 1\ndominance = 1", "policy.thresholds.valence"),
            (
                "[kafka.properties]\n\"enable.auto.commit\" = \"true\"",
                "kafka.properties.\"enable.auto.commit\"",
            ),
            ("[archive]\ngroup_id = \"emogate-infer\"", "archive.group_id"),
            ("[archive]\nroll_rows = 0", "archive.roll_rows"),
            ("[delivery]\ntransaction_max_batches = 0", "delivery.transaction_max_batches"),
            ("[delivery]\ntransaction_max_ms = 40000", "delivery.transaction_max_ms"),
        ] {
            assert_eq!(key_of(parse(toml, &[]).unwrap_err()), key, "{toml}");
        }
        let err = parse("[policy]\ndecision = \"most\"", &[]).unwrap_err().to_string();
        assert!(err.contains("most"), "{err}");
    }

    #[test]
    fn secrets_resolve_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        let c = parse(
            &format!(
                "[kafka.properties]\n\"ssl.key.password\" = \"${{file:{}}}\"\n\"sasl.password\" = \"${{env:KAFKA_PASSWORD}}\"\n\"sasl.username\" = \"me\"\n",
                file.display()
            ),
            &[],
        )
        .unwrap();
        assert_eq!(c.kafka.properties.0["ssl.key.password"], "from-file");
        let printed = format!("{c:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("from-file"), "{printed}");
        assert!(printed.contains("\"me\""), "{printed}");
        let err = parse("[kafka.properties]\n\"sasl.password\" = \"${env:MISSING}\"", &[]).unwrap_err();
        assert!(err.to_string().contains("MISSING"));
    }
}
