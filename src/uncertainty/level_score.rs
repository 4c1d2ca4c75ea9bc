//! The level-standardised entropy: the paper's entropy with its dependence on the predicted
//! level taken out, the candidate for the served `{a}_uncertainty` (issue 15).
//!
//! Why: a trained VAE-ER's entropy also tracks *where* on the scale a prediction lies (on the
//! committed model corr(valence entropy, predicted valence) = 0.661), so ranking by entropy
//! partly sorts by level and the accepted set loses the spread of labels that CCC needs.
//! Standardising the entropy within the level — `(H − m(level)) / s(level)`, with `m` and `s`
//! the dev split's mean and standard deviation of the entropy at that level — leaves only
//! "more or less certain than usual at this level". `scripts/score_study.py` measured it
//! against the alternatives (docs/model-card.md): +15.8 / +18.4 / +18.1 % CCC at 60 %
//! coverage on the synthetic test split, against +1.0 / +15.4 / +17.7 % for the entropy.
//!
//! The profile is fitted on dev only: the dev records sorted by level are cut into `knots`
//! groups of equal count (the remainder to the first groups); each group gives one knot at
//! its mean level with the group's mean and population standard deviation of the entropy.
//! Between knots both are linear in the level; beyond the outer knots they are constant (as
//! numpy's `interp`, which the study script uses).

use serde::{Deserialize, Serialize};

use super::ccc::check_finite;
use super::error::MetricError;

/// Smallest standard deviation a knot may have: a level group whose entropies are all equal
/// must not turn a tiny difference into an enormous score.
pub const MIN_SD: f64 = 1e-6;

/// Knots the service fits by default: ten dev quantile groups, as in the study.
pub const DEFAULT_KNOTS: usize = 10;

/// Mean and standard deviation of the entropy as piecewise-linear functions of the level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelProfile {
    /// Knot positions (mean level of each group), strictly increasing.
    pub level: Vec<f64>,
    /// Mean entropy at each knot (nats).
    pub mean: Vec<f64>,
    /// Standard deviation of the entropy at each knot (nats, at least [`MIN_SD`]).
    pub sd: Vec<f64>,
}

impl LevelProfile {
    /// Fits the profile on paired dev `level`s (the served prediction) and `entropy`s.
    ///
    /// Needs at least two records per knot; a group whose mean level equals the previous
    /// knot's (many equal predictions) is merged into it so knots stay strictly increasing.
    pub fn fit(level: &[f32], entropy: &[f32], knots: usize) -> Result<LevelProfile, MetricError> {
        if entropy.len() != level.len() {
            return Err(MetricError::LengthMismatch {
                what: "entropy",
                expected: level.len(),
                found: entropy.len(),
            });
        }
        check_finite("level", level)?;
        check_finite("entropy", entropy)?;
        let knots = knots.max(1);
        if level.len() < 2 * knots {
            return Err(MetricError::TooFew { needed: 2 * knots, found: level.len() });
        }
        let mut order: Vec<usize> = (0..level.len()).collect();
        order.sort_by(|&a, &b| level[a].total_cmp(&level[b]).then(a.cmp(&b)));
        let (base, extra) = (level.len() / knots, level.len() % knots);
        let mut groups: Vec<Vec<usize>> = Vec::with_capacity(knots);
        let mut start = 0;
        for k in 0..knots {
            let len = base + usize::from(k < extra);
            let group = &order[start..start + len];
            start += len;
            // Sorted order: a group's mean level equals the previous one's only when both hold
            // one repeated level; merge it so the knots stay strictly increasing.
            match groups.last_mut() {
                Some(last)
                    if mean_of(group.iter().map(|&i| level[i] as f64))
                        <= mean_of(last.iter().map(|&i| level[i] as f64)) =>
                {
                    last.extend_from_slice(group)
                }
                _ => groups.push(group.to_vec()),
            }
        }
        let mut profile = LevelProfile { level: Vec::new(), mean: Vec::new(), sd: Vec::new() };
        for group in &groups {
            let m = mean_of(group.iter().map(|&i| entropy[i] as f64));
            let var = mean_of(group.iter().map(|&i| (entropy[i] as f64 - m).powi(2)));
            profile.level.push(mean_of(group.iter().map(|&i| level[i] as f64)));
            profile.mean.push(m);
            profile.sd.push(var.sqrt().max(MIN_SD));
        }
        Ok(profile)
    }

    /// The level-standardised entropy of one prediction; NaN in, NaN out (a NaN never passes a
    /// threshold, as for the entropy itself).
    pub fn score(&self, level: f32, entropy: f32) -> f32 {
        let level = level as f64;
        let m = interp(level, &self.level, &self.mean);
        let s = interp(level, &self.level, &self.sd);
        ((entropy as f64 - m) / s) as f32
    }

    /// Whether the profile can be used: equal, non-zero lengths, finite values, strictly
    /// increasing knots and positive standard deviations (a manifest is outside input).
    pub fn validate(&self) -> Result<(), String> {
        let n = self.level.len();
        if n == 0 || self.mean.len() != n || self.sd.len() != n {
            return Err(format!(
                "level profile needs equal non-empty lists (level {n}, mean {}, sd {})",
                self.mean.len(),
                self.sd.len()
            ));
        }
        if self.level.iter().chain(&self.mean).chain(&self.sd).any(|v| !v.is_finite()) {
            return Err("level profile has a non-finite value".into());
        }
        if self.level.windows(2).any(|w| w[0] >= w[1]) {
            return Err("level profile knots are not strictly increasing".into());
        }
        if self.sd.iter().any(|&s| s < MIN_SD) {
            return Err(format!("level profile has a standard deviation below {MIN_SD}"));
        }
        Ok(())
    }
}

