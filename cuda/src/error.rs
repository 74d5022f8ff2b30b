//! The error type of the CUDA plumbing: every failure, from a missing driver to a kernel
//! that does not compile, is a typed value with a one-line message, never a panic.

use std::fmt;

/// Everything that can go wrong in CUDA: driver, NVRTC, cuBLASLt, arguments, cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaError {
    /// `libcuda` could not be loaded or no device is visible; the text says which.
    NoDevice(String),
    /// `libnvrtc` could not be loaded; the text lists where it was looked for.
    NoNvrtc(String),
    /// A call into the CUDA driver failed.
    Driver(String),
    /// A kernel file did not compile; `log` is NVRTC's log.
    Compile {
        /// The kernel file (`attention`, `layernorm`, ...).
        kernel: String,
        /// NVRTC's program log.
        log: String,
    },
    /// A cuBLASLt call failed (or the library is missing).
    Blas(String),
    /// Arguments that do not fit together (shapes, lengths, ranges); the text names them.
    Shape(String),
    /// Reading or writing the on-disk kernel cache failed.
    Cache(String),
    /// A configuration that the memory estimate says does not fit, refused before
    /// the first allocation.
    OutOfMemory {
        /// What was being sized.
        what: String,
        /// Bytes the estimate needs.
        needed: usize,
        /// Bytes free on the device.
        free: usize,
    },
}

impl fmt::Display for CudaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CudaError::NoDevice(m) => write!(f, "no CUDA GPU/driver found: {m}"),
            CudaError::NoNvrtc(m) => write!(f, "NVRTC not found: {m}"),
            CudaError::Driver(m) => write!(f, "CUDA driver error: {m}"),
            CudaError::Compile { kernel, log } => {
                write!(f, "kernel file {kernel}.cu failed to compile: {log}")
            }
            CudaError::Blas(m) => write!(f, "cuBLASLt error: {m}"),
            CudaError::Shape(m) => write!(f, "bad CUDA kernel arguments: {m}"),
            CudaError::Cache(m) => write!(f, "kernel cache error: {m}"),
            CudaError::OutOfMemory { what, needed, free } => write!(
                f,
                "{what} needs about {:.2} GiB of GPU memory, {:.2} GiB are free",
                *needed as f64 / (1u64 << 30) as f64,
                *free as f64 / (1u64 << 30) as f64
            ),
        }
    }
}

impl std::error::Error for CudaError {}

impl From<cudarc::driver::DriverError> for CudaError {
    fn from(e: cudarc::driver::DriverError) -> Self {
        CudaError::Driver(e.to_string())
    }
}

impl From<cudarc::cublaslt::result::CublasError> for CudaError {
    fn from(e: cudarc::cublaslt::result::CublasError) -> Self {
        CudaError::Blas(e.to_string())
    }
}
