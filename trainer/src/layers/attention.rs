//! Causal multi-head attention with grouped key/value heads (GQA; MQA when KVH = 1):
//! query head h reads kv head `h / (H / KVH)`. Inputs are the projected (and, with
//! RoPE, rotated) q `[B, T, H·hd]`, k and v `[B, T, KVH·hd]`. The forward keeps the
//! softmax probabilities `att: [B, H, T, T]` (zero above the diagonal) for the backward.
//! Work is split across the batch, so each task owns disjoint slices of every buffer.

use crate::scalar::Real;
use rayon::prelude::*;

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    /// Sequence length T.
    pub t: usize,
    /// Query heads H.
    pub h: usize,
    /// Key/value heads KVH (divides H).
    pub kvh: usize,
    /// Head width hd.
    pub hd: usize,
}

/// `out[b,t,h,:] = Σ_{s≤t} softmax_s(q·k_s / √hd) · v_s`.
pub fn attention_forward<T: Real>(
    out: &mut [T],
    att: &mut [T],
    q: &[T],
    k: &[T],
    v: &[T],
    sh: AttnShape,
) {
    let AttnShape { t: tt, h, kvh, hd } = sh;
    let (qw, kw, group) = (h * hd, kvh * hd, h / kvh);
    let scale = T::c(1.0 / (hd as f64).sqrt());
    out.par_chunks_exact_mut(tt * qw)
        .zip(att.par_chunks_exact_mut(h * tt * tt))
        .zip(q.par_chunks_exact(tt * qw))
        .zip(k.par_chunks_exact(tt * kw).zip(v.par_chunks_exact(tt * kw)))
        .for_each(|(((ob, ab), qb), (kb, vb))| {
            for hi in 0..h {
                let kh = hi / group;
                for t in 0..tt {
                    let qv = &qb[t * qw + hi * hd..t * qw + (hi + 1) * hd];
                    let row = &mut ab[(hi * tt + t) * tt..(hi * tt + t + 1) * tt];
                    let mut maxv = T::neg_infinity();
                    for s in 0..=t {
                        let kv = &kb[s * kw + kh * hd..s * kw + (kh + 1) * hd];
                        let dot = qv.iter().zip(kv).map(|(a, b)| *a * *b).sum::<T>() * scale;
                        row[s] = dot;
                        if dot > maxv {
                            maxv = dot;
                        }
                    }
                    let mut sum = T::zero();
                    for x in row[..=t].iter_mut() {
                        *x = (*x - maxv).exp();
                        sum += *x;
                    }
                    let inv = T::one() / sum;
                    row[..=t].iter_mut().for_each(|x| *x *= inv);
                    row[t + 1..].iter_mut().for_each(|x| *x = T::zero());
                    let o = &mut ob[t * qw + hi * hd..t * qw + (hi + 1) * hd];
                    o.iter_mut().for_each(|x| *x = T::zero());
                    for s in 0..=t {
                        let p = row[s];
                        let vv = &vb[s * kw + kh * hd..s * kw + (kh + 1) * hd];
                        for (x, &y) in o.iter_mut().zip(vv) {
                            *x += p * y;
                        }
                    }
                }
            }
        });
}

