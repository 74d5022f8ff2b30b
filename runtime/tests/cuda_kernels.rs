//! The runtime's GPU kernels on a GPU, through their launchers, against the same f64
//! references as the emulator tests (`cuda_common`). Every test that needs a device
//! is `#[ignore = "needs a CUDA GPU"]`, so a machine without one shows it as skipped;
//! `cargo test -- --include-ignored` (as `scripts/gpu-check.sh` runs it) runs them,
//! and then a missing GPU fails them with the reason.
#![cfg(feature = "cuda")]

mod common;
mod cuda_common;

use common::Rng;
use llmrt_cuda::Gpu;

fn gpu(test: &str) -> Gpu {
    match Gpu::cuda(0) {
        Ok(g) => g,
        Err(e) => panic!("{test}: needs a CUDA GPU: {e}"),
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn matmul_matches_dequantised_reference_on_the_gpu() {
    let g = gpu("matmul");
    eprintln!("{}", g.name());
    cuda_common::matmul_cases(&g, &mut Rng::fresh());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn matmul_refuses_mismatched_shapes_on_the_gpu() {
    cuda_common::matmul_refuses_bad_shapes(&gpu("matmul shapes"));
}
