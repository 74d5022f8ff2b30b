//! The portable reference kernels: one weight row dotted with one activation row, in
//! plain Rust, with the same integer arithmetic as ggml's `vec_dot_*` for the block
//! types. Every SIMD path is tested against these; they are also the `no_std` path.
//!
//! Blocks are read through `llm_format`'s block structs (`read_block`: the row may sit
//! at any alignment), and the K-quants' packed scales through its layout helpers, so
//! no byte offset is written here.

use super::act::{self, Q8Act, Q8K, QK, QK_K};
use super::{check_shapes, Acts, Matrix, OutRows};
use alloc::vec;
use half::{bf16, f16};
use llm_format::quant::kquants::{iq4xs_scale, q3k_scales, q6k_quant, scale_min_k4};
use llm_format::quant::{
    read_block, Block, BlockIq4Nl, BlockIq4Xs, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1,
    BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, IQ4_NL_VALUES,
};
use llm_format::ActQuant;

/// `y[i·rows + r] = Σ_c W[r, c] · x[i·cols + c]` for `i in 0..n` (`y = x · Wᵀ`), the
/// reference semantics of [`super::Cpu::matmul`], on one thread.
///
/// F32/F16/BF16 weights: each weight is widened to f32 and the products are summed in
/// f32, column by column. Block weights: the activations are quantised to 8 bits as
/// the weight type's `act_quant` says (ggml's `block_q8_0`/`block_q8_1` per 32 values,
/// `block_q8_K` per 256), and each block contributes its exact integer dot product
/// times the scales, summed in f32 block by block (as ggml's `vec_dot_*`).
///
/// # Panics
/// If `x.len() != n·w.cols`, `y.len() != n·w.rows`, or `w`'s fields disagree with its
/// data.
pub fn matmul_ref(w: &Matrix<'_>, x: &[f32], n: usize, y: &mut [f32]) {
    check_shapes(w, x, n, y);
    let (mut a, mut k) = (vec![], vec![]);
    match w.dtype.act_quant() {
        ActQuant::Float => {}
        ActQuant::Q8_0 | ActQuant::Q8_1 => {
            a = vec![Q8Act::ZERO; x.len() / QK];
            act::quantize(x, &mut a);
        }
        ActQuant::Q8K => {
            k = vec![Q8K::ZERO; x.len() / QK_K];
            act::quantize_k(x, &mut k);
        }
    }
    let acts = Acts {
        x,
        a: &a,
        quads: &[],
        k: &k,
        xb: &[],
    };
    rows(w, &acts, &mut OutRows::whole(y, w.rows, n));
}

