//! Which instruction-set path runs the kernels: [`KernelPath`] (what a user names,
//! `LLMRT_KERNEL`), the `Engine` that holds the proof the CPU has it and sends each
//! call to that path's code, and [`VecOps`], the vector loops between products
//! compiled per path.

use super::act::{self, Q8Act, Q8Quad};
#[cfg(target_arch = "aarch64")]
use super::neon;
#[cfg(target_arch = "x86_64")]
use super::{amx, avx2, avx512, avx512_bf16};
use super::{scalar, vecops, Acts, Matrix, OutRows};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
#[cfg(target_arch = "x86_64")]
use llm_format::DType;
use llm_format::{layout, Layout};

/// An instruction-set path for the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// Portable Rust, the reference (and the only path without a known SIMD ISA).
    Scalar,
    /// x86-64 AVX2 + FMA + F16C (256-bit).
    Avx2,
    /// x86-64 AVX-512 F/BW/VL/DQ with VNNI integer dots, plus FMA and F16C (512-bit).
    Avx512,
    /// aarch64 NEON, with `bfdot` for F16/BF16 weights where the CPU has BF16 (no
    /// `dotprod` variant yet for the quantised types).
    Neon,
}

impl KernelPath {
    /// Every path, best last.
    pub const ALL: [KernelPath; 4] = [
        KernelPath::Scalar,
        KernelPath::Neon,
        KernelPath::Avx2,
        KernelPath::Avx512,
    ];

    /// The paths this CPU can run, `Scalar` first and the fastest last.
    pub fn available() -> Vec<KernelPath> {
        KernelPath::ALL
            .into_iter()
            .filter(|p| Engine::for_path(*p).is_some())
            .collect()
    }

    /// The fastest available path.
    pub fn best() -> KernelPath {
        KernelPath::available()
            .last()
            .copied()
            .unwrap_or(KernelPath::Scalar)
    }

