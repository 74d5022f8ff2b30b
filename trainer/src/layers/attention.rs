//! Causal multi-head attention with grouped key/value heads (GQA; MQA when KVH = 1):
//! query head h reads kv head `h / (H / KVH)`. Inputs are the projected (and, with
//! RoPE, rotated) q `[B, T, H·hd]`, k and v `[B, T, KVH·hd]`. The forward keeps the
//! softmax probabilities `att: [B, H, T, T]` (zero above the diagonal) for the backward.
//!
//! Each head's work is a few matrix products through `gemm` (single-threaded inside a
//! task) on strided views of the `[B, T, heads·hd]` buffers, taken in causal blocks of
//! [`BLOCK`] query rows (block `[r0, r1)` only meets keys `[0, r1)`, so about half of
//! the T×T products are skipped for long sequences). The forward runs one task per
//! (batch, query head); the backward one per (batch, kv head), whose task loops over
//! the query heads of its group in order, so dk and dv are summed in a fixed order and
//! the result does not depend on the thread count. Tasks write disjoint column blocks
//! of the shared `[B, T, heads·hd]` outputs, through raw pointers.

use crate::layers::softmax_ce::exp_shift_sum;
use crate::scalar::Real;
use gemm::Parallelism;
use rayon::prelude::*;

/// Query rows per causal block.
pub const BLOCK: usize = 64;

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

/// A pointer into an output that several tasks write, each a disjoint set of elements.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);

// SAFETY: `Shared` only carries the base pointer of an output buffer that outlives the
// parallel loop; every task writes a set of elements no other task reads or writes
// (its own column block of its own rows, argued at each use).
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as for `Send`: shared access only ever writes disjoint elements.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The pointer (a method, so that closures capture the whole `Shared`, which is
    /// `Sync`, rather than its raw-pointer field, which is not).
    fn ptr(self) -> *mut T {
        self.0
    }
}

/// `dst[m, n] (+)= beta · a[m, k] · b[k, n]`, single-threaded, on strided operands:
/// element `(i, j)` of `dst` is at `dst + i·drs + j`, of `a` at `a + i·ars + j·acs`,
/// of `b` at `b + i·brs + j·bcs`. `acc` keeps what `dst` held.
///
/// # Safety
/// Every element so addressed must lie inside its allocation, `dst` must not overlap
/// `a` or `b`, and no other thread may access the addressed elements of `dst` meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn mm<T: Real>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    drs: usize,
    acc: bool,
    (a, ars, acs): (*const T, usize, usize),
    (b, brs, bcs): (*const T, usize, usize),
    beta: T,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // SAFETY: the caller's contract; gemm computes dst = 1·dst + beta·a·b (reading dst
    // only when `acc`), for T = f32 or f64.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            drs as isize,
            acc,
            a,
            acs as isize,
            ars as isize,
            b,
            bcs as isize,
            brs as isize,
            T::one(),
            beta,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// The batch size implied by `q`, after checking every buffer against the shape.
#[allow(clippy::too_many_arguments)]
fn batch_of(sh: AttnShape, q: usize, kv: &[usize], per_head: &[usize], att: usize) -> usize {
    let AttnShape { t, h, kvh, hd } = sh;
    assert!(
        t > 0 && hd > 0 && kvh > 0 && h % kvh == 0,
        "attention: bad shape {sh:?}"
    );
    let nb = q / (t * h * hd);
    assert!(
        kv.iter().all(|&l| l >= nb * t * kvh * hd)
            && per_head.iter().all(|&l| l >= nb * t * h * hd)
            && att >= nb * h * t * t,
        "attention: a buffer is too short for {nb} sequences of {sh:?}"
    );
    nb
}

