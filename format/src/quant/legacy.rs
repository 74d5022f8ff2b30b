//! ggml's blocks of 32 values: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL.
//!
//! In the 4- and 5-bit types byte `j` of `qs` holds element `j` in its low nibble and
//! element `j + 16` in its high nibble; Q5's fifth bits sit in a little-endian 32-bit
//! mask `qh`, bit `j` for element `j`.

use super::{kquant_ref, round_half_away, Block};
use crate::dtype::{ActQuant, DType};
use half::f16;

/// Elements per block.
pub const QK: usize = 32;

/// IQ4_NL's 16 levels (ggml's `kvalues_iq4nl`): a non-linear grid, denser near zero,
/// that fits the distribution of trained weights better than a uniform one.
pub const IQ4_NL_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Q8_0: 32 signed 8-bit quants sharing one f16 scale. 8.5 bits per weight.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quants: x\[i\] = qs\[i\]·d.
    pub qs: [i8; QK],
}
const _: () = assert!(core::mem::size_of::<BlockQ8_0>() == 34);

/// Q4_0: 32 unsigned 4-bit quants (offset 8) sharing one f16 scale. 4.5 bits per weight.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Nibbles; x = (q - 8)·d.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ4_0>() == 18);

/// Q4_1: 32 unsigned 4-bit quants with an f16 scale and an f16 minimum. 5 bits per weight.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (offset).
    pub m: f16,
    /// Nibbles; x = q·d + m.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ4_1>() == 20);

/// Q5_0: 32 unsigned 5-bit quants (offset 16) sharing one f16 scale. 5.5 bits per weight.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: f16,
    /// Fifth bits, a little-endian u32: bit j belongs to element j.
    pub qh: [u8; 4],
    /// Low nibbles; x = (q - 16)·d.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ5_0>() == 22);

/// Q5_1: 32 unsigned 5-bit quants with an f16 scale and minimum. 6 bits per weight.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (offset).
    pub m: f16,
    /// Fifth bits, a little-endian u32: bit j belongs to element j.
    pub qh: [u8; 4],
    /// Low nibbles; x = q·d + m.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ5_1>() == 24);

/// IQ4_NL: 32 4-bit indices into [`IQ4_NL_VALUES`] with one f16 scale. 4.5 bits per weight.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockIq4Nl {
    /// Scale.
    pub d: f16,
    /// Index nibbles; x = IQ4_NL_VALUES\[q\]·d.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(core::mem::size_of::<BlockIq4Nl>() == 18);

/// The 32 values of a block as an array.
fn block(x: &[f32]) -> &[f32; QK] {
    x.try_into()
        .unwrap_or_else(|_| panic!("{} values for a block of {QK}", x.len()))
}

