//! x86-64 AVX-512 generation (`n = 1`) over float weights stored in layout `r16`
//! (`llm_format::layout`): 16 rows interleaved in 4-byte units, so each 64-byte load
//! is the same unit of 16 rows, one per lane.
//!
//! A group of 16 rows is one stream of `16·row_bytes` consecutive bytes, and its 16
//! sums come out in the lanes of one register: no horizontal sums, one store. Per
//! 64-byte load:
//! * F32: unit `k` is column `k` of the 16 rows: one FMA with `x[k]` broadcast;
//! * BF16 on f32 products: unit `k` is columns `2k, 2k+1`; a shift and a mask make
//!   them two f32 registers, two FMAs with `x[2k]` and `x[2k+1]` broadcast;
//! * F16: the two halves widen to rows 0–7 and 8–15 with each lane pair
//!   `(2k, 2k+1)` of a row side by side; one FMA each against `(x[2k], x[2k+1])`
//!   repeated, and the pairs are added at the end (one permute per half);
//! * BF16 on bf16 dot products ([`gen_dots`]): one `vdpbf16ps` with the pair of
//!   rounded activations broadcast, as the prompt kernel of `avx512_bf16` does.
//!
//! Each step asks for the line `stream::PREFETCH` bytes past the one it reads where
//! `stream::float_prefetch` says so (Intel): the hardware prefetcher alone left F16
//! generation at about 80 % of the copy bandwidth on the Sapphire Rapids guest of
//! PERF.md (tg64 95 → 110 t/s with it).
//!
//! Prompts over `r16` run in `avx512_rows16::floats` (F32) and `avx512_bf16`
//! (F16/BF16 on bf16 dots), which read their chunks from the file.

use super::avx512_rows16::ROWS;
use super::stream::{prefetch_line, PREFETCH};

/// [`prefetch_line`] where float generation prefetches (`stream::float_prefetch`).
#[inline(always)]
fn pf(on: bool, p: *const u8) {
    if on {
        prefetch_line(p);
    }
}
use super::{Matrix, OutRows};
use core::arch::x86_64::*;
use llm_format::{DType, Layout};

/// Independent accumulator chains per row group (past the FMA's latency).
const CHAINS: usize = 4;

/// Rows `out.r0..out.r1` (whole groups of 16) of `y = W·x` for one activation `x`
/// and F32, F16 or BF16 weights in layout `r16`, on f32 products.
///
/// # Panics
/// If `w` is not such a matrix, `out.n() != 1`, or the rows are not whole groups.
#[inline(never)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(super) fn gen_floats(w: &Matrix<'_>, x: &[f32], out: &mut OutRows<'_>, prefetch: bool) {
    assert!(w.layout == Layout::R16 && out.n() == 1 && x.len() == w.cols);
    let rb = w.row_bytes();
    let units = rb / 4;
    let mut r = out.r0;
    while r < out.r1 {
        assert!(r % ROWS == 0 && r + ROWS <= w.rows);
        let g = &w.data[r * rb..(r + ROWS) * rb];
        // SAFETY: unit k < units of the group is its bytes 64k..64k + 64, and the
        // activations it pairs with are below `cols` (units·4 bytes of weights).
        let v = unsafe {
            match w.dtype {
                DType::F32 => group_f32(g.as_ptr(), units, x.as_ptr(), prefetch),
                DType::BF16 => group_bf16(g.as_ptr(), units, x.as_ptr(), prefetch),
                DType::F16 => group_f16(g.as_ptr(), units, x.as_ptr(), prefetch),
                d => panic!("r16 generation takes f32, f16 or bf16, not {d}"),
            }
        };
        // SAFETY: the span is 16 floats.
        unsafe { _mm512_storeu_ps(out.span(0, r, ROWS).as_mut_ptr(), v) };
        r += ROWS;
    }
}

