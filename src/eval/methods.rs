//! The uncertainty methods compared by `emogate evaluate`, trained by the trainer's own code
//! paths: the proposed VAE-ER, its ablations (Table III) and the MC-dropout baselines of
//! Tables I/II. Each method is trained on the main corpus and scores every test record (and
//! every cross-corpus record) with an uncertainty; the predictions it ranks come from the
//! STL regressors, as in the paper.

use std::time::Instant;

use candle_core::{Device, Tensor};
use indicatif::MultiProgress;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::attribute::{Attribute, PerAttribute, LIKERT_BINS};
use crate::train::arch::LATENT;
use crate::train::corpus::Labels;
use crate::train::losses;
use crate::train::nets::{Dropout, Heads, McdDnn, VaeEr};
use crate::train::optim::{Adam, AdamConfig};
use crate::train::trainer::{
    self, label_priors, run_epochs, EpochLoop, LabelBatch, Prepared, Reconstruction, Throughput, TrainConfig,
};
use crate::train::{metrics, TrainError};
use crate::uncertainty;

/// Rows per inference chunk (every method, so inference times compare like with like).
pub const INFERENCE_BATCH: usize = 256;

/// An uncertainty method of the evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The paper's VAE-ER: entropy of the soft-label distribution averaged over S latent samples.
    VaeEr,
    /// Ablation B: no soft labels (γ = 0); uncertainty = std of the consensus head over S samples.
    NoSoftLabels,
    /// Ablation C: one latent MC sample in training and at inference.
    OneMcSample,
    /// Ablation A: no VAE, z = μ without the KL term (a plain AE); entropy of one prediction.
    NoVae,
    /// AE with an MC-dropout decoder and the ER at the bottleneck; MSE for the AE,
    /// (1 − CCC) + KLD for the ER; entropy of the distribution averaged over dropout passes.
    AeMcd,
    /// MC dropout on a DNN with consensus labels; uncertainty = std of the dropout predictions.
    Mcd,
    /// MC dropout on a DNN with soft labels (KLD); entropy.
    McdSoft,
    /// MC dropout on a DNN with consensus and soft labels ((1 − CCC) + KLD); entropy.
    McdMtl,
}

impl Method {
    pub const ALL: [Method; 8] = [
        Method::VaeEr,
        Method::NoSoftLabels,
        Method::OneMcSample,
        Method::NoVae,
        Method::AeMcd,
        Method::Mcd,
        Method::McdSoft,
        Method::McdMtl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::VaeEr => "vae_er",
            Method::NoSoftLabels => "no_soft_labels",
            Method::OneMcSample => "one_mc_sample",
            Method::NoVae => "no_vae",
            Method::AeMcd => "ae_mcd",
            Method::Mcd => "mcd",
            Method::McdSoft => "mcd_soft",
            Method::McdMtl => "mcd_mtl",
        }
    }

    /// The paper's label for plots and tables.
    pub fn label(self) -> &'static str {
        match self {
            Method::VaeEr => "VAE-ER (proposed)",
            Method::NoSoftLabels => "VAE-ER w/o soft labels",
            Method::OneMcSample => "VAE-ER, 1 MC sample",
            Method::NoVae => "VAE-ER w/o VAE (AE)",
            Method::AeMcd => "AE-MCD",
            Method::Mcd => "MCD",
            Method::McdSoft => "MCD soft",
            Method::McdMtl => "MCD MTL",
        }
    }

    /// The MC-dropout DNNs (trained on the features directly, ~60× faster per sample than the
    /// VAE family, which the others belong to).
    pub fn is_mcd_family(self) -> bool {
        matches!(self, Method::Mcd | Method::McdSoft | Method::McdMtl)
    }

    /// Ablations of Table III (the others are the baselines of Tables I/II).
    pub fn is_ablation(self) -> bool {
        matches!(self, Method::NoSoftLabels | Method::OneMcSample | Method::NoVae)
    }

    /// How the method scores a record's uncertainty.
    pub fn score(self) -> Score {
        match self {
            Method::NoSoftLabels | Method::Mcd => Score::ConsensusStd,
            _ => Score::Entropy,
        }
    }

    /// Parses a method name as written by [`Method::name`].
    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// Uncertainty of a record from its repeated predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// Entropy (nats) of the averaged 7-bin distribution.
    Entropy,
    /// Standard deviation of the consensus predictions.
    ConsensusStd,
}

