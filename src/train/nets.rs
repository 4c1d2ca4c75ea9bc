//! The trainable networks in candle: the paper's VAE-ER (Sec. IV-C) and the STL regressor
//! (Sec. V), built from one dense layer type whose weights are stored `[in, out]` so that the
//! exported ONNX `MatMul` uses them unchanged.
//!
//! Dropout masks and initial weights come from seeded ChaCha8 streams rather than candle's
//! global RNG, so a training run is reproducible from its seed.

use candle_core::{DType, Device, Result, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::arch::{ER_HIDDEN, ER_LAYERS, LATENT, VAE_HIDDEN, VAE_LAYERS};
use super::serving::{AttributeParams, DenseParams};
use crate::attribute::LIKERT_BINS;

/// Initial bias of the log σ² head.
pub const INIT_LOGVAR: f32 = -6.0;

/// A fully connected layer `y = x · W + b` with `W: [in, out]`.
pub struct Dense {
    pub w: Var,
    pub b: Var,
}

impl Dense {
    /// Glorot-uniform weights (Keras' default, the paper's framework) and zero bias.
    pub fn new(inputs: usize, outputs: usize, rng: &mut ChaCha8Rng, dev: &Device) -> Result<Dense> {
        let limit = (6.0 / (inputs + outputs) as f32).sqrt();
        let w: Vec<f32> = (0..inputs * outputs).map(|_| rng.random_range(-limit..limit)).collect();
        Ok(Dense { w: Var::from_vec(w, (inputs, outputs), dev)?, b: Var::zeros(outputs, DType::F32, dev)? })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(self.w.as_tensor())?.broadcast_add(self.b.as_tensor())
    }

    pub fn vars(&self) -> [Var; 2] {
        [self.w.clone(), self.b.clone()]
    }

    /// Copies the weights to the host.
    pub fn params(&self) -> Result<DenseParams> {
        let (inputs, outputs) = self.w.as_tensor().dims2()?;
        Ok(DenseParams {
            inputs,
            outputs,
            w: self.w.as_tensor().flatten_all()?.to_vec1()?,
            b: self.b.as_tensor().to_vec1()?,
        })
    }

    /// Overwrites the weights from host values of the same shape.
    pub fn load(&self, p: &DenseParams) -> Result<()> {
        let dev = self.w.device();
        self.w.set(&Tensor::from_slice(&p.w, (p.inputs, p.outputs), dev)?)?;
        self.b.set(&Tensor::from_slice(&p.b, p.outputs, dev)?)
    }
}

/// Inverted dropout with a seeded mask stream; identity when `p == 0`.
pub struct Dropout {
    pub p: f32,
    /// Also drop units of the VAE encoder's hidden layers (not only the ER's / STL's).
    pub in_encoder: bool,
    /// Also drop units of the decoder's hidden layers (AE-MCD's MCD decoder).
    pub in_decoder: bool,
    rng: ChaCha8Rng,
}

impl Dropout {
    pub fn new(p: f32, in_encoder: bool, seed: u64) -> Dropout {
        Dropout { p, in_encoder, in_decoder: false, rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    pub fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        if self.p <= 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 - self.p;
        let scale = 1.0 / keep;
        let mask: Vec<f32> =
            (0..x.elem_count()).map(|_| if self.rng.random::<f32>() < keep { scale } else { 0.0 }).collect();
        x * Tensor::from_vec(mask, x.shape(), x.device())?
    }
}

fn stack(
    inputs: usize,
    width: usize,
    depth: usize,
    rng: &mut ChaCha8Rng,
    dev: &Device,
) -> Result<Vec<Dense>> {
    (0..depth).map(|k| Dense::new(if k == 0 { inputs } else { width }, width, rng, dev)).collect()
}

/// VAE with the emotional regressor on its sampled latent vector.
pub struct VaeEr {
    pub enc: Vec<Dense>,
    pub mu: Dense,
    pub logvar: Dense,
    pub dec: Vec<Dense>,
    pub dec_out: Dense,
    pub er: Vec<Dense>,
    pub consensus: Dense,
    pub soft: Dense,
}

/// What one VAE-ER forward pass over a batch produces.
pub struct VaeErOutput {
    pub mu: Tensor,
    pub logvar: Tensor,
    /// Decoder logits for the first MC sample, `[B, dims]` (only when asked for).
    pub recon_logits: Option<Tensor>,
    /// Consensus head averaged over the MC samples, `[B]`.
    pub consensus: Tensor,
    /// Soft-label distribution averaged over the MC samples, `[B, 7]`.
    pub distribution: Tensor,
}

impl VaeEr {
    /// `consensus_bias` initialises the consensus head at the mean training label, so the
    /// (1 − CCC) term starts from a sensible location.
    /// `soft_prior` (the mean training soft label) initialises the softmax head so that it
    /// starts at the marginal label distribution, with small weights.
    pub fn new(
        dims: usize,
        seed: u64,
        consensus_bias: f32,
        soft_prior: &[f32; LIKERT_BINS],
        dev: &Device,
    ) -> Result<VaeEr> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let net = VaeEr {
            enc: stack(dims, VAE_HIDDEN, VAE_LAYERS, &mut rng, dev)?,
            mu: Dense::new(VAE_HIDDEN, LATENT, &mut rng, dev)?,
            logvar: Dense::new(VAE_HIDDEN, LATENT, &mut rng, dev)?,
            dec: stack(LATENT, VAE_HIDDEN, VAE_LAYERS, &mut rng, dev)?,
            dec_out: Dense::new(VAE_HIDDEN, dims, &mut rng, dev)?,
            er: stack(LATENT, ER_HIDDEN, ER_LAYERS, &mut rng, dev)?,
            consensus: Dense::new(ER_HIDDEN, 1, &mut rng, dev)?,
            soft: Dense::new(ER_HIDDEN, LIKERT_BINS, &mut rng, dev)?,
        };
        net.consensus.b.set(&Tensor::new(&[consensus_bias], dev)?)?;
        // Start with a narrow posterior (σ ≈ 0.05): with log σ² ≈ 0 the unit-variance noise
        // swamps the freshly initialised μ and the ER sees almost nothing but noise for
        // hundreds of steps. Training widens σ where the data warrant it.
        net.logvar.b.set(&Tensor::full(INIT_LOGVAR, LATENT, dev)?)?;
        // Start the softmax head at the marginal label distribution: from random logits,
        // Adam at lr 3e-4 needed more steps than the default schedule has to get below the
        // marginal's KLD (measured: ≈ 1.2 nats after 12 epochs vs 0.74 for the marginal).
        let prior: Vec<f32> = soft_prior.iter().map(|p| (p + 1e-3).ln()).collect();
        net.soft.b.set(&Tensor::from_vec(prior, LIKERT_BINS, dev)?)?;
        net.soft.w.set(&(net.soft.w.as_tensor() * 0.1)?)?;
        Ok(net)
    }

    /// Encoder and decoder variables (phase 1).
    pub fn vae_vars(&self) -> Vec<Var> {
        self.enc
            .iter()
            .chain([&self.mu, &self.logvar])
            .chain(&self.dec)
            .chain([&self.dec_out])
            .flat_map(Dense::vars)
            .collect()
    }

    /// Every variable (phase 2).
    pub fn all_vars(&self) -> Vec<Var> {
        let mut v = self.vae_vars();
        v.extend(self.er.iter().chain([&self.consensus, &self.soft]).flat_map(Dense::vars));
        v
    }

    /// `(μ, log σ²)` of q(z|x), each `[B, LATENT]`.
    pub fn encode(&self, x: &Tensor, mut drop: Option<&mut Dropout>) -> Result<(Tensor, Tensor)> {
        let mut h = x.clone();
        for layer in &self.enc {
            h = layer.forward(&h)?.relu()?;
            if let Some(d) = drop.as_deref_mut().filter(|d| d.in_encoder) {
                h = d.apply(&h)?;
            }
        }
        Ok((self.mu.forward(&h)?, self.logvar.forward(&h)?))
    }

    /// Decoder logits (the sigmoid is folded into the loss).
    pub fn decode_logits(&self, z: &Tensor, mut drop: Option<&mut Dropout>) -> Result<Tensor> {
        let mut h = z.clone();
        for layer in &self.dec {
            h = layer.forward(&h)?.tanh()?;
            if let Some(d) = drop.as_deref_mut().filter(|d| d.in_decoder) {
                h = d.apply(&h)?;
            }
        }
        self.dec_out.forward(&h)
    }

    /// ER heads on latent samples `[M, LATENT]`: consensus `[M]` and softmax `[M, 7]`.
    pub fn regress(&self, z: &Tensor, mut drop: Option<&mut Dropout>) -> Result<(Tensor, Tensor)> {
        let mut h = z.clone();
        for layer in &self.er {
            h = layer.forward(&h)?.tanh()?;
            if let Some(d) = drop.as_deref_mut() {
                h = d.apply(&h)?;
            }
        }
        let consensus = self.consensus.forward(&h)?.squeeze(D::Minus1)?;
        let probs = candle_nn::ops::softmax(&self.soft.forward(&h)?, D::Minus1)?;
        Ok((consensus, probs))
    }

    /// Full pass with `eps: [B, S, LATENT]` noise: z = μ + σ ⊙ ε, ER on every sample,
    /// averages over S. `reconstruct` adds decoder logits for the first sample.
    pub fn forward(
        &self,
        x: &Tensor,
        eps: &Tensor,
        reconstruct: bool,
        mut drop: Option<&mut Dropout>,
    ) -> Result<VaeErOutput> {
        let (mu, logvar) = self.encode(x, drop.as_deref_mut())?;
        // `eps` is `[B, S, L]` during training or the shared bank `[1, S, L]` at evaluation.
        let b = mu.dim(0)?;
        let (_, s, l) = eps.dims3()?;
        let sigma = (&logvar * 0.5)?.exp()?;
        let z = mu.unsqueeze(1)?.broadcast_add(&sigma.unsqueeze(1)?.broadcast_mul(eps)?)?;
        let recon_logits = if reconstruct {
            Some(self.decode_logits(&z.narrow(1, 0, 1)?.squeeze(1)?, drop.as_deref_mut())?)
        } else {
            None
        };
        let (consensus, probs) = self.regress(&z.reshape((b * s, l))?, drop)?;
        Ok(VaeErOutput {
            mu,
            logvar,
            recon_logits,
            consensus: consensus.reshape((b, s))?.mean(1)?,
            distribution: probs.reshape((b, s, LIKERT_BINS))?.mean(1)?,
        })
    }

    /// Trainable values, decoder included (the paper's count for its generative model).
    pub fn parameter_count(&self) -> usize {
        self.layers().iter().map(|d| d.w.as_tensor().elem_count() + d.b.as_tensor().elem_count()).sum()
    }

    /// Host copy of every layer, decoder included (for restoring the best epoch).
    pub fn snapshot(&self) -> Result<Vec<DenseParams>> {
        self.layers().iter().map(|d| d.params()).collect()
    }

    pub fn restore(&self, snap: &[DenseParams]) -> Result<()> {
        self.layers().iter().zip(snap).try_for_each(|(d, p)| d.load(p))
    }

    fn layers(&self) -> Vec<&Dense> {
        self.enc
            .iter()
            .chain([&self.mu, &self.logvar])
            .chain(&self.dec)
            .chain([&self.dec_out])
            .chain(&self.er)
            .chain([&self.consensus, &self.soft])
            .collect()
    }
}

/// The STL regressor: an ER-like DNN on the scaled features, one scalar output.
pub struct Stl {
    pub hidden: Vec<Dense>,
    pub out: Dense,
}

impl Stl {
    pub fn new(dims: usize, seed: u64, bias: f32, dev: &Device) -> Result<Stl> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let net = Stl {
            hidden: stack(dims, ER_HIDDEN, ER_LAYERS, &mut rng, dev)?,
            out: Dense::new(ER_HIDDEN, 1, &mut rng, dev)?,
        };
        net.out.b.set(&Tensor::new(&[bias], dev)?)?;
        Ok(net)
    }

    pub fn vars(&self) -> Vec<Var> {
        self.hidden.iter().chain([&self.out]).flat_map(Dense::vars).collect()
    }

    /// Prediction `[B]`.
    pub fn forward(&self, x: &Tensor, mut drop: Option<&mut Dropout>) -> Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.hidden {
            h = layer.forward(&h)?.tanh()?;
            if let Some(d) = drop.as_deref_mut() {
                h = d.apply(&h)?;
            }
        }
        self.out.forward(&h)?.squeeze(D::Minus1)
    }

    pub fn snapshot(&self) -> Result<Vec<DenseParams>> {
        self.hidden.iter().chain([&self.out]).map(Dense::params).collect()
    }

    pub fn restore(&self, snap: &[DenseParams]) -> Result<()> {
        self.hidden.iter().chain([&self.out]).zip(snap).try_for_each(|(d, p)| d.load(p))
    }
}

