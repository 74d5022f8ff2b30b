//! GELU, tanh approximation (GPT-2): `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.

use crate::scalar::Real;
use rayon::prelude::*;

const S: f64 = 0.797_884_560_802_865_4; // √(2/π)
const K: f64 = 0.044715;

/// `out[i] = gelu(inp[i])`.
pub fn gelu_forward<T: Real>(out: &mut [T], inp: &[T]) {
    out.par_iter_mut().zip(inp.par_iter()).for_each(|(y, &x)| {
        let u = T::c(S) * (x + T::c(K) * x * x * x);
        *y = T::c(0.5) * x * (T::one() + u.tanh());
    });
}

/// `dinp += dout · gelu'(inp)`.
pub fn gelu_backward<T: Real>(dinp: &mut [T], inp: &[T], dout: &[T]) {
    dinp.par_iter_mut()
        .zip(inp.par_iter().zip(dout.par_iter()))
        .for_each(|(dx, (&x, &dy))| {
            let u = T::c(S) * (x + T::c(K) * x * x * x);
            let th = u.tanh();
            let sech2 = T::one() - th * th;
            let g = T::c(0.5) * (T::one() + th)
                + T::c(0.5) * x * sech2 * T::c(S) * (T::one() + T::c(3.0 * K) * x * x);
            *dx += g * dy;
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::{check_grads, rand_vec};

    #[test]
    fn gelu_gradients() {
        let mut x = rand_vec::<f64>(40, 11);
        x.iter_mut().for_each(|v| *v *= 4.0);
        check_grads(
            &[x],
            40,
            1e-7,
            |x, o| gelu_forward(o, &x[0]),
            |x, d, g| gelu_backward(&mut g[0], &x[0], d),
        );
    }
}