/// Reduces `m = b · s` repeated predictions (row-major (record, repeat)) to one uncertainty per record.
fn reduce(heads: &Heads, b: usize, s: usize, score: Score) -> Result<Vec<f32>, TrainError> {
    let missing = |what: &str| TrainError::Config(format!("the network has no {what} head for this score"));
    match score {
        Score::Entropy => {
            let probs = heads.probs.as_ref().ok_or_else(|| missing("softmax"))?;
            let mean = probs.reshape((b, s, LIKERT_BINS))?.mean(1)?.flatten_all()?.to_vec1::<f32>()?;
            Ok(mean.chunks(LIKERT_BINS).map(uncertainty::entropy_nats).collect())
        }
        Score::ConsensusStd => {
            let c = heads.consensus.as_ref().ok_or_else(|| missing("consensus"))?.to_vec1::<f32>()?;
            Ok(c.chunks(s)
                .map(|r| {
                    let m = r.iter().sum::<f32>() / s as f32;
                    (r.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / s as f32).sqrt()
                })
                .collect())
        }
    }
}

/// Where the VAE family's latent samples come from at inference.
#[derive(Clone, Copy)]
enum Latent<'a> {
    /// z = μ + σ ⊙ ε for each row of a `[S, LATENT]` bank.
    Bank(&'a [f32]),
    /// z = μ, one prediction.
    Mean,
    /// z = μ, `k` passes with dropout in the ER.
    MeanDropout(usize),
}

fn vae_scores(
    net: &VaeEr,
    x: &[f32],
    dims: usize,
    latent: Latent<'_>,
    score: Score,
    drop: &mut Dropout,
) -> Result<Vec<f32>, TrainError> {
    let dev = Device::Cpu;
    let n = x.len() / dims;
    let mut out = Vec::with_capacity(n);
    for chunk in x.chunks(INFERENCE_BATCH * dims) {
        let b = chunk.len() / dims;
        let xt = Tensor::from_slice(chunk, (b, dims), &dev)?;
        let (mu, logvar) = net.encode(&xt, None)?;
        let (z, s, use_drop) = match latent {
            Latent::Bank(bank) => {
                let s = bank.len() / LATENT;
                let eps = Tensor::from_slice(bank, (1, s, LATENT), &dev)?;
                let sigma = (&logvar * 0.5)?.exp()?;
                let z = mu.unsqueeze(1)?.broadcast_add(&sigma.unsqueeze(1)?.broadcast_mul(&eps)?)?;
                (z.reshape((b * s, LATENT))?, s, false)
            }
            Latent::Mean => (mu, 1, false),
            Latent::MeanDropout(k) => {
                (mu.unsqueeze(1)?.broadcast_as((b, k, LATENT))?.reshape((b * k, LATENT))?, k, true)
            }
        };
        let (consensus, probs) = net.regress(&z, if use_drop { Some(&mut *drop) } else { None })?;
        out.extend(reduce(&Heads { consensus: Some(consensus), probs: Some(probs) }, b, s, score)?);
    }
    Ok(out)
}

fn mcd_scores(
    net: &McdDnn,
    x: &[f32],
    dims: usize,
    passes: usize,
    score: Score,
    drop: &mut Dropout,
    share_first_layer: bool,
) -> Result<Vec<f32>, TrainError> {
    let dev = Device::Cpu;
    // Without sharing, a chunk holds B · k copies of the 6,373-wide input: keep it small.
    let rows = if share_first_layer { INFERENCE_BATCH } else { (INFERENCE_BATCH / 8).max(1) };
    let mut out = Vec::with_capacity(x.len() / dims);
    for chunk in x.chunks(rows * dims) {
        let b = chunk.len() / dims;
        let heads =
            net.forward_mc(&Tensor::from_slice(chunk, (b, dims), &dev)?, passes, drop, share_first_layer)?;
        out.extend(reduce(&heads, b, passes, score)?);
    }
    Ok(out)
}

