//! aarch64 NEON kernels: the same functions as `scalar`, kept simple.
//!
//! Floats: 4 × 4-lane FMA accumulators (f16 weights are widened with `half`, 8 at a
//! time, then multiplied in NEON). Blocks: the integer block sum with `vmull_s8` and
//! pairwise widening adds (exact, so equal to the scalar sum), then the scalar's
//! `sumi·d_w·d_x` accumulation.
//!
//! This file compiles only on aarch64 and could not be run where it was written; the
//! `every_path_matches_reference` test checks it on any aarch64 machine.
// Which NEON intrinsics are safe to call inside a `#[target_feature]` function has
// changed across Rust releases; every call is wrapped so that both forms compile.
#![allow(unused_unsafe)]

use super::act::{Q8Act, QK};
use super::scalar::f16_at;
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
    pub(crate) fn rows(
        self,
        w: &super::Matrix<'_>,
        x: &[f32],
        a: &[Q8Act],
        out: &mut super::OutRows<'_>,
    ) {
        // SAFETY: the token exists only if the CPU has NEON.
        unsafe { rows(w, x, a, out) }
    }
}

rows_fn! {
    #[target_feature(enable = "neon")]
    fn rows {
        f32: dot_f32, f16: dot_f16, bf16: dot_bf16,
        q8_0: dot_q8_0, q4_0: dot_q4_0, q4_1: dot_q4_1,
    }
}

/// `Σ w·x` over 16-value chunks of f32 weights given by `load4(chunk_start)`.
macro_rules! float_dot {
    ($w:ident, $x:ident, $size:expr, $load4:expr, $one:expr) => {{
        let n = $x.len();
        assert_eq!($w.len(), $size * n);
        let mut acc = unsafe { [vdupq_n_f32(0.0); 4] };
        let mut c = 0;
        while c + 16 <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: c + 16 <= n: the 4 weights at c + 4k and the 4 floats there
                // are inside `w` and `x` (lengths checked above).
                unsafe {
                    let wv = $load4(c + 4 * k);
                    let xv = vld1q_f32($x.as_ptr().add(c + 4 * k));
                    *a = vfmaq_f32(*a, wv, xv);
                }
            }
            c += 16;
        }
        let mut sum = unsafe {
            vaddvq_f32(vaddq_f32(
                vaddq_f32(acc[0], acc[1]),
                vaddq_f32(acc[2], acc[3]),
            ))
        };
        for (b, v) in $w[c * $size..].chunks_exact($size).zip(&$x[c..]) {
            sum += $one(b) * v;
        }
        sum
    }};
}

#[target_feature(enable = "neon")]
fn dot_f32(w: &[u8], x: &[f32]) -> f32 {
    let wp = w.as_ptr();
    // SAFETY (the closure): called with c + 4 <= x.len(), so bytes 4c..4c+16 are in
    // `w`; byte loads have no alignment need.
    float_dot!(
        w,
        x,
        4,
        |c: usize| unsafe { vreinterpretq_f32_u8(vld1q_u8(wp.add(4 * c))) },
        |b: &[u8]| f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    )
}

#[target_feature(enable = "neon")]
fn dot_bf16(w: &[u8], x: &[f32]) -> f32 {
    let wp = w.as_ptr();
    // bf16 → f32 is a 16-bit left shift of each u16 into a u32.
    // SAFETY (the closure): called with c + 4 <= x.len(), so bytes 2c..2c+8 are in `w`.
    float_dot!(
        w,
        x,
        2,
        |c: usize| unsafe {
            let h = vreinterpret_u16_u8(vld1_u8(wp.add(2 * c)));
            vreinterpretq_f32_u32(vshll_n_u16::<16>(h))
        },
        |b: &[u8]| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()
    )
}

