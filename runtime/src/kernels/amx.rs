//! x86-64 AMX prompt kernels for F16, BF16, F32 and K-quant weights: `tdpbf16ps`, which
//! multiplies a 16 × 32 tile of bf16 weights by a 32 × 16 tile of bf16 activations into
//! a 16 × 16 tile of f32 sums, 8192 multiply-adds per instruction (Sapphire Rapids and
//! later Xeons: about 15 times the f32 FMAs of a core, PERF.md).
//!
//! * **Activations** are rounded to bf16 once per product ([`Amx::round_blocks`], the
//!   same round-to-nearest-even as `avx512_bf16`), in blocks of 16 (the prompt padded
//!   with zero rows to a multiple of 32) laid out as the tile unit's B operand: for
//!   every 32 columns, 16 rows of the 16 activations' column pairs (`VNNI` order:
//!   the two bf16 of a pair in one 32-bit lane), a 16 × 16 transpose of 32-bit lanes
//!   ([`transpose16`]). Columns past `cols` are zero.
//! * **Weights** are the A operand, rows as they lie: BF16 rows are loaded into tiles
//!   straight from the mapped file (`tileloadd` with the row stride), with no copy and
//!   no repacking, when a panel holds 32 whole rows whose width is a multiple of 32.
//!   F16 rows (and the ragged edges of BF16) are first made bf16 into a panel of 32
//!   rows (F16 through f32, exact, then rounded to nearest even; zero past the edges),
//!   once per product, and every block of activations reuses the panel.
//! * **F32 weights** take three products of bf16 pairs ("bf16x3"): each f32 value `v`
//!   is split into `h = bf16(v)` and `l = bf16(v - h)` ([`f32_32_split`]), weights into two
//!   panels and activations into two buffers, and every step sums `wₕ·xₕ + wₕ·xₗ +
//!   wₗ·xₕ`. Each term then carries a relative error of at most `3u² + 3u³` (`u = 2⁻⁸`;
//!   about 2⁻¹⁶, against f32's 2⁻²⁴) at a third of the tiles' rate, still about five
//!   times a core's f32 FMAs.
//! * **K-quant weights** (the types with Q8_K activations) are dequantised row by row
//!   to f32 (`avx512_dequant` for Q4_K/Q5_K/Q6_K, bit for bit the scalar
//!   dequantisation; the others through it) and rounded to bf16 into the panel, and
//!   the activations are rounded to bf16 instead of quantised to Q8_K: the products of
//!   F16 weights, at about twice the integer dot products' speed (PERF.md).
//! * **Tiles:** 4 accumulators (32 weight rows × 32 activations), 2 weight tiles and 2
//!   activation tiles: the 8 tile registers. Each sum tile is stored, transposed back
//!   to activations × rows, and written to the output under a mask.
//!
//! **Error:** for F16/BF16 the same as `avx512_bf16` (the same roundings of the same
//! factors; the tile unit treats denormals as zero and rounds its f32 sums to nearest
//! even), so the kernel tests hold it to the same bounds; for F32 the bound above.
//!
//! **The operating system** must grant each process the tile data state (Linux 5.16+:
//! `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); [`Amx::detect`] asks once
//! and reports no AMX where the answer is no. Each product configures the tiles
//! (`ldtilecfg`) on the thread that runs it and releases them (`tilerelease`) after.
//! The instructions are written as inline assembly: Rust's AMX intrinsics are not
//! stable yet.

use super::OutRows;
use super::{act::bf16_padded, avx512_dequant, Matrix};
use core::arch::asm;
use core::arch::x86_64::*;
use llm_format::{layout::R16_ROWS, DType, Layout};

/// Activations per block of the B operand (one tile's columns).
pub(crate) const BLOCK: usize = 16;

/// Weight rows and activations per step of the kernel (two tiles each way).
pub(crate) const STEP: usize = 32;

/// The weight types of the kernels' `W` parameter: F16 (made bf16 per panel), BF16
/// (read as it lies where it can), F32 (split into two panels, three products).
const W_F16: u8 = 0;
const W_BF16: u8 = 1;
const W_F32: u8 = 2;
/// Block-quantised weights (the K-quants), dequantised to f32 per panel row.
const W_BLOCKS: u8 = 3;

/// Proof that the CPU has AMX-TILE and AMX-BF16 with the tile palette this module
/// uses, that the operating system granted the tile state to this process, and that
/// the CPU has AVX-512 BF16 for the conversions: exists only through [`Amx::detect`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Amx(());

impl Amx {
    /// The token, if this CPU and operating system run AMX-BF16 (std on Linux only;
    /// checked once per process) and `LLMRT_AMX=0` does not turn the tiles off. Some
    /// virtual machines advertise AMX in CPUID, and even have Linux grant the tile
    /// state, yet fault on the first tile instruction; so the instructions are first
    /// run in a child process ([`tiles_run`]), and only a child that exits cleanly
    /// turns them on. The layouts around the instructions are tested on any AVX-512
    /// BF16 CPU against a model of the tile step (`tests` below), the instructions
    /// themselves where the CPU has them (`tests/kernels.rs`).
    pub(crate) fn detect() -> Option<Amx> {
        #[cfg(all(feature = "std", target_os = "linux"))]
        {
            static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            let ok = *OK.get_or_init(|| {
                std::env::var("LLMRT_AMX").as_deref() != Ok("0")
                    && std::is_x86_feature_detected!("avx512bf16")
                    && std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("f16c")
                    && cpu_has_amx_bf16()
                    && os_grants_tiles()
                    && tiles_run()
            });
            ok.then_some(Amx(()))
        }
        #[cfg(not(all(feature = "std", target_os = "linux")))]
        None
    }

    /// Elements of the activation buffer for `n` activations of `cols` columns: `n`
    /// rounded up to [`STEP`], times [`bf16_padded`]`(cols)`.
    pub(crate) fn buffer_len(n: usize, cols: usize) -> usize {
        n.next_multiple_of(STEP) * bf16_padded(cols)
    }

    /// Whether the tiles take a prompt product over `w`: F16, BF16 and F32 (as three
    /// products, [`f32_32_split`]) weights, and in plain rows the types whose activations
    /// are Q8_K (the K-quants), dequantised to bf16.
    pub(crate) fn takes(w: &Matrix<'_>) -> bool {
        match w.dtype {
            DType::F16 | DType::BF16 | DType::F32 => true,
            d => d.act_quant() == llm_format::ActQuant::Q8K && w.layout == Layout::Rows,
        }
    }

    /// How many parts of the activations a product over `dtype` reads, each
    /// [`Amx::buffer_len`] values, one after the other: 1 (`bf16(x)`), or 2 for F32
    /// weights (`h = bf16(x)`, then `l = bf16(x − h)`, [`f32_32_split`]).
    pub(crate) fn parts(dtype: DType) -> usize {
        if dtype == DType::F32 {
            2
        } else {
            1
        }
    }