/// Scores rows `[n, dims]` with a trained method: (features, dropout stream, share the MCD first layer).
type Scorer<'a> = dyn FnMut(&[f32], &mut Dropout, bool) -> Result<Vec<f32>, TrainError> + 'a;

/// Everything one method's run needs.
pub struct MethodInputs<'a> {
    pub data: &'a Prepared,
    /// Test features scaled with the main corpus' normaliser, `[n, dims]`.
    pub test_x: &'a [f32],
    /// Cross-corpus features scaled the same way (the models never see that corpus in training).
    pub cross_x: Option<&'a [f32]>,
    /// `[S, LATENT]` latent noise bank for the VAE family.
    pub bank: &'a [f32],
    /// Latent samples (VAE family) or dropout passes (MCD family) at inference.
    pub mc_samples: usize,
    /// Training configuration of this trial (its seed included).
    pub cfg: &'a TrainConfig,
    pub mp: &'a MultiProgress,
}

/// What one method produced for one trial.
#[derive(Debug, Clone)]
pub struct MethodOutput {
    pub test: PerAttribute<Vec<f32>>,
    pub cross: Option<PerAttribute<Vec<f32>>>,
    /// Trainable values per attribute model (decoder included for the auto-encoders).
    pub parameters: usize,
    /// Values used at inference (no decoder).
    pub parameters_at_inference: usize,
    /// Seconds to score the test split, all three attributes.
    pub test_seconds: f64,
    /// MCD family only: the same, running every dropout pass through the whole network.
    pub test_seconds_full_passes: Option<f64>,
    pub training: Throughput,
}

/// Trains `method` for every attribute and scores the test (and cross-corpus) records.
pub fn run_method(method: Method, inp: &MethodInputs<'_>) -> Result<MethodOutput, TrainError> {
    let mut test = PerAttribute::<Vec<f32>>::default();
    let mut cross = inp.cross_x.map(|_| PerAttribute::<Vec<f32>>::default());
    let (mut parameters, mut at_inference) = (0, 0);
    let (mut seconds, mut full) = (0.0, None::<f64>);
    let mut training = Throughput::default();
    let d = inp.data.dims;
    for a in Attribute::ALL {
        let mut drop = Dropout::new(
            inp.cfg.dropout[a],
            false,
            inp.cfg.seed.wrapping_mul(31).wrapping_add(a.index() as u64),
        );
        let mut score: Box<Scorer<'_>> = match method {
            Method::Mcd | Method::McdSoft | Method::McdMtl => {
                let (net, th) = train_mcd(method, inp, a)?;
                parameters = net.parameter_count();
                at_inference = parameters;
                training.add_all(&th);
                let k = inp.mc_samples;
                Box::new(move |x, drop, share| mcd_scores(&net, x, d, k, method.score(), drop, share))
            }
            _ => {
                let cfg = vae_config(method, inp.cfg);
                let run = trainer::train_vae_er(inp.data, a, &cfg, inp.bank, inp.mp)?;
                parameters = run.net.parameter_count();
                at_inference = parameters - decoder_count(&run.net);
                training.add_all(&run.joint);
                let bank = match method {
                    Method::OneMcSample => &inp.bank[..LATENT],
                    _ => &inp.bank[..inp.mc_samples.min(inp.bank.len() / LATENT) * LATENT],
                };
                let latent = match method {
                    Method::NoVae => Latent::Mean,
                    Method::AeMcd => Latent::MeanDropout(inp.mc_samples),
                    _ => Latent::Bank(bank),
                };
                let net = run.net;
                Box::new(move |x, drop, _| vae_scores(&net, x, d, latent, method.score(), drop))
            }
        };
        let t0 = Instant::now();
        test[a] = score(inp.test_x, &mut drop, true)?;
        seconds += t0.elapsed().as_secs_f64();
        if method.is_mcd_family() {
            let t0 = Instant::now();
            score(inp.test_x, &mut drop, false)?;
            *full.get_or_insert(0.0) += t0.elapsed().as_secs_f64();
        }
        if let (Some(x), Some(c)) = (inp.cross_x, cross.as_mut()) {
            c[a] = score(x, &mut drop, true)?;
        }
    }
    Ok(MethodOutput {
        test,
        cross,
        parameters,
        parameters_at_inference: at_inference,
        test_seconds: seconds,
        test_seconds_full_passes: full,
        training,
    })
}

