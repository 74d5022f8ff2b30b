//! aarch64 NEON kernels: the same functions as `scalar`, kept simple (one weight row
//! against one activation at a time, through `rows_fn!`).
//!
//! * Floats: 4 × 4-lane FMA accumulators over 16 columns per step; bf16 weights are
//!   widened in registers (a 16-bit shift), f16 weights 32 at a time with `half` into
//!   a buffer and then multiplied in NEON. The last `cols % 16` columns go through the
//!   scalar dot. Where the CPU has BF16, F16/BF16 prompts and BF16 generation take
//!   `bfdot` tiles instead (`neon_bf16`), unless the context keeps f32 products.
//! * Blocks of 32 (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL): each block's weight quants
//!   unpacked to 32 signed bytes in registers (nibbles by mask and shift, Q5's fifth
//!   bits by a bit test of the mask bytes, IQ4_NL's levels by a table lookup, `tbl`),
//!   its integer sum with `vmull_s8` and pairwise widening adds (exact, so equal to the
//!   scalar sum), then the scalar's `sumi·d_w·d_x` accumulation, so a block row
//!   differs from the reference only if the f32 sums do.
//! * Super-blocks of 256 (Q2_K … Q6_K, IQ4_XS): the same exact sums per group of 16
//!   or 32, each multiplied by its group scale in the i32 lanes (`mla`), the minimums
//!   met with the activations' `bsums` in integers, then the scalar's two f32 products
//!   per super-block. No integer sum can overflow: the largest, Q6_K's, is at most
//!   256·32·127·128 < 2²⁸ in magnitude.
//! * No `dotprod` (`sdot`) variant: its intrinsics are not stable Rust yet.
//!
//! Q8_0, Q4_0 and Q4_1 load at byte offsets of the row; the other block types read
//! their fields through `llm_format`'s block structs (`read_block`, as `scalar` does)
//! and load vectors only from bounds-checked slices, so no layout offset is written
//! twice.
//!
//! Tested under qemu-user (`scripts/test-neon.sh`), not on hardware: the speed of this
//! path is unmeasured.

use super::act::{Q8Act, Q8K, QK};
use super::neon_bf16::NeonBf16;
use super::scalar::{self, f16_at};
use super::{Acts, Matrix, OutRows};
use core::arch::aarch64::*;
use half::f16;
use llm_format::quant::kquants::{iq4xs_scale, q3k_scales, scale_min_k4};
use llm_format::quant::{
    BlockIq4Nl, BlockIq4Xs, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    IQ4_NL_VALUES,
};
use llm_format::DType;

/// Proof that the CPU has NEON: exists only through [`Neon::detect`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Neon {
    /// The bf16 dot products for F16/BF16 weights, if the CPU has them.
    bf16: Option<NeonBf16>,
}

impl Neon {
    /// The token, if this CPU has NEON (std: run-time detection; no_std: compile-time).
    pub(crate) fn detect() -> Option<Neon> {
        #[cfg(feature = "std")]
        let ok = std::arch::is_aarch64_feature_detected!("neon");
        #[cfg(not(feature = "std"))]
        let ok = cfg!(target_feature = "neon");
        ok.then(|| Neon {
            bf16: NeonBf16::detect(),
        })
    }

    /// The bf16 dot products for F16/BF16 weights (`neon_bf16`), if the CPU has them.
    pub(crate) fn bf16(self) -> Option<NeonBf16> {
        self.bf16
    }

    /// See `scalar::rows`. F16/BF16 products whose activations were rounded to bf16
    /// (`acts.xb` filled, which needs this token's `bf16`) go to `neon_bf16`.
    pub(crate) fn rows(self, w: &Matrix<'_>, acts: &Acts<'_>, out: &mut OutRows<'_>) {
        if let (DType::F16 | DType::BF16, Some(b), false) = (w.dtype, self.bf16, acts.xb.is_empty())
        {
            return b.rows(w, acts.xb, out);
        }
        // SAFETY: the token exists only if the CPU has NEON.
        unsafe { rows(w, acts, out) }
    }
}

