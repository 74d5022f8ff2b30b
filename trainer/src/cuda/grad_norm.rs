//! Launchers of `kernels/grad_norm.cu`: the global L2 norm over many gradient tensors
//! (deterministic, no host round trip) and in-place clipping.

use super::device::CudaDevice;
use super::error::CudaError;
use super::kernels::{GpuFloat, KernelFile, COMMON};
use super::launch::{as_i32, check_len, elementwise, Launch, BLOCK};
use cudarc::driver::{CudaSlice, LaunchConfig};

/// `kernels/grad_norm.cu`.
pub const FILE: KernelFile = KernelFile {
    name: "grad_norm",
    source: include_str!("kernels/grad_norm.cu"),
    functions: &["norm_squared_accumulate", "norm_finish", "clip_by_norm"],
    hot: false,
    prelude: COMMON,
};

/// Blocks of the sum-of-squares pass (and partials kept): fixed, so results do not
/// depend on tensor sizes' grids.
pub const NORM_BLOCKS: usize = 256;

/// Accumulates squared norms of several tensors, then yields their global norm.
pub struct GlobalNorm {
    partials: CudaSlice<f32>,
    norm: CudaSlice<f32>,
}

impl GlobalNorm {
    /// Zeroed partials.
    pub fn new(dev: &CudaDevice) -> Result<Self, CudaError> {
        let st = dev.stream();
        Ok(GlobalNorm {
            partials: st.alloc_zeros(NORM_BLOCKS)?,
            norm: st.alloc_zeros(1)?,
        })
    }

    /// Adds `sum(x^2)` of one tensor.
    pub fn add<T: GpuFloat>(
        &mut self,
        dev: &CudaDevice,
        x: &CudaSlice<T>,
    ) -> Result<(), CudaError> {
        let cfg = LaunchConfig {
            grid_dim: (NORM_BLOCKS as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        Launch::new(
            dev,
            &FILE,
            T::PRECISION.variant(),
            "norm_squared_accumulate",
        )?
        .out(&mut self.partials)
        .ptr(x)
        .i64(x.len() as i64)
        .run(cfg)
    }

    /// Writes `sqrt(sum of everything added)` to the 1-element device value returned
    /// (for AdamW's clipping) and resets the partials for the next step.
    pub fn finish<T: GpuFloat>(&mut self, dev: &CudaDevice) -> Result<&CudaSlice<f32>, CudaError> {
        let cfg = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        Launch::new(dev, &FILE, T::PRECISION.variant(), "norm_finish")?
            .out(&mut self.norm)
            .ptr(&self.partials)
            .i32(as_i32("partials", NORM_BLOCKS)?)
            .run(cfg)?;
        dev.stream().memset_zeros(&mut self.partials)?;
        Ok(&self.norm)
    }
}

/// `x *= max_norm / *norm` when `*norm > max_norm`.
pub fn clip<T: GpuFloat>(
    dev: &CudaDevice,
    x: &mut CudaSlice<T>,
    norm: &CudaSlice<f32>,
    max_norm: f32,
) -> Result<(), CudaError> {
    check_len("clip norm", norm.len(), 1)?;
    let n = x.len();
    Launch::new(dev, &FILE, T::PRECISION.variant(), "clip_by_norm")?
        .ptr(x)
        .i64(n as i64)
        .ptr(norm)
        .f32(max_norm)
        .run(elementwise(n)?)
}
