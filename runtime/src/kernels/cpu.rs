//! [`Cpu`], the front of the kernels: the chosen path, the activation scratch and the
//! thread pool, and how a product is split into parts of rows across the pool.

use super::act::{self, Q8Act, Q8Quad, Q8K};
#[cfg(target_arch = "x86_64")]
use super::amx;
use super::dispatch::{Engine, KernelPath, VecOps};
use super::matrix::check_shapes;
#[cfg(feature = "std")]
use super::pool;
use super::{Acts, Matrix, OutRows, SharedMut};
use alloc::vec::Vec;
use core::fmt;
use llm_format::ActQuant;
use llm_format::DType;
#[cfg(any(feature = "std", target_arch = "x86_64"))]
use llm_format::Layout;

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
    /// Activations rounded to bf16 (F16/BF16 prompts on an engine with bf16 dot
    /// products, F32 prompts on the AMX tiles): `n` rows padded to 32 columns, or the
    /// AMX tiles' layouts.
    xb: Vec<u16>,
    /// Keep f32 products for F16/BF16 weights, and F32 weights off the AMX tiles
    /// ([`Cpu::set_f16_exact`]).
    f16_exact: bool,
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

/// The products that take bf16 dot products where a context has them: prompts over
/// F16 or BF16 weights, and generation over BF16 weights (F16 generation widens to
/// f32 as fast as memory brings the weights; `avx512_bf16`).
fn bf16_dots(dtype: DType, n: usize) -> bool {
    match dtype {
        DType::F16 => n > 1,
        DType::BF16 => n > 0,
        _ => false,
    }
}

/// Weight bytes (times activations, up to 8) below which a part is not worth its
/// hand-off (about a microsecond; `dispatch` in `benches/kernels.rs`).
#[cfg(feature = "std")]
const MIN_BYTES_PER_PART: usize = 16 * 1024;

/// Weight bytes times activations (up to 8) per part for big prompt products: a few
/// microseconds of work, so the caller never waits long for the last part (1 MiB
/// measured 3-5 % slower f32 prompts on a Zen 4: a part of 18 is a thread's 5 %).
#[cfg(feature = "std")]
const BYTES_PER_PART: usize = 64 * 1024;

