//! x86-64 AVX-512 BF16 prompt kernels for F16 and BF16 weights: `vdpbf16ps`, which
//! multiplies 32 pairs of bf16 values and adds each lane's two products to an f32 sum,
//! twice the products per instruction of an f32 FMA and without widening the weights.
//!
//! * The activations of a product are rounded to bf16 once per call ([`round_rows`],
//!   `vcvtneps2bf16`: round to nearest even), each row padded with zeros to a multiple
//!   of 32 columns, so every load of them is a whole register.
//! * The weights go in chunks of 4 rows × up to [`KQ`]·32 columns (`packed_rows!`),
//!   made bf16 once per chunk: F16 through f32 (exact) and `vcvtne2ps2bf16` (rounded
//!   to nearest even), BF16 copied as they are; the last partial 32 columns read
//!   under a mask and the rest of the register is zero. Tiles of 4 rows ×
//!   [`TA`] activations then sweep the chunk: each weight register serves `TA`
//!   activations and each activation register 4 rows.
//!
//! **Error** against the f32 products (`scalar`): each activation is rounded to bf16
//! (relative error at most `u = 2⁻⁸`), and so is each F16 weight (BF16 weights are
//! used as they are); the products of two bf16 values are exact in f32 and the sums
//! are f32. So each output moves by at most `(2u + u²)·Σ|w||x|` for F16 weights and
//! `u·Σ|w||x|` for BF16 weights, plus the f32 summation terms every path has
//! (`vdpbf16ps` rounds to nearest even and treats denormal inputs and results as
//! zero, which adds at most `K · 2⁻¹²⁶` in absolute terms). Since the rounding errors
//! have random signs, the typical error is much smaller: about
//! `u·sqrt(2/3 · Σ(w·x)²)`, which grows as `sqrt(K)`. `tests/kernels.rs` checks both.
//! `Cpu::set_f16_exact` keeps the f32 path where this is not acceptable.
//!
//! Generation (`n = 1`) does not come here: it reads each weight once, memory sets
//! its pace, and the f32 path already keeps up with it (PERF.md).

use super::{Matrix, OutRows};
use core::arch::x86_64::*;
use llm_format::DType;

/// 32-column groups per weight chunk: 4 rows × 64 × 64 bytes = 16 KiB, within L1
/// beside the activation tile; 2048 columns, so the 110M shape's rows (768 and
/// 2048) go in one chunk.
const KQ: usize = 64;

/// Activations per tile: 4 rows × 6 activations = 24 accumulators, plus 6 activation
/// registers, within the 32 vector registers.
const TA: usize = 6;

/// Proof that the CPU has AVX-512 BF16 as well as the [`Avx512`](super::avx512::Avx512)
/// token's features: exists only through [`Bf16Dots::detect`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bf16Dots(());

impl Bf16Dots {
    /// The token, if this CPU (std: run-time detection; no_std: compile-time target
    /// features) has AVX-512 BF16 besides F/BW/VL and F16C. Called once per
    /// [`Avx512`](super::avx512::Avx512) token, which the caller holds.
    pub(crate) fn detect() -> Option<Bf16Dots> {
        #[cfg(feature = "std")]
        let ok = std::is_x86_feature_detected!("avx512bf16")
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("f16c");
        #[cfg(not(feature = "std"))]
        let ok = cfg!(all(
            target_feature = "avx512bf16",
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vl",
            target_feature = "f16c"
        ));
        ok.then_some(Bf16Dots(()))
    }

    /// Rounds `x` (rows of `cols` values) to bf16 into `out` (rows of
    /// [`padded`]`(cols)` values, the padding zero).
    ///
    /// # Panics
    /// Unless `out.len() / padded(cols) == x.len() / cols` with no remainders.
    pub(crate) fn round_rows(self, x: &[f32], cols: usize, out: &mut [u16]) {
        // SAFETY: the token exists only if the CPU has every feature it enables.
        unsafe { round_rows(x, cols, out) }
    }

    /// Rows `out.r0..out.r1` of `y = x·Wᵀ` for F16 or BF16 weights, with `xb` the
    /// activations as [`Bf16Dots::round_rows`] wrote them.
    ///
    /// # Panics
    /// If `w` is not F16 or BF16, or `xb` does not hold `out.n()` padded rows.
    pub(crate) fn rows(self, w: &Matrix<'_>, xb: &[u16], out: &mut OutRows<'_>) {
        // SAFETY: as in `round_rows`.
        unsafe {
            match w.dtype {
                DType::F16 => rows::<true>(w, xb, out),
                DType::BF16 => rows::<false>(w, xb, out),
                d => panic!("bf16 dots take F16 or BF16 weights, not {d}"),
            }
        }
    }
}

