//! x86-64 AVX2 + FMA + F16C kernels (256-bit): the same functions as `scalar`.
//!
//! Floats: register tiles of 4 weight rows × 2 activations for prompts, weights
//! widened to f32 in registers (F16C for f16, a 16-bit shift for bf16), the last
//! `cols % 8` in scalar code; generation one row at a time in four FMA chains
//! (`dot_float`): one weight stream per thread reads memory faster than interleaved
//! row tiles (PERF.md has the figures).
//!
//! Blocks, prompts (`n > 1`, [`packed`]): for each group of 4 weight rows, a chunk of
//! up to 16 quads (4 blocks each) is unpacked once into an L1-sized buffer and then
//! multiplied with every activation in register tiles of 4 rows × 2 activations,
//! instead of being unpacked again for every activation. The activations come as
//! [`Q8Quad`]s (elements 0..16 of two blocks in one register, 16..32 in another, the
//! order of Q4 nibbles), so each weight register pair holds two blocks and the
//! integer sum of each block lands in its own 4 lanes, where the quad's `dq` scales
//! it. The integer block sums are exact:
//! * Q4_0/Q4_1: the raw nibbles go in unsigned (`maddubs`: u8 × i8, pair sums ≤
//!   2·15·127, no saturation); Q4_0's +8 offset comes back out in integers from the
//!   quad's `-8·Σq_x`, Q4_1's `m_w·s_x` joins the f32 sum in the same lanes.
//!   Activations go in pairs (`tile_pairs`): two `hadd_epi16` fold the 16-bit sums of
//!   2 activations × 4 blocks into one register (16 products per word, ≤ 30480, still
//!   exact), so one conversion, multiply and FMA serve 8 blocks instead of 2.
//! * Q8_0: ggml's sign trick, |w| (unpacked once) times the activation negated where
//!   `w < 0`; pairs reach 2·128·127, so the low and high halves widen separately.
//!
//! The `nb % 4` blocks after the last whole quad go through the per-block code. Only
//! the f32 summation order differs from the scalar reference.
//!
//! Blocks, generation (`n = 1`): one row at a time. Q8_0: ggml's AVX2 scheme, one
//! 32-byte integer dot per block (`maddubs` on |w| and sign-adjusted activations, then
//! `madd` to i32), scaled by `d_w·d_x` into two alternating f32 accumulators.
//! Q4_0/Q4_1: two blocks per register pair from the activation quads (see
//! `dot_q4_quads`). The f16 scales are widened with `vpbroadcastw` + `vcvtph2ps`: a
//! partial-register `vpinsrw` would chain every block to the previous one (it halved
//! the speed).
//!
//! Q5_0, Q5_1 and IQ4_NL go one block per step for generation and prompts alike
//! (ggml's AVX2 scheme: fifth bits spread to bytes by `bits32`, IQ4_NL's values by one
//! `pshufb`). The super-block types (Q2_K … Q6_K, IQ4_XS) are in `avx2_k`.

use super::act::{self, Q8Act, Q8Quad, QK};
use super::avx2_k;
use super::marker::{Iq4Xs, BF16, F16, F32, Q2K, Q3K, Q4K, Q4_0, Q4_1, Q5K, Q6K, Q8_0};
use core::arch::x86_64::*;
use llm_format::DType;

/// Proof that the CPU has AVX2, FMA and F16C: exists only through [`Avx2::detect`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// The token, if this CPU (std: run-time detection; no_std: compile-time target
    /// features) has AVX2, FMA and F16C.
    pub(crate) fn detect() -> Option<Avx2> {
        #[cfg(feature = "std")]
        let ok = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        #[cfg(not(feature = "std"))]
        let ok = cfg!(all(
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c"
        ));
        ok.then_some(Avx2(()))
    }

    /// See `scalar::rows`; `quads` holds the activations as `act::build_quads` lays
    /// them out.
    pub(crate) fn rows(
        self,
        w: &super::Matrix<'_>,
        acts: &super::Acts<'_>,
        out: &mut super::OutRows<'_>,
    ) {
        // SAFETY: the token exists only if the CPU has AVX2, FMA and F16C.
        unsafe {
            if w.layout == llm_format::Layout::R16 {
                // `Engine::reads_layout`: generation over floats only.
                return super::avx2_r16::gen_floats(w, acts.x, out);
            }
            rows(w, acts, out)
        }
    }

    /// See `act::quantize` (bit-identical for finite inputs).
    pub(crate) fn quantize(self, x: &[f32], out: &mut [Q8Act]) {
        // SAFETY: as in `rows`.
        unsafe { quantize(x, out) }
    }
}

