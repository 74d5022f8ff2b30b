//! SwiGLU gate: `out = silu(gate) ⊙ up`, `silu(g) = g·σ(g)` (LLaMA's MLP; the two
//! projections and the down projection are ordinary linear layers).

use super::CHUNK;
use crate::scalar::Real;
use rayon::prelude::*;

/// `out[i] = silu(gate[i]) · up[i]`.
pub fn swiglu_forward<T: Real>(out: &mut [T], gate: &[T], up: &[T]) {
    out.par_chunks_mut(CHUNK)
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
        .for_each(|(y, (g, u))| {
            for (y, (&g, &u)) in y.iter_mut().zip(g.iter().zip(u)) {
                *y = g * g.sigmoid() * u;
            }
        });
}

/// `dgate += dout · up · silu'(gate)`, `dup += dout · silu(gate)`.
pub fn swiglu_backward<T: Real>(dgate: &mut [T], dup: &mut [T], dout: &[T], gate: &[T], up: &[T]) {
    dgate
        .par_chunks_mut(CHUNK)
        .zip(dup.par_chunks_mut(CHUNK))
        .zip(
            dout.par_chunks(CHUNK)
                .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK))),
        )
        .for_each(|((dg, du), (dy, (g, u)))| {
            let it = dg.iter_mut().zip(du.iter_mut());
            for ((dg, du), (&dy, (&g, &u))) in it.zip(dy.iter().zip(g.iter().zip(u))) {
                // s = σ(g), 1 - s = e·s with e = e^(-g) (no cancellation).
                let e = (-g).exp_fast();
                let s = T::one() / (T::one() + e);
                *dg += dy * u * s * (T::one() + g * (e * s));
                *du += dy * g * s;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::{check_grads, rand_vec};

    #[test]
    fn swiglu_gradients() {
        let x = vec![rand_vec::<f64>(25, 13), rand_vec(25, 14)];
        check_grads(
            &x,
            25,
            1e-7,
            |x, o| swiglu_forward(o, &x[0], &x[1]),
            |x, d, g| {
                let (g0, g1) = g.split_at_mut(1);
                swiglu_backward(&mut g0[0], &mut g1[0], d, &x[0], &x[1])
            },
        );
    }
}
