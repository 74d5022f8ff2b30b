//! Helpers shared by the CUDA tests: opening the device (or saying why not), a
//! seeded generator whose seed is printed, per-precision tolerances, and the
//! element-wise comparison every kernel test uses.
#![allow(dead_code)]

use llm_train::cuda::{CudaDevice, GpuFloat, Precision};
use llm_train::rng::{fresh_seed, test_seed, Rng};

/// The reason the GPU tests give for being ignored: they run only when asked
/// (`--include-ignored`, as `scripts/gpu-check.sh` does), so a machine without a GPU
/// shows them as skipped.
pub const NEEDS_GPU: &str = "needs a CUDA GPU";

/// The first GPU. The tests that call this are `#[ignore = "needs a CUDA GPU"]`: they
/// run only when asked for, so without a GPU they fail here with the reason rather
/// than pass having checked nothing.
#[track_caller]
pub fn device(test: &str) -> CudaDevice {
    match CudaDevice::open(0) {
        Ok(d) => d,
        Err(e) => panic!("{test}: {NEEDS_GPU}: {e}"),
    }
}

/// A fresh seed per run ([`fresh_seed`]) or `LLMRT_TEST_SEED`, printed so a failure
/// can be replayed (`test` names the case in the line before it).
pub fn rng(test: &str) -> Rng {
    eprintln!("{test}:");
    Rng::new(test_seed(fresh_seed()))
}

/// Relative tolerance of a kernel against the CPU: 1e-5 in fp32, 1e-2 in bf16.
pub fn rtol<T: GpuFloat>() -> f32 {
    match T::PRECISION {
        Precision::F32 => 1e-5,
        Precision::Bf16 => 1e-2,
    }
}

/// Element-wise `|got - want| <= rtol * max(|want|, rms(want))`.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let rms =
        (want.iter().map(|w| (w * w) as f64).sum::<f64>() / want.len().max(1) as f64).sqrt() as f32;
    let mut worst = (0.0f32, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / w.abs().max(rms).max(f32::MIN_POSITIVE);
        if err.is_nan() {
            worst = (f32::INFINITY, i);
            break;
        }
        if err > worst.0 {
            worst = (err, i);
        }
    }
    assert!(
        worst.0 <= rtol,
        "{what}: relative error {:.3e} > {rtol:.0e} at {} (kernel {}, cpu {})",
        worst.0,
        worst.1,
        got[worst.1],
        want[worst.1]
    );
}

/// Calls `$f::<f32>` or `$f::<bf16>` for a `Precision`.
#[macro_export]
macro_rules! dispatch {
    ($p:expr, $f:ident, $($a:expr),*) => {
        match $p {
            Precision::F32 => $f::<f32>($($a),*),
            Precision::Bf16 => $f::<bf16>($($a),*),
        }
    };
}