/// The MC-dropout DNN of the paper's baselines (MCD, MCD soft, MCD MTL; Sridhar and Busso's
/// MCD model): the ER's shape on the scaled features, with a consensus head, a 7-way softmax
/// head, or both, and dropout kept on at inference to draw predictions.
pub struct McdDnn {
    pub hidden: Vec<Dense>,
    pub consensus: Option<Dense>,
    pub soft: Option<Dense>,
}

/// Head outputs over rows: consensus `[M]` and softmax `[M, 7]`, each when the net has it.
pub struct Heads {
    pub consensus: Option<Tensor>,
    pub probs: Option<Tensor>,
}

impl McdDnn {
    pub fn new(
        dims: usize,
        seed: u64,
        consensus_bias: Option<f32>,
        soft_prior: Option<&[f32; LIKERT_BINS]>,
        dev: &Device,
    ) -> Result<McdDnn> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let hidden = stack(dims, ER_HIDDEN, ER_LAYERS, &mut rng, dev)?;
        let consensus = consensus_bias
            .map(|bias| {
                let d = Dense::new(ER_HIDDEN, 1, &mut rng, dev)?;
                d.b.set(&Tensor::new(&[bias], dev)?)?;
                Ok::<_, candle_core::Error>(d)
            })
            .transpose()?;
        let soft = soft_prior
            .map(|prior| {
                let d = Dense::new(ER_HIDDEN, LIKERT_BINS, &mut rng, dev)?;
                let logits: Vec<f32> = prior.iter().map(|p| (p + 1e-3).ln()).collect();
                d.b.set(&Tensor::from_vec(logits, LIKERT_BINS, dev)?)?;
                d.w.set(&(d.w.as_tensor() * 0.1)?)?;
                Ok::<_, candle_core::Error>(d)
            })
            .transpose()?;
        Ok(McdDnn { hidden, consensus, soft })
    }

    fn layers(&self) -> Vec<&Dense> {
        self.hidden.iter().chain(self.consensus.as_ref()).chain(self.soft.as_ref()).collect()
    }

    pub fn vars(&self) -> Vec<Var> {
        self.layers().into_iter().flat_map(Dense::vars).collect()
    }

    pub fn parameter_count(&self) -> usize {
        self.layers().iter().map(|d| d.w.as_tensor().elem_count() + d.b.as_tensor().elem_count()).sum()
    }

    /// Hidden layers from `first` on (tanh, then dropout when given), then the heads.
    fn run_from_layer(&self, h: Tensor, first: usize, mut drop: Option<&mut Dropout>) -> Result<Heads> {
        let mut h = h;
        for layer in &self.hidden[first..] {
            h = layer.forward(&h)?.tanh()?;
            if let Some(d) = drop.as_deref_mut() {
                h = d.apply(&h)?;
            }
        }
        Ok(Heads {
            consensus: self.consensus.as_ref().map(|c| c.forward(&h)?.squeeze(D::Minus1)).transpose()?,
            probs: self
                .soft
                .as_ref()
                .map(|s| candle_nn::ops::softmax(&s.forward(&h)?, D::Minus1))
                .transpose()?,
        })
    }

    /// One pass over `x: [B, dims]` (dropout when given).
    pub fn forward(&self, x: &Tensor, drop: Option<&mut Dropout>) -> Result<Heads> {
        self.run_from_layer(x.clone(), 0, drop)
    }

    /// `k` dropout passes per row, rows `[B·k]` in row-major (row, pass) order. Dropout acts
    /// after each hidden activation, never on the input, so the first layer's
    /// pre-activation is the same in every pass: `share_first_layer` computes it once
    /// (same distribution of outputs, ≈ 1/k of the input layer's cost); without it every
    /// pass runs the whole network, as Keras-style MC dropout does.
    pub fn forward_mc(
        &self,
        x: &Tensor,
        k: usize,
        drop: &mut Dropout,
        share_first_layer: bool,
    ) -> Result<Heads> {
        let (b, dims) = x.dims2()?;
        let repeat =
            |t: &Tensor, width: usize| t.unsqueeze(1)?.broadcast_as((b, k, width))?.reshape((b * k, width));
        if share_first_layer {
            let mut h = self.hidden[0].forward(x)?.tanh()?;
            h = drop.apply(&repeat(&h, ER_HIDDEN)?)?;
            self.run_from_layer(h, 1, Some(drop))
        } else {
            self.run_from_layer(repeat(x, dims)?, 0, Some(drop))
        }
    }

    pub fn snapshot(&self) -> Result<Vec<DenseParams>> {
        self.layers().iter().map(|d| d.params()).collect()
    }

    pub fn restore(&self, snap: &[DenseParams]) -> Result<()> {
        self.layers().iter().zip(snap).try_for_each(|(d, p)| d.load(p))
    }
}

