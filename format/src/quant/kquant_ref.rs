//! Reference quantisers for the K-quants (Q2_K … Q6_K) and the non-linear 4-bit
//! types (IQ4_NL, IQ4_XS) that reproduce ggml's output bit for bit.
//!
//! # Why bit-exact
//!
//! A model converted by this crate should hold the same bytes llama.cpp would write
//! for the same f32 weights: files are then deterministic, diffable against GGUF
//! conversions, and a mismatch in a test always means a bug rather than "a different
//! but equally good rounding". `format/tests/ggml_blocks.rs` checks every function
//! here against fixtures written by ggml's own C code
//! (`scripts/ggml-fixtures.sh`).
//!
//! # What is reproduced
//!
//! * Q2_K … Q6_K follow `quantize_row_q*_K_ref` in ggml-quants.c, which is also what
//!   `ggml_quantize_chunk` runs when no importance matrix is given.
//! * IQ4_NL and IQ4_XS follow `ggml_quantize_chunk` without an importance matrix,
//!   i.e. `quantize_iq4_nl` / `quantize_iq4_xs` with a ±7 scale search. (ggml's
//!   `quantize_row_iq4_nl_ref` skips that search and gives different bytes; files
//!   written by llama-quantize come from the chunk path.)
//!
//! # Floating-point care
//!
//! Bit-exactness depends on doing the same IEEE operations in the same order:
//!
//! * ggml-base is compiled without FMA contraction, so `a * b + c` is a rounded
//!   multiply followed by a rounded add; Rust never contracts, and nothing here uses
//!   `mul_add`. Products such as `w * x * l` are evaluated left to right, as in C.
//! * ggml rounds with `nearest_int`, a magic-number trick (add 1.5·2²³ and read the
//!   mantissa) that rounds half to even and is only meaningful for `|v| < 2²²`;
//!   [`nearest_int`] is the same trick, so even out-of-range inputs give ggml's
//!   (clamped-afterwards) garbage. Plain C `(int)` conversions are truncations.
//! * f16 scales are rounded to nearest-even (`GGML_FP32_TO_FP16` ≡
//!   [`f16::from_f32`]), and later steps use the *rounded* scale where ggml does.
//! * `sqrtf` is correctly rounded in both C and [`libm::sqrtf`].

use half::f16;

/// Values per super-block.
const QK_K: usize = 256;

/// A group whose largest magnitude is below this is treated as all zeros.
const GROUP_MAX_EPS: f32 = 1e-15;

/// The 16 levels of IQ4_NL / IQ4_XS (`kvalues_iq4nl` in ggml-common.h).
const IQ4_LEVELS: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

// ------------------------------------------------------------------------------------
// Shared helpers
// ------------------------------------------------------------------------------------

use super::nearest_int;

/// `GGML_FP32_TO_FP16`: round to nearest, ties to even.
fn fp16_bits(v: f32) -> u16 {
    f16::from_f32(v).to_bits()
}

/// `GGML_FP16_TO_FP32` of stored bits (exact).
fn fp16_value(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

/// Writes an f16 little-endian at `at`.
fn put_f16(out: &mut [u8], at: usize, bits: u16) {
    out[at..at + 2].copy_from_slice(&bits.to_le_bytes());
}

/// The value of largest magnitude in `x` (the first one on ties) and that magnitude.
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        let a = v.abs();
        if a > amax {
            amax = a;
            max = v;
        }
    }
    (max, amax)
}

/// Packs 2-bit levels as Q2_K and Q3_K store them: in each half of 128 values, byte
/// `l` holds elements `l`, `l+32`, `l+64`, `l+96` in bits 0-1, 2-3, 4-5, 6-7.
fn pack_2bit(levels: &[u8; QK_K], qs: &mut [u8]) {
    for (h, half) in levels.chunks_exact(128).enumerate() {
        for l in 0..32 {
            qs[32 * h + l] =
                half[l] | (half[l + 32] << 2) | (half[l + 64] << 4) | (half[l + 96] << 6);
        }
    }
}

