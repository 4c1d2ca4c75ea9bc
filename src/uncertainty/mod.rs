//! Pure uncertainty math.

pub mod ccc;
pub mod entropy;
pub mod error;
pub mod soft_labels;

pub use ccc::{ccc, pearson};
pub use entropy::{entropy_nats, MAX_ENTROPY};
pub use error::MetricError;
pub use soft_labels::{consensus_label, soft_label, LikertScale, SoftLabelError};
