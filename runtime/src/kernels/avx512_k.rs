//! AVX-512 (VNNI) kernels for the super-block types (Q2_K … Q6_K, IQ4_XS) against
//! Q8_K activations.
//!
//! Every type is unpacked to one form ([`Super`]: 64 unsigned quants per register in
//! element order, scale words per group of 16, i16 minimums, the f32 factors). Q4_K,
//! Q5_K and Q6_K do so natively in 512 bits ([`K512`]): a Q4_K chunk of 32 nibble
//! bytes is broadcast to both halves and shifted by 0 / 4 per 64-bit lane (elements
//! `64c..64c+64` in one `vpsrlvq` + `vpand`), its 6-bit scales and minimums are decoded
//! in one XMM register; Q5_K's high bits come from a per-lane rotation of `qh`, Q6_K's
//! from `qh` shifted per 64-bit lane and merged with `vpternlogd`. The others go
//! through `avx2_k`'s common form (`Raw`: unsigned quants in element order, an i16
//! scale and "minimum" per group of 16, see that module).
//!
//! A 64-quant register against 64 activation bytes is one `vpdpbusd` (u8 × i8, 4
//! products per i32 lane, so lanes `4k..4k+4` belong to group `4c + k`). Each lane sum
//! fits i16 (at most 4·63·127 for Q6_K), so two registers' lanes are packed into words
//! (`vpackssdw`, exact) and meet their groups' scales in one `vpmaddwd` / `vpdpwssd`
//! (`paired`). IQ4_XS's offset quants (≤ 241) can pass i16 there, so its lanes take
//! `vpmulld` with sign-extended scales instead (`WIDE`). The minimums meet the
//! activations' `bsums` in one `vpmaddwd` and fill lanes 8..16 beside the scaled sums
//! folded to 8 lanes, so one conversion and one fma against `[d | −dmin]·d_x` finish a
//! super-block; the offsets of the signed types (`MIN_D`) are subtracted inside a
//! `vpdpwssd` instead. As in `avx2_k`, every integer sum is exact and only the order of
//! the f32 sums differs from `scalar`.
//!
//! Generation prefetches the weight rows `stream::PREFETCH` bytes ahead: the rows of the
//! small models are short (3 super-blocks), the hardware streamer stops at each 4 KiB
//! page, and without it the kernels waited on L3 (PERF.md).
//!
//! Shapes as for the 32-blocks: generation one weight row at a time (one stream per
//! thread), prompts over 4-row chunks of up to [`KS`] super-blocks unpacked once
//! (`packed_rows!`) in tiles of 4 rows × 3 activations.

use super::act::{Q8K, QK_K};
use super::avx2_k::KQuant;
use super::marker::{Iq4Xs, Q2K, Q3K, Q4K, Q5K, Q6K};
use super::stream::prefetch_ahead;
use super::{Matrix, OutRows};
use core::arch::x86_64::*;

/// A super-block unpacked for `vpdpbusd`: 64 quants per register, and the scales: for
/// `WIDE` types, for register c the scale of group `4c + k` in lanes `4k..4k+4`; for
/// the others two word vectors for the packed dots of registers 0, 1 and 2, 3
/// (`paired`).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Super {
    q: [__m512i; 4],
    sc: [__m512i; 4],
    /// Minimums per group of 16, i16, negated for the `MIN_D` types (which subtract
    /// them in integers).
    min: __m256i,
    /// The f32 factors of the integer sums: `d` in lanes 0..8 (the 16 scaled lanes
    /// folded to 8) and `−dmin` in lanes 8..16 (the 8 lanes of minimums); `d` in all
    /// 16 for the `MIN_D` types.
    dd: __m512,
}

impl Super {
    /// All zero: scale 0, adds nothing.
    #[inline(always)]
    fn zero() -> Super {
        // SAFETY: SIMD vectors and floats, for which all-zero bits are valid values.
        unsafe { core::mem::zeroed() }
    }
}

/// [`Super::dd`] for `B`.
///
/// # Safety
/// The token's features present.
#[inline(always)]
unsafe fn dd_of<B: KQuant>(d: f32, dmin: f32) -> __m512 {
    // SAFETY: caller.
    unsafe {
        if B::MIN_D {
            _mm512_set1_ps(d)
        } else {
            let lo = _mm512_set1_ps(d);
            _mm512_insertf32x8::<1>(lo, _mm256_set1_ps(-dmin))
        }
    }
}