    /// Rounds activations `16·b0..16·b1` of `x` (`n` rows of `cols`) to bf16 into
    /// `out`, blocks `b0..b1` of the B layout above (`16·bf16_padded(cols)` values
    /// each); rows past `n` are zero. With `lo` (F32 weights), `out` takes each value's
    /// `h` and `lo` its `l` ([`f32_32_split`]), in the same layout.
    ///
    /// # Panics
    /// If `x.len() != n·cols` or `out.len()` (and `lo.len()`) is not
    /// `(b1 - b0)·16·bf16_padded(cols)`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn round_blocks(
        self,
        x: &[f32],
        n: usize,
        cols: usize,
        b0: usize,
        b1: usize,
        out: &mut [u16],
        lo: Option<&mut [u16]>,
    ) {
        assert_eq!(x.len(), n * cols);
        assert_eq!(out.len(), (b1 - b0) * BLOCK * bf16_padded(cols));
        assert!(lo.as_ref().is_none_or(|l| l.len() == out.len()));
        // SAFETY: the token exists only if the CPU has every feature it enables.
        unsafe { round_tiles::<true>(x, n, cols, b0, out, lo) }
    }

    /// Rows `out.r0..out.r1` of `y = x·Wᵀ` for weights the tiles take ([`Amx::takes`]),
    /// with `xb` the activations as [`Amx::round_blocks`] (plain rows) or
    /// [`Amx::round_rows`] (layout r16) wrote them: [`Amx::buffer_len`] values per
    /// part ([`Amx::parts`]).
    ///
    /// # Panics
    /// If the tiles do not take `w` or `xb` has the wrong length.
    pub(crate) fn rows(self, w: &Matrix<'_>, xb: &[u16], out: &mut OutRows<'_>) {
        assert!(
            Amx::takes(w),
            "AMX tiles do not take this {} matrix",
            w.dtype
        );
        assert_eq!(
            xb.len(),
            Amx::parts(w.dtype) * Amx::buffer_len(out.n(), w.cols)
        );
        // SAFETY: the token proves the CPU's features and the tile permission.
        unsafe {
            match (w.dtype, w.layout) {
                (DType::F16, Layout::Rows) => rows::<W_F16, true>(w, xb, out),
                (DType::BF16, Layout::Rows) => rows::<W_BF16, true>(w, xb, out),
                (DType::F32, Layout::Rows) => rows::<W_F32, true>(w, xb, out),
                (DType::F16, Layout::R16) => rows_r16::<W_F16, true>(w, xb, out),
                (DType::BF16, Layout::R16) => rows_r16::<W_BF16, true>(w, xb, out),
                (DType::F32, Layout::R16) => rows_r16::<W_F32, true>(w, xb, out),
                (_, Layout::Rows) => rows::<W_BLOCKS, true>(w, xb, out),
                (d, l) => unreachable!("{d} ({}) is not taken", l.name()),
            }
        }
    }

    /// [`Amx::round_blocks`] laid out as the r16 kernel's A operand: blocks of 16
    /// activations, each for every 32 columns a 16 × 32 tile of the activations' rows
    /// (1 KiB, so a tile loads from consecutive lines).
    ///
    /// # Panics
    /// As [`Amx::round_blocks`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn round_rows(
        self,
        x: &[f32],
        n: usize,
        cols: usize,
        b0: usize,
        b1: usize,
        out: &mut [u16],
        lo: Option<&mut [u16]>,
    ) {
        assert_eq!(x.len(), n * cols);
        assert_eq!(out.len(), (b1 - b0) * BLOCK * bf16_padded(cols));
        assert!(lo.as_ref().is_none_or(|l| l.len() == out.len()));
        // SAFETY: the token exists only if the CPU has every feature it enables.
        unsafe { round_tiles::<false>(x, n, cols, b0, out, lo) }
    }
}

/// CPUID: AMX-TILE and AMX-BF16 (leaf 7), and tile palette 1 as this module
/// configures it (leaf 0x1D: 8 tiles of 16 rows of 64 bytes).
#[cfg(all(feature = "std", target_os = "linux"))]
#[allow(unused_unsafe)] // `__cpuid` is safe from Rust 1.87 on, unsafe before
fn cpu_has_amx_bf16() -> bool {
    // SAFETY: CPUID is always available on x86-64.
    let max = unsafe { __cpuid(0) }.eax;
    if max < 0x1d {
        return false;
    }
    // SAFETY: leaf 7 exists (max >= 7).
    let l7 = unsafe { __cpuid_count(7, 0) };
    let (bf16, tile) = (l7.edx & (1 << 22) != 0, l7.edx & (1 << 24) != 0);
    if !(bf16 && tile) {
        return false;
    }
    // SAFETY: leaf 0x1D exists (max >= 0x1D).
    let p = unsafe { __cpuid_count(0x1d, 1) };
    let (bytes_per_row, names, max_rows) = (p.ebx & 0xffff, p.ebx >> 16, p.ecx & 0xffff);
    bytes_per_row >= 64 && names >= 8 && max_rows >= 16
}

/// Asks Linux for the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023,
/// XFEATURE_XTILEDATA = 18)`, a raw system call: no libc binding is needed for one
/// call); `true` if granted.
#[cfg(all(feature = "std", target_os = "linux"))]
fn os_grants_tiles() -> bool {
    let ret: i64;
    // SAFETY: `arch_prctl` (158) with this request only changes which extended
    // states the process may use; the kernel clobbers rcx and r11 on `syscall`.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") 158i64 => ret,
            in("rdi") 0x1023i64,
            in("rsi") 18i64,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret == 0
}

/// Whether the tile instructions run here: a child process (a raw `fork`, which
/// copies only this thread) configures the tiles, multiplies zero tiles and releases
/// them, then leaves with `exit_group(0)`; a fault kills the child, not this process.
/// The child calls nothing but the instructions and two system calls, so the copy
/// of a multithreaded process is safe to run. `false` if the child cannot be made
/// or waited for (a sandbox without `fork`, or `SIGCHLD` ignored).
#[cfg(all(feature = "std", target_os = "linux"))]
fn tiles_run() -> bool {
    child_exits_cleanly(false)
}

