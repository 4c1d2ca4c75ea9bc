//! The synthetic corpus: MSP-Podcast's shape, with a generative process in which some
//! utterances are intrinsically ambiguous.
//!
//! Uncertainty estimation can only be evaluated on data where it *can* work: ambiguity must
//! raise annotator disagreement and prediction error together, and must leave a trace in the
//! acoustics. The process (documented in `docs/model-card.md`) is:
//!
//! 1. A *world*, drawn from the seed alone and shared by both variants: a random two-layer
//!    "acoustic front end" `x = offset + scale ⊙ (A · tanh(W s + b) + σ ⊙ ε)` that maps 16
//!    latent sources `s` to 6,373 features with openSMILE-like scales.
//! 2. Per utterance: a speaker (emotional baseline + 6-dim voice), true attributes
//!    `y ~ N(speaker baseline, Σ)` with arousal–dominance correlation, and an ambiguity
//!    `u ~ Beta(1.5, 2)`.
//! 3. Expressed attributes `e_a = κ_a (1 − 0.8u) y_a + (σ_a + 1.5u) ξ_a`: ambiguous utterances
//!    carry less of `y` and more that is unrelated to it. The sources are `s = [e, 2u − 1,
//!    voice, content]`, so the acoustics reveal how ambiguous an utterance is.
//! 4. Votes from an annotator pool with per-annotator bias and noise scale:
//!    `round(c + g (y_a + bias + (0.3 + 1.8u) m η))`, clipped to the Likert scale.
//!
//! Every draw comes from a ChaCha8 stream keyed by (seed, purpose, index), so a corpus is a
//! pure function of its seed and sizes, independent of thread count.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::{Corpus, CorpusMeta, Split, Utterance, Vote, FEATURE_DIMS};
use crate::train::TrainError;

/// Which corpus the generator imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// MSP-Podcast: 7-point votes, at least 5 per utterance, an unlabeled pool.
    Msp,
    /// The cross-corpus role of IEMOCAP: 5-point votes, 2–4 raters, shifted features.
    Iemocap,
    /// A second, differently generated family (`synth_scenes.rs`): sparse attribute
    /// features, recording scenes, speaker shifts, Student-t noise, a two-component
    /// ambiguity and 7-point votes that mostly use three bins. MSP-Podcast's sizes.
    Scenes,
}

/// Utterances per split and speakers per split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    pub train: usize,
    pub dev: usize,
    pub test: usize,
    pub unlabeled: usize,
    /// Speakers of train, dev, test, unlabeled (disjoint sets, as in MSP-Podcast).
    pub speakers: [usize; 4],
}

impl Sizes {
    /// Test-sized corpus: trains in seconds.
    pub const TINY: Sizes =
        Sizes { train: 256, dev: 128, test: 200, unlabeled: 128, speakers: [16, 4, 5, 8] };
    /// Default: trains on 2 cores in minutes.
    pub const DEFAULT: Sizes =
        Sizes { train: 4000, dev: 1000, test: 2000, unlabeled: 2000, speakers: [200, 20, 30, 100] };
    /// MSP-Podcast 1.6 sizes (Sec. III-A of the paper; unlabeled = test size, Sec. IV-C).
    pub const PAPER: Sizes =
        Sizes { train: 34280, dev: 5958, test: 10124, unlabeled: 10124, speakers: [1000, 40, 50, 500] };
    /// Cross-corpus variant, default scale.
    pub const IEMOCAP_DEFAULT: Sizes =
        Sizes { train: 1200, dev: 300, test: 500, unlabeled: 0, speakers: [6, 2, 2, 0] };
    /// Cross-corpus variant, IEMOCAP's 10,039 turns from 10 actors.
    pub const IEMOCAP_PAPER: Sizes =
        Sizes { train: 6023, dev: 2008, test: 2008, unlabeled: 0, speakers: [6, 2, 2, 0] };

