//! Views of the tensors of a parsed file: the directory entry ([`TensorInfo`]) and a
//! borrowed view of its bytes ([`Tensor`]). Nothing here copies weights except
//! [`Tensor::to_f32_vec`].

use crate::dtype::DType;
use crate::layout::{self, Layout};
use crate::quant::{self, Block};
use alloc::vec::Vec;
use half::{bf16, f16};

/// One entry of the tensor directory, as read and checked by the reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo<'a> {
    /// Name, borrowed from the file.
    pub name: &'a str,
    /// Storage type.
    pub dtype: DType,
    /// Arrangement of the rows ([`Layout::Rows`] unless the file says otherwise).
    pub layout: Layout,
    /// Shape, outermost dimension first (`[rows, cols]` for a matrix).
    pub shape: Vec<usize>,
    /// Byte offset relative to the start of the data section (a multiple of 64).
    pub offset: u64,
    /// Byte length: `dtype.bytes_for(product of shape)`.
    pub size: u64,
    /// xxh3-64 of the tensor's bytes.
    pub checksum: u64,
}

impl TensorInfo<'_> {
    /// Number of elements (the product of the shape; checked not to overflow at parse).
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A tensor's bytes, borrowed from the file, with its type and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<'a> {
    /// Name, borrowed from the file.
    pub name: &'a str,
    /// Storage type.
    pub dtype: DType,
    /// Arrangement of the rows in `data`.
    pub layout: Layout,
    /// Shape, outermost dimension first.
    pub shape: Vec<usize>,
    /// Exactly `dtype.bytes_for(product of shape)` bytes, in `layout`.
    pub data: &'a [u8],
}

impl<'a> Tensor<'a> {
    /// Number of elements.
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// The last (innermost, contiguous) dimension; `in` for a `[out, in]` matrix.
    pub fn cols(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    /// The product of every dimension but the last (1 for a vector).
    pub fn rows(&self) -> usize {
        let n = self.shape.len().saturating_sub(1);
        self.shape[..n].iter().product()
    }

    /// Bytes of one row (`cols` elements).
    pub fn row_bytes(&self) -> usize {
        self.cols() / self.dtype.block_len() * self.dtype.block_bytes()
    }

    /// The bytes as plain rows: borrowed when the layout is [`Layout::Rows`], else a
    /// de-interleaved copy.
    pub fn rows_data(&self) -> alloc::borrow::Cow<'a, [u8]> {
        match self.layout {
            Layout::Rows => alloc::borrow::Cow::Borrowed(self.data),
            l => alloc::borrow::Cow::Owned(layout::to_rows(l, self.data, self.row_bytes())),
        }
    }

    /// The data as `f32`s, in place: `None` unless the dtype is F32, the rows are
    /// plain ([`Layout::Rows`]), the target is little-endian and the bytes are 4-byte
    /// aligned (they are when the file buffer is; see [`crate::AlignedBuf`]).
    pub fn as_f32(&self) -> Option<&'a [f32]> {
        if self.dtype != DType::F32 || self.layout != Layout::Rows || cfg!(target_endian = "big") {
            return None;
        }
        cast_slice::<f32>(self.data)
    }

    /// The data as `f16`s in place (F16 only; same conditions as [`Tensor::as_f32`]).
    pub fn as_f16(&self) -> Option<&'a [f16]> {
        if self.dtype != DType::F16 || self.layout != Layout::Rows || cfg!(target_endian = "big") {
            return None;
        }
        cast_slice::<f16>(self.data)
    }

    /// The data as `bf16`s in place (BF16 only; same conditions as [`Tensor::as_f32`]).
    pub fn as_bf16(&self) -> Option<&'a [bf16]> {
        if self.dtype != DType::BF16 || self.layout != Layout::Rows || cfg!(target_endian = "big") {
            return None;
        }
        cast_slice::<bf16>(self.data)
    }

    /// The data as quantisation blocks of type `B` in place: `None` unless the dtype
    /// is `B::DTYPE`, the rows are plain and the bytes are 2-byte aligned.
    pub fn as_blocks<B: Block>(&self) -> Option<&'a [B]> {
        if self.dtype != B::DTYPE || self.layout != Layout::Rows || cfg!(target_endian = "big") {
            return None;
        }
        quant::as_blocks::<B>(self.data)
    }

    /// A dequantised copy in plain row-major order (the scalar reference path),
    /// `n_elements()` long.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        // The reader checked data.len() == dtype.bytes_for(n), so this cannot fail;
        // an empty vector would mean a Tensor built by hand with inconsistent fields.
        quant::dequantize_vec(self.dtype, &self.rows_data(), self.n_elements()).unwrap_or_default()
    }
}

/// Reinterprets bytes as `T` (a plain 2- or 4-byte float type) if aligned and whole.
fn cast_slice<T: Copy>(bytes: &[u8]) -> Option<&[T]> {
    let size = core::mem::size_of::<T>();
    if bytes.len() % size != 0 || (bytes.as_ptr() as usize) % core::mem::align_of::<T>() != 0 {
        return None;
    }
    // SAFETY: length and alignment checked above; T is only ever f32, f16 or bf16,
    // for which every bit pattern is a valid value, and the borrow keeps `bytes` alive.
    Some(unsafe { core::slice::from_raw_parts(bytes.as_ptr() as *const T, bytes.len() / size) })
}
