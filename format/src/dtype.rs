//! Tensor element types: the one table that declares each of them.
//!
//! Ids are pinned to ggml's `ggml_type` numbers so that a GGUF tensor's type id
//! means the same here, and quantised blocks are byte-for-byte ggml's. Each row of
//! [`dtypes!`] names a type once: its id, its command-line name and the block struct
//! (in [`crate::quant`]) whose [`Block`] impl gives the block length, the byte size,
//! the reference quantiser and dequantiser, and the activation type that kernels pair
//! it with (ggml's `vec_dot_type`). Adding a type is one row here plus its block.

use crate::error::FormatError;
use crate::quant::{
    Block, BlockIq4Nl, BlockIq4Xs, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K,
    BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0,
};
use half::{bf16, f16};

/// Something to do with the block type of a dtype, chosen at run time: see
/// [`DType::visit`]. Lets generic code over `B: Block` run for a runtime `DType`
/// without a `match` of its own.
pub trait BlockVisitor {
    /// What the visit returns.
    type Out;
    /// Called with `B` = the dtype's block type.
    fn visit<B: Block>(self) -> Self::Out;
}

/// How a kernel quantises the activations it multiplies with weights of a type
/// (ggml's `vec_dot_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActQuant {
    /// Not quantised: float weights multiply f32 activations.
    Float,
    /// ggml's `block_q8_0`: 32 values, an f16 scale.
    Q8_0,
    /// ggml's `block_q8_1`: `block_q8_0` plus `s = d·Σq` (for weight types with a minimum).
    Q8_1,
    /// ggml's `block_q8_K`: 256 values, an f32 scale and sums of each 16.
    Q8K,
}

macro_rules! dtypes {
    ($( $(#[$doc:meta])* $v:ident = $id:literal, $name:literal, $block:ty; )*) => {
        /// A tensor's storage type. The discriminant is the on-disk id (ggml's numbering).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        #[allow(non_camel_case_types)]
        pub enum DType {
            $( $(#[$doc])* $v = $id, )*
        }

        impl DType {
            /// Every dtype, for tests and tables that loop over all of them.
            pub const ALL: [DType; [$( stringify!($v) ),*].len()] = [$( DType::$v ),*];

            /// The dtype with on-disk id `id`.
            pub fn from_u32(id: u32) -> Result<DType, FormatError> {
                match id {
                    $( $id => Ok(DType::$v), )*
                    _ => Err(FormatError::UnknownDType(id)),
                }
            }

            /// Lower-case name as used on the command line (`f32`, `q4_k`, ...).
            pub fn name(self) -> &'static str {
                match self {
                    $( DType::$v => $name, )*
                }
            }

            /// [`DType::name`] as a C string (for the C ABI).
            pub fn c_name(self) -> &'static core::ffi::CStr {
                match self {
                    $( DType::$v => match core::ffi::CStr::from_bytes_with_nul(
                        concat!($name, "\0").as_bytes(),
                    ) {
                        Ok(c) => c,
                        Err(_) => panic!("dtype names have no NUL"),
                    }, )*
                }
            }

            /// Runs `v` with this dtype's block type.
            pub fn visit<V: BlockVisitor>(self, v: V) -> V::Out {
                match self {
                    $( DType::$v => v.visit::<$block>(), )*
                }
            }
        }

        $( const _: () = assert!(<$block as Block>::DTYPE as u32 == $id); )*
    };
}

dtypes! {
    /// IEEE-754 binary32, little-endian.
    F32 = 0, "f32", f32;
    /// IEEE-754 binary16, little-endian.
    F16 = 1, "f16", f16;
    /// Blocks of 32: f16 scale `d`, 16 bytes of 4-bit quants; x = (q - 8)·d.
    Q4_0 = 2, "q4_0", BlockQ4_0;
    /// Blocks of 32: f16 scale `d`, f16 minimum `m`, 16 bytes of 4-bit quants; x = q·d + m.
    Q4_1 = 3, "q4_1", BlockQ4_1;
    /// Blocks of 32: f16 scale `d`, 5-bit quants (4 low bits in nibbles, the 5th in a
    /// 32-bit mask); x = (q - 16)·d.
    Q5_0 = 6, "q5_0", BlockQ5_0;
    /// Blocks of 32: f16 `d` and `m`, 5-bit quants; x = q·d + m.
    Q5_1 = 7, "q5_1", BlockQ5_1;
    /// Blocks of 32: f16 scale `d`, 32 × i8 quants; x = q·d.
    Q8_0 = 8, "q8_0", BlockQ8_0;
    /// Super-blocks of 256: 16 groups of 16 with 4-bit scales and minimums, 2-bit quants.
    Q2_K = 10, "q2_k", BlockQ2K;
    /// Super-blocks of 256: 16 groups of 16 with 6-bit scales, 3-bit quants.
    Q3_K = 11, "q3_k", BlockQ3K;
    /// Super-blocks of 256: 8 groups of 32 with 6-bit scales and minimums, 4-bit quants.
    Q4_K = 12, "q4_k", BlockQ4K;
    /// Super-blocks of 256: 8 groups of 32 with 6-bit scales and minimums, 5-bit quants.
    Q5_K = 13, "q5_k", BlockQ5K;
    /// Super-blocks of 256: 16 groups of 16 with 8-bit scales, 6-bit quants.
    Q6_K = 14, "q6_k", BlockQ6K;
    /// Blocks of 32: f16 scale, 4-bit indices into a fixed non-linear table.
    IQ4_NL = 20, "iq4_nl", BlockIq4Nl;
    /// Super-blocks of 256: 8 groups of 32 with 6-bit scales, 4-bit indices into
    /// IQ4_NL's table.
    IQ4_XS = 23, "iq4_xs", BlockIq4Xs;
    /// bfloat16 (upper half of an f32), little-endian.
    BF16 = 30, "bf16", bf16;
}

struct Geometry;

impl BlockVisitor for Geometry {
    type Out = (usize, usize, ActQuant);
    fn visit<B: Block>(self) -> Self::Out {
        (B::LEN, core::mem::size_of::<B>(), B::ACT)
    }
}

impl DType {
    /// The on-disk id.
    pub fn to_u32(self) -> u32 {
        self as u32
    }

    /// Elements per block (1 for plain floats, 32 or 256 for quantised types).
    #[inline]
    pub fn block_len(self) -> usize {
        self.visit(Geometry).0
    }

    /// Bytes per block.
    #[inline]
    pub fn block_bytes(self) -> usize {
        self.visit(Geometry).1
    }

    /// How kernels quantise the activations multiplied with this type.
    pub fn act_quant(self) -> ActQuant {
        self.visit(Geometry).2
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