/// Weight bytes per part for generation (one activation), which streams the weights
/// from memory: long runs of consecutive rows for each thread. Workers claim parts
/// from the back, so each part boundary is a jump the hardware prefetcher has to
/// learn again: 64 KiB parts generated f32 tokens 8 % slower on a Zen 4 (PERF.md,
/// "Huge pages").
#[cfg(feature = "std")]
const GEN_BYTES_PER_PART: usize = 1024 * 1024;

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
            xb: Vec::new(),
            f16_exact: !bf16_by_default(engine),
            #[cfg(feature = "std")]
            pool: (threads > 1).then(|| pool::Pool::new(threads - 1)),
        }
    }

    /// The path this context runs.
    pub fn path(&self) -> KernelPath {
        self.engine.path()
    }

    /// Whether prompts (more than one activation row) with F16 or BF16 weights run on
    /// bf16 dot products: the CPU has them (AVX-512 BF16 on the `avx512` path,
    /// FEAT_BF16 on the `neon` path) and
    /// [`Cpu::set_f16_exact`] did not turn them off. Their activations, and F16
    /// weights, are then rounded to bf16 (relative error at most 2⁻⁸ each, so each
    /// output within `(2·2⁻⁸ + 2⁻¹⁶)·Σ|w||x|` of the f32 products, typically about
    /// `2⁻⁸·sqrt(Σ(w·x)²)`). Generation (one row) keeps the f32 products for F16
    /// weights; BF16 weights take the dot products there too, within the same bound
    /// ([`Cpu::bf16_products`]).
    /// Where the CPU also has AMX tiles, they compute the same products
    /// ([`Cpu::amx_prompts`]).
    pub fn bf16_prompts(&self) -> bool {
        self.engine.has_bf16() && !self.f16_exact
    }

    /// Whether a product of `n` activation rows with `dtype` weights runs on bf16 dot
    /// products here: F16/BF16 prompts and BF16 generation, where
    /// [`Cpu::bf16_prompts`] holds.
    pub fn bf16_products(&self, dtype: DType, n: usize) -> bool {
        self.bf16_prompts() && bf16_dots(dtype, n)
    }

    /// Whether those bf16 prompt products run on the AMX tile unit (`tdpbf16ps`,
    /// Sapphire Rapids and later Xeons, with the operating system's permission)
    /// rather than on `vdpbf16ps`: same roundings, same bounds, about 15 times the
    /// multiply-adds of a core's f32 FMAs. Prompts over F32 weights then take the
    /// tiles too, as three products ([`Cpu::f32_tile_products`]), and so do prompts over
    /// K-quants, dequantised to bf16 ([`Cpu::kquant_tile_products`]).
    pub fn amx_prompts(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        let has = self.engine.amx().is_some();
        #[cfg(not(target_arch = "x86_64"))]
        let has = false;
        has && self.bf16_prompts()
    }

    /// Lets the bf16 prompt products use the AMX tiles where the CPU has them and
    /// `LLMRT_AMX=0` does not turn them off (`true`, the default) or keeps them on
    /// `vdpbf16ps` (`false`): for tests and measurements that compare the two.
    pub fn set_amx(&mut self, on: bool) {
        self.engine = self.engine.with_amx(on);
    }

    /// `true`: F16 and BF16 weights keep f32 activations and f32 products in prompts
    /// too, and so do F32 weights on a CPU with AMX tiles; `false`: bf16 dot products
    /// where the CPU has them ([`Cpu::f32_tile_products`] for F32). A new context starts
    /// with bf16 dot products where they are the faster choice (measured once per
    /// process: at least 1.5 times the multiply-adds per cycle of f32 FMAs, as on
    /// Zen 4/5; not on the Intel Xeon of PERF.md, where `vdpbf16ps` runs at half the
    /// FMA's rate, unless it has AMX tiles, which it uses unless `LLMRT_AMX=0`) or
    /// where `LLMRT_BF16_DOTS=1` asks for them (`=0`: never).
    pub fn set_f16_exact(&mut self, exact: bool) {
        self.f16_exact = exact;
    }

    /// Whether F16/BF16 weights keep f32 products ([`Cpu::set_f16_exact`]).
    pub fn f16_exact(&self) -> bool {
        self.f16_exact
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
    /// generation, the prompt length for prompts). Same semantics as [`matmul_ref`](super::matmul_ref).
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
            let align = self.row_align(w, &acts);
            let parts = self.parts_for(w, n, align);
            if parts > 1 {
                return split_rows(pool, parts, align, engine, w, &acts, &out);
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
            let align = self.row_align(&ws[0], &acts);
            for (p, w) in parts.iter_mut().zip(ws) {
                // A small matrix is one part (parts_for says 0 or 1 for "no split").
                *p = self.parts_for(w, n, align).max(1);
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
                    let (r0, r1) = part_range(kk, parts[i], rows, align);
                    if let Some(out) = &outs[i] {
                        // SAFETY: within matrix i the `part_range`s of distinct kk are
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
            ActQuant::Float => self.round_input(w, x, n),
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
                    ..Filled::default()
                }
            }
            ActQuant::Q8K if self.kquant_tile_products(w, n) => self.round_input(w, x, n),
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
                    supers: n * nb,
                    ..Filled::default()
                }
            }
        }
    }

    /// Rounds `x` to bf16 into the scratch if the product takes bf16 dot products
    /// ([`bf16_dots`]) and the engine has them, or is a prompt over F32 or K-quant
    /// weights that the AMX tiles take ([`Cpu::f32_tile_products`],
    /// [`Cpu::kquant_tile_products`]): `amx`'s layouts where the engine has the tiles
    /// (blocks of 16 activations as the A operand for layout r16, else the B operand;
    /// for F32 the `Hi` parts, then the `Lo` parts, `Amx::parts`), else rows of
    /// `act::bf16_padded(cols)`.
    /// Otherwise leaves everything empty (the kernels then read `x` itself).
    fn round_input(&mut self, w: &Matrix<'_>, x: &[f32], n: usize) -> Filled {
        let engine = self.engine;
        let tiles = self.f32_tile_products(w, n) || self.kquant_tile_products(w, n);
        if !tiles && (self.f16_exact || !engine.has_bf16() || !bf16_dots(w.dtype, n) || w.cols == 0)
        {
            return Filled::default();
        }
        let (cols, stride) = (w.cols, act::bf16_padded(w.cols));
        #[cfg(target_arch = "x86_64")]
        if let (Some(tiles), true) = (engine.amx(), n > 1) {
            // Blocks of 16 activations as the A operand (layout r16) or the B operand,
            // padded with zero rows to whole steps (`amx`).
            let (len, parts) = (amx::Amx::buffer_len(n, cols), amx::Amx::parts(w.dtype));
            let unit = amx::BLOCK * stride;
            grow(&mut self.xb, parts * len, 0);
            let sx = SharedMut::new(&mut self.xb[..parts * len]);
            self.by_rows(len / unit, cols, &|u0, u1| {
                // SAFETY: units u0..u1 of each part belong to this range alone
                // (`by_rows` gives disjoint ranges, the parts do not overlap), and the
                // buffer outlives the call.
                let (o, lo) = unsafe {
                    let o = sx.slice(u0 * unit, (u1 - u0) * unit);
                    (
                        o,
                        (parts == 2).then(|| sx.slice(len + u0 * unit, (u1 - u0) * unit)),
                    )
                };
                match w.layout {
                    Layout::R16 => tiles.round_rows(x, n, cols, u0, u1, o, lo),
                    Layout::Rows => tiles.round_blocks(x, n, cols, u0, u1, o, lo),
                }
            });
            return Filled {
                halves: parts * len,
                ..Filled::default()
            };
        }
        grow(&mut self.xb, n * stride, 0);
        let sx = SharedMut::new(&mut self.xb[..n * stride]);
        self.by_rows(n, cols, &|i0, i1| {
            // SAFETY: rows i0..i1 belong to this part alone (`by_rows` gives disjoint
            // ranges), and the buffer outlives the call.
            let o = unsafe { sx.slice(i0 * stride, (i1 - i0) * stride) };
            engine.round_bf16(&x[i0 * cols..i1 * cols], cols, o);
        });
        Filled {
            halves: n * stride,
            ..Filled::default()
        }
    }

    /// Whether a product of `n` activation rows with `w` is a prompt over F32 weights
    /// that runs on the AMX tiles as three bf16 products ("bf16x3"): each f32 factor
    /// `v` split into `h = bf16(v)` and `l = bf16(v - h)`, and `w·x` taken as
    /// `wₕxₕ + wₕxₗ + wₗxₕ`, within `(3u² + 3u³)·|w·x|` (`u = 2⁻⁸`: about 2⁻¹⁶
    /// relative, against f32's 2⁻²⁴) at about five times a core's f32 FMAs. Where the
    /// tiles run ([`Cpu::amx_prompts`]: not with [`Cpu::set_f16_exact`]).
    pub fn f32_tile_products(&self, w: &Matrix<'_>, n: usize) -> bool {
        w.dtype == DType::F32 && self.tiles_take(w, n)
    }

    /// Whether a product of `n` activation rows with `w` is a prompt over K-quant
    /// weights (the types with Q8_K activations) that runs on the AMX tiles: each
    /// panel of 32 weight rows dequantised to f32 and rounded to bf16, the activations
    /// rounded to bf16 instead of quantised to Q8_K, so each term within
    /// `(2u + u²)·|w·x|` of the dequantised weights' product (`u = 2⁻⁸`, as F16
    /// weights on the tiles; Q8_K's rounding is coarser). Where the tiles run
    /// ([`Cpu::amx_prompts`]) and `w` is in plain rows.
    pub fn kquant_tile_products(&self, w: &Matrix<'_>, n: usize) -> bool {
        w.dtype.act_quant() == ActQuant::Q8K && self.tiles_take(w, n)
    }

    /// A prompt whose products the AMX tiles take ([`Cpu::amx_prompts`]).
    fn tiles_take(&self, w: &Matrix<'_>, n: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        if n > 1 && w.cols > 0 && self.amx_prompts() {
            return amx::Amx::takes(w);
        }
        let _ = (w, n);
        false
    }

    /// The activations `x` in every form the kernels read, the quantised ones from the
    /// scratch as [`Cpu::quantize_input`] filled it.
    fn acts<'s>(&'s self, x: &'s [f32], f: Filled) -> Acts<'s> {
        Acts {
            x,
            a: &self.act[..f.blocks],
            quads: &self.quads[..f.quads],
            k: &self.k[..f.supers],
            xb: &self.xb[..f.halves],
        }
    }

    /// Runs `f(i0, i1)` over disjoint ranges of the `n` activation rows that cover
    /// them all: one range per thread for a prompt (rows quantise independently), the
    /// caller alone for one row or without a pool.
    fn by_rows(&self, n: usize, nb: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        #[cfg(feature = "std")]
        if let Some(pool) = self.pool.as_ref().filter(|_| n >= 2 && nb > 0) {
            let parts = self.threads.min(n);
            pool.run(parts, &|k| {
                let (i0, i1) = part_range(k, parts, n, 1);
                f(i0, i1)
            });
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
    fn parts_for(&self, w: &Matrix<'_>, n: usize, align: usize) -> usize {
        let bytes = w.data.len().saturating_mul(n.min(8));
        let per_part = if n == 1 {
            GEN_BYTES_PER_PART
        } else {
            BYTES_PER_PART
        };
        (bytes / per_part)
            .max((bytes / MIN_BYTES_PER_PART).min(self.threads))
            .min(w.rows.div_ceil(align))
            .min(pool::MAX_PARTS)
    }

    /// Rows per part are a multiple of this: 4 (whole cache lines of `y` for one
    /// activation), 32 for the AMX tiles (two tiles of weight rows per step, read
    /// straight from the file for BF16 only when all 32 are whole), or 16 for the
    /// AVX-512 prompts over floats and 32-element blocks (one row per lane,
    /// `avx512_rows16`, `avx512_bf16`).
    /// A matrix in layout `r16` takes whole groups of 16 rows in every case.
    #[cfg(feature = "std")]
    fn row_align(&self, w: &Matrix<'_>, acts: &Acts<'_>) -> usize {
        let align = self.path_row_align(w, acts);
        match w.layout {
            Layout::Rows => align,
            Layout::R16 => align.max(llm_format::layout::R16_ROWS),
        }
    }

    #[cfg(feature = "std")]
    fn path_row_align(&self, w: &Matrix<'_>, acts: &Acts<'_>) -> usize {
        #[cfg(target_arch = "x86_64")]
        if self.engine.amx().is_some() && !acts.xb.is_empty() && amx::Amx::takes(w) {
            return amx::STEP;
        }
        #[cfg(target_arch = "x86_64")]
        if let Engine::Avx512(t) = self.engine {
            if acts.x.len() > w.cols {
                return t.prompt_row_align(w.dtype);
            }
        }
        let _ = (w, acts);
        4
    }
}

/// Whether a new context multiplies F16/BF16 prompts with bf16 dot products: the
/// engine has them and they are the faster choice here (`Engine::bf16_faster`),
/// unless `LLMRT_BF16_DOTS=1` or `=0` (std) says so either way (where the CPU has them
/// at all).
fn bf16_by_default(engine: Engine) -> bool {
    if !engine.has_bf16() {
        return false;
    }
    #[cfg(feature = "std")]
    match std::env::var("LLMRT_BF16_DOTS").as_deref() {
        Ok("1") => return true,
        Ok("0") => return false,
        _ => {}
    }
    engine.bf16_faster()
}

/// How many of each kind of quantised activation block the last
/// [`Cpu::quantize_input`] wrote.
#[derive(Clone, Copy, Debug, Default)]
struct Filled {
    blocks: usize,
    quads: usize,
    supers: usize,
    /// bf16 activation values (padding included).
    halves: usize,
}

/// Grows `v` to at least `len` elements (scratch: never shrinks).
fn grow<T: Clone>(v: &mut Vec<T>, len: usize, zero: T) {
    if v.len() < len {
        v.resize(len, zero);
    }
}

/// Part `k` of `0..len` split into `parts` ranges of equal length rounded up to a
/// multiple of `align` (the last ones shorter or empty): disjoint for distinct `k`,
/// and together they cover `0..len`.
pub(crate) fn part_range(k: usize, parts: usize, len: usize, align: usize) -> (usize, usize) {
    let per = len.div_ceil(parts.max(1)).next_multiple_of(align);
    ((k * per).min(len), ((k + 1) * per).min(len))
}

/// Runs `parts` disjoint row ranges of `out` on the pool and the calling thread.
#[cfg(feature = "std")]
fn split_rows(
    pool: &pool::Pool,
    parts: usize,
    align: usize,
    engine: Engine,
    w: &Matrix<'_>,
    acts: &Acts<'_>,
    out: &OutRows<'_>,
) {
    // Row ranges in multiples of `align` rows (`Cpu::row_align`).
    pool.run(parts, &|k| {
        let (r0, r1) = part_range(k, parts, w.rows, align);
        // SAFETY: the `part_range`s of distinct k are disjoint, every k in
        // 0..parts runs once, and `out` itself is not written while the parts live
        // (`pool.run` returns only when all parts are done).
        let mut part = unsafe { out.part(r0, r1) };
        engine.rows(w, acts, &mut part);
    });
}
