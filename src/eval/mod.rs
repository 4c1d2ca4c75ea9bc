//! `emogate evaluate` (feature `train`): the analyses of the paper's Section V on a corpus
//! and a trained model, with the baselines and ablations trained by the trainer's code paths.
//!
//! | module | job |
//! |---|---|
//! | [`stats`] | mean/std and the one-tailed Welch t-test (pure) |
//! | [`analysis`] | coverage curves, quintiles, UTL matrix, fold means, significance marks (pure) |
//! | [`methods`] | the uncertainty methods: VAE-ER, ablations, MCD baselines (training + scoring) |
//! | [`trials`] | finished trials on disk for `--resume`: atomic per-(trial, method) files, fingerprint, ETA |
//! | [`run`] | the evaluation: committed model, cross-corpus folds, trials → [`report::Report`] |
//! | [`report`] | `report.json` and one CSV per figure and table |
//! | [`plot`] | PNG figures in the paper's layout |

pub mod analysis;
pub mod error;
pub mod methods;
pub mod plot;
pub mod report;
pub mod run;
pub mod stats;
pub mod trials;

pub use error::EvalError;
pub use run::{run_evaluate, EvaluateOptions, Evaluation};
