//! AVX2 kernels for the super-block types (Q2_K … Q6_K, IQ4_XS) against Q8_K
//! activations, and the per-type unpacking that the AVX-512 kernels (`avx512_k`) share.
//!
//! Every type is brought to one form, [`Raw`]: 256 unsigned bytes in element order
//! (eight 32-byte registers), a signed scale per group of 16 and a "minimum" per group
//! of 16 that multiplies the activations' `bsums`. The dot of a super-block is then
//! `d·d_x·Σ_g sc_g·Σ_{j∈g} q_j·x_j − dmin·d_x·Σ_g min_g·bsum_g` with both sums exact
//! in integers. Types whose quants are signed (Q3_K: −4..3, Q6_K: −32..31, IQ4_XS's
//! table −127..113) go in with an offset that makes them unsigned (+4, +32, +128) and
//! take it back out exactly through a minimum of `offset·sc_g` against `d` itself
//! (`MIN_D`), so the integer sum is the scalar reference's, not a difference of two
//! rounded floats.
//!
//! The quants meet the activations through `maddubs` (u8 × i8 → pairs in i16) and
//! `madd` with the group scales (→ i32): a pair is at most 2·63·127 for Q6_K, no
//! saturation. IQ4_XS's offset bytes (≤ 241) could saturate a pair, so its quants go
//! back to signed and through ggml's sign trick (|w| · sign(x, w), ≤ 2·127·127) with no
//! minimum (`WIDE`). Each super-block's 8 integer lanes are scaled into one f32
//! accumulator per output; only the order of the f32 sums differs from `scalar`.
//!
//! Shapes: generation reads one weight row at a time; prompts unpack each 4-row chunk
//! of up to [`KS`] super-blocks once into an L1-sized buffer ([`Super`]s: quants and
//! per-register scale words ready for `madd`) and sweep the activations over it in
//! tiles of 4 rows × 2 activations (`packed_rows!`).

use super::act::{Q8K, QK_K};
use super::marker::{Iq4Xs, Q2K, Q3K, Q4K, Q5K, Q6K};
use super::stream::prefetch_ahead;
use super::{Matrix, OutRows};
use core::arch::x86_64::*;
use llm_format::quant::IQ4_NL_VALUES;

/// A super-block in the common form (see the module docs), straight from its bytes.
#[derive(Clone, Copy)]
pub(super) struct Raw {
    /// Quants 32k..32k+32 in register k, unsigned (offset added for signed types).
    pub(super) q: [__m256i; 8],
    /// Scale of each group of 16, i16.
    pub(super) sc: __m256i,
    /// Minimum of each group of 16, i16 (`offset·sc` for the `MIN_D` types).
    pub(super) min: __m256i,
    /// Super-block scale.
    pub(super) d: f32,
    /// Scale of the minimums (`d` for the `MIN_D` types).
    pub(super) dmin: f32,
}

/// A super-block type as the SIMD kernels read it.
pub(super) trait KQuant {
    /// Bytes per super-block.
    const SIZE: usize;
    /// The minimums multiply `d` (offsets of signed quants): they are taken out of the
    /// integer sum before scaling.
    const MIN_D: bool;
    /// Products of the offset quants can pass i16 in a `maddubs` pair (IQ4_XS).
    const WIDE: bool;
    /// The super-block at `p` in the common form.
    ///
    /// # Safety
    /// `SIZE` readable bytes at `p`; AVX2 and F16C present.
    unsafe fn raw(p: *const u8) -> Raw;
}

/// The f16 at `p` as f32.
///
/// # Safety
/// 2 readable bytes at `p`; F16C present.
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: caller.
    unsafe {
        let h = core::ptr::read_unaligned(p as *const u16) as i16;
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(h)))
    }
}

/// The u32 at `p` (little-endian).
///
/// # Safety
/// 4 readable bytes at `p`.
#[inline(always)]
unsafe fn u32_at(p: *const u8) -> u32 {
    // SAFETY: caller.
    unsafe { core::ptr::read_unaligned(p as *const u32) }
}

