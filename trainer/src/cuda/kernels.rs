//! The kernel library: one [`KernelFile`] per `kernels/<op>.cu` (declared by its launcher
//! `<op>.rs`), the precisions each file is compiled at, and the element types that
//! select them.

use half::bf16;

/// `kernels/common.cuh`, prepended to every file before compilation.
pub const COMMON: &str = include_str!("kernels/common.cuh");

/// The storage precision of activations, parameters and gradients in a kernel module.
/// Arithmetic is fp32 in both; norms' statistics and AdamW state are always fp32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    /// fp32 storage (`floatX = float`).
    F32,
    /// bf16 storage (`floatX = __nv_bfloat16`).
    Bf16,
}

impl Precision {
    /// Both precisions, for tests that cover every module.
    pub const ALL: [Precision; 2] = [Precision::F32, Precision::Bf16];

    /// `f32` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// A host element type that kernels can store (`floatX`): f32 or bf16.
pub trait GpuFloat:
    cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits + Copy + Send + Sync + 'static
{
    /// The module precision whose `floatX` is this type.
    const PRECISION: Precision;
    /// Widens to f32.
    fn to_f32(self) -> f32;
    /// Narrows from f32 (round to nearest even).
    fn from_f32(v: f32) -> Self;
}

impl GpuFloat for f32 {
    const PRECISION: Precision = Precision::F32;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl GpuFloat for bf16 {
    const PRECISION: Precision = Precision::Bf16;
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

/// One `.cu` file of the kernel library.
#[derive(Debug)]
pub struct KernelFile {
    /// The file's stem (`attention` for `kernels/attention.cu`).
    pub name: &'static str,
    /// The CUDA C text.
    pub source: &'static str,
    /// Every `extern "C" __global__` function the file defines.
    pub functions: &'static [&'static str],
    /// A hot-path file: register spills there fail the compile test.
    pub hot: bool,
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

/// Every kernel file, in the order the compile test reports them.
pub const ALL: &[&KernelFile] = &[
    &super::embedding::FILE,
    &super::layernorm::FILE,
    &super::rmsnorm::FILE,
    &super::attention::FILE,
    &super::activation::FILE,
    &super::rope::FILE,
    &super::classifier::FILE,
    &super::adamw::FILE,
    &super::grad_norm::FILE,
    &super::bias_grad::FILE,
    &super::cast::FILE,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every declared function exists in its file as an `extern "C" __global__`, and
    /// every such function is declared, so the compile test and launchers see them all.
    #[test]
    fn declared_functions_match_the_sources() {
        for f in ALL {
            let mut found: Vec<&str> = Vec::new();
            for part in f.source.split("extern \"C\" __global__ void ").skip(1) {
                let name = part.split('(').next().unwrap_or_default().trim();
                found.push(name);
            }
            let mut declared: Vec<&str> = f.functions.to_vec();
            found.sort_unstable();
            declared.sort_unstable();
            assert_eq!(found, declared, "kernel file {}", f.name);
            for name in f.functions {
                let sig = signature(f.source, name);
                assert!(
                    sig.as_ref().is_some_and(|s| !s.is_empty()),
                    "{}.cu {name}: parameters not understood",
                    f.name
                );
            }
        }
    }

    #[test]
    fn signatures_parse_the_parameter_kinds() {
        use ParamKind::*;
        let src = "extern \"C\" __global__ void k(floatX* out, const float* x, int n,\n long long m, float eps) {}";
        assert_eq!(signature(src, "k"), Some(vec![Ptr, Ptr, I32, I64, F32]));
        assert_eq!(signature(src, "missing"), None);
        let bad = "extern \"C\" __global__ void k(double x) {}";
        assert_eq!(signature(bad, "k"), None);
    }
}
