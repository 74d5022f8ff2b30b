//! Position codes on the GPU (`kernels/rope.cu`): the rotary embedding of the q and k
//! rows, the sinusoidal code and the learned position rows added to the embeddings.
//! Positions come from a device int array, so that a captured CUDA graph replays with
//! new positions; the tables the angles are made from (RoPE's inverse frequencies,
//! [`crate::ops::rope_freqs`] or [`crate::ops::yarn_freqs`], and the sinusoidal
//! divisors, [`sinusoidal_divisors`]) are computed on the host as the CPU computes them
//! and uploaded once, so the angles are the CPU's to the bit.

use super::attention::Heads;
use cudarc::driver::LaunchConfig;
use llmrt_cuda::launch::{as_i32, check_len, elementwise};
use llmrt_cuda::{Buffer, CudaError, Gpu, KArg, KernelFile};
use std::format;
use std::vec::Vec;

/// `kernels/rope.cu`.
pub static FILE: KernelFile = KernelFile {
    name: "rope",
    source: include_str!("kernels/rope.cu"),
    functions: &["rope", "add_sinusoidal", "add_pos_rows"],
    hot: true,
    prelude: super::COMMON,
};

/// The launch geometry of [`rope`]: one thread per pair of the `n` q and k rows.
pub fn config(n: usize, heads: Heads) -> Result<LaunchConfig, CudaError> {
    elementwise(n * (heads.q_dim() / 2 + heads.kv_dim() / 2))
}

/// The launch geometry of [`add_sinusoidal`]: one thread per pair of `n` rows of `d`.
pub fn sinusoidal_config(n: usize, d: usize) -> Result<LaunchConfig, CudaError> {
    elementwise(n * (d / 2))
}

/// The launch geometry of [`add_pos_rows`]: one thread per value of `n` rows of `d`.
pub fn pos_rows_config(n: usize, d: usize) -> Result<LaunchConfig, CudaError> {
    elementwise(n * d)
}

/// Rotates the `n` q rows (`[n, q_dim]`) and k rows (`[n, kv_dim]`) in place, each head's
/// adjacent pairs by the angles `pos[i] · freqs[j]` with cosine and sine scaled by
/// `scale` (YaRN's attention factor, else 1): [`crate::ops::rope_table`] then
/// [`crate::ops::rope`] on each row. `freqs` holds the `hd / 2` inverse frequencies.
/// With `k_cache_rows = Some(n_ctx)`, `k` is the KV cache (`[n_ctx, kv_dim]`) and token
/// `i`'s key row is row `pos[i]` (where the fused q/k/v product stored it).
#[allow(clippy::too_many_arguments)]
pub fn rope(
    gpu: &Gpu,
    heads: Heads,
    freqs: &Buffer,
    scale: f32,
    pos: &Buffer,
    n: usize,
    q: &Buffer,
    k: &Buffer,
    k_cache_rows: Option<usize>,
) -> Result<(), CudaError> {
    heads.check()?;
    if heads.hd % 2 != 0 {
        return Err(CudaError::Shape(format!(
            "RoPE on heads of {}: odd head size",
            heads.hd
        )));
    }
    check_len("rope freqs", freqs.len_f32(), heads.hd / 2)?;
    check_len("rope pos", pos.len_f32(), n)?;
    check_len("rope q", q.len_f32(), n * heads.q_dim())?;
    let k_rows = k_cache_rows.unwrap_or(n);
    check_len("rope k", k.len_f32(), k_rows * heads.kv_dim())?;
    gpu.launch(
        &FILE,
        &[],
        "rope",
        config(n, heads)?,
        &[
            KArg::Buf(q),
            KArg::Buf(k),
            KArg::Buf(freqs),
            KArg::Buf(pos),
            KArg::I32(as_i32("n", n)?),
            KArg::I32(as_i32("q_dim", heads.q_dim())?),
            KArg::I32(as_i32("kv_dim", heads.kv_dim())?),
            KArg::I32(as_i32("hd", heads.hd)?),
            KArg::F32(scale),
            KArg::I32(as_i32("k cache rows", k_cache_rows.unwrap_or(0))?),
        ],
    )
}

/// The divisors of the sinusoidal code of rows of `d`: `10000^(2i/d)` for `i < d/2`, as
/// [`crate::ops::add_sinusoidal`] computes them, to upload once for [`add_sinusoidal`].
pub fn sinusoidal_divisors(d: usize) -> Vec<f32> {
    (0..d / 2)
        .map(|i| crate::math::powf(10000.0, (2 * i) as f32 / d as f32))
        .collect()
}

/// Adds the sinusoidal code of position `pos[i]` to each of the `n` rows of `x` (rows
/// of `d`), as [`crate::ops::add_sinusoidal`]; `div` is [`sinusoidal_divisors`]`(d)`.
pub fn add_sinusoidal(
    gpu: &Gpu,
    x: &Buffer,
    div: &Buffer,
    pos: &Buffer,
    n: usize,
    d: usize,
) -> Result<(), CudaError> {
    check_len("sinusoidal divisors", div.len_f32(), d / 2)?;
    check_len("sinusoidal pos", pos.len_f32(), n)?;
    check_len("sinusoidal x", x.len_f32(), n * d)?;
    gpu.launch(
        &FILE,
        &[],
        "add_sinusoidal",
        sinusoidal_config(n, d)?,
        &[
            KArg::Buf(x),
            KArg::Buf(div),
            KArg::Buf(pos),
            KArg::I32(as_i32("n", n)?),
            KArg::I32(as_i32("d", d)?),
        ],
    )
}

/// Adds the learned position row `pos[i]` of `table` (`[max_len, d]`, fp32) to each of
/// the `n` rows of `x` (rows of `d`). A position outside the table makes its row NaN
/// instead of reading outside it.
pub fn add_pos_rows(
    gpu: &Gpu,
    x: &Buffer,
    table: &Buffer,
    max_len: usize,
    pos: &Buffer,
    n: usize,
    d: usize,
) -> Result<(), CudaError> {
    check_len("position table", table.len_f32(), max_len * d)?;
    check_len("position rows pos", pos.len_f32(), n)?;
    check_len("position rows x", x.len_f32(), n * d)?;
    gpu.launch(
        &FILE,
        &[],
        "add_pos_rows",
        pos_rows_config(n, d)?,
        &[
            KArg::Buf(x),
            KArg::Buf(table),
            KArg::Buf(pos),
            KArg::I32(as_i32("n", n)?),
            KArg::I32(as_i32("d", d)?),
            KArg::I32(as_i32("max_len", max_len)?),
        ],
    )
}