/// Floats in register tiles of 4 weight rows × 2 activations; blocks for prompts
/// through [`packed`], for generation one row at a time (Q4 two blocks per register
/// pair, from the quads).
#[target_feature(enable = "avx2,fma,f16c")]
fn rows(w: &super::Matrix<'_>, acts: &super::Acts<'_>, out: &mut super::OutRows<'_>) {
    let (x, a, quads) = (acts.x, acts.a, acts.quads);
    let cols = w.cols;
    let nb = cols / QK;
    let nq = nb / 4;
    let fl = |i: usize| &x[i * cols..(i + 1) * cols];
    match w.dtype {
        DType::F32 => drive!(w, fl, out, tile_f32, 4 x 2, 1),
        DType::F16 => drive!(w, fl, out, tile_f16, 4 x 2, 1),
        DType::BF16 => drive!(w, fl, out, tile_bf16, 4 x 2, 1),
        // Prompts: weights unpacked once per 4 rows (`packed`).
        DType::Q8_0 if out.n() > 1 => packed::<Q8_0>(w, a, quads, out),
        DType::Q4_0 if out.n() > 1 => packed::<Q4_0>(w, a, quads, out),
        DType::Q4_1 if out.n() > 1 => packed::<Q4_1>(w, a, quads, out),
        DType::Q4_0 | DType::Q4_1 => {
            let q41 = w.dtype == DType::Q4_1;
            for r in out.r0..out.r1 {
                let row = w.row(r);
                for i in 0..out.n() {
                    let (ai, qi) = (&a[i * nb..(i + 1) * nb], &quads[i * nq..(i + 1) * nq]);
                    let v = if q41 {
                        dot_q4_quads::<true>(row, ai, qi)
                    } else {
                        dot_q4_quads::<false>(row, ai, qi)
                    };
                    out.set(i, r, v);
                }
            }
        }
        DType::Q8_0 => each_row!(w, out, dot_q8_0, a, nb),
        // Super-blocks: `avx2_k`.
        DType::Q2_K => avx2_k::rows::<Q2K>(w, acts.k, out),
        DType::Q3_K => avx2_k::rows::<Q3K>(w, acts.k, out),
        DType::Q4_K => avx2_k::rows::<Q4K>(w, acts.k, out),
        DType::Q5_K => avx2_k::rows::<Q5K>(w, acts.k, out),
        DType::Q6_K => avx2_k::rows::<Q6K>(w, acts.k, out),
        DType::IQ4_XS => avx2_k::rows::<Iq4Xs>(w, acts.k, out),
        // One block at a time, also for prompts (no unpacked reuse yet).
        DType::Q5_0 => each_row!(w, out, dot_q5_0, a, nb),
        DType::Q5_1 => each_row!(w, out, dot_q5_1, a, nb),
        DType::IQ4_NL => each_row!(w, out, dot_iq4_nl, a, nb),
    }
}

/// A Q4_0 (`Q41 = false`) or Q4_1 row · quantised activations, two blocks per register
/// pair: the quads put elements 0..16 of two blocks in one register and 16..32 in
/// another, the order of the nibbles, so unpacking is one shift and two masks. The
/// nibbles go in unsigned (`maddubs`: u8 × i8, pair sums ≤ 2·15·127, no saturation);
/// Q4_0's −8 comes back out as `8·Σ d_w·(d_x·Σq_x)`, Q4_1's `m_w·s_x` the same way.
/// Blocks after the last whole quad take the per-block code.
///
/// # Panics
/// If `w.len() != (18 or 20)·a.len()` or `quads.len() != a.len() / 4`.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q4_quads<const Q41: bool>(w: &[u8], a: &[Q8Act], quads: &[Q8Quad]) -> f32 {
    let (size, off) = if Q41 { (20, 4) } else { (18, 2) };
    let nb = a.len();
    let nq = nb / 4;
    assert_eq!(w.len(), nb * size);
    assert_eq!(quads.len(), nq);
    let m = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let pair = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut corr = _mm_setzero_ps();
    for (g, q) in quads.iter().enumerate() {
        #[allow(clippy::needless_range_loop)] // h also offsets every load
        for h in 0..2 {
            // SAFETY: blocks 4g+2h and 4g+2h+1 < 4·nq <= nb lie in `w` (length
            // checked above); each quad array has 64 bytes (32 at 32·h) and 4 floats
            // (2 at 2·h); x86 is little-endian, so f16 fields read as u16.
            unsafe {
                let p = w.as_ptr().add((4 * g + 2 * h) * size);
                let v = _mm256_set_m128i(
                    _mm_loadu_si128(p.add(size + off) as *const __m128i),
                    _mm_loadu_si128(p.add(off) as *const __m128i),
                );
                let lo = _mm256_and_si256(v, m);
                let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m);
                let ylo = _mm256_loadu_si256(q.lo.as_ptr().add(32 * h) as *const __m256i);
                let yhi = _mm256_loadu_si256(q.hi.as_ptr().add(32 * h) as *const __m256i);
                let s16 =
                    _mm256_add_epi16(_mm256_maddubs_epi16(lo, ylo), _mm256_maddubs_epi16(hi, yhi));
                let s32 = _mm256_madd_epi16(s16, ones);
                let h0 = core::ptr::read_unaligned(p as *const u16) as i32;
                let h1 = core::ptr::read_unaligned(p.add(size) as *const u16) as i32;
                let dw = _mm_cvtph_ps(_mm_cvtsi32_si128(h0 | (h1 << 16)));
                let dy =
                    _mm_castsi128_ps(_mm_loadl_epi64(q.d.as_ptr().add(2 * h) as *const __m128i));
                let d = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_mul_ps(dw, dy)), pair);
                acc[h] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s32), acc[h]);
                let (cw, cy) = if Q41 {
                    let m0 = core::ptr::read_unaligned(p.add(2) as *const u16) as i32;
                    let m1 = core::ptr::read_unaligned(p.add(size + 2) as *const u16) as i32;
                    (
                        _mm_cvtph_ps(_mm_cvtsi32_si128(m0 | (m1 << 16))),
                        q.s.as_ptr().add(2 * h),
                    )
                } else {
                    (dw, q.dsum.as_ptr().add(2 * h))
                };
                let cy = _mm_castsi128_ps(_mm_loadl_epi64(cy as *const __m128i));
                corr = _mm_fmadd_ps(cw, cy, corr);
            }
        }
    }
    let c = _mm_add_ps(corr, _mm_movehl_ps(corr, corr));
    let c = _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
    let tail = if Q41 {
        c + dot_q4_1(&w[4 * nq * size..], &a[4 * nq..])
    } else {
        -8.0 * c + dot_q4_0(&w[4 * nq * size..], &a[4 * nq..])
    };
    hsum(_mm256_add_ps(acc[0], acc[1])) + tail
}

/// One weight quad (4 blocks of a row) unpacked for a prompt's activations: `q[2h]`
/// holds elements 0..16 of blocks 2h and 2h+1 (one per 128-bit lane, the layout of
/// the activation quads' `lo`), `q[2h + 1]` elements 16..32 (`hi`); `s` the same
/// bytes' magnitudes (Q8_0 only); `d` and `m` each block's scale and minimum (Q4_1)
/// in the 4 lanes its integer sum lands in (`d[h]`: blocks 2h, 2h+1).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Unpacked {
    q: [__m256i; 4],
    s: [__m256i; 4],
    d: [__m256; 2],
    m: [__m256; 2],
    dp: __m256,
    mp: __m256,
}

