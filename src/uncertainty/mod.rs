//! Pure uncertainty math: the numbers behind emogate's reject option.
//!
//! emogate follows Sridhar, Lin & Busso, "Generative Approach Using Soft-Labels to Learn
//! Uncertainty in Predicting Emotional Attributes". The model predicts, per attribute, a
//! distribution over seven Likert bins; its entropy is the uncertainty, and predictions whose
//! uncertainty is too high are rejected. This module holds every formula involved, free of
//! I/O so that training tools, calibration and the service share one definition.
//!
//! | piece | paper | used for |
//! |---|---|---|
//! | [`soft_label`], [`consensus_label`] ([`soft_labels`]) | §III-A: bin the attribute space, count votes per bin, normalise; the consensus label is the mean vote (targets of Eq. 3) | the labels on any Likert scale; the trainer's `train::labels` (raw votes, 7-point corpora) gives the same bits on 1–7 votes |
//! | [`entropy_nats`] ([`entropy`]) | §III-B: entropy of the (MC-averaged) predicted distribution | the uncertainty score |
//! | [`ccc()`], [`pearson`] ([`mod@ccc`]) | Lin's concordance correlation coefficient, the metric of every table and figure and the `(1 − CCC)` loss of Eq. 3 | evaluation |
//! | [`coverage_curve`], [`standard_coverages`] ([`coverage`]) | §V-B, Fig. 3: CCC as the most uncertain samples are rejected, 100% → 20% coverage | evaluation |
//! | [`quintile_ccc`], [`quintile_groups`] ([`coverage`]) | §V-A, Fig. 2: CCC on five equal groups ordered by uncertainty | evaluation |
//! | [`LevelProfile`] ([`level_score`]) | beyond the paper: the entropy standardised within the predicted level, fitted on dev | the served `{a}_uncertainty` ([`ScoreKind`] picks which score the policy ranks by) |
//! | [`record_thresholds`] ([`record_coverage`]) | beyond the paper: thresholds for which the record rule `all`/`any` accepts the target fraction of *records* | calibration of `policy.coverage` as a record rate |
//! | [`threshold_for_coverage`], [`accepted_fraction`] ([`coverage`]) | the reject option as a deployable rule `u <= threshold` | calibration on the dev split, monitoring |
//!
//! Conventions callers rely on, documented in full on each item:
//!
//! * votes on another Likert scale are mapped linearly onto 1–7 and a vote between two bin
//!   centres splits its mass between them ([`soft_label`]);
//! * CCC uses population moments and matches `audmetric.concordance_cc`, including NaN for
//!   two equal constant vectors ([`ccc()`]);
//! * items are ordered by uncertainty with ties broken by original index, coverage `c` keeps
//!   `round(c·n)` items (halves up), and a quintile remainder goes to the most certain groups
//!   ([`coverage`]).
//!
//! Errors are typed ([`SoftLabelError`], [`MetricError`]); nothing here panics on caller
//! data.

pub mod ccc;
pub mod coverage;
pub mod entropy;
pub mod error;
pub mod level_score;
pub mod record_coverage;
pub mod score_kind;
pub mod soft_labels;

pub use ccc::{ccc, pearson};
pub use coverage::{
    accepted_fraction, coverage_curve, kept_count, quintile_ccc, quintile_groups, standard_coverages,
    threshold_for_coverage, uncertainty_order, CoveragePoint, MIN_STANDARD_COVERAGE, QUINTILES,
};
pub use entropy::{entropy_nats, MAX_ENTROPY};
pub use error::MetricError;
pub use level_score::LevelProfile;
pub use record_coverage::{record_accepted_fraction, record_thresholds, JointRule, RecordCalibration};
pub use score_kind::ScoreKind;
pub use soft_labels::{consensus_label, soft_label, LikertScale, SoftLabelError};