/// The value of largest magnitude, with its sign (ggml's `max` beside `amax`).
fn signed_max(x: &[f32; QK]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32; QK]) -> (f32, f32) {
    x.iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// Splits 5-bit quants into low nibbles and the mask of fifth bits.
fn pack5(q: impl Fn(usize) -> u8) -> ([u8; QK / 2], [u8; 4]) {
    let mut qs = [0u8; QK / 2];
    let mut qh = 0u32;
    for (j, b) in qs.iter_mut().enumerate() {
        let (q0, q1) = (q(j), q(j + QK / 2));
        *b = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
        qh |= ((q0 as u32 & 0x10) >> 4) << j;
        qh |= ((q1 as u32 & 0x10) >> 4) << (j + QK / 2);
    }
    (qs, qh.to_le_bytes())
}

/// The 5-bit quant of element `j` (0..32) from nibbles and mask.
fn unpack5(qs: &[u8; QK / 2], qh: [u8; 4], j: usize) -> i32 {
    let h = (u32::from_le_bytes(qh) >> j) & 1;
    let nib = if j < QK / 2 {
        qs[j] & 0x0f
    } else {
        qs[j - QK / 2] >> 4
    };
    (nib as u32 | (h << 4)) as i32
}

// SAFETY: repr(C) of f16 and i8 fields, no padding (size asserted).
unsafe impl Block for BlockQ8_0 {
    const DTYPE: DType = DType::Q8_0;
    const LEN: usize = QK;
    const ACT: ActQuant = ActQuant::Q8_0;
    fn quantize(x: &[f32]) -> Self {
        let x = block(x);
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        BlockQ8_0 {
            d: f16::from_f32(d),
            qs: x.map(|v| round_half_away(v * id) as i8),
        }
    }
    fn scales(&self) -> impl Iterator<Item = f16> {
        [self.d].into_iter()
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (o, q) in out.iter_mut().zip(&self.qs) {
            *o = *q as f32 * d;
        }
    }
}

// SAFETY: repr(C) of f16 and u8 fields, no padding (size asserted).
unsafe impl Block for BlockQ4_0 {
    const DTYPE: DType = DType::Q4_0;
    const LEN: usize = QK;
    const ACT: ActQuant = ActQuant::Q8_0;
    fn quantize(x: &[f32]) -> Self {
        let x = block(x);
        // The value of largest magnitude, with its sign, maps to -8.
        let d = signed_max(x) / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
        let mut qs = [0u8; QK / 2];
        for (j, b) in qs.iter_mut().enumerate() {
            *b = q(x[j]) | (q(x[j + QK / 2]) << 4);
        }
        BlockQ4_0 {
            d: f16::from_f32(d),
            qs,
        }
    }
    fn scales(&self) -> impl Iterator<Item = f16> {
        [self.d].into_iter()
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (j, q) in self.qs.iter().enumerate() {
            out[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
            out[j + QK / 2] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

// SAFETY: repr(C) of f16 and u8 fields, no padding (size asserted).
unsafe impl Block for BlockQ4_1 {
    const DTYPE: DType = DType::Q4_1;
    const LEN: usize = QK;
    const ACT: ActQuant = ActQuant::Q8_1;
    fn quantize(x: &[f32]) -> Self {
        let x = block(x);
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
        let mut qs = [0u8; QK / 2];
        for (j, b) in qs.iter_mut().enumerate() {
            *b = q(x[j]) | (q(x[j + QK / 2]) << 4);
        }
        BlockQ4_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qs,
        }
    }
    fn scales(&self) -> impl Iterator<Item = f16> {
        [self.d, self.m].into_iter()
    }
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (j, q) in self.qs.iter().enumerate() {
            out[j] = (q & 0x0f) as f32 * d + m;
            out[j + QK / 2] = (q >> 4) as f32 * d + m;
        }
    }
}

// SAFETY: repr(C) of f16 and u8 fields, no padding (size asserted).
unsafe impl Block for BlockQ5_0 {
    const DTYPE: DType = DType::Q5_0;
    const LEN: usize = QK;
    const ACT: ActQuant = ActQuant::Q8_0;
    fn quantize(x: &[f32]) -> Self {
        let x = block(x);
        // The value of largest magnitude, with its sign, maps to -16.
        let d = signed_max(x) / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let (qs, qh) = pack5(|j| ((x[j] * id + 16.5) as i8).min(31) as u8);
        BlockQ5_0 {
            d: f16::from_f32(d),
            qh,
            qs,
        }
    }
    fn scales(&self) -> impl Iterator<Item = f16> {
        [self.d].into_iter()
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (j, o) in out.iter_mut().enumerate() {
            *o = (unpack5(&self.qs, self.qh, j) - 16) as f32 * d;
        }
    }
}

// SAFETY: repr(C) of f16 and u8 fields, no padding (size asserted).
unsafe impl Block for BlockQ5_1 {
    const DTYPE: DType = DType::Q5_1;
    const LEN: usize = QK;
    const ACT: ActQuant = ActQuant::Q8_1;
    fn quantize(x: &[f32]) -> Self {
        let x = block(x);
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        // ggml truncates to u8 without clamping (the largest value lands on 31).
        let (qs, qh) = pack5(|j| ((x[j] - min) * id + 0.5) as u8);
        BlockQ5_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qh,
            qs,
        }
    }
    fn scales(&self) -> impl Iterator<Item = f16> {
        [self.d, self.m].into_iter()
    }
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (j, o) in out.iter_mut().enumerate() {
            *o = unpack5(&self.qs, self.qh, j) as f32 * d + m;
        }
    }
}

// SAFETY: repr(C) of f16 and u8 fields, no padding (size asserted).
unsafe impl Block for BlockIq4Nl {
    const DTYPE: DType = DType::IQ4_NL;
    const LEN: usize = QK;
    const ACT: ActQuant = ActQuant::Q8_0;
    fn quantize(x: &[f32]) -> Self {
        let bytes = kquant_ref::quantize_iq4_nl(block(x));
        super::read_block(&bytes)
    }
    fn scales(&self) -> impl Iterator<Item = f16> {
        [self.d].into_iter()
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (j, q) in self.qs.iter().enumerate() {
            out[j] = d * IQ4_NL_VALUES[(q & 0x0f) as usize] as f32;
            out[j + QK / 2] = d * IQ4_NL_VALUES[(q >> 4) as usize] as f32;
        }
    }
}
