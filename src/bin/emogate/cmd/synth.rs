//! `emogate synth`: writes a synthetic corpus with per-annotator votes.

use std::path::PathBuf;

use anyhow::Result;

use emogate::train::commands::{self, SynthOptions};
use emogate::train::corpus::synth::Variant;

/// `emogate synth`
#[derive(Debug, Clone, clap::Args)]
pub struct SynthArgs {
    /// Output directory (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Seed; the corpus is a pure function of seed, variant and sizes.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// `tiny`, `default`, `paper` (MSP-Podcast 1.6 / IEMOCAP sizes) or
    /// `train=N,dev=N,test=N,unlabeled=N`.
    #[arg(long, default_value = "default")]
    pub sizes: String,
    /// `msp` (7-point votes, ≥ 5 raters, unlabeled pool), `iemocap` (cross-corpus role:
    /// 5-point votes, ≥ 2 raters, shifted features) or `scenes` (a second generative
    /// family at MSP-Podcast's sizes: sparse attribute features, recording scenes, heavy-tailed
    /// noise, 5–8 raters who mostly use three of the seven points). `--family` is an alias.
    #[arg(long, visible_alias = "family", value_enum, default_value_t = Variant::Msp)]
    pub variant: Variant,
    /// Write features as openSMILE-style CSV instead of `.npy`.
    #[arg(long)]
    pub csv: bool,
}

impl From<SynthArgs> for SynthOptions {
    fn from(args: SynthArgs) -> SynthOptions {
        SynthOptions {
            out: args.out,
            seed: args.seed,
            sizes: args.sizes,
            variant: args.variant,
            csv: args.csv,
        }
    }
}

pub fn run(args: SynthArgs) -> Result<()> {
    super::init_tracing("info")?;
    Ok(commands::run_synth(&args.into())?)
}
