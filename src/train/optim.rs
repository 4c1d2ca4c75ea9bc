//! Adam (optionally AdamW) applied in place on the parameter storage.
//!
//! candle's `AdamW` builds a dozen temporary tensors per parameter per step and copies the
//! result back with `Var::set`; on the 6,373×512 input layers that dominates a training
//! step on 2 cores (measured ≈ 0.34 s vs ≈ 0.24 s per VAE-ER step with this kernel). Here
//! each update is one pass over param, grad and the two moment buffers.

use std::sync::Mutex;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp2, Layout, Result, Var};

/// Hyper-parameters of Adam.
#[derive(Debug, Clone, Copy)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay (AdamW); 0 is plain Adam, as in the paper.
    pub weight_decay: f64,
}

impl AdamConfig {
    pub fn adam(lr: f64) -> AdamConfig {
        // Keras' defaults, the paper's framework.
        AdamConfig { lr, beta1: 0.9, beta2: 0.999, eps: 1e-7, weight_decay: 0.0 }
    }
}

/// Adam over a fixed list of variables.
pub struct Adam {
    vars: Vec<Var>,
    moments: Vec<Mutex<(Vec<f32>, Vec<f32>)>>,
    cfg: AdamConfig,
    step: u64,
}

struct Kernel<'a> {
    moments: &'a Mutex<(Vec<f32>, Vec<f32>)>,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    decay: f32,
    bc1: f32,
    bc2: f32,
}

impl InplaceOp2 for Kernel<'_> {
    fn name(&self) -> &'static str {
        "emogate-adam"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let (CpuStorage::F32(param), CpuStorage::F32(grad)) = (s1, s2) else {
            candle_core::bail!("emogate-adam: only f32 parameters are supported")
        };
        let (Some((p0, p1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("emogate-adam: parameter and gradient must be contiguous")
        };
        let (param, grad) = (&mut param[p0..p1], &grad[g0..g1]);
        let mut guard = self.moments.lock().expect("optimizer state lock");
        let (m, v) = &mut *guard;
        if m.len() != param.len() || grad.len() != param.len() {
            candle_core::bail!("emogate-adam: state/gradient size does not match the parameter")
        }
        let (b1, b2) = (self.beta1, self.beta2);
        for i in 0..param.len() {
            let g = grad[i];
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            let update = (m[i] / self.bc1) / ((v[i] / self.bc2).sqrt() + self.eps);
            param[i] -= self.lr * (update + self.decay * param[i]);
        }
        Ok(())
    }
}

impl Adam {
    pub fn new(vars: Vec<Var>, cfg: AdamConfig) -> Adam {
        let moments =
            vars.iter().map(|v| Mutex::new((vec![0.0; v.elem_count()], vec![0.0; v.elem_count()]))).collect();
        Adam { vars, moments, cfg, step: 0 }
    }

    /// One update from the gradients of the last backward pass; variables without a
    /// gradient (not on the loss's path) are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let c = self.cfg;
        for (var, moments) in self.vars.iter().zip(&self.moments) {
            let Some(grad) = grads.get(var.as_tensor()) else { continue };
            let grad = grad.contiguous()?;
            let kernel = Kernel {
                moments,
                lr: c.lr as f32,
                beta1: c.beta1 as f32,
                beta2: c.beta2 as f32,
                eps: c.eps as f32,
                decay: c.weight_decay as f32,
                bc1: 1.0 - (c.beta1 as f32).powi(t),
                bc2: 1.0 - (c.beta2 as f32).powi(t),
            };
            var.as_tensor().inplace_op2(&grad, &kernel)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn first_step_moves_each_weight_by_lr_against_its_gradient() {
        let w = Var::from_slice(&[1.0f32, -2.0, 3.0], 3, &Device::Cpu).unwrap();
        let loss = (w.as_tensor() * &Tensor::new(&[2.0f32, -1.0, 0.5], &Device::Cpu).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let mut opt = Adam::new(vec![w.clone()], AdamConfig::adam(0.1));
        opt.step(&grads).unwrap();
        // Bias-corrected first step: m̂/√v̂ = sign(g), so w ← w − lr·sign(g).
        let got = w.as_tensor().to_vec1::<f32>().unwrap();
        for (g, w) in got.iter().zip([0.9f32, -1.9, 2.9]) {
            assert!((g - w).abs() < 1e-5, "{got:?}");
        }
    }

    #[test]
    fn minimises_a_quadratic() {
        let w = Var::from_slice(&[5.0f32, -3.0], 2, &Device::Cpu).unwrap();
        let mut opt = Adam::new(vec![w.clone()], AdamConfig::adam(0.1));
        for _ in 0..300 {
            let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        let got = w.as_tensor().to_vec1::<f32>().unwrap();
        assert!(got.iter().all(|v| v.abs() < 0.05), "{got:?}");
    }
}
