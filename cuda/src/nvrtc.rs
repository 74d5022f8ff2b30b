//! NVRTC: finding and loading the library at run time, compiling one kernel file to CUBIN
//! for one GPU architecture, and reading ptxas's resource report (registers, spills).
//!
//! NVRTC is found through `LLMRT_NVRTC_LIB` (a path to `libnvrtc.so.*`, loaded first so
//! that cudarc's own lookup by soname finds it already in the process) or the usual
//! library search path. Headers (`cuda_bf16.h`) come from `LLMRT_CUDA_INCLUDE`, the
//! toolkit (`CUDA_HOME`, `CUDA_PATH`, `/usr/local/cuda`) or the folder beside the library
//! (the PyPI wheels' layout); `scripts/install-nvrtc.sh` prints the variables to set.

use crate::error::CudaError;
use crate::source::{KernelFile, Variant};
use cudarc::nvrtc::{result, sys};
use std::ffi::{c_char, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Environment variable naming the NVRTC shared library to load.
pub const NVRTC_LIB_ENV: &str = "LLMRT_NVRTC_LIB";
/// Environment variable naming the folder(s) (`:`-separated) holding `cuda_bf16.h`.
pub const CUDA_INCLUDE_ENV: &str = "LLMRT_CUDA_INCLUDE";

/// A GPU architecture `sm_{major}{minor}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Arch {
    /// Compute capability, major part.
    pub major: u32,
    /// Compute capability, minor part.
    pub minor: u32,
}

impl Arch {
    /// Ampere A100.
    pub const SM80: Arch = Arch { major: 8, minor: 0 };
    /// Hopper H100/H200.
    pub const SM90: Arch = Arch { major: 9, minor: 0 };

    /// The name NVRTC and ptxas use, e.g. `sm_80`.
    pub fn name(&self) -> String {
        format!("sm_{}{}", self.major, self.minor)
    }

    /// Whether the architecture computes in bf16 natively (sm_80 and later).
    pub fn has_bf16(&self) -> bool {
        self.major >= 8
    }
}

/// NVRTC's version, as `(major, minor)`.
pub type NvrtcVersion = (i32, i32);

/// Loads NVRTC once per process and returns its version; a missing library is
/// [`CudaError::NoNvrtc`] naming where it was looked for, never a panic.
pub fn load() -> Result<NvrtcVersion, CudaError> {
    static LOADED: OnceLock<Result<NvrtcVersion, CudaError>> = OnceLock::new();
    LOADED.get_or_init(load_uncached).clone()
}

fn load_uncached() -> Result<NvrtcVersion, CudaError> {
    if let Some(path) = std::env::var_os(NVRTC_LIB_ENV) {
        // SAFETY: loading NVRTC runs its initialisers, which have no preconditions; the
        // handle is leaked on purpose so the library stays loaded for the process, where
        // cudarc's later dlopen by soname finds it.
        match unsafe { libloading::Library::new(&path) } {
            Ok(lib) => {
                std::mem::forget(lib);
                preload_builtins(Path::new(&path));
            }
            Err(e) => {
                return Err(CudaError::NoNvrtc(format!(
                    "{NVRTC_LIB_ENV}={} could not be loaded: {e}",
                    Path::new(&path).display()
                )))
            }
        }
    }
    // SAFETY: only tries to dlopen the candidate names; no symbol is called.
    if !unsafe { sys::is_culib_present() } {
        return Err(CudaError::NoNvrtc(format!(
            "libnvrtc.so.13 is not on the library path; set {NVRTC_LIB_ENV} to it \
             (scripts/install-nvrtc.sh DIR installs it from PyPI)"
        )));
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present (checked above); the out-pointers are valid.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| CudaError::NoNvrtc(format!("nvrtcVersion failed: {e:?}")))?;
    Ok((major, minor))
}

/// NVRTC dlopens `libnvrtc-builtins.so.X.Y` by name when it compiles; loading it first
/// from the folder of `LLMRT_NVRTC_LIB` makes that work without `LD_LIBRARY_PATH`.
fn preload_builtins(nvrtc_lib: &Path) {
    let Some(dir) = nvrtc_lib.parent() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("libnvrtc-builtins.so") {
            // SAFETY: as for NVRTC itself: initialisers only, handle leaked on purpose.
            if let Ok(lib) = unsafe { libloading::Library::new(e.path()) } {
                std::mem::forget(lib);
            }
        }
    }
}