/// One F32 group: `units` columns.
///
/// # Safety
/// `w` has `64·units` bytes, `x` `units` values; the features of [`gen_floats`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn group_f32(w: *const u8, units: usize, x: *const f32, prefetch: bool) -> __m512 {
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    if units % CHAINS == 0 {
        // Each chain reads its own quarter of the group: four weight streams in
        // flight instead of one (as `avx512::rows4_f32` for plain rows).
        let q = units / CHAINS;
        for k in 0..q {
            for (u, a) in acc.iter_mut().enumerate() {
                pf(prefetch, w.wrapping_add(64 * (u * q + k) + PREFETCH));
                // SAFETY: unit u·q + k < units; caller.
                let (wv, xv) = unsafe {
                    (
                        _mm512_loadu_ps(w.add(64 * (u * q + k)) as *const f32),
                        _mm512_set1_ps(*x.add(u * q + k)),
                    )
                };
                *a = _mm512_fmadd_ps(wv, xv, *a);
            }
        }
        return sum(acc);
    }
    let mut k = 0;
    // SAFETY (loads): caller; k < units.
    while k + CHAINS <= units {
        for (u, a) in acc.iter_mut().enumerate() {
            pf(prefetch, w.wrapping_add(64 * (k + u) + PREFETCH));
            let (wv, xv) = unsafe {
                (
                    _mm512_loadu_ps(w.add(64 * (k + u)) as *const f32),
                    _mm512_set1_ps(*x.add(k + u)),
                )
            };
            *a = _mm512_fmadd_ps(wv, xv, *a);
        }
        k += CHAINS;
    }
    while k < units {
        let (wv, xv) = unsafe {
            (
                _mm512_loadu_ps(w.add(64 * k) as *const f32),
                _mm512_set1_ps(*x.add(k)),
            )
        };
        acc[0] = _mm512_fmadd_ps(wv, xv, acc[0]);
        k += 1;
    }
    sum(acc)
}

/// One BF16 group on f32 products: `units` column pairs.
///
/// # Safety
/// `w` has `64·units` bytes, `x` `2·units` values; the features of [`gen_floats`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn group_bf16(w: *const u8, units: usize, x: *const f32, prefetch: bool) -> __m512 {
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    let high = _mm512_set1_epi32(0xffff_0000_u32 as i32);
    let mut k = 0;
    // SAFETY (loads): caller; k < units.
    while k + 2 <= units {
        for u in 0..2 {
            pf(prefetch, w.wrapping_add(64 * (k + u) + PREFETCH));
            let (v, x0, x1) = unsafe {
                (
                    _mm512_loadu_si512(w.add(64 * (k + u)) as *const __m512i),
                    _mm512_set1_ps(*x.add(2 * (k + u))),
                    _mm512_set1_ps(*x.add(2 * (k + u) + 1)),
                )
            };
            // bf16 → f32 is a shift: the low half of each lane (column 2k) up by 16,
            // the high half (column 2k + 1) masked in place.
            let even = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v));
            let odd = _mm512_castsi512_ps(_mm512_and_si512(v, high));
            acc[2 * u] = _mm512_fmadd_ps(even, x0, acc[2 * u]);
            acc[2 * u + 1] = _mm512_fmadd_ps(odd, x1, acc[2 * u + 1]);
        }
        k += 2;
    }
    if k < units {
        let (v, x0, x1) = unsafe {
            (
                _mm512_loadu_si512(w.add(64 * k) as *const __m512i),
                _mm512_set1_ps(*x.add(2 * k)),
                _mm512_set1_ps(*x.add(2 * k + 1)),
            )
        };
        let even = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v));
        let odd = _mm512_castsi512_ps(_mm512_and_si512(v, high));
        acc[0] = _mm512_fmadd_ps(even, x0, acc[0]);
        acc[1] = _mm512_fmadd_ps(odd, x1, acc[1]);
    }
    sum(acc)
}

