//! CUDA plumbing shared by the trainer (`llm-train`) and the runtime (`llmrt`), so that
//! both drive their GPU kernels the same way instead of each keeping a copy:
//!
//! * [`source`]: a kernel file as data ([`KernelFile`]: CUDA C text, its functions and a
//!   shared header), the macro definitions it is compiled with ([`Variant`]), and the
//!   parameter kinds read from a kernel's source signature;
//! * [`nvrtc`]: finding NVRTC at run time, compiling a file to CUBIN for one
//!   architecture ([`Arch`]), reading ptxas's resource report;
//! * [`cache`]: compiled CUBINs on disk;
//! * [`device`]: opening a GPU ([`CudaDevice`]) and loading modules per (file, variant);
//! * [`launch`]: grid sizing and the launch builder, which checks the argument kinds
//!   against the kernel's source before launching;
//! * [`gpu`]: [`Gpu`], one interface over a CUDA device and the CPU emulator (untyped
//!   [`Buffer`]s, checked launches), so the runtime's whole GPU forward pass is tested
//!   without a GPU;
//! * [`error`]: [`CudaError`], a one-line typed value for every failure;
//! * `emu` (feature `emu`): runs kernel files on the CPU (g++ and a small emulator
//!   header), to test the kernels' arithmetic and indexing without a GPU.
//!
//! Everything CUDA is loaded dynamically through `cudarc` (driver, NVRTC, cuBLASLt), so
//! binaries build without a CUDA toolkit and run on machines without a driver:
//! [`CudaDevice::open`] then returns [`CudaError::NoDevice`] instead of failing to start.
//!
//! Environment: `LLMRT_NVRTC_LIB` (path to `libnvrtc.so.13`), `LLMRT_CUDA_INCLUDE`
//! (folder of `cuda_bf16.h`; found beside the library or in the toolkit otherwise),
//! `LLMRT_CUBIN_CACHE` (cache folder). `scripts/install-nvrtc.sh DIR` installs NVRTC
//! from PyPI and prints the exports.

pub mod cache;
pub mod device;
#[cfg(feature = "emu")]
pub mod emu;
pub mod error;
pub mod gpu;
pub mod launch;
pub mod nvrtc;
pub mod source;

pub use device::CudaDevice;
pub use error::CudaError;
pub use gpu::{Buffer, Gpu, Graph, KArg};
pub use nvrtc::Arch;
pub use source::{KernelFile, Variant};
