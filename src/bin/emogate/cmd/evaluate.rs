//! `emogate evaluate`: the paper's analyses, baselines and ablations: report.json + CSV + PNG.

use std::path::PathBuf;

use anyhow::Result;

use emogate::eval::EvaluateOptions;

use super::train::EpochArgs;

/// `emogate evaluate`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvaluateArgs {
    /// Model directory (model.onnx + manifest.json) to evaluate.
    #[arg(long, default_value = "models/default")]
    pub model: PathBuf,
    /// Main corpus (its test split is scored; baselines train on its train/dev splits).
    #[arg(long)]
    pub corpus: PathBuf,
    /// Cross corpus (e.g. `emogate synth --variant iemocap`): Tables I/II. Optional.
    #[arg(long)]
    pub cross_corpus: Option<PathBuf>,
    /// Output directory for report.json, CSVs and PNGs.
    #[arg(long)]
    pub out: PathBuf,
    /// Trials (seeds) per method for the significance tests [default: 10, the paper's; 2
    /// with --quick].
    #[arg(long)]
    pub trials: Option<usize>,
    /// Seed of the first trial (trial k uses seed + k).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Methods to train, comma-separated (vae_er is always included): vae_er, no_soft_labels,
    /// one_mc_sample, no_vae, ae_mcd, mcd, mcd_soft, mcd_mtl.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "vae_er,no_soft_labels,one_mc_sample,no_vae,ae_mcd,mcd,mcd_soft,mcd_mtl"
    )]
    pub methods: Vec<String>,
    /// Latent samples (VAE family) and dropout passes (MCD family) at inference.
    #[arg(long, default_value_t = 100)]
    pub mc_samples: usize,
    /// Seconds-scale run for tests: the quick trainer schedule, 2 trials unless --trials.
    #[arg(long)]
    pub quick: bool,
    /// Epochs per phase of every method in each trial (default: the trainer's schedule);
    /// `--stl-epochs` also sets the MCD DNNs' and the cross-corpus STL regressors'.
    #[command(flatten)]
    pub epochs: EpochArgs,
    /// Skip the PNG figures.
    #[arg(long)]
    pub no_plots: bool,
    /// Trial directory: each finished (trial, method) is written there atomically as it
    /// completes; a rerun with the same directory skips what is stored, trains the rest and
    /// reports on every complete trial (accumulate 10 trials over several runs).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Start no new (trial, method) run after this many minutes (the one running finishes);
    /// with --resume, a rerun continues where this one stopped.
    #[arg(long, value_name = "MINUTES")]
    pub max_minutes: Option<f64>,
}

impl From<EvaluateArgs> for EvaluateOptions {
    fn from(args: EvaluateArgs) -> EvaluateOptions {
        EvaluateOptions {
            model: args.model,
            corpus: args.corpus,
            cross_corpus: args.cross_corpus,
            out: args.out,
            trials: args.trials,
            seed: args.seed,
            methods: args.methods,
            mc_samples: args.mc_samples,
            quick: args.quick,
            epochs: args.epochs.into(),
            no_plots: args.no_plots,
            resume: args.resume,
            max_minutes: args.max_minutes,
        }
    }
}

pub fn run(args: EvaluateArgs) -> Result<()> {
    super::init_tracing("info")?;
    let options: EvaluateOptions = args.into();
    let done = emogate::eval::run_evaluate(&options)?;
    if let Some(report) = &done.report {
        print!("{}", report.summary());
        println!("report, CSVs and figures: {}", options.out.display());
    }
    println!(
        "trials complete: {} of {} ({} run(s) trained now, {} read from the trial directory)",
        done.complete_trials, done.requested_trials, done.trained_runs, done.resumed_runs
    );
    if done.complete_trials < done.requested_trials {
        match &options.resume {
            Some(dir) => println!(
                "{}; run the same command again to continue from {}",
                if done.stopped_by_budget { "stopped at --max-minutes" } else { "unfinished" },
                dir.display()
            ),
            None => println!("stopped at --max-minutes; without --resume the finished runs were not kept"),
        }
    }
    Ok(())
}
