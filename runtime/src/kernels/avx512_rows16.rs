//! AVX-512 prompt products (`n > 1` activations) over 16 weight rows interleaved, one
//! row per 32-bit lane: the 32-element block types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
//! IQ4_NL, [`rows`]) and floats on FMAs ([`floats`]); `avx512_bf16` uses the same
//! layout for its bf16 dot products.
//!
//! The weights go 16 rows at a time ([`group`]). Each chunk of those rows is
//! transposed once into L1 ([`transpose`], [`transpose16`]) so that register `t` of a
//! column group holds word `t` (4 quants, 2 bf16 values or 1 float) of all 16 rows.
//! For the blocks each chunk is [`KB`] [`Block16`]s: eight such registers of unsigned
//! bytes (the type's quants plus its offset, as `QuantBlock::pair` gives them) and
//! the 16 rows' scales (and Q4_1/Q5_1's minima) as f32 lanes. Then every activation is
//! multiplied with all 16 rows at once:
//!
//! * blocks: 8 × `vpdpbusd` against the activation's 4-byte groups broadcast to every
//!   lane give each row's exact integer sum in its own lane; the sum starts at the
//!   activation's `-offset·Σq`, so the weights' offset cancels in integers; then one
//!   conversion and one FMA with `d_w·d_x` (and one more with `m_w·s_x`) per block
//!   serve 16 rows, where a row-at-a-time layout spends them per row and needs a
//!   horizontal sum per output at the end;
//! * floats: each activation value broadcast, one FMA into 16 rows' sums.
//!
//! The lanes are the rows, so a tile's result is 16 consecutive outputs of one
//! activation: one vector store (or add, for chunks after the first, [`store_rows`]).
//! This is the layout ik_llama.cpp's `*_r8`/`*_r4` types repack at load, built here per
//! chunk in L1 from the file's own blocks, so the file and the mmap stay as they are.

use super::act::{Q8Act, QK};
use super::avx512::{Load16, QuantBlock};
use super::{Matrix, OutRows};
use core::arch::x86_64::*;
use llm_format::Layout;

/// Weight rows per group: one per 32-bit lane.
pub(super) const ROWS: usize = 16;

/// Blocks per chunk: 16 × 640 bytes = 10 KiB of interleaved weights, which stay in L1
/// while every activation passes over them.
const KB: usize = 16;

/// Activations per tile: each chunk's registers serve this many activations, whose
/// integer chains run side by side.
const TA: usize = 8;

/// One block of 16 rows, interleaved: `w[t]` lane `j` = weights `4t..4t+4` of row `j`
/// (offset to unsigned bytes), `d` and `m` lane `j` = row `j`'s scale and minimum.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block16 {
    w: [__m512i; 8],
    d: __m512,
    m: __m512,
}

/// Rows `out.r0..out.r1` of `y = x · Wᵀ` for a prompt, from the activation blocks `a`
/// (`n · cols/32`). Any `n` works; `avx512::rows` sends `n > 1` here.
#[inline(never)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
pub(super) fn rows<B: QuantBlock>(w: &Matrix<'_>, a: &[Q8Act], out: &mut OutRows<'_>) {
    let n = out.n();
    let nb = w.cols / QK;
    assert_eq!(a.len(), n * nb);
    let zero = Block16 {
        w: [_mm512_setzero_si512(); 8],
        d: _mm512_setzero_ps(),
        m: _mm512_setzero_ps(),
    };
    let mut chunk = [zero; KB];
    let mut r = out.r0;
    while r < out.r1 {
        let (here, rows) = group(w, out, r, nb == 0);
        for c0 in (0..nb).step_by(KB) {
            let c1 = (c0 + KB).min(nb);
            for (g, b) in (c0..c1).zip(chunk.iter_mut()) {
                *b = interleave::<B>(&rows, g);
            }
            let blocks = &chunk[..c1 - c0];
            let ys = |i: usize| &a[i * nb + c0..i * nb + c1];
            let mut emit = |i: usize, v: &[__m512]| {
                for (k, v) in v.iter().enumerate() {
                    store_rows(out, i + k, r, here, c0 == 0, *v);
                }
            };
            let mut i = 0;
            while i + TA <= n {
                let mut y = [ys(i); TA];
                for (k, y) in y.iter_mut().enumerate().skip(1) {
                    *y = ys(i + k);
                }
                emit(i, &tile::<B, TA>(blocks, y));
                i += TA;
            }
            while i < n {
                emit(i, &tile::<B, 1>(blocks, [ys(i)]));
                i += 1;
            }
        }
        r += ROWS;
    }
}

