//! ReLU: `max(0, x)`.

use crate::scalar::Real;
use rayon::prelude::*;

/// `out[i] = max(0, inp[i])`.
pub fn relu_forward<T: Real>(out: &mut [T], inp: &[T]) {
    out.par_iter_mut()
        .zip(inp.par_iter())
        .for_each(|(y, &x)| *y = if x > T::zero() { x } else { T::zero() });
}

/// `dinp += dout · [inp > 0]`.
pub fn relu_backward<T: Real>(dinp: &mut [T], inp: &[T], dout: &[T]) {
    dinp.par_iter_mut()
        .zip(inp.par_iter().zip(dout.par_iter()))
        .for_each(|(dx, (&x, &dy))| {
            if x > T::zero() {
                *dx += dy
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::{check_grads, rand_vec};

    #[test]
    fn relu_gradients() {
        // Random inputs keep away from the kink at 0 by far more than the FD step.
        let x = rand_vec::<f64>(30, 12);
        assert!(x.iter().all(|v| v.abs() > 1e-4));
        check_grads(
            &[x],
            30,
            1e-7,
            |x, o| relu_forward(o, &x[0]),
            |x, d, g| relu_backward(&mut g[0], &x[0], d),
        );
    }
}