/// Causal softmax of score row `t` in place: entries `0..=t` become probabilities,
/// the rest 0.
fn softmax_causal<T: Real>(row: &mut [T], t: usize) {
    let (live, dead) = row.split_at_mut(t + 1);
    let maxv = live
        .iter()
        .fold(T::neg_infinity(), |m, &x| if x > m { x } else { m });
    let inv = T::one() / exp_shift_sum(live, maxv);
    live.iter_mut().for_each(|x| *x *= inv);
    dead.iter_mut().for_each(|x| *x = T::zero());
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
    let nb = batch_of(sh, q.len(), &[k.len(), v.len()], &[out.len()], att.len());
    let scale = T::c(1.0 / (hd as f64).sqrt());
    let outp = Shared(out.as_mut_ptr());
    att[..nb * h * tt * tt]
        .par_chunks_mut(tt * tt)
        .enumerate()
        .for_each(|(bh, a)| {
            let (b, hi) = (bh / h, bh % h);
            let qo = b * tt * qw + hi * hd; // (b, t = 0, head hi) in q and out
            let ko = b * tt * kw + (hi / group) * hd; // (b, t = 0, its kv head) in k, v
            for r0 in (0..tt).step_by(BLOCK) {
                let r1 = (r0 + BLOCK).min(tt);
                // S[r0..r1, 0..r1] = scale · Q[r0..r1] · K[0..r1]ᵀ
                // SAFETY: `batch_of` proved q, k hold B·T rows of their width, so rows
                // r0..r1 (resp. 0..r1) of this head lie inside; `a` is this task's.
                unsafe {
                    mm(
                        (r1 - r0, r1, hd),
                        a[r0 * tt..].as_mut_ptr(),
                        tt,
                        false,
                        (q[qo + r0 * qw..].as_ptr(), qw, 1),
                        (k[ko..].as_ptr(), 1, kw),
                        scale,
                    )
                }
            }
            for (t, row) in a.chunks_exact_mut(tt).enumerate() {
                softmax_causal(row, t);
            }
            for r0 in (0..tt).step_by(BLOCK) {
                let r1 = (r0 + BLOCK).min(tt);
                // O[r0..r1] = P[r0..r1, 0..r1] · V[0..r1] (P is 0 above the diagonal).
                // SAFETY: out holds B·T rows of H·hd (`batch_of`); this task alone
                // writes head hi's columns of batch b's rows; P is this task's `a`.
                unsafe {
                    mm(
                        (r1 - r0, hd, r1),
                        outp.ptr().add(qo + r0 * qw),
                        qw,
                        false,
                        (a[r0 * tt..].as_ptr(), tt, 1),
                        (v[ko..].as_ptr(), kw, 1),
                        T::one(),
                    )
                }
            }
        });
}

