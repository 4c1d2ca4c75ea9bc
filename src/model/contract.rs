//! Names and shapes of the serving graph (DESIGN §6), shared by the exporter, the loader's
//! verification and the tests so the contract is written down exactly once.

use crate::attribute::{Attribute, LIKERT_BINS};

/// Name of the graph input: float32 `[N, feature_dims]`.
pub const INPUT_NAME: &str = "features";

/// The four outputs every attribute has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// STL regressor prediction, `[N]`.
    Value,
    /// VAE-ER consensus head averaged over the MC samples, `[N]`.
    Consensus,
    /// VAE-ER soft-label distribution averaged over the MC samples, `[N, 7]`.
    Distribution,
    /// Entropy of that distribution in nats, `[N]`.
    Entropy,
}

impl OutputKind {
    pub const ALL: [OutputKind; 4] =
        [OutputKind::Value, OutputKind::Consensus, OutputKind::Distribution, OutputKind::Entropy];

    fn suffix(self) -> &'static str {
        match self {
            OutputKind::Value => "value",
            OutputKind::Consensus => "consensus",
            OutputKind::Distribution => "distribution",
            OutputKind::Entropy => "entropy",
        }
    }

    /// Per-row width: 7 for the distribution, 1 for the scalars.
    pub fn width(self) -> usize {
        match self {
            OutputKind::Distribution => LIKERT_BINS,
            _ => 1,
        }
    }

    /// Rank of the output tensor.
    pub fn rank(self) -> usize {
        match self {
            OutputKind::Distribution => 2,
            _ => 1,
        }
    }
}

/// `{attribute}_{kind}`, e.g. `valence_entropy`.
pub fn output_name(attribute: Attribute, kind: OutputKind) -> String {
    format!("{}_{}", attribute.as_str(), kind.suffix())
}

/// All twelve output names in contract order (attribute-major).
pub fn output_names() -> Vec<String> {
    Attribute::ALL.iter().flat_map(|&a| OutputKind::ALL.iter().map(move |&k| output_name(a, k))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_outputs_named_by_the_contract() {
        let names = output_names();
        assert_eq!(names.len(), 12);
        assert_eq!(names[0], "valence_value");
        assert_eq!(names[6], "arousal_distribution");
        assert_eq!(names[11], "dominance_entropy");
    }
}
