//! The paper's reject-option analyses on plain slices (no files, no models): CCC against
//! coverage (Fig. 3), CCC per uncertainty quintile (Fig. 2), uncertainty transfer (Fig. 4),
//! fold-averaged curves (Tables I/II) and the significance marks of the method tables.

use serde::Serialize;

use super::stats;
use super::EvalError;
use crate::attribute::{Attribute, PerAttribute};
use crate::uncertainty::{self, QUINTILES};

/// Step of the coverage curves: 100 % down to 20 % in 5 % steps (Fig. 3).
pub const CURVE_STEP: f64 = 0.05;
/// The coverages of the paper's tables (Tables I–III).
pub const TABLE_COVERAGES: [f64; 5] = [1.0, 0.8, 0.6, 0.4, 0.2];

/// One point of a reject curve; `coverage` is a fraction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CurvePoint {
    pub coverage: f64,
    pub n: usize,
    pub ccc: f64,
}

/// CCC of `pred` against `truth` on the most certain `coverage` of the items, for each coverage.
pub fn curve_at(
    pred: &[f32],
    truth: &[f32],
    unc: &[f32],
    coverages: &[f64],
) -> Result<Vec<CurvePoint>, EvalError> {
    Ok(uncertainty::coverage_curve(pred, truth, unc, coverages)?
        .into_iter()
        .map(|p| CurvePoint { coverage: p.coverage, n: p.n, ccc: p.ccc })
        .collect())
}

/// The Fig. 3 curve: 1.00, 0.95, …, 0.20.
pub fn curve(pred: &[f32], truth: &[f32], unc: &[f32]) -> Result<Vec<CurvePoint>, EvalError> {
    curve_at(pred, truth, unc, &uncertainty::standard_coverages(CURVE_STEP)?)
}

/// Everything the paper reports for one attribute ranked by its own uncertainty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeAnalysis {
    pub n: usize,
    /// CCC of the predictions on every record (100 % coverage).
    pub ccc_full: f64,
    pub coverage_curve: Vec<CurvePoint>,
    /// CCC per uncertainty quintile, most certain fifth first.
    pub quintile_ccc: [f64; QUINTILES],
    pub quintile_sizes: [usize; QUINTILES],
    /// (CCC at 60 % − CCC at 100 %) / CCC at 100 %, the paper's headline figure.
    pub relative_gain_at_60: f64,
    pub mean_uncertainty: f64,
}

/// CCC at `coverage` on a curve (NaN when the curve does not have that point).
pub fn ccc_at(curve: &[CurvePoint], coverage: f64) -> f64 {
    curve.iter().find(|p| (p.coverage - coverage).abs() < 1e-9).map_or(f64::NAN, |p| p.ccc)
}

/// Fig. 2 and Fig. 3 for one attribute.
pub fn analyse(pred: &[f32], truth: &[f32], unc: &[f32]) -> Result<AttributeAnalysis, EvalError> {
    let coverage_curve = curve(pred, truth, unc)?;
    let ccc_full = uncertainty::ccc(pred, truth)?;
    let groups = uncertainty::quintile_groups(pred.len());
    Ok(AttributeAnalysis {
        n: pred.len(),
        ccc_full,
        relative_gain_at_60: (ccc_at(&coverage_curve, 0.6) - ccc_full) / ccc_full,
        quintile_ccc: uncertainty::quintile_ccc(pred, truth, unc)?,
        quintile_sizes: groups.map(|g| g.len()),
        mean_uncertainty: unc.iter().map(|&u| u as f64).sum::<f64>() / unc.len().max(1) as f64,
        coverage_curve,
    })
}

/// One curve of Fig. 4: `decided`'s predictions ranked by `source`'s uncertainty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UtlCurve {
    pub decided: Attribute,
    pub source: Attribute,
    pub coverage_curve: Vec<CurvePoint>,
    pub relative_gain_at_60: f64,
}

/// Every (decided attribute, uncertainty source) pair (Fig. 4), the self pairs included.
pub fn utl_matrix(
    pred: &PerAttribute<Vec<f32>>,
    truth: &PerAttribute<Vec<f32>>,
    unc: &PerAttribute<Vec<f32>>,
) -> Result<Vec<UtlCurve>, EvalError> {
    let mut out = Vec::new();
    for decided in Attribute::ALL {
        let full = uncertainty::ccc(&pred[decided], &truth[decided])?;
        for source in Attribute::ALL {
            let coverage_curve = curve(&pred[decided], &truth[decided], &unc[source])?;
            let relative_gain_at_60 = (ccc_at(&coverage_curve, 0.6) - full) / full;
            out.push(UtlCurve { decided, source, coverage_curve, relative_gain_at_60 });
        }
    }
    Ok(out)
}