/// Inverts `attention_forward`; `dq, dk, dv +=`. Per (b, h), with P the saved
/// probabilities: `dP = dO·Vᵀ`, `dV += Pᵀ·dO` (from `O = P·V`),
/// `dS = P ⊙ (dP - rowsum(P ⊙ dP)) / √hd` (softmax and scale), `dQ += dS·K`,
/// `dK += dSᵀ·Q` (from `S = Q·Kᵀ`).
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
    let nb = batch_of(
        sh,
        q.len(),
        &[k.len(), v.len(), dk.len(), dv.len()],
        &[dq.len(), dout.len()],
        att.len(),
    );
    let scale = T::c(1.0 / (hd as f64).sqrt());
    let (dqp, dkp, dvp) = (
        Shared(dq.as_mut_ptr()),
        Shared(dk.as_mut_ptr()),
        Shared(dv.as_mut_ptr()),
    );
    (0..nb * kvh).into_par_iter().for_each(|bk| {
        let (b, kh) = (bk / kvh, bk % kvh);
        let ko = b * tt * kw + kh * hd;
        let mut ds = vec![T::zero(); tt * tt]; // dP, then dS, of one head
        for hi in kh * group..(kh + 1) * group {
            let qo = b * tt * qw + hi * hd;
            let p = &att[(b * h + hi) * tt * tt..(b * h + hi + 1) * tt * tt];
            for r0 in (0..tt).step_by(BLOCK) {
                let r1 = (r0 + BLOCK).min(tt);
                // dP[r0..r1, 0..r1] = dO[r0..r1] · V[0..r1]ᵀ
                // SAFETY: dout, v hold B·T rows (`batch_of`); `ds` is this task's.
                unsafe {
                    mm(
                        (r1 - r0, r1, hd),
                        ds[r0 * tt..].as_mut_ptr(),
                        tt,
                        false,
                        (dout[qo + r0 * qw..].as_ptr(), qw, 1),
                        (v[ko..].as_ptr(), 1, kw),
                        T::one(),
                    )
                }
            }
            for (t, (d, pr)) in ds.chunks_exact_mut(tt).zip(p.chunks_exact(tt)).enumerate() {
                let (live, dead) = d.split_at_mut(t + 1);
                let dot = live
                    .iter()
                    .zip(&pr[..=t])
                    .fold(T::zero(), |acc, (&a, &b)| acc + a * b);
                for (x, &pp) in live.iter_mut().zip(&pr[..=t]) {
                    *x = pp * (*x - dot) * scale;
                }
                dead.iter_mut().for_each(|x| *x = T::zero());
            }
            for c0 in (0..tt).step_by(BLOCK) {
                let c1 = (c0 + BLOCK).min(tt);
                // SAFETY (all three): the operands are rows of buffers `batch_of`
                // checked, `p` and `ds` are T×T; the destinations are this task's
                // columns (head hi of dq, kv head kh of dk and dv) of batch b's rows,
                // which no other task touches.
                unsafe {
                    // dV[c0..c1] += Pᵀ[c0..c1, c0..T] · dO[c0..T] (P[t, s] = 0 for s > t)
                    mm(
                        (c1 - c0, hd, tt - c0),
                        dvp.ptr().add(ko + c0 * kw),
                        kw,
                        true,
                        (p[c0 * tt + c0..].as_ptr(), 1, tt),
                        (dout[qo + c0 * qw..].as_ptr(), qw, 1),
                        T::one(),
                    );
                    // dQ[c0..c1] += dS[c0..c1, 0..c1] · K[0..c1]
                    mm(
                        (c1 - c0, hd, c1),
                        dqp.ptr().add(qo + c0 * qw),
                        qw,
                        true,
                        (ds[c0 * tt..].as_ptr(), tt, 1),
                        (k[ko..].as_ptr(), kw, 1),
                        T::one(),
                    );
                    // dK[c0..c1] += dSᵀ[c0..c1, c0..T] · Q[c0..T]
                    mm(
                        (c1 - c0, hd, tt - c0),
                        dkp.ptr().add(ko + c0 * kw),
                        kw,
                        true,
                        (ds[c0 * tt + c0..].as_ptr(), 1, tt),
                        (q[qo + c0 * qw..].as_ptr(), qw, 1),
                        T::one(),
                    );
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::{check_grads, rand_vec};

    /// The scalar reference of [`attention_forward`] (the first version: loops over
    /// batch, head, query and key), which the tests hold the fast one to.
    pub fn attention_forward_ref<T: Real>(
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

    /// The scalar reference of [`attention_backward`].
    #[allow(clippy::too_many_arguments)]
    pub fn attention_backward_ref<T: Real>(
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

    /// Fast against the scalar reference on fresh random inputs, forward and backward,
    /// f32 (tolerance 2e-5 absolute + relative: different summation orders) and f64
    /// (1e-12), with T below, at and above [`BLOCK`] and not a multiple of it.
    fn versus_reference<T: Real>(sh: AttnShape, b: usize, seed: u64, tol: f64) {
        let nq = b * sh.t * sh.h * sh.hd;
        let nk = b * sh.t * sh.kvh * sh.hd;
        let natt = b * sh.h * sh.t * sh.t;
        let (q, k, v) = (
            rand_vec::<T>(nq, seed),
            rand_vec::<T>(nk, seed + 1),
            rand_vec::<T>(nk, seed + 2),
        );
        let dout = rand_vec::<T>(nq, seed + 3);
        let (mut o1, mut a1) = (vec![T::zero(); nq], vec![T::one(); natt]);
        let (mut o2, mut a2) = (vec![T::zero(); nq], vec![T::zero(); natt]);
        attention_forward(&mut o1, &mut a1, &q, &k, &v, sh);
        attention_forward_ref(&mut o2, &mut a2, &q, &k, &v, sh);
        let close = |x: &[T], y: &[T], what: &str| {
            for (i, (a, b)) in x.iter().zip(y).enumerate() {
                let (a, b) = (a.f64(), b.f64());
                assert!(
                    (a - b).abs() <= tol * (1.0 + b.abs()),
                    "{what}[{i}]: {a} vs {b} ({sh:?})"
                );
            }
        };
        close(&o1, &o2, "out");
        close(&a1, &a2, "att");
        // Gradients start from random values: the backward must add, not overwrite.
        let g0 = [
            rand_vec::<T>(nq, seed + 4),
            rand_vec(nk, seed + 5),
            rand_vec(nk, seed + 6),
        ];
        let (mut dq1, mut dk1, mut dv1) = (g0[0].clone(), g0[1].clone(), g0[2].clone());
        let (mut dq2, mut dk2, mut dv2) = (g0[0].clone(), g0[1].clone(), g0[2].clone());
        attention_backward(&mut dq1, &mut dk1, &mut dv1, &dout, &q, &k, &v, &a2, sh);
        attention_backward_ref(&mut dq2, &mut dk2, &mut dv2, &dout, &q, &k, &v, &a2, sh);
        close(&dq1, &dq2, "dq");
        close(&dk1, &dk2, "dk");
        close(&dv1, &dv2, "dv");
    }

    #[test]
    fn fast_attention_matches_scalar_reference() {
        let shapes = [
            (
                AttnShape {
                    t: 64,
                    h: 4,
                    kvh: 4,
                    hd: 32,
                },
                3,
            ),
            (
                AttnShape {
                    t: 7,
                    h: 4,
                    kvh: 2,
                    hd: 5,
                },
                2,
            ),
            (
                AttnShape {
                    t: 150,
                    h: 6,
                    kvh: 2,
                    hd: 16,
                },
                2,
            ),
            (
                AttnShape {
                    t: 129,
                    h: 3,
                    kvh: 1,
                    hd: 8,
                },
                1,
            ),
        ];
        for (i, (sh, b)) in shapes.into_iter().enumerate() {
            versus_reference::<f32>(sh, b, 10 * i as u64, 2e-5);
            versus_reference::<f64>(sh, b, 10 * i as u64 + 5, 1e-12);
        }
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
