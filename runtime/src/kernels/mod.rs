//! CPU matrix kernels: `y = x · Wᵀ` for every weight dtype, with a portable scalar
//! reference and SIMD paths chosen once at run time.
//!
//! * [`matmul_ref`] (module `scalar`) is the reference and the `no_std` fallback.
//! * `avx2` (AVX2 + FMA + F16C), `avx512` (AVX-512 F/BW/VL/DQ + VNNI) and `neon`
//!   (aarch64) compute the same functions; tests force every path the CPU has and
//!   compare it with the reference.
//! * Quantised weights (Q8_0, Q4_0, Q4_1) are never dequantised on the hot path: the
//!   activations are quantised per block of 32 to 8 bits (ggml's `block_q8_0`, or
//!   `block_q8_1` with `s = d·Σq` for Q4_1) and each block is an integer dot product
//!   scaled by `d_w·d_x`, exactly as ggml's `vec_dot_q4_0_q8_0` and friends.
//! * A [`Cpu`] holds the chosen path (`LLMRT_KERNEL` can force one), the activation
//!   scratch and (with `std`) a small persistent thread pool ([`pool`]) that splits
//!   the weight rows: a hand-off costs about a microsecond against rayon's five, which
//!   matters for the hundreds of small products of each generated token. Nothing is
//!   allocated per call once the scratch has grown to the largest shape.

/// Rows `$out.r0..$out.r1` of `y = x · Wᵀ` one weight row at a time against every
/// activation: `$out.set(i, r, $dot(row_r, &$v[i·$len..(i+1)·$len]))`.
macro_rules! each_row {
    ($w:expr, $out:expr, $dot:path, $v:expr, $len:expr) => {{
        let (v, len) = ($v, $len);
        for r in $out.r0..$out.r1 {
            let row = $w.row(r);
            for i in 0..$out.n() {
                $out.set(i, r, $dot(row, &v[i * len..(i + 1) * len]));
            }
        }
    }};
}

