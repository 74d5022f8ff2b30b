//! Kernel files as data: the CUDA C text of one `.cu` file, the `extern "C"` kernels it
//! defines, the shared header it is compiled with, and the macro definitions
//! ([`Variant`]) that select one build of it. Also the kernels' parameter kinds, read
//! from their source signatures, which the launch builder checks arguments against.

use crate::error::CudaError;

/// The macro definitions one build of a kernel file is compiled with: `-DNAME=V` for
/// NVRTC, `#define NAME V` in the emulator. `&[]` (no definitions) is a valid variant.
pub type Variant = &'static [(&'static str, i32)];

/// One `.cu` file of a kernel library.
#[derive(Debug)]
pub struct KernelFile {
    /// The file's stem (`attention` for `kernels/attention.cu`); names the module in
    /// errors, logs and NVRTC's `#line`.
    pub name: &'static str,
    /// The CUDA C text.
    pub source: &'static str,
    /// Every `extern "C" __global__` function the file defines.
    pub functions: &'static [&'static str],
    /// A hot-path file: register spills there fail the compile tests.
    pub hot: bool,
    /// The library's shared header text, prepended before the file (`""` for none).
    pub prelude: &'static str,
}

/// The kind of one kernel parameter, as the launch passes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// Any pointer (a 64-bit device address).
    Ptr,
    /// `int`.
    I32,
    /// `long long`.
    I64,
    /// `float`.
    F32,
}

/// The parameter kinds of `extern "C" __global__ void name(...)` in `source`, or `None`
/// when the function is not there or a parameter type is not one of the four kinds.
pub fn signature(source: &str, name: &str) -> Option<Vec<ParamKind>> {
    let head = format!("extern \"C\" __global__ void {name}(");
    let start = source.find(&head)? + head.len();
    let params = &source[start..start + source[start..].find(')')?];
    params
        .split(',')
        .map(|p| {
            let p = p.trim();
            let ty = p
                .rsplit_once(char::is_whitespace)
                .map_or(p, |(t, _)| t)
                .trim();
            if ty.ends_with('*') {
                Some(ParamKind::Ptr)
            } else {
                match ty {
                    "int" => Some(ParamKind::I32),
                    "long long" => Some(ParamKind::I64),
                    "float" => Some(ParamKind::F32),
                    _ => None,
                }
            }
        })
        .collect()
}

/// Whether a launch of `name` in `file` with arguments of `kinds` matches the kernel's
/// parameter list in its source: a launcher out of step with its kernel is an error
/// before the launch, not a bad launch.
pub fn check_call(file: &KernelFile, name: &str, kinds: &[ParamKind]) -> Result<(), CudaError> {
    match signature(file.source, name) {
        Some(sig) if sig == kinds => Ok(()),
        sig => Err(CudaError::Shape(format!(
            "launch of {}.cu {name} passes {kinds:?}, the kernel takes {sig:?}",
            file.name
        ))),
    }
}

/// Checks that `file.functions` lists exactly the `extern "C" __global__` functions of
/// its source, and that each one's parameters parse ([`signature`]), so compile tests
/// and launchers see them all. The error names the file and what is wrong.
pub fn check_declared(file: &KernelFile) -> Result<(), String> {
    let mut found: Vec<&str> = file
        .source
        .split("extern \"C\" __global__ void ")
        .skip(1)
        .map(|part| part.split('(').next().unwrap_or_default().trim())
        .collect();
    let mut declared: Vec<&str> = file.functions.to_vec();
    found.sort_unstable();
    declared.sort_unstable();
    if found != declared {
        return Err(format!(
            "kernel file {}: the source defines {found:?}, `functions` lists {declared:?}",
            file.name
        ));
    }
    for name in file.functions {
        if signature(file.source, name).is_none_or(|s| s.is_empty()) {
            return Err(format!(
                "{}.cu {name}: parameters not understood",
                file.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_parse_the_parameter_kinds() {
        use ParamKind::*;
        let src = "extern \"C\" __global__ void k(floatX* out, const float* x, int n,\n long long m, float eps) {}";
        assert_eq!(signature(src, "k"), Some(vec![Ptr, Ptr, I32, I64, F32]));
        assert_eq!(signature(src, "missing"), None);
        let bad = "extern \"C\" __global__ void k(double x) {}";
        assert_eq!(signature(bad, "k"), None);
    }

    #[test]
    fn check_declared_finds_missing_extra_and_unparsed_kernels() {
        const SRC: &str = "extern \"C\" __global__ void a(float* x, int n) {}\n\
                           extern \"C\" __global__ void b(const float* x) {}\n";
        let file = |source: &'static str, functions: &'static [&'static str]| KernelFile {
            name: "t",
            source,
            functions,
            hot: false,
            prelude: "",
        };
        assert_eq!(check_declared(&file(SRC, &["b", "a"])), Ok(()));
        let e = check_declared(&file(SRC, &["a"])).unwrap_err();
        assert!(e.contains("kernel file t"), "{e}");
        assert!(check_declared(&file(SRC, &["a", "b", "c"])).is_err());
        let bad = "extern \"C\" __global__ void a(double x) {}\n";
        let e = check_declared(&file(bad, &["a"])).unwrap_err();
        assert!(e.contains("t.cu a"), "{e}");
    }
}
