//! Tensor element types and their storage geometry.
//!
//! Ids are pinned to ggml's `ggml_type` numbers so that a GGUF tensor's type id
//! means the same here, and quantised blocks are byte-for-byte ggml's.

use crate::error::FormatError;

/// A tensor's storage type. The discriminant is the on-disk id (ggml's numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum DType {
    /// IEEE-754 binary32, little-endian.
    F32 = 0,
    /// IEEE-754 binary16, little-endian.
    F16 = 1,
    /// Blocks of 32: f16 scale `d`, 16 bytes of 4-bit quants; x = (q - 8)·d.
    Q4_0 = 2,
    /// Blocks of 32: f16 scale `d`, f16 minimum `m`, 16 bytes of 4-bit quants; x = q·d + m.
    Q4_1 = 3,
    /// Blocks of 32: f16 scale `d`, 32 × i8 quants; x = q·d.
    Q8_0 = 8,
    /// bfloat16 (upper half of an f32), little-endian.
    BF16 = 30,
}

impl DType {
    /// Every dtype, for tests and tables that loop over all of them.
    pub const ALL: [DType; 6] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
    ];

    /// The dtype with on-disk id `id`.
    pub fn from_u32(id: u32) -> Result<DType, FormatError> {
        Ok(match id {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::Q4_0,
            3 => DType::Q4_1,
            8 => DType::Q8_0,
            30 => DType::BF16,
            _ => return Err(FormatError::UnknownDType(id)),
        })
    }

    /// The on-disk id.
    pub fn to_u32(self) -> u32 {
        self as u32
    }

    /// Elements per block (1 for plain floats).
    pub fn block_len(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 => 32,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => 34,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
        }
    }

    /// True for the block-quantised types.
    pub fn is_quantized(self) -> bool {
        self.block_len() > 1
    }

    /// Bytes taken by `n` elements, or `None` if `n` is not a whole number of blocks
    /// or the size overflows.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let bl = self.block_len() as u64;
        if n % bl != 0 {
            return None;
        }
        (n / bl).checked_mul(self.block_bytes() as u64)
    }

    /// Lower-case name as used on the command line (`f32`, `q4_0`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
            DType::Q4_1 => "q4_1",
        }
    }

    /// Parses a name as printed by [`DType::name`] (case-insensitive).
    pub fn from_name(s: &str) -> Option<DType> {
        DType::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s))
    }
}

impl core::fmt::Display for DType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}
