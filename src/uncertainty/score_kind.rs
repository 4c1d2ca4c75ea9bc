//! Which uncertainty score the reject option ranks by.
//!
//! Every prediction carries both: the paper's `entropy` (contract unchanged) and, when the
//! model's manifest holds a dev-fitted [`super::LevelProfile`] per attribute, the served
//! `uncertainty` (the entropy standardised within the predicted level). The policy compares one
//! of them with thresholds calibrated for that score; `calibrate` records which one ranked the
//! dev errors better, and that is the default.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The score a reject threshold applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    /// The paper's soft-label entropy (nats, `[0, ln 7]`).
    Entropy,
    /// The entropy standardised within the predicted level (dev z-score, unbounded).
    Uncertainty,
}

impl ScoreKind {
    pub const ALL: [ScoreKind; 2] = [ScoreKind::Entropy, ScoreKind::Uncertainty];

    pub fn as_str(self) -> &'static str {
        match self {
            ScoreKind::Entropy => "entropy",
            ScoreKind::Uncertainty => "uncertainty",
        }
    }
}

impl fmt::Display for ScoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_json() {
        for k in ScoreKind::ALL {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
            assert_eq!(serde_json::from_str::<ScoreKind>(&format!("\"{k}\"")).unwrap(), k);
        }
        assert!(serde_json::from_str::<ScoreKind>("\"variance\"").is_err());
    }
}