/// [`Super::min`] for `B` from the minimums of the common form.
///
/// # Safety
/// The token's features present.
#[inline(always)]
unsafe fn min_of<B: KQuant>(min: __m256i) -> __m256i {
    // SAFETY: caller.
    unsafe {
        if B::MIN_D {
            _mm256_sub_epi16(_mm256_setzero_si256(), min)
        } else {
            min
        }
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

/// A super-block type as the 512-bit kernels unpack it: through the common form
/// (`unpack_raw`), or natively where that takes fewer instructions (Q4_K, Q5_K, Q6_K).
pub(super) trait K512: KQuant {
    /// The super-block at `p` unpacked.
    ///
    /// # Safety
    /// `Self::SIZE` readable bytes at `p`; the token's features present.
    unsafe fn unpack(p: *const u8) -> Super;
}

macro_rules! through_raw {
    ($($t:ty),*) => {$(
        impl K512 for $t {
            #[inline(always)]
            unsafe fn unpack(p: *const u8) -> Super {
                // SAFETY: caller.
                unsafe { unpack_raw::<$t>(p) }
            }
        }
    )*};
}
through_raw!(Q2K, Q3K, Iq4Xs);

/// `vpermw` indices for the scales of the packed dots of registers `c` and `c + 1`:
/// `vpackssdw` puts lanes `4k..4k+4` of each in words `8k..8k+4` and `8k+4..8k+8`,
/// and those lanes belong to groups of 16 `4c + k` and `4(c + 1) + k`.
const fn pair_words(c: i16) -> [i16; 32] {
    let mut idx = [0i16; 32];
    let mut w = 0;
    while w < 32 {
        let k = (w / 8) as i16;
        idx[w] = if w % 8 < 4 {
            4 * c + k
        } else {
            4 * (c + 1) + k
        };
        w += 1;
    }
    idx
}

/// The i16 scales per group of 16 (`sc16`) as [`Super::sc`] of a type that is not
/// `WIDE`: word vectors for the packed dots of registers 0, 1 and 2, 3.
///
/// # Safety
/// The token's features present.
#[inline(always)]
unsafe fn paired(sc16: __m256i) -> [__m512i; 4] {
    const IDX: [[i16; 32]; 2] = [pair_words(0), pair_words(2)];
    // SAFETY: caller; IDX rows are 64 bytes.
    unsafe {
        let s = _mm512_castsi256_si512(sc16);
        let i0 = _mm512_loadu_si512(IDX[0].as_ptr() as *const __m512i);
        let i1 = _mm512_loadu_si512(IDX[1].as_ptr() as *const __m512i);
        [
            _mm512_permutexvar_epi16(i0, s),
            _mm512_permutexvar_epi16(i1, s),
            _mm512_setzero_si512(),
            _mm512_setzero_si512(),
        ]
    }
}

/// The super-block at `p` unpacked through the common form.
///
/// # Safety
/// `B::SIZE` readable bytes at `p`; the token's features present.
#[inline(always)]
unsafe fn unpack_raw<B: KQuant>(p: *const u8) -> Super {
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
        let sc = if B::WIDE {
            let s = _mm512_cvtepi16_epi32(r.sc);
            core::array::from_fn(|c| {
                _mm512_permutexvar_epi32(_mm512_loadu_si512(IDX[c].as_ptr() as *const __m512i), s)
            })
        } else {
            paired(r.sc)
        };
        Super {
            q,
            sc,
            min: min_of::<B>(r.min),
            dd: dd_of::<B>(r.d, r.dmin),
        }
    }
}

/// 32 bytes at `p` in both halves of a register, the upper half shifted right by 4
/// bits and both masked to nibbles: the low nibbles (elements `l`) then the high ones
/// (elements `32 + l`) of a Q4_K/Q5_K chunk, i.e. 64 quants in element order.
///
/// # Safety
/// 32 readable bytes at `p`; AVX-512F present.
#[inline(always)]
unsafe fn nibbles64(p: *const u8) -> __m512i {
    // SAFETY: caller.
    unsafe {
        let v = _mm512_broadcast_i64x4(_mm256_loadu_si256(p as *const __m256i));
        let v = _mm512_srlv_epi64(v, _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0));
        _mm512_and_si512(v, _mm512_set1_epi8(0x0f))
    }
}

