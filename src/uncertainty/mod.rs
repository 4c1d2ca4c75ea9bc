//! Pure uncertainty math.

pub mod entropy;
pub mod soft_labels;

pub use entropy::{entropy_nats, MAX_ENTROPY};
pub use soft_labels::{consensus_label, soft_label, LikertScale, SoftLabelError};