/// Folders that hold `cuda_bf16.h`, in the order they are searched.
pub fn include_dirs() -> Vec<PathBuf> {
    let mut cands: Vec<PathBuf> = Vec::new();
    if let Some(v) = std::env::var_os(CUDA_INCLUDE_ENV) {
        cands.extend(std::env::split_paths(&v));
    }
    for var in ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"] {
        if let Some(v) = std::env::var_os(var) {
            cands.push(PathBuf::from(v).join("include"));
        }
    }
    cands.push(PathBuf::from("/usr/local/cuda/include"));
    if let Some(lib) = std::env::var_os(NVRTC_LIB_ENV) {
        if let Some(dir) = Path::new(&lib).parent().and_then(Path::parent) {
            cands.push(dir.join("include"));
        }
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for c in cands {
        if c.join("cuda_bf16.h").is_file() && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// The NVRTC options for one kernel file: architecture, the variant's macros
/// (`-DNAME=V`), headers and, when `verbose`, ptxas's per-kernel resource report in the
/// log.
pub fn options(variant: Variant, arch: Arch, includes: &[PathBuf], verbose: bool) -> Vec<String> {
    let mut o = vec![
        format!("--gpu-architecture={}", arch.name()),
        "--std=c++17".to_string(),
    ];
    for (name, value) in variant {
        o.push(format!("-D{name}={value}"));
    }
    for i in includes {
        o.push(format!("--include-path={}", i.display()));
    }
    if verbose {
        o.push("--ptxas-options=-v".to_string());
    }
    o
}

/// The full text NVRTC compiles: the file's prelude (the library's shared header), then
/// the file, with a `#line` so errors point at the file's own lines.
pub fn full_source(file: &KernelFile) -> String {
    format!(
        "{}\n#line 1 \"{}.cu\"\n{}",
        file.prelude, file.name, file.source
    )
}

/// A compiled kernel file.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The CUBIN image, loadable by `cuModuleLoadData`.
    pub cubin: Vec<u8>,
    /// NVRTC's log (warnings and, with `verbose`, ptxas's resource report).
    pub log: String,
}

/// Compiles `file` with `variant`'s macros for `arch` to CUBIN.
pub fn compile(
    file: &KernelFile,
    variant: Variant,
    arch: Arch,
    verbose: bool,
) -> Result<Compiled, CudaError> {
    load()?;
    let includes = include_dirs();
    if includes.is_empty() {
        return Err(CudaError::NoNvrtc(format!(
            "cuda_bf16.h not found; set {CUDA_INCLUDE_ENV} to the CUDA include folder"
        )));
    }
    let opts = options(variant, arch, &includes, verbose);
    let bad = |m: String| CudaError::Compile {
        kernel: file.name.to_string(),
        log: m,
    };
    let src = CString::new(full_source(file)).map_err(|e| bad(e.to_string()))?;
    let name = CString::new(format!("{}.cu", file.name)).map_err(|e| bad(e.to_string()))?;
    let prog = result::create_program(&src, Some(&name)).map_err(|e| bad(format!("{e:?}")))?;
    // SAFETY: `prog` was just created and is destroyed once, below; `src` and `name`
    // outlive it.
    let compiled = unsafe { result::compile_program(prog, &opts) };
    // SAFETY: as above.
    let log = unsafe { result::get_program_log(prog) }
        .map(|l| c_chars_to_string(&l))
        .unwrap_or_default();
    let cubin = match compiled {
        Ok(()) => get_cubin(prog),
        Err(e) if e.0 == sys::nvrtcResult::NVRTC_ERROR_BUILTIN_OPERATION_FAILURE => {
            Err(bad(format!(
                "{e:?} (libnvrtc-builtins could not be loaded: add NVRTC's lib folder to \
             LD_LIBRARY_PATH)\n{log}"
            )))
        }
        Err(e) => Err(bad(format!("{e:?}\n{log}"))),
    };
    // SAFETY: as above; nothing uses `prog` afterwards.
    let _ = unsafe { result::destroy_program(prog) };
    Ok(Compiled { cubin: cubin?, log })
}

fn get_cubin(prog: sys::nvrtcProgram) -> Result<Vec<u8>, CudaError> {
    let mut size = 0usize;
    let err = |e: sys::nvrtcResult| CudaError::Driver(format!("nvrtcGetCUBIN failed: {e:?}"));
    // SAFETY: `prog` is a live, compiled program; the out-pointer is valid.
    unsafe { sys::nvrtcGetCUBINSize(prog, &mut size) }
        .result()
        .map_err(|e| err(e.0))?;
    let mut buf = vec![0u8; size];
    // SAFETY: `buf` holds exactly the `size` bytes NVRTC reported.
    unsafe { sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char) }
        .result()
        .map_err(|e| err(e.0))?;
    Ok(buf)
}

