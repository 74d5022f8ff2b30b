//! RMSNorm over the last dimension C: `out = x · rstd · w`, `rstd = 1/sqrt(mean(x²) + eps)`.
//! Forward saves `rstd` per row; gradients are `+=`.

use crate::scalar::Real;
use rayon::prelude::*;

/// Rows per task of the backward (fixed, so that its parameter sums are too).
const ROWS: usize = 32;

/// `out, inp: [N, C]`, `rstd: [N]`, `w: [C]`.
pub fn rmsnorm_forward<T: Real>(
    out: &mut [T],
    rstd: &mut [T],
    inp: &[T],
    w: &[T],
    c: usize,
    eps: f64,
) {
    out.par_chunks_exact_mut(c)
        .zip(inp.par_chunks_exact(c))
        .zip(rstd.par_iter_mut())
        .for_each(|((o, x), r)| {
            let ms = x.iter().map(|&v| v * v).sum::<T>() * T::c(1.0 / c as f64);
            let rs = T::one() / (ms + T::c(eps)).sqrt();
            for j in 0..c {
                o[j] = x[j] * rs * w[j];
            }
            *r = rs;
        });
}

/// Inverts `rmsnorm_forward`: `dinp += rstd · (dnorm - norm · mean(dnorm ⊙ norm))`.
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_backward<T: Real>(
    dinp: &mut [T],
    dw: &mut [T],
    dout: &[T],
    inp: &[T],
    w: &[T],
    rstd: &[T],
    c: usize,
) {
    // As in LayerNorm: per-task partial dw added in task order (deterministic).
    let inv_c = T::c(1.0 / c as f64);
    let rc = ROWS * c;
    let partials: Vec<Vec<T>> = dinp
        .par_chunks_mut(rc)
        .zip(dout.par_chunks(rc).zip(inp.par_chunks(rc)))
        .zip(rstd.par_chunks(ROWS))
        .map(|((dxs, (dys, xs)), rss)| {
            let mut pw = vec![T::zero(); c];
            let rows = dxs.chunks_exact_mut(c).zip(dys.chunks_exact(c));
            for ((dx, dy), (x, &rs)) in rows.zip(xs.chunks_exact(c).zip(rss)) {
                let dnm = (0..c).map(|j| dy[j] * w[j] * x[j] * rs).sum::<T>() * inv_c;
                for j in 0..c {
                    dx[j] += (dy[j] * w[j] - x[j] * rs * dnm) * rs;
                    pw[j] += dy[j] * x[j] * rs;
                }
            }
            pw
        })
        .collect();
    for pw in &partials {
        for (g, &p) in dw.iter_mut().zip(pw) {
            *g += p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::{check_grads, rand_vec};

    #[test]
    fn rmsnorm_gradients() {
        let (n, c) = (3, 10);
        let x = vec![rand_vec::<f64>(n * c, 7), rand_vec(c, 8)];
        let fwd = |x: &[Vec<f64>], out: &mut [f64]| {
            let mut r = vec![0.0; n];
            rmsnorm_forward(out, &mut r, &x[0], &x[1], c, 1e-5);
        };
        check_grads(&x, n * c, 1e-7, fwd, |x, dout, g| {
            let (mut r, mut o) = (vec![0.0; n], vec![0.0; n * c]);
            rmsnorm_forward(&mut o, &mut r, &x[0], &x[1], c, 1e-5);
            let (g0, g1) = g.split_at_mut(1);
            rmsnorm_backward(&mut g0[0], &mut g1[0], dout, &x[0], &x[1], &r, c);
        });
    }
}
