//! Causal attention of a run of queries (one head, consecutive positions of one
//! sequence: a prompt) in blocks: two small matrix products per block of keys and an
//! online softmax (flash attention's order of work, on the CPU).
//!
//! One query at a time (`VecOps::attend`) reads every visible key and value once per
//! query, one multiply-add per load and a horizontal sum per key: at a 512-token
//! prompt that was a third of the forward pass (PERF.md). Here a block of [`Q_BLOCK`]
//! queries meets a block of up to [`K_BLOCK`] keys at once:
//!
//! * `Sᵀ = K·Qᵀ`, the keys as they lie in the cache and the block's queries
//!   transposed once per block of queries;
//! * each query's column of `Sᵀ`, inside its causal (and sliding-window) range and
//!   scaled, against its running maximum `m`: `P = exp(S − m)`, the running sum `l`,
//!   and the factor `α = exp(m_old − m)` for what was accumulated before; `P` is zero
//!   outside the range;
//! * `O = α·O + P·V`, with `P` read transposed from where `Sᵀ` was and the values as
//!   they lie in the cache;
//! * at the end `O / l`.
//!
//! Both products are [`gemm`]: register tiles of 4 rows × `NR` columns, each row
//! segment of the right-hand matrix loaded once for 4 rows, the sums kept in
//! registers over the whole inner dimension (no horizontal sums, which a dot product
//! per key over a 64-wide head pays for every key). The loops are compiled per path,
//! as `vecops`'s are (tiles of 32 and 64 columns on AVX-512, 16 elsewhere).
//! The scratch does not grow with the context: [`scratch_len`] floats per head.

use super::dispatch::Engine;
use super::vecops::exp;
use crate::math::mul_add;

/// Queries per block.
pub(crate) const Q_BLOCK: usize = 32;

/// Keys per block.
pub(crate) const K_BLOCK: usize = 256;

/// Floats of scratch [`attend_run`] needs for a head size of `hd`: `Sᵀ`/`Pᵀ`
/// (`K_BLOCK × Q_BLOCK`), `Qᵀ`, `O` and `P·V` (`hd × Q_BLOCK` each), and `m`, `l`,
/// the new `m`, `α` and the block's sums (`Q_BLOCK` each).
pub(crate) fn scratch_len(hd: usize) -> usize {
    K_BLOCK * Q_BLOCK + 3 * hd * Q_BLOCK + 5 * Q_BLOCK
}

/// A run of `n` queries of one head at positions `p0..p0 + n` of one sequence, over
/// that sequence's keys and values from position 0 (`keys`, `vals`: rows of `hd`, at
/// least `p0 + n` of them), each query seeing the last `window` positions up to its
/// own (`usize::MAX`: all of them). Query `i` is `q[i·q_stride..][..hd]`.
pub(crate) struct Run<'a> {
    pub(crate) q: &'a [f32],
    pub(crate) q_stride: usize,
    pub(crate) n: usize,
    pub(crate) hd: usize,
    pub(crate) keys: &'a [f32],
    pub(crate) vals: &'a [f32],
    pub(crate) p0: usize,
    pub(crate) window: usize,
    /// Multiplies the scores before the softmax.
    pub(crate) scale: f32,
}

/// The attention of every query of `run`, given to `emit(i, row)`; `scratch` holds
/// [`scratch_len`]`(hd)` floats. The loops between the products are compiled for
/// the engine's path, as `vecops`'s are.
///
/// # Panics
/// If a slice is shorter than said, `hd == 0` or `window == 0`.
pub(crate) fn attend_run(
    engine: Engine,
    run: &Run<'_>,
    scratch: &mut [f32],
    emit: &mut dyn FnMut(usize, &[f32]),
) {
    match engine {
        // SAFETY: the engine exists only if the CPU has its features.
        #[cfg(target_arch = "x86_64")]
        Engine::Avx512(_) => unsafe { run_avx512(run, scratch, emit) },
        // SAFETY: as above; AVX2 implies the FMA the token also checked.
        #[cfg(target_arch = "x86_64")]
        Engine::Avx2(_) => unsafe { run_avx2(run, scratch, emit) },
        _ => run_body::<16, 16, false>(run, scratch, emit),
    }
}

