//! The kernel library: one [`KernelFile`] per `kernels/<op>.cu` (declared by its launcher
//! `<op>.rs`, with [`COMMON`] as its prelude), the precisions each file is compiled at
//! (each a [`Variant`] defining `LLMRT_BF16`), and the element types that select them.

use half::bf16;
pub use llmrt_cuda::source::{signature, KernelFile, ParamKind, Variant};

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

    /// The macro definitions the kernel files are compiled with at this precision:
    /// `LLMRT_BF16` = 0 or 1 (read by [`COMMON`]).
    pub fn variant(self) -> Variant {
        match self {
            Precision::F32 => &[("LLMRT_BF16", 0)],
            Precision::Bf16 => &[("LLMRT_BF16", 1)],
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
            llmrt_cuda::source::check_declared(f).unwrap();
            assert_eq!(f.prelude, COMMON, "{}.cu", f.name);
        }
    }

    #[test]
    fn precisions_define_llmrt_bf16() {
        assert_eq!(Precision::F32.variant(), &[("LLMRT_BF16", 0)]);
        assert_eq!(Precision::Bf16.variant(), &[("LLMRT_BF16", 1)]);
    }
}
