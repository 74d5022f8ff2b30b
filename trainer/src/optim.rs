//! AdamW with PyTorch's semantics (decoupled weight decay applied as `p -= lr·wd·p`
//! before the Adam step, bias-corrected moments, `eps` added to `√v̂`), linear warm-up
//! then cosine decay to `min_lr`, and clipping by the global gradient norm.
//! Gradient accumulation is the caller's scaling of the loss by `1/grad_accum`.

use crate::backend::Backend;
use crate::scalar::Real;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Hyper-parameters of one AdamW update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamParams {
    /// Learning rate of this step.
    pub lr: f64,
    /// First-moment decay (PyTorch default 0.9).
    pub beta1: f64,
    /// Second-moment decay (PyTorch default 0.999).
    pub beta2: f64,
    /// Denominator epsilon (PyTorch default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay for this tensor (0 for norms, biases, optionally embeddings).
    pub weight_decay: f64,
    /// 1-based step count, for the bias corrections.
    pub step: u64,
}

impl Default for AdamParams {
    /// PyTorch's `torch.optim.AdamW` defaults (lr 1e-3, betas (0.9, 0.999), eps 1e-8, wd 0.01).
    fn default() -> Self {
        AdamParams {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            step: 1,
        }
    }
}

/// The CPU AdamW kernel over one contiguous range (moments in the parameters' type).
pub fn adamw_update<T: Real>(
    params: &mut [T],
    grads: &[T],
    m: &mut [T],
    v: &mut [T],
    hp: &AdamParams,
) {
    let t = hp.step.max(1) as i32;
    let bc1 = 1.0 - hp.beta1.powi(t);
    let bc2 = 1.0 - hp.beta2.powi(t);
    let (b1, b2) = (T::c(hp.beta1), T::c(hp.beta2));
    let (lr, eps, decay) = (hp.lr, hp.eps, T::c(1.0 - hp.lr * hp.weight_decay));
    let (inv_bc1, inv_bc2) = (1.0 / bc1, 1.0 / bc2);
    let ch = crate::layers::CHUNK;
    params
        .par_chunks_mut(ch)
        .zip(grads.par_chunks(ch))
        .zip(m.par_chunks_mut(ch).zip(v.par_chunks_mut(ch)))
        .for_each(|((p, g), (m, v))| {
            let it = p.iter_mut().zip(g).zip(m.iter_mut().zip(v.iter_mut()));
            for ((p, &g), (mm, vv)) in it {
                *mm = b1 * *mm + (T::one() - b1) * g;
                *vv = b2 * *vv + (T::one() - b2) * g * g;
                let mhat = mm.f64() * inv_bc1;
                let vhat = vv.f64() * inv_bc2;
                *p = *p * decay - T::c(lr * mhat / (vhat.sqrt() + eps));
            }
        });
}

/// The learning-rate schedule: linear warm-up over `warmup` steps to `lr`, then cosine
/// decay to `min_lr` at `max_steps` (0-based `step`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Peak rate.
    pub lr: f64,
    /// Final rate.
    pub min_lr: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// Total steps.
    pub max_steps: usize,
}

impl Schedule {
    /// The rate at optimizer step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        if step >= self.max_steps || self.max_steps <= self.warmup {
            return self.min_lr;
        }
        let ratio = (step - self.warmup) as f64 / (self.max_steps - self.warmup) as f64;
        let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos());
        self.min_lr + coeff * (self.lr - self.min_lr)
    }
}

/// Optimizer state: first and second moments in the parameter table's layout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamState<T> {
    /// First moments, one per parameter.
    pub m: Vec<T>,
    /// Second moments, one per parameter.
    pub v: Vec<T>,
    /// Updates done so far.
    pub step: u64,
}

impl<T: Real> AdamState<T> {
    /// Zeroed moments for `n` parameters.
    pub fn new(n: usize) -> Self {
        AdamState {
            m: vec![T::zero(); n],
            v: vec![T::zero(); n],
            step: 0,
        }
    }

    /// One update over every range `(offset, len, decays)` of the flat buffers.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        be: &dyn Backend<T>,
        params: &mut [T],
        grads: &[T],
        ranges: &[(usize, usize, bool)],
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    ) {
        self.step += 1;
        for &(off, len, decays) in ranges {
            let hp = AdamParams {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay: if decays { weight_decay } else { 0.0 },
                step: self.step,
            };
            let r = off..off + len;
            be.adamw(
                &mut params[r.clone()],
                &grads[r.clone()],
                &mut self.m[r.clone()],
                &mut self.v[r],
                &hp,
            );
        }
    }
}

/// Global L2 norm of `grads`; when `clip > 0` and the norm exceeds it, scales the
/// gradients down to norm `clip`. Returns the norm before clipping.
pub fn clip_grad_norm<T: Real>(be: &dyn Backend<T>, grads: &mut [T], clip: f64) -> f64 {
    let norm = be.sum_squares(grads).sqrt();
    if clip > 0.0 && norm > clip {
        be.scale(grads, clip / (norm + 1e-6));
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use crate::layers::testutil::rand_vec;

    #[test]
    fn adamw_matches_pytorch_formula() {
        // Three steps against a scalar transcription of torch.optim.AdamW.
        let n = 37;
        let mut p = rand_vec::<f64>(n, 1);
        let mut reference = p.clone();
        let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
        let (mut rm, mut rv) = (vec![0.0; n], vec![0.0; n]);
        for step in 1..=3u64 {
            let g = rand_vec::<f64>(n, 10 + step);
            let hp = AdamParams {
                lr: 0.01,
                weight_decay: 0.1,
                step,
                ..Default::default()
            };
            adamw_update(&mut p, &g, &mut m, &mut v, &hp);
            for i in 0..n {
                reference[i] *= 1.0 - 0.01 * 0.1;
                rm[i] = 0.9 * rm[i] + 0.1 * g[i];
                rv[i] = 0.999 * rv[i] + 0.001 * g[i] * g[i];
                let mh = rm[i] / (1.0 - 0.9f64.powi(step as i32));
                let vh = rv[i] / (1.0 - 0.999f64.powi(step as i32));
                reference[i] -= 0.01 * mh / (vh.sqrt() + 1e-8);
            }
        }
        for i in 0..n {
            assert!((p[i] - reference[i]).abs() < 1e-14);
        }
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        let s = Schedule {
            lr: 1e-3,
            min_lr: 1e-4,
            warmup: 10,
            max_steps: 110,
        };
        assert!((s.lr_at(0) - 1e-4).abs() < 1e-12);
        assert!((s.lr_at(9) - 1e-3).abs() < 1e-12);
        assert!((s.lr_at(10) - 1e-3).abs() < 1e-12);
        assert!((s.lr_at(60) - 5.5e-4).abs() < 1e-12);
        assert!((s.lr_at(110) - 1e-4).abs() < 1e-12);
        assert!(s.lr_at(30) > s.lr_at(31));
    }

    #[test]
    fn clipping_scales_to_the_limit() {
        let mut g = rand_vec::<f32>(1000, 5);
        let norm = clip_grad_norm(&Cpu, &mut g, 1.0);
        let want = rand_vec::<f32>(1000, 5)
            .iter()
            .map(|x| (*x as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((norm - want).abs() < 1e-6 * want);
        let after = g.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        assert!((after - 1.0).abs() < 1e-4);
        let mut small = vec![0.01f32, -0.02];
        clip_grad_norm(&Cpu, &mut small, 1.0);
        assert_eq!(small, vec![0.01, -0.02]);
    }
}