/// The row group at `r` of `out`: how many rows it has (`here`, 16 but for the last
/// group of a part) and their bytes, the last row repeated in the missing lanes (whose
/// outputs are not written). With `empty` (no columns) its outputs are set to 0 here.
#[inline(always)]
pub(super) fn group<'w>(
    w: &Matrix<'w>,
    out: &mut OutRows<'_>,
    r: usize,
    empty: bool,
) -> (usize, [&'w [u8]; ROWS]) {
    let here = (out.r1 - r).min(ROWS);
    let mut rows = [w.row(r); ROWS];
    for (j, row) in rows.iter_mut().enumerate().skip(1) {
        *row = w.row(r + j.min(here - 1));
    }
    if empty {
        for i in 0..out.n() {
            out.span(i, r, here).fill(0.0);
        }
    }
    (here, rows)
}

/// Lanes `0..here` of `v` into outputs `r..r + here` of activation `i`: set when
/// `first`, else added (the chunks after the first of a row group).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2")]
pub(super) fn store_rows(
    out: &mut OutRows<'_>,
    i: usize,
    r: usize,
    here: usize,
    first: bool,
    v: __m512,
) {
    let y = out.span(i, r, here);
    if here == ROWS {
        let p = y.as_mut_ptr();
        // SAFETY: `y` is 16 floats.
        unsafe {
            let v = if first {
                v
            } else {
                _mm512_add_ps(v, _mm512_loadu_ps(p))
            };
            _mm512_storeu_ps(p, v);
        }
        return;
    }
    let mut lanes = [0.0f32; ROWS];
    // SAFETY: `lanes` is 64 bytes.
    unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), v) };
    if first {
        y.copy_from_slice(&lanes[..here]);
    } else {
        y.iter_mut().zip(&lanes).for_each(|(y, v)| *y += v);
    }
}

/// Block `g` of the 16 rows, interleaved ([`Block16`]).
///
/// `pair` puts two rows' blocks in one register, as [`PAIRS`] says, and
/// [`transpose`] makes the groups of 4 weights lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn interleave<B: QuantBlock>(rows: &[&[u8]; ROWS], g: usize) -> Block16 {
    let mut p = [core::ptr::null::<u8>(); ROWS];
    for (p, row) in p.iter_mut().zip(rows) {
        assert!((g + 1) * B::SIZE <= row.len());
        // SAFETY: block g lies in the row (asserted).
        *p = unsafe { row.as_ptr().add(g * B::SIZE) };
    }
    let mut s = [_mm512_setzero_si512(); 8];
    for (k, s) in s.iter_mut().enumerate() {
        let (ra, rb) = PAIRS[k];
        // SAFETY: whole blocks (above).
        *s = unsafe { B::pair(p[ra], p[rb]) };
    }
    let w = transpose(s);
    // SAFETY: f16 scale at byte 0 of every type, the minimum (unsigned types) at
    // byte 2: inside the blocks.
    unsafe {
        Block16 {
            w,
            d: halves(&p, 0),
            m: if B::SIGNED {
                _mm512_setzero_ps()
            } else {
                halves(&p, 2)
            },
        }
    }
}

