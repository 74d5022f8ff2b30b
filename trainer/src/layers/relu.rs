//! ReLU: `max(0, x)`.

use super::CHUNK;
use crate::scalar::Real;
use rayon::prelude::*;

/// `out[i] = max(0, inp[i])`.
pub fn relu_forward<T: Real>(out: &mut [T], inp: &[T]) {
    out.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK))
        .for_each(|(y, x)| {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = if x > T::zero() { x } else { T::zero() };
            }
        });
}

/// `dinp += dout · [inp > 0]`.
pub fn relu_backward<T: Real>(dinp: &mut [T], inp: &[T], dout: &[T]) {
    dinp.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK).zip(dout.par_chunks(CHUNK)))
        .for_each(|(dx, (x, dy))| {
            for (dx, (&x, &dy)) in dx.iter_mut().zip(x.iter().zip(dy)) {
                *dx += if x > T::zero() { dy } else { T::zero() };
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