rows_fn! {
    /// Rows `out.r0..out.r1` of `y = x · Wᵀ` with the NEON dots below.
    #[target_feature(enable = "neon")]
    fn rows {
        float: F32 => dot_f32, F16 => dot_f16, BF16 => dot_bf16;
        q8: Q8_0 => dot_q8_0, Q4_0 => dot_q4_0, Q4_1 => dot_q4_1,
            Q5_0 => dot_q5_0, Q5_1 => dot_q5_1, IQ4_NL => dot_iq4_nl;
        q8k: Q2_K => dot_q2_k, Q3_K => dot_q3_k, Q4_K => dot_q4_k,
            Q5_K => dot_q5_k, Q6_K => dot_q6_k, IQ4_XS => dot_iq4_xs;
    }
}

/// `Σ w·x` for a float row `$w` of `$size`-byte weights: 16 columns per step in four
/// FMA chains, each 4 weights widened by `$load4(pointer)`, then `$tail` (the scalar
/// dot) over the last `n % 16` columns.
macro_rules! float_dot {
    ($w:ident, $x:ident, $size:expr, $load4:ident, $tail:path) => {{
        let n = $x.len();
        assert_eq!(
            $w.len(),
            $size * n,
            "weight row and activation lengths differ"
        );
        let mut acc = [vdupq_n_f32(0.0); 4];
        let mut c = 0;
        while c + 16 <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: c + 16 <= n, so the 4 weights and the 4 floats at c + 4k lie
                // in `w` and `x` (lengths checked above); these loads need no alignment.
                let (wv, xv) = unsafe {
                    (
                        $load4($w.as_ptr().add($size * (c + 4 * k))),
                        vld1q_f32($x.as_ptr().add(c + 4 * k)),
                    )
                };
                *a = vfmaq_f32(*a, wv, xv);
            }
            c += 16;
        }
        let sum = vaddvq_f32(vaddq_f32(
            vaddq_f32(acc[0], acc[1]),
            vaddq_f32(acc[2], acc[3]),
        ));
        sum + $tail(&$w[$size * c..], &$x[c..])
    }};
}

/// 4 f32 weights (16 little-endian bytes) at `p`.
///
/// # Safety
/// 16 readable bytes at `p`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load4_f32(p: *const u8) -> float32x4_t {
    // SAFETY: caller; byte loads have no alignment need.
    vreinterpretq_f32_u8(unsafe { vld1q_u8(p) })
}

/// 4 bf16 weights (8 bytes) at `p`, widened to f32: a 16-bit left shift of each u16
/// into a u32.
///
/// # Safety
/// 8 readable bytes at `p`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load4_bf16(p: *const u8) -> float32x4_t {
    // SAFETY: caller; byte loads have no alignment need.
    let h = vreinterpret_u16_u8(unsafe { vld1_u8(p) });
    vreinterpretq_f32_u32(vshll_n_u16::<16>(h))
}

/// f32 row (little-endian bytes) · x.
#[target_feature(enable = "neon")]
fn dot_f32(w: &[u8], x: &[f32]) -> f32 {
    float_dot!(w, x, 4, load4_f32, scalar::dot_f32)
}

/// bf16 row · x, f32 accumulation.
#[target_feature(enable = "neon")]
fn dot_bf16(w: &[u8], x: &[f32]) -> f32 {
    float_dot!(w, x, 2, load4_bf16, scalar::dot_bf16)
}

/// f16 row · x: 32 weights at a time widened with `half` into a buffer, then a NEON
/// f32 dot of the buffer with `x` (scalar for the last `len % 4` of each chunk).
#[target_feature(enable = "neon")]
fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
    assert_eq!(
        w.len(),
        2 * x.len(),
        "weight row and activation lengths differ"
    );
    let mut sum = 0.0f32;
    let mut buf = [0.0f32; 32];
    for (wc, xc) in w.chunks(64).zip(x.chunks(32)) {
        let n = xc.len();
        for (o, b) in buf.iter_mut().zip(wc.chunks_exact(2)) {
            *o = f16_at(b);
        }
        let mut acc = vdupq_n_f32(0.0);
        let mut c = 0;
        while c + 4 <= n {
            // SAFETY: c + 4 <= n <= 32: the 4 floats at c lie in `buf` and in `xc`.
            let (wv, xv) = unsafe {
                (
                    vld1q_f32(buf.as_ptr().add(c)),
                    vld1q_f32(xc.as_ptr().add(c)),
                )
            };
            acc = vfmaq_f32(acc, wv, xv);
            c += 4;
        }
        sum += vaddvq_f32(acc);
        for (b, v) in buf[c..n].iter().zip(&xc[c..]) {
            sum += b * v;
        }
    }
    sum
}

