//! x86-64 AVX-512 BF16 prompt kernels for F16 and BF16 weights: `vdpbf16ps`, which
//! multiplies 32 pairs of bf16 values and adds each lane's two products to an f32 sum,
//! twice the products per instruction of an f32 FMA and without widening the weights.
//!
//! * The activations of a product are rounded to bf16 once per call ([`round_rows`],
//!   `vcvtneps2bf16`: round to nearest even), each row padded with zeros to a multiple
//!   of 32 columns (`act::bf16_padded`), so every load of them is a whole register.
//! * The weights go 16 rows at a time, in chunks of up to [`KG`] groups of 32
//!   columns, made bf16 once per chunk (F16 through f32, exact, and
//!   `vcvtne2ps2bf16`, rounded to nearest even; BF16 as they are; the last partial
//!   32 columns read under a mask and the rest zero) and interleaved one row per
//!   32-bit lane (`avx512_rows16::transpose`): register `p` of a group holds column
//!   pair `p` of all 16 rows. A tile of [`TA`] activations then takes each pair of
//!   its bf16 values broadcast to every lane, so one `vdpbf16ps` adds two products
//!   to each of 16 rows' sums, and the 16 sums of an activation come out as one
//!   vector: no horizontal sums (with 4-row tiles, those and the scalar stores took
//!   about a third of a 768-column product).
//!
//! **Error** against the f32 products (`scalar`): each activation is rounded to bf16
//! (relative error at most `u = 2⁻⁸`), and so is each F16 weight (BF16 weights are
//! used as they are); the products of two bf16 values are exact in f32 and the sums
//! are f32. So each output moves by at most `(2u + u²)·Σ|w||x|` for F16 weights and
//! `u·Σ|w||x|` for BF16 weights, plus the f32 summation terms every path has
//! (`vdpbf16ps` rounds to nearest even and treats denormal inputs and results as
//! zero, which adds at most `K · 2⁻¹²⁶` in absolute terms). Since the rounding errors
//! have random signs, the typical error is much smaller: about
//! `u·sqrt(2/3 · Σ(w·x)²)`, which grows as `sqrt(K)`. `tests/kernels.rs` checks both.
//! `Cpu::set_f16_exact` keeps the f32 path where this is not acceptable.
//!
//! Generation (`n = 1`) reads each weight once and memory sets its pace. F16 weights
//! keep the f32 products there ([`Load16`](super::avx512) widening keeps up with
//! memory). BF16 weights come here ([`Bf16Dots::gen`]): widening them to f32 took
//! two more instructions per 16 weights and kept fewer cache lines in flight (a
//! third slower on a Zen 4), while `vdpbf16ps` takes 32 weights straight from one
//! load. Their activations are rounded as for a prompt, within the same bound, as
//! llama.cpp does for BF16 weights (its `vec_dot_type`).

use super::act::{bf16_padded, bf16_row_pairs};
use super::avx512_rows16::{group, store_rows, transpose16, ROWS};
use super::stream::prefetch_ahead;
use super::{Matrix, OutRows};
use core::arch::x86_64::*;
use llm_format::{DType, Layout};

/// 32-column groups per weight chunk: 16 rows × 16 groups × 1 KiB = 16 KiB, within
/// L1 beside the activations.
const KG: usize = 16;

/// Activations per tile: 2 × 8 accumulators (even and odd column pairs, so that
/// 16 sums are in flight past `vdpbf16ps`'s latency).
const TA: usize = 8;

/// Proof that the CPU has AVX-512 BF16 as well as the [`Avx512`](super::avx512::Avx512)
/// token's features: exists only through [`Bf16Dots::detect`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bf16Dots(());

impl Bf16Dots {
    /// The token, if this CPU (std: run-time detection; no_std: compile-time target
    /// features) has AVX-512 BF16 besides F/BW/VL and F16C. Called once per
    /// [`Avx512`](super::avx512::Avx512) token, which the caller holds.
    pub(crate) fn detect() -> Option<Bf16Dots> {
        #[cfg(feature = "std")]
        let ok = std::is_x86_feature_detected!("avx512bf16")
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("f16c");
        #[cfg(not(feature = "std"))]
        let ok = cfg!(all(
            target_feature = "avx512bf16",
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vl",
            target_feature = "f16c"
        ));
        ok.then_some(Bf16Dots(()))
    }

