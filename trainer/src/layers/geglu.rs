//! GeGLU gate: `out = gelu(gate) ⊙ up`, GELU the tanh approximation (Gemma's MLP, the
//! runtime's `ops::geglu` and the reference decoder's); the element-wise GELU and its
//! derivative are [`super::gelu`]'s. The projections are ordinary linear layers.

use super::gelu::{gelu, gelu_grad};
use super::CHUNK;
use crate::scalar::Real;
use rayon::prelude::*;

/// `out[i] = gelu(gate[i]) · up[i]`.
pub fn geglu_forward<T: Real>(out: &mut [T], gate: &[T], up: &[T]) {
    out.par_chunks_mut(CHUNK)
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
        .for_each(|(y, (g, u))| {
            for (y, (&g, &u)) in y.iter_mut().zip(g.iter().zip(u)) {
                *y = gelu(g) * u;
            }
        });
}

/// `dgate += dout · up · gelu'(gate)`, `dup += dout · gelu(gate)`.
pub fn geglu_backward<T: Real>(dgate: &mut [T], dup: &mut [T], dout: &[T], gate: &[T], up: &[T]) {
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
                *dg += dy * u * gelu_grad(g);
                *du += dy * gelu(g);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::{check_grads, rand_vec};

    #[test]
    fn geglu_gradients() {
        // Gates over [-4, 4): both tails of the GELU and its bend near 0.
        let mut gate = rand_vec::<f64>(40, 15);
        gate.iter_mut().for_each(|v| *v *= 4.0);
        let x = vec![gate, rand_vec(40, 16)];
        check_grads(
            &x,
            40,
            1e-7,
            |x, o| geglu_forward(o, &x[0], &x[1]),
            |x, d, g| {
                let (g0, g1) = g.split_at_mut(1);
                geglu_backward(&mut g0[0], &mut g1[0], d, &x[0], &x[1])
            },
        );
    }

    #[test]
    fn geglu_matches_the_tanh_formula_in_f64() {
        // The layer against the textbook `0.5·g·(1 + tanh(√(2/π)(g + 0.044715 g³)))·u`.
        let mut gate = rand_vec::<f32>(1000, 17);
        gate.iter_mut().for_each(|v| *v *= 6.0);
        let up = rand_vec::<f32>(1000, 18);
        let mut y = vec![0f32; 1000];
        geglu_forward(&mut y, &gate, &up);
        for i in 0..1000 {
            let (g, u) = (gate[i] as f64, up[i] as f64);
            let want = 0.5
                * g
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g.powi(3))).tanh())
                * u;
            assert!(
                (y[i] as f64 - want).abs() < 1e-6 * (1e-3 + want.abs()),
                "{g} {u}"
            );
        }
    }
}
