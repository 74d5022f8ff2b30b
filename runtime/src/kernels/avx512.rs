//! x86-64 AVX-512 kernels (F/BW/VL/DQ + VNNI, with FMA and F16C): the same functions as
//! `scalar`.
//!
//! Prompts (`n > 1`) over floats and over the 32-element block types go to
//! `avx512_rows16` (16 rows interleaved, one per lane); F16/BF16 prompts on bf16 dot
//! products to `avx512_bf16`. The code here is generation: one row at a time (on a
//! Zen 5 one weight stream per thread reads memory faster than 4 or 8 interleaved
//! ones, PERF.md), the blocks 4 rows at a time for rows under 512 columns.
//!
//! * Floats: 16 lanes, weights widened in registers; plain loads in the loop, the last
//!   `cols % 16` through masked loads (no scalar tail). A single row runs four FMA
//!   chains over 64 columns per step.
//! * Blocks, 4 at a time: the activations are pre-arranged once per call into
//!   [`Q8Quad`]s (elements 0..16 of 4 blocks in one register, 16..32 in another, the
//!   order of Q4 nibbles), so 4 Q4 blocks unpack into one register pair with a shift
//!   and two masks, and two `vpdpbusd` give each block's integer sum in its own 4
//!   lanes. `vpdpbusd` multiplies unsigned by signed bytes, so signed weights go in
//!   offset (Q4_0 as the raw nibble q = w + 8, Q8_0 as w + 128), and each block's sum
//!   starts from the activation's `-offset·Σq_x` (precomputed in the quad), so the
//!   offset cancels in integers. The 4 blocks' f16 scales come in with one load and
//!   one word permute. Q4_1's nibbles are unsigned already; its `m_w·s_x` terms join
//!   the f32 sum in the same lanes. The integer block sums are exact; only the f32
//!   summation differs from the scalar reference.
//! * Leftover blocks (`nb % 4`): two per 512-bit register, with |w| and the activation
//!   negated where `w < 0` (exact, no offset), and an odd last one in 256 bits.
//! * Q5_0/Q5_1 take their fifth bits through byte masks (`vpord` under a mask) and
//!   Q5_0's +16 back out as `2·(-8·Σq_x)`; IQ4_NL's nibbles index its value table with
//!   one `vpshufb` and go in +128 like Q8_0.
//! * The super-block types (Q2_K … Q6_K, IQ4_XS) are in `avx512_k`.

use super::act::{Q8Act, Q8Quad, QK};
use super::amx::Amx;
use super::avx2::{f16_to_f32, u16_at};
use super::avx512_bf16::Bf16Dots;
use super::avx512_k;
use super::avx512_r16;
use super::avx512_rows16;
use super::marker::{
    Iq4Nl, Iq4Xs, BF16, F16, F32, Q2K, Q3K, Q4K, Q4_0, Q4_1, Q5K, Q5_0, Q5_1, Q6K, Q8_0,
};
use super::stream::prefetch_ahead;
use super::{Acts, Matrix, OutRows};
use core::arch::x86_64::*;
use llm_format::{ActQuant, DType, Layout};

/// Proof that the CPU has AVX-512 F/BW/VL/DQ/VNNI, AVX2, FMA and F16C: exists only
/// through [`Avx512::detect`]. It also carries the proofs of AVX-512 BF16 and of AMX
/// where the CPU has them (detected once, with the rest).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512 {
    bf16: Option<Bf16Dots>,
    amx: Option<Amx>,
    /// Float generation prefetches its weights (`stream::float_prefetch`).
    prefetch: bool,
}

impl Avx512 {
    /// The token, if this CPU (std: run-time detection; no_std: compile-time target
    /// features) has all of the features above.
    pub(crate) fn detect() -> Option<Avx512> {
        #[cfg(feature = "std")]
        let ok = std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vnni")
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        #[cfg(not(feature = "std"))]
        let ok = cfg!(all(
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vl",
            target_feature = "avx512dq",
            target_feature = "avx512vnni",
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c"
        ));
        ok.then(|| {
            let bf16 = Bf16Dots::detect();
            Avx512 {
                bf16,
                amx: bf16.and_then(|_| Amx::detect()),
                prefetch: super::stream::float_prefetch(),
            }
        })
    }

    /// The bf16 dot products for F16/BF16 prompts, if the CPU has them.
    pub(crate) fn bf16(self) -> Option<Bf16Dots> {
        self.bf16
    }

    /// The AMX tiles for F16/BF16 prompts, if the CPU and OS have them and this
    /// token was not told to leave them out ([`Avx512::with_amx`]).
    pub(crate) fn amx(self) -> Option<Amx> {
        self.amx
    }

    /// The same token with AMX (where the CPU has it) or without.
    pub(crate) fn with_amx(self, on: bool) -> Avx512 {
        Avx512 {
            amx: if on {
                self.bf16.and_then(|_| Amx::detect())
            } else {
                None
            },
            ..self
        }
    }

    /// See `scalar::rows`; `quads` holds the activations as `act::build_quads` lays
    /// them out. F16/BF16 prompts whose activations were rounded to bf16 (`acts.xb`
    /// filled, which needs this token's `bf16`) go through `amx` where this token has
    /// it (the activations are then in its layout), else `avx512_bf16`; so does BF16
    /// generation with a rounded activation (`Bf16Dots::gen`). F32 prompts with
    /// activations split for the tiles (`Cpu::f32_tile_products`) and K-quant prompts
    /// with activations rounded for them (`Cpu::kquant_tile_products`) go through `amx`.
    ///
    /// Matrices in layout `r16` (which `Engine::reads_layout` sends here only for
    /// the products below) go to `avx512_r16` for generation; prompts read them in
    /// `amx` (`rows_r16`, whose activations `Cpu` rounds into rows for it),
    /// `avx512_bf16` and `avx512_rows16::floats`.
    pub(crate) fn rows(self, w: &Matrix<'_>, acts: &Acts<'_>, out: &mut OutRows<'_>) {
        if w.layout == Layout::R16 && out.n() == 1 {
            // SAFETY: the token proves the features each function enables (the bf16
            // dot products only with the `bf16` token, which `xb` being filled needs).
            return unsafe {
                match self.bf16 {
                    Some(_) if !acts.xb.is_empty() => {
                        avx512_r16::gen_dots(w, acts.xb, out, self.prefetch)
                    }
                    _ => avx512_r16::gen_floats(w, acts.x, out, self.prefetch),
                }
            };
        }
        if let (Some(amx), false) = (self.amx, acts.xb.is_empty()) {
            if w.dtype == DType::F32 || w.dtype.act_quant() == ActQuant::Q8K {
                // A prompt over F32 weights that `Cpu` split for the tiles, or over
                // K-quants whose activations it rounded for them.
                return amx.rows(w, acts.xb, out);
            }
        }
        if let (DType::F16 | DType::BF16, Some(b), false) = (w.dtype, self.bf16, acts.xb.is_empty())
        {
            return match self.amx {
                _ if out.n() == 1 => b.gen(w, acts.xb, out, self.prefetch),
                Some(amx) => amx.rows(w, acts.xb, out),
                None => b.rows(w, acts.xb, out),
            };
        }
        // SAFETY: the token exists only if the CPU has every feature `rows` enables.
        unsafe { rows(w, acts, out, self.prefetch) }
    }

