//! The one way emogate builds a librdkafka client configuration, for every client (the infer
//! stage's consumer and producer, the archive stage's consumer, the test kit's clients).
//!
//! Settings come in three layers, applied in this order, so the precedence is the same
//! everywhere: emogate's **defaults** (choices an operator may change, e.g. `compression.type`),
//! then the operator's **properties** (`kafka.properties`: SASL, TLS, tuning), then the
//! **owned** settings the delivery guarantees depend on (auto-commit off, `isolation.level`,
//! idempotence, …), which always win.

use std::collections::BTreeMap;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};

/// A client's settings, layer by layer (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct ClientSettings<'a> {
    pub brokers: &'a str,
    pub defaults: Vec<(&'static str, String)>,
    pub properties: Option<&'a BTreeMap<String, String>>,
    pub owned: Vec<(&'static str, String)>,
}

impl<'a> ClientSettings<'a> {
    pub fn new(brokers: &'a str) -> ClientSettings<'a> {
        ClientSettings { brokers, ..ClientSettings::default() }
    }

    /// A default the operator's properties may override.
    pub fn default_value(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.defaults.push((key, value.into()));
        self
    }

    /// The operator's passthrough properties.
    pub fn properties(mut self, properties: &'a BTreeMap<String, String>) -> Self {
        self.properties = Some(properties);
        self
    }

    /// A setting emogate's guarantees depend on: applied last, nothing overrides it.
    pub fn owned(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.owned.push((key, value.into()));
        self
    }

    /// The librdkafka configuration: brokers, defaults, properties, owned settings.
    pub fn build(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set_log_level(RDKafkaLogLevel::Warning);
        for (key, value) in &self.defaults {
            c.set(*key, value);
        }
        for (key, value) in self.properties.into_iter().flatten() {
            c.set(key, value);
        }
        c.set("bootstrap.servers", self.brokers);
        for (key, value) in &self.owned {
            c.set(*key, value);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_override_defaults_and_owned_settings_override_properties() {
        let properties = BTreeMap::from([
            ("compression.type".to_string(), "zstd".to_string()),
            ("isolation.level".to_string(), "read_uncommitted".to_string()),
            ("bootstrap.servers".to_string(), "elsewhere:9092".to_string()),
        ]);
        let c = ClientSettings::new("127.0.0.1:9092")
            .default_value("compression.type", "lz4")
            .default_value("linger.ms", "5")
            .properties(&properties)
            .owned("isolation.level", "read_committed")
            .build();
        assert_eq!(c.get("compression.type"), Some("zstd"));
        assert_eq!(c.get("linger.ms"), Some("5"));
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:9092"));
    }
}