/// 32 bytes at `p`.
///
/// # Safety
/// 32 readable bytes at `p`; AVX present.
#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    // SAFETY: caller.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// `0x10`-style bit `bit` (a byte value) where bit `k` of each byte of `h` is set:
/// `(h >> k & 1)·bit`, as `cmpeq` so the shift count may vary.
///
/// # Safety
/// AVX2 present.
#[inline(always)]
unsafe fn bit_of(h: __m256i, k: usize, bit: i8) -> __m256i {
    // SAFETY: caller.
    unsafe {
        let m = _mm256_set1_epi8((1u8 << k) as i8);
        _mm256_and_si256(
            _mm256_cmpeq_epi8(_mm256_and_si256(h, m), m),
            _mm256_set1_epi8(bit),
        )
    }
}

/// Q4_K/Q5_K's 8 scales and 8 minimums (6 bits each, ggml's `get_scale_min_k4`
/// packing) as 16 bytes: scales 0..8, then minimums 0..8.
///
/// # Safety
/// 12 readable bytes at `p`; SSE2 present.
#[inline(always)]
unsafe fn scales_k4(p: *const u8) -> __m128i {
    // SAFETY: caller.
    let (a, b, c) = unsafe { (u32_at(p), u32_at(p.add(4)), u32_at(p.add(8))) };
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    // Scales 0..4: a & 63; 4..8: c's low nibbles, a's top 2 bits above them.
    let s0 = a & LOW6;
    let s1 = (c & LOW4) | (((a >> 6) & LOW2) << 4);
    // Minimums 0..4: b & 63; 4..8: c's high nibbles, b's top 2 bits above them.
    let m0 = b & LOW6;
    let m1 = ((c >> 4) & LOW4) | (((b >> 6) & LOW2) << 4);
    _mm_set_epi32(m1 as i32, m0 as i32, s1 as i32, s0 as i32)
}

/// Scales and minimums per group of 32 (`v`: 8 scales then 8 minimums, bytes) as i16
/// per group of 16.
///
/// # Safety
/// AVX2 present.
#[inline(always)]
unsafe fn per16(v: __m128i) -> (__m256i, __m256i) {
    // SAFETY: caller.
    unsafe {
        (
            _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(v, v)),
            _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(v, v)),
        )
    }
}

/// The 128 nibble bytes of Q4_K/Q5_K at `p` as quants 0..16 in element order: byte `l`
/// of chunk `c` holds element `64c + l` (low) and `64c + 32 + l` (high).
///
/// # Safety
/// 128 readable bytes at `p`; AVX2 present.
#[inline(always)]
unsafe fn nibbles_k4(p: *const u8) -> [__m256i; 8] {
    // SAFETY: caller.
    unsafe {
        let m = _mm256_set1_epi8(0x0f);
        let mut q = [_mm256_setzero_si256(); 8];
        for c in 0..4 {
            let v = load(p.add(32 * c));
            q[2 * c] = _mm256_and_si256(v, m);
            q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m);
        }
        q
    }
}

/// Q2_K/Q3_K's 2-bit quants at `p` (64 bytes): byte `l` of chunk `c` holds element
/// `128c + 32s + l` at bits `2s..2s+2`.
///
/// # Safety
/// 64 readable bytes at `p`; AVX2 present.
#[inline(always)]
unsafe fn crumbs(p: *const u8) -> [__m256i; 8] {
    // SAFETY: caller.
    unsafe {
        let m = _mm256_set1_epi8(3);
        let mut q = [_mm256_setzero_si256(); 8];
        for c in 0..2 {
            let v = load(p.add(32 * c));
            q[4 * c] = _mm256_and_si256(v, m);
            q[4 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 2), m);
            q[4 * c + 2] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m);
            q[4 * c + 3] = _mm256_and_si256(_mm256_srli_epi16(v, 6), m);
        }
        q
    }
}

impl KQuant for Q4K {
    const SIZE: usize = 144;
    const MIN_D: bool = false;
    const WIDE: bool = false;
    #[inline(always)]
    unsafe fn raw(p: *const u8) -> Raw {
        // SAFETY: d, dmin at 0..4, scales at 4..16, qs at 16..144 (caller).
        unsafe {
            let (sc, min) = per16(scales_k4(p.add(4)));
            Raw {
                q: nibbles_k4(p.add(16)),
                sc,
                min,
                d: f16_at(p),
                dmin: f16_at(p.add(2)),
            }
        }
    }
}

