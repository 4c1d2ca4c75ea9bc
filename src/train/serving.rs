//! The serving computation (DESIGN §6) as host parameters plus a candle forward pass.
//!
//! The exported ONNX graph and this forward pass are written from the same
//! [`ServingParams`], so comparing them (≤ 1e-4) checks the exporter, and everything the
//! trainer reports about a model (dev/test metrics, calibration) is computed from exactly
//! what the service will run: the same normalisation, the same fixed noise bank, the same
//! averaging and entropy.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, D};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::arch::{ER_LAYERS, LATENT, VAE_LAYERS};
use super::TrainError;
use crate::attribute::{Attribute, PerAttribute, LIKERT_BINS};
use crate::model::NoiseBank;

/// Guard of `ln` in the in-graph entropy: `−Σ p · ln(max(p, ENTROPY_FLOOR))`.
pub const ENTROPY_FLOOR: f32 = 1e-30;

/// Host copy of one dense layer, `w` row-major `[inputs, outputs]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseParams {
    pub inputs: usize,
    pub outputs: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

/// The serving layers of one attribute: VAE encoder, ER, STL regressor.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeParams {
    pub enc: Vec<DenseParams>,
    pub mu: DenseParams,
    pub logvar: DenseParams,
    pub er: Vec<DenseParams>,
    pub consensus: DenseParams,
    pub soft: DenseParams,
    pub stl: Vec<DenseParams>,
    pub stl_out: DenseParams,
}

impl AttributeParams {
    /// Every layer with its stable name (the ONNX initializer and checkpoint key prefix).
    pub fn named_layers(&self) -> Vec<(String, &DenseParams)> {
        let mut out = Vec::new();
        self.enc.iter().enumerate().for_each(|(k, d)| out.push((format!("enc{k}"), d)));
        out.push(("mu".into(), &self.mu));
        out.push(("logvar".into(), &self.logvar));
        self.er.iter().enumerate().for_each(|(k, d)| out.push((format!("er{k}"), d)));
        out.push(("consensus".into(), &self.consensus));
        out.push(("soft".into(), &self.soft));
        self.stl.iter().enumerate().for_each(|(k, d)| out.push((format!("stl{k}"), d)));
        out.push(("stl_out".into(), &self.stl_out));
        out
    }

    /// Rebuilds the layers from `lookup(name) -> (w, b, inputs, outputs)`, the inverse of
    /// [`AttributeParams::named_layers`].
    pub fn from_lookup(
        mut lookup: impl FnMut(&str) -> Result<DenseParams, TrainError>,
    ) -> Result<Self, TrainError> {
        let enc = (0..VAE_LAYERS).map(|k| lookup(&format!("enc{k}"))).collect::<Result<_, _>>()?;
        let er = (0..ER_LAYERS).map(|k| lookup(&format!("er{k}"))).collect::<Result<_, _>>()?;
        let stl = (0..ER_LAYERS).map(|k| lookup(&format!("stl{k}"))).collect::<Result<_, _>>()?;
        Ok(AttributeParams {
            enc,
            mu: lookup("mu")?,
            logvar: lookup("logvar")?,
            er,
            consensus: lookup("consensus")?,
            soft: lookup("soft")?,
            stl,
            stl_out: lookup("stl_out")?,
        })
    }

    /// Number of scalar parameters.
    pub fn parameter_count(&self) -> usize {
        self.named_layers().iter().map(|(_, d)| d.w.len() + d.b.len()).sum()
    }
}

/// Min–max normalisation to [0, 1] with train-split statistics (constant features map to 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Normalizer {
    pub min: Vec<f32>,
    pub inv_range: Vec<f32>,
}

