//! Launchers of `kernels/layernorm.cu`. Shapes: inp/out `[N, C]` (N = B*T), weight/bias
//! `[C]`, mean/rstd `[N]` fp32. Parameter gradients accumulate (+=); dinp is written or,
//! with `accumulate`, added to (the residual stream's gradient).

use super::bias_grad;
use super::device::CudaDevice;
use super::error::CudaError;
use super::kernels::{GpuFloat, KernelFile, COMMON};
use super::launch::{as_i32, check_len, column_chunks, column_grid, warp_per_row, Launch};
use cudarc::driver::CudaSlice;

/// `kernels/layernorm.cu`.
pub const FILE: KernelFile = KernelFile {
    name: "layernorm",
    source: include_str!("kernels/layernorm.cu"),
    functions: &[
        "layernorm_forward",
        "fused_residual_layernorm_forward",
        "layernorm_backward_input",
        "layernorm_backward_params_partial",
    ],
    hot: true,
    prelude: COMMON,
};

fn check<T>(n: usize, c: usize, bufs: &[(&str, &CudaSlice<T>, usize)]) -> Result<(), CudaError> {
    for (name, b, want) in bufs {
        check_len(name, b.len(), *want)?;
    }
    as_i32("N", n)?;
    as_i32("C", c)?;
    Ok(())
}

/// `out = (inp - mean) * rstd * weight + bias`, saving mean and rstd.
#[allow(clippy::too_many_arguments)]
pub fn forward<T: GpuFloat>(
    dev: &CudaDevice,
    out: &mut CudaSlice<T>,
    mean: &mut CudaSlice<f32>,
    rstd: &mut CudaSlice<f32>,
    inp: &CudaSlice<T>,
    weight: &CudaSlice<T>,
    bias: Option<&CudaSlice<T>>,
    n: usize,
    c: usize,
    eps: f32,
) -> Result<(), CudaError> {
    check(
        n,
        c,
        &[
            ("ln out", out, n * c),
            ("ln inp", inp, n * c),
            ("ln weight", weight, c),
        ],
    )?;
    check_len("ln mean", mean.len(), n)?;
    check_len("ln rstd", rstd.len(), n)?;
    if let Some(b) = bias {
        check_len("ln bias", b.len(), c)?;
    }
    Launch::new(dev, &FILE, T::PRECISION.variant(), "layernorm_forward")?
        .ptr(out)
        .ptr(mean)
        .ptr(rstd)
        .ptr(inp)
        .ptr(weight)
        .opt(bias)
        .i32(n as i32)
        .i32(c as i32)
        .f32(eps)
        .run(warp_per_row(n)?)
}

/// `residual = inp1 + inp2`, then `out = layernorm(residual)` in one pass.
#[allow(clippy::too_many_arguments)]
pub fn fused_residual_forward<T: GpuFloat>(
    dev: &CudaDevice,
    residual: &mut CudaSlice<T>,
    out: &mut CudaSlice<T>,
    mean: &mut CudaSlice<f32>,
    rstd: &mut CudaSlice<f32>,
    inp1: &CudaSlice<T>,
    inp2: &CudaSlice<T>,
    weight: &CudaSlice<T>,
    bias: Option<&CudaSlice<T>>,
    n: usize,
    c: usize,
    eps: f32,
) -> Result<(), CudaError> {
    check(
        n,
        c,
        &[
            ("ln residual", residual, n * c),
            ("ln out", out, n * c),
            ("ln inp1", inp1, n * c),
            ("ln inp2", inp2, n * c),
            ("ln weight", weight, c),
        ],
    )?;
    check_len("ln mean", mean.len(), n)?;
    check_len("ln rstd", rstd.len(), n)?;
    if let Some(b) = bias {
        check_len("ln bias", b.len(), c)?;
    }
    Launch::new(
        dev,
        &FILE,
        T::PRECISION.variant(),
        "fused_residual_layernorm_forward",
    )?
    .ptr(residual)
    .ptr(out)
    .ptr(mean)
    .ptr(rstd)
    .ptr(inp1)
    .ptr(inp2)
    .ptr(weight)
    .opt(bias)
    .i32(n as i32)
    .i32(c as i32)
    .f32(eps)
    .run(warp_per_row(n)?)
}

/// The backward pass: dinp (= or += by `accumulate`), `dweight += sum dout * xhat`,
/// `dbias += sum dout` (when given).
#[allow(clippy::too_many_arguments)]
pub fn backward<T: GpuFloat>(
    dev: &CudaDevice,
    dinp: &mut CudaSlice<T>,
    dweight: &mut CudaSlice<T>,
    dbias: Option<&mut CudaSlice<T>>,
    dout: &CudaSlice<T>,
    inp: &CudaSlice<T>,
    weight: &CudaSlice<T>,
    mean: &CudaSlice<f32>,
    rstd: &CudaSlice<f32>,
    n: usize,
    c: usize,
    accumulate: bool,
) -> Result<(), CudaError> {
    check(
        n,
        c,
        &[
            ("ln dinp", dinp, n * c),
            ("ln dweight", dweight, c),
            ("ln dout", dout, n * c),
            ("ln inp", inp, n * c),
            ("ln weight", weight, c),
        ],
    )?;
    check_len("ln mean", mean.len(), n)?;
    check_len("ln rstd", rstd.len(), n)?;
    Launch::new(
        dev,
        &FILE,
        T::PRECISION.variant(),
        "layernorm_backward_input",
    )?
    .ptr(dinp)
    .ptr(dout)
    .ptr(inp)
    .ptr(weight)
    .ptr(mean)
    .ptr(rstd)
    .i32(n as i32)
    .i32(c as i32)
    .i32(i32::from(accumulate))
    .run(warp_per_row(n)?)?;
    let (chunks, per) = column_chunks(n);
    let mut partial = dev.stream().alloc_zeros::<f32>(chunks * 2 * c)?;
    Launch::new(
        dev,
        &FILE,
        T::PRECISION.variant(),
        "layernorm_backward_params_partial",
    )?
    .out(&mut partial)
    .ptr(dout)
    .ptr(inp)
    .ptr(mean)
    .ptr(rstd)
    .i32(n as i32)
    .i32(c as i32)
    .i32(as_i32("rows per chunk", per)?)
    .run(column_grid(n, c)?)?;
    bias_grad::finish(dev, dweight, &partial, 0, chunks, c, 2 * c)?;
    if let Some(db) = dbias {
        check_len("ln dbias", db.len(), c)?;
        bias_grad::finish(dev, db, &partial, c, chunks, c, 2 * c)?;
    }
    Ok(())
}