    /// Lower-case name as accepted by `LLMRT_KERNEL`.
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Scalar => "scalar",
            KernelPath::Avx2 => "avx2",
            KernelPath::Avx512 => "avx512",
            KernelPath::Neon => "neon",
        }
    }

    /// Parses a name as printed by [`KernelPath::name`] (case-insensitive).
    pub fn from_name(s: &str) -> Option<KernelPath> {
        KernelPath::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for KernelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A path together with the token that proves the CPU supports it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Engine {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2(avx2::Avx2),
    #[cfg(target_arch = "x86_64")]
    Avx512(avx512::Avx512),
    #[cfg(target_arch = "aarch64")]
    Neon(neon::Neon),
}

impl Engine {
    pub(crate) fn for_path(path: KernelPath) -> Option<Engine> {
        match path {
            KernelPath::Scalar => Some(Engine::Scalar),
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => avx2::Avx2::detect().map(Engine::Avx2),
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512 => avx512::Avx512::detect().map(Engine::Avx512),
            #[cfg(target_arch = "aarch64")]
            KernelPath::Neon => neon::Neon::detect().map(Engine::Neon),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    pub(crate) fn path(self) -> KernelPath {
        match self {
            Engine::Scalar => KernelPath::Scalar,
            #[cfg(target_arch = "x86_64")]
            Engine::Avx2(_) => KernelPath::Avx2,
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512(_) => KernelPath::Avx512,
            #[cfg(target_arch = "aarch64")]
            Engine::Neon(_) => KernelPath::Neon,
        }
    }

    /// The bf16 dot products for F16/BF16 prompts (`avx512_bf16`), if this engine
    /// has them.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn bf16(self) -> Option<avx512_bf16::Bf16Dots> {
        match self {
            Engine::Avx512(t) => t.bf16(),
            _ => None,
        }
    }

    /// Whether this engine has bf16 dot products for F16/BF16 weights
    /// (`avx512_bf16`, `neon_bf16`).
    pub(crate) fn has_bf16(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512(t) => t.bf16().is_some(),
            #[cfg(target_arch = "aarch64")]
            Engine::Neon(t) => t.bf16().is_some(),
            _ => false,
        }
    }

    /// Whether those bf16 dot products are faster than this engine's f32 products,
    /// so that a new context takes them (`Cpu::set_f16_exact`): on x86-64 where
    /// `vdpbf16ps` runs at least 1.5 times the FMA's multiply-adds (measured once,
    /// `Bf16Dots::faster_than_fma`) or the AMX tiles are on; on aarch64 always, since
    /// `bfdot` does twice `fmla`'s multiply-adds and its tiles reuse each load where
    /// the f32 path takes one row against one activation.
    pub(crate) fn bf16_faster(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512(t) => t
                .bf16()
                .is_some_and(|b| b.faster_than_fma() || t.amx().is_some()),
            #[cfg(target_arch = "aarch64")]
            Engine::Neon(t) => t.bf16().is_some(),
            _ => false,
        }
    }

    /// Rounds `x` (rows of `cols`) to bf16 into `out` for [`Engine::has_bf16`]'s dot
    /// products: rows of `act::bf16_padded(cols)`, the padding zero.
    ///
    /// # Panics
    /// As `act::round_bf16_rows`.
    pub(crate) fn round_bf16(self, x: &[f32], cols: usize, out: &mut [u16]) {
        #[cfg(target_arch = "x86_64")]
        if let Some(b) = self.bf16() {
            return b.round_rows(x, cols, out);
        }
        act::round_bf16_rows(x, cols, out)
    }

    /// The AMX tiles for F16/BF16 prompts (`amx`), if this engine has them.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn amx(self) -> Option<amx::Amx> {
        match self {
            Engine::Avx512(t) => t.amx(),
            _ => None,
        }
    }

    /// The same engine with AMX for F16/BF16 prompts (where the CPU has it) or
    /// without.
    pub(crate) fn with_amx(self, on: bool) -> Engine {
        match self {
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512(t) => Engine::Avx512(t.with_amx(on)),
            e => {
                let _ = on;
                e
            }
        }
    }

    /// Quads of 4 blocks per activation row this engine wants (`n` rows of `nb`):
    /// AVX-512 takes a last, zero-padded quad for the `nb % 4` leftover blocks, and
    /// none for prompts, which read the blocks themselves (`avx512_rows16`).
    pub(crate) fn quads(self, n: usize, nb: usize) -> usize {
        let _ = (n, nb); // unused on targets without a quad engine
        match self {
            #[cfg(target_arch = "x86_64")]
            Engine::Avx2(_) => n * (nb / 4),
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512(_) if n > 1 => 0,
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512(_) => n * nb.div_ceil(4),
            _ => 0,
        }
    }

    /// Quantises `x` (whole blocks) into `out` (one [`Q8Act`] per 32 values), and
    /// into `quads` if the engine uses them (rows of `nb` blocks).
    pub(crate) fn quantize(self, x: &[f32], nb: usize, out: &mut [Q8Act], quads: &mut [Q8Quad]) {
        let _ = (nb, &quads); // unused on targets without a quad engine
        match self {
            #[cfg(target_arch = "x86_64")]
            Engine::Avx2(t) => {
                t.quantize(x, out);
                act::build_quads(out, nb, quads);
            }
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512(t) => {
                t.quantize(x, out);
                if !quads.is_empty() {
                    act::build_quads(out, nb, quads);
                }
            }
            _ => act::quantize(x, out),
        }
    }

    /// Rows `part.r0..part.r1` of `y = x · Wᵀ`. A matrix in a layout this path does
    /// not read for the product ([`Engine::reads_layout`]) has the part's rows
    /// de-interleaved into a buffer first.
    pub(crate) fn rows(self, w: &Matrix<'_>, acts: &Acts<'_>, part: &mut OutRows<'_>) {
        if w.layout != Layout::Rows && !self.reads_layout(w, acts, part.n()) {
            let rb = w.row_bytes();
            let mut buf = vec![0u8; (part.r1 - part.r0) * rb];
            layout::rows_into(w.layout, w.data, rb, part.r0, &mut buf);
            let plain = Matrix {
                layout: Layout::Rows,
                data: &buf,
                rows: part.r1 - part.r0,
                ..*w
            };
            return self.rows(&plain, acts, &mut part.renumbered());
        }
        match self {
            Engine::Scalar => scalar::rows(w, acts, part),
            #[cfg(target_arch = "x86_64")]
            Engine::Avx2(t) => t.rows(w, acts, part),
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512(t) => t.rows(w, acts, part),
            #[cfg(target_arch = "aarch64")]
            Engine::Neon(t) => t.rows(w, acts, part),
        }
    }
}

impl Engine {
    /// Whether this path's kernel for a product of `n` activation rows with `w`
    /// (the activations as in `acts`) reads `w.layout` from the file as it is: the
    /// AVX-512 kernels read `r16` (`avx512_r16`, the AMX tiles' `rows_r16`) for every
    /// product but the f32 prompt products of F16/BF16 weights; AVX2 reads it for
    /// generation (`avx2_r16`).
    pub(crate) fn reads_layout(self, w: &Matrix<'_>, acts: &Acts<'_>, n: usize) -> bool {
        let _ = (acts, n);
        match (self, w.layout) {
            (_, Layout::Rows) => true,
            #[cfg(target_arch = "x86_64")]
            (Engine::Avx2(_), Layout::R16) => n == 1,
            #[cfg(target_arch = "x86_64")]
            (Engine::Avx512(_), Layout::R16) => {
                n == 1 || w.dtype == DType::F32 || !acts.xb.is_empty()
            }
            _ => false,
        }
    }
}