// `c_char` is i8 on x86-64 and u8 on aarch64: the cast is a no-op on one of them.
#[allow(clippy::unnecessary_cast)]
fn c_chars_to_string(v: &[c_char]) -> String {
    let bytes: Vec<u8> = v
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One kernel's resources as ptxas reports them with `-v`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelResources {
    /// The `extern "C"` function name.
    pub function: String,
    /// The architecture it was compiled for (`sm_80`).
    pub arch: String,
    /// Registers per thread.
    pub registers: u32,
    /// Bytes of stack frame per thread.
    pub stack_bytes: u32,
    /// Bytes spilled to local memory by stores.
    pub spill_stores: u32,
    /// Bytes reloaded from spills.
    pub spill_loads: u32,
    /// Static shared memory per block, in bytes.
    pub smem_bytes: u32,
}

impl KernelResources {
    /// Whether ptxas spilled registers.
    pub fn spills(&self) -> bool {
        self.spill_stores > 0 || self.spill_loads > 0
    }
}

/// The number written just before `word` in `line` (`"20 registers"` → 20).
fn number_before(line: &str, word: &str) -> Option<u32> {
    let at = line.find(word)?;
    line[..at].split_whitespace().last()?.parse().ok()
}

/// Parses ptxas's `-v` report (one record per "Compiling entry function" line).
pub fn parse_ptxas_log(log: &str) -> Vec<KernelResources> {
    let mut out: Vec<KernelResources> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let mut parts = rest.split('\'');
            let function = parts.next().unwrap_or_default().to_string();
            let arch = parts.nth(1).unwrap_or_default().to_string();
            out.push(KernelResources {
                function,
                arch,
                ..Default::default()
            });
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        if line.contains("bytes stack frame") {
            cur.stack_bytes = number_before(line, "bytes stack frame").unwrap_or(0);
            cur.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
            cur.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
        } else if line.contains("Used") && line.contains("registers") {
            cur.registers = number_before(line, "registers").unwrap_or(0);
            cur.smem_bytes = number_before(line, "bytes smem").unwrap_or(0);
        }
    }
    out
}

