//! Tools around the service, not part of it (feature `testkit`, like rdkafka's `mocking`):
//! what `emogate demo`, `emogate bench` and `emogate produce` run, and what the integration
//! tests build on. Nothing in the service (`pipeline`, `archive`, `telemetry`) uses this module.
//!
//! | file | job | I/O? |
//! |---|---|---|
//! | `synthetic` | synthetic and deliberately broken feature records | pure |
//! | `cluster` | in-process mock cluster, bulk producing, independent read-back | Kafka |
//! | `load` | `emogate produce`: load generator and corpus replay | Kafka |
//! | `latency` | open-loop paced producer and output watcher for per-record latency | Kafka |
//! | `demo` | `emogate demo`: mock cluster, the stages, read-back, summary | Kafka |
//! | `bench` | `emogate bench`: raw inference throughput, peak memory, the report | ORT |

pub mod bench;
pub mod cluster;
pub mod demo;
pub mod latency;
pub mod load;
pub mod synthetic;
