//! librdkafka client settings: the ones the pipeline's guarantees depend on.
//!
//! emogate owns the properties in [`crate::config::OWNED_PROPERTIES`] (auto-commit off, offsets
//! stored by the pipeline, `read_committed`, idempotence, `transactional.id`); everything else
//! in `kafka.properties` overrides emogate's defaults, so SASL/TLS and tuning work as with any
//! librdkafka client. The layering is [`crate::kafka_settings`]'s, the same for every client.

use rdkafka::config::ClientConfig;

use crate::config::{Config, DeliveryMode};
use crate::kafka_settings::ClientSettings;

/// What every infer-stage client shares: brokers, statistics, `kafka.properties`.
fn settings(config: &Config) -> ClientSettings<'_> {
    let mut s = ClientSettings::new(&config.kafka.brokers).properties(&config.kafka.properties.0);
    if config.telemetry.stats_interval_ms > 0 {
        s = s.default_value("statistics.interval.ms", config.telemetry.stats_interval_ms.to_string());
    }
    s
}

/// A consumer of `group`: manual offset management, `read_committed` (so a transactional
/// upstream's aborted records are skipped), `earliest` on a new group (so a fresh deployment
/// processes the backlog rather than silently skipping it; override `auto.offset.reset`).
pub fn consumer_config(config: &Config, group: &str) -> ClientConfig {
    settings(config)
        .default_value("auto.offset.reset", "earliest")
        .owned("group.id", group)
        .owned("enable.auto.commit", "false")
        .owned("enable.auto.offset.store", "false")
        .owned("isolation.level", "read_committed")
        .owned("enable.partition.eof", "false")
        .build()
}

/// The infer stage's producer: idempotent always; transactional in exactly-once mode.
///
/// `message.timeout.ms` defaults to `delivery.commit_timeout_ms` (which validation keeps at
/// most the transaction timeout): librdkafka's own default of 5 minutes would keep a batch's delivery reports
/// pending that long after a broker restart, holding its in-flight permit while nothing moves
/// (found by the fault suite's broker-restart test). A delivery that times out fails the batch,
/// which is rewound and re-read — never lost. `kafka.properties` may still override it.
///
/// `compression.type` defaults to lz4: the predictions are about 1 % of the input's bytes, so
/// their compression ratio hardly matters, but zstd built a compression context per message set
/// and took 0.3–0.8 % more of the process's CPU than lz4, from the model's cores
/// (docs/benchmarks.md).
pub fn producer_config(config: &Config) -> ClientConfig {
    let mut s = settings(config)
        .default_value("linger.ms", "5")
        .default_value("compression.type", "lz4")
        .default_value("message.timeout.ms", config.delivery.commit_timeout_ms.to_string())
        .owned("enable.idempotence", "true");
    if config.delivery.mode == DeliveryMode::ExactlyOnce {
        s = s
            .default_value("transaction.timeout.ms", config.delivery.transaction_timeout_ms.to_string())
            .owned("transactional.id", config.transactional_id());
    }
    s.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer_setting(config: &Config, name: &str) -> Option<String> {
        producer_config(config).get(name).map(str::to_string)
    }

    #[test]
    fn producer_defaults_to_lz4_and_kafka_properties_override_it() {
        let mut config = Config::default();
        assert_eq!(producer_setting(&config, "compression.type").as_deref(), Some("lz4"));
        assert_eq!(producer_setting(&config, "enable.idempotence").as_deref(), Some("true"));
        let timeout = config.delivery.commit_timeout_ms.to_string();
        assert_eq!(producer_setting(&config, "message.timeout.ms"), Some(timeout));

        config.kafka.properties.0.insert("compression.type".into(), "zstd".into());
        assert_eq!(producer_setting(&config, "compression.type").as_deref(), Some("zstd"));
    }

    #[test]
    fn exactly_once_producer_is_transactional_and_at_least_once_is_not() {
        let mut config = Config::default();
        config.delivery.mode = DeliveryMode::ExactlyOnce;
        assert_eq!(producer_setting(&config, "transactional.id"), Some(config.transactional_id()));
        config.delivery.mode = DeliveryMode::AtLeastOnce;
        assert_eq!(producer_setting(&config, "transactional.id"), None);
    }
}