/// Defines `fn $name(w, acts, out)`: rows `out.r0..out.r1` of `y = x · Wᵀ`, one
/// weight row at a time against every activation, with one dot function per dtype:
/// `dot(row_bytes, x_i)` for floats, `dot(row_bytes, a_i)` over 32-blocks (Q8_0/Q8_1
/// activations), `dot(row_bytes, k_i)` over 256-blocks (Q8_K activations). The match
/// has no wildcard, so a dtype added to the format's table fails to compile here until
/// every path lists its dot. The dot functions check their slice lengths. Shared by
/// every path, each with its own `#[target_feature]` attributes.
macro_rules! rows_fn {
    ($(#[$attr:meta])* $vis:vis fn $name:ident {
        float: $($f:ident => $fdot:path),+;
        q8: $($q:ident => $qdot:path),+;
        q8k: $($k:ident => $kdot:path),+ $(;)?
    }) => {
        $(#[$attr])*
        $vis fn $name(
            w: &$crate::kernels::Matrix<'_>,
            acts: &$crate::kernels::Acts<'_>,
            out: &mut $crate::kernels::OutRows<'_>,
        ) {
            use llm_format::DType;
            let cols = w.cols;
            match w.dtype {
                $( DType::$f => each_row!(w, out, $fdot, acts.x, cols), )+
                $( DType::$q => each_row!(w, out, $qdot, acts.a, cols / $crate::kernels::act::QK), )+
                $( DType::$k => each_row!(w, out, $kdot, acts.k, cols / $crate::kernels::act::QK_K), )+
            }
        }
    };
}

/// Every row of `out` against every activation, in tiles of `$rp` weight rows × `$tb`
/// activations (then 4-row and 1-row tiles for the leftover rows, 1-activation tiles
/// for the leftover activations): each weight vector loaded is used `$tb` times and
/// each activation vector `$rp` times. For one activation
/// (generation) the tiles are `$g1` rows × 1 instead: how many weight rows stream at
/// once is what matters there (PERF.md, "What changed since the 2026-11-28 figures").
#[allow(unused_macros)] // not every target has a path that uses it
macro_rules! drive {
    ($w:ident, $get:expr, $out:ident, $tile:ident, $rp:literal x $tb:literal, $g1:literal) => {{
        let n = $out.n();
        let get = $get;
        let mut r = $out.r0;
        macro_rules! group {
            ($r:literal) => {{
                let rows: [&[u8]; $r] = core::array::from_fn(|j| $w.row(r + j));
                let mut i = 0;
                while i + $tb <= n {
                    let v = $tile::<$r, $tb>(rows, core::array::from_fn(|k| get(i + k)));
                    for (j, vj) in v.iter().enumerate() {
                        for (k, vk) in vj.iter().enumerate() {
                            $out.set(i + k, r + j, *vk);
                        }
                    }
                    i += $tb;
                }
                while i < n {
                    let v = $tile::<$r, 1>(rows, [get(i)]);
                    for (j, vj) in v.iter().enumerate() {
                        $out.set(i, r + j, vj[0]);
                    }
                    i += 1;
                }
            }};
        }
        let g1: usize = $g1;
        while n == 1 && g1 > 1 && r + g1 <= $out.r1 {
            group!($g1);
            r += g1;
        }
        let rp: usize = $rp;
        while n > 1 && rp > 4 && r + rp <= $out.r1 {
            group!($rp);
            r += rp;
        }
        while (g1 > 1 || n > 1) && r + 4 <= $out.r1 {
            group!(4);
            r += 4;
        }
        while r < $out.r1 {
            group!(1);
            r += 1;
        }
    }};
}

/// The driver of a prompt product over unpacked quantised weights (`packed` in the
/// AVX2 and AVX-512 paths): rows of `$out` in groups of 4, each group's weights in
/// column chunks of up to `$kq` quads unpacked once (`$unpack`, with `$row` the weight
/// row's bytes, asserted to be `$rb` long, and `$g` the quad) — rows missing from the last group stay
/// `$zero` and add nothing — then `$sweep` runs the activation tiles over the chunk.
/// `$emit(i, v, t)` writes tile results `v[j][k]` for rows `r + j` and activations
/// `i + k < i + t` (set by the first chunk, added by later ones); `$after` runs once
/// per group (with `$r`, `$here` = rows in the group) after its chunks.
#[allow(unused_macros)] // not every target has a path that uses it
macro_rules! packed_rows {
    (
        $w:ident, $out:ident, nq: $nq:expr, kq: $kq:expr, zero: $zero:expr, width: $tw:expr,
        row_bytes: $rb:expr,
        unpack |$row:ident, $g:ident| $unpack:expr,
        sweep |$chunk:ident, $c0:ident, $c1:ident, $emit:ident| $sweep:block,
        after |$r:ident, $here:ident| $after:block
    ) => {{
        let nq: usize = $nq;
        let mut pack = [[$zero; $kq]; 4];
        let mut $r = $out.r0;
        while $r < $out.r1 {
            // The last group may have fewer than 4 rows: the missing ones stay zero
            // (scale 0, so they add nothing) and are not written.
            let $here = ($out.r1 - $r).min(4);
            for pj in pack.iter_mut().skip($here) {
                *pj = [$zero; $kq];
            }
            for $c0 in (0..nq).step_by($kq) {
                let $c1 = ($c0 + $kq).min(nq);
                for (j, pj) in pack.iter_mut().enumerate().take($here) {
                    let $row = $w.row($r + j);
                    assert_eq!($row.len(), $rb);
                    for ($g, u) in ($c0..$c1).zip(pj.iter_mut()) {
                        *u = $unpack;
                    }
                }
                let $chunk = &pack;
                let mut $emit = |i: usize, v: [[f32; $tw]; 4], t: usize| {
                    for (j, vj) in v.iter().enumerate().take($here) {
                        for (k, vk) in vj.iter().take(t).enumerate() {
                            if $c0 == 0 {
                                $out.set(i + k, $r + j, *vk);
                            } else {
                                $out.add(i + k, $r + j, *vk);
                            }
                        }
                    }
                };
                $sweep
            }
            $after
            $r += 4;
        }
    }};
}

mod act;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_k;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_k;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(feature = "std")]
pub mod pool;
mod scalar;
mod stream;
mod vecops;

