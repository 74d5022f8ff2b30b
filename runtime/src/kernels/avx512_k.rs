//! AVX-512 (VNNI) kernels for the super-block types (Q2_K … Q6_K, IQ4_XS) against
//! Q8_K activations.
//!
//! The types are read through `avx2_k`'s common form (`Raw`: unsigned quants in
//! element order, an i16 scale and "minimum" per group of 16, see that module), two
//! 32-byte registers joined per 64 quants. A 64-quant register against 64 activation
//! bytes is one `vpdpbusd` (u8 × i8, 4 products per i32 lane, so lanes `4k..4k+4`
//! belong to group `4c + k`), and one `vpdpwssd` multiplies each lane by its group's
//! scale: the lane sum fits i16 (at most 4·63·127 for Q6_K), so the scale sits in the
//! low word of each i32 lane and the high word is 0, which makes the product exact.
//! IQ4_XS's offset quants (≤ 241) can pass i16 there, so its lanes take `vpmulld` with
//! sign-extended scales instead (`WIDE`). The minimums (and the offsets of the signed
//! types, `MIN_D`) meet the activations' `bsums` in one `vpmaddwd`; as in `avx2_k`,
//! every integer sum is exact and only the order of the f32 sums differs from `scalar`.
//!
//! Shapes as for the 32-blocks: generation one weight row at a time (one stream per
//! thread), prompts over 4-row chunks of up to [`KS`] super-blocks unpacked once
//! (`packed_rows!`) in tiles of 4 rows × 3 activations.

use super::act::{Q8K, QK_K};
use super::avx2_k::KQuant;
use super::{Matrix, OutRows};
use core::arch::x86_64::*;

/// A super-block unpacked for `vpdpbusd`: 64 quants per register, and for register c
/// the scale of group `4c + k` in lanes `4k..4k+4` (low word only, or the whole lane
/// for `WIDE` types).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Super {
    q: [__m512i; 4],
    sc: [__m512i; 4],
    min: __m256i,
    d: f32,
    dmin: f32,
}

impl Super {
    /// All zero: scale 0, adds nothing.
    #[inline(always)]
    fn zero() -> Super {
        // SAFETY: SIMD vectors and floats, for which all-zero bits are valid values.
        unsafe { core::mem::zeroed() }
    }
}

/// Lane `l` of register `c` reads group `4c + l/4`.
const fn group_lanes(c: i32) -> [i32; 16] {
    let mut idx = [0i32; 16];
    let mut l = 0;
    while l < 16 {
        idx[l] = 4 * c + l as i32 / 4;
        l += 1;
    }
    idx
}

/// The super-block at `p` unpacked.
///
/// # Safety
/// `B::SIZE` readable bytes at `p`; the token's features present.
#[inline(always)]
unsafe fn unpack<B: KQuant>(p: *const u8) -> Super {
    const IDX: [[i32; 16]; 4] = [
        group_lanes(0),
        group_lanes(1),
        group_lanes(2),
        group_lanes(3),
    ];
    // SAFETY: caller; IDX rows are 64 bytes.
    unsafe {
        let r = B::raw(p);
        let q = core::array::from_fn(|c| {
            _mm512_inserti64x4(_mm512_castsi256_si512(r.q[2 * c]), r.q[2 * c + 1], 1)
        });
        let s = if B::WIDE {
            _mm512_cvtepi16_epi32(r.sc)
        } else {
            _mm512_cvtepu16_epi32(r.sc)
        };
        let sc = core::array::from_fn(|c| {
            _mm512_permutexvar_epi32(_mm512_loadu_si512(IDX[c].as_ptr() as *const __m512i), s)
        });
        Super {
            q,
            sc,
            min: r.min,
            d: r.d,
            dmin: r.dmin,
        }
    }
}

/// `acc + d·d_x·Σ sc·(q·x) − dmin·d_x·Σ min·bsum` for one super-block, the integer
/// sums exact and in 16 lanes.
///
/// # Safety
/// The token's features present.
#[inline(always)]
unsafe fn sb_dot<B: KQuant>(u: &Super, y: &Q8K, acc: __m512) -> __m512 {
    // SAFETY: caller; `y.qs` is 256 bytes, `y.bsums` 32.
    unsafe {
        let mut s = _mm512_setzero_si512();
        for c in 0..4 {
            let yc = _mm512_loadu_si512(y.qs.as_ptr().add(64 * c) as *const __m512i);
            let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u.q[c], yc);
            s = if B::WIDE {
                _mm512_add_epi32(s, _mm512_mullo_epi32(dot, u.sc[c]))
            } else {
                _mm512_dpwssd_epi32(s, dot, u.sc[c])
            };
        }
        let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
        let m = _mm512_zextsi256_si512(_mm256_madd_epi16(bs, u.min));
        let dy = _mm512_set1_ps(u.d * y.d);
        if B::MIN_D {
            _mm512_fmadd_ps(dy, _mm512_cvtepi32_ps(_mm512_sub_epi32(s, m)), acc)
        } else {
            let acc = _mm512_fmadd_ps(dy, _mm512_cvtepi32_ps(s), acc);
            _mm512_fnmadd_ps(_mm512_set1_ps(u.dmin * y.d), _mm512_cvtepi32_ps(m), acc)
        }
    }
}

