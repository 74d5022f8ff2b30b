//! One marker type per weight dtype, shared by the x86-64 ISA files (the NEON path
//! has no per-type traits): each path implements
//! its own traits (`QuantBlock`, `KQuant`, its float loader) for these, so the same
//! name means the same dtype everywhere.

/// f32 weights.
pub(crate) struct F32;
/// f16 weights.
pub(crate) struct F16;
/// bf16 weights.
pub(crate) struct BF16;
/// Q8_0 blocks.
pub(crate) struct Q8_0;
/// Q4_0 blocks.
pub(crate) struct Q4_0;
/// Q4_1 blocks.
pub(crate) struct Q4_1;
/// Q5_0 blocks.
pub(crate) struct Q5_0;
/// Q5_1 blocks.
pub(crate) struct Q5_1;
/// IQ4_NL blocks.
pub(crate) struct Iq4Nl;
/// Q2_K super-blocks.
pub(crate) struct Q2K;
/// Q3_K super-blocks.
pub(crate) struct Q3K;
/// Q4_K super-blocks.
pub(crate) struct Q4K;
/// Q5_K super-blocks.
pub(crate) struct Q5K;
/// Q6_K super-blocks.
pub(crate) struct Q6K;
/// IQ4_XS super-blocks.
pub(crate) struct Iq4Xs;