/// [`tiles_run`]'s child: the tile instructions, or (`fault`, for the test that a
/// faulting child reads as `false`) an undefined instruction.
#[cfg(all(feature = "std", target_os = "linux"))]
fn child_exits_cleanly(fault: bool) -> bool {
    let cfg = TileConfig::new();
    let pid: i64;
    // SAFETY: `fork` (57) takes no arguments; in the child only the block below runs.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") 57i64 => pid,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    if pid == 0 {
        // SAFETY: `prctl(PR_SET_DUMPABLE = 4, 0)` (157): a fault in the child leaves
        // no core file behind.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") 157i64 => _,
                in("rdi") 4i64,
                in("rsi") 0i64,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack)
            );
        }
    }
    if pid == 0 && fault {
        // SAFETY: `ud2` raises SIGILL, which ends the child.
        unsafe { asm!("ud2", options(noreturn, nostack)) };
    }
    if pid == 0 {
        // SAFETY: the child's copy of `cfg` is valid; the tile instructions fault (and
        // end the child) or run; `exit_group` (231) does not return.
        unsafe {
            asm!(
                "ldtilecfg [{cfg}]",
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tdpbf16ps tmm0, tmm1, tmm2",
                "tilerelease",
                "mov eax, 231",
                "xor edi, edi",
                "syscall",
                "ud2",
                cfg = in(reg) cfg.0.as_ptr(),
                options(noreturn, nostack)
            );
        }
    }
    if pid < 0 {
        return false;
    }
    let mut status: i32 = -1;
    let mut ret: i64 = -4;
    // `wait4` again while a signal interrupts it (EINTR).
    while ret == -4 {
        // SAFETY: `wait4` (61) on our own child, writing its status into `status`.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") 61i64 => ret,
                in("rdi") pid,
                in("rsi") &mut status as *mut i32,
                in("rdx") 0i64,
                in("r10") 0i64,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack)
            );
        }
    }
    // A clean exit: no terminating signal (low 7 bits) and exit code 0.
    ret == pid && status & 0x7f == 0 && (status >> 8) & 0xff == 0
}

/// 16 × 16 transpose of 32-bit lanes: `out[c]` lane `r` = `v[r]` lane `c`.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(v: [__m512i; 16]) -> [__m512i; 16] {
    // Pairs of rows interleaved in 32 bits, then in 64: u[4j + c] holds, in its
    // 128-bit lane L, rows 4j..4j+4 of column 4L + c.
    let t: [__m512i; 16] = core::array::from_fn(|i| {
        let (a, b) = (v[i & !1], v[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_epi32(a, b)
        } else {
            _mm512_unpackhi_epi32(a, b)
        }
    });
    let u: [__m512i; 16] = core::array::from_fn(|i| {
        let (j, c) = (i / 4, i % 4);
        let (a, b) = (t[4 * j + c / 2], t[4 * j + 2 + c / 2]);
        if c % 2 == 0 {
            _mm512_unpacklo_epi64(a, b)
        } else {
            _mm512_unpackhi_epi64(a, b)
        }
    });
    // Then a 4 × 4 transpose of 128-bit lanes across u[c], u[4+c], u[8+c], u[12+c].
    let mut out = [_mm512_setzero_si512(); 16];
    for c in 0..4 {
        let v0 = _mm512_shuffle_i32x4::<0x44>(u[c], u[4 + c]);
        let v1 = _mm512_shuffle_i32x4::<0xee>(u[c], u[4 + c]);
        let v2 = _mm512_shuffle_i32x4::<0x44>(u[8 + c], u[12 + c]);
        let v3 = _mm512_shuffle_i32x4::<0xee>(u[8 + c], u[12 + c]);
        out[c] = _mm512_shuffle_i32x4::<0x88>(v0, v2);
        out[4 + c] = _mm512_shuffle_i32x4::<0xdd>(v0, v2);
        out[8 + c] = _mm512_shuffle_i32x4::<0x88>(v1, v3);
        out[12 + c] = _mm512_shuffle_i32x4::<0xdd>(v1, v3);
    }
    out
}

/// The 32 f32 or F16 (`F16`) values of `row` from column `c` (those past `cols` zero),
/// as two vectors of 16 f32 (F16 made f32 exactly).
///
/// # Safety
/// `row` points at `cols` values of its kind; `c < cols`; this module's features.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,f16c")]
unsafe fn load_32<const F16: bool>(row: *const u8, cols: usize, c: usize) -> (__m512, __m512) {
    let left = (cols - c).min(32);
    let mask = if left == 32 {
        u32::MAX
    } else {
        (1u32 << left) - 1
    };
    let (lo_mask, hi_mask) = (mask as __mmask16, (mask >> 16) as __mmask16);
    // SAFETY: the masks select columns c..c + left < cols of the row.
    unsafe {
        if F16 {
            let p = row.add(2 * c) as *const i16;
            let h = _mm512_maskz_loadu_epi16(mask, p);
            (
                _mm512_cvtph_ps(_mm512_castsi512_si256(h)),
                _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(h)),
            )
        } else {
            let p = row.add(4 * c) as *const f32;
            (
                _mm512_maskz_loadu_ps(lo_mask, p),
                _mm512_maskz_loadu_ps(hi_mask, p.add(16)),
            )
        }
    }
}

/// Two vectors of 16 f32 as 32 bf16 in column order, rounded to nearest even
/// (`vcvtne2ps2bf16`, which puts its first operand in the upper half and flushes
/// denormals to zero as the tiles would; values already bf16 pass unchanged).
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
fn pack_32(lo: __m512, hi: __m512) -> __m512i {
    // SAFETY: same size; bf16 bits.
    unsafe { core::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo)) }
}

