//! Launchers of `kernels/activation.cu`: GELU (tanh), ReLU and SwiGLU, forward and
//! backward, element-wise over `n` elements (gradients written, or added with
//! `accumulate`).

use super::device::CudaDevice;
use super::error::CudaError;
use super::kernels::{GpuFloat, KernelFile, COMMON};
use super::launch::{check_len, elementwise, Launch};
use cudarc::driver::CudaSlice;

/// `kernels/activation.cu`.
pub const FILE: KernelFile = KernelFile {
    name: "activation",
    source: include_str!("kernels/activation.cu"),
    functions: &[
        "gelu_forward",
        "gelu_backward",
        "relu_forward",
        "relu_backward",
        "swiglu_forward",
        "swiglu_backward",
    ],
    hot: true,
    prelude: COMMON,
};

/// A single-input activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// GPT-2's tanh-approximated GELU.
    Gelu,
    /// max(x, 0).
    Relu,
}

impl Activation {
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Activation::Gelu => ("gelu_forward", "gelu_backward"),
            Activation::Relu => ("relu_forward", "relu_backward"),
        }
    }
}

/// `out = act(inp)` over `n` elements.
pub fn forward<T: GpuFloat>(
    dev: &CudaDevice,
    act: Activation,
    out: &mut CudaSlice<T>,
    inp: &CudaSlice<T>,
    n: usize,
) -> Result<(), CudaError> {
    check_len("act out", out.len(), n)?;
    check_len("act inp", inp.len(), n)?;
    Launch::new(dev, &FILE, T::PRECISION.variant(), act.names().0)?
        .ptr(out)
        .ptr(inp)
        .i64(n as i64)
        .run(elementwise(n)?)
}

/// `dinp (= or +=) dout * act'(inp)`.
pub fn backward<T: GpuFloat>(
    dev: &CudaDevice,
    act: Activation,
    dinp: &mut CudaSlice<T>,
    inp: &CudaSlice<T>,
    dout: &CudaSlice<T>,
    n: usize,
    accumulate: bool,
) -> Result<(), CudaError> {
    check_len("act dinp", dinp.len(), n)?;
    check_len("act inp", inp.len(), n)?;
    check_len("act dout", dout.len(), n)?;
    Launch::new(dev, &FILE, T::PRECISION.variant(), act.names().1)?
        .ptr(dinp)
        .ptr(inp)
        .ptr(dout)
        .i64(n as i64)
        .i32(i32::from(accumulate))
        .run(elementwise(n)?)
}

/// `out = silu(gate) * up`.
pub fn swiglu_forward<T: GpuFloat>(
    dev: &CudaDevice,
    out: &mut CudaSlice<T>,
    gate: &CudaSlice<T>,
    up: &CudaSlice<T>,
    n: usize,
) -> Result<(), CudaError> {
    check_len("swiglu out", out.len(), n)?;
    check_len("swiglu gate", gate.len(), n)?;
    check_len("swiglu up", up.len(), n)?;
    Launch::new(dev, &FILE, T::PRECISION.variant(), "swiglu_forward")?
        .ptr(out)
        .ptr(gate)
        .ptr(up)
        .i64(n as i64)
        .run(elementwise(n)?)
}

/// `dgate (= or +=) dout * up * silu'(gate)`, `dup (= or +=) dout * silu(gate)`.
#[allow(clippy::too_many_arguments)]
pub fn swiglu_backward<T: GpuFloat>(
    dev: &CudaDevice,
    dgate: &mut CudaSlice<T>,
    dup: &mut CudaSlice<T>,
    gate: &CudaSlice<T>,
    up: &CudaSlice<T>,
    dout: &CudaSlice<T>,
    n: usize,
    accumulate: bool,
) -> Result<(), CudaError> {
    for (name, len) in [
        ("swiglu dgate", dgate.len()),
        ("swiglu dup", dup.len()),
        ("swiglu gate", gate.len()),
        ("swiglu up", up.len()),
        ("swiglu dout", dout.len()),
    ] {
        check_len(name, len, n)?;
    }
    Launch::new(dev, &FILE, T::PRECISION.variant(), "swiglu_backward")?
        .ptr(dgate)
        .ptr(dup)
        .ptr(gate)
        .ptr(up)
        .ptr(dout)
        .i64(n as i64)
        .i32(i32::from(accumulate))
        .run(elementwise(n)?)
}