/// The rows (low 256 bits, high 256 bits) of each register that [`transpose`] takes:
/// slots 0..4 pair rows `s` and `s + 4`, slots 4..8 rows `s + 4` and `s + 8`, the
/// pairing that makes lane `j` row `j` at the end.
pub(super) const PAIRS: [(usize, usize); 8] = [
    (0, 4),
    (1, 5),
    (2, 6),
    (3, 7),
    (8, 12),
    (9, 13),
    (10, 14),
    (11, 15),
];

/// 16 rows of 8 32-bit words, two rows per register as [`PAIRS`] lays them out, to 8
/// registers of 16 lanes: `out[t]` lane `j` = word `t` of row `j`. An 8 × 8 transpose
/// in each 256-bit half (unpack 32, unpack 64), then 128-bit lanes across two
/// registers.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2")]
pub(super) fn transpose(s: [__m512i; 8]) -> [__m512i; 8] {
    // Per 128-bit lane, t[2q] = [a0 b0 a1 b1], t[2q+1] = [a2 b2 a3 b3] of slots 2q, 2q+1.
    let mut t = [_mm512_setzero_si512(); 8];
    for q in 0..4 {
        t[2 * q] = _mm512_unpacklo_epi32(s[2 * q], s[2 * q + 1]);
        t[2 * q + 1] = _mm512_unpackhi_epi32(s[2 * q], s[2 * q + 1]);
    }
    // u[4h + c]: word c (128-bit lanes 0 and 2) and c + 4 (lanes 1 and 3) of the four
    // slots of half h (slots 0..4, then 4..8).
    let mut u = [_mm512_setzero_si512(); 8];
    for h in 0..2 {
        let t = &t[4 * h..4 * h + 4];
        u[4 * h] = _mm512_unpacklo_epi64(t[0], t[2]);
        u[4 * h + 1] = _mm512_unpackhi_epi64(t[0], t[2]);
        u[4 * h + 2] = _mm512_unpacklo_epi64(t[1], t[3]);
        u[4 * h + 3] = _mm512_unpackhi_epi64(t[1], t[3]);
    }
    let mut w = [_mm512_setzero_si512(); 8];
    for c in 0..4 {
        w[c] = _mm512_shuffle_i32x4(u[c], u[4 + c], 0b10_00_10_00);
        w[c + 4] = _mm512_shuffle_i32x4(u[c], u[4 + c], 0b11_01_11_01);
    }
    w
}

/// 16 rows of 16 32-bit words (`v[j]` = row `j`) to 16 registers of 16 lanes:
/// `out[p]` lane `j` = word `p` of row `j`. [`transpose`] on each 256-bit half.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2")]
pub(super) fn transpose16(v: &[__m512i; ROWS]) -> [__m512i; 16] {
    let mut out = [_mm512_setzero_si512(); 16];
    // Words 0..8 of each row, then 8..16.
    for (h, half) in out.chunks_exact_mut(8).enumerate() {
        let part = |x: __m512i| {
            if h == 0 {
                _mm512_castsi512_si256(x)
            } else {
                _mm512_extracti64x4_epi64::<1>(x)
            }
        };
        let mut s = [_mm512_setzero_si512(); 8];
        for (s, &(a, b)) in s.iter_mut().zip(&PAIRS) {
            *s = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(part(v[a])), part(v[b]));
        }
        half.copy_from_slice(&transpose(s));
    }
    out
}

/// Columns per chunk of [`floats`]: 16 rows × 256 columns × 4 bytes = 16 KiB.
const FG: usize = 16;

