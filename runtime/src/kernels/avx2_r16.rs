//! x86-64 AVX2 generation (`n = 1`) over float weights stored in layout `r16`
//! (`llm_format::layout`): the 256-bit form of `avx512_r16`. Each 64-byte unit of a
//! 16-row group is two registers, rows 0–7 and rows 8–15, one row per 32-bit lane:
//! * F32: unit `k` is column `k`: one FMA per half with `x[k]` broadcast;
//! * BF16: unit `k` is columns `2k, 2k+1`; a shift and a mask make them two f32
//!   registers per half, two FMAs with `x[2k]` and `x[2k+1]` broadcast;
//! * F16: each quarter (16 bytes, 4 rows) widens to 8 floats with each row's column
//!   pair side by side; one FMA against `(x[2k], x[2k+1])` repeated, and the pairs are
//!   added once per group at the end.
//!
//! Without it an AVX2 machine de-interleaved every part of an `r16` matrix into a
//! buffer before each token (`Engine::rows`): 4–8 times slower generation than plain
//! rows (PERF.md). Prompts still take that path: its copy is shared by all their
//! activations.

use super::{Matrix, OutRows};
use core::arch::x86_64::*;
use llm_format::layout::R16_ROWS;
use llm_format::{DType, Layout};

/// Rows `out.r0..out.r1` (whole groups of 16) of `y = W·x` for one activation `x`
/// and F32, F16 or BF16 weights in layout `r16`, on f32 products.
///
/// # Panics
/// If `w` is not such a matrix, `out.n() != 1`, or the rows are not whole groups.
#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn gen_floats(w: &Matrix<'_>, x: &[f32], out: &mut OutRows<'_>) {
    assert!(w.layout == Layout::R16 && out.n() == 1 && x.len() == w.cols);
    let rb = w.row_bytes();
    let units = rb / 4;
    let mut r = out.r0;
    while r < out.r1 {
        assert!(r % R16_ROWS == 0 && r + R16_ROWS <= w.rows);
        let g = &w.data[r * rb..(r + R16_ROWS) * rb];
        // SAFETY: unit k < units of the group is its bytes 64k..64k + 64, and the
        // activations it pairs with are below `cols` (units·4 bytes of weights).
        let sums = unsafe {
            match w.dtype {
                DType::F32 => group_f32(g.as_ptr(), units, x.as_ptr()),
                DType::BF16 => group_bf16(g.as_ptr(), units, x.as_ptr()),
                DType::F16 => group_f16(g.as_ptr(), units, x.as_ptr()),
                d => panic!("r16 generation takes f32, f16 or bf16, not {d}"),
            }
        };
        out.span(0, r, R16_ROWS).copy_from_slice(&sums);
        r += R16_ROWS;
    }
}

/// The 16 sums of a group from its two halves' registers.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store(lo: __m256, hi: __m256) -> [f32; 16] {
    let mut s = [0.0f32; 16];
    // SAFETY: two stores of 8 floats into the 16 of `s`.
    unsafe {
        _mm256_storeu_ps(s.as_mut_ptr(), lo);
        _mm256_storeu_ps(s.as_mut_ptr().add(8), hi);
    }
    s
}

/// One F32 group: `units` columns, two chains per half.
///
/// # Safety
/// `w` has `64·units` bytes, `x` `units` values; the features of [`gen_floats`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group_f32(w: *const u8, units: usize, x: *const f32) -> [f32; 16] {
    let (mut lo, mut hi) = ([_mm256_setzero_ps(); 2], [_mm256_setzero_ps(); 2]);
    for k in 0..units {
        // SAFETY: caller; k < units.
        let (l, h, xv) = unsafe {
            let p = w.add(64 * k) as *const f32;
            (
                _mm256_loadu_ps(p),
                _mm256_loadu_ps(p.add(8)),
                _mm256_set1_ps(*x.add(k)),
            )
        };
        let c = k % 2;
        lo[c] = _mm256_fmadd_ps(l, xv, lo[c]);
        hi[c] = _mm256_fmadd_ps(h, xv, hi[c]);
    }
    store(_mm256_add_ps(lo[0], lo[1]), _mm256_add_ps(hi[0], hi[1]))
}

/// One BF16 group on f32 products: `units` column pairs.
///
/// # Safety
/// `w` has `64·units` bytes, `x` `2·units` values; the features of [`gen_floats`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group_bf16(w: *const u8, units: usize, x: *const f32) -> [f32; 16] {
    // [half][even/odd column]
    let mut acc = [[_mm256_setzero_ps(); 2]; 2];
    let high = _mm256_set1_epi32(0xffff_0000_u32 as i32);
    for k in 0..units {
        // SAFETY: caller; k < units, so columns 2k, 2k + 1 < 2·units.
        let (x0, x1) = unsafe {
            (
                _mm256_set1_ps(*x.add(2 * k)),
                _mm256_set1_ps(*x.add(2 * k + 1)),
            )
        };
        for (half, a) in acc.iter_mut().enumerate() {
            // SAFETY: caller; bytes 64k + 32·half .. + 32 of the group.
            let v = unsafe { _mm256_loadu_si256(w.add(64 * k + 32 * half) as *const __m256i) };
            // bf16 → f32 is a shift: the low half of each lane (column 2k) up by 16,
            // the high half (column 2k + 1) masked in place.
            let even = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v));
            let odd = _mm256_castsi256_ps(_mm256_and_si256(v, high));
            a[0] = _mm256_fmadd_ps(even, x0, a[0]);
            a[1] = _mm256_fmadd_ps(odd, x1, a[1]);
        }
    }
    store(
        _mm256_add_ps(acc[0][0], acc[0][1]),
        _mm256_add_ps(acc[1][0], acc[1][1]),
    )
}

/// One F16 group on f32 products: `units` column pairs.
///
/// # Safety
/// `w` has `64·units` bytes, `x` `2·units` values; the features of [`gen_floats`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group_f16(w: *const u8, units: usize, x: *const f32) -> [f32; 16] {
    // Quarter q holds rows 4q..4q + 4: lanes 2j, 2j + 1 are row 4q + j's columns
    // 2k, 2k + 1.
    let mut acc = [_mm256_setzero_ps(); 4];
    for k in 0..units {
        // SAFETY: caller; k < units. The pair (x[2k], x[2k + 1]) as one 64-bit value,
        // repeated in every lane pair.
        let xp = unsafe {
            _mm256_castpd_ps(_mm256_set1_pd(core::ptr::read_unaligned(
                x.add(2 * k) as *const f64
            )))
        };
        for (q, a) in acc.iter_mut().enumerate() {
            // SAFETY: caller; bytes 64k + 16q .. + 16 of the group.
            let h = unsafe { _mm_loadu_si128(w.add(64 * k + 16 * q) as *const __m128i) };
            *a = _mm256_fmadd_ps(_mm256_cvtph_ps(h), xp, *a);
        }
    }
    let mut s = [0.0f32; 16];
    for (q, a) in acc.iter().enumerate() {
        let mut v = [0.0f32; 8];
        // SAFETY: 8 floats into `v`.
        unsafe { _mm256_storeu_ps(v.as_mut_ptr(), *a) };
        for j in 0..4 {
            s[4 * q + j] = v[2 * j] + v[2 * j + 1];
        }
    }
    s
}