use alloc::vec::Vec;
use core::fmt;
use llm_format::DType;

pub use scalar::matmul_ref;
pub use stream::stream_sum;

use act::{Q8Act, Q8Quad, Q8K};
use llm_format::ActQuant;

/// Why a [`Matrix`] could not be built. `Display` names the problem and the numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelError {
    /// `rows·cols` elements of `dtype` need `expected` bytes but `got` were given.
    Length {
        /// The weight dtype.
        dtype: DType,
        /// Bytes that `rows·cols` elements need.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// A block dtype needs `cols` to be a multiple of 32.
    PartialBlock {
        /// The weight dtype.
        dtype: DType,
        /// The number of columns given.
        cols: usize,
    },
    /// `rows·cols` (or its byte size) overflows `usize`.
    Overflow {
        /// Rows given.
        rows: usize,
        /// Columns given.
        cols: usize,
    },
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Length {
                dtype,
                expected,
                got,
            } => write!(
                f,
                "{dtype} weight matrix needs {expected} bytes but {got} were given"
            ),
            KernelError::PartialBlock { dtype, cols } => write!(
                f,
                "{dtype} weight matrix has {cols} columns, not a multiple of the block size 32"
            ),
            KernelError::Overflow { rows, cols } => {
                write!(
                    f,
                    "weight matrix of {rows}x{cols} overflows the address space"
                )
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for KernelError {}

/// A weight matrix `[rows, cols]`, row-major in `dtype`'s bytes (rows = out features,
/// cols = in features); for block dtypes `cols % 32 == 0`. `data` may have any
/// alignment (it comes from an mmap or a caller's buffer).
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    /// Storage type of the elements.
    pub dtype: DType,
    /// `rows · row_bytes` bytes, little-endian.
    pub data: &'a [u8],
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
}

impl<'a> Matrix<'a> {
    /// Checks that `data` holds exactly `rows × cols` elements of `dtype`.
    pub fn new(
        dtype: DType,
        data: &'a [u8],
        rows: usize,
        cols: usize,
    ) -> Result<Matrix<'a>, KernelError> {
        if !cols.is_multiple_of(dtype.block_len()) {
            return Err(KernelError::PartialBlock { dtype, cols });
        }
        let expected = rows
            .checked_mul(cols / dtype.block_len())
            .and_then(|b| b.checked_mul(dtype.block_bytes()))
            .ok_or(KernelError::Overflow { rows, cols })?;
        if data.len() != expected {
            return Err(KernelError::Length {
                dtype,
                expected,
                got: data.len(),
            });
        }
        Ok(Matrix {
            dtype,
            data,
            rows,
            cols,
        })
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.dtype.block_len() * self.dtype.block_bytes()
    }

    /// The bytes of row `r`.
    ///
    /// # Panics
    /// If `r >= rows` or the fields were changed after [`Matrix::new`] so that `data`
    /// is too short.
    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// Panics unless the public fields are still consistent (they are `pub`, so a
    /// caller may have changed them after [`Matrix::new`]).
    fn check(&self) {
        if let Err(e) = Matrix::new(self.dtype, self.data, self.rows, self.cols) {
            panic!("inconsistent Matrix: {e}");
        }
    }
}

/// Panics unless `x` and `y` fit `w` and `n` (the documented slice contract).
fn check_shapes(w: &Matrix<'_>, x: &[f32], n: usize, y: &[f32]) {
    w.check();
    assert_eq!(
        Some(x.len()),
        n.checked_mul(w.cols),
        "matmul: x must hold n·cols = {n}·{} values",
        w.cols
    );
    assert_eq!(
        Some(y.len()),
        n.checked_mul(w.rows),
        "matmul: y must hold n·rows = {n}·{} values",
        w.rows
    );
}

