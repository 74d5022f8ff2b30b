//! Fused softmax + cross-entropy over the vocabulary. The forward turns logits into
//! probabilities in place and returns the per-row loss `-log p[target]`; the backward
//! turns those probabilities into `dlogits = dloss · (p - onehot(target))` in place, so
//! the `[N, V]` buffer is allocated once (llm.c's fused classifier).

use crate::scalar::Real;
use rayon::prelude::*;

/// `logits: [N, V]` → probabilities in place; `losses[n] = -log p[n, targets[n]]`.
pub fn softmax_ce_forward<T: Real>(logits: &mut [T], losses: &mut [T], targets: &[u32], v: usize) {
    logits
        .par_chunks_exact_mut(v)
        .zip(losses.par_iter_mut().zip(targets.par_iter()))
        .for_each(|(row, (loss, &tg))| {
            let maxv = row.iter().copied().fold(T::neg_infinity(), T::max);
            let mut sum = T::zero();
            for x in row.iter_mut() {
                *x = (*x - maxv).exp();
                sum += *x;
            }
            let inv = T::one() / sum;
            row.iter_mut().for_each(|x| *x *= inv);
            // ln of a subnormal probability is finite; a 0 gives +inf loss, reported upstream.
            *loss = -row[tg as usize].ln();
        });
}

/// `probs: [N, V]` → `dlogits` in place; `dloss[n]` is the weight of row n in the loss
/// (`1/(B·T·grad_accum)` for a mean).
pub fn softmax_ce_backward<T: Real>(probs: &mut [T], dloss: &[T], targets: &[u32], v: usize) {
    probs
        .par_chunks_exact_mut(v)
        .zip(dloss.par_iter().zip(targets.par_iter()))
        .for_each(|(row, (&dl, &tg))| {
            row.iter_mut().for_each(|x| *x *= dl);
            row[tg as usize] = row[tg as usize] - dl;
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::{check_grads, rand_vec};

    #[test]
    fn softmax_ce_gradients() {
        let (n, v) = (4, 7);
        let targets = [3u32, 0, 6, 3];
        let mut x = rand_vec::<f64>(n * v, 41);
        x.iter_mut().for_each(|a| *a *= 3.0);
        check_grads(
            &[x],
            n,
            1e-7,
            |x, o| {
                let mut l = x[0].clone();
                softmax_ce_forward(&mut l, o, &targets, v);
            },
            |x, d, g| {
                let mut p = x[0].clone();
                let mut losses = vec![0.0; n];
                softmax_ce_forward(&mut p, &mut losses, &targets, v);
                softmax_ce_backward(&mut p, d, &targets, v);
                g[0].copy_from_slice(&p);
            },
        );
    }

    #[test]
    fn uniform_logits_give_log_v() {
        let mut l = vec![0.5f32; 3 * 10];
        let mut losses = vec![0.0f32; 3];
        softmax_ce_forward(&mut l, &mut losses, &[1, 2, 9], 10);
        for x in losses {
            assert!((x - 10f32.ln()).abs() < 1e-6);
        }
    }
}
