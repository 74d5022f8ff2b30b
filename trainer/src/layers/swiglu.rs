//! SwiGLU gate: `out = silu(gate) ⊙ up`, `silu(g) = g·σ(g)` (LLaMA's MLP; the two
//! projections and the down projection are ordinary linear layers).

use crate::scalar::Real;
use rayon::prelude::*;

fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// `out[i] = silu(gate[i]) · up[i]`.
pub fn swiglu_forward<T: Real>(out: &mut [T], gate: &[T], up: &[T]) {
    out.par_iter_mut()
        .zip(gate.par_iter().zip(up.par_iter()))
        .for_each(|(y, (&g, &u))| *y = g * sigmoid(g) * u);
}

/// `dgate += dout · up · silu'(gate)`, `dup += dout · silu(gate)`.
pub fn swiglu_backward<T: Real>(dgate: &mut [T], dup: &mut [T], dout: &[T], gate: &[T], up: &[T]) {
    dgate
        .par_iter_mut()
        .zip(dup.par_iter_mut())
        .zip(dout.par_iter().zip(gate.par_iter().zip(up.par_iter())))
        .for_each(|((dg, du), (&dy, (&g, &u)))| {
            let s = sigmoid(g);
            *dg += dy * u * s * (T::one() + g * (T::one() - s));
            *du += dy * g * s;
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
