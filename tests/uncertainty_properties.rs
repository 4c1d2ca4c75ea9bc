//! Properties of the uncertainty math that must hold for any input, checked with proptest.
//! Case counts are bounded so the whole file runs in well under a second in release and a
//! few seconds in debug.

use emogate::uncertainty::{
    accepted_fraction, ccc, consensus_label, coverage_curve, entropy_nats, kept_count, pearson, quintile_ccc,
    quintile_groups, soft_label, standard_coverages, threshold_for_coverage, LikertScale, MAX_ENTROPY,
    QUINTILES,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 128, ..ProptestConfig::default() }
}

/// A 7-bin probability distribution, with a good share of exact zeros.
fn distribution() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(prop_oneof![1 => Just(0.0f32), 3 => 0.0f32..1.0], 7)
        .prop_filter("needs some mass", |w| w.iter().sum::<f32>() > 1e-3)
        .prop_map(|w| {
            let total: f32 = w.iter().sum();
            w.into_iter().map(|x| x / total).collect()
        })
}

/// A scale and 1–30 votes on it: integer votes or arbitrary real votes inside the scale.
fn scale_and_votes() -> impl Strategy<Value = (LikertScale, Vec<f32>)> {
    let scale = prop_oneof![
        Just(LikertScale::MSP_PODCAST),
        Just(LikertScale::IEMOCAP),
        (0u8..10, 1u8..100).prop_map(|(min, span)| LikertScale { min, max: min + span }),
    ];
    scale.prop_flat_map(|s| {
        let (min, max) = (f32::from(s.min), f32::from(s.max));
        let vote = prop_oneof![(s.min..=s.max).prop_map(f32::from), min..=max];
        (Just(s), prop::collection::vec(vote, 1..30))
    })
}

/// A non-constant vector of plausible attribute values.
fn non_constant(len: impl Into<prop::collection::SizeRange>) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-10.0f32..10.0, len).prop_filter("not constant", |x| x.iter().any(|&v| v != x[0]))
}

