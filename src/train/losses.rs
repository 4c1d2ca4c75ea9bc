//! The loss terms of the paper's Eq. (2) and (3), as differentiable candle expressions.
//!
//! `NLL_VAE` is the negative ELBO of Eq. (1) per input dimension: Bernoulli reconstruction
//! NLL of the [0, 1]-scaled features under the sigmoid decoder, plus the KL divergence of
//! q(z|x) from N(0, I) divided by the input width (`kl_weight` scales it; 0 gives Eq. (2)'s
//! reconstruction term alone). Per-dimension scaling keeps it on the scale of the other two
//! terms, which is what the paper's α, β, γ assume.

use candle_core::{Result, Tensor, D};

/// Mean Bernoulli NLL of `x` ∈ [0, 1] under `sigmoid(logits)`, computed stably as
/// `softplus(l) − x·l`.
pub fn bce_with_logits(logits: &Tensor, x: &Tensor) -> Result<Tensor> {
    let softplus = (logits.relu()? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    (softplus - (x * logits)?)?.mean_all()
}

/// KL(N(μ, σ²) ‖ N(0, I)) summed over the latent dimensions, averaged over the batch.
pub fn kl_standard_normal(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    let per = ((mu.sqr()? + logvar.exp()?)? - logvar)? - 1.0;
    (per?.sum(D::Minus1)? * 0.5)?.mean_all()
}

/// `NLL_VAE`: reconstruction NLL per feature + `kl_weight` · KL / feature width.
pub fn vae_nll(logits: &Tensor, x: &Tensor, mu: &Tensor, logvar: &Tensor, kl_weight: f64) -> Result<Tensor> {
    let dims = x.dim(D::Minus1)? as f64;
    bce_with_logits(logits, x)? + (kl_standard_normal(mu, logvar)? * (kl_weight / dims))?
}

/// Mean squared error of `sigmoid(logits)` against `x` (AE-MCD's auto-encoder loss);
/// the sigmoid is written out so that it has a backward pass.
pub fn mse_with_logits(logits: &Tensor, x: &Tensor) -> Result<Tensor> {
    let recon = (logits.neg()?.exp()? + 1.0)?.recip()?;
    (recon - x)?.sqr()?.mean_all()
}

/// `1 − CCC(pred, truth)` over a batch of scalars `[B]` (population moments).
pub fn ccc_loss(pred: &Tensor, truth: &Tensor) -> Result<Tensor> {
    let mp = pred.mean_all()?;
    let mt = truth.mean_all()?;
    let dp = pred.broadcast_sub(&mp)?;
    let dt = truth.broadcast_sub(&mt)?;
    let vp = dp.sqr()?.mean_all()?;
    let vt = dt.sqr()?.mean_all()?;
    let cov = (dp * dt)?.mean_all()?;
    let denom = ((vp + vt)? + (mp - mt)?.sqr()?)?;
    let ccc = ((cov * 2.0)? / (denom + 1e-8)?)?;
    ccc.neg()? + 1.0
}

/// KLD(target ‖ predicted) averaged over the batch; `target` and `predicted` are `[B, 7]`
/// distributions. `target_neg_entropy` is Σ t ln t per row (a constant, precomputed on the
/// host so 0·ln 0 needs no special case in the graph); `predicted` is clamped at 1e-7.
pub fn kld_soft(target: &Tensor, target_neg_entropy: &Tensor, predicted: &Tensor) -> Result<Tensor> {
    let cross = (target * predicted.clamp(1e-7f32, 1f32)?.log()?)?.sum(D::Minus1)?;
    (target_neg_entropy - cross)?.mean_all()
}

/// Σ t ln t per row of a row-major `[n, k]` slice (0·ln 0 = 0), the constant of [`kld_soft`].
pub fn neg_entropy_rows(target: &[f32], k: usize) -> Vec<f32> {
    target.chunks(k).map(|row| -crate::uncertainty::entropy_nats(row)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::metrics;
    use candle_core::Device;

    fn t(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
    }

    fn scalar(x: Tensor) -> f32 {
        x.to_scalar::<f32>().unwrap()
    }

    #[test]
    fn ccc_loss_agrees_with_the_slice_ccc() {
        let p = [1.0, 2.5, 2.0, 4.0, 3.0];
        let y = [1.5, 2.0, 2.5, 3.5, 3.0];
        let want = 1.0 - metrics::ccc(&p, &y);
        assert!((scalar(ccc_loss(&t(&p, &[5]), &t(&y, &[5])).unwrap()) as f64 - want).abs() < 1e-5);
    }

    #[test]
    fn bce_and_kl_match_their_definitions() {
        let l = [-2.0f32, 0.0, 3.0];
        let x = [0.0f32, 0.5, 1.0];
        let want: f32 = l
            .iter()
            .zip(&x)
            .map(|(&l, &x)| {
                let s = 1.0 / (1.0 + (-l).exp());
                -(x * s.ln() + (1.0 - x) * (1.0 - s).ln())
            })
            .sum::<f32>()
            / 3.0;
        assert!((scalar(bce_with_logits(&t(&l, &[1, 3]), &t(&x, &[1, 3])).unwrap()) - want).abs() < 1e-6);
        // KL of N(1, e^0) from N(0,1) in one dimension is ½(1 + 1 − 0 − 1) = ½.
        assert!(
            (scalar(kl_standard_normal(&t(&[1.0], &[1, 1]), &t(&[0.0], &[1, 1])).unwrap()) - 0.5).abs()
                < 1e-6
        );
    }

    #[test]
    fn kld_is_zero_for_identical_distributions_and_positive_otherwise() {
        let target = [0.5f32, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0];
        let ne = neg_entropy_rows(&target, 7);
        let tt = t(&target, &[1, 7]);
        let same = scalar(kld_soft(&tt, &t(&ne, &[1]), &tt).unwrap());
        assert!(same.abs() < 1e-6, "{same}");
        let uniform = [1.0f32 / 7.0; 7];
        let kl = scalar(kld_soft(&tt, &t(&ne, &[1]), &t(&uniform, &[1, 7])).unwrap());
        assert!((kl - (7f32.ln() - 2f32.ln())).abs() < 1e-5, "{kl}");
    }
}

#[cfg(test)]
mod gradient_tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The soft-label loss must reach the logits through the softmax. (candle-nn's fused
    /// `softmax_last_dim` has no backward pass and silently cut this gradient: the
    /// distribution head of the first default model never left its initialisation.)
    #[test]
    fn kld_gradient_reaches_the_logits_through_the_softmax() {
        let dev = Device::Cpu;
        let logits = Var::from_slice(&[0.5f32, -0.2, 0.1, 0.0, 0.3, -0.4, 0.2], (1, 7), &dev).unwrap();
        let p = candle_nn::ops::softmax(logits.as_tensor(), D::Minus1).unwrap();
        let target = Tensor::from_slice(&[0.0f32, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0], (1, 7), &dev).unwrap();
        let ne = Tensor::from_slice(&[-(2f32.ln())], 1, &dev).unwrap();
        let grads = kld_soft(&target, &ne, &p).unwrap().backward().unwrap();
        let g = grads.get(logits.as_tensor()).expect("gradient reaches the logits").to_vec2::<f32>().unwrap();
        // d KLD / d logit = p − t.
        let pv = p.to_vec2::<f32>().unwrap();
        let t = target.to_vec2::<f32>().unwrap();
        for j in 0..7 {
            assert!((g[0][j] - (pv[0][j] - t[0][j])).abs() < 1e-5, "{g:?}");
        }
    }
}
