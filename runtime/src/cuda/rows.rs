//! The row-wise operations between the matrix products on the GPU (`kernels/rows.cu`):
//! RMSNorm and LayerNorm of whole rows, RMSNorm of each head's slice (`q_norm`,
//! `k_norm`), the residual add, a bias row, and a scalar scale (the embedding scale). Each
//! is the function of [`crate::ops`] of the same name computed on fp32 device rows, so
//! that the GPU path agrees with the CPU's to rounding.

use cudarc::driver::LaunchConfig;
use llmrt_cuda::launch::{as_i32, check_len, elementwise, grid_dim, warp_per_row};
use llmrt_cuda::{Buffer, CudaError, Gpu, KArg, KernelFile};
use std::format;

/// `kernels/rows.cu`.
pub static FILE: KernelFile = KernelFile {
    name: "rows",
    source: include_str!("kernels/rows.cu"),
    functions: &[
        "rmsnorm",
        "layernorm",
        "rmsnorm_heads",
        "add",
        "add_bias",
        "scale",
    ],
    hot: true,
    prelude: super::COMMON,
};

/// The most threads of a norm's block (one block per row).
pub const NORM_THREADS: usize = 512;

/// The launch geometry of [`rmsnorm`] and [`layernorm`]: one block per row of `d`
/// values, `d` rounded up to whole warps but at most [`NORM_THREADS`] threads.
pub fn norm_config(n: usize, d: usize) -> Result<LaunchConfig, CudaError> {
    if n == 0 || d == 0 {
        return Err(CudaError::Shape(format!("norm of {n} rows of {d}: empty")));
    }
    let threads = d.next_multiple_of(32).min(NORM_THREADS);
    Ok(LaunchConfig {
        grid_dim: (grid_dim(n, "norm rows")?, 1, 1),
        block_dim: (threads as u32, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// The launch geometry of [`rmsnorm_heads`]: one warp per piece.
pub fn heads_config(pieces: usize) -> Result<LaunchConfig, CudaError> {
    warp_per_row(pieces)
}

/// The launch geometry of the element-wise kernels ([`add`], [`add_bias`], [`scale`]):
/// one thread per element.
pub fn config(count: usize) -> Result<LaunchConfig, CudaError> {
    elementwise(count)
}

/// Checks the buffers of a norm of `n` rows of `w.len()` values.
fn check_norm(out: &Buffer, x: &Buffer, w: &Buffer, n: usize) -> Result<usize, CudaError> {
    let d = w.len_f32();
    check_len("norm x", x.len_f32(), n * d)?;
    check_len("norm out", out.len_f32(), n * d)?;
    Ok(d)
}

/// `out = x / sqrt(mean(x²) + eps) · w` for each of the `n` rows of `x` (rows of
/// `w.len()` values), as [`crate::ops::rmsnorm`].
pub fn rmsnorm(
    gpu: &Gpu,
    out: &Buffer,
    x: &Buffer,
    w: &Buffer,
    n: usize,
    eps: f32,
) -> Result<(), CudaError> {
    let d = check_norm(out, x, w, n)?;
    gpu.launch(
        &FILE,
        &[],
        "rmsnorm",
        norm_config(n, d)?,
        &[
            KArg::Buf(out),
            KArg::Buf(x),
            KArg::Buf(w),
            KArg::I32(as_i32("n", n)?),
            KArg::I32(as_i32("d", d)?),
            KArg::F32(eps),
        ],
    )
}

/// `out = (x - mean)/sqrt(var + eps) · w + b` for each of the `n` rows of `x` (rows of
/// `w.len()` values; no bias when `b` is `None`), as [`crate::ops::layernorm`].
pub fn layernorm(
    gpu: &Gpu,
    out: &Buffer,
    x: &Buffer,
    w: &Buffer,
    b: Option<&Buffer>,
    n: usize,
    eps: f32,
) -> Result<(), CudaError> {
    let d = check_norm(out, x, w, n)?;
    if let Some(b) = b {
        check_len("layernorm bias", b.len_f32(), d)?;
    }
    gpu.launch(
        &FILE,
        &[],
        "layernorm",
        norm_config(n, d)?,
        &[
            KArg::Buf(out),
            KArg::Buf(x),
            KArg::Buf(w),
            b.map_or(KArg::Null, KArg::Buf),
            KArg::I32(as_i32("n", n)?),
            KArg::I32(as_i32("d", d)?),
            KArg::F32(eps),
        ],
    )
}

/// RMSNorm in place of each `w.len()`-wide piece of the first `n · row` values of `x`:
/// the heads of `n` q (or k) rows of `row` values, as [`crate::ops::rmsnorm_in_place`]
/// does per row (`q_norm`, `k_norm`). `row` must be whole heads.
pub fn rmsnorm_heads(
    gpu: &Gpu,
    x: &Buffer,
    w: &Buffer,
    n: usize,
    row: usize,
    eps: f32,
) -> Result<(), CudaError> {
    let hd = w.len_f32();
    if hd == 0 || row % hd != 0 {
        return Err(CudaError::Shape(format!(
            "head norm of rows of {row} by heads of {hd}: not whole heads"
        )));
    }
    check_len("head norm x", x.len_f32(), n * row)?;
    let pieces = n * row / hd;
    gpu.launch(
        &FILE,
        &[],
        "rmsnorm_heads",
        heads_config(pieces)?,
        &[
            KArg::Buf(x),
            KArg::Buf(w),
            KArg::I32(as_i32("pieces", pieces)?),
            KArg::I32(as_i32("hd", hd)?),
            KArg::F32(eps),
        ],
    )
}

/// `x[..count] += y[..count]` (the residual add), as [`crate::ops::add`].
pub fn add(gpu: &Gpu, x: &Buffer, y: &Buffer, count: usize) -> Result<(), CudaError> {
    check_len("add x", x.len_f32(), count)?;
    check_len("add y", y.len_f32(), count)?;
    gpu.launch(
        &FILE,
        &[],
        "add",
        config(count)?,
        &[
            KArg::Buf(x),
            KArg::Buf(y),
            KArg::I32(as_i32("count", count)?),
        ],
    )
}

/// Adds the row `b` to each of the `n` rows of `x` (rows of `b.len()` values), as
/// [`crate::ops::add_bias`].
pub fn add_bias(gpu: &Gpu, x: &Buffer, b: &Buffer, n: usize) -> Result<(), CudaError> {
    let d = b.len_f32();
    if d == 0 {
        return Err(CudaError::Shape("empty bias row".into()));
    }
    check_len("bias x", x.len_f32(), n * d)?;
    gpu.launch(
        &FILE,
        &[],
        "add_bias",
        config(n * d)?,
        &[
            KArg::Buf(x),
            KArg::Buf(b),
            KArg::I32(as_i32("count", n * d)?),
            KArg::I32(as_i32("d", d)?),
        ],
    )
}

/// `x[..count] *= s` (the embedding scale).
pub fn scale(gpu: &Gpu, x: &Buffer, s: f32, count: usize) -> Result<(), CudaError> {
    check_len("scale x", x.len_f32(), count)?;
    gpu.launch(
        &FILE,
        &[],
        "scale",
        config(count)?,
        &[
            KArg::Buf(x),
            KArg::F32(s),
            KArg::I32(as_i32("count", count)?),
        ],
    )
}
