//! `emogate bench`: measures inference throughput and prints one JSON object (DESIGN §3).

use std::path::PathBuf;

use anyhow::Result;

use emogate::config::{BatchConfig, DeliveryConfig, ModelConfig};
use emogate::model::ProviderChoice;
use emogate::testkit::bench::{self, BenchOptions, E2eInput};

/// `emogate bench`
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Model directory (default: models/default if present, else models/fixture).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 2048)]
    records: usize,
    /// Raw and end-to-end runs, alternated this many times and closed by one more raw run; the
    /// report gives their medians and the median of the ratios of each end-to-end run to the
    /// mean of the raw runs on either side of it (on a shared VM, consecutive runs differed by
    /// up to ±25 %, docs/benchmarks.md, so one pair proves little).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Inference workers (sessions); each runs `threads` intra-op threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Intra-op threads per session (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// ONNX Runtime intra-op spinning (`model.intra_op_spinning`) in every run of the bench.
    #[arg(long, default_value_t = ModelConfig::default().intra_op_spinning, action = clap::ArgAction::Set)]
    ort_spinning: bool,
    /// Most micro-batches per exactly-once transaction in the end-to-end runs
    /// (`delivery.transaction_max_batches`; 1 = one transaction per batch).
    #[arg(long, default_value_t = DeliveryConfig::default().transaction_max_batches)]
    transaction_max_batches: usize,
    #[arg(long, value_enum, default_value_t = ProviderChoice::Auto)]
    execution_provider: ProviderChoice,
    /// Also run scripts/ort_bench.py (plain Python onnxruntime) with this interpreter on the
    /// same model, batch and threads in this run, and report the ratio.
    #[arg(long)]
    python_reference: Option<PathBuf>,
    /// Only the raw inference measurement (no mock cluster runs).
    #[arg(long)]
    raw_only: bool,
    /// How the end-to-end throughput run gets its input: all of it produced before the stage
    /// starts (the stage alone is timed), or produced while it runs in this process.
    #[arg(long, value_enum, default_value_t = E2eInput::Preproduced)]
    e2e_input: E2eInput,
    /// `batch.max_wait_ms` of the infer stage in the end-to-end runs.
    #[arg(long, default_value_t = BatchConfig::default().max_wait_ms)]
    max_wait_ms: u64,
    /// Offered load of the latency run, records/s (default: half the measured end-to-end rate).
    /// Above the sustainable rate the backlog outgrows the mock cluster's 5 MiB per partition,
    /// which deletes old input as retention would, and the run fails for the lost answers.
    #[arg(long)]
    offered_load: Option<f64>,
    /// Length of the latency run at the offered load, seconds (0 skips it).
    #[arg(long, default_value_t = 5.0)]
    latency_seconds: f64,
    /// librdkafka property for the infer stage's clients in the end-to-end runs, `name=value`
    /// (repeatable). Default `fetch.wait.max.ms=20`: the mock cluster holds a fetch that finds
    /// no data for the whole `fetch.wait.max.ms` (500 ms by default) instead of answering when
    /// data arrives as a real broker does, which put a 0–500 ms floor under every latency.
    #[arg(long = "property", short = 'X', value_parser = super::parse_property)]
    properties: Vec<(String, String)>,
    /// librdkafka property for the producer of the end-to-end runs' input, the upstream the
    /// bench stands in for, `name=value` (repeatable); e.g. `compression.type=zstd` to measure
    /// what a compressing upstream costs the infer stage's consumer.
    #[arg(long = "input-property", value_parser = super::parse_property)]
    input_properties: Vec<(String, String)>,
    /// Run the end-to-end and latency runs against these Kafka-protocol brokers
    /// (`host:port,...`, e.g. a Tansu on 127.0.0.1) instead of the in-process mock cluster;
    /// each run creates and deletes its own uniquely named topics.
    #[arg(long)]
    brokers: Option<String>,
}

impl From<BenchArgs> for BenchOptions {
    fn from(args: BenchArgs) -> BenchOptions {
        BenchOptions {
            model: args.model,
            records: args.records,
            repeat: args.repeat,
            batch: args.batch,
            workers: args.workers,
            threads: args.threads,
            ort_spinning: args.ort_spinning,
            transaction_max_batches: args.transaction_max_batches,
            execution_provider: args.execution_provider,
            python_reference: args.python_reference,
            raw_only: args.raw_only,
            e2e_input: args.e2e_input,
            max_wait_ms: args.max_wait_ms,
            offered_load: args.offered_load,
            latency_seconds: args.latency_seconds,
            properties: args.properties,
            input_properties: args.input_properties,
            brokers: args.brokers,
        }
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    super::init_tracing("warn")?;
    let report = bench::run_bench(&args.into(), &super::runtime()?)?;
    println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    Ok(())
}