/// CCC at each coverage averaged over folds, each fold ranked on its own (Sec. V-D: "the final
/// results are averaged across the 5 folds"). A fold is `(pred, truth, uncertainty)`.
pub fn fold_mean_ccc(folds: &[(&[f32], &[f32], &[f32])], coverages: &[f64]) -> Result<Vec<f64>, EvalError> {
    let mut sum = vec![0.0; coverages.len()];
    for (pred, truth, unc) in folds {
        for (s, p) in sum.iter_mut().zip(curve_at(pred, truth, unc, coverages)?) {
            *s += p.ccc;
        }
    }
    Ok(sum.into_iter().map(|s| s / folds.len().max(1) as f64).collect())
}

/// One cell of a method table: a method's CCC at one coverage over the trials.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableCell {
    /// `within_corpus` (test split), `cross_corpus` (Table I) or `cross_corpus_utl` (Table II).
    pub table: String,
    /// The attribute whose predictions are scored.
    pub attribute: Attribute,
    /// The attribute whose uncertainty ranks them (≠ `attribute` for UTL).
    pub uncertainty_source: Attribute,
    pub method: String,
    pub coverage: f64,
    /// One CCC per trial, in seed order.
    pub trials: Vec<f64>,
    pub mean: f64,
    pub std: f64,
    /// One-tailed Welch p-value of "the proposed method is better than this one" (None for
    /// the proposed method itself and with fewer than two trials).
    pub p_proposed_better: Option<f64>,
    /// Highest mean of the methods in this (table, attribute, source, coverage) group.
    pub best: bool,
    /// The best method is better than every other one with p ≤ 0.05 (the paper's †).
    pub significant: bool,
}

/// Fills means, p-values and the best/† marks of cells grouped by (table, attribute, source,
/// coverage); `proposed` names the method the p-values compare against.
pub fn mark_significance(cells: &mut [TableCell], proposed: &str) {
    for c in cells.iter_mut() {
        (c.mean, c.std) = stats::mean_std(&c.trials);
    }
    let key = |c: &TableCell| {
        (c.table.clone(), c.attribute, c.uncertainty_source, (c.coverage * 1e6).round() as i64)
    };
    let mut groups: Vec<_> = cells.iter().map(key).collect();
    groups.sort();
    groups.dedup();
    for g in groups {
        let idx: Vec<usize> = (0..cells.len()).filter(|&i| key(&cells[i]) == g).collect();
        let reference = idx.iter().find(|&&i| cells[i].method == proposed).map(|&i| cells[i].trials.clone());
        for &i in &idx {
            cells[i].p_proposed_better = match &reference {
                Some(r) if cells[i].method != proposed => stats::welch_greater(r, &cells[i].trials),
                _ => None,
            };
        }
        let Some(&best) = idx
            .iter()
            .filter(|&&i| cells[i].mean.is_finite())
            .max_by(|&&a, &&b| cells[a].mean.total_cmp(&cells[b].mean))
        else {
            continue;
        };
        let significant = idx.len() > 1
            && idx.iter().filter(|&&i| i != best).all(|&i| {
                stats::welch_greater(&cells[best].trials, &cells[i].trials).is_some_and(|p| p <= stats::ALPHA)
            });
        cells[best].best = true;
        cells[best].significant = significant;
    }
}

