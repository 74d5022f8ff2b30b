//! Token embedding plus the additive position schemes:
//! `out[b,t,:] = tok_emb[tokens[b,t], :] + pos(t)` where `pos` is a learned row
//! `pos_emb[t, :]`, the fixed sinusoid `pe[t, 2i] = sin(t·10000^(-2i/C))`,
//! `pe[t, 2i+1] = cos(...)`, or nothing (RoPE acts inside attention).

use crate::scalar::Real;
use rayon::prelude::*;

/// How positions are added to the token embedding.
#[derive(Clone, Copy, Debug)]
pub enum PosAdd<'a, T> {
    /// A learned table `[max_len, C]`.
    Learned(&'a [T]),
    /// The fixed sinusoid.
    Sinusoidal,
    /// Nothing (RoPE).
    None,
}

/// `pe[t, 2i] = sin(t·10000^(-2i/C))`, `pe[t, 2i+1] = cos(...)`, for one position.
pub fn sinusoid_row<T: Real>(t: usize, out: &mut [T]) {
    let c = out.len();
    for i in 0..c / 2 {
        let ang = t as f64 * 10000f64.powf(-((2 * i) as f64) / c as f64);
        out[2 * i] = T::c(ang.sin());
        out[2 * i + 1] = T::c(ang.cos());
    }
}

/// `out: [B, T, C]`, `tokens: [B, T]` (already checked `< vocab`), `tok_emb: [V, C]`.
pub fn embedding_forward<T: Real>(
    out: &mut [T],
    tokens: &[u32],
    tok_emb: &[T],
    pos: PosAdd<'_, T>,
    seq: usize,
    c: usize,
) {
    out.par_chunks_exact_mut(c)
        .zip(tokens.par_iter())
        .enumerate()
        .for_each(|(row, (o, &tok))| {
            let t = row % seq;
            let e = &tok_emb[tok as usize * c..(tok as usize + 1) * c];
            o.copy_from_slice(e);
            match pos {
                PosAdd::Learned(p) => {
                    for (y, &q) in o.iter_mut().zip(&p[t * c..(t + 1) * c]) {
                        *y += q;
                    }
                }
                PosAdd::Sinusoidal => {
                    let mut pe = vec![T::zero(); c];
                    sinusoid_row(t, &mut pe);
                    for (y, q) in o.iter_mut().zip(pe) {
                        *y += q;
                    }
                }
                PosAdd::None => {}
            }
        });
}

/// `dtok_emb[tokens[b,t]] += dout[b,t]`, `dpos_emb[t] += dout[b,t]` (learned only).
/// Serial: rows scatter into shared table rows, and the order keeps sums deterministic.
pub fn embedding_backward<T: Real>(
    dtok_emb: &mut [T],
    dpos_emb: Option<&mut [T]>,
    dout: &[T],
    tokens: &[u32],
    seq: usize,
    c: usize,
) {
    let mut dpos = dpos_emb;
    for (row, (d, &tok)) in dout.chunks_exact(c).zip(tokens).enumerate() {
        let t = row % seq;
        for (g, &v) in dtok_emb[tok as usize * c..(tok as usize + 1) * c]
            .iter_mut()
            .zip(d)
        {
            *g += v;
        }
        if let Some(p) = dpos.as_deref_mut() {
            for (g, &v) in p[t * c..(t + 1) * c].iter_mut().zip(d) {
                *g += v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::{check_grads, rand_vec};

    #[test]
    fn embedding_gradients_learned_and_sinusoidal() {
        let (b, t, c, v) = (2, 3, 4, 5);
        let tokens = [1u32, 4, 1, 0, 2, 4];
        let x = vec![rand_vec::<f64>(v * c, 1), rand_vec(t * c, 2)];
        check_grads(
            &x,
            b * t * c,
            1e-8,
            |x, o| embedding_forward(o, &tokens, &x[0], PosAdd::Learned(&x[1]), t, c),
            |_, d, g| {
                let (g0, g1) = g.split_at_mut(1);
                embedding_backward(&mut g0[0], Some(&mut g1[0]), d, &tokens, t, c)
            },
        );
        let x = vec![rand_vec::<f64>(v * c, 3)];
        check_grads(
            &x,
            b * t * c,
            1e-8,
            |x, o| embedding_forward(o, &tokens, &x[0], PosAdd::Sinusoidal, t, c),
            |_, d, g| embedding_backward(&mut g[0], None, d, &tokens, t, c),
        );
    }

    #[test]
    fn sinusoid_matches_formula() {
        let mut row = vec![0.0f64; 8];
        sinusoid_row(3, &mut row);
        assert!((row[2] - (3.0f64 * 10000f64.powf(-2.0 / 8.0)).sin()).abs() < 1e-12);
        assert!((row[3] - (3.0f64 * 10000f64.powf(-2.0 / 8.0)).cos()).abs() < 1e-12);
    }
}
