//! emogate: uncertainty-aware speech emotion recognition as a streaming service.
//!
//! The crate follows the layout of `DESIGN.md` §2. Pure logic is kept apart from I/O so
//! that it can be tested without Kafka, files or ONNX Runtime:
//!
//! | module | job | I/O? |
//! |---|---|---|
//! | [`attribute`] | the three emotional attributes and a per-attribute container | pure |
//! | [`human`] | number, unit and label formatting for the summaries people read | pure |
//! | [`durable`] | whole-file replacement that survives a crash (temp → fsync → rename → fsync dir) | files |
//! | [`codec`] | Avro schemas, wire framing (Confluent / single-object / raw), fast feature decoding, prediction encoding | pure |
//! | [`uncertainty`] | soft labels, entropy, CCC, coverage curves, uncertainty quintiles | pure |
//! | [`model`] | ONNX Runtime: library discovery and loading, manifest, execution provider choice, session pool, batch inference | ORT |
//! | [`archive`] | archive stage: predictions → hive-partitioned Parquet (row buffers, roll policy, durable sink, Kafka consumer) | files, Kafka |
//! | [`config`] | typed configuration: TOML file + `EMOGATE_*` environment overrides | files |
//! | [`policy`] | reject policy: calibrated thresholds, UTL source mapping, record decision | pure |
//! | [`telemetry`] | tracing set-up, Prometheus metrics, `/metrics` `/healthz` `/readyz` | HTTP |
//! | [`lifecycle`] | shutdown signal, what a stage gets from the process ([`lifecycle::StageContext`]), running stages together | signals, tasks |
//! | [`kafka_settings`] | the one librdkafka client-settings builder (defaults < `kafka.properties` < owned) | pure |
//! | [`pipeline`] | the streaming infer stage: a chain of steps (batch → infer → route → deliver) driven by one processor thread | Kafka |
//! | [`featurize`] | the audio front end: openSMILE ComParE_2016 functionals from audio files (real `libSMILEapi` at run time), decoding, resampling, resumable corpora | files, FFI |
//! | [`service`] | the stages as a process runs them: the archive stage from the config, typed [`service::StageError`] / [`service::StageReport`] | Kafka |
//! | `testkit` | (feature `testkit`) tools apart from the service: mock cluster, synthetic records, load generator, latency, `emogate demo` and `bench` | Kafka, ORT |
//! | `train` | (feature `train`) synthetic/MSP-style corpora, VAE-ER + STL training in candle, ONNX export, calibration | files |
//! | `eval` | (feature `train`) `emogate evaluate`: the paper's analyses, baselines and ablations, report, plots | files |
//!
//! In data-flow order: a feature record is decoded (`codec`), batched and run through the
//! model (`pipeline`, `model`), scored (`uncertainty`, `policy`), produced and archived
//! (`pipeline`, `archive`); `lifecycle` and `service` start and stop the stages, `telemetry`
//! watches them. The table is also the import order: a module imports only modules above it
//! (train/eval only attribute, model, uncertainty and each other), so no module imports one
//! that imports it.
//!
//! The binary (`src/bin/emogate/`, one file per command in `cmd/`) is the only place that uses
//! `anyhow`; every module here returns its own `thiserror` enum so callers can match on what went wrong.

pub mod archive;
pub mod attribute;
pub mod codec;
pub mod config;
pub mod durable;
#[cfg(feature = "train")]
pub mod eval;
pub mod featurize;
pub mod human;
pub mod kafka_settings;
pub mod lifecycle;
pub mod model;
pub mod pipeline;
pub mod policy;
pub mod service;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
#[cfg(feature = "train")]
pub mod train;
pub mod uncertainty;

pub use attribute::{Attribute, PerAttribute, LIKERT_BINS};
