//! ggml-compatible element blocks and their scalar reference (de)quantisers.
//!
//! Every storage type is a [`Block`]: plain floats are blocks of one (`f32`, `f16`,
//! `bf16`), the quantised types are `#[repr(C)]` structs with a compile-time size
//! check, so a slice of blocks has exactly ggml's bytes. [`crate::dtype`] declares
//! which block each [`DType`] stores. The reference quantisers follow ggml's
//! `quantize_row_*_ref` (IQ4: `ggml_quantize_chunk` without an importance matrix)
//! bit for bit, so files come out deterministic and the same as llama.cpp's for the
//! same f32 input; `format/tests/ggml_blocks.rs` checks this against fixtures written
//! by ggml itself.
//!
//! * [`legacy`]: blocks of 32 — Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL.
//! * [`kquants`]: super-blocks of 256 — Q2_K … Q6_K, IQ4_XS.

mod float;
mod kquant_ref;
pub mod kquants;
pub mod legacy;

pub use kquants::{BlockIq4Xs, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, QK_K};
pub use legacy::{
    BlockIq4Nl, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, IQ4_NL_VALUES, QK,
};

use crate::dtype::{ActQuant, BlockVisitor, DType};
use alloc::vec;
use alloc::vec::Vec;

/// One storage block of a dtype: its geometry and scalar reference conversions.
///
/// # Safety
/// Implementors are plain old data: `#[repr(C)]` (or a primitive) without padding, so
/// their bytes are exactly ggml's block bytes on a little-endian machine, and every
/// bit pattern is a valid value (fields are integers, `f16`/`bf16`/`f32` or arrays of
/// them). [`as_blocks`] and the byte conversions here rely on it.
pub unsafe trait Block: Copy + Sized + Send + Sync + 'static {
    /// The dtype this block stores.
    const DTYPE: DType;
    /// Elements per block.
    const LEN: usize;
    /// How kernels quantise the activations multiplied with this type.
    const ACT: ActQuant;
    /// Quantises exactly [`Block::LEN`] values (ggml's reference rounding).
    ///
    /// # Panics
    /// If `x.len() != LEN`.
    fn quantize(x: &[f32]) -> Self;
    /// Dequantises to exactly [`Block::LEN`] values.
    ///
    /// # Panics
    /// If `out.len() != LEN`.
    fn dequantize(&self, out: &mut [f32]);
    /// The block's f16 scales and minimums (empty for plain floats): they must be
    /// finite, or every value of the block is NaN or infinite.
    fn scales(&self) -> impl Iterator<Item = half::f16> {
        core::iter::empty()
    }
}

/// ggml's `nearest_int`: adding 1.5·2²³ pushes the integer part into the low mantissa
/// bits, which the FPU has rounded half-to-even. Exact for `|v| <= 4194303`. Shared
/// with the runtime's activation quantisers, which must round as ggml does.
#[inline]
pub fn nearest_int(v: f32) -> i32 {
    let biased = (v + 12_582_912.0).to_bits() as i32;
    (biased & 0x007f_ffff) - 0x0040_0000
}

/// `roundf`: halves round away from zero (Rust's `f32::round` needs `std`). Exact for
/// `|v| < 2^23`. Shared with the runtime's activation quantisers.
#[inline]
pub fn round_half_away(v: f32) -> f32 {
    let t = v as i32 as f32; // truncation toward zero
    let frac = v - t;
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// The bytes of one block.
fn bytes_of<B: Block>(b: &B) -> &[u8] {
    // SAFETY: B is plain old data without padding (the `Block` contract), so all
    // size_of::<B>() bytes are initialised.
    unsafe { core::slice::from_raw_parts(b as *const B as *const u8, core::mem::size_of::<B>()) }
}

/// Reads one block from exactly `size_of::<B>()` bytes at any alignment.
///
/// # Panics
/// If `bytes` has another length.
pub fn read_block<B: Block>(bytes: &[u8]) -> B {
    assert_eq!(bytes.len(), core::mem::size_of::<B>());
    // SAFETY: the length was checked, the read is unaligned, and every bit pattern is
    // a valid B (the `Block` contract).
    unsafe { core::ptr::read_unaligned(bytes.as_ptr() as *const B) }
}

/// Reinterprets little-endian block bytes as blocks. `bytes.len()` must be a multiple
/// of the block size; returns `None` if not, or if the pointer is not aligned for `B`.
pub fn as_blocks<B: Block>(bytes: &[u8]) -> Option<&[B]> {
    let size = core::mem::size_of::<B>();
    if bytes.len() % size != 0 || (bytes.as_ptr() as usize) % core::mem::align_of::<B>() != 0 {
        return None;
    }
    // SAFETY: length and alignment were checked just above, and every bit pattern is
    // a valid B (the `Block` contract).
    Some(unsafe { core::slice::from_raw_parts(bytes.as_ptr() as *const B, bytes.len() / size) })
}

struct Quantize<'a> {
    x: &'a [f32],
    out: &'a mut Vec<u8>,
}

impl BlockVisitor for Quantize<'_> {
    type Out = ();
    fn visit<B: Block>(self) {
        for chunk in self.x.chunks_exact(B::LEN) {
            self.out.extend_from_slice(bytes_of(&B::quantize(chunk)));
        }
    }
}

