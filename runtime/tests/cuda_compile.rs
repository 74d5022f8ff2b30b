//! Compiles every runtime CUDA kernel file (`llmrt::cuda::ALL`) for sm_80 (A100) and
//! sm_90 (H100/H200) to CUBIN through NVRTC with ptxas's report, and fails on any
//! compile error or register spills in a hot kernel. Needs no GPU, only NVRTC and the
//! CUDA headers (`eval "$(scripts/install-nvrtc.sh DIR | grep ^export)"`, as CI does);
//! without them it prints `skipped: ...` and returns.
#![cfg(feature = "cuda")]

use llmrt_cuda::nvrtc;

#[test]
fn every_kernel_compiles_for_sm80_and_sm90_without_hot_spills() {
    if let Some(why) = nvrtc::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let failures = nvrtc::check_compiles(llmrt::cuda::ALL, &[("-", &[])]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
