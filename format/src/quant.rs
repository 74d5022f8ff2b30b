//! ggml-compatible quantisation blocks and their scalar reference (de)quantisers.
//!
//! Each block is `#[repr(C)]` with a compile-time size check, so a slice of blocks
//! has exactly ggml's bytes. The reference quantisers follow ggml's
//! `quantize_row_*_reference` rounding, so files come out deterministic and the
//! same as llama.cpp's for the same f32 input.

use crate::dtype::DType;
use alloc::vec;
use alloc::vec::Vec;
use half::{bf16, f16};

/// Elements per quantisation block (all block types here).
pub const QK: usize = 32;

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
    /// Byte j holds element j (low nibble) and element j+16 (high nibble); x = (q - 8)·d.
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
    /// Byte j holds element j (low nibble) and element j+16 (high nibble); x = q·d + m.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ4_1>() == 20);

/// A block-quantised type: its id, its block and the scalar reference conversions.
pub trait QuantType: Copy + Sized + 'static {
    /// The dtype this block stores.
    const DTYPE: DType;
    /// Quantises exactly [`QK`] values.
    fn from_f32(x: &[f32; QK]) -> Self;
    /// Dequantises to exactly [`QK`] values.
    fn to_f32(&self, out: &mut [f32; QK]);
}

impl QuantType for BlockQ8_0 {
    const DTYPE: DType = DType::Q8_0;
    fn from_f32(x: &[f32; QK]) -> Self {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0i8; QK];
        for (q, v) in qs.iter_mut().zip(x) {
            *q = round_half_away(v * id) as i8;
        }
        BlockQ8_0 {
            d: f16::from_f32(d),
            qs,
        }
    }
    fn to_f32(&self, out: &mut [f32; QK]) {
        let d = self.d.to_f32();
        for (o, q) in out.iter_mut().zip(&self.qs) {
            *o = *q as f32 * d;
        }
    }
}

