//! Launchers of `kernels/rmsnorm.cu`. Shapes: inp/out `[N, C]`, weight `[C]`, rstd `[N]`
//! fp32. dweight accumulates (+=); dinp is written or, with `accumulate`, added to.

use super::bias_grad;
use super::device::CudaDevice;
use super::error::CudaError;
use super::kernels::{GpuFloat, KernelFile, COMMON};
use super::launch::{as_i32, check_len, column_chunks, column_grid, warp_per_row, Launch};
use cudarc::driver::CudaSlice;

/// `kernels/rmsnorm.cu`.
pub const FILE: KernelFile = KernelFile {
    name: "rmsnorm",
    source: include_str!("kernels/rmsnorm.cu"),
    functions: &[
        "rmsnorm_forward",
        "fused_residual_rmsnorm_forward",
        "rmsnorm_backward_input",
        "rmsnorm_backward_params_partial",
    ],
    hot: true,
    prelude: COMMON,
};

/// `out = inp * rstd * weight`, saving rstd.
#[allow(clippy::too_many_arguments)]
pub fn forward<T: GpuFloat>(
    dev: &CudaDevice,
    out: &mut CudaSlice<T>,
    rstd: &mut CudaSlice<f32>,
    inp: &CudaSlice<T>,
    weight: &CudaSlice<T>,
    n: usize,
    c: usize,
    eps: f32,
) -> Result<(), CudaError> {
    check_len("rms out", out.len(), n * c)?;
    check_len("rms inp", inp.len(), n * c)?;
    check_len("rms weight", weight.len(), c)?;
    check_len("rms rstd", rstd.len(), n)?;
    Launch::new(dev, &FILE, T::PRECISION.variant(), "rmsnorm_forward")?
        .ptr(out)
        .ptr(rstd)
        .ptr(inp)
        .ptr(weight)
        .i32(as_i32("N", n)?)
        .i32(as_i32("C", c)?)
        .f32(eps)
        .run(warp_per_row(n)?)
}

/// `residual = inp1 + inp2`, then `out = rmsnorm(residual)` in one pass.
#[allow(clippy::too_many_arguments)]
pub fn fused_residual_forward<T: GpuFloat>(
    dev: &CudaDevice,
    residual: &mut CudaSlice<T>,
    out: &mut CudaSlice<T>,
    rstd: &mut CudaSlice<f32>,
    inp1: &CudaSlice<T>,
    inp2: &CudaSlice<T>,
    weight: &CudaSlice<T>,
    n: usize,
    c: usize,
    eps: f32,
) -> Result<(), CudaError> {
    for (name, len) in [
        ("rms residual", residual.len()),
        ("rms out", out.len()),
        ("rms inp1", inp1.len()),
        ("rms inp2", inp2.len()),
    ] {
        check_len(name, len, n * c)?;
    }
    check_len("rms weight", weight.len(), c)?;
    check_len("rms rstd", rstd.len(), n)?;
    Launch::new(
        dev,
        &FILE,
        T::PRECISION.variant(),
        "fused_residual_rmsnorm_forward",
    )?
    .ptr(residual)
    .ptr(out)
    .ptr(rstd)
    .ptr(inp1)
    .ptr(inp2)
    .ptr(weight)
    .i32(as_i32("N", n)?)
    .i32(as_i32("C", c)?)
    .f32(eps)
    .run(warp_per_row(n)?)
}

/// The backward pass: dinp (= or += by `accumulate`), `dweight += sum dout * xhat`.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: GpuFloat>(
    dev: &CudaDevice,
    dinp: &mut CudaSlice<T>,
    dweight: &mut CudaSlice<T>,
    dout: &CudaSlice<T>,
    inp: &CudaSlice<T>,
    weight: &CudaSlice<T>,
    rstd: &CudaSlice<f32>,
    n: usize,
    c: usize,
    accumulate: bool,
) -> Result<(), CudaError> {
    check_len("rms dinp", dinp.len(), n * c)?;
    check_len("rms dout", dout.len(), n * c)?;
    check_len("rms inp", inp.len(), n * c)?;
    check_len("rms dweight", dweight.len(), c)?;
    check_len("rms weight", weight.len(), c)?;
    check_len("rms rstd", rstd.len(), n)?;
    let (ni, ci) = (as_i32("N", n)?, as_i32("C", c)?);
    Launch::new(dev, &FILE, T::PRECISION.variant(), "rmsnorm_backward_input")?
        .ptr(dinp)
        .ptr(dout)
        .ptr(inp)
        .ptr(weight)
        .ptr(rstd)
        .i32(ni)
        .i32(ci)
        .i32(i32::from(accumulate))
        .run(warp_per_row(n)?)?;
    let (chunks, per) = column_chunks(n);
    let mut partial = dev.stream().alloc_zeros::<f32>(chunks * c)?;
    Launch::new(
        dev,
        &FILE,
        T::PRECISION.variant(),
        "rmsnorm_backward_params_partial",
    )?
    .out(&mut partial)
    .ptr(dout)
    .ptr(inp)
    .ptr(rstd)
    .i32(ni)
    .i32(ci)
    .i32(as_i32("rows per chunk", per)?)
    .run(column_grid(n, c)?)?;
    bias_grad::finish(dev, dweight, &partial, 0, chunks, c, c)
}