/// Row stride of the bf16 activations: `cols` rounded up to whole registers of 32.
pub(crate) fn padded(cols: usize) -> usize {
    cols.next_multiple_of(32)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,f16c")]
fn round_rows(x: &[f32], cols: usize, out: &mut [u16]) {
    let stride = padded(cols);
    let n = x.len().checked_div(cols).unwrap_or(0);
    assert!(x.len() == n * cols || cols == 0);
    assert_eq!(out.len(), n * stride);
    for (xr, or) in x
        .chunks_exact(cols.max(1))
        .zip(out.chunks_exact_mut(stride.max(1)))
    {
        let mut c = 0;
        while c < stride {
            let left = cols.saturating_sub(c).min(16);
            let mask = ((1u32 << left) - 1) as __mmask16;
            // SAFETY: the mask selects columns c..c + left < cols of row `xr`; the
            // store covers out columns c..c + 16 <= stride (stride is a multiple of 32
            // and c of 16).
            unsafe {
                let v = _mm512_maskz_loadu_ps(mask, xr.as_ptr().add(c));
                let h: __m256i = core::mem::transmute(_mm512_cvtneps_pbh(v));
                _mm256_storeu_si256(or.as_mut_ptr().add(c) as *mut __m256i, h);
            }
            c += 16;
        }
    }
}

/// 32 weights of a row (columns `32g..`, the last `cols % 32` under a mask, the rest
/// zero) as bf16 in one register: F16 (`F16 = true`) converted, BF16 as it is.
///
/// # Safety
/// `row` holds `cols` weights of 2 bytes; `32g < cols`; the features of `rows`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,f16c")]
unsafe fn load_bf16<const F16: bool>(row: &[u8], cols: usize, g: usize) -> __m512i {
    let c = 32 * g;
    let left = (cols - c).min(32);
    let mask = if left == 32 {
        u32::MAX
    } else {
        (1u32 << left) - 1
    };
    // SAFETY: the mask selects weights c..c + left < cols, inside `row`.
    unsafe {
        let v = _mm512_maskz_loadu_epi16(mask, row.as_ptr().add(2 * c) as *const i16);
        if F16 {
            let lo = _mm512_cvtph_ps(_mm512_castsi512_si256(v));
            let hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(v));
            // `cvtne2ps` puts its first operand in the upper half.
            core::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo))
        } else {
            v
        }
    }
}

/// `[[w_j·x_k for k in 0..T] for j in 0..4]` over the chunk's groups `0..len`, with
/// `xs[k]` pointing at group 0's 32 bf16 activations of row `k` (results in the first
/// `T` of `TA` columns).
///
/// # Safety
/// Each `xs[k]` has `32·len` readable values; the features of `rows`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,f16c")]
unsafe fn tile<const T: usize>(
    chunk: &[[__m512i; KQ]; 4],
    len: usize,
    xs: [*const u16; T],
) -> [[f32; TA]; 4] {
    let mut acc = [[_mm512_setzero_ps(); T]; 4];
    for g in 0..len.min(KQ) {
        // SAFETY: caller (32 values at group g < len of each row).
        let xv: [__m512bh; T] = core::array::from_fn(|k| unsafe {
            core::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                xs[k].add(32 * g) as *const __m512i
            ))
        });
        for (accj, cj) in acc.iter_mut().zip(chunk) {
            // SAFETY: same size and bit pattern; bf16 values in both.
            let wv = unsafe { core::mem::transmute::<__m512i, __m512bh>(cj[g]) };
            for (a, x) in accj.iter_mut().zip(&xv) {
                *a = _mm512_dpbf16_ps(*a, wv, *x);
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

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,f16c")]
fn rows<const F16: bool>(w: &Matrix<'_>, xb: &[u16], out: &mut OutRows<'_>) {
    let (n, cols) = (out.n(), w.cols);
    let stride = padded(cols);
    assert_eq!(xb.len(), n * stride);
    let groups = stride / 32;
    packed_rows!(
        w, out, nq: groups, kq: KQ, zero: _mm512_setzero_si512(), width: TA,
        row_bytes: 2 * cols,
        unpack |row, g| {
            // SAFETY: group g < cols.div_ceil(32) starts inside the row, whose length
            // is asserted; this function's features.
            unsafe { load_bf16::<F16>(row, cols, g) }
        },
        sweep |chunk, c0, c1, emit| {
            let x = |i: usize| xb[i * stride + 32 * c0..].as_ptr();
            let mut i = 0;
            // SAFETY (tiles): row i's values from group c0 to c1 lie in `xb` (its
            // length is asserted); this function's features.
            while i + TA <= n {
                let xs: [*const u16; TA] = core::array::from_fn(|k| x(i + k));
                emit(i, unsafe { tile::<TA>(chunk, c1 - c0, xs) }, TA);
                i += TA;
            }
            while i < n {
                emit(i, unsafe { tile::<1>(chunk, c1 - c0, [x(i)]) }, 1);
                i += 1;
            }
        },
        after |r, here| {}
    );
}