rows_fn! {
    /// Rows `out.r0..out.r1` of `y = x · Wᵀ`.
    pub(crate) fn rows {
        float: F32 => dot_f32, F16 => dot_f16, BF16 => dot_bf16;
        q8: Q8_0 => dot_q8_0, Q4_0 => dot_q4_0, Q4_1 => dot_q4_1,
            Q5_0 => dot_q5_0, Q5_1 => dot_q5_1, IQ4_NL => dot_iq4_nl;
        q8k: Q2_K => dot_q2_k, Q3_K => dot_q3_k, Q4_K => dot_q4_k,
            Q5_K => dot_q5_k, Q6_K => dot_q6_k, IQ4_XS => dot_iq4_xs;
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
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))] // the NEON dots use it
pub(crate) fn f16_at(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// The blocks of a weight row, read one at a time (the row may sit at any alignment),
/// beside their activation blocks.
///
/// # Panics
/// If the row does not hold exactly one block per activation block.
pub(crate) fn blocks<'a, B: Block, A>(
    w: &'a [u8],
    a: &'a [A],
) -> impl Iterator<Item = (B, &'a A)> + 'a {
    let size = core::mem::size_of::<B>();
    assert_eq!(
        w.len(),
        size * a.len(),
        "{} row of {} bytes for {} activation blocks",
        B::DTYPE,
        w.len(),
        a.len()
    );
    w.chunks_exact(size).map(read_block::<B>).zip(a)
}

/// Σ q_w·q_x over a block of 32, the weight quant of element `j` given by `q(j)`.
#[inline(always)]
fn dot32(q: impl Fn(usize) -> i32, y: &Q8Act) -> i32 {
    (0..QK).map(|j| q(j) * y.qs[j] as i32).sum()
}

/// The nibble of element `j` (0..32): byte `j % 16`, low for `j < 16`.
#[inline(always)]
fn nibble(qs: &[u8; QK / 2], j: usize) -> i32 {
    let b = qs[j % 16];
    (if j < 16 { b & 0x0f } else { b >> 4 }) as i32
}

/// The 5-bit quant of element `j`: its nibble and bit `j` of the mask.
#[inline(always)]
fn quant5(qs: &[u8; QK / 2], qh: [u8; 4], j: usize) -> i32 {
    nibble(qs, j) | (((u32::from_le_bytes(qh) >> j) & 1) << 4) as i32
}

/// Q8_0 row · quantised activations: ggml's `vec_dot_q8_0_q8_0`.
pub(crate) fn dot_q8_0(w: &[u8], a: &[Q8Act]) -> f32 {
    let mut sumf = 0.0f32;
    for (b, y) in blocks::<BlockQ8_0, _>(w, a) {
        let sumi = dot32(|j| b.qs[j] as i32, y);
        sumf += sumi as f32 * (b.d.to_f32() * y.d);
    }
    sumf
}

/// Q4_0 row · quantised activations: ggml's `vec_dot_q4_0_q8_0`.
pub(crate) fn dot_q4_0(w: &[u8], a: &[Q8Act]) -> f32 {
    let mut sumf = 0.0f32;
    for (b, y) in blocks::<BlockQ4_0, _>(w, a) {
        let sumi = dot32(|j| nibble(&b.qs, j) - 8, y);
        sumf += sumi as f32 * (b.d.to_f32() * y.d);
    }
    sumf
}

/// Q4_1 row · quantised activations with their `s = d·Σq`: ggml's `vec_dot_q4_1_q8_1`.
pub(crate) fn dot_q4_1(w: &[u8], a: &[Q8Act]) -> f32 {
    let mut sumf = 0.0f32;
    for (b, y) in blocks::<BlockQ4_1, _>(w, a) {
        let sumi = dot32(|j| nibble(&b.qs, j), y);
        sumf += (b.d.to_f32() * y.d) * sumi as f32 + b.m.to_f32() * y.s;
    }
    sumf
}

/// Q5_0 row · quantised activations: ggml's `vec_dot_q5_0_q8_0`.
pub(crate) fn dot_q5_0(w: &[u8], a: &[Q8Act]) -> f32 {
    let mut sumf = 0.0f32;
    for (b, y) in blocks::<BlockQ5_0, _>(w, a) {
        let sumi = dot32(|j| quant5(&b.qs, b.qh, j) - 16, y);
        sumf += sumi as f32 * (b.d.to_f32() * y.d);
    }
    sumf
}

/// Q5_1 row · quantised activations with their `s`: ggml's `vec_dot_q5_1_q8_1`.
pub(crate) fn dot_q5_1(w: &[u8], a: &[Q8Act]) -> f32 {
    let mut sumf = 0.0f32;
    for (b, y) in blocks::<BlockQ5_1, _>(w, a) {
        let sumi = dot32(|j| quant5(&b.qs, b.qh, j), y);
        sumf += (b.d.to_f32() * y.d) * sumi as f32 + b.m.to_f32() * y.s;
    }
    sumf
}

/// IQ4_NL row · quantised activations: ggml's `vec_dot_iq4_nl_q8_0`.
pub(crate) fn dot_iq4_nl(w: &[u8], a: &[Q8Act]) -> f32 {
    let mut sumf = 0.0f32;
    for (b, y) in blocks::<BlockIq4Nl, _>(w, a) {
        let sumi = dot32(|j| IQ4_NL_VALUES[nibble(&b.qs, j) as usize] as i32, y);
        sumf += sumi as f32 * (b.d.to_f32() * y.d);
    }
    sumf
}

/// One super-block in a common form: signed quants, a scale per group of 16 and
/// (for the types with minimums) a minimum per group of 16, with the f16 factors
/// they multiply. Every K-quant's dot product is then
/// `d·d_x·Σ_g scale_g·Σ_{j∈g} q_j·x_j − dmin·d_x·Σ_g min_g·bsum_g`.
struct Super {
    q: [i8; QK_K],
    scale: [i32; QK_K / 16],
    min: [i32; QK_K / 16],
    d: f32,
    dmin: f32,
}

impl Super {
    /// The super-block's contribution against activations `y` (exact integer sums,
    /// then two f32 products, as ggml's `vec_dot_*_q8_K`).
    fn dot(&self, y: &Q8K) -> f32 {
        let mut sumi = 0i32;
        for (g, (qg, yg)) in self
            .q
            .chunks_exact(16)
            .zip(y.qs.chunks_exact(16))
            .enumerate()
        {
            let s: i32 = qg.iter().zip(yg).map(|(&a, &b)| a as i32 * b as i32).sum();
            sumi += self.scale[g] * s;
        }
        let summ: i32 = self
            .min
            .iter()
            .zip(&y.bsums)
            .map(|(&m, &s)| m * s as i32)
            .sum();
        self.d * y.d * sumi as f32 - self.dmin * y.d * summ as f32
    }
}

fn dot_super<B: Block>(w: &[u8], a: &[Q8K], unpack: impl Fn(&B) -> Super) -> f32 {
    blocks::<B, _>(w, a).map(|(b, y)| unpack(&b).dot(y)).sum()
}

/// Q2_K row · Q8_K activations: ggml's `vec_dot_q2_K_q8_K`.
pub(crate) fn dot_q2_k(w: &[u8], a: &[Q8K]) -> f32 {
    dot_super::<BlockQ2K>(w, a, |b| Super {
        q: core::array::from_fn(|k| {
            let (c, s, l) = (k / 128, (k % 128) / 32, k % 32);
            ((b.qs[32 * c + l] >> (2 * s)) & 3) as i8
        }),
        scale: core::array::from_fn(|g| (b.scales[g] & 0x0f) as i32),
        min: core::array::from_fn(|g| (b.scales[g] >> 4) as i32),
        d: b.d.to_f32(),
        dmin: b.dmin.to_f32(),
    })
}

/// Q3_K row · Q8_K activations: ggml's `vec_dot_q3_K_q8_K`.
pub(crate) fn dot_q3_k(w: &[u8], a: &[Q8K]) -> f32 {
    dot_super::<BlockQ3K>(w, a, |b| {
        let scales = q3k_scales(&b.scales);
        Super {
            q: core::array::from_fn(|k| {
                let (c, s, l) = (k / 128, (k % 128) / 32, k % 32);
                let low = ((b.qs[32 * c + l] >> (2 * s)) & 3) as i8;
                let high = b.hmask[l] & (1 << (k / 32)) != 0;
                low - if high { 0 } else { 4 }
            }),
            scale: core::array::from_fn(|g| scales[g] as i32),
            min: [0; 16],
            d: b.d.to_f32(),
            dmin: 0.0,
        }
    })
}

/// Q4_K and Q5_K in the common form, given each element's quant.
fn super_q45k(d: f16, dmin: f16, scales: &[u8; 12], q: impl Fn(usize) -> u8) -> Super {
    Super {
        q: core::array::from_fn(|k| q(k) as i8),
        scale: core::array::from_fn(|g| scale_min_k4(g / 2, scales).0 as i32),
        min: core::array::from_fn(|g| scale_min_k4(g / 2, scales).1 as i32),
        d: d.to_f32(),
        dmin: dmin.to_f32(),
    }
}

/// The 4-bit quant of element `k` of a Q4_K/Q5_K super-block.
#[inline(always)]
fn q4k_nibble(qs: &[u8; 128], k: usize) -> u8 {
    let (c, high, l) = (k / 64, (k / 32) % 2 == 1, k % 32);
    let b = qs[32 * c + l];
    if high {
        b >> 4
    } else {
        b & 0x0f
    }
}

/// Q4_K row · Q8_K activations: ggml's `vec_dot_q4_K_q8_K`.
pub(crate) fn dot_q4_k(w: &[u8], a: &[Q8K]) -> f32 {
    dot_super::<BlockQ4K>(w, a, |b| {
        super_q45k(b.d, b.dmin, &b.scales, |k| q4k_nibble(&b.qs, k))
    })
}

/// Q5_K row · Q8_K activations: ggml's `vec_dot_q5_K_q8_K`.
pub(crate) fn dot_q5_k(w: &[u8], a: &[Q8K]) -> f32 {
    dot_super::<BlockQ5K>(w, a, |b| {
        super_q45k(b.d, b.dmin, &b.scales, |k| {
            q4k_nibble(&b.qs, k) | (((b.qh[k % 32] >> (k / 32)) & 1) << 4)
        })
    })
}

/// Q6_K row · Q8_K activations: ggml's `vec_dot_q6_K_q8_K`.
pub(crate) fn dot_q6_k(w: &[u8], a: &[Q8K]) -> f32 {
    dot_super::<BlockQ6K>(w, a, |b| Super {
        q: core::array::from_fn(|k| q6k_quant(b, k) as i8 - 32),
        scale: core::array::from_fn(|g| b.scales[g] as i32),
        min: [0; 16],
        d: b.d.to_f32(),
        dmin: 0.0,
    })
}

/// IQ4_XS row · Q8_K activations: ggml's `vec_dot_iq4_xs_q8_K`.
pub(crate) fn dot_iq4_xs(w: &[u8], a: &[Q8K]) -> f32 {
    dot_super::<BlockIq4Xs>(w, a, |b| Super {
        q: core::array::from_fn(|k| {
            let qs = &b.qs[16 * (k / 32)..16 * (k / 32) + 16];
            let j = k % 32;
            let nib = if j < 16 {
                qs[j] & 0x0f
            } else {
                qs[j - 16] >> 4
            };
            IQ4_NL_VALUES[nib as usize]
        }),
        scale: core::array::from_fn(|g| iq4xs_scale(b, g / 2)),
        min: [0; 16],
        d: b.d.to_f32(),
        dmin: 0.0,
    })
}