    /// Rows per part of a prompt product over `dtype` (`Cpu::row_align`): whole
    /// groups of `avx512_rows16::ROWS` for the kernels that interleave that many rows
    /// (floats and 32-element blocks in `avx512_rows16`, bf16 dots in `avx512_bf16`).
    #[cfg_attr(not(feature = "std"), allow(dead_code))] // parts need the std pool
    pub(crate) fn prompt_row_align(self, dtype: DType) -> usize {
        match dtype.act_quant() {
            ActQuant::Float | ActQuant::Q8_0 | ActQuant::Q8_1 => avx512_rows16::ROWS,
            ActQuant::Q8K => 4,
        }
    }

    /// See `act::quantize` (bit-identical for finite inputs; the AVX2 code).
    pub(crate) fn quantize(self, x: &[f32], out: &mut [Q8Act]) {
        // SAFETY: AVX2, FMA and F16C are part of this token's features.
        unsafe { super::avx2::quantize(x, out) }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn rows(w: &Matrix<'_>, acts: &Acts<'_>, out: &mut OutRows<'_>, prefetch: bool) {
    let (x, a, quads) = (acts.x, acts.a, acts.quads);
    match w.dtype {
        // Prompts: 16 rows interleaved per chunk (`avx512_rows16`).
        DType::F32 if out.n() > 1 => avx512_rows16::floats::<F32>(w, x, out),
        DType::F16 if out.n() > 1 => avx512_rows16::floats::<F16>(w, x, out),
        DType::BF16 if out.n() > 1 => avx512_rows16::floats::<BF16>(w, x, out),
        DType::F32 => gen_float::<F32>(w, x, out, prefetch),
        DType::F16 => gen_float::<F16>(w, x, out, prefetch),
        DType::BF16 => gen_float::<BF16>(w, x, out, prefetch),
        // Prompts: 16 rows interleaved per chunk (`avx512_rows16`).
        DType::Q8_0 if out.n() > 1 => avx512_rows16::rows::<Q8_0>(w, a, out),
        DType::Q4_0 if out.n() > 1 => avx512_rows16::rows::<Q4_0>(w, a, out),
        DType::Q4_1 if out.n() > 1 => avx512_rows16::rows::<Q4_1>(w, a, out),
        DType::Q5_0 if out.n() > 1 => avx512_rows16::rows::<Q5_0>(w, a, out),
        DType::Q5_1 if out.n() > 1 => avx512_rows16::rows::<Q5_1>(w, a, out),
        DType::IQ4_NL if out.n() > 1 => avx512_rows16::rows::<Iq4Nl>(w, a, out),
        // Generation: one function per type (`quant_generation!`).
        DType::Q8_0 => gen_q8_0(w, a, quads, out),
        DType::Q4_0 => gen_q4_0(w, a, quads, out),
        DType::Q4_1 => gen_q4_1(w, a, quads, out),
        DType::Q5_0 => gen_q5_0(w, a, quads, out),
        DType::Q5_1 => gen_q5_1(w, a, quads, out),
        DType::IQ4_NL => gen_iq4_nl(w, a, quads, out),
        // Super-blocks: `avx512_k`.
        DType::Q2_K => avx512_k::rows::<Q2K>(w, acts.k, out),
        DType::Q3_K => avx512_k::rows::<Q3K>(w, acts.k, out),
        DType::Q4_K => avx512_k::rows::<Q4K>(w, acts.k, out),
        DType::Q5_K => avx512_k::rows::<Q5K>(w, acts.k, out),
        DType::Q6_K => avx512_k::rows::<Q6K>(w, acts.k, out),
        DType::IQ4_XS => avx512_k::rows::<Iq4Xs>(w, acts.k, out),
    }
}

/// Defines, per block type, its generation (`n = 1`: prompts go to `avx512_rows16`,
/// and `Engine::quads` builds no activation quads for them) as a function of its
/// own: `#[inline(never)]`, because inlined into `rows` beside every other type the
/// hot loops came out slower (PERF.md, "2026-12-04"). Rows under 512 columns go 4
/// per tile, so the per-row costs (leftover block, reductions) weigh less; longer rows
/// one at a time, which streams memory best.
macro_rules! quant_generation {
    ($($name:ident: $tile:ident;)*) => {$(
        #[doc = concat!("Generation through `", stringify!($tile), "`.")]
        #[inline(never)]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
        fn $name(w: &Matrix<'_>, a: &[Q8Act], quads: &[Q8Quad], out: &mut OutRows<'_>) {
            assert!(out.n() <= 1, "generation takes one activation row (or none)");
            let nb = w.cols / QK;
            // Activation quads per row, a last partial one included (`act::build_quads`).
            let nq = nb.div_ceil(4);
            let qu = |i: usize| (&a[i * nb..(i + 1) * nb], &quads[i * nq..(i + 1) * nq]);
            if nb < 16 {
                drive!(w, qu, out, $tile, 4 x 3, 4)
            } else {
                for r in out.r0..out.r1 {
                    let row = w.row(r);
                    prefetch_ahead(row);
                    for i in 0..out.n() {
                        let v = $tile::<1, 1>([row], [qu(i)]);
                        out.set(i, r, v[0][0]);
                    }
                }
            }
        }
    )*};
}

quant_generation! {
    gen_q8_0: tile_q8_0;
    gen_q4_0: tile_q4_0;
    gen_q4_1: tile_q4_1;
    gen_q5_0: tile_q5_0;
    gen_q5_1: tile_q5_1;
    gen_iq4_nl: tile_iq4_nl;
}

/// One weight quad (4 blocks of a row) unpacked for `vpdpbusd`: what `weights4`,
/// `scales4` and `mins4` give, stored so that a prompt's activations can reuse it.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Unpacked {
    lo: __m512i,
    hi: __m512i,
    d: __m512,
    m: __m512,
}

/// The 4 blocks at `p`, unpacked.
///
/// # Safety
/// `4·B::SIZE` readable bytes at `p`; the token's features present.
#[inline(always)]
unsafe fn unpack<B: QuantBlock>(p: *const u8) -> Unpacked {
    // SAFETY: caller.
    unsafe {
        let (lo, hi) = B::weights4(p);
        Unpacked {
            lo,
            hi,
            d: B::scales4(p),
            m: B::mins4(p),
        }
    }
}

/// `acc` plus the quad's 4 block products `d_w·d_x·Σ w·x` (and Q4_1's `m_w·s_x`), each
/// in its block's 4 lanes: two `vpdpbusd` from the activation's `-offset·Σq_x` give the
/// exact integer sums. The one body of the quad loops of [`tile_quant`] and
/// [`tile_packed`].
#[inline(always)]
fn quad_dot<B: QuantBlock>(acc: __m512, u: &Unpacked, q: &Q8Quad) -> __m512 {
    // SAFETY: each quad field is 64 bytes; the callers run with the token's features.
    unsafe {
        let off = B::offset(q);
        let ylo = _mm512_loadu_si512(q.lo.as_ptr() as *const __m512i);
        let yhi = _mm512_loadu_si512(q.hi.as_ptr() as *const __m512i);
        let dot = _mm512_dpbusd_epi32(off, u.lo, ylo);
        let dot = _mm512_dpbusd_epi32(dot, u.hi, yhi);
        let d = _mm512_mul_ps(u.d, _mm512_loadu_ps(q.dq.as_ptr()));
        let acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(dot), acc);
        if B::SIGNED {
            acc
        } else {
            _mm512_fmadd_ps(u.m, _mm512_loadu_ps(q.sq.as_ptr()), acc)
        }
    }
}

