//! `y = x · Wᵀ` on the GPU for weights in their storage type (`kernels/matmul.cu`),
//! every storage type of the format (floats, the blocks of 32 and the K-quants' and
//! IQ4_XS's super-blocks of 256): the weights uploaded once as the file stores them,
//! fp32 activations.

use cudarc::driver::LaunchConfig;
use llm_format::DType;
use llmrt_cuda::launch::{as_i32, ceil_div, check_len};
use llmrt_cuda::{Buffer, CudaError, Gpu, KArg, KernelFile};
use std::format;
use std::vec::Vec;

/// `kernels/matmul.cu`.
pub static FILE: KernelFile = KernelFile {
    name: "matmul",
    source: include_str!("kernels/matmul.cu"),
    functions: &[
        "matmul_f32",
        "matmul_f16",
        "matmul_bf16",
        "matmul_q8_0",
        "matmul_q4_0",
        "matmul_q4_1",
        "matmul_q5_0",
        "matmul_q5_1",
        "matmul_iq4_nl",
        "matmul_q2_k",
        "matmul_q3_k",
        "matmul_q4_k",
        "matmul_q5_k",
        "matmul_q6_k",
        "matmul_iq4_xs",
    ],
    hot: true,
    prelude: super::COMMON,
};

/// Weight rows per block (one warp each), as `ROWS_PER_BLOCK` in the kernel.
pub const ROWS_PER_BLOCK: usize = 4;
/// Activation rows per block, as `NB` in the kernel: each weight is read once per `NB`.
pub const NB: usize = 8;

/// The kernel for weights stored as `dtype`. Every storage type of the format has
/// one (the match is exhaustive, so a new type must add its kernel); the `Option` is
/// for callers that check a model's types before uploading it.
pub fn kernel(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F32 => "matmul_f32",
        DType::F16 => "matmul_f16",
        DType::BF16 => "matmul_bf16",
        DType::Q8_0 => "matmul_q8_0",
        DType::Q4_0 => "matmul_q4_0",
        DType::Q4_1 => "matmul_q4_1",
        DType::Q5_0 => "matmul_q5_0",
        DType::Q5_1 => "matmul_q5_1",
        DType::IQ4_NL => "matmul_iq4_nl",
        DType::Q2_K => "matmul_q2_k",
        DType::Q3_K => "matmul_q3_k",
        DType::Q4_K => "matmul_q4_k",
        DType::Q5_K => "matmul_q5_k",
        DType::Q6_K => "matmul_q6_k",
        DType::IQ4_XS => "matmul_iq4_xs",
    })
}

/// The launch geometry for `rows` weight rows and `n` activation rows.
pub fn config(rows: usize, n: usize) -> Result<LaunchConfig, CudaError> {
    let (gx, gy) = (ceil_div(rows, ROWS_PER_BLOCK), ceil_div(n, NB));
    if rows == 0 || n == 0 || gx > i32::MAX as usize || gy > 65_535 {
        return Err(CudaError::Shape(format!(
            "matmul of {rows} weight rows by {n} activation rows: outside one launch"
        )));
    }
    Ok(LaunchConfig {
        grid_dim: (gx as u32, gy as u32, 1),
        block_dim: ((ROWS_PER_BLOCK * 32) as u32, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// A weight matrix on the device: `rows × cols` in `dtype`, plain rows.
pub struct DeviceMatrix {
    /// Storage type.
    pub dtype: DType,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// The file's bytes for these rows.
    pub data: Buffer,
}

impl DeviceMatrix {
    /// Uploads `bytes`, the plain rows of a `rows × cols` matrix in `dtype`, checking
    /// that the GPU has a kernel for `dtype` and that the size matches.
    pub fn upload(
        gpu: &Gpu,
        dtype: DType,
        bytes: &[u8],
        rows: usize,
        cols: usize,
    ) -> Result<Self, CudaError> {
        if kernel(dtype).is_none() {
            return Err(CudaError::Shape(format!(
                "no GPU kernel for {} weights yet",
                dtype.name()
            )));
        }
        let want = dtype
            .bytes_for(rows as u64 * cols as u64)
            .filter(|_| cols % dtype.block_len() == 0)
            .ok_or_else(|| {
                CudaError::Shape(format!(
                    "{rows} × {cols} is not whole {} blocks",
                    dtype.name()
                ))
            })?;
        if bytes.len() as u64 != want {
            return Err(CudaError::Shape(format!(
                "{rows} × {cols} {} weights are {want} bytes, not {}",
                dtype.name(),
                bytes.len()
            )));
        }
        let data = gpu.upload(bytes)?;
        Ok(DeviceMatrix {
            dtype,
            rows,
            cols,
            data,
        })
    }
}

/// Where the rows of `y = x · Wᵀ` go ([`matmul_to`]): consecutive ranges of the
/// weight rows, each to its own buffer, so that one launch serves the fused q/k/v or
/// gate/up products, writes keys and values straight into the KV cache, or adds into
/// the residual stream.
#[derive(Clone, Copy, Debug)]
pub struct Dest<'a> {
    /// Up to three `(buffer, rows)` parts in the order of the weight rows; their rows
    /// add up to the matrix's. Part 0 gets `[n, rows₀]`; the others `[n, rowsᵢ]`, or
    /// rows `pos[j]` of `[pos_rows, rowsᵢ]` with `pos`.
    pub parts: &'a [(&'a Buffer, usize)],
    /// Device `int` positions: parts 1 and 2 go to these rows (the KV cache's).
    pub pos: Option<(&'a Buffer, usize)>,
    /// Add to what the buffers hold instead of overwriting it.
    pub accumulate: bool,
}

impl<'a> Dest<'a> {
    /// All rows into `y` (`[n, rows]`), overwritten.
    pub fn to(parts: &'a [(&'a Buffer, usize)]) -> Self {
        Dest {
            parts,
            pos: None,
            accumulate: false,
        }
    }
}

