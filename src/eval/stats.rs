//! Significance over trials: the paper asserts a method is better when a one-tailed t-test
//! over 10 trials gives p ≤ 0.05 (Sec. V-D). Trials of two methods are separate training
//! runs, so the test is Welch's unequal-variance t-test; the Student-t tail comes from the
//! regularised incomplete beta function (continued fraction, Numerical Recipes §6.4).

/// Significance level of the paper.
pub const ALPHA: f64 = 0.05;

/// Mean and sample standard deviation (n − 1); `(NaN, NaN)` for no values, std 0 for one.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

/// One-tailed Welch t-test of H1: mean(a) > mean(b). Returns the p-value, or `None` when it
/// is undefined (fewer than two trials on a side, a non-finite value, or both sides constant).
pub fn welch_greater(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() < 2 || b.len() < 2 || a.iter().chain(b).any(|v| !v.is_finite()) {
        return None;
    }
    let (ma, sa) = mean_std(a);
    let (mb, sb) = mean_std(b);
    let (va, vb) = (sa * sa / a.len() as f64, sb * sb / b.len() as f64);
    let se2 = va + vb;
    if se2 <= 0.0 {
        return None;
    }
    let t = (ma - mb) / se2.sqrt();
    let df = se2 * se2 / (va * va / (a.len() - 1) as f64 + vb * vb / (b.len() - 1) as f64);
    Some(student_t_upper_tail(t, df))
}

/// P(T > t) for Student's t with `df` degrees of freedom.
pub fn student_t_upper_tail(t: f64, df: f64) -> f64 {
    let tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
    if t >= 0.0 {
        tail
    } else {
        1.0 - tail
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; ~15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the series in its accurate range.
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut acc = G[0];
    for (k, g) in G.iter().enumerate().skip(1) {
        acc += g / (x + k as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + acc.ln()
}

/// Regularised incomplete beta I_x(a, b).
pub fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    // The continued fraction converges fast for x < (a + 1) / (a + b + 2); use symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

/// Lentz's evaluation of the incomplete beta continued fraction.
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    d = if d.abs() < TINY { TINY } else { d };
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        for aa in
            [m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))]
        {
            d = 1.0 + aa * d;
            d = if d.abs() < TINY { TINY } else { d };
            c = 1.0 + aa / c;
            c = if c.abs() < TINY { TINY } else { c };
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn student_t_tail_matches_closed_forms_and_tables() {
        // df = 1 is the Cauchy distribution: P(T > 1) = 1/4.
        assert!((student_t_upper_tail(1.0, 1.0) - 0.25).abs() < 1e-12);
        // df = 2: P(T > t) = (1 − t / sqrt(t² + 2)) / 2.
        for t in [0.3, 2.0, 5.0] {
            let exact = 0.5 * (1.0 - t / (t * t + 2.0f64).sqrt());
            assert!((student_t_upper_tail(t, 2.0) - exact).abs() < 1e-12, "t = {t}");
        }
        // Table values: t(0.95; 10) = 1.812461, t(0.975; 10) = 2.228139, t(0.95; 30) = 1.697261.
        assert!((student_t_upper_tail(1.812461, 10.0) - 0.05).abs() < 1e-6);
        assert!((student_t_upper_tail(2.228139, 10.0) - 0.025).abs() < 1e-6);
        assert!((student_t_upper_tail(1.697261, 30.0) - 0.05).abs() < 1e-6);
        assert!((student_t_upper_tail(0.0, 7.0) - 0.5).abs() < 1e-12);
        assert!((student_t_upper_tail(-1.812461, 10.0) - 0.95).abs() < 1e-6);
    }

    #[test]
    fn welch_test_is_one_tailed_and_undefined_without_spread() {
        let a = [0.61, 0.63, 0.62, 0.64, 0.60];
        let b = [0.55, 0.57, 0.56, 0.58, 0.54];
        let p = welch_greater(&a, &b).unwrap();
        assert!(p < 1e-3, "{p}"); // t = 6, df = 8
        let q = welch_greater(&b, &a).unwrap();
        assert!((p + q - 1.0).abs() < 1e-12, "the two tails add to one");
        // Equal means: p = 1/2.
        assert!((welch_greater(&a, &a).unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(welch_greater(&[1.0, 1.0], &[0.5, 0.5]), None);
        assert_eq!(welch_greater(&[1.0], &b), None);
        assert_eq!(welch_greater(&[1.0, f64::NAN], &b), None);
    }

    #[test]
    fn welch_matches_a_hand_computation() {
        // a: mean 2, var 1 (n 3); b: mean 1, var 1 (n 3) → t = 1 / sqrt(2/3) = 1.224745, df = 4.
        let p = welch_greater(&[1.0, 2.0, 3.0], &[0.0, 1.0, 2.0]).unwrap();
        // df 4: F(t) = 1/2 + (3/8)·u·(1 − t²/(12(1 + t²/4))), u = t / sqrt(1 + t²/4).
        let t: f64 = 1.0 / (2.0f64 / 3.0).sqrt();
        let u = t / (1.0 + t * t / 4.0).sqrt();
        let exact = 0.5 - 0.375 * u * (1.0 - t * t / (12.0 * (1.0 + t * t / 4.0)));
        assert!((p - exact).abs() < 1e-10, "{p} vs {exact}");
    }

    #[test]
    fn mean_std_uses_the_sample_deviation() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((s - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_std(&[3.0]), (3.0, 0.0));
        assert!(mean_std(&[]).0.is_nan());
    }
}