/// Q4_K/Q5_K's 16-byte header at `p` (`d`, `dmin`, 12 bytes of 6-bit scales and
/// minimums in ggml's `get_scale_min_k4` packing): the 8 scales then the 8 minimums as
/// bytes, `d`, `dmin`. The packing decoded in one register (dwords `a, b, c` of the
/// scale bytes): scales 0..4 `a & 63`, 4..8 `c & 15 | (a >> 2) & 0x30`; minimums
/// 0..4 `b & 63`, 4..8 `c >> 4 & 15 | (b >> 2) & 0x30`.
///
/// # Safety
/// 16 readable bytes at `p`; the token's features present.
#[inline(always)]
unsafe fn head_k4(p: *const u8) -> (__m128i, f32, f32) {
    // SAFETY: caller.
    unsafe {
        let v = _mm_loadu_si128(p as *const __m128i);
        // Dwords [a, c, b, c] and [a, a, b, b].
        let t1 = _mm_shuffle_epi32::<0b11_10_11_01>(v);
        let t2 = _mm_shuffle_epi32::<0b10_10_01_01>(v);
        let lo = _mm_and_si128(
            _mm_srlv_epi32(t1, _mm_setr_epi32(0, 0, 0, 4)),
            _mm_setr_epi32(0x3f3f_3f3f, 0x0f0f_0f0f, 0x3f3f_3f3f, 0x0f0f_0f0f),
        );
        // lo | (t2 >> 2) & mask
        let sm = _mm_ternarylogic_epi32::<0xf8>(
            lo,
            _mm_srli_epi32::<2>(t2),
            _mm_setr_epi32(0, 0x3030_3030, 0, 0x3030_3030),
        );
        let f = _mm_cvtph_ps(v);
        (sm, _mm_cvtss_f32(f), _mm_cvtss_f32(_mm_movehdup_ps(f)))
    }
}

/// Q4_K/Q5_K's scales (bytes 0..8 of `sm`) for the four quant registers, and the
/// minimums (bytes 8..16) as i16 per group of 16.
///
/// # Safety
/// The token's features present.
#[inline(always)]
unsafe fn scales_k4_512(sm: __m128i) -> ([__m512i; 4], __m256i) {
    // SAFETY: caller.
    unsafe {
        (
            paired(_mm256_cvtepu8_epi16(_mm_unpacklo_epi8(sm, sm))),
            _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm)),
        )
    }
}

impl K512 for Q4K {
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> Super {
        // SAFETY: header at 0..16, qs at 16..144 (caller). Register c is chunk c's
        // low then high nibbles: elements 64c..64c + 64 in order.
        unsafe {
            let (sm, d, dmin) = head_k4(p);
            let (sc, min) = scales_k4_512(sm);
            Super {
                q: [
                    nibbles64(p.add(16)),
                    nibbles64(p.add(48)),
                    nibbles64(p.add(80)),
                    nibbles64(p.add(112)),
                ],
                sc,
                min,
                dd: dd_of::<Self>(d, dmin),
            }
        }
    }
}

impl K512 for Q5K {
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> Super {
        // SAFETY: header at 0..16, qh at 16..48, qs at 48..176 (caller). Elements
        // 32k + l take bit k of qh[l] as their 16s: register c holds k = 2c, 2c + 1,
        // and a rotation of each 64-bit lane by 4 − k brings bit k of every byte to 4.
        unsafe {
            let (sm, d, dmin) = head_k4(p);
            let (sc, min) = scales_k4_512(sm);
            let h = _mm512_broadcast_i64x4(_mm256_loadu_si256(p.add(16) as *const __m256i));
            // Rotation counts (4 − k) mod 64 for k = 2c (lanes 0..4), 2c + 1 (4..8).
            // (No closures here: they would not inherit the caller's target features,
            // and the intrinsics in them would become calls.)
            const ROT: [[i64; 8]; 4] = [
                [4, 4, 4, 4, 3, 3, 3, 3],
                [2, 2, 2, 2, 1, 1, 1, 1],
                [0, 0, 0, 0, 63, 63, 63, 63],
                [62, 62, 62, 62, 61, 61, 61, 61],
            ];
            let mut q = [_mm512_setzero_si512(); 4];
            for (c, qc) in q.iter_mut().enumerate() {
                let r = _mm512_loadu_si512(ROT[c].as_ptr() as *const __m512i);
                let hb = _mm512_and_si512(_mm512_rolv_epi64(h, r), _mm512_set1_epi8(0x10));
                *qc = _mm512_or_si512(nibbles64(p.add(48 + 32 * c)), hb);
            }
            Super {
                q,
                sc,
                min,
                dd: dd_of::<Self>(d, dmin),
            }
        }
    }
}