/// f32 lanes rounded to the nearest bf16, ties to even, kept as f32 (low 16 bits zero):
/// `vcvtne2ps2bf16`'s rounding of finite values.
#[inline]
#[target_feature(enable = "avx512f")]
fn round_f32(v: __m512) -> __m512 {
    let b = _mm512_castps_si512(v);
    let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
    let up = _mm512_add_epi32(b, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
    _mm512_castsi512_ps(_mm512_and_si512(up, _mm512_set1_epi32(-65536)))
}

/// 32 values of `row` from column `c` (those past `cols` zero) as bf16: F16 bits made
/// f32 exactly, then rounded (the `Hi` part).
///
/// # Safety
/// As [`load_32`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,f16c")]
unsafe fn f16_32(row: *const u8, cols: usize, c: usize) -> __m512i {
    // SAFETY: the caller's promise.
    let (lo, hi) = unsafe { load_32::<true>(row, cols, c) };
    // F16 values are normal f32, so `pack_32` rounds them as `round_f32` would.
    pack_32(lo, hi)
}

/// 32 f32 values of `row` from column `c` (those past `cols` zero) rounded to bf16.
///
/// # Safety
/// As [`load_32`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,f16c")]
unsafe fn f32_32(row: *const u8, cols: usize, c: usize) -> __m512i {
    // SAFETY: the caller's promise.
    let (lo, hi) = unsafe { load_32::<false>(row, cols, c) };
    pack_32(lo, hi)
}

/// Both parts of 32 f32 values of `row` from column `c` (those past `cols` zero) as
/// bf16, `(Hi, Lo)`, from one load: the rest is rounded by `vcvtne2ps2bf16` itself.
///
/// # Safety
/// As [`load_32`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,f16c")]
unsafe fn f32_32_split(row: *const u8, cols: usize, c: usize) -> (__m512i, __m512i) {
    // SAFETY: the caller's promise.
    let (a, b) = unsafe { load_32::<false>(row, cols, c) };
    let (ha, hb) = (round_f32(a), round_f32(b));
    (
        pack_32(ha, hb),
        pack_32(_mm512_sub_ps(a, ha), _mm512_sub_ps(b, hb)),
    )
}

/// Both parts, `(Hi, Lo)`, of an r16 F32 tile row: columns `2p` and `2p + 1` of 16
/// rows (`a`, `b`), as the 16 rows' bf16 pairs (column `2p` in the low half of each
/// lane). The rest is rounded by `vcvtne2ps2bf16`, as [`f32_32_split`] rounds it.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
fn pair_16_split(a: __m512, b: __m512) -> (__m512i, __m512i) {
    let (ha, hb) = (round_f32(a), round_f32(b));
    let hi = _mm512_or_si512(
        _mm512_castps_si512(hb),
        _mm512_srli_epi32::<16>(_mm512_castps_si512(ha)),
    );
    // [a's 16 rests | b's 16 rests], then interleaved: lane r = (b_r << 16) | a_r.
    let rests = pack_32(_mm512_sub_ps(a, ha), _mm512_sub_ps(b, hb));
    let idx: [u16; 32] = core::array::from_fn(|i| ((i % 2) * 16 + i / 2) as u16);
    // SAFETY: a plain load of a local array of 64 bytes.
    let idx = unsafe { _mm512_loadu_si512(idx.as_ptr() as *const __m512i) };
    (hi, _mm512_permutexvar_epi16(idx, rests))
}

/// Blocks of 16 activations from `b0` on, rounded to bf16 into `out` (with `lo`: each
/// value's `h` into `out` and its `l` into `lo`, [`f32_32_split`]), one 1 KiB tile per
/// 32 columns: the B operand (`TRANSPOSE`: row `p` holds the 16 activations' column
/// pair `p`, [`Amx::round_blocks`]) or the A operand (row `t` holds activation `t`'s
/// 32 columns, [`Amx::round_rows`]).
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,f16c")]
fn round_tiles<const TRANSPOSE: bool>(
    x: &[f32],
    n: usize,
    cols: usize,
    b0: usize,
    out: &mut [u16],
    mut lo: Option<&mut [u16]>,
) {
    let per_tile = BLOCK * 32;
    let per_block = per_tile * bf16_padded(cols) / 32;
    for (bo, block) in out.chunks_exact_mut(per_block).enumerate() {
        let first = (b0 + bo) * BLOCK;
        for (g, tile) in block.chunks_exact_mut(per_tile).enumerate() {
            let (mut hi, mut rest) = ([_mm512_setzero_si512(); 16], [_mm512_setzero_si512(); 16]);
            for t in 0..BLOCK.min(n.saturating_sub(first)) {
                let row = x[(first + t) * cols..].as_ptr() as *const u8;
                // SAFETY: row first + t < n holds `cols` f32 values; 32g < cols.
                unsafe {
                    if lo.is_some() {
                        (hi[t], rest[t]) = f32_32_split(row, cols, 32 * g);
                    } else {
                        hi[t] = f32_32(row, cols, 32 * g);
                    }
                }
            }
            store_tile::<TRANSPOSE>(tile, hi);
            if let Some(l) = lo.as_deref_mut() {
                let at = bo * per_block + g * per_tile;
                store_tile::<TRANSPOSE>(&mut l[at..at + per_tile], rest);
            }
        }
    }
}

/// 16 rows of 32 bf16 into the 1 KiB tile `dst`, transposed in 32-bit lanes first
/// with `TRANSPOSE` (the B operand's layout).
#[inline]
#[target_feature(enable = "avx512f")]
fn store_tile<const TRANSPOSE: bool>(dst: &mut [u16], v: [__m512i; 16]) {
    assert_eq!(dst.len(), 16 * 32);
    let v = if TRANSPOSE { transpose16(v) } else { v };
    for (p, r) in v.iter().enumerate() {
        // SAFETY: `dst` holds 16 rows of 32 values; row p is 64 bytes.
        unsafe { _mm512_storeu_si512(dst[32 * p..].as_mut_ptr() as *mut __m512i, *r) };
    }
}

/// `ldtilecfg`'s 64 bytes: palette 1, tiles 0..8 of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn new() -> TileConfig {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t] = 64; // bytes per row (u16, little-endian)
            c[48 + t] = 16; // rows
        }
        TileConfig(c)
    }
}

/// The tile unit configured on this thread for one kernel call (`HW`: `ldtilecfg`
/// now, `tilerelease` on drop) or, without `HW`, the plain-code model of its step.
struct Tiles<const HW: bool>;

impl<const HW: bool> Tiles<HW> {
    /// # Safety
    /// With `HW`, the CPU has AMX-BF16 and this process the tile permission.
    unsafe fn configure() -> Tiles<HW> {
        if HW {
            let config = TileConfig::new();
            // SAFETY: the caller's promise; the config is 64 bytes, read now.
            unsafe {
                asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly))
            };
        }
        Tiles
    }

    /// [`step`] on the tiles, or [`step_model`].
    ///
    /// # Safety
    /// As [`step`]: every tile read lies in readable memory.
    #[inline]
    unsafe fn step(&self, terms: &[Term], at: &Geometry, c: &mut [[f32; 256]; 4]) {
        // SAFETY: the tiles are configured (`configure`); the reads are the caller's.
        unsafe {
            if HW {
                step(terms, at, c)
            } else {
                step_model(terms, at, c)
            }
        }
    }
}

impl<const HW: bool> Drop for Tiles<HW> {
    fn drop(&mut self) {
        if HW {
            // SAFETY: releases the tile state `configure` set up on this thread.
            unsafe { asm!("tilerelease", options(nostack, nomem)) };
        }
    }
}

/// One product of a step: the A operand's rows (`a`) and the B operand's first block
/// (`b`), as [`step`] reads them.
type Term = (*const u8, *const u8);

/// Where a step finds its tiles, in bytes: `A_a` (a = 0, 1) holds 16 rows at
/// `A + a·a_next`, row stride `a_row`, group `g` of 32 columns at `a_group·g`; `B_b`
/// is a B-layout block at `B + b·b_next` (group `g` at `1024g`, rows of 64 bytes).
struct Geometry {
    a_row: usize,
    a_group: usize,
    a_next: usize,
    b_next: usize,
    /// Groups of 32 columns.
    groups: usize,
}