/// Inverts `attention_forward`; `dq, dk, dv +=`. Per (b, h, t), with p the saved row:
/// `dp_s = dout·v_s`, `dv_s += p_s·dout` (from `out = Σ p v`),
/// `dscore_s = p_s (dp_s - Σ_r p_r dp_r)` (softmax), then the scaled dot product.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Real>(
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
    dout: &[T],
    q: &[T],
    k: &[T],
    v: &[T],
    att: &[T],
    sh: AttnShape,
) {
    let AttnShape { t: tt, h, kvh, hd } = sh;
    let (qw, kw, group) = (h * hd, kvh * hd, h / kvh);
    let scale = T::c(1.0 / (hd as f64).sqrt());
    dq.par_chunks_exact_mut(tt * qw)
        .zip(
            dk.par_chunks_exact_mut(tt * kw)
                .zip(dv.par_chunks_exact_mut(tt * kw)),
        )
        .zip(
            dout.par_chunks_exact(tt * qw)
                .zip(q.par_chunks_exact(tt * qw)),
        )
        .zip(k.par_chunks_exact(tt * kw).zip(v.par_chunks_exact(tt * kw)))
        .zip(att.par_chunks_exact(h * tt * tt))
        .for_each(|((((dqb, (dkb, dvb)), (dob, qb)), (kb, vb)), ab)| {
            let mut dp = vec![T::zero(); tt];
            for hi in 0..h {
                let kh = hi / group;
                for t in 0..tt {
                    let row = &ab[(hi * tt + t) * tt..(hi * tt + t + 1) * tt];
                    let go = &dob[t * qw + hi * hd..t * qw + (hi + 1) * hd];
                    let mut dot = T::zero();
                    for s in 0..=t {
                        let vv = &vb[s * kw + kh * hd..s * kw + (kh + 1) * hd];
                        dp[s] = go.iter().zip(vv).map(|(a, b)| *a * *b).sum::<T>();
                        dot += row[s] * dp[s];
                        let dvv = &mut dvb[s * kw + kh * hd..s * kw + (kh + 1) * hd];
                        for (x, &g) in dvv.iter_mut().zip(go) {
                            *x += row[s] * g;
                        }
                    }
                    let qv = &qb[t * qw + hi * hd..t * qw + (hi + 1) * hd];
                    for s in 0..=t {
                        let ds = row[s] * (dp[s] - dot) * scale;
                        let kv = &kb[s * kw + kh * hd..s * kw + (kh + 1) * hd];
                        let dqv = &mut dqb[t * qw + hi * hd..t * qw + (hi + 1) * hd];
                        for (x, &y) in dqv.iter_mut().zip(kv) {
                            *x += ds * y;
                        }
                        let dkv = &mut dkb[s * kw + kh * hd..s * kw + (kh + 1) * hd];
                        for (x, &y) in dkv.iter_mut().zip(qv) {
                            *x += ds * y;
                        }
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::{check_grads, rand_vec};

    fn check(sh: AttnShape, b: usize) {
        let nq = b * sh.t * sh.h * sh.hd;
        let nk = b * sh.t * sh.kvh * sh.hd;
        let x = vec![rand_vec::<f64>(nq, 31), rand_vec(nk, 32), rand_vec(nk, 33)];
        let natt = b * sh.h * sh.t * sh.t;
        check_grads(
            &x,
            nq,
            1e-7,
            |x, o| {
                let mut att = vec![0.0; natt];
                attention_forward(o, &mut att, &x[0], &x[1], &x[2], sh);
            },
            |x, d, g| {
                let mut att = vec![0.0; natt];
                let mut o = vec![0.0; nq];
                attention_forward(&mut o, &mut att, &x[0], &x[1], &x[2], sh);
                let (g0, rest) = g.split_at_mut(1);
                let (g1, g2) = rest.split_at_mut(1);
                attention_backward(
                    &mut g0[0], &mut g1[0], &mut g2[0], d, &x[0], &x[1], &x[2], &att, sh,
                );
            },
        );
    }

    #[test]
    fn attention_gradients_mha_gqa_mqa() {
        check(
            AttnShape {
                t: 5,
                h: 2,
                kvh: 2,
                hd: 3,
            },
            2,
        );
        check(
            AttnShape {
                t: 4,
                h: 4,
                kvh: 2,
                hd: 2,
            },
            2,
        );
        check(
            AttnShape {
                t: 6,
                h: 3,
                kvh: 1,
                hd: 4,
            },
            1,
        );
    }

    #[test]
    fn attention_is_causal() {
        // Changing the last position's key and value leaves earlier outputs unchanged.
        let sh = AttnShape {
            t: 4,
            h: 2,
            kvh: 1,
            hd: 3,
        };
        let q = rand_vec::<f64>(4 * 6, 1);
        let mut k = rand_vec::<f64>(4 * 3, 2);
        let mut v = rand_vec::<f64>(4 * 3, 3);
        let (mut o1, mut o2, mut att) = (vec![0.0; 24], vec![0.0; 24], vec![0.0; 32]);
        attention_forward(&mut o1, &mut att, &q, &k, &v, sh);
        k[9..].iter_mut().for_each(|x| *x += 1.0);
        v[9..].iter_mut().for_each(|x| *x -= 1.0);
        attention_forward(&mut o2, &mut att, &q, &k, &v, sh);
        assert_eq!(o1[..18], o2[..18]);
        assert_ne!(o1[18..], o2[18..]);
    }
}
