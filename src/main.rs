//! The `emogate` command line. Only the trainer's subcommands live here so far.
// Without feature `train` there is no subcommand yet, so `Command` has no variant.
#![cfg_attr(not(feature = "train"), allow(unreachable_code, unused_variables))]

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "emogate", version, about = "Uncertainty-aware speech emotion recognition")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic corpus with per-annotator votes (feature `train`).
    #[cfg(feature = "train")]
    Synth(emogate::train::cli::SynthArgs),
    /// Train VAE-ER and the STL regressors, export model.onnx + manifest.json (feature `train`).
    #[cfg(feature = "train")]
    Train(emogate::train::cli::TrainArgs),
    /// Fit entropy thresholds for target coverages on the dev split (feature `train`).
    #[cfg(feature = "train")]
    Calibrate(emogate::train::cli::CalibrateArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        #[cfg(feature = "train")]
        Command::Synth(args) => emogate::train::cli::run_synth(&args)?,
        #[cfg(feature = "train")]
        Command::Train(args) => emogate::train::cli::run_train(&args)?,
        #[cfg(feature = "train")]
        Command::Calibrate(args) => emogate::train::cli::run_calibrate(&args)?,
    }
    Ok(())
}
