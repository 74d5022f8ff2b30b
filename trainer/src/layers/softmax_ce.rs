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
            let maxv = row_max(row);
            let sum = exp_shift_sum(row, maxv);
            let inv = T::one() / sum;
            row.iter_mut().for_each(|x| *x *= inv);
            // exp_fast never returns 0, so the loss is finite unless a logit was NaN
            // or inf (then NaN, which stops the run upstream).
            *loss = -row[tg as usize].ln();
        });
}

/// `x ← e^(x - shift)` over the row; returns the sum. Eight fixed lanes: the loop
/// vectorises, and the order of the additions is the same on every run.
pub fn exp_shift_sum<T: Real>(row: &mut [T], shift: T) -> T {
    let mut acc = [T::zero(); 8];
    let mut it = row.chunks_exact_mut(8);
    for w in &mut it {
        for (a, x) in acc.iter_mut().zip(w.iter_mut()) {
            *x = (*x - shift).exp_fast();
            *a += *x;
        }
    }
    for (a, x) in acc.iter_mut().zip(it.into_remainder()) {
        *x = (*x - shift).exp_fast();
        *a += *x;
    }
    acc.iter().copied().sum()
}

/// The largest element; NaN when there is one (so that a NaN logit reaches the loss).
pub fn row_max<T: Real>(row: &[T]) -> T {
    let mut acc = [T::neg_infinity(); 8];
    let mut it = row.chunks_exact(8);
    for w in &mut it {
        for (a, &x) in acc.iter_mut().zip(w) {
            *a = if x > *a || x.is_nan() { x } else { *a };
        }
    }
    for (a, &x) in acc.iter_mut().zip(it.remainder()) {
        *a = if x > *a || x.is_nan() { x } else { *a };
    }
    acc.iter().copied().fold(
        T::neg_infinity(),
        |m, x| if x > m || x.is_nan() { x } else { m },
    )
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
    fn f32_softmax_matches_f64_reference() {
        // Odd row width (not a multiple of the 8 lanes), wide logits.
        let (n, v) = (5, 1003);
        let mut x = rand_vec::<f32>(n * v, 42);
        x.iter_mut().for_each(|a| *a *= 12.0);
        let targets = [0u32, 1002, 500, 7, 999];
        let mut p = x.clone();
        let mut losses = vec![0f32; n];
        softmax_ce_forward(&mut p, &mut losses, &targets, v);
        for r in 0..n {
            let row: Vec<f64> = x[r * v..(r + 1) * v].iter().map(|&a| a as f64).collect();
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = row.iter().map(|a| (a - m).exp()).sum();
            for j in 0..v {
                let want = (row[j] - m).exp() / z;
                let got = p[r * v + j] as f64;
                // f32 rounding of `x - max` (up to ~25 here) alone costs ~3e-6.
                assert!(
                    (got - want).abs() <= 5e-6 * want + 1e-30,
                    "[{r},{j}] {got} {want}"
                );
            }
            let want_loss = -((row[targets[r] as usize] - m).exp() / z).ln();
            assert!((losses[r] as f64 - want_loss).abs() < 1e-5 * (1.0 + want_loss));
        }
    }

    #[test]
    fn nan_logit_gives_nan_loss() {
        let mut l = vec![0.25f32; 2 * 9];
        l[13] = f32::NAN;
        let mut losses = vec![0.0f32; 2];
        softmax_ce_forward(&mut l, &mut losses, &[1, 2], 9);
        assert!(losses[0].is_finite() && losses[1].is_nan());
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