/// `y = x · Wᵀ` for the `n` rows of `x` (`n × cols`) into `y` (`n × rows`).
pub fn matmul(
    gpu: &Gpu,
    w: &DeviceMatrix,
    x: &Buffer,
    n: usize,
    y: &Buffer,
) -> Result<(), CudaError> {
    matmul_to(gpu, w, x, n, Dest::to(&[(y, w.rows)]))
}

/// `x · Wᵀ` for the `n` rows of `x` (`n × cols`), stored as `dst` says.
pub fn matmul_to(
    gpu: &Gpu,
    w: &DeviceMatrix,
    x: &Buffer,
    n: usize,
    dst: Dest<'_>,
) -> Result<(), CudaError> {
    check_len("matmul x", x.len_f32(), n * w.cols)?;
    let name = kernel(w.dtype)
        .ok_or_else(|| CudaError::Shape(format!("no GPU kernel for {} weights", w.dtype.name())))?;
    let parts = dst.parts;
    if parts.is_empty() || parts.len() > 3 || parts.iter().map(|p| p.1).sum::<usize>() != w.rows {
        return Err(CudaError::Shape(format!(
            "matmul of {} rows into parts of {:?} rows",
            w.rows,
            parts.iter().map(|p| p.1).collect::<Vec<_>>()
        )));
    }
    let r1 = parts[0].1;
    let r2 = r1 + parts.get(1).map_or(0, |p| p.1);
    check_len("matmul y", parts[0].0.len_f32(), n * r1)?;
    let (pos, pos_rows) = match dst.pos {
        Some((p, rows)) => {
            check_len("matmul positions", p.len_f32(), n)?;
            (KArg::Buf(p), rows)
        }
        None => (KArg::Null, n),
    };
    for (i, (b, rows)) in parts.iter().enumerate().skip(1) {
        check_len(&format!("matmul part {i}"), b.len_f32(), pos_rows * rows)?;
    }
    let part = |i: usize| parts.get(i).map_or(KArg::Null, |p| KArg::Buf(p.0));
    gpu.launch(
        &FILE,
        &[],
        name,
        config(w.rows, n)?,
        &[
            KArg::Buf(&w.data),
            KArg::Buf(x),
            part(0),
            part(1),
            part(2),
            KArg::I32(as_i32("rows", w.rows)?),
            KArg::I32(as_i32("cols", w.cols)?),
            KArg::I32(as_i32("n", n)?),
            KArg::I32(as_i32("r1", r1)?),
            KArg::I32(as_i32("r2", r2)?),
            pos,
            KArg::I32(as_i32("pos rows", pos_rows)?),
            KArg::I32(i32::from(dst.accumulate)),
        ],
    )
}
