//! Launcher of `kernels/adamw.cu`: one AdamW step over one parameter tensor.
//! params/grads `[n]` (floatX), master `[n]` fp32 (bf16 mode only), m/v `[n]` fp32.

use super::device::CudaDevice;
use super::error::CudaError;
use super::kernels::{GpuFloat, KernelFile, Precision, COMMON};
use super::launch::{adam_bias_corrections, check_len, elementwise, Launch};
use cudarc::driver::CudaSlice;

/// `kernels/adamw.cu`.
pub const FILE: KernelFile = KernelFile {
    name: "adamw",
    source: include_str!("kernels/adamw.cu"),
    functions: &["adamw_update"],
    hot: false,
    prelude: COMMON,
};

/// AdamW's hyper-parameters for one step (PyTorch names and defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// Learning rate of this step.
    pub lr: f32,
    /// First-moment decay (0.9).
    pub beta1: f32,
    /// Second-moment decay (0.999).
    pub beta2: f32,
    /// Denominator epsilon (1e-8).
    pub eps: f32,
    /// Decoupled weight decay (0 for norms and biases).
    pub weight_decay: f32,
    /// The step number, from 1.
    pub step: u32,
}

/// The fp32 state of one parameter tensor.
pub struct AdamWState<'a> {
    /// First moments.
    pub m: &'a mut CudaSlice<f32>,
    /// Second moments.
    pub v: &'a mut CudaSlice<f32>,
    /// fp32 master weights, required when the parameters are bf16.
    pub master: Option<&'a mut CudaSlice<f32>>,
}

/// Updates `params` (and the master copy) from `grads`; with `clip = Some((norm, max))`
/// the gradients are first scaled by `min(1, max / *norm)` (norm a 1-element device value).
pub fn update<T: GpuFloat>(
    dev: &CudaDevice,
    params: &mut CudaSlice<T>,
    grads: &CudaSlice<T>,
    state: AdamWState<'_>,
    hp: AdamWStep,
    clip: Option<(&CudaSlice<f32>, f32)>,
) -> Result<(), CudaError> {
    let n = params.len();
    check_len("adamw grads", grads.len(), n)?;
    check_len("adamw m", state.m.len(), n)?;
    check_len("adamw v", state.v.len(), n)?;
    if T::PRECISION == Precision::Bf16 && state.master.is_none() {
        return Err(CudaError::Shape(
            "adamw: bf16 parameters need fp32 master weights".into(),
        ));
    }
    if let Some(m) = &state.master {
        check_len("adamw master", m.len(), n)?;
    }
    if hp.step == 0 {
        return Err(CudaError::Shape("adamw: step counts from 1".into()));
    }
    let (bc1, bc2) = adam_bias_corrections(hp.beta1, hp.beta2, hp.step);
    Launch::new(dev, &FILE, T::PRECISION.variant(), "adamw_update")?
        .ptr(params)
        .opt(state.master.as_deref())
        .ptr(grads)
        .ptr(state.m)
        .ptr(state.v)
        .i64(n as i64)
        .f32(hp.lr)
        .f32(hp.beta1)
        .f32(hp.beta2)
        .f32(bc1)
        .f32(bc2)
        .f32(hp.eps)
        .f32(hp.weight_decay)
        .opt(clip.map(|c| c.0))
        .f32(clip.map_or(0.0, |c| c.1))
        .run(elementwise(n)?)
}