/// Loads 16 weights widened to f32; `mask` selects which (the others read as 0 and
/// their memory is not touched).
pub(super) trait Load16 {
    /// Bytes per weight.
    const SIZE: usize;
    /// # Safety
    /// The selected weights `p..p + 16·SIZE` must be readable; the token's features
    /// must be present.
    unsafe fn load16(p: *const u8, mask: __mmask16) -> __m512;
}

impl Load16 for F32 {
    const SIZE: usize = 4;
    #[inline(always)]
    unsafe fn load16(p: *const u8, mask: __mmask16) -> __m512 {
        // SAFETY: caller; masked-off lanes are not accessed.
        unsafe { _mm512_maskz_loadu_ps(mask, p as *const f32) }
    }
}

impl Load16 for F16 {
    const SIZE: usize = 2;
    #[inline(always)]
    unsafe fn load16(p: *const u8, mask: __mmask16) -> __m512 {
        // SAFETY: caller; masked-off lanes are not accessed.
        unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p as *const i16)) }
    }
}

impl Load16 for BF16 {
    const SIZE: usize = 2;
    #[inline(always)]
    unsafe fn load16(p: *const u8, mask: __mmask16) -> __m512 {
        // SAFETY: caller; masked-off lanes are not accessed. bf16 → f32 is a shift.
        unsafe {
            let h = _mm256_maskz_loadu_epi16(mask, p as *const i16);
            _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
        }
    }
}

/// Generation over float weights (any `n` works; `rows` sends `n = 1` here): one row
/// at a time, F32 four rows at a time for one activation ([`rows4_f32`]). Each row is
/// prefetched as the blocks' generation does only with `prefetch`
/// (`stream::float_prefetch`: Intel; it made f16 generation a third slower on a Zen 4,
/// PERF.md 2026-12-06).
#[inline(never)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn gen_float<L: Load16>(w: &Matrix<'_>, x: &[f32], out: &mut OutRows<'_>, prefetch: bool) {
    let cols = w.cols;
    let mut r0 = out.r0;
    if L::SIZE == 4 && out.n() == 1 {
        while r0 + 4 <= out.r1 {
            let rows: [&[u8]; 4] = core::array::from_fn(|j| w.row(r0 + j));
            if prefetch {
                rows.iter().for_each(|row| prefetch_ahead(row));
            }
            let v = rows4_f32(rows, x);
            for (j, &v) in v.iter().enumerate() {
                out.set(0, r0 + j, v);
            }
            r0 += 4;
        }
    }
    for r in r0..out.r1 {
        let row = w.row(r);
        if prefetch && out.n() == 1 {
            prefetch_ahead(row);
        }
        for i in 0..out.n() {
            out.set(i, r, row_float::<L>(row, &x[i * cols..(i + 1) * cols]));
        }
    }
}

/// `w_j·x` for four F32 rows at once: four weight streams in flight instead of one.
/// On a Sapphire Rapids core one stream read 13 GB/s and four 16 GB/s (f32 tg64
/// 27 → 32 t/s on one thread, PERF.md 2026-12-07); F16 rows, half as long, lost
/// a little the same way, so they stay one at a time. 32 columns per step, two
/// chains per row, then 16 at a time, then the last `n % 16` under a mask.
///
/// # Panics
/// Unless every row holds `x.len()` f32 weights.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn rows4_f32(rows: [&[u8]; 4], x: &[f32]) -> [f32; 4] {
    let n = x.len();
    for row in rows {
        assert_eq!(row.len(), 4 * n);
    }
    let w: [*const f32; 4] = rows.map(|r| r.as_ptr() as *const f32);
    let xp = x.as_ptr();
    let mut acc = [[_mm512_setzero_ps(); 2]; 4];
    let mut c = 0;
    // SAFETY (loads): every load covers columns below n (each loop's condition, or
    // the mask), which lie in every row and in `x`.
    while c + 32 <= n {
        let (x0, x1) = unsafe { (_mm512_loadu_ps(xp.add(c)), _mm512_loadu_ps(xp.add(c + 16))) };
        for (a, p) in acc.iter_mut().zip(w) {
            unsafe {
                a[0] = _mm512_fmadd_ps(_mm512_loadu_ps(p.add(c)), x0, a[0]);
                a[1] = _mm512_fmadd_ps(_mm512_loadu_ps(p.add(c + 16)), x1, a[1]);
            }
        }
        c += 32;
    }
    while c < n {
        let mask = if n - c >= 16 {
            0xffff
        } else {
            (1u16 << (n - c)) - 1
        };
        let xv = unsafe { _mm512_maskz_loadu_ps(mask, xp.add(c)) };
        for (a, p) in acc.iter_mut().zip(w) {
            a[0] = _mm512_fmadd_ps(unsafe { _mm512_maskz_loadu_ps(mask, p.add(c)) }, xv, a[0]);
        }
        c += 16;
    }
    acc.map(|a| _mm512_reduce_add_ps(_mm512_add_ps(a[0], a[1])))
}