/// (pred, truth, uncertainty) of one length `n` in `range`; uncertainties on a coarse grid so
/// that ties are common.
fn evaluation_set(range: std::ops::Range<usize>) -> impl Strategy<Value = (Vec<f32>, Vec<f32>, Vec<f32>)> {
    range.prop_flat_map(|n| {
        (
            non_constant(n),
            non_constant(n),
            prop::collection::vec((0u8..40).prop_map(|k| f32::from(k) * 0.05), n),
        )
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn entropy_is_between_zero_and_ln_7(p in distribution()) {
        let h = entropy_nats(&p);
        prop_assert!((0.0..=MAX_ENTROPY).contains(&h), "{h} for {p:?}");
    }

    #[test]
    fn entropy_of_slightly_unnormalised_input_stays_in_range(
        p in distribution(),
        steps in -10i32..=10,
    ) {
        // Scaled so the sum is 1 ± 1e-6, as model outputs are.
        let scale = 1.0 + steps as f32 * 1e-7;
        let q: Vec<f32> = p.iter().map(|x| x * scale).collect();
        let h = entropy_nats(&q);
        prop_assert!((0.0..=MAX_ENTROPY).contains(&h), "{h} for {q:?}");
    }

    #[test]
    fn soft_labels_are_distributions_whose_mean_is_the_consensus((scale, votes) in scale_and_votes()) {
        let label = soft_label(&votes, scale).unwrap();
        prop_assert!(label.iter().all(|&p| (0.0..=1.0).contains(&p)), "{label:?}");
        let total: f32 = label.iter().sum();
        prop_assert!((total - 1.0).abs() < 1e-5, "sum {total} for {label:?}");
        let mean: f32 = label.iter().enumerate().map(|(k, p)| (k + 1) as f32 * p).sum();
        let consensus = consensus_label(&votes, scale).unwrap();
        prop_assert!((1.0..=7.0).contains(&consensus));
        prop_assert!((mean - consensus).abs() < 1e-4, "mean {mean} vs consensus {consensus}");
    }

    #[test]
    fn ccc_is_a_bounded_symmetric_correlation(
        (x, y) in (2usize..60).prop_flat_map(|n| (non_constant(n), non_constant(n)))
    ) {
        let c = ccc(&x, &y).unwrap();
        prop_assert!((-1.0..=1.0).contains(&c), "{c}");
        prop_assert_eq!(c, ccc(&y, &x).unwrap());
        // CCC shrinks Pearson towards 0: |ρc| ≤ |ρ|.
        let r = pearson(&x, &y).unwrap();
        prop_assert!(c.abs() <= r.abs() + 1e-12, "ccc {c}, pearson {r}");
    }

    #[test]
    fn ccc_of_a_vector_with_itself_is_one(x in non_constant(2..60)) {
        prop_assert_eq!(ccc(&x, &x).unwrap(), 1.0);
    }

    #[test]
    fn full_coverage_is_the_overall_ccc((pred, truth, unc) in evaluation_set(2..80)) {
        let curve = coverage_curve(&pred, &truth, &unc, &[1.0]).unwrap();
        prop_assert_eq!(curve[0].n, pred.len());
        prop_assert_eq!(curve[0].ccc, ccc(&pred, &truth).unwrap());
    }

    #[test]
    fn kept_items_never_grow_as_coverage_falls((pred, truth, unc) in evaluation_set(10..120)) {
        let coverages = standard_coverages(0.05).unwrap();
        let curve = coverage_curve(&pred, &truth, &unc, &coverages).unwrap();
        prop_assert_eq!(curve.len(), coverages.len());
        for pair in curve.windows(2) {
            prop_assert!(pair[1].coverage < pair[0].coverage);
            prop_assert!(pair[1].n <= pair[0].n, "{:?}", pair);
        }
        for point in &curve {
            prop_assert_eq!(point.n, kept_count(pred.len(), point.coverage).unwrap());
            prop_assert!((-1.0..=1.0).contains(&point.ccc), "{:?}", point);
        }
    }

    #[test]
    fn quintile_groups_partition_evenly(n in 0usize..2000) {
        let groups = quintile_groups(n);
        let sizes = groups.clone().map(|g| g.len());
        prop_assert_eq!(sizes.iter().sum::<usize>(), n);
        let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        prop_assert!(max - min <= 1, "{sizes:?}");
        prop_assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "remainder not at the front: {sizes:?}");
        prop_assert_eq!(groups[0].start, 0);
        prop_assert!(groups.windows(2).all(|w| w[0].end == w[1].start));
    }

    #[test]
    fn first_quintile_is_the_twenty_percent_coverage_point(
        (pred, truth, unc) in (2usize..20).prop_flat_map(|k| evaluation_set(5 * k..5 * k + 1))
    ) {
        let quintiles = quintile_ccc(&pred, &truth, &unc).unwrap();
        let curve = coverage_curve(&pred, &truth, &unc, &[0.2]).unwrap();
        prop_assert_eq!(curve[0].n, pred.len() / QUINTILES);
        let (a, b) = (quintiles[0], curve[0].ccc);
        prop_assert!(a == b || (a.is_nan() && b.is_nan()), "{a} vs {b}");
    }

    #[test]
    fn threshold_gives_the_requested_coverage_on_distinct_uncertainties(
        unc in prop::collection::btree_set(0u32..1_000_000, 1..300)
            .prop_map(|s| s.into_iter().map(|k| k as f32 / 1000.0).collect::<Vec<_>>())
            .prop_shuffle(),
        coverage in 0.0f64..=1.0,
    ) {
        let threshold = threshold_for_coverage(&unc, coverage).unwrap();
        let kept = kept_count(unc.len(), coverage).unwrap();
        prop_assert_eq!(accepted_fraction(&unc, threshold).unwrap(), kept as f64 / unc.len() as f64);
    }
}