fn mean_of(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n as f64
}

/// Linear interpolation through `(xs, ys)`, constant beyond the ends.
fn interp(x: f64, xs: &[f64], ys: &[f64]) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let upper = xs.partition_point(|&k| k < x);
    if upper == 0 {
        return ys[0];
    }
    if upper == xs.len() {
        return ys[xs.len() - 1];
    }
    let (x0, x1, y0, y1) = (xs[upper - 1], xs[upper], ys[upper - 1], ys[upper]);
    y0 + (y1 - y0) * (x - x0) / (x1 - x0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random stream in [0, 1) (no rand dependency in pure tests).
    fn stream(seed: u64, n: usize) -> Vec<f32> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 40) as f32) / (1u64 << 24) as f32
            })
            .collect()
    }

    fn corr(a: &[f32], b: &[f32]) -> f64 {
        let (ma, mb) = (mean_of(a.iter().map(|&v| v as f64)), mean_of(b.iter().map(|&v| v as f64)));
        let cov = mean_of(a.iter().zip(b).map(|(&x, &y)| (x as f64 - ma) * (y as f64 - mb)));
        let va = mean_of(a.iter().map(|&x| (x as f64 - ma).powi(2)));
        let vb = mean_of(b.iter().map(|&y| (y as f64 - mb).powi(2)));
        cov / (va * vb).sqrt()
    }

    #[test]
    fn removes_the_entropys_dependence_on_the_level() {
        // Entropy = 0.5·level + ambiguity: ranking by entropy sorts by level; the score must not.
        let level: Vec<f32> = stream(1, 2000).iter().map(|u| 6.0 * u - 3.0).collect();
        let ambiguity = stream(2, 2000);
        let entropy: Vec<f32> = level.iter().zip(&ambiguity).map(|(l, u)| 0.5 * l + u).collect();
        assert!(corr(&entropy, &level) > 0.9);
        let profile = LevelProfile::fit(&level, &entropy, DEFAULT_KNOTS).unwrap();
        let score: Vec<f32> = level.iter().zip(&entropy).map(|(&l, &h)| profile.score(l, h)).collect();
        assert!(corr(&score, &level).abs() < 0.05, "corr with level {}", corr(&score, &level));
        assert!(corr(&score, &ambiguity) > 0.95, "corr with ambiguity {}", corr(&score, &ambiguity));
        assert!(profile.validate().is_ok());
    }

    #[test]
    fn standardises_within_the_level_and_rises_with_the_entropy() {
        let level = vec![0.0f32, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        let entropy = vec![1.0f32, 2.0, 1.0, 2.0, 0.5, 1.5, 0.5, 1.5];
        let p = LevelProfile::fit(&level, &entropy, 2).unwrap();
        assert_eq!(p.level, vec![0.0, 1.0]);
        assert_eq!(p.mean, vec![1.5, 1.0]);
        assert_eq!(p.sd, vec![0.5, 0.5]);
        assert_eq!(p.score(0.0, 2.0), 1.0);
        assert_eq!(p.score(1.0, 0.5), -1.0);
        // Halfway between the knots: mean 1.25, sd 0.5.
        assert_eq!(p.score(0.5, 1.75), 1.0);
        // Beyond the ends the outer knot holds.
        assert_eq!(p.score(-7.0, 1.5), 0.0);
        assert_eq!(p.score(9.0, 1.0), 0.0);
        assert!(p.score(0.0, 1.9) > p.score(0.0, 1.8));
        assert!(p.score(f32::NAN, 1.0).is_nan());
        assert!(p.score(0.0, f32::NAN).is_nan());
    }

    #[test]
    fn repeated_levels_merge_into_one_knot_and_constant_entropy_keeps_a_floor() {
        let level = vec![3.0f32; 6];
        let entropy = vec![1.0f32; 6];
        let p = LevelProfile::fit(&level, &entropy, 3).unwrap();
        assert_eq!(p.level, vec![3.0]);
        assert_eq!(p.sd, vec![MIN_SD]);
        assert!(p.validate().is_ok());
        assert_eq!(p.score(3.0, 1.0), 0.0);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(matches!(LevelProfile::fit(&[1.0, 2.0], &[1.0], 1), Err(MetricError::LengthMismatch { .. })));
        assert!(matches!(
            LevelProfile::fit(&[1.0, 2.0, 3.0], &[1.0; 3], 2),
            Err(MetricError::TooFew { needed: 4, .. })
        ));
        assert!(matches!(
            LevelProfile::fit(&[1.0, f32::NAN, 3.0, 4.0], &[1.0; 4], 2),
            Err(MetricError::NonFinite { what: "level", index: 1, .. })
        ));
        let broken = LevelProfile { level: vec![1.0, 1.0], mean: vec![0.0, 0.0], sd: vec![1.0, 1.0] };
        assert!(broken.validate().is_err());
        let short = LevelProfile { level: vec![1.0], mean: vec![], sd: vec![1.0] };
        assert!(short.validate().is_err());
        let zero_sd = LevelProfile { level: vec![1.0], mean: vec![0.0], sd: vec![0.0] };
        assert!(zero_sd.validate().is_err());
    }

    #[test]
    fn round_trips_through_json_as_a_manifest_would_hold_it() {
        let p = LevelProfile { level: vec![-1.0, 2.5], mean: vec![1.2, 1.6], sd: vec![0.1, 0.2] };
        let back: LevelProfile = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
