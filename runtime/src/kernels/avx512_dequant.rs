//! Rows of Q4_K, Q5_K and Q6_K super-blocks dequantised to f32 with AVX-512: what the
//! AMX tiles' prompt kernel (`amx`) makes its bf16 panels of K-quant weights from.
//! Each value is computed as `llm_format::quant::dequantize` computes it (the same
//! f32 products in the same order, no fused multiply-adds), so the two agree bit for
//! bit; the tests below hold them to that. 16 values per step: 16 bytes of quants
//! widened to 32-bit lanes (`vpmovzxbd`), their bits picked by shifts and masks, made
//! f32 and scaled.

use core::arch::x86_64::*;
use llm_format::quant::kquants::scale_min_k4;
use llm_format::quant::QK_K;
use llm_format::DType;

/// Whether [`row`] dequantises `dtype`.
pub(crate) fn has(dtype: DType) -> bool {
    matches!(dtype, DType::Q4_K | DType::Q5_K | DType::Q6_K)
}

/// `out = dequantize(dtype, bytes)` for a row of whole super-blocks of a type [`has`]
/// takes.
///
/// # Panics
/// If [`has`] does not take `dtype`, or `bytes` does not hold `out.len()` values.
///
/// # Safety
/// The CPU has AVX-512 F and BW.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn row(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    let size = dtype.block_bytes();
    assert!(has(dtype) && out.len() % QK_K == 0);
    assert_eq!(bytes.len(), out.len() / QK_K * size);
    for (b, o) in bytes.chunks_exact(size).zip(out.chunks_exact_mut(QK_K)) {
        match dtype {
            DType::Q4_K => q45k::<false>(b, o),
            DType::Q5_K => q45k::<true>(b, o),
            _ => q6k(b, o),
        }
    }
}

/// The f16 at `b[at..at + 2]` as f32.
fn f16_at(b: &[u8], at: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// 16 bytes from `b[at..]`, each widened to a 32-bit lane.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn bytes16(b: &[u8], at: usize) -> __m512i {
    let s = &b[at..at + 16];
    // SAFETY: `s` holds the 16 bytes read.
    _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(s.as_ptr() as *const __m128i) })
}

/// `out[..16] = dl·q − ml` (two roundings, as the scalar code).
#[inline]
#[target_feature(enable = "avx512f")]
fn store_scaled(out: &mut [f32], q: __m512i, dl: f32, ml: f32) {
    let v = _mm512_sub_ps(
        _mm512_mul_ps(_mm512_set1_ps(dl), _mm512_cvtepi32_ps(q)),
        _mm512_set1_ps(ml),
    );
    let o = &mut out[..16];
    // SAFETY: `o` holds the 16 floats written.
    unsafe { _mm512_storeu_ps(o.as_mut_ptr(), v) };
}

/// One Q4_K (`Q5 = false`: `d, dmin, scales[12], qs[128]`) or Q5_K (`d, dmin,
/// scales[12], qh[32], qs[128]`) super-block: value `64c + l` (`l < 32`) is the low
/// nibble of `qs[32c + l]`, value `64c + 32 + l` its high nibble, plus (Q5_K) bit
/// `2c` or `2c + 1` of `qh[l]` as 16; sub-block `j = 2c` or `2c + 1` scales it.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn q45k<const Q5: bool>(b: &[u8], out: &mut [f32]) {
    let (d, min) = (f16_at(b, 0), f16_at(b, 2));
    let scales: &[u8; 12] = b[4..16].try_into().expect("12 bytes");
    let qs = if Q5 { 48 } else { 16 };
    let (nib, one) = (_mm512_set1_epi32(0x0f), _mm512_set1_epi32(1));
    let mut dm = [(0.0f32, 0.0f32); 8];
    for (j, v) in dm.iter_mut().enumerate() {
        let (sc, m) = scale_min_k4(j, scales);
        *v = (d * sc as f32, min * m as f32);
    }
    for c in 0..4 {
        for h in 0..2 {
            let q = bytes16(b, qs + 32 * c + 16 * h);
            let (mut lo, mut hi) = (_mm512_and_si512(q, nib), _mm512_srli_epi32::<4>(q));
            if Q5 {
                let qh = bytes16(b, 16 + 16 * h);
                let bit = |s: u32| {
                    let sh = _mm512_srlv_epi32(qh, _mm512_set1_epi32(s as i32));
                    _mm512_slli_epi32::<4>(_mm512_and_si512(sh, one))
                };
                lo = _mm512_or_si512(lo, bit(2 * c as u32));
                hi = _mm512_or_si512(hi, bit(2 * c as u32 + 1));
            }
            let at = 64 * c + 16 * h;
            let (dl, ml) = dm[2 * c];
            store_scaled(&mut out[at..], lo, dl, ml);
            let (dl, ml) = dm[2 * c + 1];
            store_scaled(&mut out[at + 32..], hi, dl, ml);
        }
    }
}

