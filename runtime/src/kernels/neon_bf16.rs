//! aarch64 BF16 kernels for F16 and BF16 weights: `bfdot` (FEAT_BF16: Neoverse
//! V1/N2/V2, Cortex-A710/X2 and later, Apple M2 and later), which multiplies 8 pairs
//! of bf16 values and adds each 32-bit lane's two products to its f32 sum: twice the
//! multiply-adds per instruction of an f32 `fmla`, with no widening of the weights.
//! The same products as `avx512_bf16` on x86-64, in the same places: F16/BF16 prompts
//! and BF16 generation, unless `Cpu::set_f16_exact` keeps the f32 path.
//!
//! * The activations are rounded to bf16 once per product (`act::round_bf16_rows`,
//!   round to nearest even), each row padded with zeros to 32 columns, the layout the
//!   x86-64 kernels read.
//! * The weights go 4 rows at a time, in chunks of [`CK`] columns made bf16 once per
//!   chunk into a buffer (F16 with `fcvtl`, exact, then `bfcvtn`, to nearest even;
//!   BF16 copied; the columns past the row's end zero), so every load is a whole
//!   register and an F16 weight is converted once per chunk, not once per activation.
//! * A tile is those 4 rows × [`TA`] activations: 16 sums of 4 lanes, 8 columns per
//!   step (4 weight vectors, 4 activation vectors, 16 `bfdot`), then one horizontal
//!   sum per output and chunk, which the first chunk stores and the others add.
//!
//! **Error:** that of `avx512_bf16` (see its module doc: `2u + u²` per term for F16
//! weights and `u` for BF16, `u = 2⁻⁸`), except that `bfdot` without FEAT_EBF16
//! rounds its sums to odd (at most one f32 unit in the last place per addition, where
//! round-to-nearest has half) and flushes denormals to zero; the tests' f32
//! summation bound covers both.
//!
//! Stable Rust has no intrinsics for FEAT_BF16 yet, so `bfdot`, `bfcvtn` and the F16
//! widening (`fcvtl`, whose intrinsics take the unstable `f16` type) are one- or
//! four-instruction `asm!` blocks in functions that enable the `bf16` feature.
//! Tested under qemu-user (`-cpu max`, `scripts/test-neon.sh`), not on hardware: its
//! speed is unmeasured.

use super::{Matrix, OutRows};
use core::arch::aarch64::*;
use core::arch::asm;
use llm_format::DType;

/// Columns per weight chunk: 4 rows × 512 × 2 bytes = 4 KiB of bf16 weights in L1
/// beside the activations they meet.
const CK: usize = 512;

/// Activations per tile: 4 × 4 sums, 4 weight vectors and one activation vector in
/// 21 of the 32 vector registers.
const TA: usize = 4;

/// Weight rows per tile.
const TR: usize = 4;

/// Proof that the CPU has FEAT_BF16 as well as NEON: exists only through
/// [`NeonBf16::detect`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct NeonBf16(());

impl NeonBf16 {
    /// The token, if this CPU (std: run-time detection; no_std: compile-time target
    /// features) has the BF16 instructions. Called once per `Neon` token, which
    /// proves NEON.
    pub(crate) fn detect() -> Option<NeonBf16> {
        #[cfg(feature = "std")]
        let ok = std::arch::is_aarch64_feature_detected!("bf16");
        #[cfg(not(feature = "std"))]
        let ok = cfg!(target_feature = "bf16");
        ok.then_some(NeonBf16(()))
    }

    /// Rows `out.r0..out.r1` of `y = x·Wᵀ` for F16 or BF16 weights, with `xb` the
    /// activations as `act::round_bf16_rows` wrote them (`out.n()` padded rows).
    ///
    /// # Panics
    /// If `w` is not F16 or BF16, or `xb` does not hold `out.n()` padded rows.
    pub(crate) fn rows(self, w: &Matrix<'_>, xb: &[u16], out: &mut OutRows<'_>) {
        // SAFETY: the token exists only if the CPU has NEON and BF16.
        unsafe {
            match w.dtype {
                DType::F16 => rows::<true>(w, xb, out),
                DType::BF16 => rows::<false>(w, xb, out),
                d => panic!("bf16 dots take F16 or BF16 weights, not {d}"),
            }
        }
    }
}