impl Normalizer {
    /// Statistics of the given rows of a row-major `[*, dims]` matrix.
    pub fn fit(features: &[f32], dims: usize, rows: &[usize]) -> Normalizer {
        let mut min = vec![f32::INFINITY; dims];
        let mut max = vec![f32::NEG_INFINITY; dims];
        for &r in rows {
            for (j, &v) in features[r * dims..(r + 1) * dims].iter().enumerate() {
                min[j] = min[j].min(v);
                max[j] = max[j].max(v);
            }
        }
        let inv_range =
            min.iter().zip(&max).map(|(lo, hi)| if hi > lo { 1.0 / (hi - lo) } else { 0.0 }).collect();
        Normalizer { min, inv_range }
    }

    /// `clip((x − min) · inv_range, 0, 1)`, the same arithmetic as the graph.
    pub fn apply(&self, row: &[f32], out: &mut [f32]) {
        for (j, (o, &x)) in out.iter_mut().zip(row).enumerate() {
            *o = ((x - self.min[j]) * self.inv_range[j]).clamp(0.0, 1.0);
        }
    }
}

/// Draws the fixed `[S, LATENT]` Monte-Carlo noise bank.
///
/// * Gaussian: i.i.d. standard normal draws (the paper's sampling).
/// * Antithetic: draws `ε_1..ε_⌈S/2⌉` followed by their negations, so every odd moment of
///   the bank is exactly zero and the mean of a function that is nearly linear in ε converges
///   faster (an odd S drops the last negation).
/// * Sobol: the first S points of an Owen-scrambled Sobol sequence in LATENT (= 256)
///   dimensions, mapped through the normal inverse CDF; low-discrepancy points cover the
///   latent Gaussian more evenly than i.i.d. draws, the lever for a smaller S.
pub fn noise_bank(kind: NoiseBank, samples: usize, seed: u64) -> Result<Vec<f32>, TrainError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| StandardNormal.sample(&mut rng)).collect() };
    match kind {
        NoiseBank::Gaussian => Ok(draw(samples * LATENT)),
        NoiseBank::Antithetic => {
            let half = draw(samples.div_ceil(2) * LATENT);
            let mut bank = half.clone();
            bank.extend(half.iter().map(|v| -v));
            bank.truncate(samples * LATENT);
            Ok(bank)
        }
        NoiseBank::Sobol => sobol_bank(samples, seed),
    }
}

fn sobol_bank(samples: usize, seed: u64) -> Result<Vec<f32>, TrainError> {
    const _: () = assert!(LATENT <= sobol_burley::NUM_DIMENSIONS as usize);
    let count = u32::try_from(samples)
        .map_err(|_| TrainError::Config(format!("{samples} Sobol points do not fit the sequence")))?;
    let seed = (seed ^ (seed >> 32)) as u32;
    // Keep u strictly inside (0, 1): a scrambled point can be exactly 0.
    let eps = f64::from(f32::EPSILON) / 2.0;
    Ok((0..count)
        .flat_map(|i| {
            (0..LATENT as u32).map(move |d| {
                let u = f64::from(sobol_burley::sample(i, d, seed)).clamp(eps, 1.0 - eps);
                normal_quantile(u) as f32
            })
        })
        .collect())
}

/// Standard normal quantile Φ⁻¹(p) for p in (0, 1): Acklam's rational approximation
/// (relative error < 1.2e-9, far below the f32 the bank is stored in).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    const LOW: f64 = 0.024_25;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Everything the serving graph contains.
#[derive(Debug, Clone, PartialEq)]
pub struct ServingParams {
    pub norm: Normalizer,
    /// `[mc_samples, LATENT]` row-major.
    pub noise: Vec<f32>,
    pub mc_samples: usize,
    pub attributes: PerAttribute<AttributeParams>,
}

impl ServingParams {
    pub fn dims(&self) -> usize {
        self.norm.min.len()
    }
}

/// Outputs of one attribute for `n` rows, as the ONNX graph returns them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AttributeOutputs {
    pub value: Vec<f32>,
    pub consensus: Vec<f32>,
    /// `[n, 7]` row-major.
    pub distribution: Vec<f32>,
    pub entropy: Vec<f32>,
}

