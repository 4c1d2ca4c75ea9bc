//! `emogate calibrate`: fits entropy thresholds for target coverages on the dev split.

use std::path::PathBuf;

use anyhow::Result;

use emogate::train::commands::{self, CalibrateOptions};

/// `emogate calibrate`
#[derive(Debug, Clone, clap::Args)]
pub struct CalibrateArgs {
    /// Model directory (model.onnx + manifest.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Corpus whose dev split calibrates the thresholds.
    #[arg(long)]
    pub corpus: PathBuf,
    /// Target coverage in (0, 1]; default: the grid 0.2, 0.3, …, 1.0.
    #[arg(long)]
    pub coverage: Option<f64>,
    /// Calibrate even if keeping the 60 % most certain dev records lowers CCC for an
    /// attribute (otherwise that is refused: exit non-zero, manifest untouched).
    #[arg(long)]
    pub allow_harmful_reject: bool,
}

impl From<CalibrateArgs> for CalibrateOptions {
    fn from(args: CalibrateArgs) -> CalibrateOptions {
        CalibrateOptions {
            model: args.model,
            corpus: args.corpus,
            coverage: args.coverage,
            allow_harmful_reject: args.allow_harmful_reject,
        }
    }
}

pub fn run(args: CalibrateArgs) -> Result<()> {
    super::init_tracing("info")?;
    Ok(commands::run_calibrate(&args.into())?)
}