/// [`run_body`] compiled for AVX-512.
///
/// # Safety
/// The CPU must have the features this function enables.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
unsafe fn run_avx512(r: &Run<'_>, s: &mut [f32], emit: &mut dyn FnMut(usize, &[f32])) {
    run_body::<32, 64, true>(r, s, emit)
}

/// [`run_body`] compiled for AVX2.
///
/// # Safety
/// The CPU must have the features this function enables.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(r: &Run<'_>, s: &mut [f32], emit: &mut dyn FnMut(usize, &[f32])) {
    run_body::<16, 16, true>(r, s, emit)
}

/// The body of [`attend_run`], with the column widths of [`gemm`]'s tiles for
/// `Sᵀ` (`SN`) and for `P·V` (`VN`), and `FMA` (fused multiply-adds, where the path
/// has them).
#[inline(always)]
fn run_body<const SN: usize, const VN: usize, const FMA: bool>(
    run: &Run<'_>,
    scratch: &mut [f32],
    emit: &mut dyn FnMut(usize, &[f32]),
) {
    let Run {
        q,
        q_stride,
        n,
        hd,
        keys,
        vals,
        p0,
        window,
        scale,
    } = *run;
    assert!(hd > 0 && window > 0 && scratch.len() >= scratch_len(hd));
    assert!(keys.len() >= (p0 + n) * hd && vals.len() >= (p0 + n) * hd);
    let (st, rest) = scratch.split_at_mut(K_BLOCK * Q_BLOCK);
    let (qt, rest) = rest.split_at_mut(hd * Q_BLOCK);
    let (o, rest) = rest.split_at_mut(Q_BLOCK * hd);
    let (pv, rest) = rest.split_at_mut(Q_BLOCK * hd);
    let (m, rest) = rest.split_at_mut(Q_BLOCK);
    let (l, rest) = rest.split_at_mut(Q_BLOCK);
    let (mnew, rest) = rest.split_at_mut(Q_BLOCK);
    let (alpha, sum) = rest.split_at_mut(Q_BLOCK);
    let mut i0 = 0;
    while i0 < n {
        let b = (n - i0).min(Q_BLOCK);
        // Qᵀ of the block: row c holds column c of the b queries.
        let qt = &mut qt[..hd * b];
        for i in 0..b {
            let row = &q[(i0 + i) * q_stride..(i0 + i) * q_stride + hd];
            for (c, &v) in row.iter().enumerate() {
                qt[c * b + i] = v;
            }
        }
        let o = &mut o[..b * hd];
        o.fill(0.0);
        m[..b].fill(f32::NEG_INFINITY);
        l[..b].fill(0.0);
        // The block's queries sit at positions first..=last and see keys from the
        // first one's window start to the last one.
        let (first, last) = (p0 + i0, p0 + i0 + b - 1);
        let mut k0 = (first + 1).saturating_sub(window);
        while k0 <= last {
            let len = (last + 1 - k0).min(K_BLOCK);
            // Sᵀ = K·Qᵀ: row t holds key k0 + t's scores against the b queries.
            let st = &mut st[..len * b];
            gemm::<SN, false, FMA>(&keys[k0 * hd..(k0 + len) * hd], qt, st, len, hd, b);
            // Key t is seen by queries i in seen(t): p = first + i >= t and, with a
            // window, p + 1 - window <= t.
            let seen = |t: usize| {
                let t = k0 + t;
                let lo = t.saturating_sub(first).min(b);
                let hi = t.saturating_add(window).saturating_sub(first).min(b);
                lo..hi.max(lo)
            };
            mnew[..b].copy_from_slice(&m[..b]);
            for (t, row) in st.chunks_exact_mut(b).enumerate() {
                let r = seen(t);
                for (v, mx) in row[r.clone()].iter_mut().zip(&mut mnew[r]) {
                    *v *= scale;
                    *mx = mx.max(*v);
                }
            }
            sum[..b].fill(0.0);
            for (t, row) in st.chunks_exact_mut(b).enumerate() {
                let r = seen(t);
                row[..r.start].fill(0.0);
                row[r.end..].fill(0.0);
                for ((v, &mx), s) in row[r.clone()]
                    .iter_mut()
                    .zip(&mnew[r.clone()])
                    .zip(&mut sum[r])
                {
                    *v = exp(*v - mx);
                    *s += *v;
                }
            }
            for i in 0..b {
                // A query that has seen no key yet keeps m = -inf and zeros.
                alpha[i] = if mnew[i] == f32::NEG_INFINITY {
                    1.0
                } else {
                    exp(m[i] - mnew[i])
                };
                l[i] = l[i] * alpha[i] + sum[i];
                m[i] = mnew[i];
            }
            // P·V, with P as Sᵀ holds it (transposed).
            let pv = &mut pv[..b * hd];
            gemm::<VN, true, FMA>(st, &vals[k0 * hd..(k0 + len) * hd], pv, b, len, hd);
            for ((orow, pvrow), &al) in o.chunks_exact_mut(hd).zip(pv.chunks_exact(hd)).zip(&*alpha)
            {
                for (ov, &add) in orow.iter_mut().zip(pvrow) {
                    *ov = *ov * al + add;
                }
            }
            k0 += len;
        }
        for (i, row) in o.chunks_exact_mut(hd).enumerate() {
            let inv = 1.0 / l[i];
            row.iter_mut().for_each(|v| *v *= inv);
            emit(i0 + i, row);
        }
        i0 += b;
    }
}