/// `w·x` for one row of weights of type `L`: 64 columns per step into four
/// accumulators (one weight stream, four independent FMA chains), then 16 at a time,
/// then the last `n % 16` under a mask.
///
/// # Panics
/// Unless `w` holds `x.len()` weights.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn row_float<L: Load16>(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    assert_eq!(w.len(), n * L::SIZE);
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut c = 0;
    // SAFETY (loads): every load covers columns below n (checked by each loop's
    // condition, or selected by the mask), which lie in `w` and `x`.
    while c + 64 <= n {
        for (u, a) in acc.iter_mut().enumerate() {
            let cc = c + 16 * u;
            let (wv, xv) = unsafe {
                (
                    L::load16(wp.add(cc * L::SIZE), 0xffff),
                    _mm512_loadu_ps(xp.add(cc)),
                )
            };
            *a = _mm512_fmadd_ps(wv, xv, *a);
        }
        c += 64;
    }
    while c + 16 <= n {
        let (wv, xv) = unsafe {
            (
                L::load16(wp.add(c * L::SIZE), 0xffff),
                _mm512_loadu_ps(xp.add(c)),
            )
        };
        acc[0] = _mm512_fmadd_ps(wv, xv, acc[0]);
        c += 16;
    }
    if c < n {
        let mask = (1u16 << (n - c)) - 1;
        let (wv, xv) = unsafe {
            (
                L::load16(wp.add(c * L::SIZE), mask),
                _mm512_maskz_loadu_ps(mask, xp.add(c)),
            )
        };
        acc[1] = _mm512_fmadd_ps(wv, xv, acc[1]);
    }
    let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(s)
}

/// A block type's weights, ready for `vpdpbusd` (also used by `avx512_rows16`).
pub(super) trait QuantBlock {
    /// Bytes per block.
    const SIZE: usize;
    /// Signed weights (needs the sign trick) or unsigned (Q4_1, Q5_1: a minimum).
    const SIGNED: bool;
    /// What [`QuantBlock::pair`] and `weights4` add to each weight to make it an
    /// unsigned byte (Q8_0 and IQ4_NL: 128; Q4_0: 8, its raw nibble; Q5_0: 16).
    const OFFSET: i32;
    /// The 32 weights of the block at `pa`, then the 32 of the block at `pb`, in
    /// element order as unsigned bytes (weight + `OFFSET`).
    ///
    /// # Safety
    /// `SIZE` readable bytes at `pa` and at `pb`; the token's features present.
    unsafe fn pair(pa: *const u8, pb: *const u8) -> __m512i;
    /// The 64 weights of the blocks at `p` and `p + SIZE`, as bytes: signed for
    /// `SIGNED`, else unsigned.
    ///
    /// # Safety
    /// `2·SIZE` readable bytes at `p`; the token's features present.
    #[inline(always)]
    unsafe fn weights2(p: *const u8) -> __m512i {
        // SAFETY: caller. The byte subtraction wraps: OFFSET 128 is -128 as i8.
        unsafe {
            _mm512_sub_epi8(
                Self::pair(p, p.add(Self::SIZE)),
                _mm512_set1_epi8(Self::OFFSET as i8),
            )
        }
    }
    /// The 32 weights of the block at `p`.
    ///
    /// # Safety
    /// `SIZE` readable bytes at `p`; the token's features present.
    unsafe fn weights1(p: *const u8) -> __m256i;
    /// The weights of the 4 blocks at `p`, `p + SIZE`, ... as two registers of
    /// unsigned bytes in [`Q8Quad`] order (elements 0..16 of each block, then 16..32),
    /// offset so they are unsigned (Q4_0's raw nibble is `w + 8`, Q8_0 gives `w + 128`).
    ///
    /// # Safety
    /// `4·SIZE` readable bytes at `p`; the token's features present.
    unsafe fn weights4(p: *const u8) -> (__m512i, __m512i);
    /// The scales `d` of the 4 blocks at `p`, `p + SIZE`, ... in quad lanes: lanes
    /// `4g..4g+4` hold block `g`'s.
    ///
    /// # Safety
    /// `4·SIZE` readable bytes at `p`; the token's features present.
    unsafe fn scales4(p: *const u8) -> __m512;
    /// Q4_1's minima `m` in quad lanes (zero for the other types).
    ///
    /// # Safety
    /// As `scales4`.
    unsafe fn mins4(p: *const u8) -> __m512;
    /// The activation quad's `-offset·Σq` (block `g`'s in lane `4g`) for the offset
    /// `weights4` adds to each weight: a block's dot product starts there, so that the
    /// offset cancels exactly.
    ///
    /// # Safety
    /// The token's features present.
    unsafe fn offset(q: &Q8Quad) -> __m512i;
}

/// The 16 f16 values at the 16-bit word indices `idx` (its low half) of the 64 bytes
/// at `p`, widened to f32.
///
/// # Safety
/// 64 readable bytes at `p`; AVX-512 F/BW present.
#[inline(always)]
unsafe fn halves16(p: *const u8, idx: &[u16; 32]) -> __m512 {
    // SAFETY: caller; `idx` is 64 bytes.
    unsafe {
        let v = _mm512_loadu_si512(p as *const __m512i);
        let i = _mm512_loadu_si512(idx.as_ptr() as *const __m512i);
        _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(i, v)))
    }
}

/// Word indices `off + stride·(l/4)` for lanes `l` in 0..16 (the rest 0): the f16
/// field at word `off` of 4 blocks of `stride` words, in quad lanes.
const fn quad_words(stride: u16, off: u16) -> [u16; 32] {
    let mut idx = [0u16; 32];
    let mut l = 0;
    while l < 16 {
        idx[l] = off + stride * (l as u16 / 4);
        l += 1;
    }
    idx
}

/// Four 16-byte pieces at `p`, `p + stride`, `p + 2·stride`, `p + 3·stride` in one
/// register.
///
/// # Safety
/// 16 readable bytes at each; AVX-512 F present.
#[inline(always)]
unsafe fn gather4x16(p: *const u8, stride: usize) -> __m512i {
    // SAFETY: caller.
    unsafe {
        let z = _mm512_castsi128_si512(_mm_loadu_si128(p as *const __m128i));
        let z = _mm512_inserti32x4(z, _mm_loadu_si128(p.add(stride) as *const __m128i), 1);
        let z = _mm512_inserti32x4(z, _mm_loadu_si128(p.add(2 * stride) as *const __m128i), 2);
        _mm512_inserti32x4(z, _mm_loadu_si128(p.add(3 * stride) as *const __m128i), 3)
    }
}