    /// Parses `tiny`, `default`, `paper`, or `train=N,dev=N,test=N,unlabeled=N` (missing keys
    /// keep the variant's default).
    pub fn parse(spec: &str, variant: Variant) -> Result<Sizes, TrainError> {
        let base = match variant {
            Variant::Msp | Variant::Scenes => Sizes::DEFAULT,
            Variant::Iemocap => Sizes::IEMOCAP_DEFAULT,
        };
        match (spec, variant) {
            ("default", _) => return Ok(base),
            ("tiny", Variant::Msp | Variant::Scenes) => return Ok(Sizes::TINY),
            ("tiny", Variant::Iemocap) => {
                return Ok(Sizes { unlabeled: 0, speakers: [6, 2, 2, 0], ..Sizes::TINY });
            }
            ("paper", Variant::Msp | Variant::Scenes) => return Ok(Sizes::PAPER),
            ("paper", Variant::Iemocap) => return Ok(Sizes::IEMOCAP_PAPER),
            _ => {}
        }
        let mut s = base;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| TrainError::Config(format!("--sizes: `{part}` is not key=value")))?;
            let v: usize =
                v.trim().parse().map_err(|_| TrainError::Config(format!("--sizes: `{v}` is not a count")))?;
            match k.trim() {
                "train" => s.train = v,
                "dev" => s.dev = v,
                "test" => s.test = v,
                "unlabeled" => s.unlabeled = v,
                other => return Err(TrainError::Config(format!("--sizes: unknown split `{other}`"))),
            }
        }
        for (i, n) in [s.train, s.dev, s.test, s.unlabeled].into_iter().enumerate() {
            s.speakers[i] = if n == 0 { 0 } else { s.speakers[i].clamp(1, n) };
        }
        Ok(s)
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthConfig {
    pub seed: u64,
    pub variant: Variant,
    pub sizes: Sizes,
}

/// The latent truth of one utterance, written next to the corpus for diagnosis only (the
/// trainer never reads it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truth {
    pub ambiguity: f32,
    /// True attributes in the generator's standardised units (valence, arousal, dominance).
    pub y: [f32; 3],
}

// Generator constants. They are recorded in the corpus provenance and the model card.
const HIDDEN: usize = 64;
const SOURCES: usize = 16;
const VOICE: usize = 6;
const CONTENT: usize = 6;
/// Expressiveness of valence, arousal, dominance in the acoustics.
const KAPPA: [f32; 3] = [0.8, 1.0, 0.9];
/// Acoustic expression noise unrelated to the perceived attribute, at u = 0.
const SIGMA_EXPR: [f32; 3] = [0.55, 0.3, 0.4];
const SIGMA_EXPR_AMBIGUITY: f32 = 1.5;
/// Fraction of the attribute signal an utterance with u = 1 loses in its acoustics.
const SHRINK_AMBIGUITY: f32 = 0.8;
const RATER_NOISE: f32 = 0.3;
const RATER_NOISE_AMBIGUITY: f32 = 1.8;
const AMBIGUITY_BETA: (f32, f32) = (1.5, 2.0);

/// splitmix64: derives independent stream seeds from (seed, purpose, index).
fn mix(seed: u64, tag: u64, index: u64) -> u64 {
    let mut z = seed ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The ChaCha8 stream of (seed, purpose, index); every draw of every family comes from one.
pub(super) fn rng(seed: u64, tag: u64, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(seed, tag, index))
}

pub(super) fn normal(r: &mut impl Rng) -> f32 {
    StandardNormal.sample(r)
}

/// The acoustic front end shared by both variants of a seed.
struct World {
    w1: Vec<f32>, // [HIDDEN, SOURCES]
    b1: Vec<f32>,
    a: Vec<f32>, // [FEATURE_DIMS, HIDDEN]
    noise: Vec<f32>,
    scale: Vec<f32>,
    offset: Vec<f32>,
}