impl Unpacked {
    /// All zero: scale 0, adds nothing.
    #[inline(always)]
    fn zero() -> Unpacked {
        // SAFETY: every field is an array of SIMD vectors, for which all-zero bits are
        // a valid value (no CPU feature is involved in writing zero bytes).
        unsafe { core::mem::zeroed() }
    }
}

/// Quads per column chunk of [`packed`]: 4 rows × 16 quads × 192 bytes (Q4; 320 for
/// Q8_0) = 12–20 KiB of unpacked weights, which stay in L1 while every activation
/// passes over them.
const KQ: usize = 16;

/// Activations per tile of [`packed`] (with 4 rows: 8 accumulators of 16 registers;
/// 1 and 3 measured no faster). [`tile_pairs`]' results go out through the same
/// `emit`, so this stays 2.
const TA: usize = 2;

/// A block type as [`packed`] takes it.
trait QuantBlock {
    /// Bytes per block.
    const SIZE: usize;
    /// Whether blocks carry a minimum (`m_w·s_x` terms).
    const MIN: bool;
    /// Whether the weights are Q4 nibbles (<= 15), for [`tile_pairs`].
    const Q4: bool;
    /// The 4 blocks at `p`, unpacked.
    ///
    /// # Safety
    /// `4·SIZE` readable bytes at `p`; AVX2, FMA and F16C present.
    unsafe fn unpack(p: *const u8) -> Unpacked;
    /// The exact integer sums `Σ w·x` of blocks 2h (lanes 0..4) and 2h+1 (lanes 4..8),
    /// each split over its 4 lanes, of `u` and the activation quad `q`.
    ///
    /// # Safety
    /// `h < 2`; AVX2 present.
    unsafe fn dot(u: &Unpacked, h: usize, q: &Q8Quad) -> __m256i;
}

/// The 4 f16 scales at `p`, `p + size`, `p + 2·size`, `p + 3·size` as
/// `[d0 ×4, d1 ×4]` and `[d2 ×4, d3 ×4]`.
///
/// # Safety
/// The 4 u16 readable; AVX2 and F16C present.
#[inline(always)]
unsafe fn scales4(p: *const u8, size: usize) -> ([__m256; 2], __m256) {
    // SAFETY: caller; x86 is little-endian, so an f16 reads as a u16.
    unsafe {
        let h = |b: usize| core::ptr::read_unaligned(p.add(b * size) as *const u16) as i64;
        let bits = h(0) | (h(1) << 16) | (h(2) << 32) | (h(3) << 48);
        let d = _mm256_castps128_ps256(_mm_cvtph_ps(_mm_cvtsi64_si128(bits)));
        (
            [
                _mm256_permutevar8x32_ps(d, _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1)),
                _mm256_permutevar8x32_ps(d, _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3)),
            ],
            _mm256_permutevar8x32_ps(d, _mm256_setr_epi32(0, 2, 0, 2, 1, 3, 1, 3)),
        )
    }
}

/// The nibbles of the 4 Q4 blocks at `p` (quants at `off` in each block of `size`).
///
/// # Safety
/// `4·size` readable bytes at `p`, `off + 16 <= size`; AVX2 present.
#[inline(always)]
unsafe fn nibbles4(p: *const u8, size: usize, off: usize) -> [__m256i; 4] {
    let m = _mm256_set1_epi8(0x0f);
    // SAFETY: caller.
    let two = |h: usize| unsafe {
        let b = p.add(2 * h * size + off);
        let v = _mm256_set_m128i(
            _mm_loadu_si128(b.add(size) as *const __m128i),
            _mm_loadu_si128(b as *const __m128i),
        );
        (
            _mm256_and_si256(v, m),
            _mm256_and_si256(_mm256_srli_epi16(v, 4), m),
        )
    };
    let (a, b) = two(0);
    let (c, d) = two(1);
    [a, b, c, d]
}

/// The activation quad's `lo` and `hi` bytes of blocks 2h and 2h+1.
///
/// # Safety
/// `h < 2`; AVX present.
#[inline(always)]
unsafe fn act_pair(q: &Q8Quad, h: usize) -> (__m256i, __m256i) {
    // SAFETY: lo and hi have 64 bytes each, 32 at 32·h (caller).
    unsafe {
        (
            _mm256_loadu_si256(q.lo.as_ptr().add(32 * h) as *const __m256i),
            _mm256_loadu_si256(q.hi.as_ptr().add(32 * h) as *const __m256i),
        )
    }
}

impl QuantBlock for Q8_0 {
    const SIZE: usize = 34;
    const MIN: bool = false;
    const Q4: bool = false;
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> Unpacked {
        // SAFETY: quants at 2..34 of each of the 4 blocks (caller).
        unsafe {
            let two = |h: usize| {
                let a = load32(p.add(2 * h * 34 + 2));
                let b = load32(p.add(2 * h * 34 + 36));
                (
                    _mm256_permute2x128_si256(a, b, 0x20),
                    _mm256_permute2x128_si256(a, b, 0x31),
                )
            };
            let (a, b) = two(0);
            let (c, d) = two(1);
            let q = [a, b, c, d];
            Unpacked {
                q,
                s: q.map(|v| _mm256_sign_epi8(v, v)),
                d: scales4(p, 34).0,
                m: [_mm256_setzero_ps(); 2],
                dp: _mm256_setzero_ps(),
                mp: _mm256_setzero_ps(),
            }
        }
    }
    #[inline(always)]
    unsafe fn dot(u: &Unpacked, h: usize, q: &Q8Quad) -> __m256i {
        // ggml's sign trick: |w| (u8, <= 128) times the activation negated where
        // w < 0; pairs stay within i16 (2·128·127), so lo and hi widen separately.
        // SAFETY: caller.
        unsafe {
            let (ylo, yhi) = act_pair(q, h);
            let ones = _mm256_set1_epi16(1);
            let a = _mm256_maddubs_epi16(u.s[2 * h], _mm256_sign_epi8(ylo, u.q[2 * h]));
            let b = _mm256_maddubs_epi16(u.s[2 * h + 1], _mm256_sign_epi8(yhi, u.q[2 * h + 1]));
            _mm256_add_epi32(_mm256_madd_epi16(a, ones), _mm256_madd_epi16(b, ones))
        }
    }
}

