//! The runtime's GPU kernels (feature `cuda`, std only): CUDA C files in `kernels/`,
//! each beside its Rust launcher, compiled at run time by NVRTC for the device's own
//! architecture and cached on disk through the plumbing the trainer shares
//! (`llmrt-cuda`: device, NVRTC, cache, checked launches, the CPU emulator).
//!
//! Weights stay in the `.llm` file's storage types and block layouts on the device
//! (plain rows: an `r16` tensor is de-interleaved once at upload), activations are
//! fp32, arithmetic fp32. Everything is loaded dynamically, so a build with this
//! feature runs where there is no driver and says so in one line
//! ([`llmrt_cuda::CudaError::NoDevice`]).
//!
//! Map: [`matmul`] (`y = x · Wᵀ` for every storage type of the format: floats, the
//! blocks of 32 and the super-blocks of 256 (K-quants, IQ4_XS); one warp per weight row,
//! each weight read once per 8 activation rows); [`embed`] (token rows of the embedding
//! matrix in any storage type of the format, ids checked on the host); [`rows`]
//! (RMSNorm, LayerNorm, the per-head `q_norm`/`k_norm`, residual and bias adds, the
//! embedding scale); [`act`] (SwiGLU, GeGLU, GELU, ReLU); [`rope`] (rotary embedding of
//! q and k, sinusoidal and learned position codes); [`attention`] (causal GQA attention
//! over one layer's fp32 KV cache with an online softmax, sliding window, and the store
//! of new keys and values). Positions and tokens are read from device int arrays, so a
//! captured graph replays for the next token. [`forward`] is the model's pass on all
//! of them ([`GpuContext`]: weights uploaded once, the KV cache on the device, the
//! last row's logits back), written against [`llmrt_cuda::Gpu`] so that it runs on a
//! GPU or on the emulator alike. [`decoder`] makes it a [`crate::generate::Decoder`]
//! ([`GpuDecoder`]: the tokens held and the last logits on the host, the CPU
//! context's input checks and errors), so [`crate::generate()`] runs on it, and checks
//! a model's storage types against the kernels before anything is uploaded
//! ([`decoder::check_model`]).
//!
//! Tests: `runtime/tests/cuda_emulated.rs` runs the matmul on the CPU through the
//! emulator against an f64 reference on the dequantised weights, and
//! `cuda_emulated_ops.rs` the other kernels against `crate::ops` or an f64 reference;
//! `cuda_compile.rs` compiles every file for sm_80 and sm_90 and fails on register
//! spills; `tests/gpu_forward.rs` (the suite) runs whole models through the emulator
//! against the CPU context.

pub mod act;
pub mod attention;
pub mod decoder;
pub mod embed;
pub mod forward;
pub mod matmul;
pub mod rope;
pub mod rows;

pub use decoder::GpuDecoder;
pub use forward::GpuContext;
use llmrt_cuda::KernelFile;
/// The device plumbing, for callers that open a GPU ([`llmrt_cuda::Gpu::cuda`]).
pub use llmrt_cuda::{CudaError, Gpu};

/// `kernels/common.cuh`, prepended to every runtime kernel file.
pub const COMMON: &str = include_str!("kernels/common.cuh");

/// Every runtime kernel file, for the compile test.
pub const ALL: &[&KernelFile] = &[
    &matmul::FILE,
    &embed::FILE,
    &rows::FILE,
    &act::FILE,
    &rope::FILE,
    &attention::FILE,
];