impl KQuant for Q5K {
    const SIZE: usize = 176;
    const MIN_D: bool = false;
    const WIDE: bool = false;
    #[inline(always)]
    unsafe fn raw(p: *const u8) -> Raw {
        // SAFETY: d, dmin at 0..4, scales at 4..16, qh at 16..48, qs at 48..176
        // (caller). Register k (elements 32k..) takes bit k of qh[l] as its 16s.
        unsafe {
            let (sc, min) = per16(scales_k4(p.add(4)));
            let mut q = nibbles_k4(p.add(48));
            let h = load(p.add(16));
            for (k, qk) in q.iter_mut().enumerate() {
                *qk = _mm256_or_si256(*qk, bit_of(h, k, 0x10));
            }
            Raw {
                q,
                sc,
                min,
                d: f16_at(p),
                dmin: f16_at(p.add(2)),
            }
        }
    }
}

impl KQuant for Q6K {
    const SIZE: usize = 210;
    const MIN_D: bool = true;
    const WIDE: bool = false;
    #[inline(always)]
    unsafe fn raw(p: *const u8) -> Raw {
        // SAFETY: ql at 0..128, qh at 128..192, scales at 192..208, d at 208 (caller).
        // In each half of 128: register 4h + s takes ql[64h + 32(s%2) + l]'s low (s < 2)
        // or high nibble and bits 2s..2s+2 of qh[32h + l] as bits 4..6: quant q + 32.
        unsafe {
            let m4 = _mm256_set1_epi8(0x0f);
            let m2 = _mm256_set1_epi8(0x30);
            let mut q = [_mm256_setzero_si256(); 8];
            for h in 0..2 {
                let a = load(p.add(64 * h));
                let b = load(p.add(64 * h + 32));
                let hb = load(p.add(128 + 32 * h));
                let hi = |v: __m256i| _mm256_and_si256(v, m2);
                q[4 * h] = _mm256_or_si256(_mm256_and_si256(a, m4), hi(_mm256_slli_epi16(hb, 4)));
                q[4 * h + 1] =
                    _mm256_or_si256(_mm256_and_si256(b, m4), hi(_mm256_slli_epi16(hb, 2)));
                q[4 * h + 2] =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), m4), hi(hb));
                q[4 * h + 3] = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(b, 4), m4),
                    hi(_mm256_srli_epi16(hb, 2)),
                );
            }
            let sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(192) as *const __m128i));
            Raw {
                q,
                sc,
                // The offset 32 comes back out as 32·sc_g·bsum_g.
                min: _mm256_slli_epi16(sc, 5),
                d: f16_at(p.add(208)),
                dmin: f16_at(p.add(208)),
            }
        }
    }
}

impl KQuant for Q3K {
    const SIZE: usize = 110;
    const MIN_D: bool = true;
    const WIDE: bool = false;
    #[inline(always)]
    unsafe fn raw(p: *const u8) -> Raw {
        // SAFETY: hmask at 0..32, qs at 32..96, scales at 96..108, d at 108 (caller).
        // Quant + 4 = low 2 bits + 4 where the high-mask bit is set.
        unsafe {
            let mut q = crumbs(p.add(32));
            let h = load(p);
            for (k, qk) in q.iter_mut().enumerate() {
                *qk = _mm256_or_si256(*qk, bit_of(h, k, 4));
            }
            // 16 scales of 6 bits: low nibbles in bytes 0..8 (scales 0..8 low, 8..16
            // high nibbles), 2-bit high parts in bytes 8..12 (scale i at bits 2(i/4) of
            // byte 8 + i%4).
            let (a, b, c) = (u32_at(p.add(96)), u32_at(p.add(100)), u32_at(p.add(104)));
            const LOW4: u32 = 0x0f0f_0f0f;
            const LOW2: u32 = 0x0303_0303;
            let s0 = (a & LOW4) | ((c & LOW2) << 4);
            let s1 = (b & LOW4) | (((c >> 2) & LOW2) << 4);
            let s2 = ((a >> 4) & LOW4) | (((c >> 4) & LOW2) << 4);
            let s3 = ((b >> 4) & LOW4) | (((c >> 6) & LOW2) << 4);
            let s = _mm_set_epi32(s3 as i32, s2 as i32, s1 as i32, s0 as i32);
            let sc = _mm256_sub_epi16(_mm256_cvtepu8_epi16(s), _mm256_set1_epi16(32));
            let d = f16_at(p.add(108));
            Raw {
                q,
                sc,
                min: _mm256_slli_epi16(sc, 2),
                d,
                dmin: d,
            }
        }
    }
}