impl K512 for Q6K {
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> Super {
        // SAFETY: ql at 0..128, qh at 128..192, scales at 192..208, d at 208 (caller).
        // Half h: ql[64h..64h + 64]'s low nibbles are elements
        // 128h..128h + 64 in order, its high nibbles 128h + 64..128h + 128; their bits
        // 4..6 are bits 2s..2s + 2 of qh[32h + l] (s = element / 32 % 4), brought to 4
        // by shifting each 64-bit lane of qh (twice in a register) by 4 − 2s.
        unsafe {
            let m4 = _mm512_set1_epi8(0x0f);
            let m2 = _mm512_set1_epi8(0x30);
            let mut q = [_mm512_setzero_si512(); 4];
            for h in 0..2 {
                let l = _mm512_loadu_si512(p.add(64 * h) as *const __m512i);
                let hb = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                    p.add(128 + 32 * h) as *const __m256i
                ));
                let h0 = _mm512_and_si512(
                    _mm512_sllv_epi64(hb, _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4)),
                    m2,
                );
                let h1 = _mm512_and_si512(
                    _mm512_srlv_epi64(hb, _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0)),
                    m2,
                );
                // (a & 0x0f) | h
                q[2 * h] = _mm512_ternarylogic_epi32::<0xec>(l, h0, m4);
                q[2 * h + 1] = _mm512_ternarylogic_epi32::<0xec>(_mm512_srli_epi16::<4>(l), h1, m4);
            }
            let s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(192) as *const __m128i));
            let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(core::ptr::read_unaligned(
                p.add(208) as *const u16,
            ) as i32)));
            Super {
                q,
                sc: paired(s16),
                // The offset 32 comes back out as 32·sc_g·bsum_g (negated: `MIN_D`).
                min: _mm256_mullo_epi16(s16, _mm256_set1_epi16(-32)),
                dd: _mm512_set1_ps(d),
            }
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
        let mut dot = [_mm512_setzero_si512(); 4];
        for (c, dc) in dot.iter_mut().enumerate() {
            let yc = _mm512_loadu_si512(y.qs.as_ptr().add(64 * c) as *const __m512i);
            *dc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u.q[c], yc);
        }
        let s = if B::WIDE {
            let mut s = _mm512_setzero_si512();
            for (dc, sc) in dot.iter().zip(&u.sc) {
                s = _mm512_add_epi32(s, _mm512_mullo_epi32(*dc, *sc));
            }
            s
        } else {
            // Each lane's sum fits i16 (at most 4·63·127): two registers' lanes packed
            // into words meet their scales in one `vpmaddwd`.
            let p01 = _mm512_packs_epi32(dot[0], dot[1]);
            let p23 = _mm512_packs_epi32(dot[2], dot[3]);
            _mm512_dpwssd_epi32(_mm512_madd_epi16(p01, u.sc[0]), p23, u.sc[1])
        };
        let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
        let x = if B::MIN_D {
            // The (negated) minimums join the sum in integers, in lanes 0..8.
            _mm512_dpwssd_epi32(s, _mm512_zextsi256_si512(bs), _mm512_zextsi256_si512(u.min))
        } else {
            // Lanes 0..8: the scaled sums folded; 8..16: the minimums' sums.
            let s8 = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64::<1>(s));
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(s8), _mm256_madd_epi16(bs, u.min))
        };
        let f = _mm512_mul_ps(u.dd, _mm512_set1_ps(y.d));
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(x), f, acc)
    }
}

/// One weight row (`w`, whole super-blocks) · Q8_K activations.
///
/// # Panics
/// If `w.len() != B::SIZE·y.len()`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn dot_row<B: K512>(w: &[u8], y: &[Q8K]) -> f32 {
    assert_eq!(w.len(), B::SIZE * y.len());
    // Two accumulators in registers (an array indexed by `b & 1` would live in memory).
    let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let p = w.as_ptr();
    let mut b = 0;
    // SAFETY (unpacks): super-blocks b, b + 1 < y.len() lie in `w` (length checked).
    while b + 2 <= y.len() {
        unsafe {
            a0 = sb_dot::<B>(&B::unpack(p.add(b * B::SIZE)), &y[b], a0);
            a1 = sb_dot::<B>(&B::unpack(p.add((b + 1) * B::SIZE)), &y[b + 1], a1);
        }
        b += 2;
    }
    if b < y.len() {
        // SAFETY: as above.
        unsafe { a0 = sb_dot::<B>(&B::unpack(p.add(b * B::SIZE)), &y[b], a0) };
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
fn tile_packed<B: K512, const T: usize>(
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
pub(super) fn rows<B: K512>(w: &Matrix<'_>, k: &[Q8K], out: &mut OutRows<'_>) {
    super_block_rows!(w, k, out, B, B::unpack)
}
