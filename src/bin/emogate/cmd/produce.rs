//! `emogate produce`: load generator / corpus replay.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use emogate::codec::Framing;
use emogate::human;
use emogate::testkit::load::{self, ProduceOptions, RecordSource};

/// `emogate produce`
#[derive(clap::Args)]
pub struct ProduceArgs {
    #[arg(long)]
    brokers: String,
    #[arg(long, default_value = "ser.features")]
    topic: String,
    /// Corpus directory (features.csv, or features.npy + features_index.csv).
    #[arg(long, conflicts_with_all = ["synthetic", "audio"], required_unless_present_any = ["synthetic", "audio"])]
    corpus: Option<PathBuf>,
    /// Number of synthetic records.
    #[arg(long, conflicts_with = "audio")]
    synthetic: Option<usize>,
    /// Audio files or folders (.wav, .flac, .mp3): featurized with openSMILE (ComParE_2016) and
    /// sent with the path relative to the folder (the file name) as `utterance_id`; bad files
    /// are reported and skipped. Repeatable.
    #[arg(long, num_args = 1..)]
    audio: Vec<PathBuf>,
    /// Folder holding libSMILEapi.so and config/ (default: EMOGATE_OPENSMILE_DIR, then .cache/opensmile/).
    #[arg(long, requires = "audio")]
    opensmile: Option<PathBuf>,
    /// Featurizing threads for --audio (default: one per core).
    #[arg(long, requires = "audio")]
    jobs: Option<usize>,
    /// Records per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Feature dimension of synthetic records.
    #[arg(long, default_value_t = 6373)]
    dims: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Confluent framing with this schema id (default: Avro single-object encoding).
    #[arg(long)]
    schema_id: Option<u32>,
    /// Extra librdkafka property, `name=value` (repeatable).
    #[arg(long = "property", short = 'X', value_parser = super::parse_property)]
    properties: Vec<(String, String)>,
    /// Print what was sent as one JSON object instead of a sentence.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ProduceArgs) -> Result<()> {
    super::init_tracing("info")?;
    let ProduceArgs {
        brokers,
        topic,
        corpus,
        synthetic,
        audio,
        opensmile,
        jobs,
        rate,
        dims,
        seed,
        schema_id,
        properties,
        json,
    } = args;
    let source = match (corpus, synthetic) {
        (Some(dir), _) => RecordSource::Corpus(dir),
        (None, Some(count)) => RecordSource::Synthetic { count, dims, seed },
        (None, None) if !audio.is_empty() => {
            let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            RecordSource::Audio { inputs: audio, opensmile, jobs }
        }
        (None, None) => bail!("give --corpus DIR, --synthetic N or --audio DIR|FILE..."),
    };
    let framing = schema_id.map_or(Framing::SingleObject, |schema_id| Framing::Confluent { schema_id });
    let options = ProduceOptions { brokers, topic, source, rate, framing, properties };
    let report = super::runtime()?.block_on(load::produce(&options)).context("produce failed")?;
    let rate = report.records as f64 / report.seconds.max(1e-9);
    if json {
        let summary = serde_json::json!({
            "records": report.records,
            "topic": options.topic,
            "seconds": report.seconds,
            "records_per_sec": rate,
            "skipped": report.skipped,
        });
        println!("{summary}");
    } else {
        println!(
            "sent {} records to {} in {:.2} s ({} records/s)",
            human::count(report.records as u64),
            options.topic,
            report.seconds,
            human::whole(rate)
        );
        for reason in &report.skipped {
            println!("skipped {reason}");
        }
    }
    Ok(())
}
