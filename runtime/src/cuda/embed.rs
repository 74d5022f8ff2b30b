//! The token embedding on the GPU (`kernels/embed.cu`): the rows of the embedding matrix
//! for the given tokens, decoded from the matrix's storage type to fp32 as
//! [`crate::Model::embed`] does on the CPU. The matrix is a [`DeviceMatrix`] (the same
//! upload as the matmul's weights, so a tied classifier shares it). Token ids are
//! checked on the host ([`check_tokens`]) before they are uploaded, so a bad id is an
//! error, never an out-of-bounds read.

use super::matmul::DeviceMatrix;
use cudarc::driver::LaunchConfig;
use llm_format::DType;
use llmrt_cuda::launch::{as_i32, ceil_div, check_len, grid_dim, BLOCK};
use llmrt_cuda::{Buffer, CudaError, Gpu, KArg, KernelFile};
use std::format;
use std::vec::Vec;

/// `kernels/embed.cu`.
pub static FILE: KernelFile = KernelFile {
    name: "embed",
    source: include_str!("kernels/embed.cu"),
    functions: &[
        "embed_f32",
        "embed_f16",
        "embed_bf16",
        "embed_q8_0",
        "embed_q4_0",
        "embed_q4_1",
        "embed_q5_0",
        "embed_q5_1",
        "embed_iq4_nl",
        "embed_q2_k",
        "embed_q3_k",
        "embed_q4_k",
        "embed_q5_k",
        "embed_q6_k",
        "embed_iq4_xs",
    ],
    hot: true,
    prelude: super::COMMON,
};

/// The kernel for an embedding matrix stored as `dtype`. Every storage type of the format has
/// one (the match is exhaustive, so a new type must add its kernel); the `Option` is
/// for callers that check a model's types before uploading it.
pub fn kernel(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F32 => "embed_f32",
        DType::F16 => "embed_f16",
        DType::BF16 => "embed_bf16",
        DType::Q8_0 => "embed_q8_0",
        DType::Q4_0 => "embed_q4_0",
        DType::Q4_1 => "embed_q4_1",
        DType::Q5_0 => "embed_q5_0",
        DType::Q5_1 => "embed_q5_1",
        DType::IQ4_NL => "embed_iq4_nl",
        DType::Q2_K => "embed_q2_k",
        DType::Q3_K => "embed_q3_k",
        DType::Q4_K => "embed_q4_k",
        DType::Q5_K => "embed_q5_k",
        DType::Q6_K => "embed_q6_k",
        DType::IQ4_XS => "embed_iq4_xs",
    })
}

/// The launch geometry for `n` tokens of `d` values: grid `(ceil(d / BLOCK), n)`, one
/// thread per output value.
pub fn config(n: usize, d: usize) -> Result<LaunchConfig, CudaError> {
    if n == 0 || d == 0 || n > 65_535 {
        return Err(CudaError::Shape(format!(
            "embedding of {n} tokens of {d}: outside one launch"
        )));
    }
    Ok(LaunchConfig {
        grid_dim: (grid_dim(ceil_div(d, BLOCK as usize), "embed")?, n as u32, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// Checks that every token id is below `vocab` (and `vocab` fits the kernels' `int`):
/// the host-side guard of [`embed`], a pure function so it is tested without a GPU.
pub fn check_tokens(tokens: &[u32], vocab: usize) -> Result<(), CudaError> {
    as_i32("vocab", vocab)?;
    match tokens.iter().position(|&t| t as usize >= vocab) {
        Some(i) => Err(CudaError::Shape(format!(
            "token {} (at {i}) is outside the vocabulary of {vocab}",
            tokens[i]
        ))),
        None => Ok(()),
    }
}

/// `y[i] = E[tokens[i]]` (`y` is `[n, cols]` fp32) for the embedding matrix `table`
/// (`[vocab, d]`) and the `n` ids in `dev_tokens` (device `int`s, checked on the host
/// with [`check_tokens`] before they were written there; the kernel turns an id
/// outside the table into a NaN row, never an out-of-bounds read).
pub fn embed(
    gpu: &Gpu,
    table: &DeviceMatrix,
    n: usize,
    dev_tokens: &Buffer,
    y: &Buffer,
) -> Result<(), CudaError> {
    let d = table.cols;
    check_len("embed tokens", dev_tokens.len_f32(), n)?;
    check_len("embed y", y.len_f32(), n * d)?;
    let name = kernel(table.dtype).ok_or_else(|| {
        CudaError::Shape(format!("no GPU embedding for {} rows", table.dtype.name()))
    })?;
    gpu.launch(
        &FILE,
        &[],
        name,
        config(n, d)?,
        &[
            KArg::Buf(&table.data),
            KArg::Buf(dev_tokens),
            KArg::Buf(y),
            KArg::I32(as_i32("n", n)?),
            KArg::I32(as_i32("d", d)?),
            KArg::I32(as_i32("vocab", table.rows)?),
        ],
    )
}

/// The ids as the kernel reads them (little-endian `int`s), after [`check_tokens`].
pub fn token_bytes(tokens: &[u32], vocab: usize) -> Result<Vec<u8>, CudaError> {
    check_tokens(tokens, vocab)?;
    // Every id is below vocab <= i32::MAX (checked).
    Ok(tokens
        .iter()
        .flat_map(|&t| (t as i32).to_le_bytes())
        .collect())
}
