//! aarch64 NEON kernels: the same functions as `scalar`, kept simple (one weight row
//! against one activation at a time, through `rows_fn!`).
//!
//! * Floats: 4 × 4-lane FMA accumulators over 16 columns per step; bf16 weights are
//!   widened in registers (a 16-bit shift), f16 weights 32 at a time with `half` into
//!   a buffer and then multiplied in NEON. The last `cols % 16` columns go through the
//!   scalar dot.
//! * Blocks: each block's integer sum with `vmull_s8` and pairwise widening adds
//!   (exact, so equal to the scalar sum), then the scalar's `sumi·d_w·d_x`
//!   accumulation, so a block row differs from the reference only if the f32 sums do.
//!   No `dotprod` (`sdot`) variant: its intrinsics are not stable Rust yet.
//!
//! Tested under qemu-user (`scripts/test-neon.sh`), not on hardware: the speed of this
//! path is unmeasured.

use super::act::{Q8Act, QK};
use super::scalar::{self, f16_at};
use super::{Acts, Matrix, OutRows};
use core::arch::aarch64::*;

/// Proof that the CPU has NEON: exists only through [`Neon::detect`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Neon(());

impl Neon {
    /// The token, if this CPU has NEON (std: run-time detection; no_std: compile-time).
    pub(crate) fn detect() -> Option<Neon> {
        #[cfg(feature = "std")]
        let ok = std::arch::is_aarch64_feature_detected!("neon");
        #[cfg(not(feature = "std"))]
        let ok = cfg!(target_feature = "neon");
        ok.then_some(Neon(()))
    }

    /// See `scalar::rows`.
    pub(crate) fn rows(self, w: &Matrix<'_>, acts: &Acts<'_>, out: &mut OutRows<'_>) {
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
            // No NEON kernels yet for these: the scalar reference dots.
            Q5_0 => scalar::dot_q5_0, Q5_1 => scalar::dot_q5_1, IQ4_NL => scalar::dot_iq4_nl;
        q8k: Q2_K => scalar::dot_q2_k, Q3_K => scalar::dot_q3_k, Q4_K => scalar::dot_q4_k,
            Q5_K => scalar::dot_q5_k, Q6_K => scalar::dot_q6_k, IQ4_XS => scalar::dot_iq4_xs;
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