/// Rows of `A` per register tile of [`gemm`].
const MR: usize = 4;

/// `C = A·B` for row-major `B` (`k × n`) and `C` (`m × n`), and `A` row-major
/// (`m × k`) or, with `TA`, stored transposed (`k × m`). Register tiles of [`MR`]
/// rows × `NR` columns: each `NR`-wide segment of a row of `B` is loaded once for
/// [`MR`] rows of `A`, and the tile's sums stay in registers over all of `k`. Ragged
/// edges run the same sums in plain loops.
#[inline(always)]
fn gemm<const NR: usize, const TA: bool, const FMA: bool>(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    let at = |i: usize, kk: usize| if TA { a[kk * m + i] } else { a[i * k + kk] };
    for i0 in (0..m).step_by(MR) {
        let h = (m - i0).min(MR);
        for j0 in (0..n).step_by(NR) {
            let w = (n - j0).min(NR);
            if h == MR && w == NR {
                let acc = tile::<NR, TA, FMA>(a, b, i0, j0, m, k, n);
                for (r, accr) in acc.iter().enumerate() {
                    c[(i0 + r) * n + j0..(i0 + r) * n + j0 + NR].copy_from_slice(accr);
                }
                continue;
            }
            for r in 0..h {
                for x in 0..w {
                    let mut s = 0.0;
                    for kk in 0..k {
                        s += at(i0 + r, kk) * b[kk * n + j0 + x];
                    }
                    c[(i0 + r) * n + j0 + x] = s;
                }
            }
        }
    }
}