/// One step: `c[2a + b] = Σ over terms (A, B) of A_a · B_b` over the groups of 32
/// columns, the tiles where `at` says; `c[k]` is stored as 16 rows (A's rows) of 16 f32
/// (B's columns). The plain kernel ([`rows`]) passes weight rows as A and activation
/// blocks as B, the r16 kernel ([`rows_r16`]) activation tiles as A and the file's
/// weight groups as B; F32 weights pass three terms ([`f32_32_split`]), the others one. Per
/// group the terms add in their order, so both kernels sum alike.
///
/// # Safety
/// The tiles are configured (`TileConfig`) on this thread; every tile read lies in
/// readable memory.
#[inline]
unsafe fn step(terms: &[Term], at: &Geometry, c: &mut [[f32; 256]; 4]) {
    // SAFETY (every block): the caller configured the tiles and guarantees the reads;
    // the stores go to `c`, 4 × 1 KiB.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
        for g in 0..at.groups {
            for &(a, b) in terms {
                let a0 = a.add(at.a_group * g);
                let b = b.add(1024 * g);
                asm!(
                    "tileloadd tmm4, [{a0} + {s} * 1]",
                    "tileloadd tmm5, [{a1} + {s} * 1]",
                    "tileloadd tmm6, [{b0} + {s64} * 1]",
                    "tileloadd tmm7, [{b1} + {s64} * 1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a0,
                    a1 = in(reg) a0.add(at.a_next),
                    s = in(reg) at.a_row,
                    b0 = in(reg) b,
                    b1 = in(reg) b.add(at.b_next),
                    s64 = in(reg) 64usize,
                    options(nostack, readonly)
                );
            }
        }
        asm!(
            "tilestored [{c0} + {s64} * 1], tmm0",
            "tilestored [{c1} + {s64} * 1], tmm1",
            "tilestored [{c2} + {s64} * 1], tmm2",
            "tilestored [{c3} + {s64} * 1], tmm3",
            c0 = in(reg) c[0].as_mut_ptr(),
            c1 = in(reg) c[1].as_mut_ptr(),
            c2 = in(reg) c[2].as_mut_ptr(),
            c3 = in(reg) c[3].as_mut_ptr(),
            s64 = in(reg) 64usize,
            options(nostack)
        );
    }
}

/// What [`step`] computes, in plain code (each product of two bf16 exact in f32,
/// summed in column order, term after term per group): where the CPU has no tiles, the
/// unit tests run [`rows`] and [`rows_r16`] on this to check every layout around the
/// instructions.
///
/// # Safety
/// Every read lies in readable memory, as for [`step`].
unsafe fn step_model(terms: &[Term], at: &Geometry, c: &mut [[f32; 256]; 4]) {
    let bf = |p: *const u8, i: usize| {
        // SAFETY: the caller guarantees the reads.
        let h = unsafe { (p as *const u16).add(i).read_unaligned() };
        f32::from_bits((h as u32) << 16)
    };
    for (k, ck) in c.iter_mut().enumerate() {
        *ck = [0.0; 256];
        for g in 0..at.groups {
            for &(a, b0) in terms {
                for m in 0..BLOCK {
                    // Row m of A tile k/2, columns 32g..32g+32.
                    // SAFETY: inside the caller's readable tiles.
                    let arow =
                        unsafe { a.add((k / 2) * at.a_next + m * at.a_row + at.a_group * g) };
                    // B block k % 2, group g: row p holds column pair p of the 16.
                    let bt = unsafe { b0.add((k % 2) * at.b_next + 1024 * g) };
                    for j in 0..BLOCK {
                        let mut sum = ck[BLOCK * m + j];
                        for p in 0..16 {
                            for e in 0..2 {
                                sum += bf(arow, 2 * p + e) * bf(bt, 32 * p + 2 * j + e);
                            }
                        }
                        ck[BLOCK * m + j] = sum;
                    }
                }
            }
        }
    }
}

/// The terms of a step: one (`[(A, B)]`) for F16/BF16 weights, and for F32 weights
/// `hi·hi`, `hi·lo`, `lo·hi` (`a_lo`, `b_lo`: the byte offsets of the `Lo` parts).
fn terms<const W: u8>(a: *const u8, a_lo: usize, b: *const u8, b_lo: usize) -> ([Term; 3], usize) {
    if W == W_F32 {
        (
            [(a, b), (a, b.wrapping_add(b_lo)), (a.wrapping_add(a_lo), b)],
            3,
        )
    } else {
        ([(a, b); 3], 1)
    }
}