impl QuantType for BlockQ4_0 {
    const DTYPE: DType = DType::Q4_0;
    fn from_f32(x: &[f32; QK]) -> Self {
        // The value of largest magnitude, with its sign, maps to -8.
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; QK / 2];
        for (j, q) in qs.iter_mut().enumerate() {
            let x0 = x[j] * id;
            let x1 = x[j + QK / 2] * id;
            let q0 = ((x0 + 8.5) as i8).min(15) as u8;
            let q1 = ((x1 + 8.5) as i8).min(15) as u8;
            *q = q0 | (q1 << 4);
        }
        BlockQ4_0 {
            d: f16::from_f32(d),
            qs,
        }
    }
    fn to_f32(&self, out: &mut [f32; QK]) {
        let d = self.d.to_f32();
        for (j, q) in self.qs.iter().enumerate() {
            out[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
            out[j + QK / 2] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

impl QuantType for BlockQ4_1 {
    const DTYPE: DType = DType::Q4_1;
    fn from_f32(x: &[f32; QK]) -> Self {
        let mut min = f32::MAX;
        let mut max = f32::MIN;
        for &v in x {
            min = min.min(v);
            max = max.max(v);
        }
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; QK / 2];
        for (j, q) in qs.iter_mut().enumerate() {
            let x0 = (x[j] - min) * id;
            let x1 = (x[j + QK / 2] - min) * id;
            let q0 = ((x0 + 0.5) as i8).min(15) as u8;
            let q1 = ((x1 + 0.5) as i8).min(15) as u8;
            *q = q0 | (q1 << 4);
        }
        BlockQ4_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qs,
        }
    }
    fn to_f32(&self, out: &mut [f32; QK]) {
        let d = self.d.to_f32();
        let m = self.m.to_f32();
        for (j, q) in self.qs.iter().enumerate() {
            out[j] = (q & 0x0f) as f32 * d + m;
            out[j + QK / 2] = (q >> 4) as f32 * d + m;
        }
    }
}

/// `roundf`: halves round away from zero (Rust's `f32::round` needs `std`).
fn round_half_away(v: f32) -> f32 {
    let t = v as i32 as f32; // truncation toward zero; |v| <= 127 here
    let frac = v - t;
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// Reinterprets little-endian block bytes as blocks. `bytes.len()` must be a multiple
/// of the block size; returns `None` if not, or if the pointer is not 2-byte aligned.
pub fn as_blocks<B: QuantType>(bytes: &[u8]) -> Option<&[B]> {
    let size = core::mem::size_of::<B>();
    if bytes.len() % size != 0 || (bytes.as_ptr() as usize) % core::mem::align_of::<B>() != 0 {
        return None;
    }
    // SAFETY: length and alignment were checked just above; B is repr(C) made only of
    // f16 (u16 bits), i8 and u8 fields, so every bit pattern is a valid B.
    Some(unsafe { core::slice::from_raw_parts(bytes.as_ptr() as *const B, bytes.len() / size) })
}

fn quantize_blocks<B: QuantType>(x: &[f32], out: &mut Vec<u8>) {
    for chunk in x.chunks_exact(QK) {
        let b = B::from_f32(chunk.try_into().expect("chunks_exact gives QK"));
        // SAFETY: B is repr(C), has no padding (size asserts above) and is Copy.
        let bytes = unsafe {
            core::slice::from_raw_parts(&b as *const B as *const u8, core::mem::size_of::<B>())
        };
        out.extend_from_slice(bytes);
    }
}

/// Converts `x` to `dtype`'s bytes (the scalar reference path). For block types
/// `x.len()` must be a multiple of 32; returns `None` if it is not.
pub fn quantize(dtype: DType, x: &[f32]) -> Option<Vec<u8>> {
    let n = dtype.bytes_for(x.len() as u64)? as usize;
    let mut out = Vec::with_capacity(n);
    match dtype {
        DType::F32 => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::F16 => x
            .iter()
            .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        DType::BF16 => x
            .iter()
            .for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
        DType::Q8_0 => quantize_blocks::<BlockQ8_0>(x, &mut out),
        DType::Q4_0 => quantize_blocks::<BlockQ4_0>(x, &mut out),
        DType::Q4_1 => quantize_blocks::<BlockQ4_1>(x, &mut out),
    }
    debug_assert_eq!(out.len(), n);
    Some(out)
}

fn dequantize_blocks<B: QuantType>(bytes: &[u8], out: &mut [f32]) {
    let size = core::mem::size_of::<B>();
    let mut tmp = [0.0f32; QK];
    for (chunk, o) in bytes.chunks_exact(size).zip(out.chunks_exact_mut(QK)) {
        // Unaligned read: `bytes` may sit anywhere in a caller's buffer.
        // SAFETY: chunk has exactly size_of::<B>() bytes and every bit pattern is a valid B.
        let b: B = unsafe { core::ptr::read_unaligned(chunk.as_ptr() as *const B) };
        b.to_f32(&mut tmp);
        o.copy_from_slice(&tmp);
    }
}

/// Converts `bytes` of `dtype` back to f32 into `out` (the scalar reference path).
/// Returns `None` if `bytes` does not hold exactly `out.len()` elements.
pub fn dequantize(dtype: DType, bytes: &[u8], out: &mut [f32]) -> Option<()> {
    if dtype.bytes_for(out.len() as u64)? != bytes.len() as u64 {
        return None;
    }
    match dtype {
        DType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::Q8_0 => dequantize_blocks::<BlockQ8_0>(bytes, out),
        DType::Q4_0 => dequantize_blocks::<BlockQ4_0>(bytes, out),
        DType::Q4_1 => dequantize_blocks::<BlockQ4_1>(bytes, out),
    }
    Some(())
}

/// Convenience: dequantises to a new vector of `n` elements.
pub fn dequantize_vec(dtype: DType, bytes: &[u8], n: usize) -> Option<Vec<f32>> {
    let mut v = vec![0.0; n];
    dequantize(dtype, bytes, &mut v)?;
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn round_trip_error_within_budget() {
        let mut s = 7u64;
        let x: Vec<f32> = (0..32 * 37).map(|_| lcg(&mut s) * 3.0).collect();
        // Per-dtype budget on max |x - deq(q(x))| relative to the block's max |x|.
        for (dt, budget) in [
            (DType::F32, 0.0),
            (DType::F16, 1e-3),
            (DType::BF16, 8e-3),
            (DType::Q8_0, 1.0 / 127.0),
            (DType::Q4_0, 1.0 / 8.0),
            (DType::Q4_1, 1.0 / 15.0),
        ] {
            let q = quantize(dt, &x).unwrap();
            assert_eq!(q.len() as u64, dt.bytes_for(x.len() as u64).unwrap());
            let y = dequantize_vec(dt, &q, x.len()).unwrap();
            for (bx, by) in x.chunks(32).zip(y.chunks(32)) {
                let amax = bx.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                for (a, b) in bx.iter().zip(by) {
                    assert!(
                        (a - b).abs() <= budget * amax * 1.01 + 1e-7,
                        "{dt}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn rejects_partial_blocks() {
        assert!(quantize(DType::Q8_0, &[1.0; 31]).is_none());
        assert!(quantize(DType::F16, &[1.0; 31]).is_some());
    }
}