/// Low and high nibbles of four Q4 blocks whose 16 quant bytes start at `p`, `p +
/// stride`, ...: [`Q8Quad`] order, values 0..=15.
///
/// # Safety
/// 16 readable bytes at each; AVX-512 F/BW present.
#[inline(always)]
unsafe fn nibbles4(p: *const u8, stride: usize) -> (__m512i, __m512i) {
    // SAFETY: caller.
    let z = unsafe { gather4x16(p, stride) };
    let m = _mm512_set1_epi8(0x0f);
    (
        _mm512_and_si512(z, m),
        _mm512_and_si512(_mm512_srli_epi16(z, 4), m),
    )
}

impl QuantBlock for Q8_0 {
    const SIZE: usize = 34;
    const SIGNED: bool = true;
    const OFFSET: i32 = 128;
    #[inline(always)]
    unsafe fn scales4(p: *const u8) -> __m512 {
        // Blocks of 34 bytes: the 4 scales lie at words 0, 17, 34, 51 of 128 bytes
        // (4 blocks are 136), so two registers and a two-table permute.
        const IDX: [u16; 32] = quad_words(17, 0);
        // SAFETY: bytes 0..128 lie within the 4 blocks (caller).
        unsafe {
            let a = _mm512_loadu_si512(p as *const __m512i);
            let b = _mm512_loadu_si512(p.add(64) as *const __m512i);
            let i = _mm512_loadu_si512(IDX.as_ptr() as *const __m512i);
            let w = _mm512_permutex2var_epi16(a, i, b);
            _mm512_cvtph_ps(_mm512_castsi512_si256(w))
        }
    }
    #[inline(always)]
    unsafe fn mins4(_: *const u8) -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn offset(q: &Q8Quad) -> __m512i {
        // SAFETY: 64 bytes; caller.
        unsafe { _mm512_loadu_si512(q.off128.as_ptr() as *const __m512i) }
    }
    #[inline(always)]
    unsafe fn weights4(p: *const u8) -> (__m512i, __m512i) {
        // SAFETY: quants at 2..34 of each of the 4 blocks (caller). x ^ 0x80 = x + 128.
        unsafe {
            let flip = _mm512_set1_epi8(-128);
            (
                _mm512_xor_si512(gather4x16(p.add(2), 34), flip),
                _mm512_xor_si512(gather4x16(p.add(18), 34), flip),
            )
        }
    }
    #[inline(always)]
    unsafe fn pair(pa: *const u8, pb: *const u8) -> __m512i {
        // SAFETY: quants at 2..34 of each block (caller). x ^ 0x80 = x + 128.
        unsafe {
            let a = _mm256_loadu_si256(pa.add(2) as *const __m256i);
            let b = _mm256_loadu_si256(pb.add(2) as *const __m256i);
            let z = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
            _mm512_xor_si512(z, _mm512_set1_epi8(-128))
        }
    }
    #[inline(always)]
    unsafe fn weights1(p: *const u8) -> __m256i {
        // SAFETY: bytes 2..34 lie within the block (caller).
        unsafe { _mm256_loadu_si256(p.add(2) as *const __m256i) }
    }
}

/// Nibbles of the two 16-byte quant arrays at `pa` and `pb` as 64 bytes in element
/// order: [lo(a), hi(a), lo(b), hi(b)] (byte j holds elements j and j+16).
///
/// # Safety
/// 16 readable bytes at `pa` and at `pb`; AVX-512 F/BW present.
#[inline(always)]
unsafe fn nibbles2(pa: *const u8, pb: *const u8) -> __m512i {
    // SAFETY: caller.
    let v = unsafe {
        _mm256_set_m128i(
            _mm_loadu_si128(pb as *const __m128i),
            _mm_loadu_si128(pa as *const __m128i),
        )
    };
    // [a, b, a>>4, b>>4] → [a, a>>4, b, b>>4], then keep the low nibble of each byte.
    let z = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
    let z = _mm512_shuffle_i64x2(z, z, 0b11_01_10_00);
    _mm512_and_si512(z, _mm512_set1_epi8(0x0f))
}

/// Nibbles of one block's 16 bytes at `p`, element order.
///
/// # Safety
/// 16 readable bytes at `p`; AVX2 present.
#[inline(always)]
unsafe fn nibbles1(p: *const u8) -> __m256i {
    // SAFETY: caller.
    let q = unsafe { _mm_loadu_si128(p as *const __m128i) };
    let both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

impl QuantBlock for Q4_0 {
    const SIZE: usize = 18;
    const SIGNED: bool = true;
    const OFFSET: i32 = 8;
    #[inline(always)]
    unsafe fn scales4(p: *const u8) -> __m512 {
        const IDX: [u16; 32] = quad_words(9, 0);
        // SAFETY: the 4 blocks are 72 bytes (caller).
        unsafe { halves16(p, &IDX) }
    }
    #[inline(always)]
    unsafe fn mins4(_: *const u8) -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn offset(q: &Q8Quad) -> __m512i {
        // SAFETY: 64 bytes; caller.
        unsafe { _mm512_loadu_si512(q.off8.as_ptr() as *const __m512i) }
    }
    #[inline(always)]
    unsafe fn weights4(p: *const u8) -> (__m512i, __m512i) {
        // SAFETY: quants at 2..18 of each block (caller); nibble q is weight q - 8.
        unsafe { nibbles4(p.add(2), 18) }
    }
    #[inline(always)]
    unsafe fn pair(pa: *const u8, pb: *const u8) -> __m512i {
        // SAFETY: quants at 2..18 of each block (caller); nibble q is weight q - 8.
        unsafe { nibbles2(pa.add(2), pb.add(2)) }
    }
    #[inline(always)]
    unsafe fn weights1(p: *const u8) -> __m256i {
        // SAFETY: quants at 2..18 (caller).
        let q = unsafe { nibbles1(p.add(2)) };
        _mm256_sub_epi8(q, _mm256_set1_epi8(8))
    }
}

impl QuantBlock for Q4_1 {
    const SIZE: usize = 20;
    const SIGNED: bool = false;
    const OFFSET: i32 = 0;
    #[inline(always)]
    unsafe fn scales4(p: *const u8) -> __m512 {
        const IDX: [u16; 32] = quad_words(10, 0);
        // SAFETY: the 4 blocks are 80 bytes (caller).
        unsafe { halves16(p, &IDX) }
    }
    #[inline(always)]
    unsafe fn mins4(p: *const u8) -> __m512 {
        const IDX: [u16; 32] = quad_words(10, 1);
        // SAFETY: as `scales4`.
        unsafe { halves16(p, &IDX) }
    }
    #[inline(always)]
    unsafe fn offset(_: &Q8Quad) -> __m512i {
        // Q4_1's nibbles are unsigned already: no offset.
        _mm512_setzero_si512()
    }
    #[inline(always)]
    unsafe fn weights4(p: *const u8) -> (__m512i, __m512i) {
        // SAFETY: quants at 4..20 of each block (caller).
        unsafe { nibbles4(p.add(4), 20) }
    }
    #[inline(always)]
    unsafe fn pair(pa: *const u8, pb: *const u8) -> __m512i {
        // SAFETY: quants at 4..20 of each block (caller).
        unsafe { nibbles2(pa.add(4), pb.add(4)) }
    }
    #[inline(always)]
    unsafe fn weights1(p: *const u8) -> __m256i {
        // SAFETY: quants at 4..20 (caller).
        unsafe { nibbles1(p.add(4)) }
    }
}

/// The activation quants of blocks `y0` and `y1` in one register.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2")]
fn act2(y0: &Q8Act, y1: &Q8Act) -> __m512i {
    // SAFETY: each `qs` is 32 bytes.
    unsafe {
        let a = _mm256_loadu_si256(y0.qs.as_ptr() as *const __m256i);
        let b = _mm256_loadu_si256(y1.qs.as_ptr() as *const __m256i);
        _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1)
    }
}