/// One weight row (`w`, whole super-blocks) · Q8_K activations.
///
/// # Panics
/// If `w.len() != B::SIZE·y.len()`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn dot_row<B: KQuant>(w: &[u8], y: &[Q8K]) -> f32 {
    assert_eq!(w.len(), B::SIZE * y.len());
    // Two accumulators in registers (an array indexed by `b & 1` would live in memory).
    let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let p = w.as_ptr();
    let mut b = 0;
    // SAFETY (unpacks): super-blocks b, b + 1 < y.len() lie in `w` (length checked).
    while b + 2 <= y.len() {
        unsafe {
            a0 = sb_dot::<B>(&unpack::<B>(p.add(b * B::SIZE)), &y[b], a0);
            a1 = sb_dot::<B>(&unpack::<B>(p.add((b + 1) * B::SIZE)), &y[b + 1], a1);
        }
        b += 2;
    }
    if b < y.len() {
        // SAFETY: as above.
        unsafe { a0 = sb_dot::<B>(&unpack::<B>(p.add(b * B::SIZE)), &y[b], a0) };
    }
    _mm512_reduce_add_ps(_mm512_add_ps(a0, a1))
}

/// Super-blocks per column chunk of a prompt: 4 rows × 8 × 576 bytes = 18 KiB of
/// unpacked weights, which stay in L1 while the activations pass over them.
const KS: usize = 8;

/// Activations per tile of a prompt (4 rows × 3: 12 accumulators).
const TA: usize = 3;

/// `[[w_j·y_k] for k in 0..T] for j in 0..4]` over the unpacked chunk (`chunk[j][..len]`,
/// `ys[k]` of `len` super-blocks), padded to [`TA`] activations.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn tile_packed<B: KQuant, const T: usize>(
    chunk: &[[Super; KS]; 4],
    ys: [&[Q8K]; T],
) -> [[f32; TA]; 4] {
    let len = ys[0].len();
    assert!(len <= KS && ys.iter().all(|y| y.len() == len));
    let mut acc = [[_mm512_setzero_ps(); T]; 4];
    for g in 0..len {
        for (j, accj) in acc.iter_mut().enumerate() {
            let u = &chunk[j][g];
            for (a, y) in accj.iter_mut().zip(&ys) {
                // SAFETY: this function's features.
                *a = unsafe { sb_dot::<B>(u, &y[g], *a) };
            }
        }
    }
    let mut out = [[0.0f32; TA]; 4];
    for (o, a) in out.iter_mut().zip(&acc) {
        for (o, a) in o.iter_mut().zip(a) {
            *o = _mm512_reduce_add_ps(*a);
        }
    }
    out
}

/// Rows `out.r0..out.r1` of `y = x·Wᵀ` for a super-block weight type: generation one
/// row at a time, prompts over unpacked 4-row chunks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
pub(super) fn rows<B: KQuant>(w: &Matrix<'_>, k: &[Q8K], out: &mut OutRows<'_>) {
    let n = out.n();
    let nb = w.cols / QK_K;
    assert_eq!(k.len(), n * nb);
    let ys = |i: usize| &k[i * nb..(i + 1) * nb];
    if n == 1 || nb == 0 {
        for r in out.r0..out.r1 {
            let row = w.row(r);
            for i in 0..n {
                out.set(i, r, dot_row::<B>(row, ys(i)));
            }
        }
        return;
    }
    packed_rows!(
        w, out, nq: nb, kq: KS, zero: Super::zero(), width: TA,
        row_bytes: nb * B::SIZE,
        unpack |row, g| {
            // SAFETY: super-block g < nb lies in the row (its length is asserted).
            unsafe { unpack::<B>(row.as_ptr().add(g * B::SIZE)) }
        },
        sweep |chunk, c0, c1, emit| {
            let yk = |i: usize| &k[i * nb + c0..i * nb + c1];
            let mut i = 0;
            while i + TA <= n {
                emit(i, tile_packed::<B, TA>(chunk, core::array::from_fn(|t| yk(i + t))), TA);
                i += TA;
            }
            while i < n {
                emit(i, tile_packed::<B, 1>(chunk, [yk(i)]), 1);
                i += 1;
            }
        },
        after |r, here| {}
    );
}