impl QuantBlock for Q4_0 {
    const SIZE: usize = 18;
    const MIN: bool = false;
    const Q4: bool = true;
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> Unpacked {
        // SAFETY: caller; quants at 2..18 of each block.
        unsafe {
            let d = scales4(p, 18);
            Unpacked {
                q: nibbles4(p, 18, 2),
                s: [_mm256_setzero_si256(); 4],
                d: d.0,
                m: [_mm256_setzero_ps(); 2],
                dp: d.1,
                mp: _mm256_setzero_ps(),
            }
        }
    }
    #[inline(always)]
    unsafe fn dot(u: &Unpacked, h: usize, q: &Q8Quad) -> __m256i {
        // The raw nibbles (w + 8, <= 15) go in unsigned: pair sums <= 2·15·127, lo + hi
        // <= 4·15·127, no saturation; the quad's -8·Σq_x takes the offset back out.
        // SAFETY: caller; off8 has 16 i32, 8 at 8·h.
        unsafe {
            let (ylo, yhi) = act_pair(q, h);
            let s16 = _mm256_add_epi16(
                _mm256_maddubs_epi16(u.q[2 * h], ylo),
                _mm256_maddubs_epi16(u.q[2 * h + 1], yhi),
            );
            let off = _mm256_loadu_si256(q.off8.as_ptr().add(8 * h) as *const __m256i);
            _mm256_add_epi32(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)), off)
        }
    }
}

impl QuantBlock for Q4_1 {
    const SIZE: usize = 20;
    const MIN: bool = true;
    const Q4: bool = true;
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> Unpacked {
        // SAFETY: caller; minimum at 2..4, quants at 4..20 of each block.
        unsafe {
            let (d, m) = (scales4(p, 20), scales4(p.add(2), 20));
            Unpacked {
                q: nibbles4(p, 20, 4),
                s: [_mm256_setzero_si256(); 4],
                d: d.0,
                m: m.0,
                dp: d.1,
                mp: m.1,
            }
        }
    }
    #[inline(always)]
    unsafe fn dot(u: &Unpacked, h: usize, q: &Q8Quad) -> __m256i {
        // Unsigned nibbles as in Q4_0, no offset.
        // SAFETY: caller.
        unsafe {
            let (ylo, yhi) = act_pair(q, h);
            let s16 = _mm256_add_epi16(
                _mm256_maddubs_epi16(u.q[2 * h], ylo),
                _mm256_maddubs_epi16(u.q[2 * h + 1], yhi),
            );
            _mm256_madd_epi16(s16, _mm256_set1_epi16(1))
        }
    }
}

/// Rows of `out` for a prompt (`n > 1`): 4 rows at a time, each chunk of up to [`KQ`]
/// weight quads is unpacked once (nibbles split, magnitudes taken, scales widened)
/// and then multiplied with every activation in tiles of 4 rows × [`TA`]
/// activations, instead of being unpacked again for each activation. Chunks after
/// the first add into the outputs, and so do the `nb % 4` blocks after the last whole
/// quad (the AVX2 engine gets `⌊nb/4⌋` quads per row), per row and activation through
/// the per-block code.
///
/// # Panics
/// If `quads.len() != n·⌊nb/4⌋` or `a.len() != n·nb`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn packed<B: QuantBlock>(
    w: &super::Matrix<'_>,
    a: &[Q8Act],
    quads: &[Q8Quad],
    out: &mut super::OutRows<'_>,
) {
    let n = out.n();
    let nb = w.cols / QK;
    let nq = nb / 4;
    assert_eq!(quads.len(), n * nq);
    assert_eq!(a.len(), n * nb);
    // The blocks after the last whole quad, per-block code.
    let tail = |row: &[u8], i: usize| {
        let (row, ai) = (&row[4 * nq * B::SIZE..], &a[i * nb + 4 * nq..(i + 1) * nb]);
        match w.dtype {
            DType::Q8_0 => dot_q8_0(row, ai),
            DType::Q4_0 => dot_q4_0(row, ai),
            _ => dot_q4_1(row, ai),
        }
    };
    if nq == 0 {
        for i in 0..n {
            for r in out.r0..out.r1 {
                out.set(i, r, tail(w.row(r), i));
            }
        }
        return;
    }
    packed_rows!(
        w, out, nq: nq, kq: KQ, zero: Unpacked::zero(), width: TA,
        row_bytes: nb * B::SIZE,
        unpack |row, g| {
            // SAFETY: blocks 4g..4g+4 < 4·nq <= nb lie in the row (its length is
            // asserted).
            unsafe { B::unpack(row.as_ptr().add(4 * g * B::SIZE)) }
        },
        sweep |chunk, c0, c1, emit| {
            let qk = |i: usize| &quads[i * nq + c0..i * nq + c1];
            let mut i = 0;
            while B::Q4 && i + 2 * PA <= n {
                let v = tile_pairs::<B, PA>(
                    chunk,
                    core::array::from_fn(|p| [qk(i + 2 * p), qk(i + 2 * p + 1)]),
                );
                for (p, vp) in v.iter().enumerate() {
                    emit(i + 2 * p, *vp, 2);
                }
                i += 2 * PA;
            }
            while i + TA <= n {
                let v = tile_packed::<B, TA>(chunk, core::array::from_fn(|k| qk(i + k)));
                emit(i, v, TA);
                i += TA;
            }
            while i < n {
                let v = tile_packed::<B, 1>(chunk, [qk(i)]);
                emit(i, core::array::from_fn(|j| [v[j][0]; TA]), 1);
                i += 1;
            }
        },
        after |r, here| {
            if nb > 4 * nq {
                for i in 0..n {
                    for j in 0..here {
                        out.add(i, r + j, tail(w.row(r + j), i));
                    }
                }
            }
        }
    );
}