/// An instruction-set path for the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// Portable Rust, the reference (and the only path without a known SIMD ISA).
    Scalar,
    /// x86-64 AVX2 + FMA + F16C (256-bit).
    Avx2,
    /// x86-64 AVX-512 F/BW/VL/DQ with VNNI integer dots, plus FMA and F16C (512-bit).
    Avx512,
    /// aarch64 NEON (no `dotprod` variant yet: its intrinsics are unstable in Rust).
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
enum Engine {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2(avx2::Avx2),
    #[cfg(target_arch = "x86_64")]
    Avx512(avx512::Avx512),
    #[cfg(target_arch = "aarch64")]
    Neon(neon::Neon),
}

impl Engine {
    fn for_path(path: KernelPath) -> Option<Engine> {
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

    fn path(self) -> KernelPath {
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

    /// Quads of 4 blocks per activation row this engine wants (`n` rows of `nb`):
    /// AVX-512 takes a last, zero-padded quad for the `nb % 4` leftover blocks.
    fn quads(self, n: usize, nb: usize) -> usize {
        let _ = (n, nb); // unused on targets without a quad engine
        match self {
            #[cfg(target_arch = "x86_64")]
            Engine::Avx2(_) => n * (nb / 4),
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512(_) => n * nb.div_ceil(4),
            _ => 0,
        }
    }

    /// Quantises `x` (whole blocks) into `out` (one [`Q8Act`] per 32 values), and
    /// into `quads` if the engine uses them (rows of `nb` blocks).
    fn quantize(self, x: &[f32], nb: usize, out: &mut [Q8Act], quads: &mut [Q8Quad]) {
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
                act::build_quads(out, nb, quads);
            }
            _ => act::quantize(x, out),
        }
    }

    /// Rows `part.r0..part.r1` of `y = x · Wᵀ`.
    fn rows(self, w: &Matrix<'_>, acts: &Acts<'_>, part: &mut OutRows<'_>) {
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

/// The activations of one product in every form the kernels read: the f32 rows (float
/// weights), their 32-blocks and quads (weights whose `act_quant` is Q8_0/Q8_1) and
/// their 256-blocks (Q8_K). Only the form the weight type needs is filled; the others
/// are empty.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Acts<'a> {
    /// `n` rows of `cols` values.
    pub(crate) x: &'a [f32],
    /// `n · cols/32` blocks.
    pub(crate) a: &'a [Q8Act],
    /// The blocks rearranged in quads of 4 (engines that use them).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only x86-64 paths read it
    pub(crate) quads: &'a [Q8Quad],
    /// `n · cols/256` super-blocks.
    pub(crate) k: &'a [Q8K],
}

/// The outputs of rows `r0..r1` for all `n` activations: `y[i·rows + r]`.
///
/// Several of these over disjoint row ranges of one `y` are written by several
/// threads at once, hence the raw pointer; every write is bounds-checked.
pub(crate) struct OutRows<'y> {
    ptr: *mut f32,
    /// Rows of the whole matrix (the stride between activations in `y`).
    rows: usize,
    /// Activations.
    n: usize,
    /// First row of this part.
    pub(crate) r0: usize,
    /// One past the last row of this part.
    pub(crate) r1: usize,
    _y: core::marker::PhantomData<&'y mut [f32]>,
}

impl<'y> OutRows<'y> {
    /// All rows of `y` (`y.len() == n·rows`).
    fn whole(y: &'y mut [f32], rows: usize, n: usize) -> OutRows<'y> {
        assert_eq!(Some(y.len()), rows.checked_mul(n));
        OutRows {
            ptr: y.as_mut_ptr(),
            rows,
            n,
            r0: 0,
            r1: rows,
            _y: core::marker::PhantomData,
        }
    }

    /// Rows `r0..r1` of the same `y`.
    ///
    /// # Safety
    /// No two `OutRows` alive at the same time may cover a common row, and the
    /// `OutRows` this comes from must not be written while the part is alive.
    #[cfg(feature = "std")]
    unsafe fn part(&self, r0: usize, r1: usize) -> OutRows<'y> {
        assert!(self.r0 <= r0 && r0 <= r1 && r1 <= self.r1);
        OutRows {
            ptr: self.ptr,
            rows: self.rows,
            n: self.n,
            r0,
            r1,
            _y: core::marker::PhantomData,
        }
    }

