//! emogate command line (DESIGN §3). Parsing and wiring only; the work is in the library. One
//! file per command in `cmd/`, each with its clap arguments. This binary is the only place
//! that uses `anyhow`.

mod cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "emogate", version, about = "Uncertainty-aware speech emotion recognition on Kafka")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// End-to-end run on an in-process mock Kafka cluster with synthetic records; prints a summary.
    #[cfg(feature = "testkit")]
    Demo(cmd::demo::DemoArgs),
    /// The production service.
    Serve(cmd::serve::ServeArgs),
    /// Load generator / corpus replay: send feature records to a topic.
    #[cfg(feature = "testkit")]
    Produce(cmd::produce::ProduceArgs),
    /// Measures inference throughput and prints one JSON object (DESIGN §3).
    #[cfg(feature = "testkit")]
    Bench(cmd::bench::BenchArgs),
    /// Computes openSMILE ComParE_2016 features from audio files into a training corpus.
    Featurize(cmd::featurize::FeaturizeArgs),
    /// Writes a synthetic corpus with per-annotator votes (feature `train`).
    #[cfg(feature = "train")]
    Synth(cmd::synth::SynthArgs),
    /// Trains VAE-ER and the STL regressors, exports model.onnx + manifest.json (feature `train`).
    #[cfg(feature = "train")]
    Train(cmd::train::TrainArgs),
    /// Fits entropy thresholds for target coverages on the dev split (feature `train`).
    #[cfg(feature = "train")]
    Calibrate(cmd::calibrate::CalibrateArgs),
    /// Reproduces the paper's analyses, baselines and ablations: report.json + CSV + PNG (feature `train`).
    #[cfg(feature = "train")]
    Evaluate(cmd::evaluate::EvaluateArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        #[cfg(feature = "testkit")]
        Command::Demo(args) => cmd::demo::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        #[cfg(feature = "testkit")]
        Command::Produce(args) => cmd::produce::run(args),
        #[cfg(feature = "testkit")]
        Command::Bench(args) => cmd::bench::run(args),
        Command::Featurize(args) => cmd::featurize::run(args),
        #[cfg(feature = "train")]
        Command::Synth(args) => cmd::synth::run(args),
        #[cfg(feature = "train")]
        Command::Train(args) => cmd::train::run(args),
        #[cfg(feature = "train")]
        Command::Calibrate(args) => cmd::calibrate::run(args),
        #[cfg(feature = "train")]
        Command::Evaluate(args) => cmd::evaluate::run(args),
    }
}