    /// Whether this CPU runs `vdpbf16ps` at least 1.5 times as many multiply-adds per
    /// cycle as f32 FMAs (`vfmadd231ps`, 16 per instruction): measured once per
    /// process ([`probe`], about 0.1 ms). Zen 4/5 run 32 bf16 products per
    /// instruction at the FMA's rate, twice its multiply-adds; the Intel Xeon of
    /// PERF.md runs one `vdpbf16ps` per two cycles against two FMAs per cycle, half
    /// of them, so there the prompt kernels keep f32 products and lose nothing.
    /// Without `std` (no place to keep the answer): `true`.
    pub(crate) fn faster_than_fma(self) -> bool {
        #[cfg(feature = "std")]
        {
            static FASTER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            // SAFETY: the token proves the features `probe` enables.
            *FASTER.get_or_init(|| unsafe { probe() } >= 1.5)
        }
        #[cfg(not(feature = "std"))]
        true
    }

    /// Rounds `x` (rows of `cols` values) to bf16 into `out` (rows of
    /// [`bf16_padded`]`(cols)` values, the padding zero).
    ///
    /// # Panics
    /// Unless `out.len() / bf16_padded(cols) == x.len() / cols` with no remainders.
    pub(crate) fn round_rows(self, x: &[f32], cols: usize, out: &mut [u16]) {
        // SAFETY: the token exists only if the CPU has every feature it enables.
        unsafe { round_rows(x, cols, out) }
    }

    /// Rows `out.r0..out.r1` of `y = x·Wᵀ` for F16 or BF16 weights, with `xb` the
    /// activations as [`Bf16Dots::round_rows`] wrote them.
    ///
    /// # Panics
    /// If `w` is not F16 or BF16, or `xb` does not hold `out.n()` padded rows.
    pub(crate) fn rows(self, w: &Matrix<'_>, xb: &[u16], out: &mut OutRows<'_>) {
        // SAFETY: as in `round_rows`.
        unsafe {
            match w.dtype {
                DType::F16 => rows::<true>(w, xb, out),
                DType::BF16 => rows::<false>(w, xb, out),
                d => panic!("bf16 dots take F16 or BF16 weights, not {d}"),
            }
        }
    }

    /// Rows `out.r0..out.r1` of `y = x·Wᵀ` for one activation row (`out.n() == 1`)
    /// and BF16 weights, with `xb` the activation as [`Bf16Dots::round_rows`] wrote it.
    ///
    /// # Panics
    /// If `w` is not BF16, `out.n() != 1` or `xb` is not one padded row.
    pub(crate) fn gen(self, w: &Matrix<'_>, xb: &[u16], out: &mut OutRows<'_>, prefetch: bool) {
        // SAFETY: as in `round_rows`.
        unsafe { gen(w, xb, out, prefetch) }
    }
}

