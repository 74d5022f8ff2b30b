//! The portable reference kernels: one weight row dotted with one activation row, in
//! plain Rust, with the same integer arithmetic as ggml's `vec_dot_*` for the block
//! types. Every SIMD path is tested against these; they are also the `no_std` path.

use super::act::{self, Q8Act, QK};
use super::{check_shapes, Matrix, OutRows};
use alloc::vec;
use half::{bf16, f16};

/// `y[i·rows + r] = Σ_c W[r, c] · x[i·cols + c]` for `i in 0..n` (`y = x · Wᵀ`), the
/// reference semantics of [`super::Cpu::matmul`], on one thread.
///
/// F32/F16/BF16 weights: each weight is widened to f32 and the products are summed in
/// f32, column by column. Q8_0/Q4_0/Q4_1 weights: each 32 activations are quantised
/// to 8 bits (ggml's `block_q8_0`, or `block_q8_1` for Q4_1), and each block
/// contributes `Σq_w·q_x` (an exact integer) `· d_w·d_x` (plus `m_w·s_x` for Q4_1),
/// summed in f32 block by block.
///
/// # Panics
/// If `x.len() != n·w.cols`, `y.len() != n·w.rows`, or `w`'s fields disagree with its
/// data.
pub fn matmul_ref(w: &Matrix<'_>, x: &[f32], n: usize, y: &mut [f32]) {
    check_shapes(w, x, n, y);
    let mut a = vec![];
    if w.dtype.is_quantized() {
        a = vec![Q8Act::ZERO; x.len() / QK];
        act::quantize(x, &mut a);
    }
    rows(w, x, &a, &mut OutRows::whole(y, w.rows, n));
}

rows_fn! {
    /// Rows `out.r0..out.r1` of `y = x · Wᵀ`; `a` holds `x` quantised for block dtypes.
    pub(crate) fn rows {
        f32: dot_f32, f16: dot_f16, bf16: dot_bf16,
        q8_0: dot_q8_0, q4_0: dot_q4_0, q4_1: dot_q4_1,
    }
}

/// f32 row (little-endian bytes) · x.
pub(crate) fn dot_f32(w: &[u8], x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for (c, v) in w.chunks_exact(4).zip(x) {
        s += f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * v;
    }
    s
}

/// f16 row · x, f32 accumulation.
pub(crate) fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for (c, v) in w.chunks_exact(2).zip(x) {
        s += f16::from_le_bytes([c[0], c[1]]).to_f32() * v;
    }
    s
}

/// bf16 row · x, f32 accumulation.
pub(crate) fn dot_bf16(w: &[u8], x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for (c, v) in w.chunks_exact(2).zip(x) {
        s += bf16::from_le_bytes([c[0], c[1]]).to_f32() * v;
    }
    s
}

/// The f16 at `b[0..2]` as f32.
#[inline(always)]
pub(crate) fn f16_at(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Q8_0 row (34-byte blocks: f16 d, 32 × i8) · quantised activations: ggml's
/// `vec_dot_q8_0_q8_0`.
pub(crate) fn dot_q8_0(w: &[u8], a: &[Q8Act]) -> f32 {
    let mut sumf = 0.0f32;
    for (blk, y) in w.chunks_exact(34).zip(a) {
        let sumi: i32 = blk[2..]
            .iter()
            .zip(&y.qs)
            .map(|(&q, &v)| q as i8 as i32 * v as i32)
            .sum();
        sumf += sumi as f32 * (f16_at(blk) * y.d);
    }
    sumf
}

/// Q4_0 row (18-byte blocks: f16 d, 16 bytes of nibbles; byte j = elements j and j+16)
/// · quantised activations: ggml's `vec_dot_q4_0_q8_0`.
pub(crate) fn dot_q4_0(w: &[u8], a: &[Q8Act]) -> f32 {
    let mut sumf = 0.0f32;
    for (blk, y) in w.chunks_exact(18).zip(a) {
        let mut sumi = 0i32;
        for (j, &q) in blk[2..].iter().enumerate() {
            let v0 = (q & 0x0f) as i32 - 8;
            let v1 = (q >> 4) as i32 - 8;
            sumi += v0 * y.qs[j] as i32 + v1 * y.qs[j + QK / 2] as i32;
        }
        sumf += sumi as f32 * (f16_at(blk) * y.d);
    }
    sumf
}

/// Q4_1 row (20-byte blocks: f16 d, f16 m, 16 bytes of nibbles) · quantised
/// activations with their `s = d·Σq`: ggml's `vec_dot_q4_1_q8_1`.
pub(crate) fn dot_q4_1(w: &[u8], a: &[Q8Act]) -> f32 {
    let mut sumf = 0.0f32;
    for (blk, y) in w.chunks_exact(20).zip(a) {
        let mut sumi = 0i32;
        for (j, &q) in blk[4..].iter().enumerate() {
            sumi += (q & 0x0f) as i32 * y.qs[j] as i32 + (q >> 4) as i32 * y.qs[j + QK / 2] as i32;
        }
        sumf += (f16_at(blk) * y.d) * sumi as f32 + f16_at(&blk[2..]) * y.s;
    }
    sumf
}