/// Rows `out.r0..out.r1` of `y = x · Wᵀ` for float weights (`L`: F32, F16 or BF16,
/// widened to f32) and `n > 1` activations `x`: 16 rows at a time, each chunk of
/// [`FG`] groups of 16 columns widened and interleaved once (`transpose16`: register
/// `p` of a group holds column `p` of the 16 rows), then every activation's values
/// broadcast against it, one FMA adding to 16 rows' sums: no horizontal sums. F32
/// weights in layout `r16` are in that order in the file already and are read as they
/// are.
#[inline(never)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(super) fn floats<L: Load16>(w: &Matrix<'_>, x: &[f32], out: &mut OutRows<'_>) {
    let (n, cols) = (out.n(), w.cols);
    assert_eq!(x.len(), n * cols);
    let groups = cols.div_ceil(16);
    // F32 in r16: whole groups of 16 rows (asserted below) and of 16 columns.
    let r16 = w.layout == Layout::R16;
    assert!(!r16 || (L::SIZE == 4 && cols % 16 == 0));
    let mut chunk = [[_mm512_setzero_ps(); 16]; FG];
    let mut r = out.r0;
    while r < out.r1 {
        let (here, rows) = if r16 {
            assert!(r % ROWS == 0 && r + ROWS <= w.rows);
            (ROWS, [&w.data[..0]; ROWS])
        } else {
            let (here, rows) = group(w, out, r, groups == 0);
            assert_eq!(rows[0].len(), cols * L::SIZE);
            (here, rows)
        };
        for c0 in (0..groups).step_by(FG) {
            let c1 = (c0 + FG).min(groups);
            let wp = if r16 {
                // Groups c0..c1 of the row group: 1 KiB each, in the file.
                w.data[(r * cols + 16 * 16 * c0) * 4..(r * cols + 16 * 16 * c1) * 4].as_ptr()
            } else {
                for (g, cg) in (c0..c1).zip(chunk.iter_mut()) {
                    let left = (cols - 16 * g).min(16);
                    let mask = ((1u32 << left) - 1) as u16;
                    let mut v = [_mm512_setzero_si512(); ROWS];
                    for (v, row) in v.iter_mut().zip(&rows) {
                        // SAFETY: the mask selects columns 16g.. < cols of the row (its
                        // length is asserted).
                        *v = _mm512_castps_si512(unsafe {
                            L::load16(row.as_ptr().add(16 * g * L::SIZE), mask)
                        });
                    }
                    for (c, t) in cg.iter_mut().zip(transpose16(&v)) {
                        *c = _mm512_castsi512_ps(t);
                    }
                }
                chunk.as_ptr() as *const u8
            };
            // Columns of this chunk: the last group may be partial.
            let width = (cols - 16 * c0).min(16 * FG);
            let xs = |i: usize| &x[i * cols + 16 * c0..i * cols + 16 * c0 + width];
            let mut i = 0;
            // SAFETY (tiles): `wp` has the c1 − c0 groups of 1 KiB (above), which
            // cover `width` columns.
            while i + TF <= n {
                let mut y = [xs(i); TF];
                for (k, y) in y.iter_mut().enumerate().skip(1) {
                    *y = xs(i + k);
                }
                let v = unsafe { float_tile::<TF>(wp, c1 - c0, y) };
                for (k, v) in v.iter().enumerate() {
                    store_rows(out, i + k, r, here, c0 == 0, *v);
                }
                i += TF;
            }
            while i < n {
                let v = unsafe { float_tile::<1>(wp, c1 - c0, [xs(i)]) };
                store_rows(out, i, r, here, c0 == 0, v[0]);
                i += 1;
            }
        }
        r += ROWS;
    }
}

/// Activations per tile of [`floats`]: 2 × 8 accumulators (even and odd columns).
const TF: usize = 8;