    /// Activations.
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// `y[i·rows + r] = v`.
    ///
    /// # Panics
    /// If `r` is outside `r0..r1` or `i >= n`.
    #[inline(always)]
    pub(crate) fn set(&mut self, i: usize, r: usize, v: f32) {
        assert!(i < self.n && r >= self.r0 && r < self.r1);
        // SAFETY: i < n and r < rows, so the index is inside the `n·rows` values of
        // `y` (checked in `whole`); no other live `OutRows` covers row r (`part`).
        unsafe { *self.ptr.add(i * self.rows + r) = v };
    }

    /// `y[i·rows + r] += v`.
    ///
    /// # Panics
    /// As [`OutRows::set`].
    #[inline(always)]
    #[allow(dead_code)] // not every target has a path that uses it
    pub(crate) fn add(&mut self, i: usize, r: usize, v: f32) {
        assert!(i < self.n && r >= self.r0 && r < self.r1);
        // SAFETY: as in `set`.
        unsafe { *self.ptr.add(i * self.rows + r) += v };
    }
}

// SAFETY: an `OutRows` is a unique borrow of its rows of `y` (see `part`), like a
// `&mut [f32]`, which is `Send`.
unsafe impl Send for OutRows<'_> {}
// SAFETY: through a shared `&OutRows` nothing can be written (`set` takes `&mut`,
// `part` is unsafe with the disjointness contract), so sharing it is sound.
unsafe impl Sync for OutRows<'_> {}

/// Per-context kernel state: the chosen SIMD path, the thread pool, and the scratch
/// for quantised activations. No allocation per call once the scratch has grown.
pub struct Cpu {
    engine: Engine,
    threads: usize,
    /// Quantised activations, `n · cols/32` blocks of the current call.
    act: Vec<Q8Act>,
    /// The same rearranged in quads of 4 blocks, for the engines that use them.
    quads: Vec<Q8Quad>,
    /// Quantised activations, `n · cols/256` super-blocks (Q8_K weight types).
    k: Vec<Q8K>,
    #[cfg(feature = "std")]
    pool: Option<pool::Pool>,
}

impl fmt::Debug for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cpu")
            .field("path", &self.path())
            .field("threads", &self.threads)
            .finish()
    }
}

// A context moves with the model state it belongs to, across threads.
const _: () = {
    const fn send<T: Send>() {}
    send::<Cpu>();
};

/// Weight bytes (times activations, up to 8) below which a part is not worth its
/// hand-off (about a microsecond; `dispatch` in `benches/kernels.rs`).
#[cfg(feature = "std")]
const MIN_BYTES_PER_PART: usize = 16 * 1024;

/// Weight bytes (times activations, up to 8) per part for big products: a few
/// microseconds of work, so the caller never waits long for the last part.
#[cfg(feature = "std")]
const BYTES_PER_PART: usize = 64 * 1024;

impl Cpu {
    /// A context on the fastest path this CPU has (with `std`: run-time detection,
    /// overridden by `LLMRT_KERNEL=scalar|avx2|avx512|neon` when that path is
    /// available; without `std`: the features enabled at compile time), running each
    /// product on `threads` threads (`0` means 1; ignored without `std`).
    pub fn new(threads: usize) -> Cpu {
        #[cfg(feature = "std")]
        let forced = std::env::var("LLMRT_KERNEL")
            .ok()
            .and_then(|s| KernelPath::from_name(&s))
            .and_then(Engine::for_path);
        #[cfg(not(feature = "std"))]
        let forced = None;
        let engine = forced
            .unwrap_or_else(|| Engine::for_path(KernelPath::best()).unwrap_or(Engine::Scalar));
        Cpu::with_engine(threads, engine)
    }

    /// A context on `path`, or `None` if this CPU (or build) lacks it.
    pub fn with_path(threads: usize, path: KernelPath) -> Option<Cpu> {
        Engine::for_path(path).map(|e| Cpu::with_engine(threads, e))
    }

