//! The CUDA backend's kernel library: CUDA C kernels (`kernels/<op>.cu`), each beside
//! its Rust launcher (`<op>.rs`), compiled at run time by NVRTC for the GPU's own
//! architecture and cached on disk; matrix products through cuBLASLt.
//!
//! Everything is loaded dynamically through `cudarc`, so the trainer builds and runs on
//! machines without CUDA: [`CudaDevice::open`] then returns a one-line
//! [`CudaError::NoDevice`]. Conventions are the CPU trainer's (`format/src/options.rs`):
//! row-major `[B, T, C]`, linear weights `[out, in]`, RoPE on adjacent pairs, GELU tanh,
//! parameter gradients accumulate (+=). Storage is fp32 or bf16 ([`Precision`]), the
//! arithmetic always fp32.

pub mod activation;
pub mod adamw;
pub mod attention;
pub mod backend;
pub mod bench;
pub mod bias_grad;
pub mod cache;
pub mod cast;
pub mod classifier;
pub mod device;
pub mod embedding;
pub mod error;
pub mod grad_norm;
pub mod kernels;
pub mod launch;
pub mod layernorm;
pub mod matmul;
pub mod nvrtc;
pub mod rmsnorm;
pub mod rope;

pub use backend::CudaBackend;
pub use device::CudaDevice;
pub use error::CudaError;
pub use kernels::{GpuFloat, KernelFile, Precision};
pub use nvrtc::Arch;