/// Activation pairs per tile of [`tile_pairs`].
const PA: usize = 1;

/// [`tile_packed`] for Q4 weights and `P` pairs of activations, each pair's integer
/// sums folded into one register before the scaling: two `hadd_epi16` leave, per pair
/// and quad, the 8 sums (2 activations × 4 blocks) in one register (lanes `[a0b0,
/// a0b2, a1b0, a1b2 | a0b1, a0b3, a1b1, a1b3]`), so that one conversion, one multiply
/// and one FMA serve 8 blocks. Exact: a 16-bit lane sums at most 16 products of a
/// nibble (<= 15) and an activation (|q| <= 127), 30480 < 2^15. Returns
/// `[p][j][k]` for row `j` and activation `acts[p][k]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_pairs<B: QuantBlock, const P: usize>(
    chunk: &[[Unpacked; KQ]; 4],
    acts: [[&[Q8Quad]; 2]; P],
) -> [[[f32; 2]; 4]; P] {
    let len = acts[0][0].len();
    assert!(B::Q4 && len <= KQ && acts.iter().flatten().all(|a| a.len() == len));
    let ones = _mm256_set1_epi16(1);
    let order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    // Two quads' 4 per-block floats in the pair layout.
    let pair4 = |a: &[f32; 4], b: &[f32; 4]| {
        // SAFETY: AVX2 (this function's features); each array has 4 floats.
        unsafe {
            let ab = _mm256_set_m128(_mm_loadu_ps(b.as_ptr()), _mm_loadu_ps(a.as_ptr()));
            _mm256_permutevar8x32_ps(ab, order)
        }
    };
    // A quad's -8·Σq of blocks 0, 2 (lower lane, i32 0 and 1) and 1, 3 (upper).
    let off = |q: &Q8Quad| {
        // SAFETY: AVX2; off8 has 16 i32.
        unsafe {
            let a = _mm256_loadu_si256(q.off8.as_ptr() as *const __m256i);
            let b = _mm256_loadu_si256(q.off8.as_ptr().add(8) as *const __m256i);
            _mm256_or_si256(a, _mm256_slli_si256(b, 4))
        }
    };
    let mut acc = [[_mm256_setzero_ps(); P]; 4];
    for g in 0..len {
        let mut dx = [_mm256_setzero_ps(); P];
        let mut ox = [_mm256_setzero_si256(); P];
        let mut sx = [_mm256_setzero_ps(); P];
        for (p, ap) in acts.iter().enumerate() {
            let (a, b) = (&ap[0][g], &ap[1][g]);
            dx[p] = pair4(&a.d, &b.d);
            if B::MIN {
                sx[p] = pair4(&a.s, &b.s);
            } else {
                ox[p] = _mm256_or_si256(off(a), _mm256_slli_si256(off(b), 8));
            }
        }
        for (j, accj) in acc.iter_mut().enumerate() {
            let u = &chunk[j][g];
            // Per 128-bit lane: 4 words of block L (from s0), 4 of block 2 + L (s1).
            let sums = |q: &Q8Quad| {
                // SAFETY: h < 2 in `act_pair`; AVX2.
                unsafe {
                    let (l0, h0) = act_pair(q, 0);
                    let (l1, h1) = act_pair(q, 1);
                    let s0 = _mm256_add_epi16(
                        _mm256_maddubs_epi16(u.q[0], l0),
                        _mm256_maddubs_epi16(u.q[1], h0),
                    );
                    let s1 = _mm256_add_epi16(
                        _mm256_maddubs_epi16(u.q[2], l1),
                        _mm256_maddubs_epi16(u.q[3], h1),
                    );
                    _mm256_hadd_epi16(s0, s1)
                }
            };
            for (p, (a, ap)) in accj.iter_mut().zip(&acts).enumerate() {
                let t = _mm256_hadd_epi16(sums(&ap[0][g]), sums(&ap[1][g]));
                let mut v = _mm256_madd_epi16(t, ones);
                if !B::MIN {
                    v = _mm256_add_epi32(v, ox[p]);
                }
                let d = _mm256_mul_ps(u.dp, dx[p]);
                *a = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(v), *a);
                if B::MIN {
                    *a = _mm256_fmadd_ps(u.mp, sx[p], *a);
                }
            }
        }
    }
    let mut out = [[[0.0f32; 2]; 4]; P];
    for (j, a) in acc.iter().enumerate() {
        for (o, a) in out.iter_mut().zip(a) {
            let o = &mut o[j];
            // Lanes 0, 1, 4, 5 belong to the first activation, 2, 3, 6, 7 to the second.
            let s = _mm_add_ps(_mm256_castps256_ps128(*a), _mm256_extractf128_ps(*a, 1));
            let s = _mm_hadd_ps(s, s);
            *o = [_mm_cvtss_f32(s), _mm_cvtss_f32(_mm_movehdup_ps(s))];
        }
    }
    out
}