/// Per (table, attribute, source) at `coverage`: the methods `proposed` beats (one-tailed
/// Welch, p ≤ [`stats::ALPHA`]) and those it does not, each with its p-value ("n/a" where the
/// test is undefined), so the report says plainly, per cell, which comparisons are won.
pub fn verdicts(cells: &[TableCell], coverage: f64, proposed: &str) -> Vec<String> {
    let at = |c: &&TableCell| (c.coverage - coverage).abs() < 1e-9;
    let mut groups: Vec<(&str, Attribute, Attribute)> = Vec::new();
    for c in cells.iter().filter(at) {
        let key = (c.table.as_str(), c.attribute, c.uncertainty_source);
        if !groups.contains(&key) {
            groups.push(key);
        }
    }
    groups
        .into_iter()
        .map(|(table, attribute, source)| {
            let (mut beats, mut not) = (Vec::new(), Vec::new());
            for c in cells
                .iter()
                .filter(at)
                .filter(|c| c.table == table && c.attribute == attribute && c.uncertainty_source == source)
            {
                match c.p_proposed_better {
                    Some(p) if p <= stats::ALPHA => beats.push(format!("{} (p {p:.3})", c.method)),
                    Some(p) => not.push(format!("{} (p {p:.3})", c.method)),
                    None if c.method != proposed => not.push(format!("{} (p n/a)", c.method)),
                    None => {}
                }
            }
            let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
            format!("{table} {attribute} by {source}: beats {}; does not beat {}", list(&beats), list(&not))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy_data(n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        // Error grows with the uncertainty: rejecting uncertain items must raise CCC.
        let truth: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32) / 20.0 + 1.0).collect();
        let unc: Vec<f32> = (0..n).map(|i| (i * 53 % 97) as f32 / 97.0).collect();
        let pred = truth
            .iter()
            .zip(&unc)
            .enumerate()
            .map(|(i, (t, u))| t + u * 3.0 * if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        (pred, truth, unc)
    }

    #[test]
    fn analysis_is_internally_consistent() {
        let (p, t, u) = noisy_data(503);
        let a = analyse(&p, &t, &u).unwrap();
        assert_eq!(a.coverage_curve.len(), 17);
        assert_eq!(a.coverage_curve[0].coverage, 1.0);
        assert_eq!(a.coverage_curve[0].ccc, a.ccc_full);
        assert_eq!(a.quintile_sizes.iter().sum::<usize>(), 503);
        assert!(a.quintile_sizes.iter().max().unwrap() - a.quintile_sizes.iter().min().unwrap() <= 1);
        assert!(ccc_at(&a.coverage_curve, 0.6) > a.ccc_full, "{a:?}");
        assert!(a.quintile_ccc[0] > a.quintile_ccc[4]);
        assert!((a.relative_gain_at_60 - (ccc_at(&a.coverage_curve, 0.6) / a.ccc_full - 1.0)).abs() < 1e-12);
    }

    #[test]
    fn utl_self_pairs_equal_the_own_curves() {
        let (p, t, u) = noisy_data(200);
        let pred = PerAttribute::from_fn(|_| p.clone());
        let truth = PerAttribute::from_fn(|_| t.clone());
        let unc = PerAttribute::from_fn(|a| u.iter().map(|v| v + a.index() as f32).collect());
        let m = utl_matrix(&pred, &truth, &unc).unwrap();
        assert_eq!(m.len(), 9);
        let own = curve(&p, &t, &u).unwrap();
        for c in m.iter().filter(|c| c.decided == c.source) {
            assert_eq!(c.coverage_curve, own, "a constant shift of the uncertainty keeps the ranking");
        }
    }

    #[test]
    fn fold_mean_is_the_mean_of_fold_curves() {
        let (p, t, u) = noisy_data(300);
        let (a, b) = (0..150, 150..300);
        let folds =
            [(&p[a.clone()], &t[a.clone()], &u[a.clone()]), (&p[b.clone()], &t[b.clone()], &u[b.clone()])];
        let got = fold_mean_ccc(&folds, &[1.0, 0.6]).unwrap();
        let c0 = curve_at(&p[a.clone()], &t[a.clone()], &u[a], &[1.0, 0.6]).unwrap();
        let c1 = curve_at(&p[b.clone()], &t[b.clone()], &u[b], &[1.0, 0.6]).unwrap();
        assert!((got[1] - (c0[1].ccc + c1[1].ccc) / 2.0).abs() < 1e-12);
    }

    fn cell(method: &str, trials: Vec<f64>) -> TableCell {
        TableCell {
            table: "t".into(),
            attribute: Attribute::Valence,
            uncertainty_source: Attribute::Valence,
            method: method.into(),
            coverage: 0.6,
            trials,
            mean: 0.0,
            std: 0.0,
            p_proposed_better: None,
            best: false,
            significant: false,
        }
    }

    #[test]
    fn significance_marks_the_best_method_only_when_it_beats_all() {
        let mut cells = vec![
            cell("vae_er", vec![0.60, 0.62, 0.61, 0.63]),
            cell("mcd", vec![0.50, 0.52, 0.51, 0.53]),
            cell("mcd_soft", vec![0.59, 0.63, 0.58, 0.62]),
        ];
        mark_significance(&mut cells, "vae_er");
        assert!(cells[0].best && !cells[0].significant, "mcd_soft is not significantly worse");
        assert!(cells[1].p_proposed_better.unwrap() < 0.01);
        assert!(cells[2].p_proposed_better.unwrap() > 0.05);
        assert_eq!(cells[0].p_proposed_better, None);
        cells.remove(2);
        mark_significance(&mut cells, "vae_er");
        assert!(cells[0].best && cells[0].significant);
        assert!(!cells[1].best);
        assert!((cells[1].mean - 0.515).abs() < 1e-12);
    }

    #[test]
    fn verdicts_name_won_and_lost_comparisons_per_cell() {
        let mut cells = vec![
            cell("vae_er", vec![0.60, 0.62, 0.61, 0.63]),
            cell("mcd", vec![0.50, 0.52, 0.51, 0.53]),
            cell("mcd_soft", vec![0.59, 0.63, 0.58, 0.62]),
            cell("no_vae", vec![0.6]),
        ];
        mark_significance(&mut cells, "vae_er");
        let lines = verdicts(&cells, 0.6, "vae_er");
        assert_eq!(lines.len(), 1, "one group: {lines:?}");
        let p = |i: usize| cells[i].p_proposed_better.unwrap();
        assert_eq!(
            lines[0],
            format!(
                "t valence by valence: beats mcd (p {:.3}); does not beat mcd_soft (p {:.3}), no_vae (p n/a)",
                p(1),
                p(2)
            )
        );
        assert!(verdicts(&cells, 0.8, "vae_er").is_empty(), "no cells at 80 %");
    }
}