/// The small vector loops of a forward pass (attention for one query, SwiGLU),
/// compiled for a kernel path: `Copy` and shareable across the pool's threads, unlike
/// the [`Cpu`](super::Cpu) it comes from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VecOps(pub(crate) Engine);

impl VecOps {
    /// One query's attention: `out = softmax(scale·K·q)·V` over the first `sc.len()`
    /// cached positions (`keys`, `vals`: `[positions, q.len()]` rows), with `sc` as
    /// the scores' scratch. Vectorised for this path.
    ///
    /// # Panics
    /// If `keys` or `vals` hold fewer than `sc.len()` rows or `out.len() != q.len()`.
    pub(crate) fn attend(
        &self,
        q: &[f32],
        keys: &[f32],
        vals: &[f32],
        scale: f32,
        sc: &mut [f32],
        out: &mut [f32],
    ) {
        match self.0 {
            // SAFETY: the engine exists only if the CPU has its features.
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512(_) => unsafe { vecops::attend_avx512(q, keys, vals, scale, sc, out) },
            // SAFETY: as above; AVX2 implies the FMA the token also checked.
            #[cfg(target_arch = "x86_64")]
            Engine::Avx2(_) => unsafe { vecops::attend_avx2(q, keys, vals, scale, sc, out) },
            _ => vecops::attend_body(q, keys, vals, scale, sc, out),
        }
    }

    /// Whether [`VecOps::attend_f16`] reads an f16 cache as it is on this path (x86
    /// with F16C); elsewhere the cache is converted to f32 for attention first.
    pub(crate) fn reads_f16(&self) -> bool {
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512(_) | Engine::Avx2(_) => true,
            _ => false,
        }
    }

    /// [`VecOps::attend`] over f16 keys and values, widened in registers.
    ///
    /// # Panics
    /// As [`VecOps::attend`], and where [`VecOps::reads_f16`] does not hold.
    pub(crate) fn attend_f16(
        &self,
        q: &[f32],
        keys: &[half::f16],
        vals: &[half::f16],
        scale: f32,
        sc: &mut [f32],
        out: &mut [f32],
    ) {
        match self.0 {
            // SAFETY: both x86 engines exist only if the CPU has AVX2, FMA and F16C.
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512(_) | Engine::Avx2(_) => unsafe {
                vecops::attend_f16_f16c(q, keys, vals, scale, sc, out)
            },
            _ => {
                let _ = (q, keys, vals, scale, sc, out);
                panic!("attend_f16 on a path that does not read f16 (reads_f16)")
            }
        }
    }

    /// Causal attention of a run of queries of one head at consecutive positions, in
    /// blocks on this path's f32 matrix kernels: see `attend::attend_run`.
    pub(crate) fn attend_run(
        &self,
        run: &super::attend::Run<'_>,
        scratch: &mut [f32],
        emit: &mut dyn FnMut(usize, &[f32]),
    ) {
        super::attend::attend_run(self.0, run, scratch, emit);
    }

    /// `dst = src` widened from f16 (exact), vectorised where the path has F16C.
    ///
    /// # Panics
    /// If the lengths differ.
    pub(crate) fn widen_f16(&self, src: &[half::f16], dst: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        match self.0 {
            // SAFETY: both x86 engines exist only if the CPU has F16C (and AVX).
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512(_) | Engine::Avx2(_) => unsafe { vecops::widen_f16_f16c(src, dst) },
            _ => src.convert_to_f32_slice(dst),
        }
    }

    /// SwiGLU in place: `up[i] = silu(gate[i])·up[i]`, vectorised for this path.
    ///
    /// # Panics
    /// If the lengths differ.
    pub(crate) fn swiglu(&self, up: &mut [f32], gate: &[f32]) {
        match self.0 {
            // SAFETY: as in `attend`.
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512(_) => unsafe { vecops::swiglu_avx512(up, gate) },
            // SAFETY: as in `attend`.
            #[cfg(target_arch = "x86_64")]
            Engine::Avx2(_) => unsafe { vecops::swiglu_avx2(up, gate) },
            _ => vecops::swiglu_body(up, gate),
        }
    }
}