struct Dequantize<'a> {
    bytes: &'a [u8],
    out: &'a mut [f32],
}

impl BlockVisitor for Dequantize<'_> {
    type Out = ();
    fn visit<B: Block>(self) {
        let size = core::mem::size_of::<B>();
        for (chunk, o) in self
            .bytes
            .chunks_exact(size)
            .zip(self.out.chunks_exact_mut(B::LEN))
        {
            // Unaligned read: `bytes` may sit anywhere in a caller's buffer.
            read_block::<B>(chunk).dequantize(o);
        }
    }
}

struct FirstBadScale<'a>(&'a [u8]);

impl BlockVisitor for FirstBadScale<'_> {
    type Out = Option<usize>;
    fn visit<B: Block>(self) -> Option<usize> {
        self.0
            .chunks_exact(core::mem::size_of::<B>())
            .position(|c| read_block::<B>(c).scales().any(|s| !s.is_finite()))
    }
}

/// The index of the first block of `bytes` (whole `dtype` blocks) whose scale or
/// minimum is NaN or infinite: a corrupt block, which would turn a whole row of
/// outputs into NaN. `None` if every scale is finite (always, for plain floats).
pub fn first_bad_scale(dtype: DType, bytes: &[u8]) -> Option<usize> {
    dtype.visit(FirstBadScale(bytes))
}

/// Converts `x` to `dtype`'s bytes (the scalar reference path, little-endian). For
/// block types `x.len()` must be a multiple of the block length; returns `None` if it
/// is not.
pub fn quantize(dtype: DType, x: &[f32]) -> Option<Vec<u8>> {
    let n = dtype.bytes_for(x.len() as u64)? as usize;
    let mut out = Vec::with_capacity(n);
    dtype.visit(Quantize { x, out: &mut out });
    debug_assert_eq!(out.len(), n);
    Some(out)
}

/// Converts `bytes` of `dtype` back to f32 into `out` (the scalar reference path).
/// Returns `None` if `bytes` does not hold exactly `out.len()` elements.
pub fn dequantize(dtype: DType, bytes: &[u8], out: &mut [f32]) -> Option<()> {
    if dtype.bytes_for(out.len() as u64)? != bytes.len() as u64 {
        return None;
    }
    dtype.visit(Dequantize { bytes, out });
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

    /// Round-trip error per dtype, relative to each block's largest magnitude: a
    /// budget a correct quantiser meets and a broken one (wrong bit, wrong scale) does
    /// not. Bit-exactness against ggml is `tests/ggml_blocks.rs`'s job.
    #[test]
    fn round_trip_error_within_budget() {
        // Fixed inputs unless LLMRT_TEST_SEED says otherwise (printed to replay).
        let mut s = std::env::var("LLMRT_TEST_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(7u64);
        std::eprintln!("seed = {s} (set LLMRT_TEST_SEED to replay)");
        let x: Vec<f32> = (0..256 * 9).map(|_| lcg(&mut s) * 3.0).collect();
        for &dt in DType::ALL.iter() {
            let budget = match dt {
                DType::F32 => 0.0,
                DType::F16 => 1e-3,
                DType::BF16 => 8e-3,
                DType::Q8_0 => 1.0 / 127.0,
                DType::Q6_K => 1.0 / 40.0,
                DType::Q4_0 | DType::IQ4_NL | DType::IQ4_XS => 1.0 / 7.0,
                DType::Q4_1 | DType::Q4_K => 1.0 / 12.0,
                DType::Q5_0 => 1.0 / 16.0,
                DType::Q5_1 => 1.0 / 24.0,
                DType::Q5_K => 1.0 / 20.0,
                DType::Q3_K => 1.0 / 3.5,
                DType::Q2_K => 1.0 / 2.0,
            };
            let q = quantize(dt, &x).unwrap();
            assert_eq!(q.len() as u64, dt.bytes_for(x.len() as u64).unwrap());
            let y = dequantize_vec(dt, &q, x.len()).unwrap();
            let len = dt.block_len().max(32);
            for (bx, by) in x.chunks(len).zip(y.chunks(len)) {
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
        assert!(quantize(DType::Q4_K, &[1.0; 255]).is_none());
        assert!(quantize(DType::F16, &[1.0; 31]).is_some());
    }

    #[test]
    fn table_geometry_is_ggml() {
        // ggml's (block length, bytes) per type id, from ggml-common.h.
        for (id, len, bytes) in [
            (0, 1, 4),
            (1, 1, 2),
            (2, 32, 18),
            (3, 32, 20),
            (6, 32, 22),
            (7, 32, 24),
            (8, 32, 34),
            (10, 256, 84),
            (11, 256, 110),
            (12, 256, 144),
            (13, 256, 176),
            (14, 256, 210),
            (20, 32, 18),
            (23, 256, 136),
            (30, 1, 2),
        ] {
            let d = DType::from_u32(id).unwrap();
            assert_eq!((d.block_len(), d.block_bytes()), (len, bytes), "{d}");
            assert_eq!(d.to_u32(), id);
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
        assert_eq!(DType::ALL.len(), 15);
    }
}
