//! The error type of the evaluation metrics (CCC, coverage curves, quintiles, thresholds).

/// Why a metric cannot be computed on the given data.
///
/// Every check is on caller data, so none of these is a bug in emogate: they name the slice
/// and position at fault so an evaluation script can say which input was wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    /// Two slices that must be paired item by item have different lengths.
    #[error("`{what}` has {found} items but `pred` has {expected}")]
    LengthMismatch { what: &'static str, expected: usize, found: usize },
    /// Too few items for the statistic (CCC needs 2; quintile CCC needs 2 per fifth).
    #[error("need at least {needed} items, got {found}")]
    TooFew { needed: usize, found: usize },
    /// A slice that needs at least one item is empty.
    #[error("`{what}` is empty")]
    Empty { what: &'static str },
    /// NaN or ±infinity in an input slice.
    #[error("`{what}[{index}]` is not finite ({value})")]
    NonFinite { what: &'static str, index: usize, value: f32 },
    /// A coverage outside `[0, 1]` or NaN.
    #[error("coverage {0} is not a fraction in [0, 1]")]
    InvalidCoverage(f64),
    /// A coverage keeps fewer than the 2 items CCC needs.
    #[error("coverage {coverage} keeps {kept} of {n} items; CCC needs at least 2")]
    CoverageTooSmall { coverage: f64, kept: usize, n: usize },
    /// A coverage step outside `[0.001, 0.8]` or NaN.
    #[error("coverage step {0} is not in [0.001, 0.8]")]
    InvalidStep(f64),
    /// A NaN threshold accepts nothing and is never what a caller meant.
    #[error("threshold is NaN")]
    NanThreshold,
}
