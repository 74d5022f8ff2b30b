//! ggml's super-blocks of 256 values: the K-quants Q2_K … Q6_K and IQ4_XS.
//!
//! A super-block holds 8 groups of 32 or 16 groups of 16 values. Each group has its
//! own scale (and, for Q2_K/Q4_K/Q5_K, minimum), itself quantised to 4, 6 or 8 bits
//! against the super-block's f16 `d` (and `dmin`). The field order and bit packing
//! are ggml-common.h's, so GGUF blocks are copied byte for byte. The layouts are
//! written out in `format/SPEC.md`.

use super::legacy::IQ4_NL_VALUES;
use super::{kquant_ref, read_block, Block};
use crate::dtype::{ActQuant, DType};
use half::f16;

/// Elements per super-block.
pub const QK_K: usize = 256;

/// Q2_K: 16 groups of 16, 2-bit quants, 4-bit scale and minimum per group.
/// 2.625 bits per weight.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ2K {
    /// Group `i`: scale in the low nibble, minimum in the high nibble.
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants: byte `l` of 32-byte chunk `c` holds, at bits `2s..2s+2`, element
    /// `128c + 32s + l`.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the minimums.
    pub dmin: f16,
}
const _: () = assert!(core::mem::size_of::<BlockQ2K>() == 84);

/// Q3_K: 16 groups of 16, 3-bit quants (2 low bits + a high-bit mask), 6-bit signed
/// scales. 3.4375 bits per weight.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ3K {
    /// High bits: bit `s` of byte `l` (0..32) belongs to element `32s + l`; a clear bit
    /// subtracts 4.
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits, packed as Q2_K's.
    pub qs: [u8; QK_K / 4],
    /// 16 6-bit scales (offset 32): low nibbles in bytes 0..8, high 2-bit pairs in 8..12.
    pub scales: [u8; 12],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(core::mem::size_of::<BlockQ3K>() == 110);

/// Q4_K: 8 groups of 32, 4-bit quants, 6-bit scale and minimum per group.
/// 4.5 bits per weight.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ4K {
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the minimums.
    pub dmin: f16,
    /// 8 scales and 8 minimums of 6 bits (see [`scale_min_k4`]).
    pub scales: [u8; 12],
    /// Nibbles: byte `l` of 32-byte chunk `c` holds element `64c + l` (low) and
    /// `64c + 32 + l` (high).
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ4K>() == 144);

/// Q5_K: Q4_K plus a fifth bit per value. 5.5 bits per weight.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ5K {
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the minimums.
    pub dmin: f16,
    /// 8 scales and 8 minimums of 6 bits (see [`scale_min_k4`]).
    pub scales: [u8; 12],
    /// Fifth bits: bit `2c` of byte `l` for element `64c + l`, bit `2c + 1` for
    /// `64c + 32 + l`.
    pub qh: [u8; QK_K / 8],
    /// Low nibbles, packed as Q4_K's.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ5K>() == 176);

/// Q6_K: 16 groups of 16, 6-bit quants (offset 32), 8-bit signed scales.
/// 6.5625 bits per weight.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ6K {
    /// Low nibbles: in each half of 128 values, byte `l` (0..64) holds element `l`
    /// (low) and `l + 64` (high).
    pub ql: [u8; QK_K / 2],
    /// High 2 bits: in each half, byte `l` (0..32) holds, at bits `2s..2s+2`, those of
    /// element `32s + l`.
    pub qh: [u8; QK_K / 4],
    /// Per-group scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(core::mem::size_of::<BlockQ6K>() == 210);

/// IQ4_XS: 8 groups of 32, 4-bit indices into [`IQ4_NL_VALUES`], 6-bit scales
/// (offset 32). 4.25 bits per weight.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockIq4Xs {
    /// Super-block scale.
    pub d: f16,
    /// High 2 bits of group `i`'s scale at bits `2i..2i+2`.
    pub scales_h: u16,
    /// Low 4 bits of group `i`'s scale: nibble `i % 2` of byte `i / 2`.
    pub scales_l: [u8; QK_K / 64],
    /// Index nibbles, per group of 32 as IQ4_NL's 16 bytes.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(core::mem::size_of::<BlockIq4Xs>() == 136);