/// One Q6_K super-block (`ql[128], qh[64], scales[16], d`): in half `n`, value
/// `128n + 32s + l` is the low (`s < 2`) or high nibble of `ql[64n + 32(s % 2) + l]`
/// with bits `2s, 2s + 1` of `qh[32n + l]` above it, minus 32, times `d·scales[k / 16]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn q6k(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 208);
    let (nib, three, off) = (
        _mm512_set1_epi32(0x0f),
        _mm512_set1_epi32(3),
        _mm512_set1_epi32(32),
    );
    for n in 0..2 {
        for h in 0..2 {
            let qh = bytes16(b, 128 + 32 * n + 16 * h);
            let (ql0, ql1) = (
                bytes16(b, 64 * n + 16 * h),
                bytes16(b, 64 * n + 32 + 16 * h),
            );
            for s in 0..4 {
                let ql = if s % 2 == 0 { ql0 } else { ql1 };
                let low = if s < 2 {
                    _mm512_and_si512(ql, nib)
                } else {
                    _mm512_srli_epi32::<4>(ql)
                };
                let high = _mm512_and_si512(
                    _mm512_srlv_epi32(qh, _mm512_set1_epi32(2 * s as i32)),
                    three,
                );
                let q = _mm512_sub_epi32(_mm512_or_si512(low, _mm512_slli_epi32::<4>(high)), off);
                let k = 128 * n + 32 * s + 16 * h;
                let scale = d * (b[192 + k / 16] as i8) as f32;
                let v = _mm512_mul_ps(_mm512_set1_ps(scale), _mm512_cvtepi32_ps(q));
                let o = &mut out[k..k + 16];
                // SAFETY: `o` holds the 16 floats written.
                unsafe { _mm512_storeu_ps(o.as_mut_ptr(), v) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{eprintln, vec, vec::Vec};

    /// [`row`] against the scalar `dequantize`, bit for bit, on random super-blocks
    /// (random bytes with finite, moderate f16 scales) of every type it takes.
    #[test]
    fn rows_equal_the_scalar_dequantisation() {
        if !(std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw"))
        {
            eprintln!("skipped: no AVX-512 here");
            return;
        }
        let mut rng = crate::test_common::Rng::fresh();
        let mut byte = move || (rng.next() >> 32) as u8;
        for dtype in [DType::Q4_K, DType::Q5_K, DType::Q6_K] {
            let size = dtype.block_bytes();
            let blocks = 3;
            let mut bytes: Vec<u8> = (0..blocks * size).map(|_| byte()).collect();
            // Scales: f16 of magnitude 2⁻⁸..2⁻¹ (exponent 7..14), either sign.
            let scale_at: &[usize] = if dtype == DType::Q6_K {
                &[208]
            } else {
                &[0, 2]
            };
            for blk in bytes.chunks_exact_mut(size) {
                for &at in scale_at {
                    let sign = (byte() as u16 & 1) << 15;
                    let exp = (7 + byte() as u16 % 8) << 10;
                    let man = ((byte() as u16) << 2 | byte() as u16 & 3) & 0x3ff;
                    blk[at..at + 2].copy_from_slice(&(sign | exp | man).to_le_bytes());
                }
            }
            let n = blocks * QK_K;
            let want = llm_format::quant::dequantize_vec(dtype, &bytes, n).expect("sizes");
            let mut got = vec![f32::NAN; n];
            // SAFETY: AVX-512 F and BW checked above.
            unsafe { row(dtype, &bytes, &mut got) };
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(w.is_finite(), "{dtype} value {k}: reference {w}");
                assert_eq!(g.to_bits(), w.to_bits(), "{dtype} value {k}: {g} vs {w}");
            }
        }
    }
}