/// `[[Σ_blocks (Σ q_w·q_x)·d_w·d_x (+ m_w·s_x for Q4_1) for k in 0..T] for j in 0..R]`:
/// ggml's `vec_dot_q8_0_q8_0` / `q4_0_q8_0` / `q4_1_q8_1` with exact integer block
/// sums, for `R` weight rows and `T` activation rows.
///
/// # Panics
/// Unless `w_j.len() == B::SIZE · y_k.len()` for every `j` and `k`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn tile_quant<B: QuantBlock, const R: usize, const T: usize>(
    ws: [&[u8]; R],
    acts: [(&[Q8Act], &[Q8Quad]); T],
) -> [[f32; T]; R] {
    // Plain loops rather than `array::from_fn`, which was not inlined (a call per row).
    let mut ys: [&[Q8Act]; T] = [acts[0].0; T];
    for (y, a) in ys.iter_mut().zip(&acts) {
        *y = a.0;
    }
    let nb = ys[0].len();
    // Whole quads; the activations also carry a last partial quad (unused here: the
    // leftover blocks go through the per-block code below).
    let nq = nb / 4;
    assert!(ws.iter().all(|w| w.len() == nb * B::SIZE));
    assert!(acts
        .iter()
        .all(|(y, q)| y.len() == nb && q.len() == nb.div_ceil(4)));
    // Quads: four blocks per register pair, weights offset to unsigned bytes; each
    // block's integer sum starts at the activation's -offset·Σq, so the offset cancels
    // exactly. Lanes 4g..4g+4 hold block g's partial sums; Q4_1 adds m_w·s_x per block.
    let mut qacc = [[_mm512_setzero_ps(); T]; R];
    for g in 0..nq {
        // SAFETY: g < nq: quad g of every activation exists, and blocks 4g..4g+4 lie in
        // every `w_j` (lengths checked above); x86 is little-endian.
        unsafe {
            let mut qs: [&Q8Quad; T] = [&*acts[0].1.as_ptr().add(g); T];
            for (q, a) in qs.iter_mut().zip(&acts) {
                *q = &*a.1.as_ptr().add(g);
            }
            for j in 0..R {
                let u = unpack::<B>(ws[j].as_ptr().add(4 * g * B::SIZE));
                for (acc, q) in qacc[j].iter_mut().zip(qs) {
                    *acc = quad_dot::<B>(*acc, &u, q);
                }
            }
        }
    }
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    // Q4_1's Σ m_w·s_x, two blocks per lane pair.
    let mut summ = [[_mm_setzero_ps(); T]; R];
    // Lanes 0..8 take the scale of the first block, lanes 8..16 the second's.
    let pair = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let mut yv = [_mm512_setzero_si512(); T];
    let mut dyv = [_mm512_setzero_ps(); T];
    let mut sv = [_mm_setzero_ps(); T];
    let mut b = 4 * nq;
    while b + 2 <= nb {
        // SAFETY: b + 1 < nb, so blocks b and b+1 lie in every `w_j` and `y_k`
        // (lengths checked above); x86 is little-endian, so f16 fields read as u16.
        unsafe {
            for k in 0..T {
                let p = ys[k].as_ptr().add(b);
                let (y0, y1) = (&*p, &*p.add(1));
                yv[k] = act2(y0, y1);
                let d = _mm_setr_ps(y0.d, y1.d, 0.0, 0.0);
                dyv[k] = _mm512_permutexvar_ps(pair, _mm512_castps128_ps512(d));
                if !B::SIGNED {
                    sv[k] = _mm_setr_ps(y0.s, y1.s, 0.0, 0.0);
                }
            }
            for j in 0..R {
                let p = ws[j].as_ptr().add(b * B::SIZE);
                let q = B::weights2(p);
                let h0 = core::ptr::read_unaligned(p as *const u16) as i32;
                let h1 = core::ptr::read_unaligned(p.add(B::SIZE) as *const u16) as i32;
                let dw = _mm_cvtph_ps(_mm_cvtsi32_si128(h0 | (h1 << 16)));
                let dwv = _mm512_permutexvar_ps(pair, _mm512_castps128_ps512(dw));
                // |w| and where w < 0, shared by the T activations.
                let (ax, neg) = if B::SIGNED {
                    (_mm512_abs_epi8(q), _mm512_movepi8_mask(q))
                } else {
                    (q, 0)
                };
                let mv = if B::SIGNED {
                    _mm_setzero_ps()
                } else {
                    let m0 = core::ptr::read_unaligned(p.add(2) as *const u16) as i32;
                    let m1 = core::ptr::read_unaligned(p.add(B::SIZE + 2) as *const u16) as i32;
                    _mm_cvtph_ps(_mm_cvtsi32_si128(m0 | (m1 << 16)))
                };
                for k in 0..T {
                    let y = if B::SIGNED {
                        _mm512_mask_sub_epi8(yv[k], neg, _mm512_setzero_si512(), yv[k])
                    } else {
                        yv[k]
                    };
                    let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ax, y);
                    let d = _mm512_mul_ps(dwv, dyv[k]);
                    acc[j][k] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(dot), acc[j][k]);
                    if !B::SIGNED {
                        summ[j][k] = _mm_fmadd_ps(mv, sv[k], summ[j][k]);
                    }
                }
            }
        }
        b += 2;
    }
    let mut out = [[0.0f32; T]; R];
    for j in 0..R {
        for k in 0..T {
            let m = _mm_add_ss(summ[j][k], _mm_movehdup_ps(summ[j][k]));
            out[j][k] =
                _mm512_reduce_add_ps(_mm512_add_ps(acc[j][k], qacc[j][k])) + _mm_cvtss_f32(m);
        }
    }
    if b < nb {
        for j in 0..R {
            // SAFETY: block b lies in `w_j` (b < nb).
            let q = unsafe { B::weights1(ws[j].as_ptr().add(b * B::SIZE)) };
            let blk = &ws[j][b * B::SIZE..];
            let dw = f16_to_f32(u16_at(blk));
            let (ax, neg) = if B::SIGNED {
                (_mm256_abs_epi8(q), _mm256_movepi8_mask(q))
            } else {
                (q, 0)
            };
            for k in 0..T {
                let yb = &ys[k][b];
                // SAFETY: `qs` is 32 bytes.
                let mut y = unsafe { _mm256_loadu_si256(yb.qs.as_ptr() as *const __m256i) };
                if B::SIGNED {
                    y = _mm256_mask_sub_epi8(y, neg, _mm256_setzero_si256(), y);
                }
                let dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, y);
                let d = _mm256_set1_ps(dw * yb.d);
                out[j][k] += super::avx2::hsum(_mm256_mul_ps(d, _mm256_cvtepi32_ps(dot)));
                if !B::SIGNED {
                    out[j][k] += f16_to_f32(u16_at(&blk[2..])) * yb.s;
                }
            }
        }
    }
    out
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn tile_q8_0<const R: usize, const T: usize>(
    ws: [&[u8]; R],
    acts: [(&[Q8Act], &[Q8Quad]); T],
) -> [[f32; T]; R] {
    tile_quant::<Q8_0, R, T>(ws, acts)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn tile_q4_0<const R: usize, const T: usize>(
    ws: [&[u8]; R],
    acts: [(&[Q8Act], &[Q8Quad]); T],
) -> [[f32; T]; R] {
    tile_quant::<Q4_0, R, T>(ws, acts)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn tile_q4_1<const R: usize, const T: usize>(
    ws: [&[u8]; R],
    acts: [(&[Q8Act], &[Q8Quad]); T],
) -> [[f32; T]; R] {
    tile_quant::<Q4_1, R, T>(ws, acts)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn tile_q5_0<const R: usize, const T: usize>(
    ws: [&[u8]; R],
    acts: [(&[Q8Act], &[Q8Quad]); T],
) -> [[f32; T]; R] {
    tile_quant::<Q5_0, R, T>(ws, acts)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn tile_q5_1<const R: usize, const T: usize>(
    ws: [&[u8]; R],
    acts: [(&[Q8Act], &[Q8Quad]); T],
) -> [[f32; T]; R] {
    tile_quant::<Q5_1, R, T>(ws, acts)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn tile_iq4_nl<const R: usize, const T: usize>(
    ws: [&[u8]; R],
    acts: [(&[Q8Act], &[Q8Quad]); T],
) -> [[f32; T]; R] {
    tile_quant::<Iq4Nl, R, T>(ws, acts)
}

/// Word indices for [`halves2`]: the f16 at word `off` of 4 blocks of `stride` words
/// (`total` words in all, more than 32), in quad lanes; words past 31 come from a
/// second register loaded at the last 64 bytes, so they are `32 + w - (total - 32)`.
const fn quad_words2(stride: u16, off: u16, total: u16) -> [u16; 32] {
    let mut idx = quad_words(stride, off);
    let mut l = 0;
    while l < 16 {
        if idx[l] >= 32 {
            idx[l] = 32 + idx[l] - (total - 32);
        }
        l += 1;
    }
    idx
}

/// The 16 f16 values at word indices `idx` (from [`quad_words2`]) of the `bytes`
/// bytes at `p` (64 < bytes ≤ 128), widened to f32.
///
/// # Safety
/// `bytes` readable bytes at `p`; AVX-512 F/BW present.
#[inline(always)]
unsafe fn halves2(p: *const u8, bytes: usize, idx: &[u16; 32]) -> __m512 {
    // SAFETY: caller; both loads lie in p..p + bytes.
    unsafe {
        let a = _mm512_loadu_si512(p as *const __m512i);
        let b = _mm512_loadu_si512(p.add(bytes - 64) as *const __m512i);
        let i = _mm512_loadu_si512(idx.as_ptr() as *const __m512i);
        _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(a, i, b)))
    }
}

/// The fifth bits of 4 Q5 blocks (their `qh` u32s at `p`, `p + stride`, ...) as byte
/// masks in [`Q8Quad`] order: (elements 0..16 of each block, elements 16..32).
///
/// # Safety
/// 4 readable bytes at each.
#[inline(always)]
unsafe fn fifth4(p: *const u8, stride: usize) -> (__mmask64, __mmask64) {
    let (mut lo, mut hi) = (0u64, 0u64);
    for g in 0..4 {
        // SAFETY: caller.
        let h = unsafe { core::ptr::read_unaligned(p.add(g * stride) as *const u32) } as u64;
        lo |= (h & 0xffff) << (16 * g);
        hi |= (h >> 16) << (16 * g);
    }
    (lo, hi)
}

/// The u32 at `p`.
///
/// # Safety
/// 4 readable bytes at `p`.
#[inline(always)]
unsafe fn qh_at(p: *const u8) -> u64 {
    // SAFETY: caller.
    unsafe { core::ptr::read_unaligned(p as *const u32) as u64 }
}

/// `q | 16` in the bytes selected by `m`.
#[inline(always)]
fn or16(q: __m512i, m: __mmask64) -> __m512i {
    // SAFETY: only called from functions with AVX-512 BW enabled.
    unsafe { _mm512_or_si512(q, _mm512_maskz_set1_epi8(m, 16)) }
}

/// As [`or16`] for 32 bytes.
#[inline(always)]
fn or16_256(q: __m256i, m: __mmask32) -> __m256i {
    // SAFETY: only called from functions with AVX-512 BW/VL enabled.
    unsafe { _mm256_or_si256(q, _mm256_maskz_set1_epi8(m, 16)) }
}

impl QuantBlock for Q5_0 {
    const SIZE: usize = 22;
    const SIGNED: bool = true;
    const OFFSET: i32 = 16;
    #[inline(always)]
    unsafe fn scales4(p: *const u8) -> __m512 {
        const IDX: [u16; 32] = quad_words2(11, 0, 44);
        // SAFETY: the 4 blocks are 88 bytes (caller).
        unsafe { halves2(p, 88, &IDX) }
    }
    #[inline(always)]
    unsafe fn mins4(_: *const u8) -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn offset(q: &Q8Quad) -> __m512i {
        // SAFETY: 64 bytes; caller. The raw 5-bit quant is w + 16: -16·Σq = 2·(-8·Σq).
        unsafe { _mm512_slli_epi32(_mm512_loadu_si512(q.off8.as_ptr() as *const __m512i), 1) }
    }
    #[inline(always)]
    unsafe fn weights4(p: *const u8) -> (__m512i, __m512i) {
        // SAFETY: qh at 2..6, quants at 6..22 of each block (caller).
        unsafe {
            let (lo, hi) = nibbles4(p.add(6), 22);
            let (mlo, mhi) = fifth4(p.add(2), 22);
            (or16(lo, mlo), or16(hi, mhi))
        }
    }
    #[inline(always)]
    unsafe fn pair(pa: *const u8, pb: *const u8) -> __m512i {
        // SAFETY: qh at 2..6, quants at 6..22 of each block (caller); element order,
        // qh bit j = element j; the raw 5-bit quant is w + 16.
        unsafe {
            let q = nibbles2(pa.add(6), pb.add(6));
            or16(q, qh_at(pa.add(2)) | (qh_at(pb.add(2)) << 32))
        }
    }
    #[inline(always)]
    unsafe fn weights1(p: *const u8) -> __m256i {
        // SAFETY: as `weights4` for one block.
        unsafe {
            let q = or16_256(nibbles1(p.add(6)), qh_at(p.add(2)) as u32);
            _mm256_sub_epi8(q, _mm256_set1_epi8(16))
        }
    }
}

impl QuantBlock for Q5_1 {
    const SIZE: usize = 24;
    const SIGNED: bool = false;
    const OFFSET: i32 = 0;
    #[inline(always)]
    unsafe fn scales4(p: *const u8) -> __m512 {
        const IDX: [u16; 32] = quad_words2(12, 0, 48);
        // SAFETY: the 4 blocks are 96 bytes (caller).
        unsafe { halves2(p, 96, &IDX) }
    }
    #[inline(always)]
    unsafe fn mins4(p: *const u8) -> __m512 {
        const IDX: [u16; 32] = quad_words2(12, 1, 48);
        // SAFETY: as `scales4`.
        unsafe { halves2(p, 96, &IDX) }
    }
    #[inline(always)]
    unsafe fn offset(_: &Q8Quad) -> __m512i {
        // Unsigned quants: no offset.
        _mm512_setzero_si512()
    }
    #[inline(always)]
    unsafe fn weights4(p: *const u8) -> (__m512i, __m512i) {
        // SAFETY: qh at 4..8, quants at 8..24 of each block (caller).
        unsafe {
            let (lo, hi) = nibbles4(p.add(8), 24);
            let (mlo, mhi) = fifth4(p.add(4), 24);
            (or16(lo, mlo), or16(hi, mhi))
        }
    }
    #[inline(always)]
    unsafe fn pair(pa: *const u8, pb: *const u8) -> __m512i {
        // SAFETY: qh at 4..8, quants at 8..24 of each block (caller).
        unsafe {
            let q = nibbles2(pa.add(8), pb.add(8));
            or16(q, qh_at(pa.add(4)) | (qh_at(pb.add(4)) << 32))
        }
    }
    #[inline(always)]
    unsafe fn weights1(p: *const u8) -> __m256i {
        // SAFETY: as `weights4` for one block.
        unsafe { or16_256(nibbles1(p.add(8)), qh_at(p.add(4)) as u32) }
    }
}

/// IQ4_NL's values as signed bytes in each 128-bit lane of a 512-bit register.
#[inline(always)]
fn iq4_signed512() -> __m512i {
    // SAFETY: 16 bytes; only called from functions with AVX-512 F enabled.
    unsafe {
        _mm512_broadcast_i32x4(_mm_loadu_si128(
            llm_format::quant::IQ4_NL_VALUES.as_ptr() as *const __m128i
        ))
    }
}

impl QuantBlock for Iq4Nl {
    const SIZE: usize = 18;
    const SIGNED: bool = true;
    const OFFSET: i32 = 128;
    #[inline(always)]
    unsafe fn scales4(p: *const u8) -> __m512 {
        const IDX: [u16; 32] = quad_words(9, 0);
        // SAFETY: the 4 blocks are 72 bytes (caller).
        unsafe { halves16(p, &IDX) }
    }
    #[inline(always)]
    unsafe fn mins4(_: *const u8) -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn offset(q: &Q8Quad) -> __m512i {
        // SAFETY: 64 bytes; caller. Values go in as v + 128.
        unsafe { _mm512_loadu_si512(q.off128.as_ptr() as *const __m512i) }
    }
    #[inline(always)]
    unsafe fn weights4(p: *const u8) -> (__m512i, __m512i) {
        // SAFETY: quants at 2..18 of each block (caller); table lookup, then +128.
        unsafe {
            let (lo, hi) = nibbles4(p.add(2), 18);
            let (t, flip) = (iq4_signed512(), _mm512_set1_epi8(-128));
            (
                _mm512_xor_si512(_mm512_shuffle_epi8(t, lo), flip),
                _mm512_xor_si512(_mm512_shuffle_epi8(t, hi), flip),
            )
        }
    }
    #[inline(always)]
    unsafe fn pair(pa: *const u8, pb: *const u8) -> __m512i {
        // SAFETY: quants at 2..18 of each block (caller); table lookup, then +128.
        unsafe {
            let v = _mm512_shuffle_epi8(iq4_signed512(), nibbles2(pa.add(2), pb.add(2)));
            _mm512_xor_si512(v, _mm512_set1_epi8(-128))
        }
    }
    #[inline(always)]
    unsafe fn weights1(p: *const u8) -> __m256i {
        // SAFETY: quants at 2..18 (caller).
        unsafe {
            let t = _mm512_castsi512_si256(iq4_signed512());
            _mm256_shuffle_epi8(t, nibbles1(p.add(2)))
        }
    }
}
