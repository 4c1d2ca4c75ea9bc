//! The synthetic generator: deterministic by seed, and ambiguity makes annotators disagree
//! *and* a simple predictor err more — the property uncertainty estimation relies on. Both
//! MSP-Podcast-shaped families (`msp` and `scenes`) are checked.
#![cfg(feature = "train")]

use emogate::train::corpus::msp::{self, FeatureFormat};
use emogate::train::corpus::synth::{generate, Sizes, SynthConfig, Variant};
use emogate::train::corpus::Split;
use emogate::train::serving::Normalizer;
use emogate::train::{labels, metrics};
use emogate::uncertainty;
use emogate::Attribute;

const FAMILIES: [Variant; 2] = [Variant::Msp, Variant::Scenes];

#[test]
fn same_seed_same_files_other_seed_other_corpus() {
    let sizes = Sizes { train: 30, dev: 10, test: 10, unlabeled: 10, speakers: [3, 1, 1, 2] };
    for variant in FAMILIES {
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        for (dir, seed) in dirs.iter().zip([4, 4, 5]) {
            let (c, t) = generate(&SynthConfig { seed, variant, sizes }).unwrap();
            msp::write(dir.path(), &c, Some(&t), FeatureFormat::Npy).unwrap();
        }
        for f in [msp::FEATURES_NPY, msp::LABELS, msp::PARTITIONS, msp::TRUTH] {
            let read = |k: usize| std::fs::read(dirs[k].path().join(f)).unwrap();
            assert_eq!(read(0), read(1), "{variant:?}: {f} differs for the same seed");
            if f != msp::PARTITIONS {
                assert_ne!(read(0), read(2), "{variant:?}: {f} is the same for another seed");
            }
        }
        assert_eq!(msp::content_hash(dirs[0].path()).unwrap(), msp::content_hash(dirs[1].path()).unwrap());
    }
}

#[test]
fn the_corpus_loader_reads_the_scenes_family_unchanged() {
    let sizes = Sizes { train: 20, dev: 6, test: 6, unlabeled: 4, speakers: [3, 1, 1, 1] };
    let (c, t) = generate(&SynthConfig { seed: 8, variant: Variant::Scenes, sizes }).unwrap();
    for format in [FeatureFormat::Npy, FeatureFormat::Csv] {
        let dir = tempfile::tempdir().unwrap();
        msp::write(dir.path(), &c, Some(&t), format).unwrap();
        let back = msp::load(dir.path()).unwrap();
        assert_eq!(back, c, "{format:?}");
        assert!(dir.path().join(msp::TRUTH).exists());
    }
}

/// Ridge regression on every 21st scaled feature, solved by Cholesky.
fn ridge(x: &[f64], rows: usize, cols: usize, y: &[f64], lambda: f64) -> Vec<f64> {
    let mut a = vec![0f64; cols * cols];
    let mut b = vec![0f64; cols];
    for r in 0..rows {
        let xr = &x[r * cols..(r + 1) * cols];
        for i in 0..cols {
            b[i] += xr[i] * y[r];
            for j in 0..=i {
                a[i * cols + j] += xr[i] * xr[j];
            }
        }
    }
    for i in 0..cols {
        a[i * cols + i] += lambda;
        for j in 0..i {
            a[j * cols + i] = a[i * cols + j];
        }
    }
    // Cholesky a = L Lᵀ, then two triangular solves.
    let mut l = vec![0f64; cols * cols];
    for i in 0..cols {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * cols + k] * l[j * cols + k]).sum();
            l[i * cols + j] =
                if i == j { (a[i * cols + i] - s).sqrt() } else { (a[i * cols + j] - s) / l[j * cols + j] };
        }
    }
    let mut z = vec![0f64; cols];
    for i in 0..cols {
        z[i] = (b[i] - (0..i).map(|k| l[i * cols + k] * z[k]).sum::<f64>()) / l[i * cols + i];
    }
    let mut w = vec![0f64; cols];
    for i in (0..cols).rev() {
        w[i] = (z[i] - (i + 1..cols).map(|k| l[k * cols + i] * w[k]).sum::<f64>()) / l[i * cols + i];
    }
    w
}

#[test]
fn ambiguity_raises_disagreement_and_prediction_error_together() {
    for variant in FAMILIES {
        disagreement_and_error_rise_together(variant);
    }
}

fn disagreement_and_error_rise_together(variant: Variant) {
    let sizes = Sizes { train: 1500, dev: 10, test: 800, unlabeled: 0, speakers: [60, 2, 20, 0] };
    let (c, _) = generate(&SynthConfig { seed: 7, variant, sizes }).unwrap();
    let (train, test) = (c.indices(Split::Train), c.indices(Split::Test));
    let norm = Normalizer::fit(&c.features, c.dims, &train);
    let cols: Vec<usize> = (0..c.dims).step_by(21).take(300).collect();
    let design = |rows: &[usize]| -> Vec<f64> {
        let mut scaled = vec![0f32; c.dims];
        let mut out = Vec::with_capacity(rows.len() * (cols.len() + 1));
        for &r in rows {
            norm.apply(c.row(r), &mut scaled);
            out.extend(cols.iter().map(|&j| scaled[j] as f64));
            out.push(1.0);
        }
        out
    };
    let (xtr, xte) = (design(&train), design(&test));
    let k = cols.len() + 1;
    let (mut all_err, mut all_sd) = (Vec::new(), Vec::new());
    for a in Attribute::ALL {
        let y =
            |rows: &[usize]| -> Vec<f64> { c.labels(rows, a).consensus.iter().map(|&v| v as f64).collect() };
        let (ytr, yte) = (y(&train), y(&test));
        let w = ridge(&xtr, train.len(), k, &ytr, 1.0);
        let predict = |x: &[f64]| -> Vec<f64> {
            x.chunks(k).map(|r| r.iter().zip(&w).map(|(a, b)| a * b).sum()).collect()
        };
        // Rescale to the label spread, as a regressor trained with (1 − CCC) would be.
        let ptr = predict(&xtr);
        let (mp, sp) = mean_sd(&ptr);
        let (my, sy) = mean_sd(&ytr);
        let pred: Vec<f32> = predict(&xte).iter().map(|p| (my + (p - mp) * sy / sp) as f32).collect();
        let truth: Vec<f32> = yte.iter().map(|&v| v as f32).collect();
        let sd: Vec<f32> = test.iter().map(|&i| labels::vote_std(&c.ratings(i, a))).collect();
        // The half of the test split the annotators agree on most is predicted better.
        let ccc_at_half = |u: &[f32]| uncertainty::coverage_curve(&pred, &truth, u, &[0.5]).unwrap()[0].ccc;
        let low = ccc_at_half(&sd);
        let neg_sd: Vec<f32> = sd.iter().map(|v| -v).collect();
        let high = ccc_at_half(&neg_sd);
        assert!(low > high + 0.03, "{variant:?} {a}: CCC on agreed half {low:.3} vs disputed half {high:.3}");
        all_err.extend(pred.iter().zip(&truth).map(|(p, t)| (p - t).abs()));
        all_sd.extend(sd);
    }
    let r = metrics::pearson(&all_err, &all_sd);
    assert!(r > 0.04, "{variant:?}: corr(|error|, vote sd) = {r:.3}");
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (m, (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt())
}