impl World {
    fn new(seed: u64) -> World {
        let mut r = rng(seed, 1, 0);
        let w1 = (0..HIDDEN * SOURCES).map(|_| normal(&mut r) * 1.2 / (SOURCES as f32).sqrt()).collect();
        let b1 = (0..HIDDEN).map(|_| normal(&mut r) * 0.3).collect();
        let a = (0..FEATURE_DIMS * HIDDEN).map(|_| normal(&mut r) / (HIDDEN as f32).sqrt()).collect();
        let noise = (0..FEATURE_DIMS).map(|_| r.random_range(0.3f32..1.0)).collect();
        let scale: Vec<f32> = (0..FEATURE_DIMS).map(|_| (normal(&mut r) * 1.5).exp()).collect();
        let offset = scale.iter().map(|s| s * r.random_range(0.0f32..3.0)).collect();
        World { w1, b1, a, noise, scale, offset }
    }

    /// Domain shift of the cross-corpus variant: other recording conditions move every
    /// feature's offset and raise the noise floor.
    fn shifted(mut self, seed: u64) -> World {
        let mut r = rng(seed, 2, 0);
        for j in 0..FEATURE_DIMS {
            self.offset[j] += self.scale[j] * 0.25 * normal(&mut r);
            self.noise[j] *= 1.3;
        }
        self
    }

    fn features(&self, sources: &[f32; SOURCES], r: &mut impl Rng, out: &mut [f32]) {
        let mut h = [0f32; HIDDEN];
        for (k, hk) in h.iter_mut().enumerate() {
            let w = &self.w1[k * SOURCES..(k + 1) * SOURCES];
            *hk = (self.b1[k] + w.iter().zip(sources).map(|(a, b)| a * b).sum::<f32>()).tanh();
        }
        for (j, x) in out.iter_mut().enumerate() {
            let a = &self.a[j * HIDDEN..(j + 1) * HIDDEN];
            let clean: f32 = a.iter().zip(&h).map(|(p, q)| p * q).sum();
            *x = self.offset[j] + self.scale[j] * (clean + self.noise[j] * normal(r));
        }
    }
}

/// A rater: a bias per attribute and a scale on the rating noise.
pub(super) struct Annotator {
    pub(super) bias: [f32; 3],
    pub(super) noise: f32,
}

/// `pool` annotators with biases N(0, bias_sd²) and noise scales exp N(0, 0.25²).
pub(super) fn annotator_pool(r: &mut impl Rng, pool: usize, bias_sd: f32) -> Vec<Annotator> {
    (0..pool)
        .map(|_| Annotator {
            bias: [normal(r) * bias_sd, normal(r) * bias_sd, normal(r) * bias_sd],
            noise: (normal(r) * 0.25).exp(),
        })
        .collect()
}

struct Speaker {
    baseline: [f32; 3],
    voice: [f32; VOICE],
}

/// Correlated standard-normal attributes (valence, arousal, dominance): corr(v,a)=0.1,
/// corr(v,d)=0.2, corr(a,d)=0.7, through a fixed Cholesky factor.
pub(super) fn correlated(r: &mut impl Rng) -> [f32; 3] {
    let (z0, z1, z2) = (normal(r), normal(r), normal(r));
    let l10 = 0.1f32;
    let l11 = (1.0 - l10 * l10).sqrt();
    let l20 = 0.2f32;
    let l21 = (0.7 - l20 * l10) / l11;
    let l22 = (1.0 - l20 * l20 - l21 * l21).sqrt();
    [z0, l10 * z0 + l11 * z1, l20 * z0 + l21 * z1 + l22 * z2]
}