/// [`Bf16Dots::gen`]: row by row (one weight stream), 32 columns per `vdpbf16ps`,
/// four sums in flight, the last `cols % 32` weights under a mask.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,f16c")]
fn gen(w: &Matrix<'_>, xb: &[u16], out: &mut OutRows<'_>, prefetch: bool) {
    assert_eq!(w.dtype, DType::BF16, "bf16 generation takes BF16 weights");
    let cols = w.cols;
    assert!(out.n() == 1 && xb.len() == bf16_padded(cols));
    let whole = cols / 32;
    let bh = |v: __m512i| {
        // SAFETY: same size; 32 bf16 bit patterns.
        unsafe { core::mem::transmute::<__m512i, __m512bh>(v) }
    };
    for r in out.r0..out.r1 {
        let row = w.row(r);
        assert_eq!(row.len(), 2 * cols);
        if prefetch {
            prefetch_ahead(row);
        }
        let (wp, xp) = (row.as_ptr() as *const i16, xb.as_ptr() as *const i16);
        // SAFETY (loads): group g's weights 32g..32g + 32 lie in the row for g < whole
        // and its activations in `xb`; the last group's weights are read under a mask
        // of the columns below `cols`, and `xb` is padded to whole groups.
        let load = |g: usize| unsafe {
            (
                bh(_mm512_loadu_si512(wp.add(32 * g) as *const __m512i)),
                bh(_mm512_loadu_si512(xp.add(32 * g) as *const __m512i)),
            )
        };
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut g = 0;
        while g + 4 <= whole {
            for (u, a) in acc.iter_mut().enumerate() {
                let (wv, xv) = load(g + u);
                *a = _mm512_dpbf16_ps(*a, wv, xv);
            }
            g += 4;
        }
        while g < whole {
            let (wv, xv) = load(g);
            acc[0] = _mm512_dpbf16_ps(acc[0], wv, xv);
            g += 1;
        }
        if 32 * whole < cols {
            let mask = (1u32 << (cols - 32 * whole)) - 1;
            // SAFETY: as above.
            let (wv, xv) = unsafe {
                (
                    bh(_mm512_maskz_loadu_epi16(mask, wp.add(32 * whole))),
                    bh(_mm512_loadu_si512(xp.add(32 * whole) as *const __m512i)),
                )
            };
            acc[1] = _mm512_dpbf16_ps(acc[1], wv, xv);
        }
        let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        out.set(0, r, _mm512_reduce_add_ps(s));
    }
}

/// Multiply-adds per time-stamp tick of `vdpbf16ps` over those of `vfmadd231ps`, each
/// timed on 16 independent accumulators (past either's latency) for 1000 rounds, the
/// least of 5 tries (a try the scheduler interrupts only looks slower).
#[cfg(feature = "std")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,f16c,fma")]
fn probe() -> f64 {
    const ROUNDS: usize = 1000;
    let mut best = [u64::MAX; 2];
    let mut sink = 0.0f32;
    for _ in 0..5 {
        // SAFETY: plain register arithmetic; `_rdtsc` reads the time-stamp counter.
        unsafe {
            let b: __m512bh = core::hint::black_box(core::mem::transmute::<__m512i, __m512bh>(
                _mm512_set1_epi16(0x3f80), // 1.0
            ));
            let mut acc = [_mm512_setzero_ps(); 16];
            let t0 = _rdtsc();
            for _ in 0..ROUNDS {
                for a in acc.iter_mut() {
                    *a = _mm512_dpbf16_ps(*a, b, b);
                }
            }
            let t1 = _rdtsc();
            sink += acc.iter().map(|a| _mm512_reduce_add_ps(*a)).sum::<f32>();
            let (m, c) = core::hint::black_box((_mm512_set1_ps(0.5), _mm512_set1_ps(1.0)));
            let mut acc = [_mm512_setzero_ps(); 16];
            let t2 = _rdtsc();
            for _ in 0..ROUNDS {
                for a in acc.iter_mut() {
                    *a = _mm512_fmadd_ps(*a, m, c);
                }
            }
            let t3 = _rdtsc();
            sink += acc.iter().map(|a| _mm512_reduce_add_ps(*a)).sum::<f32>();
            best[0] = best[0].min(t1.wrapping_sub(t0).max(1));
            best[1] = best[1].min(t3.wrapping_sub(t2).max(1));
        }
    }
    core::hint::black_box(sink);
    // 32 multiply-adds per vdpbf16ps, 16 per FMA, the same count of instructions.
    (32.0 / best[0] as f64) / (16.0 / best[1] as f64)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,f16c")]
fn round_rows(x: &[f32], cols: usize, out: &mut [u16]) {
    let stride = bf16_padded(cols);
    for (xr, or) in bf16_row_pairs(x, cols, out) {
        let mut c = 0;
        while c < stride {
            let left = cols.saturating_sub(c).min(16);
            let mask = ((1u32 << left) - 1) as __mmask16;
            // SAFETY: the mask selects columns c..c + left < cols of row `xr`; the
            // store covers out columns c..c + 16 <= stride (stride is a multiple of 32
            // and c of 16).
            unsafe {
                let v = _mm512_maskz_loadu_ps(mask, xr.as_ptr().add(c));
                let h: __m256i = core::mem::transmute(_mm512_cvtneps_pbh(v));
                _mm256_storeu_si256(or.as_mut_ptr().add(c) as *mut __m256i, h);
            }
            c += 16;
        }
    }
}

/// 32 weights of a row (columns `32g..`, the last `cols % 32` under a mask, the rest
/// zero) as bf16 in one register: F16 (`F16 = true`) converted, BF16 as it is.
///
/// # Safety
/// `row` holds `cols` weights of 2 bytes; `32g < cols`; the features of `rows`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,f16c")]
unsafe fn load_bf16<const F16: bool>(row: &[u8], cols: usize, g: usize) -> __m512i {
    let c = 32 * g;
    let left = (cols - c).min(32);
    let mask = if left == 32 {
        u32::MAX
    } else {
        (1u32 << left) - 1
    };
    // SAFETY: the mask selects weights c..c + left < cols, inside `row`.
    unsafe {
        let v = _mm512_maskz_loadu_epi16(mask, row.as_ptr().add(2 * c) as *const i16);
        if F16 {
            let lo = _mm512_cvtph_ps(_mm512_castsi512_si256(v));
            let hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(v));
            // `cvtne2ps` puts its first operand in the upper half.
            core::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo))
        } else {
            v
        }
    }
}

