//! Activations quantised per block of 32 to 8 bits, for the integer dot products of
//! the quantised weight types.
//!
//! One [`Q8Act`] carries both of ggml's activation blocks: `block_q8_0` (`d`, `qs`)
//! for Q8_0 and Q4_0 weights, and `block_q8_1` (`d`, `s = d·Σq`, `qs`) for Q4_1. `d`
//! and `s` are stored as the f32 values of their f16 roundings, so the arithmetic is
//! ggml's exactly. The SIMD quantisers reproduce [`quantize`] bit for bit.

use half::f16;

/// Elements per block.
pub(crate) const QK: usize = 32;

/// One quantised block of 32 activations.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(16))]
pub(crate) struct Q8Act {
    /// Quants: x\[j\] ≈ qs\[j\]·d, in -127..=127.
    pub(crate) qs: [i8; QK],
    /// Scale `amax/127`, rounded to f16 (ggml stores it as f16).
    pub(crate) d: f32,
    /// `f16(Σqs · amax/127)`, ggml's `block_q8_1::s` (used with Q4_1's minimum).
    pub(crate) s: f32,
    /// `Σqs` (exact; the VNNI paths use it to undo the +8 / +128 offsets).
    pub(crate) sum: i32,
}

impl Q8Act {
    /// An all-zero block (scratch initialisation).
    pub(crate) const ZERO: Q8Act = Q8Act {
        qs: [0; QK],
        d: 0.0,
        s: 0.0,
        sum: 0,
    };
}

pub(crate) use llm_format::quant::round_half_away;

/// The block's scale from its largest magnitude: (`d` as f32, its f16 rounding, `1/d`).
#[inline(always)]
pub(crate) fn scales(amax: f32) -> (f32, f32, f32) {
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (d, f16::from_f32(d).to_f32(), id)
}

/// `f16(sum·d)` as f32: ggml's `block_q8_1::s`.
#[inline(always)]
pub(crate) fn s_of(sum: i32, d: f32) -> f32 {
    f16::from_f32(sum as f32 * d).to_f32()
}

/// Quantises `x` (`out.len()·32` values) block by block: ggml's
/// `quantize_row_q8_1_reference` (whose `d` and `qs` are `quantize_row_q8_0_reference`'s).
///
/// # Panics
/// If `x.len() != 32·out.len()`.
pub(crate) fn quantize(x: &[f32], out: &mut [Q8Act]) {
    assert_eq!(x.len(), out.len() * QK);
    for (b, o) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (d, d16, id) = scales(amax);
        let mut sum = 0i32;
        for (q, v) in o.qs.iter_mut().zip(b) {
            *q = round_half_away(v * id) as i8;
            sum += *q as i32;
        }
        o.d = d16;
        o.s = s_of(sum, d);
        o.sum = sum;
    }
}

/// Elements per super-block (the K-quants' and IQ4_XS's activation blocks).
pub(crate) const QK_K: usize = 256;

/// One super-block of 256 activations quantised to 8 bits: ggml's `block_q8_K`, the
/// activation type of the K-quants and IQ4_XS. One f32 scale (not rounded to f16)
/// and the sums of each 16 quants, which the types with minimums use to take the
/// minimum's share out in integers.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(64))]
pub(crate) struct Q8K {
    /// Quants: x\[j\] ≈ qs\[j\]·d, in -127..=127.
    pub(crate) qs: [i8; QK_K],
    /// Scale: `max/127` with the sign of the value of largest magnitude (ggml's
    /// `1/iscale`), 0 for an all-zero block.
    pub(crate) d: f32,
    /// `Σ qs[16g..16g+16]` for each group `g` of 16.
    pub(crate) bsums: [i16; QK_K / 16],
}

impl Q8K {
    /// An all-zero super-block (scratch initialisation).
    pub(crate) const ZERO: Q8K = Q8K {
        qs: [0; QK_K],
        d: 0.0,
        bsums: [0; QK_K / 16],
    };
}

use llm_format::quant::nearest_int;

/// Quantises `x` (`out.len()·256` values) super-block by super-block: ggml's
/// `quantize_row_q8_K_ref` (bsums are 0 for an all-zero block, where ggml leaves them
/// unset; every kernel multiplies them by `d = 0` there).
///
/// # Panics
/// If `x.len() != 256·out.len()`.
pub(crate) fn quantize_k(x: &[f32], out: &mut [Q8K]) {
    assert_eq!(x.len(), out.len() * QK_K);
    for (b, o) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in b {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *o = Q8K::ZERO;
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in o.qs.iter_mut().zip(b) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (s, g) in o.bsums.iter_mut().zip(o.qs.chunks_exact(16)) {
            *s = g.iter().map(|&q| q as i16).sum();
        }
        o.d = 1.0 / iscale;
    }
}

