//! Pure uncertainty math.

pub mod soft_labels;

pub use soft_labels::{consensus_label, soft_label, LikertScale, SoftLabelError};
