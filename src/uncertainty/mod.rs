//! Pure uncertainty math.

pub mod ccc;
pub mod coverage;
pub mod entropy;
pub mod error;
pub mod soft_labels;

pub use ccc::{ccc, pearson};
pub use coverage::{
    accepted_fraction, coverage_curve, kept_count, quintile_ccc, quintile_groups, standard_coverages,
    threshold_for_coverage, uncertainty_order, CoveragePoint, MIN_STANDARD_COVERAGE, QUINTILES,
};
pub use entropy::{entropy_nats, MAX_ENTROPY};
pub use error::MetricError;
pub use soft_labels::{consensus_label, soft_label, LikertScale, SoftLabelError};