/// `acc` plus Σ x·y over 16 signed bytes, exactly: 16-bit products (|x·y| ≤ 2¹⁴)
/// added pairwise into the i32 lanes.
#[inline]
#[target_feature(enable = "neon")]
fn dot16(acc: int32x4_t, x: int8x16_t, y: int8x16_t) -> int32x4_t {
    let lo = vmull_s8(vget_low_s8(x), vget_low_s8(y));
    let hi = vmull_high_s8(x, y);
    vpadalq_s16(vpadalq_s16(acc, lo), hi)
}

/// The 32 values of a Q4 block's 16 nibble bytes at `p`, unsigned (0..16): (elements
/// 0..16 from the low nibbles, 16..32 from the high ones).
///
/// # Safety
/// 16 readable bytes at `p`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn nibbles(p: *const u8) -> (int8x16_t, int8x16_t) {
    // SAFETY: caller; byte loads have no alignment need.
    let v = unsafe { vld1q_u8(p) };
    (
        vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))),
        vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)),
    )
}

/// The 32 quants of an activation block: (elements 0..16, 16..32).
#[inline]
#[target_feature(enable = "neon")]
fn act_quants(y: &Q8Act) -> (int8x16_t, int8x16_t) {
    // SAFETY: `qs` has QK = 32 bytes.
    unsafe { (vld1q_s8(y.qs.as_ptr()), vld1q_s8(y.qs.as_ptr().add(QK / 2))) }
}

/// Q8_0 row (34-byte blocks: f16 d, 32 × i8) · quantised activations: ggml's
/// `vec_dot_q8_0_q8_0`.
#[target_feature(enable = "neon")]
fn dot_q8_0(w: &[u8], a: &[Q8Act]) -> f32 {
    assert_eq!(
        w.len(),
        34 * a.len(),
        "weight row and activation lengths differ"
    );
    let mut sumf = 0.0f32;
    for (blk, y) in w.chunks_exact(34).zip(a) {
        // SAFETY: `blk` has 34 bytes: the 32 quants at 2..34.
        let (w0, w1) = unsafe {
            let p = blk.as_ptr().add(2) as *const i8;
            (vld1q_s8(p), vld1q_s8(p.add(16)))
        };
        let (y0, y1) = act_quants(y);
        let sumi = vaddvq_s32(dot16(dot16(vdupq_n_s32(0), w0, y0), w1, y1));
        sumf += sumi as f32 * (f16_at(blk) * y.d);
    }
    sumf
}

/// Q4_0 row (18-byte blocks: f16 d, 16 bytes of nibbles; byte j = elements j and j+16)
/// · quantised activations: ggml's `vec_dot_q4_0_q8_0`.
#[target_feature(enable = "neon")]
fn dot_q4_0(w: &[u8], a: &[Q8Act]) -> f32 {
    assert_eq!(
        w.len(),
        18 * a.len(),
        "weight row and activation lengths differ"
    );
    let eight = vdupq_n_s8(8);
    let mut sumf = 0.0f32;
    for (blk, y) in w.chunks_exact(18).zip(a) {
        // SAFETY: `blk` has 18 bytes: the 16 nibble bytes at 2..18.
        let (lo, hi) = unsafe { nibbles(blk.as_ptr().add(2)) };
        let (y0, y1) = act_quants(y);
        let s = dot16(vdupq_n_s32(0), vsubq_s8(lo, eight), y0);
        let sumi = vaddvq_s32(dot16(s, vsubq_s8(hi, eight), y1));
        sumf += sumi as f32 * (f16_at(blk) * y.d);
    }
    sumf
}

/// Q4_1 row (20-byte blocks: f16 d, f16 m, 16 bytes of nibbles) · quantised
/// activations with their `s = d·Σq`: ggml's `vec_dot_q4_1_q8_1`.
#[target_feature(enable = "neon")]
fn dot_q4_1(w: &[u8], a: &[Q8Act]) -> f32 {
    assert_eq!(
        w.len(),
        20 * a.len(),
        "weight row and activation lengths differ"
    );
    let mut sumf = 0.0f32;
    for (blk, y) in w.chunks_exact(20).zip(a) {
        // SAFETY: `blk` has 20 bytes: the 16 nibble bytes at 4..20.
        let (lo, hi) = unsafe { nibbles(blk.as_ptr().add(4)) };
        let (y0, y1) = act_quants(y);
        let sumi = vaddvq_s32(dot16(dot16(vdupq_n_s32(0), lo, y0), hi, y1));
        sumf += (f16_at(blk) * y.d) * sumi as f32 + f16_at(&blk[2..]) * y.s;
    }
    sumf
}