/// The kernel: `HW` runs the tile instructions ([`step`]), otherwise [`step_model`].
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,f16c")]
fn rows<const W: u8, const HW: bool>(w: &Matrix<'_>, xb: &[u16], out: &mut OutRows<'_>) {
    let (n, cols) = (out.n(), w.cols);
    let (r0, r1) = (out.r0, out.r1);
    if n == 0 || r0 == r1 {
        return;
    }
    let stride = bf16_padded(cols);
    let groups = stride / 32;
    let row_bytes = w.row_bytes();
    let blocks = n.next_multiple_of(STEP) / BLOCK;
    let b_next = BLOCK * stride * 2; // bytes from one activation block to the next
    let x_lo = 2 * Amx::buffer_len(n, cols); // bytes from the Hi to the Lo activations
    let parts = if W == W_F32 { 2 } else { 1 };
    // SAFETY: with `HW`, the token proves AMX and the permission.
    let tiles = unsafe { Tiles::<HW>::configure() };
    // 32 weight rows made bf16 (F16 weights, ragged edges of BF16), per part; F32
    // weights as 32 Hi rows, then 32 Lo rows.
    let mut panel: alloc::vec::Vec<u16> = alloc::vec::Vec::new();
    // Block-quantised weights: one row dequantised to f32, zero past `cols`.
    let mut row_f32: alloc::vec::Vec<f32> = alloc::vec::Vec::new();
    if W == W_BLOCKS {
        row_f32.resize(stride, 0.0);
    }
    let mut c = [[0.0f32; 256]; 4];
    let mut r = r0;
    while r < r1 {
        let here = (r1 - r).min(STEP);
        let direct = W == W_BF16 && here == STEP && cols % 32 == 0;
        let (a, a_stride) = if direct {
            (w.data[r * row_bytes..].as_ptr(), row_bytes)
        } else {
            panel.resize(parts * STEP * stride, 0);
            let (hi, lo) = panel.split_at_mut(STEP * stride);
            for (k, prow) in hi.chunks_exact_mut(stride).enumerate() {
                if W == W_BLOCKS && k < here {
                    let row = &w.data[(r + k) * row_bytes..(r + k + 1) * row_bytes];
                    if avx512_dequant::has(w.dtype) {
                        // SAFETY: this kernel's features include AVX-512 F and BW.
                        unsafe { avx512_dequant::row(w.dtype, row, &mut row_f32[..cols]) };
                    } else {
                        llm_format::quant::dequantize(w.dtype, row, &mut row_f32[..cols])
                            .expect("a Matrix row holds cols values");
                    }
                }
                for g in 0..groups {
                    let (vh, vl) = if k < here && cols > 0 {
                        let row = w.data[(r + k) * row_bytes..].as_ptr();
                        // SAFETY: row r + k < rows holds `cols` values of the dtype
                        // (`Matrix` checked the length); 32g < cols.
                        unsafe {
                            match W {
                                W_F16 => (f16_32(row, cols, 32 * g), _mm512_setzero_si512()),
                                W_BF16 => (bf16_copy(row, cols, 32 * g), _mm512_setzero_si512()),
                                W_F32 => f32_32_split(row, cols, 32 * g),
                                _ => {
                                    let p = row_f32.as_ptr() as *const u8;
                                    (f32_32(p, cols, 32 * g), _mm512_setzero_si512())
                                }
                            }
                        }
                    } else {
                        (_mm512_setzero_si512(), _mm512_setzero_si512())
                    };
                    // SAFETY: 32 values at 32g < stride of the panel row (and, for F32,
                    // of the Lo row 32 rows on).
                    unsafe {
                        _mm512_storeu_si512(prow[32 * g..].as_mut_ptr() as *mut __m512i, vh);
                        if W == W_F32 {
                            let l = lo[k * stride + 32 * g..].as_mut_ptr();
                            _mm512_storeu_si512(l as *mut __m512i, vl);
                        }
                    }
                }
            }
            (panel.as_ptr() as *const u8, 2 * stride)
        };
        for blk in (0..blocks).step_by(2) {
            let b = (xb.as_ptr() as *const u8).wrapping_add(blk * b_next);
            let (terms, used) = terms::<W>(a, STEP * a_stride, b, x_lo);
            // SAFETY: weight tiles: 32 rows of `a_stride` bytes from `a` (and, for F32,
            // the panel's 32 Lo rows after them), each read 64 bytes at a time up to
            // `2·stride` (the panel) or `row_bytes` (direct: 32 whole rows inside the
            // matrix, cols a multiple of 32); activation tiles: blocks blk and
            // blk + 1 < blocks of each part of `xb`, whose length `rows` asserted;
            // tiles configured above.
            let at = Geometry {
                a_row: a_stride,
                a_group: 64,
                a_next: BLOCK * a_stride,
                b_next,
                groups,
            };
            unsafe { tiles.step(&terms[..used], &at, &mut c) };
            for (k, ck) in c.iter().enumerate() {
                let (rr, i0) = (r + BLOCK * (k / 2), BLOCK * (blk + k % 2));
                if rr >= r + here || i0 >= n {
                    continue;
                }
                let valid = (r + here - rr).min(BLOCK);
                let mask = ((1u32 << valid) - 1) as __mmask16;
                // SAFETY: `ck` holds 16 rows of 16 f32.
                let v: [__m512i; 16] = core::array::from_fn(|q| unsafe {
                    _mm512_loadu_si512(ck[16 * q..].as_ptr() as *const __m512i)
                });
                for (t, col) in transpose16(v).iter().enumerate().take(n - i0) {
                    let dst = out.span(i0 + t, rr, valid);
                    // SAFETY: the mask writes `valid` values, the span's length.
                    unsafe {
                        _mm512_mask_storeu_ps(dst.as_mut_ptr(), mask, _mm512_castsi512_ps(*col))
                    };
                }
            }
        }
        r += here;
    }
}

/// The kernel for a matrix in layout `r16` (`llm_format::layout`), whose groups of 16
/// rows interleaved in 4-byte units are, 32 columns at a time, the tile unit's B
/// operand as it is (16 column pairs × the 16 rows' pairs): the roles of the plain
/// kernel turn round. The activations, tiles of bf16 rows ([`Amx::round_rows`]), are
/// the A operand, and each sum tile is 16 activations × 16 weight rows, the output's own
/// order, so it is stored without a transposition. BF16 weight tiles are loaded from
/// the mapped file; F16 ones are made bf16 in place order, 32 rows at a time, into a
/// panel that every block of activations reuses; F32 ones (one value per 4-byte unit,
/// so a tile row is two columns of 16 values) into a Hi and a Lo panel in the same
/// order, zero past the columns. `r16` matrices have a multiple of 16 rows of (F16,
/// BF16) a multiple of 32 columns or (F32) of 16 (`Layout::unfit`), and parts are whole
/// groups (`Cpu::row_align`), so every tile is whole.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,f16c")]
fn rows_r16<const W: u8, const HW: bool>(w: &Matrix<'_>, xa: &[u16], out: &mut OutRows<'_>) {
    let (n, cols) = (out.n(), w.cols);
    let (r0, r1) = (out.r0, out.r1);
    if n == 0 || r0 == r1 {
        return;
    }
    assert!(r0 % R16_ROWS == 0 && r1 % R16_ROWS == 0 && (W == W_F32 || cols % 32 == 0));
    let groups = bf16_padded(cols) / 32;
    let group_bytes = R16_ROWS * w.row_bytes(); // one group of 16 rows in the file
    let a_block = BLOCK * 2 * bf16_padded(cols); // bytes per block of 16 activations
    let x_lo = 2 * Amx::buffer_len(n, cols); // bytes from the Hi to the Lo activations
    let blocks = n.next_multiple_of(STEP) / BLOCK;
    // SAFETY: with `HW`, the token proves AMX and the permission.
    let tiles = unsafe { Tiles::<HW>::configure() };
    // F16, F32: the 32 rows of a step made bf16, group after group, 1 KiB per tile
    // (F32: the Hi panel, then the Lo panel).
    let mut panel: alloc::vec::Vec<u16> = alloc::vec::Vec::new();
    let mut c = [[0.0f32; 256]; 4];
    let mut r = r0;
    while r < r1 {
        let here = (r1 - r).min(STEP);
        let first = &w.data[r / R16_ROWS * group_bytes..(r + here) / R16_ROWS * group_bytes];
        let per_panel = here * bf16_padded(cols); // bf16 values
        let (b, b_next) = match W {
            W_F16 => {
                panel.resize(per_panel, 0);
                for (src, dst) in first.chunks_exact(64).zip(panel.chunks_exact_mut(32)) {
                    // SAFETY: 32 f16 values in `src`, 32 bf16 slots in `dst`.
                    unsafe {
                        let v = f16_32(src.as_ptr(), 32, 0);
                        _mm512_storeu_si512(dst.as_mut_ptr() as *mut __m512i, v);
                    }
                }
                (panel.as_ptr() as *const u8, groups * 1024)
            }
            W_F32 => {
                panel.resize(2 * per_panel, 0);
                let (hi, lo) = panel.split_at_mut(per_panel);
                // Per group of 16 rows, its column pairs (the last 8 zero where
                // `cols` is an odd multiple of 16, as F32 r16 allows).
                let pairs = group_bytes / 128;
                let per_group = 16 * bf16_padded(cols); // bf16 values of 16 rows
                for (grp, src) in first.chunks_exact(group_bytes).enumerate() {
                    let h = &mut hi[grp * per_group..(grp + 1) * per_group];
                    let l = &mut lo[grp * per_group..(grp + 1) * per_group];
                    for (p, (h, l)) in h
                        .chunks_exact_mut(32)
                        .zip(l.chunks_exact_mut(32))
                        .enumerate()
                    {
                        let (vh, vl) = if p < pairs {
                            // SAFETY: 32 f32 values (two columns of 16 rows) at 128p in
                            // the group's bytes.
                            unsafe {
                                let p = src.as_ptr().add(128 * p) as *const f32;
                                pair_16_split(_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)))
                            }
                        } else {
                            (_mm512_setzero_si512(), _mm512_setzero_si512())
                        };
                        // SAFETY: 32 bf16 slots in `h` and in `l`.
                        unsafe {
                            _mm512_storeu_si512(h.as_mut_ptr() as *mut __m512i, vh);
                            _mm512_storeu_si512(l.as_mut_ptr() as *mut __m512i, vl);
                        }
                    }
                }
                (panel.as_ptr() as *const u8, groups * 1024)
            }
            _ => (first.as_ptr(), group_bytes),
        };
        // A last step of 16 rows multiplies its one weight tile twice (sums unused).
        let b_next = if here == STEP { b_next } else { 0 };
        for blk in (0..blocks).step_by(2) {
            let a = (xa.as_ptr() as *const u8).wrapping_add(blk * a_block);
            // Activations are A here: Hi·Hi, Lo·Hi, Hi·Lo, the plain kernel's order.
            let (terms, used) = terms::<W>(a, x_lo, b, 2 * per_panel);
            let terms = [terms[0], terms[2], terms[1]];
            let at = Geometry {
                a_row: 64,
                a_group: 1024,
                a_next: a_block,
                b_next,
                groups,
            };
            // SAFETY: activation tiles: blocks blk and blk + 1 < blocks of each part of
            // `xa` (`rows` asserted its length), 1 KiB per group g < groups; weight
            // tiles: `here` rows of whole groups in `first` (or the panels made from
            // them), 1 KiB per group; tiles configured above.
            unsafe { tiles.step(&terms[..used], &at, &mut c) };
            for (k, ck) in c.iter().enumerate() {
                let (i0, rr) = (BLOCK * (blk + k / 2), r + BLOCK * (k % 2));
                if i0 >= n || rr >= r + here {
                    continue;
                }
                for t in 0..(n - i0).min(BLOCK) {
                    out.span(i0 + t, rr, BLOCK)
                        .copy_from_slice(&ck[BLOCK * t..BLOCK * (t + 1)]);
                }
            }
        }
        r += here;
    }
}