/// Assembles the serving parameters of one attribute from the trained networks (the
/// decoder is left out: it is not part of the serving graph).
pub fn attribute_params(vae_er: &VaeEr, stl: &Stl) -> Result<AttributeParams> {
    let mut stl_layers = stl.snapshot()?;
    let stl_out = stl_layers.pop().expect("STL has an output layer");
    Ok(AttributeParams {
        enc: vae_er.enc.iter().map(Dense::params).collect::<Result<_>>()?,
        mu: vae_er.mu.params()?,
        logvar: vae_er.logvar.params()?,
        er: vae_er.er.iter().map(Dense::params).collect::<Result<_>>()?,
        consensus: vae_er.consensus.params()?,
        soft: vae_er.soft.params()?,
        stl: stl_layers,
        stl_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::{Attribute, PerAttribute};
    use crate::model::NoiseBank;
    use crate::train::serving::{self, Normalizer, ServingParams};

    /// The training-side forward pass (no dropout, the bank as noise) and the serving
    /// reference built from the exported parameters compute the same outputs.
    #[test]
    fn training_forward_matches_the_serving_reference() {
        let (dims, n, s) = (16, 5, 7);
        let dev = Device::Cpu;
        let nets: Vec<(VaeEr, Stl)> = (0..3)
            .map(|k| {
                (
                    VaeEr::new(dims, 10 + k, 4.0, &[1.0 / 7.0; LIKERT_BINS], &dev).unwrap(),
                    Stl::new(dims, 20 + k, 4.0, &dev).unwrap(),
                )
            })
            .collect();
        let raw: Vec<f32> = (0..n * dims).map(|i| ((i * 37 % 101) as f32) * 0.3 - 2.0).collect();
        let norm = Normalizer::fit(&raw, dims, &(0..n).collect::<Vec<_>>());
        let mut scaled = vec![0f32; raw.len()];
        raw.chunks(dims).zip(scaled.chunks_mut(dims)).for_each(|(r, o)| norm.apply(r, o));
        let bank = serving::noise_bank(NoiseBank::Gaussian, s, 1).unwrap();
        let params = ServingParams {
            norm,
            noise: bank.clone(),
            mc_samples: s,
            attributes: PerAttribute::from_fn(|a| {
                attribute_params(&nets[a.index()].0, &nets[a.index()].1).unwrap()
            }),
        };
        let served = serving::forward(&params, &raw, 2).unwrap();
        let x = Tensor::from_slice(&scaled, (n, dims), &dev).unwrap();
        let eps = Tensor::from_slice(&bank, (1, s, LATENT), &dev).unwrap();
        for a in Attribute::ALL {
            let (net, stl) = &nets[a.index()];
            let out = net.forward(&x, &eps, false, None).unwrap();
            let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() <= 1e-5);
            assert!(close(&out.consensus.to_vec1::<f32>().unwrap(), &served[a].consensus), "{a} consensus");
            assert!(
                close(
                    &out.distribution.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    &served[a].distribution
                ),
                "{a} dist"
            );
            assert!(
                close(&stl.forward(&x, None).unwrap().to_vec1::<f32>().unwrap(), &served[a].value),
                "{a} value"
            );
            let h: Vec<f32> =
                served[a].distribution.chunks(LIKERT_BINS).map(crate::uncertainty::entropy_nats).collect();
            assert!(close(&h, &served[a].entropy), "{a} entropy");
        }
    }
}