/// The 16 bytes `s[o..o + 16]` (bounds-checked).
#[inline]
#[target_feature(enable = "neon")]
fn load_u8(s: &[u8], o: usize) -> uint8x16_t {
    let s = &s[o..o + 16];
    // SAFETY: `s` has 16 bytes; byte loads need no alignment.
    unsafe { vld1q_u8(s.as_ptr()) }
}

/// The 16 signed bytes `s[o..o + 16]` (bounds-checked).
#[inline]
#[target_feature(enable = "neon")]
fn load_i8(s: &[i8], o: usize) -> int8x16_t {
    let s = &s[o..o + 16];
    // SAFETY: `s` has 16 bytes; byte loads need no alignment.
    unsafe { vld1q_s8(s.as_ptr()) }
}

/// Unsigned bytes (every lane below 128) as signed ones.
#[inline]
#[target_feature(enable = "neon")]
fn s8(v: uint8x16_t) -> int8x16_t {
    vreinterpretq_s8_u8(v)
}

/// The low nibbles of `v`.
#[inline]
#[target_feature(enable = "neon")]
fn low4(v: uint8x16_t) -> uint8x16_t {
    vandq_u8(v, vdupq_n_u8(0x0f))
}

/// `Σ x·y` over 16 signed bytes, exactly, in four i32 lanes.
#[inline]
#[target_feature(enable = "neon")]
fn dot16z(x: int8x16_t, y: int8x16_t) -> int32x4_t {
    dot16(vdupq_n_s32(0), x, y)
}

/// The fifth bits of a Q5 block (`qh`, bit `j` for element `j`) as bytes: 0x10 where
/// set, 0 where clear, for elements 0..16 and 16..32. Each mask byte is copied into 8
/// lanes and tested against the lane's own bit (1, 2, 4, …, 128).
#[inline]
#[target_feature(enable = "neon")]
fn fifth_bits(qh: [u8; 4]) -> (uint8x16_t, uint8x16_t) {
    let bits = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    let h0 = vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1]));
    let h1 = vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3]));
    let sixteen = vdupq_n_u8(0x10);
    (
        vandq_u8(vtstq_u8(h0, bits), sixteen),
        vandq_u8(vtstq_u8(h1, bits), sixteen),
    )
}

/// The exact integer dot of a block of 32 with its activation block, given the
/// weight quants of elements 0..16 and 16..32.
#[inline]
#[target_feature(enable = "neon")]
fn block_sum(w0: int8x16_t, w1: int8x16_t, y: &Q8Act) -> i32 {
    let (y0, y1) = act_quants(y);
    vaddvq_s32(dot16(dot16z(w0, y0), w1, y1))
}

/// Q5_0 row (22-byte blocks: f16 d, 32-bit mask of fifth bits, 16 bytes of nibbles)
/// · quantised activations: ggml's `vec_dot_q5_0_q8_0`.
#[target_feature(enable = "neon")]
fn dot_q5_0(w: &[u8], a: &[Q8Act]) -> f32 {
    let sixteen = vdupq_n_s8(16);
    let mut sumf = 0.0f32;
    for (b, y) in scalar::blocks::<BlockQ5_0, _>(w, a) {
        let q = load_u8(&b.qs, 0);
        let (h0, h1) = fifth_bits(b.qh);
        let w0 = vsubq_s8(s8(vorrq_u8(low4(q), h0)), sixteen);
        let w1 = vsubq_s8(s8(vorrq_u8(vshrq_n_u8::<4>(q), h1)), sixteen);
        sumf += block_sum(w0, w1, y) as f32 * (b.d.to_f32() * y.d);
    }
    sumf
}

