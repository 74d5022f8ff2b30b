//! Compiles every CUDA kernel file, at both precisions, for sm_80 (A100) and sm_90
//! (H100/H200) to CUBIN through NVRTC with `--ptxas-options=-v`, and fails on any compile
//! error or on register spills in the hot kernels. Needs no GPU, only NVRTC and the CUDA
//! headers: `eval "$(scripts/install-nvrtc.sh DIR | grep ^export)"` provides both. Without
//! them the test prints `skipped: NVRTC not found (...)` and returns.

use llm_train::cuda::nvrtc::{self, parse_ptxas_log};
use llm_train::cuda::{kernels, Arch, Precision};

#[test]
fn every_kernel_compiles_for_sm80_and_sm90_without_hot_spills() {
    let version = match nvrtc::load() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("skipped: NVRTC not found ({e})");
            return;
        }
    };
    if nvrtc::include_dirs().is_empty() {
        eprintln!(
            "skipped: NVRTC not found (cuda_bf16.h missing: set {})",
            nvrtc::CUDA_INCLUDE_ENV
        );
        return;
    }
    eprintln!("NVRTC {}.{}", version.0, version.1);
    eprintln!(
        "{:<6} {:<5} {:<12} {:<36} {:>5} {:>6} {:>6} {:>6} {:>6}",
        "arch", "prec", "file", "kernel", "regs", "stack", "spillS", "spillL", "smem"
    );
    let mut failures: Vec<String> = Vec::new();
    for arch in [Arch::SM80, Arch::SM90] {
        for prec in Precision::ALL {
            for file in kernels::ALL {
                let compiled = match nvrtc::compile(file, prec, arch, true) {
                    Ok(c) => c,
                    Err(e) => {
                        failures.push(format!(
                            "{} {} {}: {e}",
                            arch.name(),
                            prec.name(),
                            file.name
                        ));
                        continue;
                    }
                };
                if !compiled.cubin.starts_with(b"\x7fELF") {
                    failures.push(format!(
                        "{} {}: output is not a CUBIN",
                        arch.name(),
                        file.name
                    ));
                }
                let report = parse_ptxas_log(&compiled.log);
                for f in file.functions {
                    let Some(r) = report.iter().find(|r| r.function == *f) else {
                        failures.push(format!(
                            "{} {} {}: ptxas reported nothing for {f}; log:\n{}",
                            arch.name(),
                            prec.name(),
                            file.name,
                            compiled.log
                        ));
                        continue;
                    };
                    assert_eq!(r.arch, arch.name(), "{f}");
                    assert!(r.registers > 0, "{f}: no register count parsed");
                    eprintln!(
                        "{:<6} {:<5} {:<12} {:<36} {:>5} {:>6} {:>6} {:>6} {:>6}{}",
                        r.arch,
                        prec.name(),
                        file.name,
                        r.function,
                        r.registers,
                        r.stack_bytes,
                        r.spill_stores,
                        r.spill_loads,
                        r.smem_bytes,
                        if r.spills() { "  SPILLS" } else { "" }
                    );
                    if r.spills() && file.hot {
                        failures.push(format!(
                            "{} {} {}: hot kernel spills {} B stores / {} B loads",
                            arch.name(),
                            prec.name(),
                            f,
                            r.spill_stores,
                            r.spill_loads
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_broken_kernel_is_a_compile_error_naming_the_file() {
    if nvrtc::load().is_err() || nvrtc::include_dirs().is_empty() {
        eprintln!("skipped: NVRTC not found (set {})", nvrtc::NVRTC_LIB_ENV);
        return;
    }
    static BROKEN: kernels::KernelFile = kernels::KernelFile {
        name: "broken",
        source: "extern \"C\" __global__ void broken(float* x) { x[0] = undefined_name; }\n",
        functions: &["broken"],
        hot: false,
    };
    let e = nvrtc::compile(&BROKEN, Precision::F32, Arch::SM80, false).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("broken.cu") && msg.contains("undefined_name"),
        "{msg}"
    );
}