/// `corpus.json` of a synthetic corpus `synthetic-{name}-v1-seed{seed}`: the provenance is
/// the generator, seed, variant and sizes, plus the family's constants in `constants` (an
/// object; keys are sorted when written).
pub(super) fn synthetic_meta(
    name: &str,
    cfg: &SynthConfig,
    likert_points: u8,
    mut constants: serde_json::Value,
) -> CorpusMeta {
    let fields = constants.as_object_mut().expect("generator constants are a JSON object");
    fields.insert("generator".into(), "emogate synth v1".into());
    fields.insert("seed".into(), cfg.seed.into());
    fields.insert("variant".into(), serde_json::to_value(cfg.variant).expect("variant serialises"));
    fields.insert("sizes".into(), serde_json::to_value(cfg.sizes).expect("sizes serialise"));
    CorpusMeta {
        id: format!("synthetic-{name}-v1-seed{}", cfg.seed),
        feature_set: "ComParE_2016 (synthetic)".into(),
        likert_points,
        provenance: constants,
    }
}

/// Refuses sizes the trainer cannot use.
pub(super) fn check_sizes(sizes: &Sizes) -> Result<(), TrainError> {
    if sizes.train == 0 || sizes.dev == 0 || sizes.test == 0 {
        return Err(TrainError::Config("train, dev and test must each have at least one utterance".into()));
    }
    Ok(())
}

/// Speakers and utterances of the four splits, speakers disjoint across splits: for each
/// non-empty split, its speakers from `new_speaker`, then each utterance's speaker drawn
/// uniformly from them, all from the one stream `sr`. Returns the speakers, the utterances
/// (ids `{prefix}_{seed}_{split}_{i}`) and each utterance's speaker index.
pub(super) fn layout<S>(
    seed: u64,
    sizes: &Sizes,
    prefix: &str,
    sr: &mut ChaCha8Rng,
    mut new_speaker: impl FnMut(&mut ChaCha8Rng) -> S,
) -> (Vec<S>, Vec<Utterance>, Vec<usize>) {
    let splits = [
        (Split::Train, sizes.train, sizes.speakers[0]),
        (Split::Dev, sizes.dev, sizes.speakers[1]),
        (Split::Test, sizes.test, sizes.speakers[2]),
        (Split::Unlabeled, sizes.unlabeled, sizes.speakers[3]),
    ];
    let mut speakers = Vec::new();
    let mut utterances = Vec::new();
    let mut spk_of = Vec::new();
    let mut first_speaker = 0usize;
    for (split, n, n_spk) in splits {
        if n == 0 {
            continue;
        }
        let n_spk = n_spk.clamp(1, n);
        for _ in 0..n_spk {
            speakers.push(new_speaker(sr));
        }
        for i in 0..n {
            let s = first_speaker + sr.random_range(0..n_spk);
            utterances.push(Utterance {
                id: format!("{prefix}_{seed}_{}_{i:06}", split.as_str()),
                speaker: format!("{prefix}-spk{s:04}"),
                split,
            });
            spk_of.push(s);
        }
        first_speaker += n_spk;
    }
    (speakers, utterances, spk_of)
}

/// `k` distinct annotators out of `pool`, in the order drawn.
pub(super) fn choose_raters(r: &mut impl Rng, k: usize, pool: usize) -> Vec<u32> {
    let mut chosen: Vec<u32> = Vec::with_capacity(k);
    while chosen.len() < k {
        let a = r.random_range(0..pool as u32);
        if !chosen.contains(&a) {
            chosen.push(a);
        }
    }
    chosen
}

/// Fills the row-major `[n, FEATURE_DIMS]` matrix `features` on up to 8 threads; row `i`
/// comes from `row(i, stream (seed, tag, i), out)`, so the result does not depend on how
/// many threads there are.
pub(super) fn fill_rows(
    features: &mut [f32],
    seed: u64,
    tag: u64,
    row: impl Fn(usize, &mut ChaCha8Rng, &mut [f32]) + Sync,
) {
    let n = features.len() / FEATURE_DIMS;
    let threads = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1).min(8);
    let rows_per = n.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (t, chunk) in features.chunks_mut(rows_per * FEATURE_DIMS).enumerate() {
            let row = &row;
            scope.spawn(move || {
                for (k, out) in chunk.chunks_mut(FEATURE_DIMS).enumerate() {
                    let i = t * rows_per + k;
                    row(i, &mut rng(seed, tag, i as u64), out);
                }
            });
        }
    });
}