/// Q5_1 row (24-byte blocks: f16 d, f16 m, fifth bits, nibbles) · quantised
/// activations with their `s = d·Σq`: ggml's `vec_dot_q5_1_q8_1`.
#[target_feature(enable = "neon")]
fn dot_q5_1(w: &[u8], a: &[Q8Act]) -> f32 {
    let mut sumf = 0.0f32;
    for (b, y) in scalar::blocks::<BlockQ5_1, _>(w, a) {
        let q = load_u8(&b.qs, 0);
        let (h0, h1) = fifth_bits(b.qh);
        let w0 = s8(vorrq_u8(low4(q), h0));
        let w1 = s8(vorrq_u8(vshrq_n_u8::<4>(q), h1));
        let sumi = block_sum(w0, w1, y);
        sumf += (b.d.to_f32() * y.d) * sumi as f32 + b.m.to_f32() * y.s;
    }
    sumf
}

/// IQ4_NL row (18-byte blocks: f16 d, 16 bytes of index nibbles) · quantised
/// activations: ggml's `vec_dot_iq4_nl_q8_0`. The nibbles index the 16 levels with a
/// table lookup (`tbl`).
#[target_feature(enable = "neon")]
fn dot_iq4_nl(w: &[u8], a: &[Q8Act]) -> f32 {
    let levels = load_i8(&IQ4_NL_VALUES, 0);
    let mut sumf = 0.0f32;
    for (b, y) in scalar::blocks::<BlockIq4Nl, _>(w, a) {
        let q = load_u8(&b.qs, 0);
        let w0 = vqtbl1q_s8(levels, low4(q));
        let w1 = vqtbl1q_s8(levels, vshrq_n_u8::<4>(q));
        sumf += block_sum(w0, w1, y) as f32 * (b.d.to_f32() * y.d);
    }
    sumf
}

/// A super-block's contribution from its exact integer sums: `sumi = Σ_g scale_g·Σ
/// q·x` and `summ = Σ_g min_g·bsum_g`, scaled as the scalar dot does.
#[inline]
fn super_f32(d: f16, dmin: f16, y: &Q8K, sumi: i32, summ: i32) -> f32 {
    d.to_f32() * y.d * sumi as f32 - dmin.to_f32() * y.d * summ as f32
}

/// `Σ_g min_g·bsum_g` over the 16 groups of 16, exactly.
#[inline]
fn mins_sum(min: impl Fn(usize) -> i32, y: &Q8K) -> i32 {
    y.bsums
        .iter()
        .enumerate()
        .map(|(g, &s)| min(g) * s as i32)
        .sum()
}

