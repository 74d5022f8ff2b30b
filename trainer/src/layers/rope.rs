//! Rotary position embedding on adjacent pairs (llama2.c / GGUF convention): within each
//! head, `(x[2i], x[2i+1])` at position t is rotated by `t·base^(-2i/head_dim)`.
//! Applied in place to q `[B, T, H·hd]` and k `[B, T, KVH·hd]`; the backward rotates
//! the gradient by the opposite angle (a rotation's transpose is its inverse).

use crate::scalar::Real;
use rayon::prelude::*;

/// Rotates `x: [B, T, heads·hd]` in place by `+angle` (forward) or `-angle` (backward).
pub fn rope_apply<T: Real>(
    x: &mut [T],
    seq: usize,
    heads: usize,
    hd: usize,
    base: f64,
    inverse: bool,
) {
    let row = heads * hd;
    let sign = if inverse { -1.0 } else { 1.0 };
    x.par_chunks_mut(row).enumerate().for_each(|(r, v)| {
        let t = (r % seq) as f64;
        for h in 0..heads {
            let head = &mut v[h * hd..(h + 1) * hd];
            for i in 0..hd / 2 {
                let ang = t * base.powf(-((2 * i) as f64) / hd as f64);
                let (s, c) = (T::c(sign * ang.sin()), T::c(ang.cos()));
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = a * c - b * s;
                head[2 * i + 1] = a * s + b * c;
            }
        }
    });
}

/// Forward: rotate q or k in place.
pub fn rope_forward<T: Real>(x: &mut [T], seq: usize, heads: usize, hd: usize, base: f64) {
    rope_apply(x, seq, heads, hd, base, false)
}

/// Backward: `dx_in = Rᵀ · dx_out`, in place on the gradient buffer.
pub fn rope_backward<T: Real>(dx: &mut [T], seq: usize, heads: usize, hd: usize, base: f64) {
    rope_apply(dx, seq, heads, hd, base, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::{check_grads, rand_vec};

    #[test]
    fn rope_gradients_and_convention() {
        let (b, t, h, hd) = (2, 5, 3, 4);
        let n = b * t * h * hd;
        let x = vec![rand_vec::<f64>(n, 21)];
        check_grads(
            &x,
            n,
            1e-8,
            |x, o| {
                o.copy_from_slice(&x[0]);
                rope_forward(o, t, h, hd, 10000.0);
            },
            |_, d, g| {
                g[0].copy_from_slice(d);
                rope_backward(&mut g[0], t, h, hd, 10000.0);
            },
        );
        // Position 2, pair i=1 of head 0: angle 2·10000^(-2/4) = 0.02.
        let mut v = vec![0.0f64; t * h * hd];
        v[2 * h * hd + 2] = 1.0;
        rope_forward(&mut v, t, h, hd, 10000.0);
        assert!((v[2 * h * hd + 2] - 0.02f64.cos()).abs() < 1e-12);
        assert!((v[2 * h * hd + 3] - 0.02f64.sin()).abs() < 1e-12);
    }
}
