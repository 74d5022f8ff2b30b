//! Launchers of `kernels/bias_grad.cu`: deterministic column sums, used for bias
//! gradients (`db[c] += sum_n dout[n, c]`) and to finish the norms' parameter gradients.

use super::device::CudaDevice;
use super::error::CudaError;
use super::kernels::{GpuFloat, KernelFile, COMMON};
use super::launch::{as_i32, check_len, column_chunks, column_grid, elementwise, Launch};
use cudarc::driver::CudaSlice;

/// `kernels/bias_grad.cu`.
pub const FILE: KernelFile = KernelFile {
    name: "bias_grad",
    source: include_str!("kernels/bias_grad.cu"),
    functions: &["column_sum_partial", "column_sum_finish"],
    hot: true,
    prelude: COMMON,
};

/// `out[c] += sum_k partial[k * stride + c]` over `chunks` partial rows.
pub fn finish<T: GpuFloat>(
    dev: &CudaDevice,
    out: &mut CudaSlice<T>,
    partial: &CudaSlice<f32>,
    offset: usize,
    chunks: usize,
    cols: usize,
    stride: usize,
) -> Result<(), CudaError> {
    check_len("column sum out", out.len(), cols)?;
    check_len(
        "column partials",
        partial.len(),
        offset + (chunks.max(1) - 1) * stride + cols,
    )?;
    let view = partial.slice(offset..);
    let (p, _sync) = cudarc::driver::DevicePtr::device_ptr(&view, dev.stream());
    let l = Launch::new(dev, &FILE, T::PRECISION.variant(), "column_sum_finish")?.ptr(out);
    l.raw(p)
        .i32(as_i32("chunks", chunks)?)
        .i32(as_i32("C", cols)?)
        .i64(stride as i64)
        .run(elementwise(cols)?)
}

/// `dbias[c] += sum_n dout[n, c]` for `dout [rows, cols]`.
pub fn bias_backward<T: GpuFloat>(
    dev: &CudaDevice,
    dbias: &mut CudaSlice<T>,
    dout: &CudaSlice<T>,
    rows: usize,
    cols: usize,
) -> Result<(), CudaError> {
    check_len("bias grad dout", dout.len(), rows * cols)?;
    let (chunks, per) = column_chunks(rows);
    let mut partial = dev.stream().alloc_zeros::<f32>(chunks * cols)?;
    Launch::new(dev, &FILE, T::PRECISION.variant(), "column_sum_partial")?
        .out(&mut partial)
        .ptr(dout)
        .i32(as_i32("rows", rows)?)
        .i32(as_i32("cols", cols)?)
        .i32(as_i32("rows per chunk", per)?)
        .run(column_grid(rows, cols)?)?;
    finish(dev, dbias, &partial, 0, chunks, cols, cols)
}