impl KQuant for Q2K {
    const SIZE: usize = 84;
    const MIN_D: bool = false;
    const WIDE: bool = false;
    #[inline(always)]
    unsafe fn raw(p: *const u8) -> Raw {
        // SAFETY: scales at 0..16, qs at 16..80, d, dmin at 80..84 (caller).
        unsafe {
            let s = _mm_loadu_si128(p as *const __m128i);
            let m = _mm_set1_epi8(0x0f);
            Raw {
                q: crumbs(p.add(16)),
                sc: _mm256_cvtepu8_epi16(_mm_and_si128(s, m)),
                min: _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), m)),
                d: f16_at(p.add(80)),
                dmin: f16_at(p.add(82)),
            }
        }
    }
}

/// IQ4_NL's table plus 128 (unsigned), twice (one copy per 128-bit lane).
const IQ4_TABLE: [u8; 32] = {
    let mut t = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        t[i] = (IQ4_NL_VALUES[i % 16] as i16 + 128) as u8;
        i += 1;
    }
    t
};

/// 16 index bytes at `p` looked up in `table` (IQ4_NL's values + 128): low nibbles
/// are elements 0..16, high nibbles 16..32.
///
/// # Safety
/// 16 readable bytes at `p`; AVX2 present.
#[inline(always)]
pub(super) unsafe fn iq4_lookup(p: *const u8, table: __m256i) -> __m256i {
    // SAFETY: caller.
    unsafe {
        let v = _mm_loadu_si128(p as *const __m128i);
        let i = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
        _mm256_shuffle_epi8(table, _mm256_and_si256(i, _mm256_set1_epi8(0x0f)))
    }
}

/// IQ4_NL's table plus 128 in both lanes of a register.
///
/// # Safety
/// AVX present.
#[inline(always)]
pub(super) unsafe fn iq4_table() -> __m256i {
    // SAFETY: IQ4_TABLE is 32 bytes.
    unsafe { load(IQ4_TABLE.as_ptr()) }
}

impl KQuant for Iq4Xs {
    const SIZE: usize = 136;
    const MIN_D: bool = true;
    const WIDE: bool = true;
    #[inline(always)]
    unsafe fn raw(p: *const u8) -> Raw {
        // SAFETY: d at 0, scales_h at 2..4, scales_l at 4..8, qs at 8..136 (caller).
        unsafe {
            let t = iq4_table();
            let q = core::array::from_fn(|k| iq4_lookup(p.add(8 + 16 * k), t));
            let h = core::ptr::read_unaligned(p.add(2) as *const u16) as u64;
            let l = u32_at(p.add(4)) as u64;
            // Group i's 6-bit scale in byte i: nibble i of `l`, bits 2i..2i+2 of `h`.
            let mut s = 0u64;
            for i in 0..8 {
                let v = ((l >> (4 * i)) & 0x0f) | (((h >> (2 * i)) & 3) << 4);
                s |= v << (8 * i);
            }
            let s = _mm_cvtsi64_si128(s as i64);
            let sc = _mm256_sub_epi16(
                _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(s, s)),
                _mm256_set1_epi16(32),
            );
            let d = f16_at(p);
            Raw {
                q,
                sc,
                min: _mm256_slli_epi16(sc, 7),
                d,
                dmin: d,
            }
        }
    }
}

/// A super-block unpacked for `maddubs`/`madd`: the quants, and for register k the
/// i16 scale words of its two groups of 16 (`sc[k]`: group 2k in the lower lane, 2k+1
/// in the upper).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Super {
    q: [__m256i; 8],
    sc: [__m256i; 8],
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