    fn with_engine(threads: usize, engine: Engine) -> Cpu {
        #[cfg(feature = "std")]
        let threads = threads.max(1);
        #[cfg(not(feature = "std"))]
        let threads = {
            let _ = threads;
            1
        };
        Cpu {
            engine,
            threads,
            act: Vec::new(),
            quads: Vec::new(),
            k: Vec::new(),
            #[cfg(feature = "std")]
            pool: (threads > 1).then(|| pool::Pool::new(threads - 1)),
        }
    }

    /// The path this context runs.
    pub fn path(&self) -> KernelPath {
        self.engine.path()
    }

    /// Threads each product is split over (1 without `std`).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(k)` for every `k` in `0..parts`, on the pool's threads and the caller
    /// (or on the caller alone without `std` or with one thread). For work other than
    /// matrix products that splits into independent parts (attention heads).
    pub fn parallel(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        #[cfg(feature = "std")]
        if let Some(pool) = &self.pool {
            if parts > 1 && parts <= pool::MAX_PARTS {
                pool.run(parts, f);
                return;
            }
        }
        (0..parts).for_each(f);
    }

    /// `y[i·rows + r] = Σ_c W[r, c] · x[i·cols + c]` for `i in 0..n`, that is
    /// `y = x · Wᵀ` with `x` as `[n, cols]` and `y` as `[n, rows]` (`n = 1` for
    /// generation, the prompt length for prompts). Same semantics as [`matmul_ref`].
    ///
    /// # Panics
    /// If `x.len() != n·w.cols`, `y.len() != n·w.rows`, or `w`'s fields disagree with
    /// its data (they are checked by [`Matrix::new`]).
    pub fn matmul(&mut self, w: &Matrix<'_>, x: &[f32], n: usize, y: &mut [f32]) {
        check_shapes(w, x, n, y);
        let engine = self.engine;
        let filled = self.quantize_input(w, x, n);
        let acts = self.acts(x, filled);
        let mut out = OutRows::whole(y, w.rows, n);
        #[cfg(feature = "std")]
        if let Some(pool) = &self.pool {
            let parts = self.parts_for(w, n);
            if parts > 1 {
                return split_rows(pool, parts, engine, w, &acts, &out);
            }
        }
        engine.rows(w, &acts, &mut out);
    }