/// `[[Σ_quads w_j·a_k for k in 0..T] for j in 0..4]` over the unpacked quads
/// `chunk[j][..len]` and the activation quads `acts[k]` (`len` of them).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_packed<B: QuantBlock, const T: usize>(
    chunk: &[[Unpacked; KQ]; 4],
    acts: [&[Q8Quad]; T],
) -> [[f32; T]; 4] {
    let len = acts[0].len();
    assert!(len <= KQ && acts.iter().all(|a| a.len() == len));
    let mut acc = [[_mm256_setzero_ps(); T]; 4];
    for g in 0..len {
        for h in 0..2 {
            for (j, accj) in acc.iter_mut().enumerate() {
                let u = &chunk[j][g];
                for (a, q) in accj.iter_mut().zip(&acts) {
                    let q = &q[g];
                    // SAFETY: h < 2; dq and sq have 16 floats, 8 at 8·h.
                    unsafe {
                        let s = B::dot(u, h, q);
                        let d = _mm256_mul_ps(u.d[h], _mm256_loadu_ps(q.dq.as_ptr().add(8 * h)));
                        *a = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), *a);
                        if B::MIN {
                            let sq = _mm256_loadu_ps(q.sq.as_ptr().add(8 * h));
                            *a = _mm256_fmadd_ps(u.m[h], sq, *a);
                        }
                    }
                }
            }
        }
    }
    let mut out = [[0.0f32; T]; 4];
    for (o, a) in out.iter_mut().zip(&acc) {
        for (o, a) in o.iter_mut().zip(a) {
            *o = hsum(*a);
        }
    }
    out
}

/// Sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// The f16 with bits `h` as f32 (one F16C conversion).
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// The little-endian u16 at `b[0..2]`.
#[inline(always)]
pub(crate) fn u16_at(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

/// Loads 8 weights from `p` widened to f32.
trait Load8 {
    /// Bytes per weight.
    const SIZE: usize;
    /// # Safety
    /// `p..p + 8·SIZE` must be readable; AVX2, FMA and F16C must be present.
    unsafe fn load8(p: *const u8) -> __m256;
    /// One weight at `p` (the scalar tail).
    fn one(b: &[u8]) -> f32;
}

impl Load8 for F32 {
    const SIZE: usize = 4;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: the caller guarantees 32 readable bytes; loadu has no alignment need.
        unsafe { _mm256_loadu_ps(p as *const f32) }
    }
    #[inline(always)]
    fn one(b: &[u8]) -> f32 {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl Load8 for F16 {
    const SIZE: usize = 2;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: 16 readable bytes (caller); F16C present (caller).
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }
    #[inline(always)]
    fn one(b: &[u8]) -> f32 {
        half::f16::from_le_bytes([b[0], b[1]]).to_f32()
    }
}

impl Load8 for BF16 {
    const SIZE: usize = 2;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: 16 readable bytes (caller); AVX2 present (caller). A bf16 is the
        // upper half of an f32, so widening is a 16-bit left shift.
        unsafe {
            let h = _mm_loadu_si128(p as *const __m128i);
            _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
        }
    }
    #[inline(always)]
    fn one(b: &[u8]) -> f32 {
        half::bf16::from_le_bytes([b[0], b[1]]).to_f32()
    }
}

/// `w · x` for a row of `x.len()` weights of type `L`, f32 accumulation.
///
/// # Panics
/// If `w.len() != L::SIZE · x.len()`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_float<L: Load8>(w: &[u8], x: &[f32]) -> f32 {
    assert_eq!(w.len(), L::SIZE * x.len());
    let n = x.len();
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut c = 0;
    // SAFETY (all loads below): c + 32 <= n (resp. c + 8 <= n), so the 32 (8) weights
    // at byte c·SIZE and the floats at c are inside `w` and `x` (lengths checked above).
    while c + 32 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            let (wv, xv) = unsafe {
                (
                    L::load8(wp.add((c + 8 * k) * L::SIZE)),
                    _mm256_loadu_ps(xp.add(c + 8 * k)),
                )
            };
            *a = _mm256_fmadd_ps(wv, xv, *a);
        }
        c += 32;
    }
    while c + 8 <= n {
        let (wv, xv) = unsafe { (L::load8(wp.add(c * L::SIZE)), _mm256_loadu_ps(xp.add(c))) };
        acc[0] = _mm256_fmadd_ps(wv, xv, acc[0]);
        c += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut sum = hsum(s);
    for (b, v) in w[c * L::SIZE..].chunks_exact(L::SIZE).zip(&x[c..]) {
        sum += L::one(b) * v;
    }
    sum
}

/// `[[w_j·x_k for k in 0..T] for j in 0..R]` for `R` rows of weights of type `L`
/// (f32 accumulation, 8 columns at a time, the last `n % 8` in scalar code).
///
/// # Panics
/// Unless every `w_j` holds `n` weights and every `x_k` has `n` values.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_float<L: Load8, const R: usize, const T: usize>(
    ws: [&[u8]; R],
    xs: [&[f32]; T],
) -> [[f32; T]; R] {
    let n = xs[0].len();
    assert!(ws.iter().all(|w| w.len() == n * L::SIZE));
    assert!(xs.iter().all(|x| x.len() == n));
    if R == 1 && T == 1 {
        // One row (generation): four FMA chains over one weight stream.
        let v = dot_float::<L>(ws[0], xs[0]);
        return core::array::from_fn(|_| core::array::from_fn(|_| v));
    }
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let mut xv = [_mm256_setzero_ps(); T];
    let mut c = 0;
    while c + 8 <= n {
        // SAFETY (loads): c + 8 <= n, so columns c..c+8 lie in every `x_k` and `w_j`
        // (lengths checked above).
        for (v, x) in xv.iter_mut().zip(&xs) {
            *v = unsafe { _mm256_loadu_ps(x.as_ptr().add(c)) };
        }
        for (a, w) in acc.iter_mut().zip(&ws) {
            let wv = unsafe { L::load8(w.as_ptr().add(c * L::SIZE)) };
            for (a, x) in a.iter_mut().zip(&xv) {
                *a = _mm256_fmadd_ps(wv, *x, *a);
            }
        }
        c += 8;
    }
    let mut out = [[0.0f32; T]; R];
    for ((o, a), w) in out.iter_mut().zip(&acc).zip(&ws) {
        for ((o, a), x) in o.iter_mut().zip(a).zip(&xs) {
            *o = hsum(*a);
            for (b, v) in w[c * L::SIZE..].chunks_exact(L::SIZE).zip(&x[c..]) {
                *o += L::one(b) * v;
            }
        }
    }
    out
}