/// One F16 group on f32 products: `units` column pairs.
///
/// # Safety
/// `w` has `64·units` bytes, `x` `2·units` values; the features of [`gen_floats`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn group_f16(w: *const u8, units: usize, x: *const f32, prefetch: bool) -> __m512 {
    // lo: lanes 2j, 2j + 1 = row j's columns 2k, 2k + 1 (rows 0..8); hi: rows 8..16.
    let (mut lo, mut hi) = ([_mm512_setzero_ps(); 2], [_mm512_setzero_ps(); 2]);
    for k in 0..units {
        pf(prefetch, w.wrapping_add(64 * k + PREFETCH));
        // SAFETY: caller; k < units. The pair (x[2k], x[2k + 1]) as one 64-bit value,
        // repeated in every lane pair.
        let (v, xp) = unsafe {
            (
                _mm512_loadu_si512(w.add(64 * k) as *const __m512i),
                _mm512_castpd_ps(_mm512_set1_pd(core::ptr::read_unaligned(
                    x.add(2 * k) as *const f64
                ))),
            )
        };
        let c = k % 2;
        lo[c] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(v)), xp, lo[c]);
        hi[c] = _mm512_fmadd_ps(
            _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(v)),
            xp,
            hi[c],
        );
    }
    let (lo, hi) = (_mm512_add_ps(lo[0], lo[1]), _mm512_add_ps(hi[0], hi[1]));
    // Row j's two partial sums: lanes 2j and 2j + 1 of lo (j < 8) or hi (j ≥ 8).
    let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    let odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    _mm512_add_ps(
        _mm512_permutex2var_ps(lo, even, hi),
        _mm512_permutex2var_ps(lo, odd, hi),
    )
}

/// The sum of the accumulator chains.
#[inline(always)]
fn sum(acc: [__m512; CHAINS]) -> __m512 {
    // SAFETY: plain register arithmetic; AVX-512 F is a feature of every caller.
    unsafe { _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])) }
}

/// Rows `out.r0..out.r1` (whole groups of 16) of `y = W·x` for one activation and
/// BF16 weights in layout `r16`, on bf16 dot products: `xb` is the activation rounded
/// to bf16 (`Bf16Dots::round_rows`, padded to 32 columns).
///
/// # Panics
/// If `w` is not such a matrix, `out.n() != 1`, or the rows are not whole groups.
#[inline(never)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,f16c")]
pub(super) fn gen_dots(w: &Matrix<'_>, xb: &[u16], out: &mut OutRows<'_>, prefetch: bool) {
    assert!(w.layout == Layout::R16 && w.dtype == DType::BF16 && out.n() == 1);
    let rb = w.row_bytes();
    let units = rb / 4;
    assert!(xb.len() >= 2 * units);
    let bh = |v: __m512i| {
        // SAFETY: same size; 32 bf16 bit patterns.
        unsafe { core::mem::transmute::<__m512i, __m512bh>(v) }
    };
    let mut r = out.r0;
    while r < out.r1 {
        assert!(r % ROWS == 0 && r + ROWS <= w.rows);
        let g = w.data[r * rb..(r + ROWS) * rb].as_ptr();
        let xp = xb.as_ptr() as *const i32;
        let mut acc = [_mm512_setzero_ps(); CHAINS];
        let mut k = 0;
        // SAFETY (loads): unit k < units is bytes 64k.. of the group; activation
        // pair k is values 2k, 2k + 1 < 2·units <= xb.len().
        let step = |k: usize, a: __m512| unsafe {
            pf(prefetch, g.wrapping_add(64 * k + PREFETCH));
            let wv = _mm512_loadu_si512(g.add(64 * k) as *const __m512i);
            let xv = _mm512_set1_epi32(core::ptr::read_unaligned(xp.add(k)));
            _mm512_dpbf16_ps(a, bh(wv), bh(xv))
        };
        while k + CHAINS <= units {
            for (u, a) in acc.iter_mut().enumerate() {
                *a = step(k + u, *a);
            }
            k += CHAINS;
        }
        while k < units {
            acc[0] = step(k, acc[0]);
            k += 1;
        }
        // SAFETY: the span is 16 floats.
        unsafe { _mm512_storeu_ps(out.span(0, r, ROWS).as_mut_ptr(), sum(acc)) };
        r += ROWS;
    }
}