/// `acc + Σ` of each lane's two products `a[2j]·b[2j] + a[2j+1]·b[2j+1]` (bf16 bits).
///
/// # Safety
/// The CPU has BF16.
#[inline]
#[target_feature(enable = "neon,bf16")]
unsafe fn bfdot(acc: float32x4_t, a: uint16x8_t, b: uint16x8_t) -> float32x4_t {
    let mut acc = acc;
    // SAFETY: one register instruction (the caller proves the feature); no memory.
    unsafe {
        asm!(
            "bfdot {acc:v}.4s, {a:v}.8h, {b:v}.8h",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// 8 f16 values (bits) as bf16 (bits): widened to f32 exactly, then rounded to
/// nearest even.
///
/// # Safety
/// The CPU has BF16.
#[inline]
#[target_feature(enable = "neon,bf16")]
unsafe fn f16_to_bf16(h: uint16x8_t) -> uint16x8_t {
    let b: uint16x8_t;
    // SAFETY: register instructions only (the caller proves the feature); `lo`, `hi`
    // and `b` are outputs that share no register with `h` or with each other.
    unsafe {
        asm!(
            "fcvtl {lo:v}.4s, {h:v}.4h",
            "fcvtl2 {hi:v}.4s, {h:v}.8h",
            "bfcvtn {b:v}.4h, {lo:v}.4s",
            "bfcvtn2 {b:v}.8h, {hi:v}.4s",
            h = in(vreg) h,
            lo = out(vreg) _,
            hi = out(vreg) _,
            b = out(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    b
}

/// Columns `c0..c0 + len` of `row` (`2·cols` bytes of F16 or BF16 weights) as bf16 in
/// `dst[..len.next_multiple_of(8)]`, the columns past the row's end zero.
///
/// # Safety
/// The CPU has BF16.
#[inline]
#[target_feature(enable = "neon,bf16")]
unsafe fn fill<const F16: bool>(row: &[u8], c0: usize, len: usize, dst: &mut [u16; CK]) {
    let whole = len / 8 * 8;
    let src = &row[2 * c0..2 * (c0 + len)];
    for (d, s) in dst[..whole].chunks_exact_mut(8).zip(src.chunks_exact(16)) {
        // SAFETY: `s` has 16 bytes and `d` 8 values (chunks_exact); unaligned loads
        // and stores of bytes are allowed; the conversion's feature is the caller's.
        unsafe {
            let v = vreinterpretq_u16_u8(vld1q_u8(s.as_ptr()));
            let v = if F16 { f16_to_bf16(v) } else { v };
            vst1q_u16(d.as_mut_ptr(), v);
        }
    }
    if whole < len {
        // The row's last `len % 8` weights, through a zero-padded vector.
        let mut tail = [0u16; 8];
        for (t, s) in tail.iter_mut().zip(src[2 * whole..].chunks_exact(2)) {
            *t = u16::from_le_bytes([s[0], s[1]]);
        }
        // SAFETY: as above, on `tail`.
        let v = unsafe { vld1q_u16(tail.as_ptr()) };
        // SAFETY: the caller proves the feature.
        let v = if F16 { unsafe { f16_to_bf16(v) } } else { v };
        // SAFETY: whole + 8 <= len.next_multiple_of(8) <= CK (len <= CK, CK % 8 == 0).
        unsafe { vst1q_u16(dst[whole..whole + 8].as_mut_ptr(), v) };
    }
}

/// `[[Σ_c wb[r][c]·x_k[c] for r in 0..4] for k in 0..T]` over `len` columns (a
/// multiple of 8), with `xs[k]` pointing at activation `k`'s first column of the chunk.
///
/// # Safety
/// Each `xs[k]` has `len` readable values; the CPU has BF16.
#[inline]
#[target_feature(enable = "neon,bf16")]
unsafe fn tile<const T: usize>(
    wb: &[[u16; CK]; TR],
    len: usize,
    xs: [*const u16; T],
) -> [[f32; TR]; T] {
    let mut acc = [[vdupq_n_f32(0.0); TR]; T];
    let mut c = 0;
    while c < len {
        // SAFETY: c + 8 <= len <= CK, inside each buffer row and (caller) each xs[k].
        unsafe {
            let w = [
                vld1q_u16(wb[0].as_ptr().add(c)),
                vld1q_u16(wb[1].as_ptr().add(c)),
                vld1q_u16(wb[2].as_ptr().add(c)),
                vld1q_u16(wb[3].as_ptr().add(c)),
            ];
            for (a, x) in acc.iter_mut().zip(&xs) {
                let x = vld1q_u16(x.add(c));
                for (a, w) in a.iter_mut().zip(&w) {
                    *a = bfdot(*a, *w, x);
                }
            }
        }
        c += 8;
    }
    acc.map(|a| a.map(|v| vaddvq_f32(v)))
}

#[target_feature(enable = "neon,bf16")]
fn rows<const F16: bool>(w: &Matrix<'_>, xb: &[u16], out: &mut OutRows<'_>) {
    let (n, cols) = (out.n(), w.cols);
    let stride = super::act::bf16_padded(cols);
    assert_eq!(xb.len(), n * stride);
    let mut wb = [[0u16; CK]; TR];
    let mut r = out.r0;
    while r < out.r1 {
        let here = (out.r1 - r).min(TR);
        for c0 in (0..cols).step_by(CK) {
            let len = (cols - c0).min(CK);
            for (j, dst) in wb.iter_mut().enumerate().take(here) {
                // SAFETY: this function's features.
                unsafe { fill::<F16>(w.row(r + j), c0, len, dst) };
            }
            // Rows past the part's end keep what the buffer held: their sums are
            // never stored.
            let len8 = len.next_multiple_of(8);
            // Columns c0..c0 + len8 <= stride of every activation row (stride is a
            // multiple of 32, c0 of 512), padded with zeros past `cols`.
            let x = |i: usize| xb[i * stride + c0..i * stride + c0 + len8].as_ptr();
            let mut store = |i: usize, s: &[f32; TR]| {
                for (j, v) in s.iter().enumerate().take(here) {
                    if c0 == 0 {
                        out.set(i, r + j, *v);
                    } else {
                        out.add(i, r + j, *v);
                    }
                }
            };
            let mut i = 0;
            while i + TA <= n {
                let xs: [*const u16; TA] = core::array::from_fn(|k| x(i + k));
                // SAFETY: each xs[k] has len8 values (the slices above); this
                // function's features.
                let s = unsafe { tile::<TA>(&wb, len8, xs) };
                for (k, s) in s.iter().enumerate() {
                    store(i + k, s);
                }
                i += TA;
            }
            while i < n {
                // SAFETY: as above.
                let s = unsafe { tile::<1>(&wb, len8, [x(i)]) };
                store(i, &s[0]);
                i += 1;
            }
        }
        if cols == 0 {
            for i in 0..n {
                for j in 0..here {
                    out.set(i, r + j, 0.0);
                }
            }
        }
        r += here;
    }
}