    /// `ys[i] = x·Wᵢᵀ` for up to four matrices that read the same input (q, k, v;
    /// gate, up), all of one dtype and width: the input is quantised once and the rows
    /// of every matrix go to the threads as one job instead of one hand-off each.
    /// Each output is what [`Cpu::matmul`] gives for its matrix alone.
    ///
    /// # Panics
    /// As [`Cpu::matmul`] for each pair, and if `ws.len() != ys.len()`.
    pub fn matmul_many(&mut self, ws: &[Matrix<'_>], x: &[f32], n: usize, ys: &mut [&mut [f32]]) {
        assert_eq!(ws.len(), ys.len(), "matmul_many: one output per matrix");
        let uniform = ws
            .windows(2)
            .all(|p| p[0].dtype == p[1].dtype && p[0].cols == p[1].cols);
        if !uniform || ws.len() < 2 || ws.len() > 4 {
            for (w, y) in ws.iter().zip(ys.iter_mut()) {
                self.matmul(w, x, n, y);
            }
            return;
        }
        for (w, y) in ws.iter().zip(ys.iter()) {
            check_shapes(w, x, n, y);
        }
        let engine = self.engine;
        let filled = self.quantize_input(&ws[0], x, n);
        let acts = self.acts(x, filled);
        let mut outs: [Option<OutRows<'_>>; 4] = [None, None, None, None];
        for ((o, w), y) in outs.iter_mut().zip(ws).zip(ys.iter_mut()) {
            *o = Some(OutRows::whole(y, w.rows, n));
        }
        #[cfg(feature = "std")]
        if let Some(pool) = &self.pool {
            let mut parts = [0usize; 4];
            for (p, w) in parts.iter_mut().zip(ws) {
                // A small matrix is one part (parts_for says 0 or 1 for "no split").
                *p = self.parts_for(w, n).max(1);
            }
            let total: usize = parts.iter().sum();
            if total > 1 && total <= pool::MAX_PARTS {
                let outs = &outs;
                pool.run(total, &|k| {
                    // Part k belongs to the matrix whose range of part numbers holds it.
                    let (mut i, mut kk) = (0, k);
                    while kk >= parts[i] {
                        kk -= parts[i];
                        i += 1;
                    }
                    let (w, rows) = (&ws[i], ws[i].rows);
                    let per = rows.div_ceil(parts[i]).next_multiple_of(4);
                    let (r0, r1) = ((kk * per).min(rows), ((kk + 1) * per).min(rows));
                    if let Some(out) = &outs[i] {
                        // SAFETY: within matrix i the ranges kk·per..(kk+1)·per are
                        // disjoint, every part runs once, different matrices write
                        // different outputs, and `outs` is not written while parts live
                        // (`pool.run` returns only when all are done).
                        let mut part = unsafe { out.part(r0, r1) };
                        engine.rows(w, &acts, &mut part);
                    }
                });
                return;
            }
        }
        for (w, out) in ws.iter().zip(outs.iter_mut()) {
            if let Some(out) = out {
                engine.rows(w, &acts, out);
            }
        }
    }

    /// The vector loops between the products ([`VecOps`]) on this context's path:
    /// a copy that threads can share.
    pub(crate) fn vecops(&self) -> VecOps {
        VecOps(self.engine)
    }

    /// Quantises `x` into the scratch as `w`'s dtype asks (`act_quant`; nothing for
    /// float weights) and says how much of each scratch it filled.
    fn quantize_input(&mut self, w: &Matrix<'_>, x: &[f32], n: usize) -> Filled {
        let engine = self.engine;
        match w.dtype.act_quant() {
            ActQuant::Float => Filled::default(),
            ActQuant::Q8_0 | ActQuant::Q8_1 => {
                let nb = w.cols / act::QK;
                let nq = engine.quads(n, nb);
                grow(&mut self.act, n * nb, Q8Act::ZERO);
                grow(&mut self.quads, nq, Q8Quad::ZERO);
                let (act, quads) = (&mut self.act[..n * nb], &mut self.quads[..nq]);
                let qpr = nq.checked_div(n).unwrap_or(0); // quads per row
                let (sa, sq) = (SharedMut::new(act), SharedMut::new(quads));
                self.by_rows(n, nb, &|i0, i1| {
                    // SAFETY: rows i0..i1 of the blocks and quads belong to this part
                    // alone (`by_rows` gives disjoint ranges), and both buffers
                    // outlive the call.
                    let (a, q) = unsafe {
                        (
                            sa.slice(i0 * nb, (i1 - i0) * nb),
                            sq.slice(i0 * qpr, (i1 - i0) * qpr),
                        )
                    };
                    engine.quantize(&x[i0 * w.cols..i1 * w.cols], nb, a, q);
                });
                Filled {
                    blocks: n * nb,
                    quads: nq,
                    supers: 0,
                }
            }
            ActQuant::Q8K => {
                let nb = w.cols / act::QK_K;
                grow(&mut self.k, n * nb, Q8K::ZERO);
                let sk = SharedMut::new(&mut self.k[..n * nb]);
                self.by_rows(n, nb, &|i0, i1| {
                    // SAFETY: as above, rows i0..i1 of the super-blocks.
                    let k = unsafe { sk.slice(i0 * nb, (i1 - i0) * nb) };
                    act::quantize_k(&x[i0 * w.cols..i1 * w.cols], k);
                });
                Filled {
                    blocks: 0,
                    quads: 0,
                    supers: n * nb,
                }
            }
        }
    }

    /// The activations `x` in every form the kernels read, the quantised ones from the
    /// scratch as [`Cpu::quantize_input`] filled it.
    fn acts<'s>(&'s self, x: &'s [f32], f: Filled) -> Acts<'s> {
        Acts {
            x,
            a: &self.act[..f.blocks],
            quads: &self.quads[..f.quads],
            k: &self.k[..f.supers],
        }
    }

    /// Runs `f(i0, i1)` over disjoint ranges of the `n` activation rows that cover
    /// them all: one range per thread for a prompt (rows quantise independently), the
    /// caller alone for one row or without a pool.
    fn by_rows(&self, n: usize, nb: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        #[cfg(feature = "std")]
        if let Some(pool) = self.pool.as_ref().filter(|_| n >= 2 && nb > 0) {
            let parts = self.threads.min(n);
            let per = n.div_ceil(parts);
            pool.run(parts, &|k| f((k * per).min(n), ((k + 1) * per).min(n)));
            return;
        }
        let _ = nb;
        f(0, n);
    }

    /// How many parts to split a product into: one per thread once a part is worth
    /// its hand-off, more for big products. Parts are claimed dynamically, so a thread
    /// that starts late (or is descheduled) takes fewer, and small parts keep the wait
    /// for the last one short.
    #[cfg(feature = "std")]
    fn parts_for(&self, w: &Matrix<'_>, n: usize) -> usize {
        let bytes = w.data.len().saturating_mul(n.min(8));
        (bytes / BYTES_PER_PART)
            .max((bytes / MIN_BYTES_PER_PART).min(self.threads))
            .min(w.rows.div_ceil(4))
            .min(pool::MAX_PARTS)
    }
}

/// How many of each kind of quantised activation block the last
/// [`Cpu::quantize_input`] wrote.
#[derive(Clone, Copy, Debug, Default)]
struct Filled {
    blocks: usize,
    quads: usize,
    supers: usize,
}

/// Grows `v` to at least `len` elements (scratch: never shrinks).
fn grow<T: Clone>(v: &mut Vec<T>, len: usize, zero: T) {
    if v.len() < len {
        v.resize(len, zero);
    }
}

/// A buffer that parallel parts write in disjoint places (rows of a prompt, heads):
/// the raw pointer and length of a `&mut [T]`, handed to every part, each of which
/// takes only its own range through [`SharedMut::slice`].
pub(crate) struct SharedMut<T>(*mut T, usize);

impl<T> Clone for SharedMut<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedMut<T> {}
// SAFETY: a `SharedMut` only hands out `&mut` ranges through the unsafe `slice`, whose
// callers guarantee that no two live ranges overlap (like a `&mut [T]` split in parts),
// so sending or sharing it is as safe as sending the parts.
unsafe impl<T: Send> Sync for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The whole of `buf`; it must outlive every slice taken.
    pub(crate) fn new(buf: &mut [T]) -> SharedMut<T> {
        SharedMut(buf.as_mut_ptr(), buf.len())
    }

    /// Elements `start..start + len` of the buffer.
    ///
    /// # Panics
    /// If the range is not inside the buffer.
    ///
    /// # Safety
    /// The buffer outlives the slice, and no other live slice covers any of these
    /// elements.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start.checked_add(len).is_some_and(|end| end <= self.1));
        // SAFETY: in bounds (checked); exclusive and alive by the caller's contract.
        unsafe { core::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

/// The small vector loops of a forward pass (attention for one query, SwiGLU),
/// compiled for a kernel path: `Copy` and shareable across the pool's threads, unlike
/// the [`Cpu`] it comes from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VecOps(Engine);

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

/// Runs `parts` disjoint row ranges of `out` on the pool and the calling thread.
#[cfg(feature = "std")]
fn split_rows(
    pool: &pool::Pool,
    parts: usize,
    engine: Engine,
    w: &Matrix<'_>,
    acts: &Acts<'_>,
    out: &OutRows<'_>,
) {
    // Row ranges in multiples of 4 rows (whole cache lines of y for n = 1).
    let rows = w.rows;
    let per = rows.div_ceil(parts).next_multiple_of(4);
    pool.run(parts, &|k| {
        let r0 = (k * per).min(rows);
        let r1 = ((k + 1) * per).min(rows);
        // SAFETY: the ranges k·per..(k+1)·per are disjoint for distinct k, every k in
        // 0..parts runs once, and `out` itself is not written while the parts live
        // (`pool.run` returns only when all parts are done).
        let mut part = unsafe { out.part(r0, r1) };
        engine.rows(w, acts, &mut part);
    });
}
