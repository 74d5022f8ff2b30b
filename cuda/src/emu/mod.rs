//! Runs kernel files on the CPU, for tests on machines without a GPU: the file (with its
//! prelude and variant) is rewritten into C++ over [`HEADER`] (`cuda_emu.h`: one
//! std::thread per CUDA thread, barriers for `__syncthreads` and warp shuffles, bf16 and
//! IEEE half), built by g++ into a shared library, and its kernels are launched by name
//! through a generated `emu_launch` dispatcher. This checks the kernels' arithmetic and
//! indexing, not their speed, memory model or occupancy.
//!
//! Needs a C++20 compiler (`$CXX`, default `g++`) with `<barrier>`; [`compiler`] says
//! whether there is one, so tests can skip with the reason instead of failing.

use crate::source::{KernelFile, Variant};
use cudarc::driver::LaunchConfig;
use std::ffi::{c_char, c_void, CString};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The emulator header (`cuda_emu.h`), written beside every generated source.
pub const HEADER: &str = include_str!("cuda_emu.h");

/// `emu_launch(name, grid xyz, block xyz, dynamic smem bytes, argument pointers)`:
/// 0, or -1 when the file has no kernel `name`.
type LaunchFn = unsafe extern "C" fn(
    *const c_char,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    usize,
    *mut *mut c_void,
) -> i32;

/// The C++ compiler, once it has shown it builds a C++20 program with `<barrier>`; an
/// `Err` (no compiler, or one too old) is a reason to skip, not a kernel failure.
/// Probed once per process.
pub fn compiler() -> Result<String, String> {
    static PROBE: OnceLock<Result<String, String>> = OnceLock::new();
    PROBE.get_or_init(probe).clone()
}

fn probe() -> Result<String, String> {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    let dir = std::env::temp_dir().join(format!("llmrt-emu-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let src = dir.join("probe.cpp");
    std::fs::write(
        &src,
        "#include <barrier>\nint main() { std::barrier<> b(1); b.arrive_and_wait(); }\n",
    )
    .map_err(|e| e.to_string())?;
    let out = Command::new(&cxx)
        .args(["-std=c++20", "-pthread", "-o"])
        .arg(dir.join("probe"))
        .arg(&src)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    match out {
        Ok(o) if o.status.success() => Ok(cxx),
        Ok(o) => Err(format!(
            "{cxx} cannot build C++20 <barrier>: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .next()
                .unwrap_or("")
        )),
        Err(e) => Err(format!("{cxx}: {e}")),
    }
}

/// A kernel argument, as the kernel's parameter type.
#[derive(Clone, Copy, Debug)]
pub enum EmuArg {
    /// A pointer into host memory (any pointer parameter).
    P(*mut c_void),
    /// `int`.
    I(i32),
    /// `long long`.
    L(i64),
    /// `float`.
    F(f32),
}

/// A buffer the kernel may write.
pub fn ptr<T>(v: &mut [T]) -> EmuArg {
    EmuArg::P(v.as_mut_ptr() as *mut c_void)
}

/// A buffer the kernel only reads.
pub fn cptr<T>(v: &[T]) -> EmuArg {
    EmuArg::P(v.as_ptr() as *mut c_void)
}

/// Whether `line` includes a CUDA header the emulator replaces (`cuda_emu.h` has its own
/// bf16 and half types).
fn is_cuda_type_include(line: &str) -> bool {
    let l = line.trim();
    l == "#include <cuda_bf16.h>" || l == "#include <cuda_fp16.h>"
}

/// `text` without the CUDA type headers' `#include` lines, and with the device-only
/// spellings the emulator cannot take replaced.
fn emu_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if !is_cuda_type_include(line) {
            out.push_str(line);
        }
        // Dropped lines stay empty, so line numbers in g++'s errors match the file's.
        out.push('\n');
    }
    out.replace(
        "extern __shared__ float4 smem4[];",
        "float4* smem4 = reinterpret_cast<float4*>(emu::dyn_smem);",
    )
}

/// The C++ the emulator builds for `file` at `variant`: the header, the variant's
/// `#define`s, the prelude, the file, then the `emu_launch` dispatcher.
fn emu_source(file: &KernelFile, variant: Variant) -> String {
    let mut s = String::from("#include \"cuda_emu.h\"\n");
    for (name, value) in variant {
        s.push_str(&format!("#define {name} {value}\n"));
    }
    s.push_str(&emu_text(file.prelude));
    s.push_str(&format!("#line 1 \"{}.cu\"\n", file.name));
    s.push_str(&emu_text(file.source));
    s.push_str(
        "extern \"C\" int emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, \
         unsigned bx, unsigned by, unsigned bz, size_t smem, void** args) {\n",
    );
    for f in file.functions {
        s.push_str(&format!(
            "  if (!strcmp(name, \"{f}\")) {{ emu::launch({f}, dim3{{gx, gy, gz}}, \
             dim3{{bx, by, bz}}, smem, args); return 0; }}\n"
        ));
    }
    s.push_str("  return -1;\n}\n");
    s
}