/// Generates the corpus and the latent truth of every utterance.
pub fn generate(cfg: &SynthConfig) -> Result<(Corpus, Vec<Truth>), TrainError> {
    let SynthConfig { seed, variant, sizes } = *cfg;
    check_sizes(&sizes)?;
    if variant == Variant::Scenes {
        return Ok(super::synth_scenes::generate(cfg));
    }
    let msp = variant == Variant::Msp;
    let world = if msp { World::new(seed) } else { World::new(seed).shifted(seed) };
    let vtag: u64 = if msp { 10 } else { 20 };
    let (points, raters, pool, centre, gain, kappa_gain, nuisance_shift) = if msp {
        (7u8, 5..=9usize, 400usize, 4.0f32, 0.85f32, 1.0f32, 0.0f32)
    } else {
        (5u8, 2..=4usize, 12usize, 3.0f32, 0.7f32, 1.15f32, 0.7f32)
    };

    let annotators = annotator_pool(&mut rng(seed, vtag + 1, 0), pool, 0.2);

    let prefix = if msp { "SYN" } else { "SYNX" };
    let (speakers, utterances, spk_of) = layout(seed, &sizes, prefix, &mut rng(seed, vtag + 2, 0), |sr| {
        let b = correlated(sr);
        Speaker {
            baseline: [b[0] * 0.4, b[1] * 0.4, b[2] * 0.4],
            voice: std::array::from_fn(|_| normal(sr) + nuisance_shift),
        }
    });

    let n = utterances.len();
    let beta = Beta::new(AMBIGUITY_BETA.0, AMBIGUITY_BETA.1).expect("valid Beta parameters");
    let mut truths = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(n);
    let mut votes = Vec::with_capacity(n);
    for (i, utt) in utterances.iter().enumerate() {
        let mut r = rng(seed, vtag + 3, i as u64);
        let spk = &speakers[spk_of[i]];
        let z = correlated(&mut r);
        let y: [f32; 3] = std::array::from_fn(|a| spk.baseline[a] + z[a]);
        let u: f32 = beta.sample(&mut r);
        let mut s = [0f32; SOURCES];
        for a in 0..3 {
            let kappa = KAPPA[a] * kappa_gain;
            s[a] = kappa * (1.0 - SHRINK_AMBIGUITY * u) * y[a]
                + (SIGMA_EXPR[a] + SIGMA_EXPR_AMBIGUITY * u) * normal(&mut r);
        }
        s[3] = 2.0 * u - 1.0;
        s[4..4 + VOICE].copy_from_slice(&spk.voice);
        for c in s[4 + VOICE..4 + VOICE + CONTENT].iter_mut() {
            *c = normal(&mut r) * if msp { 1.0 } else { 1.2 } + nuisance_shift;
        }
        let mut utt_votes = Vec::new();
        if utt.split != Split::Unlabeled {
            let k = r.random_range(raters.clone());
            for a in choose_raters(&mut r, k, pool) {
                let ann = &annotators[a as usize];
                let ratings = std::array::from_fn(|d| {
                    let spread = (RATER_NOISE + RATER_NOISE_AMBIGUITY * u) * ann.noise;
                    let latent = y[d] + ann.bias[d] + spread * normal(&mut r);
                    (centre + gain * latent).round().clamp(1.0, points as f32) as u8
                });
                utt_votes.push(Vote { annotator: a, ratings });
            }
        }
        truths.push(Truth { ambiguity: u, y });
        sources.push(s);
        votes.push(utt_votes);
    }

    // Features: the expensive part (n × 6,373 × 64), on two threads, each row from its own stream.
    let mut features = vec![0f32; n * FEATURE_DIMS];
    fill_rows(&mut features, seed, vtag + 4, |i, r, row| world.features(&sources[i], r, row));

    let name = if msp { "msp" } else { "iemocap" };
    let meta = synthetic_meta(
        name,
        cfg,
        points,
        serde_json::json!({
            "hidden_units": HIDDEN,
            "sources": SOURCES,
            "kappa": KAPPA.map(|k| k * kappa_gain),
            "sigma_expr": SIGMA_EXPR,
            "sigma_expr_ambiguity": SIGMA_EXPR_AMBIGUITY,
            "shrink_ambiguity": SHRINK_AMBIGUITY,
            "vote_centre_gain": [centre, gain],
            "rater_noise": RATER_NOISE,
            "rater_noise_ambiguity": RATER_NOISE_AMBIGUITY,
            "ambiguity_beta": [AMBIGUITY_BETA.0, AMBIGUITY_BETA.1],
            "raters_per_utterance": [*raters.start(), *raters.end()],
            "annotator_pool": pool,
            "nuisance_shift": nuisance_shift,
        }),
    );
    let corpus = Corpus { meta, dims: FEATURE_DIMS, utterances, features, votes };
    debug_assert!(corpus.validate().is_ok());
    Ok((corpus, truths))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::Attribute;
    use crate::train::{labels, metrics};

    fn tiny(seed: u64, variant: Variant) -> (Corpus, Vec<Truth>) {
        let sizes = Sizes { train: 40, dev: 10, test: 10, unlabeled: 5, speakers: [4, 2, 2, 1] };
        generate(&SynthConfig { seed, variant, sizes }).unwrap()
    }

    #[test]
    fn votes_follow_the_variant_scale_and_rater_counts() {
        let (c, _) = tiny(3, Variant::Msp);
        c.validate().unwrap();
        for (u, v) in c.utterances.iter().zip(&c.votes) {
            if u.split == Split::Unlabeled {
                assert!(v.is_empty());
            } else {
                assert!((5..=9).contains(&v.len()));
            }
        }
        let (x, _) = tiny(3, Variant::Iemocap);
        x.validate().unwrap();
        assert_eq!(x.meta.likert_points, 5);
        assert!(x.votes.iter().filter(|v| !v.is_empty()).all(|v| (2..=4).contains(&v.len())));
        // The cross-corpus features are shifted relative to the MSP-like ones.
        let mean = |c: &Corpus| c.features.iter().map(|&v| v as f64).sum::<f64>() / c.features.len() as f64;
        assert!((mean(&c) - mean(&x)).abs() > 1e-3);
    }

    #[test]
    fn ambiguity_raises_disagreement() {
        let sizes = Sizes { train: 400, dev: 10, test: 10, unlabeled: 0, speakers: [20, 2, 2, 0] };
        let (c, t) = generate(&SynthConfig { seed: 11, variant: Variant::Msp, sizes }).unwrap();
        let rows = c.indices(Split::Train);
        let amb: Vec<f32> = rows.iter().map(|&i| t[i].ambiguity).collect();
        for a in Attribute::ALL {
            let sd: Vec<f32> = rows.iter().map(|&i| labels::vote_std(&c.ratings(i, a))).collect();
            assert!(metrics::pearson(&amb, &sd) > 0.4, "{a}: {}", metrics::pearson(&amb, &sd));
        }
    }

    #[test]
    fn sizes_parse_presets_and_overrides() {
        assert_eq!(Sizes::parse("paper", Variant::Msp).unwrap().train, 34280);
        let s = Sizes::parse("train=10,dev=3", Variant::Msp).unwrap();
        assert_eq!((s.train, s.dev, s.test), (10, 3, Sizes::DEFAULT.test));
        assert_eq!(s.speakers[0], 10);
        assert!(Sizes::parse("bogus=1", Variant::Msp).is_err());
        // The scenes family has MSP-Podcast's presets.
        for spec in ["tiny", "default", "paper"] {
            assert_eq!(
                Sizes::parse(spec, Variant::Scenes).unwrap(),
                Sizes::parse(spec, Variant::Msp).unwrap()
            );
        }
    }
}