/// The super-block at `p` unpacked.
///
/// # Safety
/// `B::SIZE` readable bytes at `p`; AVX2 and F16C present.
#[inline(always)]
unsafe fn unpack<B: KQuant>(p: *const u8) -> Super {
    // SAFETY: caller.
    unsafe {
        let r = B::raw(p);
        // Group scales of lane 0 (groups 0..8) and lane 1 (8..16) in both lanes.
        let lo = _mm256_permute2x128_si256(r.sc, r.sc, 0x00);
        let hi = _mm256_permute2x128_si256(r.sc, r.sc, 0x11);
        let sc = core::array::from_fn(|k| {
            // Register k: groups 2k, 2k+1 = words (2k) % 8 and (2k+1) % 8 of its half.
            let w = (2 * k % 8) as i8;
            let (a, b) = (2 * w, 2 * w + 2);
            let idx = _mm256_setr_epi8(
                a,
                a + 1,
                a,
                a + 1,
                a,
                a + 1,
                a,
                a + 1,
                a,
                a + 1,
                a,
                a + 1,
                a,
                a + 1,
                a,
                a + 1,
                b,
                b + 1,
                b,
                b + 1,
                b,
                b + 1,
                b,
                b + 1,
                b,
                b + 1,
                b,
                b + 1,
                b,
                b + 1,
                b,
                b + 1,
            );
            _mm256_shuffle_epi8(if k < 4 { lo } else { hi }, idx)
        });
        let mut q = r.q;
        if B::WIDE {
            // Back to signed: |w| ≤ 127 for the sign trick. (A loop, not `map`: a
            // closure would not inherit the target features and its intrinsics would
            // become calls.)
            for v in q.iter_mut() {
                *v = _mm256_xor_si256(*v, _mm256_set1_epi8(-128));
            }
        }
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
/// sums exact and in 8 lanes.
///
/// # Safety
/// AVX2 and FMA present.
#[inline(always)]
unsafe fn sb_dot<B: KQuant>(u: &Super, y: &Q8K, acc: __m256) -> __m256 {
    // SAFETY: caller; `y.qs` is 256 bytes, `y.bsums` 32.
    unsafe {
        let mut s = _mm256_setzero_si256();
        for k in 0..8 {
            let yk = load(y.qs.as_ptr().add(32 * k) as *const u8);
            let p = if B::WIDE {
                _mm256_maddubs_epi16(
                    _mm256_sign_epi8(u.q[k], u.q[k]),
                    _mm256_sign_epi8(yk, u.q[k]),
                )
            } else {
                _mm256_maddubs_epi16(u.q[k], yk)
            };
            s = _mm256_add_epi32(s, _mm256_madd_epi16(p, u.sc[k]));
        }
        let dy = _mm256_set1_ps(u.d * y.d);
        if B::WIDE {
            return _mm256_fmadd_ps(dy, _mm256_cvtepi32_ps(s), acc);
        }
        let bs = load(y.bsums.as_ptr() as *const u8);
        let m = _mm256_madd_epi16(bs, u.min);
        if B::MIN_D {
            _mm256_fmadd_ps(dy, _mm256_cvtepi32_ps(_mm256_sub_epi32(s, m)), acc)
        } else {
            let acc = _mm256_fmadd_ps(dy, _mm256_cvtepi32_ps(s), acc);
            _mm256_fnmadd_ps(_mm256_set1_ps(u.dmin * y.d), _mm256_cvtepi32_ps(m), acc)
        }
    }
}

/// Horizontal sum.
#[inline(always)]
fn hsum(v: __m256) -> f32 {
    // SAFETY: only reached from functions with AVX2 enabled.
    unsafe { super::avx2::hsum(v) }
}

/// One weight row (`w`, whole super-blocks) · Q8_K activations.
///
/// # Panics
/// If `w.len() != B::SIZE·y.len()`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_row<B: KQuant>(w: &[u8], y: &[Q8K]) -> f32 {
    assert_eq!(w.len(), B::SIZE * y.len());
    // Two accumulators in registers (an array indexed by `b & 1` would live in memory).
    let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
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
    hsum(_mm256_add_ps(a0, a1))
}

/// Super-blocks per column chunk of a prompt: 4 rows × 8 × 576 bytes = 18 KiB of
/// unpacked weights, which stay in L1 while the activations pass over them.
const KS: usize = 8;

/// Activations per tile of a prompt (4 rows × 2: 8 accumulators).
const TA: usize = 2;

/// `[[w_j·y_k] for k in 0..T] for j in 0..4]` over the unpacked chunk (`chunk[j][..len]`,
/// `ys[k]` of `len` super-blocks), padded to [`TA`] activations.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_packed<B: KQuant, const T: usize>(
    chunk: &[[Super; KS]; 4],
    ys: [&[Q8K]; T],
) -> [[f32; TA]; 4] {
    let len = ys[0].len();
    assert!(len <= KS && ys.iter().all(|y| y.len() == len));
    let mut acc = [[_mm256_setzero_ps(); T]; 4];
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
            *o = hsum(*a);
        }
    }
    out
}

/// Rows `out.r0..out.r1` of `y = x·Wᵀ` for a super-block weight type: generation one
/// row at a time, prompts over unpacked 4-row chunks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn rows<B: KQuant>(w: &Matrix<'_>, k: &[Q8K], out: &mut OutRows<'_>) {
    super_block_rows!(w, k, out, B, unpack::<B>)
}
