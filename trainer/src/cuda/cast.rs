//! Launchers of `kernels/cast.cu`: fp32 ↔ bf16 on the device (round to nearest even).

use super::device::CudaDevice;
use super::error::CudaError;
use super::kernels::{KernelFile, Precision, COMMON};
use super::launch::{check_len, elementwise, Launch};
use cudarc::driver::CudaSlice;
use half::bf16;

/// `kernels/cast.cu`.
pub const FILE: KernelFile = KernelFile {
    name: "cast",
    source: include_str!("kernels/cast.cu"),
    functions: &["cast_f32_to_bf16", "cast_bf16_to_f32"],
    hot: false,
    prelude: COMMON,
};

/// `out = bf16(inp)`.
pub fn f32_to_bf16(
    dev: &CudaDevice,
    out: &mut CudaSlice<bf16>,
    inp: &CudaSlice<f32>,
) -> Result<(), CudaError> {
    let n = inp.len();
    check_len("cast out", out.len(), n)?;
    Launch::new(dev, &FILE, Precision::F32.variant(), "cast_f32_to_bf16")?
        .ptr(out)
        .ptr(inp)
        .i64(n as i64)
        .run(elementwise(n)?)
}

/// `out = f32(inp)`.
pub fn bf16_to_f32(
    dev: &CudaDevice,
    out: &mut CudaSlice<f32>,
    inp: &CudaSlice<bf16>,
) -> Result<(), CudaError> {
    let n = inp.len();
    check_len("cast out", out.len(), n)?;
    Launch::new(dev, &FILE, Precision::F32.variant(), "cast_bf16_to_f32")?
        .ptr(out)
        .ptr(inp)
        .i64(n as i64)
        .run(elementwise(n)?)
}