/// `[Σ w_j·x_k in lane j for k in 0..T]` over `groups` interleaved groups at `w`
/// (16 registers of 64 bytes each: register `p` lane `j` holds row `j`'s column
/// pair `p`), with `xs[k]` pointing at the first group's 32 bf16 activations of row
/// `k`.
///
/// # Safety
/// `w` has `1024·groups` readable bytes and each `xs[k]` `32·groups` values; the
/// features of `rows`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,f16c")]
unsafe fn tile<const T: usize>(w: *const u8, groups: usize, xs: [*const u16; T]) -> [__m512; T] {
    // Even and odd column pairs in separate accumulators, each a fixed array (an
    // index computed from `p` sent them through memory).
    let (mut even, mut odd) = ([_mm512_setzero_ps(); T], [_mm512_setzero_ps(); T]);
    for g in 0..groups {
        for q in 0..8 {
            // SAFETY: registers 2q, 2q + 1 of group g, inside the caller's bytes; the
            // bit patterns of 32 bf16 values each.
            let (w0, w1) = unsafe {
                let p = w.add(1024 * g + 128 * q);
                (
                    core::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                        p as *const __m512i,
                    )),
                    core::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                        p.add(64) as *const __m512i
                    )),
                )
            };
            for ((e, o), x) in even.iter_mut().zip(odd.iter_mut()).zip(&xs) {
                // SAFETY: values 32g + 4q .. 32g + 4q + 4 of the row (caller); the
                // bit patterns of two bf16 values.
                unsafe {
                    let p = x.add(32 * g + 4 * q) as *const i32;
                    let x0 = _mm512_set1_epi32(core::ptr::read_unaligned(p));
                    let x1 = _mm512_set1_epi32(core::ptr::read_unaligned(p.add(1)));
                    *e = _mm512_dpbf16_ps(*e, w0, core::mem::transmute::<__m512i, __m512bh>(x0));
                    *o = _mm512_dpbf16_ps(*o, w1, core::mem::transmute::<__m512i, __m512bh>(x1));
                }
            }
        }
    }
    let mut out = [_mm512_setzero_ps(); T];
    for ((o, e), d) in out.iter_mut().zip(even).zip(odd) {
        *o = _mm512_add_ps(e, d);
    }
    out
}

/// Group `g` (32 columns) of the 16 `rows`, bf16 and interleaved: register `p` lane
/// `j` holds row `j`'s columns `32g + 2p`, `+1`.
///
/// # Safety
/// Each row holds `cols` weights of 2 bytes; `32g < cols`; the features of `rows`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,f16c")]
unsafe fn interleave<const F16: bool>(
    rows: &[&[u8]; ROWS],
    cols: usize,
    g: usize,
) -> [__m512i; 16] {
    let mut v = [_mm512_setzero_si512(); ROWS];
    for (v, row) in v.iter_mut().zip(rows) {
        // SAFETY: caller.
        *v = unsafe { load_bf16::<F16>(row, cols, g) };
    }
    transpose16(&v)
}

