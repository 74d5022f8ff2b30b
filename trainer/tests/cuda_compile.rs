//! Compiles every CUDA kernel file, at both precisions, for sm_80 (A100) and sm_90
//! (H100/H200) to CUBIN through NVRTC with `--ptxas-options=-v`, and fails on any compile
//! error or on register spills in the hot kernels. Needs no GPU, only NVRTC and the CUDA
//! headers: `eval "$(scripts/install-nvrtc.sh DIR | grep ^export)"` provides both. Without
//! them the test prints `skipped: NVRTC not found (...)` and returns.

use llm_train::cuda::nvrtc;
use llm_train::cuda::{kernels, Arch, Precision};

#[test]
fn every_kernel_compiles_for_sm80_and_sm90_without_hot_spills() {
    if let Some(why) = nvrtc::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let variants: Vec<(&str, _)> = Precision::ALL
        .iter()
        .map(|p| (p.name(), p.variant()))
        .collect();
    let failures = nvrtc::check_compiles(kernels::ALL, &variants);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_broken_kernel_is_a_compile_error_naming_the_file() {
    if let Some(why) = nvrtc::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    static BROKEN: kernels::KernelFile = kernels::KernelFile {
        name: "broken",
        source: "extern \"C\" __global__ void broken(float* x) { x[0] = undefined_name; }\n",
        functions: &["broken"],
        hot: false,
        prelude: kernels::COMMON,
    };
    let e = nvrtc::compile(&BROKEN, Precision::F32.variant(), Arch::SM80, false).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("broken.cu") && msg.contains("undefined_name"),
        "{msg}"
    );
}
