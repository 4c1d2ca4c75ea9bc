//! What the serving graph says about one record.

use crate::attribute::{PerAttribute, LIKERT_BINS};

/// The four outputs of the serving graph for one attribute of one record.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AttributeOutput {
    /// STL regressor prediction on the 1–7 scale.
    pub value: f32,
    /// VAE-ER consensus head averaged over the MC samples.
    pub consensus: f32,
    /// VAE-ER soft-label distribution averaged over the MC samples.
    pub distribution: [f32; LIKERT_BINS],
    /// Entropy of `distribution` in nats (the uncertainty).
    pub entropy: f32,
}

/// All attributes of one record, in input order within a batch.
pub type Prediction = PerAttribute<AttributeOutput>;