/// Compiles every file of `files` at every labelled variant for sm_80 (A100) and
/// sm_90 (H100/H200) with ptxas's report, prints one line per kernel to stderr
/// (registers, stack, spills, shared memory), and returns what is wrong: a compile
/// error, an output that is not a CUBIN, a kernel ptxas did not report, or register
/// spills in a `hot` file. The compile tests of the trainer and the runtime call it.
pub fn check_compiles(files: &[&KernelFile], variants: &[(&str, Variant)]) -> Vec<String> {
    eprintln!(
        "{:<6} {:<5} {:<12} {:<36} {:>5} {:>6} {:>6} {:>6} {:>6}",
        "arch", "var", "file", "kernel", "regs", "stack", "spillS", "spillL", "smem"
    );
    let mut failures = Vec::new();
    for arch in [Arch::SM80, Arch::SM90] {
        for &(label, variant) in variants {
            for file in files {
                let at = format!("{} {label} {}", arch.name(), file.name);
                let compiled = match compile(file, variant, arch, true) {
                    Ok(c) => c,
                    Err(e) => {
                        failures.push(format!("{at}: {e}"));
                        continue;
                    }
                };
                if !compiled.cubin.starts_with(b"\x7fELF") {
                    failures.push(format!("{at}: output is not a CUBIN"));
                }
                let report = parse_ptxas_log(&compiled.log);
                for f in file.functions {
                    let Some(r) = report
                        .iter()
                        .find(|r| r.function == *f && r.arch == arch.name() && r.registers > 0)
                    else {
                        failures.push(format!(
                            "{at}: ptxas reported nothing for {f}; log:\n{}",
                            compiled.log
                        ));
                        continue;
                    };
                    eprintln!(
                        "{:<6} {:<5} {:<12} {:<36} {:>5} {:>6} {:>6} {:>6} {:>6}{}",
                        r.arch,
                        label,
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
                            "{at} {f}: hot kernel spills {} B stores / {} B loads",
                            r.spill_stores, r.spill_loads
                        ));
                    }
                }
            }
        }
    }
    failures
}

/// Why the compile tests cannot run here (NVRTC or the CUDA headers missing), or
/// `None` when they can; printed as the reason they are skipped.
pub fn unavailable() -> Option<String> {
    match load() {
        Err(e) => Some(format!("NVRTC not found ({e})")),
        Ok(_) if include_dirs().is_empty() => Some(format!(
            "NVRTC not found (cuda_bf16.h missing: set {CUDA_INCLUDE_ENV})"
        )),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_ptxas_report() {
        let log = "ptxas info    : 0 bytes gmem\n\
ptxas info    : Compiling entry function 'layernorm_forward' for 'sm_80'\n\
ptxas info    : Function properties for layernorm_forward\n\
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
ptxas info    : Used 26 registers, used 0 barriers, 400 bytes cmem[0]\n\
ptxas info    : Compiling entry function 'fused_classifier' for 'sm_90'\n\
ptxas info    : Function properties for fused_classifier\n\
    8 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads\n\
ptxas info    : Used 40 registers, 128 bytes smem, 384 bytes cmem[0]\n";
        let r = parse_ptxas_log(log);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].function, "layernorm_forward");
        assert_eq!(r[0].arch, "sm_80");
        assert_eq!(r[0].registers, 26);
        assert!(!r[0].spills());
        assert_eq!(r[1].arch, "sm_90");
        assert_eq!((r[1].registers, r[1].smem_bytes), (40, 128));
        assert_eq!(
            (r[1].stack_bytes, r[1].spill_stores, r[1].spill_loads),
            (8, 12, 16)
        );
        assert!(r[1].spills());
    }

    #[test]
    fn options_name_the_architecture_and_variant() {
        let o = options(&[("LLMRT_BF16", 1), ("Q", -3)], Arch::SM90, &[], true);
        assert!(o.contains(&"--gpu-architecture=sm_90".to_string()));
        assert!(o.contains(&"-DLLMRT_BF16=1".to_string()));
        assert!(o.contains(&"-DQ=-3".to_string()));
        assert!(o.contains(&"--ptxas-options=-v".to_string()));
        let o = options(&[("LLMRT_BF16", 0)], Arch::SM80, &[], false);
        assert!(o.contains(&"-DLLMRT_BF16=0".to_string()));
        assert!(!o.iter().any(|x| x.starts_with("--ptxas")));
        let o = options(&[], Arch::SM80, &[PathBuf::from("/inc")], false);
        assert!(!o.iter().any(|x| x.starts_with("-D")));
        assert!(o.contains(&"--include-path=/inc".to_string()));
        assert_eq!(Arch::SM80.name(), "sm_80");
        assert!(Arch::SM80.has_bf16() && !Arch { major: 7, minor: 5 }.has_bf16());
    }

    #[test]
    fn full_source_puts_the_prelude_first() {
        let f = KernelFile {
            name: "k",
            source: "BODY",
            functions: &[],
            hot: false,
            prelude: "HEADER",
        };
        assert_eq!(full_source(&f), "HEADER\n#line 1 \"k.cu\"\nBODY");
    }
}