/// Scale and minimum `j` (0..8) of a Q4_K/Q5_K super-block: 6 bits each, the low 4
/// in bytes 8..12 (j ≥ 4) or the whole 6 in bytes 0..8 (j < 4), whose top 2 bits
/// carry the high bits of j ≥ 4 (ggml's `get_scale_min_k4`).
#[inline(always)]
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The 16 signed 6-bit scales of a Q3_K super-block, offset removed (−32..31).
#[inline(always)]
pub fn q3k_scales(q: &[u8; 12]) -> [i8; 16] {
    core::array::from_fn(|i| {
        let low = if i < 8 { q[i] & 0x0f } else { q[i - 8] >> 4 };
        let high = (q[8 + i % 4] >> (2 * (i / 4))) & 3;
        (low | (high << 4)) as i8 - 32
    })
}

/// Group `i`'s 6-bit scale of an IQ4_XS super-block, offset removed (−32..31).
#[inline(always)]
pub fn iq4xs_scale(b: &BlockIq4Xs, i: usize) -> i32 {
    let low = (b.scales_l[i / 2] >> (4 * (i % 2))) & 0x0f;
    let high = (b.scales_h >> (2 * i)) & 3;
    (low as i32 | ((high as i32) << 4)) - 32
}

fn super_block(x: &[f32]) -> &[f32; QK_K] {
    x.try_into()
        .unwrap_or_else(|_| panic!("{} values for a super-block of {QK_K}", x.len()))
}

fn out_block(out: &mut [f32]) -> &mut [f32; QK_K] {
    let n = out.len();
    out.try_into()
        .unwrap_or_else(|_| panic!("{n} outputs for a super-block of {QK_K}"))
}

// SAFETY: repr(C) of f16 and u8 fields, no padding (size asserted).
unsafe impl Block for BlockQ2K {
    const DTYPE: DType = DType::Q2_K;
    const LEN: usize = QK_K;
    const ACT: ActQuant = ActQuant::Q8K;
    fn quantize(x: &[f32]) -> Self {
        read_block(&kquant_ref::quantize_q2_k(super_block(x)))
    }
    fn scales(&self) -> impl Iterator<Item = f16> {
        [self.d, self.dmin].into_iter()
    }
    fn dequantize(&self, out: &mut [f32]) {
        let out = out_block(out);
        let (d, min) = (self.d.to_f32(), self.dmin.to_f32());
        for (i, y) in out.chunks_exact_mut(16).enumerate() {
            // Group i: chunk i / 8 of 32 bytes, shift 2·((i % 8) / 2), bytes 16·(i % 2)..
            let (c, s, h) = (i / 8, 2 * ((i % 8) / 2), 16 * (i % 2));
            let sc = self.scales[i];
            let dl = d * (sc & 0x0f) as f32;
            let ml = min * (sc >> 4) as f32;
            for (l, o) in y.iter_mut().enumerate() {
                let q = (self.qs[32 * c + h + l] >> s) & 3;
                *o = dl * q as f32 - ml;
            }
        }
    }
}

// SAFETY: repr(C) of f16 and u8 fields, no padding (size asserted).
unsafe impl Block for BlockQ3K {
    const DTYPE: DType = DType::Q3_K;
    const LEN: usize = QK_K;
    const ACT: ActQuant = ActQuant::Q8K;
    fn quantize(x: &[f32]) -> Self {
        read_block(&kquant_ref::quantize_q3_k(super_block(x)))
    }
    fn scales(&self) -> impl Iterator<Item = f16> {
        [self.d].into_iter()
    }
    fn dequantize(&self, out: &mut [f32]) {
        let out = out_block(out);
        let d = self.d.to_f32();
        let scales = q3k_scales(&self.scales);
        for (i, y) in out.chunks_exact_mut(16).enumerate() {
            let (c, s, h) = (i / 8, 2 * ((i % 8) / 2), 16 * (i % 2));
            let dl = d * scales[i] as f32;
            // The high-bit mask's bit for this group: one per 32 values, in order.
            let m = 1u8 << (i / 2);
            for (l, o) in y.iter_mut().enumerate() {
                let low = ((self.qs[32 * c + h + l] >> s) & 3) as i8;
                let high = if self.hmask[h + l] & m != 0 { 0 } else { 4 };
                *o = dl * (low - high) as f32;
            }
        }
    }
}

