//! LayerNorm over the last dimension C: `out = (x - mean) · rstd · w + b`.
//! Forward saves `mean` and `rstd` per row for the backward; gradients are `+=`.

use crate::scalar::Real;
use rayon::prelude::*;

/// Rows per task of the backward (fixed, so that its parameter sums are too).
const ROWS: usize = 32;

/// `out, inp: [N, C]`, `mean, rstd: [N]`, `w, b: [C]`.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_forward<T: Real>(
    out: &mut [T],
    mean: &mut [T],
    rstd: &mut [T],
    inp: &[T],
    w: &[T],
    b: Option<&[T]>,
    c: usize,
    eps: f64,
) {
    out.par_chunks_exact_mut(c)
        .zip(inp.par_chunks_exact(c))
        .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
        .for_each(|((o, x), (m, r))| {
            let inv_c = T::c(1.0 / c as f64);
            let mu = x.iter().copied().sum::<T>() * inv_c;
            let var = x.iter().map(|&v| (v - mu) * (v - mu)).sum::<T>() * inv_c;
            let rs = T::one() / (var + T::c(eps)).sqrt();
            for j in 0..c {
                let n = (x[j] - mu) * rs;
                o[j] = n * w[j] + b.map_or(T::zero(), |b| b[j]);
            }
            *m = mu;
            *r = rs;
        });
}

/// Inverts `layernorm_forward`:
/// `dinp += rstd · (dnorm - mean(dnorm) - norm · mean(dnorm ⊙ norm))` with `dnorm = dout ⊙ w`.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward<T: Real>(
    dinp: &mut [T],
    dw: &mut [T],
    db: Option<&mut [T]>,
    dout: &[T],
    inp: &[T],
    w: &[T],
    mean: &[T],
    rstd: &[T],
    c: usize,
) {
    // Tasks of ROWS rows: each writes its rows of dinp and returns its partial dw
    // (and db); the partials are added in task order, so the sums are the same for
    // every thread count and schedule.
    let inv_c = T::c(1.0 / c as f64);
    let with_b = db.is_some();
    let rc = ROWS * c;
    let partials: Vec<Vec<T>> = dinp
        .par_chunks_mut(rc)
        .zip(dout.par_chunks(rc).zip(inp.par_chunks(rc)))
        .zip(mean.par_chunks(ROWS).zip(rstd.par_chunks(ROWS)))
        .map(|((dxs, (dys, xs)), (mus, rss))| {
            let mut part = vec![T::zero(); if with_b { 2 * c } else { c }];
            let (pw, pb) = part.split_at_mut(c);
            let rows = dxs.chunks_exact_mut(c).zip(dys.chunks_exact(c));
            for ((dx, dy), (x, (&mu, &rs))) in rows.zip(xs.chunks_exact(c).zip(mus.iter().zip(rss)))
            {
                let (mut dmean, mut dnm) = (T::zero(), T::zero());
                for j in 0..c {
                    let dn = dy[j] * w[j];
                    dmean += dn;
                    dnm += dn * (x[j] - mu) * rs;
                }
                dmean *= inv_c;
                dnm *= inv_c;
                for j in 0..c {
                    let n = (x[j] - mu) * rs;
                    dx[j] += (dy[j] * w[j] - dmean - n * dnm) * rs;
                    pw[j] += dy[j] * n;
                }
                for (g, &d) in pb.iter_mut().zip(dy) {
                    *g += d;
                }
            }
            part
        })
        .collect();
    let mut db = db;
    for part in &partials {
        for (g, &p) in dw.iter_mut().zip(&part[..c]) {
            *g += p;
        }
        if let Some(db) = db.as_deref_mut() {
            for (g, &p) in db.iter_mut().zip(&part[c..]) {
                *g += p;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::{check_grads, rand_vec};

    #[test]
    fn layernorm_gradients() {
        let (n, c) = (4, 9);
        let x = vec![rand_vec::<f64>(n * c, 1), rand_vec(c, 2), rand_vec(c, 3)];
        let fwd = |x: &[Vec<f64>], out: &mut [f64]| {
            let (mut m, mut r) = (vec![0.0; n], vec![0.0; n]);
            layernorm_forward(out, &mut m, &mut r, &x[0], &x[1], Some(&x[2]), c, 1e-5);
        };
        check_grads(&x, n * c, 1e-7, fwd, |x, dout, g| {
            let (mut m, mut r, mut o) = (vec![0.0; n], vec![0.0; n], vec![0.0; n * c]);
            layernorm_forward(&mut o, &mut m, &mut r, &x[0], &x[1], Some(&x[2]), c, 1e-5);
            let (g0, rest) = g.split_at_mut(1);
            let (g1, g2) = rest.split_at_mut(1);
            layernorm_backward(
                &mut g0[0],
                &mut g1[0],
                Some(&mut g2[0]),
                dout,
                &x[0],
                &x[1],
                &m,
                &r,
                c,
            );
        });
    }
}
