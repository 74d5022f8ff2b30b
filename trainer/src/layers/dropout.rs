//! Inverted dropout: keep each element with probability `1 - p` and scale it by
//! `1/(1 - p)`. The mask (0 or the scale) is stored for the backward and drawn from a
//! seed derived from (run seed, step, site), so a resumed run draws the same masks.

use super::CHUNK;
use crate::rng::Rng;
use crate::scalar::Real;
use rayon::prelude::*;

/// Fills `mask` and applies it in place: `x[i] *= mask[i]`.
pub fn dropout_forward<T: Real>(x: &mut [T], mask: &mut [T], p: f64, seed: u64) {
    let scale = T::c(1.0 / (1.0 - p));
    // Chunks get their own streams so the mask does not depend on the thread count
    // (4096 elements per stream: part of the mask's definition, kept across versions).
    const STREAM: usize = 4096;
    mask.par_chunks_mut(STREAM).enumerate().for_each(|(ci, m)| {
        let mut r = Rng::new(seed ^ (ci as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for v in m.iter_mut() {
            *v = if r.uniform() < p { T::zero() } else { scale };
        }
    });
    dropout_backward(x, mask);
}

/// `dx *= mask` in place (dropout is its own transpose).
pub fn dropout_backward<T: Real>(dx: &mut [T], mask: &[T]) {
    dx.par_chunks_mut(CHUNK)
        .zip(mask.par_chunks(CHUNK))
        .for_each(|(x, m)| {
            for (v, &m) in x.iter_mut().zip(m) {
                *v *= m;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::{check_grads, rand_vec};

    #[test]
    fn dropout_keeps_expected_fraction_and_gradient() {
        let n = 20_000;
        let mut x = vec![1.0f64; n];
        let mut m = vec![0.0; n];
        dropout_forward(&mut x, &mut m, 0.25, 7);
        let kept = m.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
        assert!((kept - 0.75).abs() < 0.02, "kept {kept}");
        let mean = x.iter().sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.03, "mean {mean}");
        // With a fixed seed the op is linear in x: its gradient is the mask.
        let inp = vec![rand_vec::<f64>(50, 3)];
        check_grads(
            &inp,
            50,
            1e-8,
            |x, o| {
                o.copy_from_slice(&x[0]);
                let mut m = vec![0.0; 50];
                dropout_forward(o, &mut m, 0.5, 9);
            },
            |_, d, g| {
                let mut m = vec![0.0; 50];
                let mut tmp = vec![0.0; 50];
                dropout_forward(&mut tmp, &mut m, 0.5, 9);
                g[0].copy_from_slice(d);
                dropout_backward(&mut g[0], &m);
            },
        );
    }
}
