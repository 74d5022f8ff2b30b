//! Causal attention on the GPU (`kernels/attention.cu`): each new token's query rows
//! over one layer's fp32 KV cache, with grouped-query heads and a sliding window, and the
//! store of the new keys and values into that cache. The same arithmetic as the CPU's
//! one-query attention (`softmax(scale·K·q)·V` over the keys up to the token's own
//! position), with an online softmax so that shared memory does not grow with the
//! context. Positions are read from a device int array, so a captured CUDA graph can be
//! replayed for the next token with only that array changed.

use cudarc::driver::LaunchConfig;
use llmrt_cuda::launch::{as_i32, check_len, elementwise};
use llmrt_cuda::{Buffer, CudaError, Gpu, KArg, KernelFile};
use std::format;

/// `kernels/attention.cu`.
pub static FILE: KernelFile = KernelFile {
    name: "attention",
    source: include_str!("kernels/attention.cu"),
    functions: &["attention", "kv_store"],
    hot: true,
    prelude: super::COMMON,
};

/// Threads per block of the attention kernel, as `ATT_THREADS` in the kernel.
pub const THREADS: usize = 128;
/// The largest head size the attention kernel takes, as `HD_MAX` in the kernel.
pub const HD_MAX: usize = 256;

/// The head shape of a model's attention: `n_heads` query heads and `n_kv_heads` key
/// and value heads of `hd` values each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heads {
    /// Query heads.
    pub n_heads: usize,
    /// Key and value heads (a divisor of `n_heads`).
    pub n_kv_heads: usize,
    /// Values per head.
    pub hd: usize,
}

impl Heads {
    /// Values per query row: `n_heads · hd`.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.hd
    }

    /// Values per key or value row: `n_kv_heads · hd`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.hd
    }

    /// Checks that the shape is one the kernels take: heads present, `n_kv_heads`
    /// dividing `n_heads`, `1 <= hd <= HD_MAX`.
    pub fn check(&self) -> Result<(), CudaError> {
        let Heads {
            n_heads,
            n_kv_heads,
            hd,
        } = *self;
        if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(CudaError::Shape(format!(
                "{n_heads} query heads over {n_kv_heads} kv heads: not whole groups"
            )));
        }
        if hd == 0 || hd > HD_MAX {
            return Err(CudaError::Shape(format!(
                "head size {hd}: the GPU attention takes 1..={HD_MAX}"
            )));
        }
        Ok(())
    }
}

/// The launch geometry of [`attention`]: one block of [`THREADS`] per (query head,
/// token), grid `(n_heads, n)`.
pub fn config(n_heads: usize, n: usize) -> Result<LaunchConfig, CudaError> {
    if n_heads == 0 || n == 0 || n_heads > i32::MAX as usize || n > 65_535 {
        return Err(CudaError::Shape(format!(
            "attention of {n} tokens by {n_heads} heads: outside one launch"
        )));
    }
    Ok(LaunchConfig {
        grid_dim: (n_heads as u32, n as u32, 1),
        block_dim: (THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// The launch geometry of [`kv_store`]: one thread per stored value (`n · kv_dim`).
pub fn store_config(n: usize, kv_dim: usize) -> Result<LaunchConfig, CudaError> {
    elementwise(n * kv_dim)
}

/// The window as the kernel takes it: `window` keys back including the token's own
/// (`usize::MAX`, or anything past the cache, is no window: `n_ctx`). A window of 0
/// would attend to nothing and is refused.
pub fn window_arg(window: usize, n_ctx: usize) -> Result<i32, CudaError> {
    if window == 0 {
        return Err(CudaError::Shape("attention window of 0 keys".into()));
    }
    as_i32("window", window.min(n_ctx))
}

/// One layer's KV cache on the device: K and V each `n_ctx` rows of `kv_dim` fp32
/// values, row `p` holding position `p`.
pub struct LayerCache<'a> {
    /// Keys, `[n_ctx, kv_dim]`.
    pub k: &'a Buffer,
    /// Values, `[n_ctx, kv_dim]`.
    pub v: &'a Buffer,
    /// Positions the cache holds.
    pub n_ctx: usize,
}

/// `out[i]` = causal attention of the `n` query rows `q` (`[n, q_dim]`) at positions
/// `pos[i]` over `cache`: for each head, `softmax(scale · K · q) · V` over the keys
/// `max(0, pos + 1 - window) ..= pos` of its kv head (`h / (n_heads / n_kv_heads)`),
/// `window = usize::MAX` for none. A position outside the cache gives a NaN row, not an
/// out-of-bounds read.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    gpu: &Gpu,
    heads: Heads,
    cache: &LayerCache<'_>,
    q: &Buffer,
    pos: &Buffer,
    n: usize,
    window: usize,
    scale: f32,
    out: &Buffer,
) -> Result<(), CudaError> {
    heads.check()?;
    let (qd, kvd) = (heads.q_dim(), heads.kv_dim());
    check_len("attention q", q.len_f32(), n * qd)?;
    check_len("attention out", out.len_f32(), n * qd)?;
    check_len("attention pos", pos.len_f32(), n)?;
    check_len("attention k cache", cache.k.len_f32(), cache.n_ctx * kvd)?;
    check_len("attention v cache", cache.v.len_f32(), cache.n_ctx * kvd)?;
    let cfg = config(heads.n_heads, n)?;
    gpu.launch(
        &FILE,
        &[],
        "attention",
        cfg,
        &[
            KArg::Buf(out),
            KArg::Buf(q),
            KArg::Buf(cache.k),
            KArg::Buf(cache.v),
            KArg::Buf(pos),
            KArg::I32(as_i32("n", n)?),
            KArg::I32(as_i32("n_heads", heads.n_heads)?),
            KArg::I32(as_i32("n_kv_heads", heads.n_kv_heads)?),
            KArg::I32(as_i32("hd", heads.hd)?),
            KArg::I32(as_i32("n_ctx", cache.n_ctx)?),
            KArg::I32(window_arg(window, cache.n_ctx)?),
            KArg::F32(scale),
        ],
    )
}

/// Stores the `n` new key and value rows (`[n, kv_dim]` each) at their positions
/// `pos[i]` in one layer's cache (`[n_ctx, kv_dim]` each). A position outside the cache
/// is not stored.
#[allow(clippy::too_many_arguments)]
pub fn kv_store(
    gpu: &Gpu,
    k_cache: &Buffer,
    v_cache: &Buffer,
    n_ctx: usize,
    k: &Buffer,
    v: &Buffer,
    pos: &Buffer,
    n: usize,
    kv_dim: usize,
) -> Result<(), CudaError> {
    check_len("kv store k", k.len_f32(), n * kv_dim)?;
    check_len("kv store v", v.len_f32(), n * kv_dim)?;
    check_len("kv store pos", pos.len_f32(), n)?;
    check_len("k cache", k_cache.len_f32(), n_ctx * kv_dim)?;
    check_len("v cache", v_cache.len_f32(), n_ctx * kv_dim)?;
    gpu.launch(
        &FILE,
        &[],
        "kv_store",
        store_config(n, kv_dim)?,
        &[
            KArg::Buf(k_cache),
            KArg::Buf(v_cache),
            KArg::Buf(k),
            KArg::Buf(v),
            KArg::Buf(pos),
            KArg::I32(as_i32("n", n)?),
            KArg::I32(as_i32("kv_dim", kv_dim)?),
            KArg::I32(as_i32("n_ctx", n_ctx)?),
        ],
    )
}