/// One kernel file built for the CPU at one variant.
#[derive(Debug)]
pub struct EmuModule {
    lib: libloading::Library,
    file: &'static str,
}

impl EmuModule {
    /// Builds `file` with `variant`'s macros. `Err` only when there is no usable
    /// compiler ([`compiler`]); a file that does not compile for the emulator panics with
    /// the compiler's errors (a kernel bug, for the test to show).
    pub fn build(file: &'static KernelFile, variant: Variant) -> Result<EmuModule, String> {
        let cxx = compiler()?;
        // Tests run in parallel and may build the same file: one folder per build.
        static BUILDS: AtomicUsize = AtomicUsize::new(0);
        let tag: String = variant
            .iter()
            .map(|(name, value)| format!("-{name}{value}"))
            .collect();
        let dir: PathBuf = std::env::temp_dir().join(format!(
            "llmrt-emu-{}-{}-{}{tag}",
            std::process::id(),
            BUILDS.fetch_add(1, Ordering::Relaxed),
            file.name,
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("cuda_emu.h"), HEADER).map_err(|e| e.to_string())?;
        let src = dir.join(format!("{}.cpp", file.name));
        std::fs::write(&src, emu_source(file, variant)).map_err(|e| e.to_string())?;
        let so = dir.join(format!("lib{}.so", file.name));
        let out = Command::new(&cxx)
            .args([
                "-std=c++20",
                "-O2",
                "-shared",
                "-fPIC",
                "-pthread",
                "-w",
                "-o",
            ])
            .arg(&so)
            .arg(&src)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            panic!(
                "{}.cu does not compile for the emulator:\n{}",
                file.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // SAFETY: the library was just built from our sources; its initialisers are
        // plain C++ static initialisation.
        let lib = unsafe { libloading::Library::new(&so) }.map_err(|e| e.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(EmuModule {
            lib: lib?,
            file: file.name,
        })
    }

    /// Runs kernel `name` over `cfg`'s grid, blocks one after another, and returns when
    /// it has finished. `args` must match the kernel's parameters in order and type,
    /// pointers into host buffers sized for the launch. Panics when the file has no
    /// kernel `name`.
    pub fn launch(&self, name: &str, cfg: LaunchConfig, args: &[EmuArg]) {
        let mut slots: Vec<u64> = args
            .iter()
            .map(|a| match a {
                EmuArg::P(p) => *p as u64,
                EmuArg::I(i) => *i as u32 as u64,
                EmuArg::L(l) => *l as u64,
                EmuArg::F(f) => f.to_bits() as u64,
            })
            .collect();
        let mut ptrs: Vec<*mut c_void> = slots
            .iter_mut()
            .map(|s| s as *mut u64 as *mut c_void)
            .collect();
        let cname = CString::new(name).expect("kernel name without NUL");
        // SAFETY: `emu_launch` is the function `emu_source` generated, with `LaunchFn`'s
        // signature; each slot holds a value of the kernel's parameter type in its low
        // bytes (little-endian), and the pointers point into live host buffers the
        // caller sized for the launch.
        let rc = unsafe {
            let f: libloading::Symbol<LaunchFn> = self
                .lib
                .get(b"emu_launch")
                .expect("emu_launch in an emulator build");
            f(
                cname.as_ptr(),
                cfg.grid_dim.0,
                cfg.grid_dim.1,
                cfg.grid_dim.2,
                cfg.block_dim.0,
                cfg.block_dim.1,
                cfg.block_dim.2,
                cfg.shared_mem_bytes as usize,
                ptrs.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0, "{} has no kernel {name}", self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_drops_cuda_headers_and_defines_the_variant() {
        static FILE: KernelFile = KernelFile {
            name: "k",
            source: "#include <cuda_fp16.h>\nextern __shared__ float4 smem4[];\n\
                     extern \"C\" __global__ void a(float* x) {}\n",
            functions: &["a"],
            hot: false,
            prelude: "  #include <cuda_bf16.h>\n#define P 1\n",
        };
        let s = emu_source(&FILE, &[("LLMRT_BF16", 1), ("N", -2)]);
        assert!(
            !s.contains("cuda_fp16.h") && !s.contains("cuda_bf16.h"),
            "{s}"
        );
        assert!(!s.contains("extern __shared__"), "{s}");
        let def = s.find("#define LLMRT_BF16 1\n#define N -2\n").unwrap();
        let prelude = s.find("#define P 1").unwrap();
        let body = s.find("#line 1 \"k.cu\"").unwrap();
        let dispatch = s.find("if (!strcmp(name, \"a\"))").unwrap();
        assert!(def < prelude && prelude < body && body < dispatch, "{s}");
        assert!(emu_source(&FILE, &[]).starts_with("#include \"cuda_emu.h\"\n\n"));
    }
}
