//! Plain floats as blocks of one element, so that every dtype goes through the same
//! [`Block`] table.

use super::Block;
use crate::dtype::{ActQuant, DType};
use half::{bf16, f16};

// SAFETY: a primitive float: no padding, every bit pattern valid.
unsafe impl Block for f32 {
    const DTYPE: DType = DType::F32;
    const LEN: usize = 1;
    const ACT: ActQuant = ActQuant::Float;
    fn quantize(x: &[f32]) -> Self {
        let [v] = x else {
            panic!("f32: {} values for a block of 1", x.len())
        };
        *v
    }
    fn dequantize(&self, out: &mut [f32]) {
        out.copy_from_slice(&[*self]);
    }
}

// SAFETY: a 16-bit float (u16 bits): no padding, every bit pattern valid.
unsafe impl Block for f16 {
    const DTYPE: DType = DType::F16;
    const LEN: usize = 1;
    const ACT: ActQuant = ActQuant::Float;
    fn quantize(x: &[f32]) -> Self {
        let [v] = x else {
            panic!("f16: {} values for a block of 1", x.len())
        };
        f16::from_f32(*v)
    }
    fn dequantize(&self, out: &mut [f32]) {
        out.copy_from_slice(&[self.to_f32()]);
    }
}

// SAFETY: a 16-bit float (u16 bits): no padding, every bit pattern valid.
unsafe impl Block for bf16 {
    const DTYPE: DType = DType::BF16;
    const LEN: usize = 1;
    const ACT: ActQuant = ActQuant::Float;
    fn quantize(x: &[f32]) -> Self {
        let [v] = x else {
            panic!("bf16: {} values for a block of 1", x.len())
        };
        bf16::from_f32(*v)
    }
    fn dequantize(&self, out: &mut [f32]) {
        out.copy_from_slice(&[self.to_f32()]);
    }
}
