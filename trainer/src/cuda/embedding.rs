//! Launchers of `kernels/embedding.cu`: token (+ learned position) embedding forward and
//! its gradients. Shapes: tokens `[B*T]`, wte `[V, C]`, wpe `[max_len, C]`, out `[B*T, C]`.

use super::device::CudaDevice;
use super::error::CudaError;
use super::kernels::{GpuFloat, KernelFile, COMMON};
use super::launch::{as_i32, check_len, check_tokens, elementwise, Launch, TokenBuckets, BLOCK};
use cudarc::driver::{CudaSlice, LaunchConfig};

/// `kernels/embedding.cu`.
pub const FILE: KernelFile = KernelFile {
    name: "embedding",
    source: include_str!("kernels/embedding.cu"),
    functions: &[
        "embedding_forward",
        "embedding_backward_pos",
        "embedding_backward_tok",
    ],
    hot: false,
    prelude: COMMON,
};

/// The shape of one embedding call.
#[derive(Clone, Copy, Debug)]
pub struct EmbeddingShape {
    /// Batch size B.
    pub batch: usize,
    /// Sequence length T (≤ rows of wpe).
    pub seq: usize,
    /// Width C.
    pub channels: usize,
    /// Vocabulary size V (rows of wte).
    pub vocab: usize,
}

/// `out[b,t] = wte[tokens[b,t]] + wpe[t]` (no `wpe`: token embedding only). `tokens` is
/// the device copy of `host_tokens`, which are checked against the vocabulary here.
pub fn forward<T: GpuFloat>(
    dev: &CudaDevice,
    out: &mut CudaSlice<T>,
    tokens: &CudaSlice<i32>,
    host_tokens: &[i32],
    wte: &CudaSlice<T>,
    wpe: Option<&CudaSlice<T>>,
    s: EmbeddingShape,
) -> Result<(), CudaError> {
    let bt = s.batch * s.seq;
    check_len("embedding tokens", host_tokens.len(), bt)?;
    check_len("embedding device tokens", tokens.len(), bt)?;
    check_tokens(&host_tokens[..bt], s.vocab, "token")?;
    check_len("embedding out", out.len(), bt * s.channels)?;
    check_len("wte", wte.len(), s.vocab * s.channels)?;
    if let Some(p) = wpe {
        check_len("wpe", p.len(), s.seq * s.channels)?;
    }
    Launch::new(dev, &FILE, T::PRECISION.variant(), "embedding_forward")?
        .ptr(out)
        .ptr(tokens)
        .ptr(wte)
        .opt(wpe)
        .i32(as_i32("B*T", bt)?)
        .i32(as_i32("T", s.seq)?)
        .i32(as_i32("C", s.channels)?)
        .run(elementwise(bt * s.channels)?)
}

/// `dwpe[t] += sum_b dout[b,t]`.
pub fn backward_pos<T: GpuFloat>(
    dev: &CudaDevice,
    dwpe: &mut CudaSlice<T>,
    dout: &CudaSlice<T>,
    s: EmbeddingShape,
) -> Result<(), CudaError> {
    check_len("dwpe", dwpe.len(), s.seq * s.channels)?;
    check_len("embedding dout", dout.len(), s.batch * s.seq * s.channels)?;
    Launch::new(dev, &FILE, T::PRECISION.variant(), "embedding_backward_pos")?
        .ptr(dwpe)
        .ptr(dout)
        .i32(as_i32("B", s.batch)?)
        .i32(as_i32("T", s.seq)?)
        .i32(as_i32("C", s.channels)?)
        .run(elementwise(s.seq * s.channels)?)
}

/// `dwte[tok] += sum of dout over the positions holding tok`, deterministic: the host
/// buckets positions by token (`host_tokens`, checked here) and uploads the buckets.
pub fn backward_tok<T: GpuFloat>(
    dev: &CudaDevice,
    dwte: &mut CudaSlice<T>,
    dout: &CudaSlice<T>,
    host_tokens: &[i32],
    s: EmbeddingShape,
) -> Result<(), CudaError> {
    let bt = s.batch * s.seq;
    check_len("embedding tokens", host_tokens.len(), bt)?;
    check_len("dwte", dwte.len(), s.vocab * s.channels)?;
    check_len("embedding dout", dout.len(), bt * s.channels)?;
    let b = TokenBuckets::build(&host_tokens[..bt], s.vocab)?;
    let st = dev.stream();
    let order = st.clone_htod(&b.order)?;
    let start = st.clone_htod(&b.start)?;
    let token = st.clone_htod(&b.token)?;
    let cfg = LaunchConfig {
        grid_dim: (
            u32::try_from(b.token.len())
                .map_err(|_| CudaError::Shape("too many distinct tokens".into()))?,
            u32::try_from(s.channels.div_ceil(BLOCK as usize))
                .map_err(|_| CudaError::Shape("C too large".into()))?,
            1,
        ),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    Launch::new(dev, &FILE, T::PRECISION.variant(), "embedding_backward_tok")?
        .ptr(dwte)
        .ptr(dout)
        .ptr(&order)
        .ptr(&start)
        .ptr(&token)
        .i32(as_i32("C", s.channels)?)
        .run(cfg)
}