/// Four consecutive blocks of one activation row, rearranged for 512-bit kernels that
/// take four weight blocks per register: byte group `g` (16 bytes) of `lo` holds
/// elements 0..16 of block `g`, of `hi` elements 16..32 (the order of Q4 nibbles).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(64))]
pub(crate) struct Q8Quad {
    /// Elements 0..16 of each of the 4 blocks.
    pub(crate) lo: [i8; 64],
    /// Elements 16..32 of each of the 4 blocks.
    pub(crate) hi: [i8; 64],
    /// Each block's `d`.
    pub(crate) d: [f32; 4],
    /// Each block's `d·Σq` in f32 (undoes the +8 / +128 weight offsets).
    pub(crate) dsum: [f32; 4],
    /// Each block's `s` (Q4_1).
    pub(crate) s: [f32; 4],
    _pad: [f32; 4],
    /// Block `g`'s `d` in lanes `4g..4g+4`: the layout of a 512-bit register of the
    /// per-lane integer sums `vpdpbusd` leaves (lanes `4g..4g+4` belong to block `g`).
    pub(crate) dq: [f32; 16],
    /// `-8·Σq` of block `g` in lane `4g`, 0 in the others: a `vpdpbusd` started from
    /// it takes Q4_0's +8 weight offset back out exactly, in integers.
    pub(crate) off8: [i32; 16],
    /// The same for Q8_0's +128 offset: `-128·Σq` of block `g` in lane `4g`.
    pub(crate) off128: [i32; 16],
    /// Block `g`'s `s` in lane `4g`, 0 in the others (Q4_1's `m·s`).
    pub(crate) sq: [f32; 16],
}

impl Q8Quad {
    /// An all-zero quad (scratch initialisation).
    pub(crate) const ZERO: Q8Quad = Q8Quad {
        lo: [0; 64],
        hi: [0; 64],
        d: [0.0; 4],
        dsum: [0.0; 4],
        s: [0.0; 4],
        _pad: [0.0; 4],
        dq: [0.0; 16],
        off8: [0; 16],
        off128: [0; 16],
        sq: [0.0; 16],
    };
}

/// Fills `quads` (`n · nq` of them, `nq` either `⌊nb/4⌋` or `⌈nb/4⌉`) from `blocks`
/// (`n · nb`, `n` rows of `nb` blocks): quad `i·nq + g` holds blocks `4g..4g+4` of row
/// `i`. With `⌊nb/4⌋` the last `nb % 4` blocks of each row have no quad; with `⌈nb/4⌉`
/// they fill a last quad whose missing blocks are zero (no quants, `d = 0`, no
/// offsets), so that they add exactly nothing.
///
/// # Panics
/// If the lengths disagree.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn build_quads(blocks: &[Q8Act], nb: usize, quads: &mut [Q8Quad]) {
    if nb == 0 {
        assert!(quads.is_empty());
        return;
    }
    let n = blocks.len() / nb;
    assert_eq!(blocks.len(), n * nb);
    if n == 0 {
        assert!(quads.is_empty());
        return;
    }
    let nq = quads.len() / n;
    assert_eq!(quads.len(), n * nq);
    assert!(
        nq == nb / 4 || nq == nb.div_ceil(4),
        "{nq} quads for {nb} blocks"
    );
    if nq == 0 {
        return;
    }
    for (row, qrow) in blocks.chunks_exact(nb).zip(quads.chunks_exact_mut(nq)) {
        for (four, q) in row.chunks(4).zip(qrow.iter_mut()) {
            if four.len() < 4 {
                *q = Q8Quad::ZERO;
            }
            for (g, b) in four.iter().enumerate() {
                q.lo[16 * g..16 * g + 16].copy_from_slice(&b.qs[..16]);
                q.hi[16 * g..16 * g + 16].copy_from_slice(&b.qs[16..]);
                q.d[g] = b.d;
                q.dsum[g] = b.d * b.sum as f32;
                q.s[g] = b.s;
                q.dq[4 * g..4 * g + 4].fill(b.d);
                q.off8[4 * g..4 * g + 4].copy_from_slice(&[-8 * b.sum, 0, 0, 0]);
                q.off128[4 * g..4 * g + 4].copy_from_slice(&[-128 * b.sum, 0, 0, 0]);
                q.sq[4 * g..4 * g + 4].copy_from_slice(&[b.s, 0.0, 0.0, 0.0]);
            }
        }
    }
}