fn decoder_count(net: &VaeEr) -> usize {
    net.dec
        .iter()
        .chain([&net.dec_out])
        .map(|d| d.w.as_tensor().elem_count() + d.b.as_tensor().elem_count())
        .sum()
}

/// One training phase of a method's schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    pub name: &'static str,
    /// What the phase trains on.
    pub data: &'static str,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
}

/// How a method is trained in every trial, stated in the report so a reader can check that
/// every method family got its full schedule and the same model selection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodSchedule {
    pub method: &'static str,
    pub phases: Vec<Phase>,
    /// Which epoch's weights are kept.
    pub selection: &'static str,
    /// Epochs without a better dev loss before stopping (0: every epoch runs).
    pub patience: usize,
}

/// The schedule `method` trains with under the trial configuration `cfg` (both families go
/// through the trainer's one epoch loop, so selection and early stopping are the same).
pub fn schedule(method: Method, cfg: &TrainConfig) -> MethodSchedule {
    let phases = match method {
        Method::Mcd | Method::McdSoft | Method::McdMtl => vec![Phase {
            name: "supervised DNN",
            data: "train split",
            epochs: cfg.stl_epochs,
            batch: cfg.stl_batch,
            learning_rate: cfg.lr_stl,
        }],
        _ => {
            let c = vae_config(method, cfg);
            vec![
                Phase {
                    name: "VAE pre-training",
                    data: "unlabeled pool",
                    epochs: c.pretrain_epochs,
                    batch: c.batch,
                    learning_rate: c.lr_pretrain,
                },
                Phase {
                    name: "joint VAE-ER",
                    data: "train split",
                    epochs: c.joint_epochs,
                    batch: c.batch,
                    learning_rate: c.lr_joint,
                },
            ]
        }
    };
    MethodSchedule {
        method: method.name(),
        phases,
        selection: "the epoch with the lowest dev loss of the method's own objective",
        patience: cfg.patience,
    }
}

/// The trial's configuration changed as the method requires.
pub fn vae_config(method: Method, base: &TrainConfig) -> TrainConfig {
    let mut cfg = base.clone();
    match method {
        Method::NoSoftLabels => cfg.gamma = 0.0,
        Method::OneMcSample => {
            cfg.mc_train = 1;
            cfg.mc_select = 1;
        }
        Method::NoVae => cfg.latent_sampling = false,
        Method::AeMcd => {
            cfg.latent_sampling = false;
            cfg.reconstruction = Reconstruction::Mse;
            cfg.decoder_dropout = true;
            (cfg.alpha, cfg.beta, cfg.gamma) = (1.0, 1.0, 1.0);
        }
        _ => {}
    }
    cfg
}