/// 32 BF16 weights of a row from column `c` (those past `cols` zero).
///
/// # Safety
/// As [`load_32`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn bf16_copy(row: *const u8, cols: usize, c: usize) -> __m512i {
    let left = (cols - c).min(32);
    let mask = if left == 32 {
        u32::MAX
    } else {
        (1u32 << left) - 1
    };
    // SAFETY: the mask selects columns c..c + left < cols.
    unsafe { _mm512_maskz_loadu_epi16(mask, row.add(2 * c) as *const i16) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{eprintln, vec, vec::Vec};

    /// The child probe tells a faulting instruction from a clean exit: a child that
    /// executes `ud2` reads as `false`, and on a CPU whose tiles this process may use
    /// (CPUID and `arch_prctl` say so) the tile instructions read as `true`.
    #[cfg(all(feature = "std", target_os = "linux"))]
    #[test]
    fn the_child_probe_sees_a_fault() {
        assert!(
            !child_exits_cleanly(true),
            "a child that faulted read as clean"
        );
        let tiles =
            std::is_x86_feature_detected!("avx512bf16") && cpu_has_amx_bf16() && os_grants_tiles();
        if tiles {
            assert!(child_exits_cleanly(false), "the tile instructions faulted");
        } else {
            eprintln!("the_child_probe_sees_a_fault: no AMX here, only the fault checked");
        }
    }

    /// bf16 round to nearest even, as `vcvtne2ps2bf16` (finite inputs).
    fn round_bf16(x: f32) -> f32 {
        let b = x.to_bits();
        f32::from_bits((b + 0x7fff + ((b >> 16) & 1)) & 0xffff_0000)
    }

    /// The f32 split of `v` ([`f32_32_split`]): `(bf16(v), bf16(v - bf16(v)))`.
    fn split(v: f32) -> (f32, f32) {
        let h = round_bf16(v);
        (h, round_bf16(v - h))
    }

    /// [`rows`] and, for the shapes layout r16 takes, [`rows_r16`] on the model of the
    /// tile step, against an f64 product of the same bf16-rounded factors (for F32 the
    /// three products of the split factors, `wₕxₕ + wₕxₗ + wₗxₕ`): every layout
    /// (activation blocks and rows, panels, the direct BF16 and r16 paths, the Hi and Lo
    /// parts, part edges, transposes, masks, a last step of 16 rows) on shapes around
    /// the 32 × 32 step. The only difference left is f32 summation:
    /// `2·(terms·cols+2)·ε·Σ|terms|`. A misplaced value is an error of the order of the
    /// terms, and a lost Lo term one of `2⁻⁸·|w·x|` per column, both far above it on
    /// these widths.
    #[test]
    fn rows_on_the_tile_model_match_the_rounded_product() {
        if !(std::is_x86_feature_detected!("avx512bf16")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("f16c"))
        {
            eprintln!("skipped: no AVX-512 BF16 here");
            return;
        }
        let mut rng = crate::test_common::Rng::fresh();
        let mut unit = move || rng.unit();
        for dtype in [DType::F16, DType::BF16, DType::F32] {
            for (rows_n, cols) in [
                (1, 64),
                (67, 288),
                (64, 256),
                (5, 33),
                (40, 96),
                (33, 1),
                (48, 96),
                (16, 32),
                (32, 80),
            ] {
                for n in [2, 16, 17, 33] {
                    let wf: Vec<f32> = (0..rows_n * cols).map(|_| unit()).collect();
                    // The file's bytes, and each weight's (hi, lo) parts as the tiles see
                    // them (lo zero but for F32).
                    let (bytes, wq): (Vec<u8>, Vec<(f32, f32)>) = match dtype {
                        DType::F16 => {
                            let h: Vec<half::f16> =
                                wf.iter().map(|&v| half::f16::from_f32(v)).collect();
                            let b = h.iter().flat_map(|v| v.to_le_bytes()).collect();
                            (b, h.iter().map(|v| (round_bf16(v.to_f32()), 0.0)).collect())
                        }
                        DType::BF16 => {
                            let h: Vec<half::bf16> =
                                wf.iter().map(|&v| half::bf16::from_f32(v)).collect();
                            let b = h.iter().flat_map(|v| v.to_le_bytes()).collect();
                            (b, h.iter().map(|v| (v.to_f32(), 0.0)).collect())
                        }
                        _ => {
                            let b = wf.iter().flat_map(|v| v.to_le_bytes()).collect();
                            (b, wf.iter().map(|&v| split(v)).collect())
                        }
                    };
                    let w = Matrix::new(dtype, &bytes, rows_n, cols).expect("sizes");
                    let x: Vec<f32> = (0..n * cols).map(|_| unit()).collect();
                    let xb = rounded_in_two_calls::<true>(&x, n, cols, dtype);
                    // SAFETY (both kernels): features checked above; the model reads
                    // memory only.
                    let y = in_two_parts(rows_n, n, STEP, &mut |part| unsafe {
                        match dtype {
                            DType::F16 => rows::<W_F16, false>(&w, &xb, part),
                            DType::BF16 => rows::<W_BF16, false>(&w, &xb, part),
                            _ => rows::<W_F32, false>(&w, &xb, part),
                        }
                    });
                    let terms = if dtype == DType::F32 { 3.0 } else { 1.0 };
                    let check = |y: &[f32], kernel: &str| {
                        for i in 0..n {
                            for r in 0..rows_n {
                                let (mut want, mut abs) = (0.0f64, 0.0f64);
                                for c in 0..cols {
                                    let (wh, wl) = wq[r * cols + c];
                                    let (xh, xl) = split(x[i * cols + c]);
                                    let xl = if dtype == DType::F32 { xl } else { 0.0 };
                                    for t in [
                                        wh as f64 * xh as f64,
                                        wh as f64 * xl as f64,
                                        wl as f64 * xh as f64,
                                    ] {
                                        want += t;
                                        abs += t.abs();
                                    }
                                }
                                let got = y[i * rows_n + r] as f64;
                                let bound =
                                    2.0 * (terms * cols as f64 + 2.0) * f32::EPSILON as f64 * abs
                                        + 1e-30;
                                assert!(
                                    (got - want).abs() <= bound,
                                    "{kernel} {dtype} {rows_n}x{cols} n={n} y[{i}][{r}] = {got} vs {want} (bound {bound:e})"
                                );
                            }
                        }
                    };
                    check(&y, "rows");
                    let r16_cols = if dtype == DType::F32 { 16 } else { 32 };
                    if rows_n % R16_ROWS != 0 || cols % r16_cols != 0 {
                        continue;
                    }
                    // The same weights in layout r16, the activations as rows.
                    let row_bytes = bytes.len() / rows_n;
                    let interleaved = llm_format::layout::from_rows(Layout::R16, &bytes, row_bytes);
                    let w16 = Matrix::new(dtype, &interleaved, rows_n, cols)
                        .and_then(|m| m.with_layout(Layout::R16))
                        .expect("fits r16");
                    let xa = rounded_in_two_calls::<false>(&x, n, cols, dtype);
                    let y16 = in_two_parts(rows_n, n, R16_ROWS, &mut |part| unsafe {
                        match dtype {
                            DType::F16 => rows_r16::<W_F16, false>(&w16, &xa, part),
                            DType::BF16 => rows_r16::<W_BF16, false>(&w16, &xa, part),
                            _ => rows_r16::<W_F32, false>(&w16, &xa, part),
                        }
                    });
                    check(&y16, "r16");
                }
            }
        }
    }

    /// The activations as the kernels read them for `dtype` weights ([`Amx::parts`]
    /// parts; the B operand with `TRANSPOSE`, else the A operand), rounded by two calls
    /// over halves of the blocks, as threads split them.
    fn rounded_in_two_calls<const TRANSPOSE: bool>(
        x: &[f32],
        n: usize,
        cols: usize,
        dtype: DType,
    ) -> Vec<u16> {
        let len = Amx::buffer_len(n, cols);
        let per_block = BLOCK * bf16_padded(cols);
        let half = n.next_multiple_of(STEP) / BLOCK / 2; // blocks of the first call
        let mut xb = vec![0u16; Amx::parts(dtype) * len];
        let (hi, lo) = xb.split_at_mut(len);
        let (h0, h1) = hi.split_at_mut(half * per_block);
        let (l0, l1) = if lo.is_empty() {
            (None, None)
        } else {
            let (a, b) = lo.split_at_mut(half * per_block);
            (Some(a), Some(b))
        };
        // SAFETY: the callers checked the features.
        unsafe {
            round_tiles::<TRANSPOSE>(x, n, cols, 0, h0, l0);
            round_tiles::<TRANSPOSE>(x, n, cols, half, h1, l1);
        }
        xb
    }

    /// `y` (`n` activations × `rows_n` rows) written by `kernel` in two parts, the first
    /// a whole number of `align` rows, as `Cpu` splits a product between threads.
    fn in_two_parts(
        rows_n: usize,
        n: usize,
        align: usize,
        kernel: &mut dyn FnMut(&mut OutRows<'_>),
    ) -> Vec<f32> {
        let mut y = vec![f32::NAN; n * rows_n];
        let whole = OutRows::whole(&mut y, rows_n, n);
        let split = (rows_n / 2).next_multiple_of(align).min(rows_n);
        for (r0, r1) in [(0, split), (split, rows_n)] {
            // SAFETY: disjoint row ranges, written one after the other.
            kernel(&mut unsafe { whole.part(r0, r1) });
        }
        y
    }

    /// The transpose against index arithmetic, on distinct lane values.
    #[test]
    fn transpose16_transposes() {
        if !std::is_x86_feature_detected!("avx512f") {
            return;
        }
        let v: [__m512i; 16] = core::array::from_fn(|r| {
            let lanes: [i32; 16] = core::array::from_fn(|c| (100 * r + c) as i32);
            // SAFETY: plain loads of a local array.
            unsafe { _mm512_loadu_si512(lanes.as_ptr() as *const __m512i) }
        });
        // SAFETY: AVX-512 F checked above.
        let t = unsafe { transpose16(v) };
        for (c, row) in t.iter().enumerate() {
            let mut lanes = [0i32; 16];
            // SAFETY: plain store to a local array.
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr() as *mut __m512i, *row) };
            for (r, l) in lanes.iter().enumerate() {
                assert_eq!(*l, (100 * r + c) as i32, "out[{c}] lane {r}");
            }
        }
    }
}