/// `[Σ_c W[j, c]·x_k[c] in lane j for k in 0..T]` over `groups` interleaved groups
/// at `w` (16 registers of 64 bytes each: register `p` lane `j` holds row `j`'s
/// column `p`) and the activations' values of their columns (`xs[k].len()` of them,
/// at most `16·groups`).
///
/// # Safety
/// `w` has `1024·groups` readable bytes; the features of this function.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn float_tile<const T: usize>(w: *const u8, groups: usize, xs: [&[f32]; T]) -> [__m512; T] {
    let width = xs[0].len();
    assert!(width <= 16 * groups && xs.iter().all(|x| x.len() == width));
    // SAFETY: column c's register is inside the `1024·groups` bytes for c < width.
    let wc = |c: usize| unsafe { _mm512_loadu_ps(w.add(64 * c) as *const f32) };
    let (mut even, mut odd) = ([_mm512_setzero_ps(); T], [_mm512_setzero_ps(); T]);
    let whole = width / 16;
    for g in 0..whole {
        for q in 0..8 {
            let (w0, w1) = (wc(16 * g + 2 * q), wc(16 * g + 2 * q + 1));
            for ((e, o), x) in even.iter_mut().zip(odd.iter_mut()).zip(&xs) {
                // SAFETY: columns 16g + 2q, +1 < 16·whole <= width.
                let (x0, x1) = unsafe {
                    let p = x.as_ptr().add(16 * g + 2 * q);
                    (*p, *p.add(1))
                };
                *e = _mm512_fmadd_ps(w0, _mm512_set1_ps(x0), *e);
                *o = _mm512_fmadd_ps(w1, _mm512_set1_ps(x1), *o);
            }
        }
    }
    for c in 16 * whole..width {
        let wc = wc(c);
        for (e, x) in even.iter_mut().zip(&xs) {
            *e = _mm512_fmadd_ps(wc, _mm512_set1_ps(x[c]), *e);
        }
    }
    let mut out = [_mm512_setzero_ps(); T];
    for ((o, e), d) in out.iter_mut().zip(even).zip(odd) {
        *o = _mm512_add_ps(e, d);
    }
    out
}

/// The f16 at byte `off` of each of the 16 blocks `p`, as f32 lanes.
///
/// # Safety
/// `off + 2` readable bytes at each pointer; AVX-512 F present.
#[inline(always)]
unsafe fn halves(p: &[*const u8; ROWS], off: usize) -> __m512 {
    let mut h = [0u16; ROWS];
    for (h, p) in h.iter_mut().zip(p) {
        // SAFETY: caller.
        *h = unsafe { core::ptr::read_unaligned(p.add(off) as *const u16) };
    }
    // SAFETY: `h` is 32 bytes.
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(h.as_ptr() as *const __m256i)) }
}

/// `[Σ_blocks d_w·d_x·Σ q_w·q_x (+ m_w·s_x) in lane j = row j, for activation k]`
/// over the interleaved `blocks` and `T` activations' blocks (as many as `blocks`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn tile<B: QuantBlock, const T: usize>(blocks: &[Block16], ys: [&[Q8Act]; T]) -> [__m512; T] {
    assert!(ys.iter().all(|y| y.len() == blocks.len()));
    let mut acc = [_mm512_setzero_ps(); T];
    for (g, u) in blocks.iter().enumerate() {
        // The T integer chains side by side, 4 weights of each activation per step
        // (plain loops: `array::from_fn` here was not inlined).
        let mut y = [&ys[0][g]; T];
        let mut s = [_mm512_setzero_si512(); T];
        for k in 0..T {
            y[k] = &ys[k][g];
            s[k] = _mm512_set1_epi32(-B::OFFSET * y[k].sum);
        }
        for (t, wt) in u.w.iter().enumerate() {
            for (s, y) in s.iter_mut().zip(&y) {
                // SAFETY: bytes 4t..4t+4 of the 32 quants.
                let x =
                    unsafe { core::ptr::read_unaligned(y.qs.as_ptr().add(4 * t) as *const i32) };
                *s = _mm512_dpbusd_epi32(*s, *wt, _mm512_set1_epi32(x));
            }
        }
        for ((acc, s), y) in acc.iter_mut().zip(s).zip(y) {
            let d = _mm512_mul_ps(u.d, _mm512_set1_ps(y.d));
            *acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), *acc);
            if !B::SIGNED {
                *acc = _mm512_fmadd_ps(u.m, _mm512_set1_ps(y.s), *acc);
            }
        }
    }
    acc
}