/// Trains an MCD-family DNN on the scaled train split: (1 − CCC) for the consensus head,
/// KLD for the softmax head, their sum for MCD MTL; best epoch on dev without dropout.
fn train_mcd(
    method: Method,
    inp: &MethodInputs<'_>,
    a: Attribute,
) -> Result<(McdDnn, Throughput), TrainError> {
    let dev = Device::Cpu;
    let data = inp.data;
    let d = data.dims;
    let cfg = inp.cfg;
    let (ty, dy) = (&data.train_y[a], &data.dev_y[a]);
    let (mean, prior) = label_priors(ty);
    let with_consensus = method != Method::McdSoft;
    let with_soft = method != Method::Mcd;
    let seed = cfg.seed.wrapping_mul(7919).wrapping_add(a.index() as u64 * 13 + method as u64);
    let net = McdDnn::new(d, seed, with_consensus.then_some(mean), with_soft.then_some(&prior), &dev)?;
    let mut shuffle = ChaCha8Rng::seed_from_u64(seed.wrapping_add(1));
    let mut drop = Dropout::new(cfg.dropout[a], false, seed.wrapping_add(2));
    let mut opt = Adam::new(net.vars(), AdamConfig::adam(cfg.lr_stl));
    let neg_ent = losses::neg_entropy_rows(&ty.soft, LIKERT_BINS);
    let loss_of = |heads: &Heads, y: &LabelBatch| -> candle_core::Result<Tensor> {
        let mut terms = Vec::new();
        if let Some(c) = &heads.consensus {
            terms.push(losses::ccc_loss(c, &y.consensus)?);
        }
        if let Some(p) = &heads.probs {
            terms.push(losses::kld_soft(&y.soft, &y.neg_entropy, p)?);
        }
        terms
            .into_iter()
            .reduce(|x, y| (x + y).expect("scalar losses add"))
            .ok_or_else(|| candle_core::Error::Msg("no head".into()))
    };
    let mut throughput = Throughput::default();
    let pb = trainer::bar(inp.mp, cfg.stl_epochs, format!("{a} {}", method.name()));
    let lp = EpochLoop {
        n: data.train_x.len() / d,
        batch: cfg.stl_batch,
        epochs: cfg.stl_epochs,
        patience: cfg.patience,
        shuffle: &mut shuffle,
        pb,
        plateau: None,
    };
    let (_, _, best) = run_epochs(
        lp,
        &mut throughput,
        |rows| {
            let x = trainer::batch_tensor(&data.train_x, d, rows, &dev)?;
            let y = LabelBatch::new(ty, &neg_ent, rows)?;
            let loss = loss_of(&net.forward(&x, Some(&mut drop))?, &y)?;
            opt.step(&loss.backward()?)?;
            trainer::scalar(&loss)
        },
        || dev_loss(&net, &data.dev_x, d, dy),
        || Ok(net.snapshot()?),
    )?;
    net.restore(&best)?;
    Ok((net, throughput))
}