fn dense(x: &Tensor, p: &DenseParams, dev: &Device) -> candle_core::Result<Tensor> {
    let w = Tensor::from_slice(&p.w, (p.inputs, p.outputs), dev)?;
    let b = Tensor::from_slice(&p.b, p.outputs, dev)?;
    x.matmul(&w)?.broadcast_add(&b)
}

/// Runs the serving computation on `features` (row-major `[n, dims]`), in chunks of
/// `chunk` rows to bound memory (`n · S · 256` latent samples per chunk otherwise).
pub fn forward(
    params: &ServingParams,
    features: &[f32],
    chunk: usize,
) -> Result<PerAttribute<AttributeOutputs>, TrainError> {
    let dims = params.dims();
    let dev = Device::Cpu;
    let s = params.mc_samples;
    let bank = Tensor::from_slice(&params.noise, (1, s, LATENT), &dev)?;
    let mut out: PerAttribute<AttributeOutputs> = PerAttribute::default();
    let mut scaled = Vec::new();
    for rows in features.chunks(chunk.max(1) * dims) {
        let n = rows.len() / dims;
        scaled.resize(rows.len(), 0.0);
        for (r, o) in rows.chunks(dims).zip(scaled.chunks_mut(dims)) {
            params.norm.apply(r, o);
        }
        let x = Tensor::from_slice(&scaled, (n, dims), &dev)?;
        for a in Attribute::ALL {
            let p = &params.attributes[a];
            let mut h = x.clone();
            for layer in &p.enc {
                h = dense(&h, layer, &dev)?.relu()?;
            }
            let mu = dense(&h, &p.mu, &dev)?;
            let sigma = (dense(&h, &p.logvar, &dev)? * 0.5)?.exp()?;
            let z = mu
                .unsqueeze(1)?
                .broadcast_add(&sigma.unsqueeze(1)?.broadcast_mul(&bank)?)?
                .reshape((n * s, LATENT))?;
            let mut g = z;
            for layer in &p.er {
                g = dense(&g, layer, &dev)?.tanh()?;
            }
            let consensus = dense(&g, &p.consensus, &dev)?.reshape((n, s))?.mean(1)?;
            let probs = candle_nn::ops::softmax(&dense(&g, &p.soft, &dev)?, D::Minus1)?;
            let dist = probs.reshape((n, s, LIKERT_BINS))?.mean(1)?;
            let entropy = (&dist * dist.clamp(ENTROPY_FLOOR, f32::MAX)?.log()?)?.sum(D::Minus1)?.neg()?;
            let mut v = x.clone();
            for layer in &p.stl {
                v = dense(&v, layer, &dev)?.tanh()?;
            }
            let value = dense(&v, &p.stl_out, &dev)?.reshape(n)?;
            let o = &mut out[a];
            o.value.extend(value.to_vec1::<f32>()?);
            o.consensus.extend(consensus.to_vec1::<f32>()?);
            o.distribution.extend(dist.flatten_all()?.to_vec1::<f32>()?);
            o.entropy.extend(entropy.to_vec1::<f32>()?);
        }
    }
    Ok(out)
}

/// Saves one attribute's trained layers (a checkpoint, so attributes can be trained by
/// separate `emogate train --attribute` runs and fused afterwards).
pub fn save_attribute(path: &Path, p: &AttributeParams) -> Result<(), TrainError> {
    let dev = Device::Cpu;
    let mut map: HashMap<String, Tensor> = HashMap::new();
    for (name, d) in p.named_layers() {
        map.insert(format!("{name}.w"), Tensor::from_slice(&d.w, (d.inputs, d.outputs), &dev)?);
        map.insert(format!("{name}.b"), Tensor::from_slice(&d.b, d.outputs, &dev)?);
    }
    candle_core::safetensors::save(&map, path)?;
    Ok(())
}

