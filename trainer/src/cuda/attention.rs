//! Launchers of `kernels/attention.cu`: causal flash-style attention with GQA.
//! Shapes: q/dq `[B, T, H*hd]`, k/v/dk/dv `[B, T, KVH*hd]`, out/dout `[B, T, H*hd]`,
//! lse `[B, H, T]` fp32 (saved by the forward pass for the backward pass).

use super::device::CudaDevice;
use super::error::CudaError;
use super::kernels::{GpuFloat, KernelFile, COMMON};
use super::launch::{as_i32, check_len, AttnGeometry, Launch, BLOCK};
use cudarc::driver::{CudaSlice, LaunchConfig};

/// `kernels/attention.cu`.
pub const FILE: KernelFile = KernelFile {
    name: "attention",
    source: include_str!("kernels/attention.cu"),
    functions: &[
        "attention_forward",
        "attention_backward_preprocess",
        "attention_backward_dq",
        "attention_backward_dkv",
    ],
    hot: true,
    prelude: COMMON,
};

/// The shape of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    /// Batch size B.
    pub batch: usize,
    /// Sequence length T.
    pub seq: usize,
    /// Query heads H.
    pub heads: usize,
    /// Key/value heads (divides H).
    pub kv_heads: usize,
    /// Head size hd.
    pub head_dim: usize,
}

impl AttnShape {
    fn check(&self) -> Result<AttnGeometry, CudaError> {
        if self.kv_heads == 0 || self.heads % self.kv_heads != 0 {
            return Err(CudaError::Shape(format!(
                "attention: {} heads is not a multiple of {} kv heads",
                self.heads, self.kv_heads
            )));
        }
        as_i32(
            "B*T*H*hd",
            self.batch * self.seq * self.heads * self.head_dim,
        )?;
        AttnGeometry::new(self.head_dim)
    }
    fn q_len(&self) -> usize {
        self.batch * self.seq * self.heads * self.head_dim
    }
    fn kv_len(&self) -> usize {
        self.batch * self.seq * self.kv_heads * self.head_dim
    }
    fn lse_len(&self) -> usize {
        self.batch * self.heads * self.seq
    }
}

/// `out = softmax(q k^T / sqrt(hd), causal) v`, saving `lse`.
pub fn forward<T: GpuFloat>(
    dev: &CudaDevice,
    out: &mut CudaSlice<T>,
    lse: &mut CudaSlice<f32>,
    q: &CudaSlice<T>,
    k: &CudaSlice<T>,
    v: &CudaSlice<T>,
    s: AttnShape,
) -> Result<(), CudaError> {
    let g = s.check()?;
    check_len("attn out", out.len(), s.q_len())?;
    check_len("attn q", q.len(), s.q_len())?;
    check_len("attn k", k.len(), s.kv_len())?;
    check_len("attn v", v.len(), s.kv_len())?;
    check_len("attn lse", lse.len(), s.lse_len())?;
    let (qs, kvs) = (
        (s.heads * s.head_dim) as i32,
        (s.kv_heads * s.head_dim) as i32,
    );
    Launch::new(dev, &FILE, T::PRECISION.variant(), "attention_forward")?
        .ptr(out)
        .ptr(lse)
        .ptr(q)
        .ptr(k)
        .ptr(v)
        .i32(s.seq as i32)
        .i32(s.heads as i32)
        .i32(s.kv_heads as i32)
        .i32(s.head_dim as i32)
        .i32(g.group as i32)
        .i32(g.tile as i32)
        .i32(qs)
        .i32(kvs)
        .i32(qs)
        .f32(1.0 / (s.head_dim as f32).sqrt())
        .run(g.config(s.seq, s.heads, s.batch, g.smem_forward())?)
}

/// The backward pass: `dq`, `dk`, `dv` written (=), or added to with `accumulate`, from
/// `dout`, the forward's inputs, its output and `lse`.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: GpuFloat>(
    dev: &CudaDevice,
    dq: &mut CudaSlice<T>,
    dk: &mut CudaSlice<T>,
    dv: &mut CudaSlice<T>,
    dout: &CudaSlice<T>,
    q: &CudaSlice<T>,
    k: &CudaSlice<T>,
    v: &CudaSlice<T>,
    out: &CudaSlice<T>,
    lse: &CudaSlice<f32>,
    s: AttnShape,
    accumulate: bool,
) -> Result<(), CudaError> {
    let g = s.check()?;
    for (name, len) in [
        ("attn dq", dq.len()),
        ("attn dout", dout.len()),
        ("attn q", q.len()),
        ("attn out", out.len()),
    ] {
        check_len(name, len, s.q_len())?;
    }
    for (name, len) in [
        ("attn dk", dk.len()),
        ("attn dv", dv.len()),
        ("attn k", k.len()),
        ("attn v", v.len()),
    ] {
        check_len(name, len, s.kv_len())?;
    }
    check_len("attn lse", lse.len(), s.lse_len())?;
    let (qs, kvs) = (
        (s.heads * s.head_dim) as i32,
        (s.kv_heads * s.head_dim) as i32,
    );
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    let mut d = dev.stream().alloc_zeros::<f32>(s.lse_len())?;
    let rows = s.lse_len();
    let per_block = (BLOCK / 32) as usize;
    let pre = LaunchConfig {
        grid_dim: (
            u32::try_from(rows.div_ceil(per_block))
                .map_err(|_| CudaError::Shape("attention rows too many".into()))?,
            1,
            1,
        ),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    Launch::new(
        dev,
        &FILE,
        T::PRECISION.variant(),
        "attention_backward_preprocess",
    )?
    .out(&mut d)
    .ptr(out)
    .ptr(dout)
    .i32(s.batch as i32)
    .i32(s.seq as i32)
    .i32(s.heads as i32)
    .i32(s.head_dim as i32)
    .i32(qs)
    .run(pre)?;
    Launch::new(dev, &FILE, T::PRECISION.variant(), "attention_backward_dq")?
        .ptr(dq)
        .ptr(dout)
        .ptr(q)
        .ptr(k)
        .ptr(v)
        .ptr(lse)
        .ptr(&d)
        .i32(s.seq as i32)
        .i32(s.heads as i32)
        .i32(s.kv_heads as i32)
        .i32(s.head_dim as i32)
        .i32(g.group as i32)
        .i32(g.tile as i32)
        .i32(qs)
        .i32(kvs)
        .i32(qs)
        .f32(scale)
        .i32(i32::from(accumulate))
        .run(g.config(s.seq, s.heads, s.batch, g.smem_forward())?)?;
    Launch::new(dev, &FILE, T::PRECISION.variant(), "attention_backward_dkv")?
        .ptr(dk)
        .ptr(dv)
        .ptr(dout)
        .ptr(q)
        .ptr(k)
        .ptr(v)
        .ptr(lse)
        .ptr(&d)
        .i32(s.seq as i32)
        .i32(s.heads as i32)
        .i32(s.kv_heads as i32)
        .i32(s.head_dim as i32)
        .i32(g.group as i32)
        .i32(g.tile as i32)
        .i32(qs)
        .i32(kvs)
        .i32(qs)
        .f32(scale)
        .i32(i32::from(accumulate))
        .run(g.config(s.seq, s.kv_heads, s.batch, g.smem_dkv())?)
}