#[target_feature(enable = "neon")]
fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
    // Widen 32 weights at a time with `half`, then a NEON f32 dot.
    let mut sum = 0.0f32;
    let mut buf = [0.0f32; 32];
    for (wc, xc) in w.chunks(64).zip(x.chunks(32)) {
        for (o, b) in buf.iter_mut().zip(wc.chunks_exact(2)) {
            *o = f16_at(b);
        }
        let n = xc.len();
        let mut acc = unsafe { vdupq_n_f32(0.0) };
        let mut c = 0;
        while c + 4 <= n {
            // SAFETY: c + 4 <= n <= 32.
            unsafe {
                acc = vfmaq_f32(
                    acc,
                    vld1q_f32(buf.as_ptr().add(c)),
                    vld1q_f32(xc.as_ptr().add(c)),
                )
            };
            c += 4;
        }
        sum += unsafe { vaddvq_f32(acc) };
        for (b, v) in buf[c..n].iter().zip(&xc[c..]) {
            sum += b * v;
        }
    }
    sum
}

/// Σ x·y over 16 signed bytes, exactly, as i32 lanes added into `acc`.
#[inline]
#[target_feature(enable = "neon")]
fn dot16(acc: int32x4_t, x: int8x16_t, y: int8x16_t) -> int32x4_t {
    unsafe {
        let lo = vmull_s8(vget_low_s8(x), vget_low_s8(y));
        let hi = vmull_high_s8(x, y);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }
}

/// Q8_0 row · activations (ggml's `vec_dot_q8_0_q8_0`).
#[target_feature(enable = "neon")]
fn dot_q8_0(w: &[u8], a: &[Q8Act]) -> f32 {
    assert_eq!(w.len(), 34 * a.len());
    let mut sumf = 0.0f32;
    for (blk, y) in w.chunks_exact(34).zip(a) {
        // SAFETY: blk has 34 bytes (32 quants at 2); y.qs has 32.
        let sumi = unsafe {
            let p = blk.as_ptr().add(2) as *const i8;
            let q = y.qs.as_ptr();
            let s = dot16(vdupq_n_s32(0), vld1q_s8(p), vld1q_s8(q));
            vaddvq_s32(dot16(s, vld1q_s8(p.add(16)), vld1q_s8(q.add(16))))
        };
        sumf += sumi as f32 * (f16_at(blk) * y.d);
    }
    sumf
}

/// The 32 nibbles of a Q4 block's 16 bytes at `p`: (elements 0..16, 16..32).
///
/// # Safety
/// 16 readable bytes at `p`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn nibbles(p: *const u8) -> (int8x16_t, int8x16_t) {
    // SAFETY: caller.
    unsafe {
        let v = vld1q_u8(p);
        (
            vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))),
            vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)),
        )
    }
}

/// Q4_0 row · activations (ggml's `vec_dot_q4_0_q8_0`).
#[target_feature(enable = "neon")]
fn dot_q4_0(w: &[u8], a: &[Q8Act]) -> f32 {
    assert_eq!(w.len(), 18 * a.len());
    let mut sumf = 0.0f32;
    for (blk, y) in w.chunks_exact(18).zip(a) {
        // SAFETY: blk has 18 bytes (16 quants at 2); y.qs has 32.
        let sumi = unsafe {
            let (lo, hi) = nibbles(blk.as_ptr().add(2));
            let eight = vdupq_n_s8(8);
            let q = y.qs.as_ptr();
            let s = dot16(vdupq_n_s32(0), vsubq_s8(lo, eight), vld1q_s8(q));
            vaddvq_s32(dot16(s, vsubq_s8(hi, eight), vld1q_s8(q.add(QK / 2))))
        };
        sumf += sumi as f32 * (f16_at(blk) * y.d);
    }
    sumf
}

/// Q4_1 row · activations with `s` (ggml's `vec_dot_q4_1_q8_1`).
#[target_feature(enable = "neon")]
fn dot_q4_1(w: &[u8], a: &[Q8Act]) -> f32 {
    assert_eq!(w.len(), 20 * a.len());
    let mut sumf = 0.0f32;
    for (blk, y) in w.chunks_exact(20).zip(a) {
        // SAFETY: blk has 20 bytes (16 quants at 4); y.qs has 32.
        let sumi = unsafe {
            let (lo, hi) = nibbles(blk.as_ptr().add(4));
            let q = y.qs.as_ptr();
            let s = dot16(vdupq_n_s32(0), lo, vld1q_s8(q));
            vaddvq_s32(dot16(s, hi, vld1q_s8(q.add(QK / 2))))
        };
        sumf += (f16_at(blk) * y.d) * sumi as f32 + f16_at(&blk[2..]) * y.s;
    }
    sumf
}