/// Loads what [`save_attribute`] wrote.
pub fn load_attribute(path: &Path) -> Result<AttributeParams, TrainError> {
    let map = candle_core::safetensors::load(path, &Device::Cpu)?;
    AttributeParams::from_lookup(|name| {
        let get = |k: String| {
            map.get(&k).cloned().ok_or_else(|| TrainError::Corpus {
                path: path.into(),
                reason: format!("checkpoint has no tensor `{k}`"),
            })
        };
        let w = get(format!("{name}.w"))?;
        let (inputs, outputs) = w.dims2()?;
        Ok(DenseParams {
            inputs,
            outputs,
            w: w.flatten_all()?.to_vec1()?,
            b: get(format!("{name}.b"))?.to_vec1()?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normaliser_scales_to_unit_interval_and_clips() {
        // Rows [0, 10], [5, 10] are fitted; the third row [10, 10] is not.
        let x = [0.0f32, 10.0, 5.0, 10.0, 10.0, 10.0];
        let n = Normalizer::fit(&x, 2, &[0, 1]);
        assert_eq!(n.min, vec![0.0, 10.0]);
        assert_eq!(n.inv_range, vec![0.2, 0.0]);
        let mut o = [0f32; 2];
        n.apply(&[20.0, 3.0], &mut o);
        assert_eq!(o, [1.0, 0.0]);
    }

    #[test]
    fn noise_banks_are_seeded_and_antithetic_pairs_cancel() {
        let a = noise_bank(NoiseBank::Gaussian, 4, 1).unwrap();
        assert_eq!(a, noise_bank(NoiseBank::Gaussian, 4, 1).unwrap());
        assert_ne!(a, noise_bank(NoiseBank::Gaussian, 4, 2).unwrap());
        let b = noise_bank(NoiseBank::Antithetic, 4, 1).unwrap();
        assert_eq!(b.len(), 4 * LATENT);
        let col_sum: f32 = (0..4).map(|s| b[s * LATENT + 7]).sum();
        assert!(col_sum.abs() < 1e-6);
    }

    #[test]
    fn normal_quantile_matches_known_values() {
        // Φ⁻¹ at 0.5, 0.975, 0.999 and 1e-6 (tables), and symmetry.
        assert!(normal_quantile(0.5).abs() < 1e-12);
        assert!((normal_quantile(0.975) - 1.959_963_984_540_054).abs() < 1e-8);
        assert!((normal_quantile(0.999) - 3.090_232_306_167_813_5).abs() < 1e-8);
        assert!((normal_quantile(1e-6) + 4.753_424_308_822_899).abs() < 1e-7);
        assert!((normal_quantile(0.3) + normal_quantile(0.7)).abs() < 1e-12);
    }

    #[test]
    fn sobol_bank_is_seeded_and_more_even_than_iid_draws() {
        let s = 64;
        let a = noise_bank(NoiseBank::Sobol, s, 3).unwrap();
        assert_eq!(a.len(), s * LATENT);
        assert_eq!(a, noise_bank(NoiseBank::Sobol, s, 3).unwrap());
        assert_ne!(a, noise_bank(NoiseBank::Sobol, s, 4).unwrap());
        assert!(a.iter().all(|v| v.is_finite()));
        // Per latent dimension, the S points are stratified: the worst |column mean| over the
        // 256 dimensions is far below what 64 i.i.d. normals give (sd 1/8 each).
        let worst = |bank: &[f32]| {
            (0..LATENT)
                .map(|d| ((0..s).map(|i| bank[i * LATENT + d]).sum::<f32>() / s as f32).abs())
                .fold(0.0f32, f32::max)
        };
        let iid = noise_bank(NoiseBank::Gaussian, s, 3).unwrap();
        assert!(worst(&a) < 0.05, "sobol worst column mean {}", worst(&a));
        assert!(worst(&iid) > 0.2, "iid worst column mean {}", worst(&iid));
    }
}