/// (1 − CCC) + KLD of a deterministic pass on dev (the terms the net has), and the CCC.
fn dev_loss(net: &McdDnn, x: &[f32], dims: usize, y: &Labels) -> Result<(f64, f64), TrainError> {
    let (mut cons, mut dist) = (Vec::new(), Vec::new());
    for chunk in x.chunks(1024 * dims) {
        let heads =
            net.forward(&Tensor::from_slice(chunk, (chunk.len() / dims, dims), &Device::Cpu)?, None)?;
        if let Some(c) = heads.consensus {
            cons.extend(c.to_vec1::<f32>()?);
        }
        if let Some(p) = heads.probs {
            dist.extend(p.flatten_all()?.to_vec1::<f32>()?);
        }
    }
    let ccc = if cons.is_empty() { f64::NAN } else { metrics::ccc(&cons, &y.consensus) };
    let mut loss = 0.0;
    if !cons.is_empty() {
        loss += 1.0 - ccc;
    }
    if !dist.is_empty() {
        loss += trainer::mean_kld(&y.soft, &dist);
    }
    Ok((loss, ccc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_round_trip_and_ablations_are_table_iii() {
        for m in Method::ALL {
            assert_eq!(Method::parse(m.name()), Some(m));
        }
        let ablations: Vec<_> = Method::ALL.into_iter().filter(|m| m.is_ablation()).collect();
        assert_eq!(ablations, [Method::NoSoftLabels, Method::OneMcSample, Method::NoVae]);
    }

    #[test]
    fn configurations_change_only_what_the_ablation_removes() {
        let base = TrainConfig::standard(1);
        assert_eq!(vae_config(Method::NoSoftLabels, &base).gamma, 0.0);
        assert_eq!(vae_config(Method::OneMcSample, &base).mc_train, 1);
        assert!(!vae_config(Method::NoVae, &base).latent_sampling);
        let ae = vae_config(Method::AeMcd, &base);
        assert!(!ae.latent_sampling && ae.decoder_dropout && ae.reconstruction == Reconstruction::Mse);
        let same = vae_config(Method::VaeEr, &base);
        assert_eq!(serde_json::to_value(&same).unwrap(), serde_json::to_value(&base).unwrap());
    }

    #[test]
    fn schedules_state_each_familys_epochs_and_one_selection_rule() {
        let base = TrainConfig::standard(1);
        let vae = schedule(Method::VaeEr, &base);
        let epochs: Vec<usize> = vae.phases.iter().map(|p| p.epochs).collect();
        assert_eq!(epochs, [base.pretrain_epochs, base.joint_epochs]);
        let mcd = schedule(Method::McdMtl, &base);
        assert_eq!(mcd.phases.len(), 1);
        assert_eq!((mcd.phases[0].epochs, mcd.phases[0].batch), (base.stl_epochs, base.stl_batch));
        assert!(Method::ALL.iter().all(|&m| schedule(m, &base).selection == vae.selection));
    }

    #[test]
    fn consensus_std_and_entropy_reduce_repeats_per_record() {
        let dev = Device::Cpu;
        // Two records, three repeats each.
        let consensus = Tensor::new(&[1f32, 2.0, 3.0, 5.0, 5.0, 5.0], &dev).unwrap();
        let uniform = [1.0f32 / 7.0; LIKERT_BINS];
        let mut p = Vec::new();
        (0..3).for_each(|_| p.extend_from_slice(&uniform));
        (0..3).for_each(|_| p.extend_from_slice(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]));
        let probs = Tensor::from_vec(p, (6, LIKERT_BINS), &dev).unwrap();
        let heads = Heads { consensus: Some(consensus), probs: Some(probs) };
        let sd = reduce(&heads, 2, 3, Score::ConsensusStd).unwrap();
        assert!((sd[0] - (2.0f32 / 3.0).sqrt()).abs() < 1e-6 && sd[1] == 0.0);
        let h = reduce(&heads, 2, 3, Score::Entropy).unwrap();
        assert!((h[0] - 7f32.ln()).abs() < 1e-5 && h[1].abs() < 1e-6);
    }

    #[test]
    fn shared_first_layer_gives_the_same_passes_as_full_passes() {
        let dev = Device::Cpu;
        let net = McdDnn::new(9, 3, Some(4.0), Some(&[1.0 / 7.0; LIKERT_BINS]), &dev).unwrap();
        let x = Tensor::from_vec((0..27).map(|i| (i % 5) as f32 / 5.0).collect::<Vec<f32>>(), (3, 9), &dev)
            .unwrap();
        // Same mask stream → the same masks in both layouts, so outputs agree exactly.
        let a = net.forward_mc(&x, 4, &mut Dropout::new(0.3, false, 5), true).unwrap();
        let b = net.forward_mc(&x, 4, &mut Dropout::new(0.3, false, 5), false).unwrap();
        let (ca, cb) =
            (a.consensus.unwrap().to_vec1::<f32>().unwrap(), b.consensus.unwrap().to_vec1::<f32>().unwrap());
        assert_eq!(ca.len(), 12);
        assert!(ca.iter().zip(&cb).all(|(p, q)| (p - q).abs() < 1e-5), "{ca:?} vs {cb:?}");
        assert!(ca[..4].windows(2).any(|w| w[0] != w[1]), "dropout passes differ");
    }
}