/// One whole tile of [`gemm`]: rows `i0..i0 + MR` × columns `j0..j0 + NR` of `C`.
#[inline(always)]
fn tile<const NR: usize, const TA: bool, const FMA: bool>(
    a: &[f32],
    b: &[f32],
    i0: usize,
    j0: usize,
    m: usize,
    k: usize,
    n: usize,
) -> [[f32; NR]; MR] {
    let mut acc = [[0.0f32; NR]; MR];
    for kk in 0..k {
        let brow: &[f32; NR] = b[kk * n + j0..kk * n + j0 + NR]
            .try_into()
            .expect("NR values");
        for (r, accr) in acc.iter_mut().enumerate() {
            let x = if TA {
                a[kk * m + i0 + r]
            } else {
                a[(i0 + r) * k + kk]
            };
            for (s, &y) in accr.iter_mut().zip(brow) {
                *s = if FMA { mul_add(x, y, *s) } else { *s + x * y };
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::KernelPath;
    use crate::test_common::{fresh_seed, test_seed};
    use std::{vec, vec::Vec};

    /// Softmax attention of one query in f64, keys `lo..=p`.
    fn reference(
        q: &[f32],
        keys: &[f32],
        vals: &[f32],
        hd: usize,
        lo: usize,
        p: usize,
        scale: f32,
    ) -> Vec<f64> {
        let s: Vec<f64> = (lo..=p)
            .map(|t| {
                let k = &keys[t * hd..(t + 1) * hd];
                q.iter()
                    .zip(k)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()
                    * scale as f64
            })
            .collect();
        let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = s.iter().map(|v| (v - mx).exp()).collect();
        let sum: f64 = w.iter().sum();
        (0..hd)
            .map(|c| {
                (lo..=p)
                    .zip(&w)
                    .map(|(t, wt)| wt * vals[t * hd + c] as f64)
                    .sum::<f64>()
                    / sum
            })
            .collect()
    }

    /// Every path, against the f64 softmax of each query, on runs that start at
    /// position 0 and past a key block, cross query and key blocks, with and without
    /// sliding windows, with scores large enough that the running maximum moves
    /// (inputs up to ±2, scale 1/√hd·3). Bound: `1e-5·max|v|` per output (the f32
    /// sums of `hd` products and the softmax's exp, relative error ~1e-6, on weights
    /// that sum to 1).
    #[test]
    fn blocked_attention_matches_f64_softmax() {
        let seed = test_seed(fresh_seed());
        let mut state = seed | 1;
        let mut unit = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * 2.0
        };
        for path in KernelPath::available() {
            let engine = Engine::for_path(path).expect("available");
            for (hd, n, p0, window) in [
                (64, 1, 0, usize::MAX),
                (64, 70, 0, usize::MAX),
                (16, 33, 300, usize::MAX),
                (80, 40, 250, 7),
                (64, 300, 5, 40),
                (32, 9, 0, 1),
            ] {
                let total = p0 + n;
                let keys: Vec<f32> = (0..total * hd).map(|_| unit()).collect();
                let vals: Vec<f32> = (0..total * hd).map(|_| unit()).collect();
                let q_stride = hd + 3; // queries strided as in a row of several heads
                let q: Vec<f32> = (0..n * q_stride).map(|_| unit()).collect();
                let scale = 3.0 / (hd as f32).sqrt();
                let mut scratch = vec![f32::NAN; scratch_len(hd)];
                let mut got = vec![f32::NAN; n * hd];
                let run = Run {
                    q: &q,
                    q_stride,
                    n,
                    hd,
                    keys: &keys,
                    vals: &vals,
                    p0,
                    window,
                    scale,
                };
                attend_run(engine, &run, &mut scratch, &mut |i, row| {
                    got[i * hd..(i + 1) * hd].copy_from_slice(row)
                });
                let vmax = vals.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
                for i in 0..n {
                    let p = p0 + i;
                    let lo = (p + 1).saturating_sub(window);
                    let want = reference(
                        &q[i * q_stride..i * q_stride + hd],
                        &keys,
                        &vals,
                        hd,
                        lo,
                        p,
                        scale,
                    );
                    for c in 0..hd {
                        let err = (got[i * hd + c] as f64 - want[c]).abs();
                        assert!(
                            err <= 1e-5 * vmax,
                            "{path} hd={hd} n={n} p0={p0} window={window} query {i} col {c}: {} vs {} (seed {seed})",
                            got[i * hd + c],
                            want[c]
                        );
                    }
                }
            }
        }
    }
}