#[target_feature(enable = "avx2,fma,f16c")]
fn tile_f32<const R: usize, const T: usize>(ws: [&[u8]; R], xs: [&[f32]; T]) -> [[f32; T]; R] {
    tile_float::<F32, R, T>(ws, xs)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn tile_f16<const R: usize, const T: usize>(ws: [&[u8]; R], xs: [&[f32]; T]) -> [[f32; T]; R] {
    tile_float::<F16, R, T>(ws, xs)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn tile_bf16<const R: usize, const T: usize>(ws: [&[u8]; R], xs: [&[f32]; T]) -> [[f32; T]; R] {
    tile_float::<BF16, R, T>(ws, xs)
}

/// 32 signed bytes at `p`.
///
/// # Safety
/// 32 readable bytes at `p`.
#[inline(always)]
unsafe fn load32(p: *const u8) -> __m256i {
    // SAFETY: caller; loadu has no alignment need.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// The 32 nibbles of a Q4 block's 16 bytes at `p` as bytes 0..=15: low nibbles are
/// elements 0..16 (lower lane), high nibbles elements 16..32 (upper lane).
///
/// # Safety
/// 16 readable bytes at `p`; AVX2 present.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: caller.
    let q = unsafe { _mm_loadu_si128(p as *const __m128i) };
    let both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// Σ x·y over 32 signed bytes as 8 i32 lanes (|x|·sign(y, x): `maddubs` needs an
/// unsigned left side; pairs stay below i16 saturation for |y| <= 127).
#[inline]
#[target_feature(enable = "avx2")]
fn dot_i8(x: __m256i, y: __m256i) -> __m256i {
    let p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// Σ u·y over 32 unsigned (u <= 15) times signed bytes as 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn dot_u4_i8(u: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1))
}

/// `d_w·d_x` in all 8 lanes, `d_w` the f16 at `blk[0..2]`. (`vpbroadcastw` +
/// `vcvtph2ps`: no partial-register merge that would chain blocks together.)
#[inline(always)]
fn scale8(blk: &[u8], dy: f32) -> __m256 {
    let h = u16_at(blk) as i16;
    // SAFETY: only called from functions with AVX2 and F16C enabled.
    unsafe { _mm256_mul_ps(_mm256_cvtph_ps(_mm_set1_epi16(h)), _mm256_set1_ps(dy)) }
}

/// The block dot shared by the three block types: `Σ_blocks scale·Σ(lanes of
/// dot(block))`, two accumulators so consecutive blocks do not wait on each other.
macro_rules! block_loop {
    ($w:ident, $a:ident, $size:expr, |$blk:ident, $y:ident| $dot:expr) => {{
        assert_eq!($w.len(), $size * $a.len());
        let mut acc = [_mm256_setzero_ps(); 2];
        for (k, ($blk, $y)) in $w.chunks_exact($size).zip($a).enumerate() {
            let d = scale8($blk, $y.d);
            let i = $dot;
            acc[k & 1] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(i), acc[k & 1]);
        }
        hsum(_mm256_add_ps(acc[0], acc[1]))
    }};
}

/// Q8_0 row · quantised activations (ggml's `vec_dot_q8_0_q8_0`).
///
/// # Panics
/// If `w.len() != 34·a.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q8_0(w: &[u8], a: &[Q8Act]) -> f32 {
    block_loop!(w, a, 34, |blk, y| {
        // SAFETY: blk has 34 bytes, so 32 at offset 2; y.qs has 32 bytes.
        let (qx, qy) = unsafe {
            (
                load32(blk.as_ptr().add(2)),
                load32(y.qs.as_ptr() as *const u8),
            )
        };
        dot_i8(qx, qy)
    })
}

/// Q4_0 row · quantised activations (ggml's `vec_dot_q4_0_q8_0`).
///
/// # Panics
/// If `w.len() != 18·a.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q4_0(w: &[u8], a: &[Q8Act]) -> f32 {
    block_loop!(w, a, 18, |blk, y| {
        // SAFETY: blk has 18 bytes, so 16 at offset 2; y.qs has 32 bytes.
        let (qx, qy) = unsafe {
            (
                nibbles(blk.as_ptr().add(2)),
                load32(y.qs.as_ptr() as *const u8),
            )
        };
        dot_i8(_mm256_sub_epi8(qx, _mm256_set1_epi8(8)), qy)
    })
}

/// Q4_1 row · quantised activations with `s` (ggml's `vec_dot_q4_1_q8_1`).
///
/// # Panics
/// If `w.len() != 20·a.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q4_1(w: &[u8], a: &[Q8Act]) -> f32 {
    // Σ m_w·s_x, 8 blocks per vector: m from the f16 at bytes 2..4 of each block.
    let mut summ = _mm256_setzero_ps();
    let sum = block_loop!(w, a, 20, |blk, y| {
        let m = _mm256_cvtph_ps(_mm_set1_epi16(u16_at(&blk[2..]) as i16));
        summ = _mm256_fmadd_ps(m, _mm256_set1_ps(y.s), summ);
        // SAFETY: blk has 20 bytes, so 16 at offset 4; y.qs has 32 bytes.
        let (qx, qy) = unsafe {
            (
                nibbles(blk.as_ptr().add(4)),
                load32(y.qs.as_ptr() as *const u8),
            )
        };
        dot_u4_i8(qx, qy)
    });
    // Every lane of `summ` holds the same Σ m·s.
    sum + _mm256_cvtss_f32(summ)
}

/// The 32 bits of `qh` as bytes: `0xff` where bit `j` is set, byte `j`.
#[inline(always)]
fn bits32(qh: u32) -> __m256i {
    // SAFETY: only called from functions with AVX2 enabled.
    unsafe {
        let v = _mm256_set1_epi32(qh as i32);
        // Byte j takes byte j / 8 of qh, then tests bit j % 8 (all other bits set).
        let idx = _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        );
        let v = _mm256_shuffle_epi8(v, idx);
        let v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
        _mm256_cmpeq_epi8(v, _mm256_set1_epi8(-1))
    }
}

