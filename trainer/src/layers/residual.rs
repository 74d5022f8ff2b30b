//! Residual connection `out = a + b`; its backward routes `dout` to both branches.

use super::CHUNK;
use crate::scalar::Real;
use rayon::prelude::*;

/// `out[i] = a[i] + b[i]`.
pub fn residual_forward<T: Real>(out: &mut [T], a: &[T], b: &[T]) {
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(y, (a, b))| {
            for (y, (&x, &z)) in y.iter_mut().zip(a.iter().zip(b)) {
                *y = x + z;
            }
        });
}

/// `da += dout`, `db += dout`.
pub fn residual_backward<T: Real>(da: &mut [T], db: &mut [T], dout: &[T]) {
    da.par_iter_mut()
        .zip(db.par_iter_mut())
        .zip(dout.par_iter())
        .for_each(|((x, z), &d)| {
            *x += d;
            *z += d;
        });
}

/// `acc += x` (the residual backward when one branch is the gradient buffer itself).
pub fn add_inplace<T: Real>(acc: &mut [T], x: &[T]) {
    acc.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(a, x)| {
            for (a, &b) in a.iter_mut().zip(x) {
                *a += b;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::{check_grads, rand_vec};

    #[test]
    fn residual_gradients() {
        let x = vec![rand_vec::<f64>(12, 15), rand_vec(12, 16)];
        check_grads(
            &x,
            12,
            1e-8,
            |x, o| residual_forward(o, &x[0], &x[1]),
            |_, d, g| {
                let (g0, g1) = g.split_at_mut(1);
                residual_backward(&mut g0[0], &mut g1[0], d)
            },
        );
    }
}
