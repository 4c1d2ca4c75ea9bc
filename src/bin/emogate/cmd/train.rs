//! `emogate train`: trains VAE-ER and the STL regressors, exports model.onnx + manifest.json.

use std::path::PathBuf;

use anyhow::Result;

use emogate::attribute::Attribute;
use emogate::model::NoiseBank;
use emogate::train::commands::{self, EpochOptions, TrainOptions};

/// `emogate train`
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Corpus directory (MSP-Podcast-style layout, see docs/model-card.md).
    #[arg(long)]
    pub corpus: PathBuf,
    /// Model directory to write (model.onnx, manifest.json, parts/).
    #[arg(long)]
    pub out: PathBuf,
    /// Train only this attribute (its checkpoint goes to OUT/parts/); the serving graph is
    /// exported once all three attributes have checkpoints there.
    #[arg(long)]
    pub attribute: Option<Attribute>,
    /// One or two epochs per phase: exercises the whole path in seconds.
    #[arg(long)]
    pub quick: bool,
    /// Train nothing: fuse the checkpoints already in OUT/parts/ into the serving graph
    /// (e.g. again with another --mc-samples or --noise-bank), evaluate and calibrate.
    #[arg(long, conflicts_with = "attribute")]
    pub export_only: bool,
    /// Take trained weights (and normalisation) from this model directory's model.onnx instead
    /// of OUT/parts/. With --export-only: re-export it, e.g. with another noise bank. With
    /// --attribute A: retrain only A and take the other two attributes from it. Its manifest
    /// must name the same corpus.
    #[arg(long)]
    pub weights_from: Option<PathBuf>,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Monte-Carlo samples S in the exported noise bank.
    #[arg(long, default_value_t = 100)]
    pub mc_samples: usize,
    #[arg(long, value_enum, default_value_t = NoiseBank::Gaussian)]
    pub noise_bank: NoiseBank,
    /// Seed of the noise bank (recorded in the manifest).
    #[arg(long, default_value_t = 2020)]
    pub noise_seed: u64,
    /// Measure the exported bank against a Gaussian bank of this many samples on the test split
    /// and record the error in the manifest's `mc` (0: not measured; the study used 2000)
    #[arg(long, default_value_t = 0)]
    pub mc_reference_samples: usize,
    /// Seed of that reference bank; must differ from --noise-seed, or the reference would
    /// repeat the exported bank's own draws
    #[arg(long, default_value_t = 7919)]
    pub mc_reference_seed: u64,
    /// Smallest dev CCC each VAE-ER consensus head must reach, or training stops with an error
    /// after saving its checkpoint (default 0.1; 0 with --quick)
    #[arg(long)]
    pub min_head_ccc: Option<f64>,
    /// A head still below that floor after --joint-epochs trains on, one epoch at a time, for
    /// up to this many more until its selected epoch clears it (a plateau, docs/model-card.md);
    /// 0 refuses at once (default 12)
    #[arg(long)]
    pub plateau_epochs: Option<usize>,
    #[command(flatten)]
    pub epochs: EpochArgs,
    #[arg(long)]
    pub batch: Option<usize>,
    /// Eq. (3) weight of NLL_VAE.
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Eq. (3) weight of (1 − CCC) on consensus labels.
    #[arg(long)]
    pub beta: Option<f64>,
    /// Eq. (3) weight of KLD on soft labels.
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Latent MC samples per utterance in a training step.
    #[arg(long)]
    pub mc_train: Option<usize>,
    /// Dropout rate of the ER/STL hidden layers for valence.
    #[arg(long)]
    pub dropout_valence: Option<f32>,
    /// Dropout rate of the ER/STL hidden layers for arousal and dominance.
    #[arg(long)]
    pub dropout_arousal_dominance: Option<f32>,
    /// Also apply dropout to the VAE encoder's hidden layers.
    #[arg(long)]
    pub encoder_dropout: bool,
    /// Model id written to the manifest.
    #[arg(long, default_value = "emogate-vae-er")]
    pub id: String,
    #[arg(long, default_value = "1")]
    pub version: String,
}

impl From<TrainArgs> for TrainOptions {
    fn from(args: TrainArgs) -> TrainOptions {
        TrainOptions {
            corpus: args.corpus,
            out: args.out,
            attribute: args.attribute,
            quick: args.quick,
            export_only: args.export_only,
            weights_from: args.weights_from,
            seed: args.seed,
            mc_samples: args.mc_samples,
            noise_bank: args.noise_bank,
            noise_seed: args.noise_seed,
            mc_reference_samples: args.mc_reference_samples,
            mc_reference_seed: args.mc_reference_seed,
            min_head_ccc: args.min_head_ccc,
            plateau_epochs: args.plateau_epochs,
            epochs: args.epochs.into(),
            batch: args.batch,
            alpha: args.alpha,
            beta: args.beta,
            gamma: args.gamma,
            mc_train: args.mc_train,
            dropout_valence: args.dropout_valence,
            dropout_arousal_dominance: args.dropout_arousal_dominance,
            encoder_dropout: args.encoder_dropout,
            id: args.id,
            version: args.version,
        }
    }
}

/// Epoch counts that override a schedule (`emogate train` and `emogate evaluate` share them).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EpochArgs {
    /// Epochs of phase 1 (VAE pre-training on the unlabeled pool).
    #[arg(long)]
    pub pretrain_epochs: Option<usize>,
    /// Epochs of phase 2 (joint VAE-ER).
    #[arg(long)]
    pub joint_epochs: Option<usize>,
    /// Epochs of the STL regressors (and of evaluate's MCD DNNs).
    #[arg(long)]
    pub stl_epochs: Option<usize>,
}

impl From<EpochArgs> for EpochOptions {
    fn from(args: EpochArgs) -> EpochOptions {
        EpochOptions {
            pretrain_epochs: args.pretrain_epochs,
            joint_epochs: args.joint_epochs,
            stl_epochs: args.stl_epochs,
        }
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    super::init_tracing("info")?;
    Ok(commands::run_train(&args.into())?)
}