/// The 5-bit quants (0..32) of a Q5 block: nibbles at `p`, fifth bits `qh`.
///
/// # Safety
/// 16 readable bytes at `p`; AVX2 present.
#[inline(always)]
unsafe fn quant5(p: *const u8, qh: u32) -> __m256i {
    // SAFETY: caller.
    let q = unsafe { nibbles(p) };
    _mm256_or_si256(q, _mm256_and_si256(bits32(qh), _mm256_set1_epi8(0x10)))
}

/// Q5_0 row · quantised activations (ggml's `vec_dot_q5_0_q8_0`).
///
/// # Panics
/// If `w.len() != 22·a.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q5_0(w: &[u8], a: &[Q8Act]) -> f32 {
    block_loop!(w, a, 22, |blk, y| {
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        // SAFETY: blk has 22 bytes, so 16 at offset 6; y.qs has 32 bytes.
        let (qx, qy) = unsafe {
            (
                quant5(blk.as_ptr().add(6), qh),
                load32(y.qs.as_ptr() as *const u8),
            )
        };
        dot_i8(_mm256_sub_epi8(qx, _mm256_set1_epi8(16)), qy)
    })
}

/// Q5_1 row · quantised activations with `s` (ggml's `vec_dot_q5_1_q8_1`).
///
/// # Panics
/// If `w.len() != 24·a.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q5_1(w: &[u8], a: &[Q8Act]) -> f32 {
    let mut summ = _mm256_setzero_ps();
    let sum = block_loop!(w, a, 24, |blk, y| {
        let m = _mm256_cvtph_ps(_mm_set1_epi16(u16_at(&blk[2..]) as i16));
        summ = _mm256_fmadd_ps(m, _mm256_set1_ps(y.s), summ);
        let qh = u32::from_le_bytes([blk[4], blk[5], blk[6], blk[7]]);
        // SAFETY: blk has 24 bytes, so 16 at offset 8; y.qs has 32 bytes. Quants ≤ 31:
        // maddubs pairs ≤ 2·31·127, no saturation.
        let (qx, qy) = unsafe {
            (
                quant5(blk.as_ptr().add(8), qh),
                load32(y.qs.as_ptr() as *const u8),
            )
        };
        dot_u4_i8(qx, qy)
    });
    // Every lane of `summ` holds the same Σ m·s.
    sum + _mm256_cvtss_f32(summ)
}

/// IQ4_NL row · quantised activations (ggml's `vec_dot_iq4_nl_q8_0`): the nibbles
/// index the value table with one `pshufb`.
///
/// # Panics
/// If `w.len() != 18·a.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_iq4_nl(w: &[u8], a: &[Q8Act]) -> f32 {
    // SAFETY: the table is 16 bytes.
    let t = unsafe { _mm_loadu_si128(llm_format::quant::IQ4_NL_VALUES.as_ptr() as *const __m128i) };
    let t = _mm256_set_m128i(t, t);
    block_loop!(w, a, 18, |blk, y| {
        // SAFETY: blk has 18 bytes, so 16 at offset 2; y.qs has 32 bytes.
        let (qx, qy) = unsafe {
            (
                nibbles(blk.as_ptr().add(2)),
                load32(y.qs.as_ptr() as *const u8),
            )
        };
        dot_i8(_mm256_shuffle_epi8(t, qx), qy)
    })
}

/// `act::quantize` in AVX2, bit-identical for finite inputs: the same max, the same
/// scalar scale arithmetic, the same products and the same round-half-away-from-zero.
///
/// # Panics
/// If `x.len() != 32·out.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn quantize(x: &[f32], out: &mut [Q8Act]) {
    assert_eq!(x.len(), out.len() * QK);
    let sign = _mm256_set1_ps(-0.0);
    let half = _mm256_set1_ps(0.5);
    let one = _mm256_set1_ps(1.0);
    for (b, o) in x.chunks_exact(QK).zip(out.iter_mut()) {
        // SAFETY: b has 32 floats.
        let v: [__m256; 4] =
            core::array::from_fn(|k| unsafe { _mm256_loadu_ps(b.as_ptr().add(8 * k)) });
        let m = v.iter().fold(_mm256_setzero_ps(), |m, v| {
            _mm256_max_ps(m, _mm256_andnot_ps(sign, *v))
        });
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_movehdup_ps(m));
        let (d, d16, id) = act::scales(_mm_cvtss_f32(m));
        let idv = _mm256_set1_ps(id);
        let q: [__m256i; 4] = core::array::from_fn(|k| {
            let p = _mm256_mul_ps(v[k], idv);
            let t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            let f = _mm256_sub_ps(p, t);
            let up = _mm256_and_ps(_mm256_cmp_ps(f, half, _CMP_GE_OQ), one);
            let down = _mm256_and_ps(
                _mm256_cmp_ps(f, _mm256_sub_ps(_mm256_setzero_ps(), half), _CMP_LE_OQ),
                one,
            );
            // Clamped as the i8 packs below saturate, so that `sum` is the sum of the
            // stored quants even for NaN or infinite inputs (which convert to
            // i32::MIN; found by the capi_load fuzz target).
            let q = _mm256_cvtps_epi32(_mm256_sub_ps(_mm256_add_ps(t, up), down));
            _mm256_max_epi32(
                _mm256_min_epi32(q, _mm256_set1_epi32(127)),
                _mm256_set1_epi32(-128),
            )
        });
        let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        let s = _mm_hadd_epi32(s, s);
        let sum = _mm_cvtsi128_si32(_mm_hadd_epi32(s, s));
        // i32 -> i16 -> i8 packs work per 128-bit lane; the permute restores order.
        let p = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: o.qs has 32 bytes; storeu has no alignment need.
        unsafe { _mm256_storeu_si256(o.qs.as_mut_ptr() as *mut __m256i, p) };
        o.d = d16;
        o.s = act::s_of(sum, d);
        o.sum = sum;
    }
}