/// Q4_K and Q5_K share their dequantisation but for the fifth bit.
fn dequantize_q45k(
    d: f16,
    dmin: f16,
    scales: &[u8; 12],
    qs: &[u8; 128],
    qh: Option<&[u8; 32]>,
    out: &mut [f32; QK_K],
) {
    let (d, min) = (d.to_f32(), dmin.to_f32());
    for (j, y) in out.chunks_exact_mut(32).enumerate() {
        let (sc, m) = scale_min_k4(j, scales);
        let (dl, ml) = (d * sc as f32, min * m as f32);
        let (c, high) = (j / 2, j % 2 == 1);
        for (l, o) in y.iter_mut().enumerate() {
            let byte = qs[32 * c + l];
            let mut q = if high { byte >> 4 } else { byte & 0x0f };
            if let Some(qh) = qh {
                q += ((qh[l] >> j) & 1) << 4;
            }
            *o = dl * q as f32 - ml;
        }
    }
}

// SAFETY: repr(C) of f16 and u8 fields, no padding (size asserted).
unsafe impl Block for BlockQ4K {
    const DTYPE: DType = DType::Q4_K;
    const LEN: usize = QK_K;
    const ACT: ActQuant = ActQuant::Q8K;
    fn quantize(x: &[f32]) -> Self {
        read_block(&kquant_ref::quantize_q4_k(super_block(x)))
    }
    fn scales(&self) -> impl Iterator<Item = f16> {
        [self.d, self.dmin].into_iter()
    }
    fn dequantize(&self, out: &mut [f32]) {
        dequantize_q45k(
            self.d,
            self.dmin,
            &self.scales,
            &self.qs,
            None,
            out_block(out),
        );
    }
}

// SAFETY: repr(C) of f16 and u8 fields, no padding (size asserted).
unsafe impl Block for BlockQ5K {
    const DTYPE: DType = DType::Q5_K;
    const LEN: usize = QK_K;
    const ACT: ActQuant = ActQuant::Q8K;
    fn quantize(x: &[f32]) -> Self {
        read_block(&kquant_ref::quantize_q5_k(super_block(x)))
    }
    fn scales(&self) -> impl Iterator<Item = f16> {
        [self.d, self.dmin].into_iter()
    }
    fn dequantize(&self, out: &mut [f32]) {
        dequantize_q45k(
            self.d,
            self.dmin,
            &self.scales,
            &self.qs,
            Some(&self.qh),
            out_block(out),
        );
    }
}

/// The 6-bit quant (0..64) of element `k` (0..256) of a Q6_K super-block.
#[inline(always)]
pub fn q6k_quant(b: &BlockQ6K, k: usize) -> u8 {
    let (half, r) = (k / 128, k % 128);
    let (s, l) = (r / 32, r % 32);
    let ql = b.ql[64 * half + 32 * (s % 2) + l];
    let low = if s < 2 { ql & 0x0f } else { ql >> 4 };
    let high = (b.qh[32 * half + l] >> (2 * s)) & 3;
    low | (high << 4)
}

// SAFETY: repr(C) of f16, u8 and i8 fields, no padding (size asserted).
unsafe impl Block for BlockQ6K {
    const DTYPE: DType = DType::Q6_K;
    const LEN: usize = QK_K;
    const ACT: ActQuant = ActQuant::Q8K;
    fn quantize(x: &[f32]) -> Self {
        read_block(&kquant_ref::quantize_q6_k(super_block(x)))
    }
    fn scales(&self) -> impl Iterator<Item = f16> {
        [self.d].into_iter()
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (k, o) in out_block(out).iter_mut().enumerate() {
            let q = q6k_quant(self, k) as i32 - 32;
            *o = d * self.scales[k / 16] as f32 * q as f32;
        }
    }
}

// SAFETY: repr(C) of f16, u16 and u8 fields, no padding (size asserted).
unsafe impl Block for BlockIq4Xs {
    const DTYPE: DType = DType::IQ4_XS;
    const LEN: usize = QK_K;
    const ACT: ActQuant = ActQuant::Q8K;
    fn quantize(x: &[f32]) -> Self {
        read_block(&kquant_ref::quantize_iq4_xs(super_block(x)))
    }
    fn scales(&self) -> impl Iterator<Item = f16> {
        [self.d].into_iter()
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (i, y) in out_block(out).chunks_exact_mut(32).enumerate() {
            let dl = d * iq4xs_scale(self, i) as f32;
            let qs = &self.qs[16 * i..16 * i + 16];
            for (j, q) in qs.iter().enumerate() {
                y[j] = dl * IQ4_NL_VALUES[(q & 0x0f) as usize] as f32;
                y[j + 16] = dl * IQ4_NL_VALUES[(q >> 4) as usize] as f32;
            }
        }
    }
}
