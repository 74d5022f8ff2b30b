//! Launcher of `kernels/classifier.cu`: softmax, cross-entropy and dlogits in one pass.
//! logits `[N, V]` (overwritten by dlogits), targets `[N]` (negative = ignored row),
//! losses `[N]` fp32.

use super::device::CudaDevice;
use super::error::CudaError;
use super::kernels::{GpuFloat, KernelFile, COMMON};
use super::launch::{as_i32, check_len, elementwise, Launch};
use cudarc::driver::{CudaSlice, LaunchConfig};

/// `kernels/classifier.cu`.
pub const FILE: KernelFile = KernelFile {
    name: "classifier",
    source: include_str!("kernels/classifier.cu"),
    functions: &["fused_classifier", "softmax_ce_probs", "softmax_ce_grad"],
    hot: true,
    prelude: COMMON,
};

/// Threads per row of logits.
pub const CLASSIFIER_BLOCK: u32 = 512;

/// `losses[n] = logsumexp(logits[n]) - logits[n, target[n]]` and
/// `logits[n] := (softmax(logits[n]) - onehot(target[n])) * dloss`. `targets` is the device
/// copy of `host_targets`, checked here (each below `vocab`, or negative to ignore).
#[allow(clippy::too_many_arguments)]
pub fn forward_backward<T: GpuFloat>(
    dev: &CudaDevice,
    logits: &mut CudaSlice<T>,
    losses: &mut CudaSlice<f32>,
    targets: &CudaSlice<i32>,
    host_targets: &[i32],
    n: usize,
    vocab: usize,
    dloss: f32,
) -> Result<(), CudaError> {
    check_len("classifier logits", logits.len(), n * vocab)?;
    check_len("classifier losses", losses.len(), n)?;
    check_len("classifier targets", targets.len(), n)?;
    check_len("classifier host targets", host_targets.len(), n)?;
    check_targets(&host_targets[..n], vocab)?;
    Launch::new(dev, &FILE, T::PRECISION.variant(), "fused_classifier")?
        .ptr(logits)
        .ptr(losses)
        .ptr(targets)
        .i32(n as i32)
        .i32(as_i32("V", vocab)?)
        .f32(dloss)
        .run(row_config(n)?)
}

fn check_targets(targets: &[i32], vocab: usize) -> Result<(), CudaError> {
    if let Some(p) = targets.iter().position(|&t| t >= 0 && t as usize >= vocab) {
        return Err(CudaError::Shape(format!(
            "target {} at position {p} is outside the vocabulary 0..{vocab}",
            targets[p]
        )));
    }
    Ok(())
}

fn row_config(n: usize) -> Result<LaunchConfig, CudaError> {
    Ok(LaunchConfig {
        grid_dim: (as_i32("N", n)?.max(1) as u32, 1, 1),
        block_dim: (CLASSIFIER_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// `logits[n] := softmax(logits[n])`, `losses[n] = -log p[n, target[n]]` (the forward
/// half of [`forward_backward`], for callers that keep the probabilities).
#[allow(clippy::too_many_arguments)]
pub fn probs<T: GpuFloat>(
    dev: &CudaDevice,
    logits: &mut CudaSlice<T>,
    losses: &mut CudaSlice<f32>,
    targets: &CudaSlice<i32>,
    host_targets: &[i32],
    n: usize,
    vocab: usize,
) -> Result<(), CudaError> {
    check_len("classifier logits", logits.len(), n * vocab)?;
    check_len("classifier losses", losses.len(), n)?;
    check_len("classifier targets", targets.len(), n)?;
    check_len("classifier host targets", host_targets.len(), n)?;
    check_targets(&host_targets[..n], vocab)?;
    Launch::new(dev, &FILE, T::PRECISION.variant(), "softmax_ce_probs")?
        .ptr(logits)
        .ptr(losses)
        .ptr(targets)
        .i32(n as i32)
        .i32(as_i32("V", vocab)?)
        .run(row_config(n)?)
}

/// `probs[n] := dloss[n] * (probs[n] - onehot(target[n]))` (the backward half).
pub fn grad<T: GpuFloat>(
    dev: &CudaDevice,
    probs: &mut CudaSlice<T>,
    dloss: &CudaSlice<f32>,
    targets: &CudaSlice<i32>,
    n: usize,
    vocab: usize,
) -> Result<(), CudaError> {
    check_len("classifier probs", probs.len(), n * vocab)?;
    check_len("classifier dloss", dloss.len(), n)?;
    check_len("classifier targets", targets.len(), n)?;
    Launch::new(dev, &FILE, T::PRECISION.variant(), "softmax_ce_grad")?
        .ptr(probs)
        .ptr(dloss)
        .ptr(targets)
        .i32(as_i32("N", n)?)
        .i32(as_i32("V", vocab)?)
        .run(elementwise(n * vocab)?)
}