/// F16 group `g` of a row group in layout `r16` (`base`: its first byte) made bf16
/// in place of the lanes: no transposition, the file has the order already.
///
/// # Safety
/// `base` has bytes `1024g..1024(g + 1)`; the features of `rows`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,f16c")]
unsafe fn widen_r16(base: *const u8, g: usize) -> [__m512i; 16] {
    let mut v = [_mm512_setzero_si512(); 16];
    for (p, v) in v.iter_mut().enumerate() {
        // SAFETY: caller.
        unsafe {
            let h = _mm512_loadu_si512(base.add(1024 * g + 64 * p) as *const __m512i);
            let lo = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
            let hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(h));
            *v = core::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
        }
    }
    v
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,f16c")]
fn rows<const F16: bool>(w: &Matrix<'_>, xb: &[u16], out: &mut OutRows<'_>) {
    let (n, cols) = (out.n(), w.cols);
    let stride = bf16_padded(cols);
    assert_eq!(xb.len(), n * stride);
    let groups = stride / 32;
    let r16 = w.layout == Layout::R16;
    // Layout r16: whole groups of 16 rows (asserted per group below) and of 32
    // columns (its rows are whole 64-byte lines), so `groups` is exact.
    let group_bytes = ROWS * w.row_bytes();
    let mut chunk = [[_mm512_setzero_si512(); 16]; KG];
    let mut r = out.r0;
    while r < out.r1 {
        let (here, rows) = if r16 {
            assert!(r % ROWS == 0 && r + ROWS <= w.rows);
            (ROWS, [&w.data[..0]; ROWS])
        } else {
            let (here, rows) = group(w, out, r, groups == 0);
            assert_eq!(rows[0].len(), 2 * cols);
            (here, rows)
        };
        // The row group's bytes in r16 (unused otherwise).
        let base = if r16 {
            w.data[r * w.row_bytes()..r * w.row_bytes() + group_bytes].as_ptr()
        } else {
            core::ptr::null()
        };
        for c0 in (0..groups).step_by(KG) {
            let c1 = (c0 + KG).min(groups);
            let wp = if r16 && !F16 {
                // BF16 in r16: the file's bytes are the chunk.
                // SAFETY: groups c0..c1 lie in the row group (group_bytes = 1024·groups).
                unsafe { base.add(1024 * c0) }
            } else {
                for (g, cg) in (c0..c1).zip(chunk.iter_mut()) {
                    // SAFETY: every row holds `cols` weights (asserted), g < groups;
                    // in r16, group g's 1 KiB lies in the row group.
                    *cg = unsafe {
                        if r16 {
                            widen_r16(base, g)
                        } else {
                            interleave::<F16>(&rows, cols, g)
                        }
                    };
                }
                chunk.as_ptr() as *const u8
            };
            let x = |i: usize| xb[i * stride + 32 * c0..].as_ptr();
            let mut i = 0;
            // SAFETY (tiles): `wp` has the c1 − c0 groups (above); row i's values of
            // groups c0..c1 lie in `xb` (its length is asserted); this function's
            // features.
            while i + TA <= n {
                let mut xs = [x(i); TA];
                for (k, p) in xs.iter_mut().enumerate().skip(1) {
                    *p = x(i + k);
                }
                let v = unsafe { tile::<TA>(wp, c1 - c0, xs) };
                for (k, v) in v.iter().enumerate() {
                    store_rows(out, i + k, r, here, c0 == 0, *v);
                }
                i += TA;
            }
            while i < n {
                let v = unsafe { tile::<1>(wp, c1 - c0, [x(i)]) };
                store_rows(out, i, r, here, c0 == 0, v[0]);
                i += 1;
            }
        }
        r += ROWS;
    }
}
