//! Launchers of `kernels/rope.cu`. x `[B, T, heads, head_dim]`; the cos/sin tables
//! `[max_len, head_dim/2]` come from [`RopeTables::new`] (f64 on the host, uploaded once).

use super::device::CudaDevice;
use super::error::CudaError;
use super::kernels::{GpuFloat, KernelFile, COMMON};
use super::launch::{as_i32, check_len, elementwise, rope_tables, Launch};
use crate::layers::rope::Rope;
use cudarc::driver::CudaSlice;

/// `kernels/rope.cu`.
pub const FILE: KernelFile = KernelFile {
    name: "rope",
    source: include_str!("kernels/rope.cu"),
    functions: &["rope_rotate"],
    hot: false,
    prelude: COMMON,
};

/// RoPE's cos/sin tables on the device.
pub struct RopeTables {
    cos: CudaSlice<f32>,
    sin: CudaSlice<f32>,
    max_len: usize,
    head_dim: usize,
}

impl RopeTables {
    /// Builds and uploads the tables for positions `0..max_len`.
    pub fn new(
        dev: &CudaDevice,
        max_len: usize,
        head_dim: usize,
        rope: Rope,
    ) -> Result<Self, CudaError> {
        if head_dim % 2 != 0 || head_dim == 0 {
            return Err(CudaError::Shape(format!(
                "rope needs an even head_dim, got {head_dim}"
            )));
        }
        let (c, s) = rope_tables(max_len, head_dim, rope);
        let st = dev.stream();
        Ok(RopeTables {
            cos: st.clone_htod(&c)?,
            sin: st.clone_htod(&s)?,
            max_len,
            head_dim,
        })
    }
}

fn rotate<T: GpuFloat>(
    dev: &CudaDevice,
    tables: &RopeTables,
    x: &mut CudaSlice<T>,
    batch: usize,
    seq: usize,
    heads: usize,
    sign: f32,
) -> Result<(), CudaError> {
    if seq > tables.max_len {
        return Err(CudaError::Shape(format!(
            "rope: sequence {seq} is longer than the table's {}",
            tables.max_len
        )));
    }
    let hd = tables.head_dim;
    check_len("rope x", x.len(), batch * seq * heads * hd)?;
    let (p, _sync) = cudarc::driver::DevicePtrMut::device_ptr_mut(x, dev.stream());
    Launch::new(dev, &FILE, T::PRECISION.variant(), "rope_rotate")?
        .raw(p)
        .raw(p)
        .ptr(&tables.cos)
        .ptr(&tables.sin)
        .i32(as_i32("B*T", batch * seq)?)
        .i32(seq as i32)
        .i32(as_i32("heads", heads)?)
        .i32(hd as i32)
        .f32(sign)
        .run(elementwise(batch * seq * heads * hd / 2)?)
}

/// Rotates `x` in place by each position's angle.
pub fn forward<T: GpuFloat>(
    dev: &CudaDevice,
    tables: &RopeTables,
    x: &mut CudaSlice<T>,
    batch: usize,
    seq: usize,
    heads: usize,
) -> Result<(), CudaError> {
    rotate(dev, tables, x, batch, seq, heads, 1.0)
}

/// The gradient: rotates `dx` in place by minus each angle (the transpose of a rotation).
pub fn backward<T: GpuFloat>(
    dev: &CudaDevice,
    tables: &RopeTables,
    dx: &mut CudaSlice<T>,
    batch: usize,
    seq: usize,
    heads: usize,
) -> Result<(), CudaError> {
    rotate(dev, tables, dx, batch, seq, heads, -1.0)
}
