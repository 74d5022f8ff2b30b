//! CPU matrix kernels: `y = x · Wᵀ` for every weight dtype, with a portable scalar
//! reference and SIMD paths chosen once at run time.
//!
//! * [`matmul_ref`] (module `scalar`) is the reference and the `no_std` fallback.
//! * `avx2` (AVX2 + FMA + F16C), `avx512` (AVX-512 F/BW/VL/DQ + VNNI), their K-quant
//!   halves `avx2_k`/`avx512_k`, and `neon` (aarch64) compute the same functions;
//!   tests force every path the CPU has and compare it with the reference.
//! * Where the CPU has AVX-512 BF16 (or FEAT_BF16 on aarch64), the `avx512` (`neon`)
//!   path multiplies F16 and BF16 weights in prompts with bf16 dot products
//!   (`avx512_bf16`, `neon_bf16`): the activations and
//!   F16 weights are rounded to bf16, a relative error of at most 2⁻⁸ per factor
//!   that the tests bound; [`Cpu::set_f16_exact`] keeps the f32 products.
//! * Quantised weights are never dequantised on the hot path: the activations are
//!   quantised to 8 bits as the weight type's `act_quant` says (ggml's
//!   `vec_dot_type`: `block_q8_0`/`block_q8_1` per 32 values for the 32-blocks,
//!   `block_q8_K` per 256 for the K-quants and IQ4_XS; module `act`) and each block is
//!   an exact integer dot product scaled by the block scales, as ggml's `vec_dot_*`.
//! * [`Cpu`] (module `cpu`) holds the chosen path (`LLMRT_KERNEL` can force one, module
//!   `dispatch`), the activation scratch and (with `std`) a small persistent thread
//!   pool ([`pool`]) that splits the weight rows. Nothing is allocated per call once
//!   the scratch has grown to the largest shape.
//! * `matrix` checks a weight matrix's shape once; `out` holds what the kernels read
//!   and write; `macros` the drivers every path compiles with its own features.

#[macro_use]
mod macros;

mod act;
#[cfg(target_arch = "x86_64")]
mod amx;
mod attend;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_k;
#[cfg(target_arch = "x86_64")]
mod avx2_r16;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_bf16;
#[cfg(target_arch = "x86_64")]
mod avx512_dequant;
#[cfg(target_arch = "x86_64")]
mod avx512_k;
#[cfg(target_arch = "x86_64")]
mod avx512_r16;
#[cfg(target_arch = "x86_64")]
mod avx512_rows16;
mod cpu;
mod dispatch;
#[cfg(target_arch = "x86_64")]
mod marker;
mod matrix;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "aarch64")]
mod neon_bf16;
mod out;
#[cfg(feature = "std")]
pub mod pool;
mod scalar;
mod stream;
mod vecops;

pub(crate) use attend::{scratch_len as attend_scratch_len, Run as AttendRun};
pub(crate) use cpu::part_range;
pub use cpu::Cpu;
pub use dispatch::KernelPath;
pub(crate) use dispatch::VecOps;
use matrix::check_shapes;
pub use matrix::{KernelError, Matrix};
pub(crate) use out::{Acts, OutRows, SharedMut};
pub use scalar::matmul_ref;
pub use stream::stream_sum;