/// Row stride of activations rounded to bf16 for the bf16 dot-product kernels
/// (`avx512_bf16`, `amx`, `neon_bf16`): `cols` rounded up to 32, so every load of a
/// row is a whole register on every path (512 bits on x86-64).
pub(crate) fn bf16_padded(cols: usize) -> usize {
    cols.next_multiple_of(32)
}

/// The rows of a rounding to bf16: each row of `cols` values of `x` with its row of
/// [`bf16_padded`]`(cols)` values of `out`.
///
/// # Panics
/// Unless `out.len() / bf16_padded(cols) == x.len() / cols` with no remainders.
pub(crate) fn bf16_row_pairs<'a>(
    x: &'a [f32],
    cols: usize,
    out: &'a mut [u16],
) -> impl Iterator<Item = (&'a [f32], &'a mut [u16])> {
    let stride = bf16_padded(cols);
    let n = x.len().checked_div(cols).unwrap_or(0);
    assert!(x.len() == n * cols || cols == 0);
    assert_eq!(out.len(), n * stride);
    x.chunks_exact(cols.max(1))
        .zip(out.chunks_exact_mut(stride.max(1)))
}

/// Rounds `x` (rows of `cols` values) to bf16, to nearest even, into `out` (rows of
/// [`bf16_padded`]`(cols)` values, the padding zero): the portable form of the bits
/// `avx512_bf16` writes with `vcvtneps2bf16` (equal for every value but NaN, whose
/// payload may differ), for paths without a vector rounding of their own.
///
/// # Panics
/// Unless `out.len() / bf16_padded(cols) == x.len() / cols` with no remainders.
pub(crate) fn round_bf16_rows(x: &[f32], cols: usize, out: &mut [u16]) {
    for (xr, or) in bf16_row_pairs(x, cols, out) {
        let (head, pad) = or.split_at_mut(cols);
        for (o, v) in head.iter_mut().zip(xr) {
            *o = half::bf16::from_f32(*v).to_bits();
        }
        pad.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use llm_format::quant::{Block, BlockQ8_0};

    /// Random blocks (xorshift from a fresh seed each run, printed; see
    /// `test_common`), plus blocks whose values land exactly on halves of the
    /// quantisation step.
    fn inputs() -> Vec<f32> {
        use crate::test_common::{fresh_seed, test_seed};
        let mut s = (test_seed(fresh_seed()) ^ 0x9e37_79b9_7f4a_7c15).max(1);
        let mut x: Vec<f32> = (0..32 * 64)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                u * (1.0 + (i / 32) as f32)
            })
            .collect();
        // amax = 127 so d = 1 and every k + 0.5 is a tie: roundf goes away from zero.
        let ties: Vec<f32> = (0..32)
            .map(|j| if j == 0 { 127.0 } else { j as f32 - 16.5 })
            .collect();
        x.extend_from_slice(&ties);
        x.extend(ties.iter().map(|v| -v));
        x
    }

    #[test]
    fn matches_ggml_q8_0_reference() {
        let x = inputs();
        let mut a = vec![Q8Act::ZERO; x.len() / QK];
        quantize(&x, &mut a);
        for (b, blk) in x.chunks_exact(QK).zip(&a) {
            let r = BlockQ8_0::quantize(b);
            assert_eq!(blk.qs, r.qs);
            assert_eq!(blk.d, r.d.to_f32());
            let sum: i32 = r.qs.iter().map(|&q| q as i32).sum();
            assert_eq!(blk.sum, sum);
            let amax = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert_eq!(blk.s, f16::from_f32(sum as f32 * (amax / 127.0)).to_f32());
        }
        // The tie block really has ties, rounded away from zero.
        let t = &a[a.len() - 2];
        assert_eq!(t.qs[1], -16); // 1 - 16.5 = -15.5 → -16
        assert_eq!(t.qs[17], 1); // 0.5 → 1
    }

    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[test]
    fn avx2_quantiser_is_bit_identical() {
        let Some(t) = super::super::avx2::Avx2::detect() else {
            return;
        };
        let x = inputs();
        let mut a = vec![Q8Act::ZERO; x.len() / QK];
        let mut b = vec![Q8Act::ZERO; x.len() / QK];
        quantize(&x, &mut a);
        t.quantize(&x, &mut b);
        assert_eq!(a, b);
    }

    /// The portable bf16 rounding and AVX-512's `vcvtneps2bf16` give the same bits
    /// (random rows, ties included, 45 columns: a partial register and padding).
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[test]
    fn avx512_bf16_rounding_is_bit_identical() {
        let Some(b) = super::super::avx512_bf16::Bf16Dots::detect() else {
            return;
        };
        let mut x = inputs();
        // Exact ties between two bf16 values: 1 + 2⁻⁸ (to even: 1) and 1 + 3·2⁻⁸.
        x.extend([1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0, -(1.0 + 1.0 / 256.0)]);
        let cols = 45;
        x.truncate(x.len() / cols * cols);
        let len = x.len() / cols * bf16_padded(cols);
        let (mut want, mut got) = (vec![1u16; len], vec![1u16; len]);
        round_bf16_rows(&x, cols, &mut want);
        b.round_rows(&x, cols, &mut got);
        assert_eq!(want, got);
        assert!(want.iter().any(|&v| v != 0));
    }

    /// Found by fuzzing (`capi_load`): a block with NaN or infinite values gave a
    /// `sum` that was not the sum of its stored quants (and overflowed `-8·sum`).
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[test]
    fn avx2_sum_is_the_sum_of_the_stored_quants_for_non_finite_input() {
        let Some(t) = super::super::avx2::Avx2::detect() else {
            return;
        };
        let mut x: Vec<f32> = inputs().into_iter().take(4 * QK).collect();
        x[3] = f32::NAN;
        x[QK + 5] = f32::INFINITY;
        x[2 * QK..3 * QK].fill(f32::NAN);
        x[3 * QK + 1] = f32::NEG_INFINITY;
        let mut b = vec![Q8Act::ZERO; 4];
        t.quantize(&x, &mut b);
        for blk in &b {
            let sum: i32 = blk.qs.iter().map(|&q| q as i32).sum();
            assert_eq!(blk.sum, sum);
            assert!(blk.sum.checked_mul(-128).is_some());
        }
    }

    /// `quantize_k` against ggml's `quantize_row_q8_K_ref` as specified: the value of
    /// largest magnitude maps to -127 (so `d` carries the opposite sign), every other
    /// value rounds to nearest with ties to even, `bsums` are the sums of 16, and an
    /// all-zero super-block is all zero.
    #[test]
    fn q8k_follows_ggml() {
        let mut x = inputs();
        x.truncate(QK_K * (x.len() / QK_K));
        // A super-block of ties: max = 127 gives iscale = -1, so v·iscale = -(k + 0.5).
        let mut ties = [0.0f32; QK_K];
        ties[0] = 127.0;
        for (j, t) in ties.iter_mut().enumerate().skip(1) {
            *t = (j % 60) as f32 - 29.5;
        }
        x.extend_from_slice(&ties);
        x.extend_from_slice(&[0.0; QK_K]);
        let mut k = vec![Q8K::ZERO; x.len() / QK_K];
        quantize_k(&x, &mut k);
        for (b, q) in x.chunks_exact(QK_K).zip(&k) {
            let imax = (0..QK_K).fold(0, |m, j| if b[j].abs() > b[m].abs() { j } else { m });
            if b[imax] == 0.0 {
                assert_eq!(*q, Q8K::ZERO);
                continue;
            }
            assert_eq!(q.qs[imax], -127);
            assert_eq!(q.d, 1.0 / (-127.0 / b[imax]));
            for (j, (&v, &qj)) in b.iter().zip(&q.qs).enumerate() {
                let e = v * (-127.0 / b[imax]);
                assert!((e - qj as f32).abs() <= 0.5, "{j}: {e} -> {qj}");
                if (e - e.trunc()).abs() == 0.5 {
                    assert_eq!(qj % 2, 0, "tie {e} must round to even, got {qj}");
                }
            }
            for (g, s) in q.bsums.iter().enumerate() {
                let want: i32 = q.qs[16 * g..16 * g + 16].iter().map(|&v| v as i32).sum();
                assert_eq!(*s as i32, want);
            }
        }
        // The tie block really had ties: -(1 - 29.5) = 28.5 → 28.
        assert_eq!(k[k.len() - 2].qs[1], 28);
    }
}