/// Fits `x ≈ scale·q - m` with `q` in `0..=nmax`, `m >= 0` (ggml's
/// `make_qkx2_quants`). Starts from the min/max grid, then tries `nstep + 1` wider or
/// narrower grids (`nmax + rmin + rdelta·k` steps over the range), solving the
/// weighted least-squares scale and offset for each and keeping the one with the
/// smallest weighted error (absolute if `use_mad`, squared otherwise). Writes the
/// levels to `levels` and returns `(scale, m)`.
#[allow(clippy::too_many_arguments)]
fn fit_scale_min(
    x: &[f32],
    weights: &[f32],
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
    levels: &mut [u8],
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels.fill(0);
        return (0.0, -min);
    }
    let nmax_f = nmax as f32;
    let error_of = |diff: f32| if use_mad { diff.abs() } else { diff * diff };

    let mut iscale = nmax_f / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        levels[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += weights[i] * error_of(diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }

    let mut trial = [0u8; 32];
    let trial = &mut trial[..n];
    for step in 0..=nstep {
        iscale = (rmin + rdelta * step as f32 + nmax_f) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            trial[i] = l as u8;
            let (w, lf) = (weights[i], l as f32);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * trial[i] as f32 + this_min - x[i];
                cur_error += weights[i] * error_of(diff);
            }
            if cur_error < best_error {
                levels.copy_from_slice(trial);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Symmetric fit `x ≈ scale·(q - nmax)`, `q` in `0..2·nmax`, weighted by `x²`
/// (ggml's `make_qx_quants` with `rmse_type = 1` and no importance weights, as
/// Q6_K uses it). Tries 18 grids around `nmax / max|x|` and keeps the least-squares
/// scale that explains the most of `x`. Writes biased levels and returns the scale
/// (negative when the largest-magnitude value is positive).
fn fit_symmetric(x: &[f32; 16], nmax: i32, levels: &mut [i8]) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let quant = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = quant(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };

    let mut iscale = -(nmax as f32) / max;
    for (q, &v) in levels.iter_mut().zip(x) {
        *q = (quant(iscale, v) + nmax) as i8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for step in -9..=9 {
        if step == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * step as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (q, &v) in levels.iter_mut().zip(x) {
                *q = (quant(iscale, v) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Symmetric 3-bit fit for Q3_K (ggml's `make_q3_quants` with `do_rmse`): start from
/// `nmax / max|x|`, then up to five passes of coordinate descent, moving one level
/// at a time when that raises the `x²`-weighted explained energy. Writes levels
/// biased by `nmax` (plain zeros for an all-zero group) and returns the scale.
fn fit_q3(x: &[f32; 16], nmax: i32, levels: &mut [i8; 16]) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (q, &v) in levels.iter_mut().zip(x) {
        let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *q = l as i8;
        let w = v * v;
        sumlx += w * v * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (q, &v) in levels.iter_mut().zip(x) {
            let w = v * v;
            let old = *q as f32;
            let mut slx = sumlx - w * v * old;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * old * old;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != *q as i32 {
                    let nl = new_l as f32;
                    slx += w * v * nl;
                    sl2 += w * nl * nl;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *q = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for q in levels.iter_mut() {
        *q += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// The 6-bit scale and minimum of group `j` (0..8) from Q4_K/Q5_K's 12 packed bytes
/// (ggml's `get_scale_min_k4`): groups 0-3 sit in the low 6 bits of bytes 0-7, groups
/// 4-7 in the nibbles of bytes 8-11 plus the spare top bits of bytes 0-7.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The first half of Q4_K and Q5_K: per group of 32, fit scale and minimum
/// ([`fit_scale_min`] with weights `rms + |x|`), quantise them to 6 bits against
/// the super-block's f16 `d`/`dmin`, then requantise every value against the rounded
/// group scale. Returns `(d, dmin, packed scales, levels)` with levels in `0..=nmax`.
fn quantize_scale_min_6bit(
    x: &[f32; QK_K],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> (u16, u16, [u8; 12], [u8; QK_K]) {
    let mut levels = [0u8; QK_K];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for (j, xg) in x.chunks_exact(32).enumerate() {
        let mut sum_x2 = 0.0f32;
        for &v in xg {
            sum_x2 += v * v;
        }
        let rms = libm::sqrtf(sum_x2 / 32.0);
        let mut weights = [0.0f32; 32];
        for (w, &v) in weights.iter_mut().zip(xg) {
            *w = rms + v.abs();
        }
        let lg = &mut levels[32 * j..32 * j + 32];
        (scales[j], mins[j]) = fit_scale_min(xg, &weights, nmax, rmin, 0.1, nstep, false, lg);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }

    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..8 {
        // ggml stores nearest_int in a uint8_t before clamping: keep the wrap.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = fp16_bits(max_scale / 63.0);
    let dmin = fp16_bits(max_min / 63.0);

    let (d_val, dmin_val) = (fp16_value(d), fp16_value(dmin));
    for (j, xg) in x.chunks_exact(32).enumerate() {
        let (sc, m) = scale_min_k4(j, &packed);
        let dl = d_val * sc as f32;
        if dl == 0.0 {
            continue; // keep the fit's levels
        }
        let ml = dmin_val * m as f32;
        for (q, &v) in levels[32 * j..32 * j + 32].iter_mut().zip(xg) {
            *q = nearest_int((v + ml) / dl).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, levels)
}

// ------------------------------------------------------------------------------------
// K-quants
// ------------------------------------------------------------------------------------

/// Quantises one Q2_K super-block as ggml's `quantize_row_q2_K_ref` does.
///
/// Layout (84 bytes): `scales[16]` (scale in the low nibble, minimum in the high),
/// `qs[64]` (2-bit levels, see `pack_2bit`), `d`, `dmin` (f16).
pub(crate) fn quantize_q2_k(x: &[f32; 256]) -> [u8; 84] {
    const NMAX: i32 = 3;
    const Q4SCALE: f32 = 15.0;
    let mut levels = [0u8; QK_K];
    let mut scales = [0.0f32; 16];
    let mut mins = [0.0f32; 16];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for (j, xg) in x.chunks_exact(16).enumerate() {
        let mut weights = [0.0f32; 16];
        for (w, &v) in weights.iter_mut().zip(xg) {
            *w = v.abs();
        }
        let lg = &mut levels[16 * j..16 * j + 16];
        (scales[j], mins[j]) = fit_scale_min(xg, &weights, NMAX, -0.5, 0.1, 15, true, lg);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }

    let mut out = [0u8; 84];
    let (sc_bytes, rest) = out.split_at_mut(16);
    let (qs, dd) = rest.split_at_mut(64);
    let mut d = fp16_bits(0.0);
    let mut dmin = fp16_bits(0.0);
    if max_scale > 0.0 {
        let iscale = Q4SCALE / max_scale;
        for (b, &s) in sc_bytes.iter_mut().zip(&scales) {
            *b = nearest_int(iscale * s) as u8;
        }
        d = fp16_bits(max_scale / Q4SCALE);
    }
    if max_min > 0.0 {
        let iscale = Q4SCALE / max_min;
        for (b, &m) in sc_bytes.iter_mut().zip(&mins) {
            *b |= (nearest_int(iscale * m) << 4) as u8;
        }
        dmin = fp16_bits(max_min / Q4SCALE);
    }

    let (d_val, dmin_val) = (fp16_value(d), fp16_value(dmin));
    for (j, xg) in x.chunks_exact(16).enumerate() {
        let dl = d_val * (sc_bytes[j] & 0x0f) as f32;
        if dl == 0.0 {
            continue; // keep the fit's levels
        }
        let ml = dmin_val * (sc_bytes[j] >> 4) as f32;
        for (q, &v) in levels[16 * j..16 * j + 16].iter_mut().zip(xg) {
            *q = nearest_int((v + ml) / dl).clamp(0, NMAX) as u8;
        }
    }

    pack_2bit(&levels, qs);
    put_f16(dd, 0, d);
    put_f16(dd, 2, dmin);
    out
}

/// Quantises one Q3_K super-block as ggml's `quantize_row_q3_K_ref` does.
///
/// Layout (110 bytes): `hmask[32]` (third bit; bit `s` of byte `l` is element
/// `32s + l`), `qs[64]` (low 2 bits, as Q2_K), `scales[12]` (16 six-bit scales offset
/// by 32: low nibbles in bytes 0-7, top bit pairs in bytes 8-11), `d` (f16).
pub(crate) fn quantize_q3_k(x: &[f32; 256]) -> [u8; 110] {
    const NMAX: i32 = 4;
    // Signed levels: biased to 0..8 by the fit, then recomputed as -4..4 + 4.
    let mut levels = [0i8; QK_K];
    let mut scales = [0.0f32; 16];
    let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
    for (j, xg) in x.chunks_exact(16).enumerate() {
        let xg: &[f32; 16] = xg.try_into().unwrap();
        let lg: &mut [i8; 16] = (&mut levels[16 * j..16 * j + 16]).try_into().unwrap();
        scales[j] = fit_q3(xg, NMAX, lg);
        if scales[j].abs() > amax {
            amax = scales[j].abs();
            max_scale = scales[j];
        }
    }

    let mut out = [0u8; 110];
    let mut packed = [0u8; 12];
    let d = if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for (j, &s) in scales.iter().enumerate() {
            // ggml keeps this in an int8_t: truncate, clamp, offset by 32 (0..64).
            let l = ((nearest_int(iscale * s) as i8).clamp(-32, 31) + 32) as u8;
            if j < 8 {
                packed[j] = l & 0x0f;
            } else {
                packed[j - 8] |= (l & 0x0f) << 4;
            }
            packed[j % 4 + 8] |= (l >> 4) << (2 * (j / 4));
        }
        fp16_bits(1.0 / iscale)
    } else {
        fp16_bits(0.0)
    };

    let d_val = fp16_value(d);
    for (j, xg) in x.chunks_exact(16).enumerate() {
        let low = if j < 8 {
            packed[j] & 0x0f
        } else {
            packed[j - 8] >> 4
        };
        let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        let sc = (low | (high << 4)) as i32 - 32;
        let dl = d_val * sc as f32;
        if dl == 0.0 {
            continue; // keep the fit's levels
        }
        for (q, &v) in levels[16 * j..16 * j + 16].iter_mut().zip(xg) {
            *q = (nearest_int(v / dl).clamp(-4, 3) + 4) as i8;
        }
    }

    // Split each 3-bit level into the high-bit mask and 2 low bits.
    let mut low_bits = [0u8; QK_K];
    let (hmask, rest) = out.split_at_mut(32);
    for (k, (&q, lo)) in levels.iter().zip(low_bits.iter_mut()).enumerate() {
        let mut q = q as u8;
        if q > 3 {
            hmask[k % 32] |= 1 << (k / 32);
            q -= 4;
        }
        *lo = q;
    }
    let (qs, rest) = rest.split_at_mut(64);
    pack_2bit(&low_bits, qs);
    rest[..12].copy_from_slice(&packed);
    put_f16(rest, 12, d);
    out
}

/// Quantises one Q4_K super-block as ggml's `quantize_row_q4_K_ref` does.
///
/// Layout (144 bytes): `d`, `dmin` (f16), `scales[12]` (8 six-bit scales and mins,
/// see `scale_min_k4`), `qs[128]` (in each 64 values, byte `l` holds element `l` in
/// its low nibble and `l + 32` in its high nibble).
pub(crate) fn quantize_q4_k(x: &[f32; 256]) -> [u8; 144] {
    let (d, dmin, scales, levels) = quantize_scale_min_6bit(x, 15, -1.0, 20);
    let mut out = [0u8; 144];
    put_f16(&mut out, 0, d);
    put_f16(&mut out, 2, dmin);
    out[4..16].copy_from_slice(&scales);
    let qs = &mut out[16..];
    for (c, chunk) in levels.chunks_exact(64).enumerate() {
        for l in 0..32 {
            qs[32 * c + l] = chunk[l] | (chunk[l + 32] << 4);
        }
    }
    out
}

/// Quantises one Q5_K super-block as ggml's `quantize_row_q5_K_ref` does.
///
/// Layout (176 bytes): `d`, `dmin` (f16), `scales[12]` (as Q4_K), `qh[32]` (fifth
/// bit; bit `s` of byte `l` is element `32s + l`), `qs[128]` (low nibbles, as Q4_K).
pub(crate) fn quantize_q5_k(x: &[f32; 256]) -> [u8; 176] {
    let (d, dmin, scales, levels) = quantize_scale_min_6bit(x, 31, -0.5, 15);
    let mut out = [0u8; 176];
    put_f16(&mut out, 0, d);
    put_f16(&mut out, 2, dmin);
    out[4..16].copy_from_slice(&scales);
    let (qh, qs) = out[16..].split_at_mut(32);
    for (c, chunk) in levels.chunks_exact(64).enumerate() {
        for l in 0..32 {
            let (lo, hi) = (chunk[l], chunk[l + 32]);
            qh[l] |= ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1));
            qs[32 * c + l] = (lo & 0x0f) | ((hi & 0x0f) << 4);
        }
    }
    out
}

/// Quantises one Q6_K super-block as ggml's `quantize_row_q6_K_ref` does.
///
/// Layout (210 bytes): `ql[128]` (low nibbles: in each 128 values, byte `l` of the
/// first 32 holds elements `l` / `l+64`, of the next 32 `l+32` / `l+96`), `qh[64]`
/// (top 2 bits of elements `l`, `l+32`, `l+64`, `l+96` in byte `l`), `scales[16]`
/// (i8), `d` (f16).
pub(crate) fn quantize_q6_k(x: &[f32; 256]) -> [u8; 210] {
    const NMAX: i32 = 32;
    let mut levels = [0i8; QK_K];
    let mut scales = [0.0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
    for (j, xg) in x.chunks_exact(16).enumerate() {
        let xg: &[f32; 16] = xg.try_into().unwrap();
        scales[j] = fit_symmetric(xg, NMAX, &mut levels[16 * j..16 * j + 16]);
        if scales[j].abs() > max_abs_scale {
            max_abs_scale = scales[j].abs();
            max_scale = scales[j];
        }
    }

    let mut out = [0u8; 210];
    if max_abs_scale < GROUP_MAX_EPS {
        put_f16(&mut out, 208, fp16_bits(0.0));
        return out;
    }

    let iscale = -128.0 / max_scale;
    let d = fp16_bits(1.0 / iscale);
    let mut sc = [0i8; 16];
    for (q, &s) in sc.iter_mut().zip(&scales) {
        *q = nearest_int(iscale * s).min(127) as i8;
    }
    let d_val = fp16_value(d);
    for (j, xg) in x.chunks_exact(16).enumerate() {
        let dl = d_val * sc[j] as f32;
        if dl == 0.0 {
            continue; // keep the fit's levels
        }
        for (q, &v) in levels[16 * j..16 * j + 16].iter_mut().zip(xg) {
            *q = (nearest_int(v / dl).clamp(-32, 31) + 32) as i8;
        }
    }

    let (ql, rest) = out.split_at_mut(128);
    let (qh, rest) = rest.split_at_mut(64);
    for (h, half) in levels.chunks_exact(128).enumerate() {
        for l in 0..32 {
            let q = [0, 32, 64, 96].map(|o| half[l + o] as u8);
            ql[64 * h + l] = (q[0] & 0x0f) | ((q[2] & 0x0f) << 4);
            ql[64 * h + l + 32] = (q[1] & 0x0f) | ((q[3] & 0x0f) << 4);
            qh[32 * h + l] =
                (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
        }
    }
    for (b, &s) in rest[..16].iter_mut().zip(&sc) {
        *b = s as u8;
    }
    put_f16(rest, 16, d);
    out
}

// ------------------------------------------------------------------------------------
// Non-linear 4-bit
// ------------------------------------------------------------------------------------

/// Index of the IQ4 level nearest to `v` (ggml's `best_index_int8`): a binary search
/// that, on an exact tie between two neighbours, picks the upper one.
fn iq4_index(v: f32) -> u8 {
    let level = |i: usize| IQ4_LEVELS[i] as f32;
    if v <= level(0) {
        return 0;
    }
    if v >= level(15) {
        return 15;
    }
    let (mut lo, mut hi) = (0usize, 15usize);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if v < level(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if v - level(hi - 1) < level(hi) - v {
        (hi - 1) as u8
    } else {
        hi as u8
    }
}

/// How far either side of the plain max-based grid the IQ4 scale search looks
/// (`ntry` in ggml's `quantize_row_iq4_nl_impl`, 7 on the `ggml_quantize_chunk` path).
const IQ4_NTRY: i32 = 7;

/// Best scale for one group of 32 under the non-linear levels, weighting each value
/// by `x²` (no importance matrix): the least-squares scale of the max-based grid,
/// improved by 15 trial grids `(k - 127) / max` for `k` in `-7..=7`. Returns 0 for an
/// all-zero group.
fn iq4_group_scale(xb: &[f32]) -> f32 {
    let (max, amax) = signed_absmax(xb);
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    let fit = |id: f32| {
        let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
        for &v in xb {
            let q = IQ4_LEVELS[iq4_index(id * v) as usize] as f32;
            let w = v * v;
            sumqx += w * q * v;
            sumq2 += w * q * q;
        }
        (sumqx, sumq2)
    };
    let d0 = -max / IQ4_LEVELS[0] as f32;
    let (sumqx, sumq2) = fit(1.0 / d0);
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for k in -IQ4_NTRY..=IQ4_NTRY {
        let id = (k + IQ4_LEVELS[0] as i32) as f32 / max;
        let (sumqx, sumq2) = fit(id);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

/// Packs IQ4 level indices: in each 32 values, byte `j` holds element `j` in its low
/// nibble and `j + 16` in its high nibble.
fn pack_iq4(indices: &[u8], qs: &mut [u8]) {
    for (i, group) in indices.chunks_exact(32).enumerate() {
        for j in 0..16 {
            qs[16 * i + j] = group[j] | (group[j + 16] << 4);
        }
    }
}

/// Quantises one IQ4_NL block of 32 as `ggml_quantize_chunk(GGML_TYPE_IQ4_NL, …)`
/// does without an importance matrix (note: not `quantize_row_iq4_nl_ref`, which
/// skips the scale search).
///
/// Layout (18 bytes): `d` (f16), `qs[16]` (level indices into `kvalues_iq4nl`,
/// element `j` in the low nibble of byte `j`, element `j + 16` in its high nibble).
pub(crate) fn quantize_iq4_nl(x: &[f32; 32]) -> [u8; 18] {
    let d = iq4_group_scale(x);
    // The indices are chosen against the f32 scale, not its f16 rounding.
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let indices = x.map(|v| iq4_index(id * v));
    let mut out = [0u8; 18];
    put_f16(&mut out, 0, fp16_bits(d));
    pack_iq4(&indices, &mut out[2..]);
    out
}

/// Quantises one IQ4_XS super-block as `ggml_quantize_chunk(GGML_TYPE_IQ4_XS, …)`
/// does without an importance matrix.
///
/// Layout (136 bytes): `d` (f16), `scales_h` (u16: top 2 bits of group `i`'s 6-bit
/// scale at bits `2i..2i+2`), `scales_l[4]` (low nibbles, group `2k` low and `2k + 1`
/// high in byte `k`), `qs[128]` (level indices, packed per group as IQ4_NL).
pub(crate) fn quantize_iq4_xs(x: &[f32; 256]) -> [u8; 136] {
    let mut scales = [0.0f32; 8];
    let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
    for (s, xb) in scales.iter_mut().zip(x.chunks_exact(32)) {
        *s = iq4_group_scale(xb);
        if s.abs() > amax_scale {
            amax_scale = s.abs();
            max_scale = *s;
        }
    }

    // Group scales become 6-bit multiples (offset 32) of the super-block scale;
    // indices are then recomputed against each group's f32 scale `d·l`.
    let d = -max_scale / 32.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut indices = [0u8; QK_K];
    let mut scales_h = 0u16;
    let mut scales_l = [0u8; 4];
    for (ib, (&s, xb)) in scales.iter().zip(x.chunks_exact(32)).enumerate() {
        let l = nearest_int(id * s).clamp(-32, 31);
        let dl = d * l as f32;
        let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
        for (q, &v) in indices[32 * ib..32 * ib + 32].iter_mut().zip(xb) {
            *q = iq4_index(idl * v);
        }
        let l = (l + 32) as u8;
        scales_l[ib / 2] |= (l & 0x0f) << (4 * (ib % 2));
        scales_h |= ((l >> 4) as u16) << (2 * ib);
    }

    let mut out = [0u8; 136];
    put_f16(&mut out, 0, fp16_bits(d));
    put_f16(&mut out, 2, scales_h);
    out[4..8].copy_from_slice(&scales_l);
    pack_iq4(&indices, &mut out[8..]);
    out
}
