//! The MLP activations on the GPU (`kernels/act.cu`): SwiGLU, GeGLU, GELU (tanh) and
//! ReLU on fp32 device rows, each written as the CPU's ([`crate::ops`], and SwiGLU as
//! the vector loops' `swiglu`), so that the two paths agree to rounding.

use cudarc::driver::LaunchConfig;
use llmrt_cuda::launch::{as_i32, check_len, elementwise};
use llmrt_cuda::{Buffer, CudaError, Gpu, KArg, KernelFile};

/// `kernels/act.cu`.
pub static FILE: KernelFile = KernelFile {
    name: "act",
    source: include_str!("kernels/act.cu"),
    functions: &["swiglu", "geglu", "gelu", "relu"],
    hot: true,
    prelude: super::COMMON,
};

/// The launch geometry of every activation: one thread per element.
pub fn config(count: usize) -> Result<LaunchConfig, CudaError> {
    elementwise(count)
}

/// A gated activation's kernel: `h = h · act(g)` over `count` values.
fn gated(gpu: &Gpu, name: &str, h: &Buffer, g: &Buffer, count: usize) -> Result<(), CudaError> {
    check_len("activation h", h.len_f32(), count)?;
    check_len("activation gate", g.len_f32(), count)?;
    gpu.launch(
        &FILE,
        &[],
        name,
        config(count)?,
        &[
            KArg::Buf(h),
            KArg::Buf(g),
            KArg::I32(as_i32("count", count)?),
        ],
    )
}

/// An in-place activation's kernel over `count` values.
fn in_place(gpu: &Gpu, name: &str, x: &Buffer, count: usize) -> Result<(), CudaError> {
    check_len("activation x", x.len_f32(), count)?;
    gpu.launch(
        &FILE,
        &[],
        name,
        config(count)?,
        &[KArg::Buf(x), KArg::I32(as_i32("count", count)?)],
    )
}

/// SwiGLU: `h[i] = h[i] · g[i]/(1 + e^-g[i])` for `i < count` (the CPU's `swiglu`).
pub fn swiglu(gpu: &Gpu, h: &Buffer, g: &Buffer, count: usize) -> Result<(), CudaError> {
    gated(gpu, "swiglu", h, g, count)
}

/// GeGLU: `h[i] = h[i] · gelu(g[i])` for `i < count`, as [`crate::ops::geglu`] (which
/// also overwrites the gate with its GELU; here the gate is left as it is).
pub fn geglu(gpu: &Gpu, h: &Buffer, g: &Buffer, count: usize) -> Result<(), CudaError> {
    gated(gpu, "geglu", h, g, count)
}

/// GELU (tanh approximation) in place on `x[..count]`, as [`crate::ops::gelu`].
pub fn gelu(gpu: &Gpu, x: &Buffer, count: usize) -> Result<(), CudaError> {
    in_place(gpu, "gelu", x, count)
}

/// ReLU in place on `x[..count]`, as [`crate::ops::relu`].
pub fn relu(gpu: &Gpu, x: &Buffer, count: usize) -> Result<(), CudaError> {
    in_place(gpu, "relu", x, count)
}
