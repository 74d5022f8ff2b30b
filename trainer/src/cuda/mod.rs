//! The CUDA backend's kernel library: CUDA C kernels (`kernels/<op>.cu`), each beside
//! its Rust launcher (`<op>.rs`), compiled at run time by NVRTC for the GPU's own
//! architecture and cached on disk; matrix products through cuBLASLt.
//!
//! The plumbing under it is the `llmrt-cuda` crate (`cuda/`), shared with the runtime
//! and re-exported here: [`device`] (open a GPU, load modules per file and variant),
//! [`nvrtc`] (find NVRTC, compile, read ptxas's report), [`cache`] (CUBINs on disk),
//! [`error`], and the generic half of [`launch`] (grid sizing and the launch builder,
//! which checks argument kinds against the kernel source).
//!
//! Everything is loaded dynamically through `cudarc`, so the trainer builds and runs on
//! machines without CUDA: [`CudaDevice::open`] then returns a one-line
//! [`CudaError::NoDevice`]. Conventions are the CPU trainer's (`format/src/options.rs`):
//! row-major `[B, T, C]`, linear weights `[out, in]`, RoPE on adjacent pairs, GELU tanh,
//! parameter gradients accumulate (+=). Storage is fp32 or bf16 ([`Precision`], each a
//! build variant of every file, `LLMRT_BF16` = 0 or 1), the arithmetic always fp32.
//!
//! Map: [`kernels`] (the file list, [`kernels::COMMON`], precisions), [`launch`] (the
//! trainer's tiling, bucketing and tables), one launcher per kernel file, [`matmul`]
//! (cuBLASLt), [`backend`] (the trainer's `Backend` trait on all of it, and `--device`
//! selection), [`mod@bench`] (a device-resident GPT-2 step).
//!
//! Environment: `LLMRT_NVRTC_LIB` (path to `libnvrtc.so.13`), `LLMRT_CUDA_INCLUDE`
//! (folder of `cuda_bf16.h`; found beside the library or in the toolkit otherwise),
//! `LLMRT_CUBIN_CACHE` (cache folder). `scripts/install-nvrtc.sh DIR` installs NVRTC
//! from PyPI and prints the exports.
//!
//! Tests: `trainer/tests/cuda_compile.rs` (every kernel through NVRTC for sm_80 and
//! sm_90, no spills in hot kernels; needs only NVRTC), `cuda_emulated.rs` (every kernel
//! run on the CPU through `llmrt_cuda::emu` against the CPU layers; needs only g++),
//! `cuda_kernels.rs` and `cuda_bench.rs` (on a GPU; skipped with the reason otherwise),
//! `scripts/gpu-check.sh` (all of it plus the GPT-2 124M benchmark, on a GPU machine).

pub mod activation;
pub mod adamw;
pub mod attention;
pub mod backend;
pub mod bench;
pub mod bias_grad;
pub mod cast;
pub mod classifier;
pub mod embedding;
pub mod grad_norm;
pub mod kernels;
pub mod launch;
pub mod layernorm;
pub mod matmul;
pub mod rmsnorm;
pub mod rope;

pub use backend::CudaBackend;
pub use kernels::{GpuFloat, KernelFile, Precision};
pub use llmrt_cuda::{cache, device, error, nvrtc};
pub use llmrt_cuda::{Arch, CudaDevice, CudaError};
