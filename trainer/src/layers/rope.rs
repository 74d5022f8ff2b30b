//! Rotary position embedding on adjacent pairs (llama2.c / GGUF convention): within each
//! head, `(x[2i], x[2i+1])` at position t is rotated by `t·base^(-2i/head_dim)`.
//! Applied in place to q `[B, T, H·hd]` and k `[B, T, KVH·hd]`; the backward rotates
//! the gradient by the opposite angle (a rotation's transpose is its inverse).
//! With linear position interpolation (`llm.rope_scale`) the position is `t / scale`.

use crate::scalar::Real;
use rayon::prelude::*;

/// RoPE's settings: the frequency base and the linear position-interpolation scale
/// (angle `(t / scale)·base^(-2i/head_dim)`; scale 1 is plain RoPE).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    /// Frequency base (`llm.rope_base`).
    pub base: f64,
    /// Positions are divided by it (`llm.rope_scale`, 1 when absent).
    pub scale: f64,
}

impl Rope {
    /// Plain RoPE of `base`.
    pub fn plain(base: f64) -> Self {
        Rope { base, scale: 1.0 }
    }

    /// The settings of a model's options.
    pub fn of(o: &llm_format::ModelOptions) -> Self {
        Rope {
            base: o.rope_base as f64,
            scale: o.arch.rope_scale.map_or(1.0, f64::from),
        }
    }

    /// The angle of pair `i` of a `hd`-wide head at position `t`.
    pub fn angle(self, t: usize, i: usize, hd: usize) -> f64 {
        (t as f64 / self.scale) * self.base.powf(-((2 * i) as f64) / hd as f64)
    }
}

/// Rotates `x: [B, T, heads·hd]` in place by `+angle` (forward) or `-angle` (backward).
pub fn rope_apply<T: Real>(
    x: &mut [T],
    seq: usize,
    heads: usize,
    hd: usize,
    rope: Rope,
    inverse: bool,
) {
    let row = heads * hd;
    let sign = if inverse { -1.0 } else { 1.0 };
    x.par_chunks_mut(row).enumerate().for_each(|(r, v)| {
        let t = r % seq;
        for h in 0..heads {
            let head = &mut v[h * hd..(h + 1) * hd];
            for i in 0..hd / 2 {
                let ang = rope.angle(t, i, hd);
                let (s, c) = (T::c(sign * ang.sin()), T::c(ang.cos()));
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = a * c - b * s;
                head[2 * i + 1] = a * s + b * c;
            }
        }
    });
}

/// Forward: rotate q or k in place.
pub fn rope_forward<T: Real>(x: &mut [T], seq: usize, heads: usize, hd: usize, rope: Rope) {
    rope_apply(x, seq, heads, hd, rope, false)
}

/// Backward: `dx_in = Rᵀ · dx_out`, in place on the gradient buffer.
pub fn rope_backward<T: Real>(dx: &mut [T], seq: usize, heads: usize, hd: usize, rope: Rope) {
    rope_apply(dx, seq, heads, hd, rope, true)
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
        for rope in [
            Rope::plain(10000.0),
            Rope {
                base: 100.0,
                scale: 3.0,
            },
        ] {
            check_grads(
                &x,
                n,
                1e-8,
                |x, o| {
                    o.copy_from_slice(&x[0]);
                    rope_forward(o, t, h, hd, rope);
                },
                |_, d, g| {
                    g[0].copy_from_slice(d);
                    rope_backward(&mut g[0], t, h, hd, rope);
                },
            );
        }
        // Position 2, pair i=1 of head 0: angle 2·10000^(-2/4) = 0.02; with scale 4
        // (position interpolation) the angle of position 2 is that of position 0.5.
        for (scale, ang) in [(1.0, 0.02f64), (4.0, 0.005)] {
            let mut v = vec![0.0f64; t * h * hd];
            v[2 * h * hd + 2] = 1.0;
            rope_forward(
                &mut v,
                t,
                h,
                hd,
                Rope {
                    base: 10000.0,
                    scale,
                },
            );
            assert!((v[2 * h * hd + 2] - ang.cos()).abs() < 1e-12);
            assert!((v[2 * h * hd + 3] - ang.sin()).abs() < 1e-12);
        }
    }
}