/// Q4_K row (144-byte super-blocks: 8 groups of 32 nibbles, 6-bit scales and
/// minimums) · Q8_K activations: ggml's `vec_dot_q4_K_q8_K`. Each 32-byte chunk of
/// nibbles holds two groups (low nibbles, then high); each group's exact dot is
/// multiplied by its scale in the i32 lanes, and the minimums meet the activation
/// `bsums` in integers.
#[target_feature(enable = "neon")]
fn dot_q4_k(w: &[u8], a: &[Q8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (b, y) in scalar::blocks::<BlockQ4K, _>(w, a) {
        let sm: [(u8, u8); 8] = core::array::from_fn(|j| scale_min_k4(j, &b.scales));
        let mut acc = vdupq_n_s32(0);
        for c in 0..4 {
            let (q0, q1) = (load_u8(&b.qs, 32 * c), load_u8(&b.qs, 32 * c + 16));
            let x = |k: usize| load_i8(&y.qs, 64 * c + 16 * k);
            let lo = dot16(dot16z(s8(low4(q0)), x(0)), s8(low4(q1)), x(1));
            let hi = dot16(
                dot16z(s8(vshrq_n_u8::<4>(q0)), x(2)),
                s8(vshrq_n_u8::<4>(q1)),
                x(3),
            );
            acc = vmlaq_n_s32(acc, lo, sm[2 * c].0 as i32);
            acc = vmlaq_n_s32(acc, hi, sm[2 * c + 1].0 as i32);
        }
        let summ = mins_sum(|g| sm[g / 2].1 as i32, y);
        sumf += super_f32(b.d, b.dmin, y, vaddvq_s32(acc), summ);
    }
    sumf
}

/// Q5_K row (176-byte super-blocks: Q4_K plus a 32-byte mask of fifth bits) · Q8_K
/// activations: ggml's `vec_dot_q5_K_q8_K`. As Q4_K, with bit `j` of mask byte `l`
/// (group `j`'s element `l`) turned into 16 by a bit test.
#[target_feature(enable = "neon")]
fn dot_q5_k(w: &[u8], a: &[Q8K]) -> f32 {
    let sixteen = vdupq_n_u8(0x10);
    let mut sumf = 0.0f32;
    for (b, y) in scalar::blocks::<BlockQ5K, _>(w, a) {
        let sm: [(u8, u8); 8] = core::array::from_fn(|j| scale_min_k4(j, &b.scales));
        let (h0, h1) = (load_u8(&b.qh, 0), load_u8(&b.qh, 16));
        let mut acc = vdupq_n_s32(0);
        for c in 0..4 {
            let (q0, q1) = (load_u8(&b.qs, 32 * c), load_u8(&b.qs, 32 * c + 16));
            // The fifth bit of groups 2c and 2c + 1, as 0x10 or 0.
            let fifth =
                |h: uint8x16_t, j: usize| vandq_u8(vtstq_u8(h, vdupq_n_u8(1 << j)), sixteen);
            let (jl, jh) = (2 * c, 2 * c + 1);
            let lo = dot16(
                dot16z(
                    s8(vorrq_u8(low4(q0), fifth(h0, jl))),
                    load_i8(&y.qs, 64 * c),
                ),
                s8(vorrq_u8(low4(q1), fifth(h1, jl))),
                load_i8(&y.qs, 64 * c + 16),
            );
            let hi = dot16(
                dot16z(
                    s8(vorrq_u8(vshrq_n_u8::<4>(q0), fifth(h0, jh))),
                    load_i8(&y.qs, 64 * c + 32),
                ),
                s8(vorrq_u8(vshrq_n_u8::<4>(q1), fifth(h1, jh))),
                load_i8(&y.qs, 64 * c + 48),
            );
            acc = vmlaq_n_s32(acc, lo, sm[jl].0 as i32);
            acc = vmlaq_n_s32(acc, hi, sm[jh].0 as i32);
        }
        let summ = mins_sum(|g| sm[g / 2].1 as i32, y);
        sumf += super_f32(b.d, b.dmin, y, vaddvq_s32(acc), summ);
    }
    sumf
}

/// Q6_K row (210-byte super-blocks: low nibbles, high 2-bit pairs, 16 i8 scales) ·
/// Q8_K activations: ggml's `vec_dot_q6_K_q8_K`. In each half of 128 values, the 32
/// values `32s..32s + 32` take nibbles from `ql` bytes `32·(s % 2)..` (low for s < 2)
/// and bits `2s..2s + 2` of the `qh` bytes; the offset 32 is subtracted in i8.
#[target_feature(enable = "neon")]
fn dot_q6_k(w: &[u8], a: &[Q8K]) -> f32 {
    let (three0, off) = (vdupq_n_u8(0x30), vdupq_n_s8(32));
    let mut sumf = 0.0f32;
    for (b, y) in scalar::blocks::<BlockQ6K, _>(w, a) {
        let mut acc = vdupq_n_s32(0);
        for half in 0..2 {
            let ql = [
                [load_u8(&b.ql, 64 * half), load_u8(&b.ql, 64 * half + 16)],
                [
                    load_u8(&b.ql, 64 * half + 32),
                    load_u8(&b.ql, 64 * half + 48),
                ],
            ];
            let qh = [load_u8(&b.qh, 32 * half), load_u8(&b.qh, 32 * half + 16)];
            for s in 0..4 {
                // Bits 2s..2s + 2 of qh moved to bits 4..6: a shift by 4 − 2s.
                let shift = vdupq_n_s8(4 - 2 * s as i8);
                for (i, (&l, &h)) in ql[s % 2].iter().zip(&qh).enumerate() {
                    let low = if s < 2 { low4(l) } else { vshrq_n_u8::<4>(l) };
                    let high = vandq_u8(vshlq_u8(h, shift), three0);
                    let q = vsubq_s8(s8(vorrq_u8(low, high)), off);
                    let g = 8 * half + 2 * s + i;
                    let p = dot16z(q, load_i8(&y.qs, 16 * g));
                    acc = vmlaq_n_s32(acc, p, b.scales[g] as i32);
                }
            }
        }
        sumf += b.d.to_f32() * y.d * vaddvq_s32(acc) as f32;
    }
    sumf
}

/// The 2-bit fields at bits `2s..2s + 2` of the 64 bytes of a Q2_K/Q3_K super-block's
/// `qs`, for the 16 groups of 16: group `8c + 2s + h` is bytes `32c + 16h..` at
/// shift `2s`. Calls `f(g, crumbs)` for each group.
#[inline]
#[target_feature(enable = "neon")]
fn crumbs(qs: &[u8; 64], mut f: impl FnMut(usize, uint8x16_t)) {
    let three = vdupq_n_u8(3);
    for c in 0..2 {
        let q = [load_u8(qs, 32 * c), load_u8(qs, 32 * c + 16)];
        for s in 0..4 {
            let shift = vdupq_n_s8(-2 * s as i8);
            for (h, &v) in q.iter().enumerate() {
                f(8 * c + 2 * s + h, vandq_u8(vshlq_u8(v, shift), three));
            }
        }
    }
}

/// Q2_K row (84-byte super-blocks: 16 groups of 16 two-bit quants, a 4-bit scale and
/// minimum each) · Q8_K activations: ggml's `vec_dot_q2_K_q8_K`.
#[target_feature(enable = "neon")]
fn dot_q2_k(w: &[u8], a: &[Q8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (b, y) in scalar::blocks::<BlockQ2K, _>(w, a) {
        let mut acc = vdupq_n_s32(0);
        crumbs(&b.qs, |g, q| {
            let p = dot16z(s8(q), load_i8(&y.qs, 16 * g));
            acc = vmlaq_n_s32(acc, p, (b.scales[g] & 0x0f) as i32);
        });
        let summ = mins_sum(|g| (b.scales[g] >> 4) as i32, y);
        sumf += super_f32(b.d, b.dmin, y, vaddvq_s32(acc), summ);
    }
    sumf
}

/// Q3_K row (110-byte super-blocks: Q2_K's 2-bit quants, a mask of high bits, 16
/// six-bit signed scales) · Q8_K activations: ggml's `vec_dot_q3_K_q8_K`. Element
/// `32j + l` subtracts 4 where bit `j` of mask byte `l` is clear.
#[target_feature(enable = "neon")]
fn dot_q3_k(w: &[u8], a: &[Q8K]) -> f32 {
    let four = vdupq_n_u8(4);
    let mut sumf = 0.0f32;
    for (b, y) in scalar::blocks::<BlockQ3K, _>(w, a) {
        let scales = q3k_scales(&b.scales);
        let hmask = [load_u8(&b.hmask, 0), load_u8(&b.hmask, 16)];
        let mut acc = vdupq_n_s32(0);
        crumbs(&b.qs, |g, q| {
            // Group g is half g % 2 of the 32 values tested by mask bit g / 2.
            let set = vtstq_u8(hmask[g % 2], vdupq_n_u8(1 << (g / 2)));
            let w = vsubq_s8(s8(q), s8(vbicq_u8(four, set)));
            let p = dot16z(w, load_i8(&y.qs, 16 * g));
            acc = vmlaq_n_s32(acc, p, scales[g] as i32);
        });
        sumf += b.d.to_f32() * y.d * vaddvq_s32(acc) as f32;
    }
    sumf
}

/// IQ4_XS row (136-byte super-blocks: 8 groups of 32 index nibbles laid out as
/// IQ4_NL's, 6-bit signed scales) · Q8_K activations: ggml's `vec_dot_iq4_xs_q8_K`.
#[target_feature(enable = "neon")]
fn dot_iq4_xs(w: &[u8], a: &[Q8K]) -> f32 {
    let levels = load_i8(&IQ4_NL_VALUES, 0);
    let mut sumf = 0.0f32;
    for (b, y) in scalar::blocks::<BlockIq4Xs, _>(w, a) {
        let mut acc = vdupq_n_s32(0);
        for i in 0..8 {
            let q = load_u8(&b.qs, 16 * i);
            let w0 = vqtbl1q_s8(levels, low4(q));
            let w1 = vqtbl1q_s8(levels, vshrq_n_u8::<4>(q));
            let p = dot16(
                dot16z(w0, load_i8(&y.qs, 32 * i)),
                w1,
                load_i8(&y.qs, 32 * i + 16),
            );
            acc = vmlaq_n_s32(acc, p, iq4xs_scale(&b, i));
        }
        sumf += b.d.to_f32() * y.d * vaddvq_s32(acc) as f32;
    }
    sumf
}
