//! The small vector loops between the matrix products — one query's attention over
//! the cached keys and values, and the SiLU-gated product of SwiGLU — written once in
//! plain Rust and compiled per path (`#[target_feature]` wrappers around an
//! always-inlined body), so that they vectorise to the CPU's widest registers instead
//! of the baseline's 128 bits. `exp` is a branch-free polynomial (within 2 ulp of
//! `f32::exp` on the range the softmax and SiLU use; tested) because libm's `expf` is
//! an opaque call per element that no loop around it can vectorise.

/// `eˣ` for `x` in `[-87.3, 88]` (clamped outside to the values at the ends),
/// branch-free: `x = k·ln2 + r` with `|r| <= ln2/2`, a degree-6 polynomial for `eʳ`
/// (Cephes' `expf` coefficients) and `2ᵏ` through the exponent bits.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    // ln2 split in two so that k·ln2 is exact to f32 precision.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // max/min rather than clamp, and 2ᵏ from the rounding constant's bits rather
    // than a float-to-int cast: both keep the function vectorisable.
    #[allow(clippy::manual_clamp)] // clamp's NaN propagation costs compares per lane
    let x = x.max(-87.3).min(88.0);
    // Round to nearest without `round` (no_std): add and subtract 1.5·2²³; the sum's
    // low mantissa bits then hold k as an integer.
    const SHIFT: f32 = 12_582_912.0;
    let kb = x * LOG2E + SHIFT;
    let k = kb - SHIFT;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // 2ᵏ for k in [-126, 127]: the biased exponent k + 127, as bits.
    let k_int = kb.to_bits().wrapping_sub(SHIFT.to_bits());
    let two_k = f32::from_bits(k_int.wrapping_add(127) << 23);
    er * two_k
}

/// Dot product with 16 independent sums (one 512-bit register, or two 256-bit ones)
/// so that the adds do not form one chain.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..16 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The body of [`super::VecOps::attend`]: `out = softmax(scale·K·q)·V` over the first
/// `sc.len()` rows of `keys` and `vals` (`[len, hd]` each), `sc` as scratch.
#[inline(always)]
pub(crate) fn attend_body(
    q: &[f32],
    keys: &[f32],
    vals: &[f32],
    scale: f32,
    sc: &mut [f32],
    out: &mut [f32],
) {
    let hd = q.len();
    let len = sc.len();
    assert!(keys.len() >= len * hd && vals.len() >= len * hd && out.len() == hd);
    for (t, s) in sc.iter_mut().enumerate() {
        *s = dot(q, &keys[t * hd..(t + 1) * hd]) * scale;
    }
    let inv = softmax_weights(sc);
    // The weighted sum of the values, 16 output columns at a time held in registers
    // over all positions (not a load and store of `out` per position).
    let mut c = 0;
    while c + 16 <= hd {
        let mut acc = [0.0f32; 16];
        for (t, &w) in sc.iter().enumerate() {
            let v = &vals[t * hd + c..t * hd + c + 16];
            for k in 0..16 {
                acc[k] += w * v[k];
            }
        }
        for (o, a) in out[c..c + 16].iter_mut().zip(&acc) {
            *o = a * inv;
        }
        c += 16;
    }
    for (d, o) in out.iter_mut().enumerate().skip(c) {
        let sum: f32 = sc
            .iter()
            .enumerate()
            .map(|(t, &w)| w * vals[t * hd + d])
            .sum();
        *o = sum * inv;
    }
}

/// The scores made softmax weights short of the normalisation: `sc = exp(sc - max)`
/// in place; returns `1 / Σ sc`.
#[inline(always)]
fn softmax_weights(sc: &mut [f32]) -> f32 {
    let max = lanes16(sc, f32::NEG_INFINITY, f32::max);
    for s in sc.iter_mut() {
        *s = exp(*s - max);
    }
    1.0 / lanes16(sc, 0.0, |a, b| a + b)
}

/// `op` folded over `x` in 16 independent lanes (so that the folds vectorise), then
/// over the lanes and the tail.
#[inline(always)]
fn lanes16(x: &[f32], init: f32, op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 16];
    let chunks = x.chunks_exact(16);
    let tail = chunks.remainder().iter().fold(init, |a, &b| op(a, b));
    for ch in chunks {
        for k in 0..16 {
            acc[k] = op(acc[k], ch[k]);
        }
    }
    acc.iter().fold(tail, |a, &b| op(a, b))
}

/// The body of [`super::VecOps::swiglu`]: `up[i] = silu(gate[i])·up[i]`.
#[inline(always)]
pub(crate) fn swiglu_body(up: &mut [f32], gate: &[f32]) {
    assert_eq!(up.len(), gate.len());
    for (u, g) in up.iter_mut().zip(gate) {
        *u *= *g / (1.0 + exp(-*g));
    }
}

/// `dst = src` widened from f16, eight at a time with F16C's `vcvtph2ps` (half's
/// slice conversion makes a call per eight values, which took a tenth of a
/// generated token's time at a few hundred positions of f16 cache).
///
/// # Safety
/// The CPU must have AVX and F16C.
///
/// # Panics
/// If the lengths differ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
pub(crate) unsafe fn widen_f16_f16c(src: &[half::f16], dst: &mut [f32]) {
    use core::arch::x86_64::*;
    assert_eq!(src.len(), dst.len());
    let whole = src.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        // SAFETY: i + 8 <= whole <= the length of both slices.
        unsafe {
            let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        }
    }
    for (d, s) in dst[whole..].iter_mut().zip(&src[whole..]) {
        *d = s.to_f32();
    }
}

/// [`attend_body`] over an f16 cache read as it is: keys and values widened in
/// registers (F16C) instead of converted into an f32 copy first. Generation at a
/// few hundred positions spent more time writing and reading that copy than in the
/// weights (PERF.md, "Huge pages"). Scores four keys at a time (four independent
/// chains); the weighted sum holds 64 output columns in registers per pass.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
///
/// # Panics
/// If `keys` or `vals` hold fewer than `sc.len()` rows or `out.len() != q.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn attend_f16_f16c(
    q: &[f32],
    keys: &[half::f16],
    vals: &[half::f16],
    scale: f32,
    sc: &mut [f32],
    out: &mut [f32],
) {
    use core::arch::x86_64::*;
    let hd = q.len();
    let len = sc.len();
    assert!(keys.len() >= len * hd && vals.len() >= len * hd && out.len() == hd);
    let whole = hd / 8 * 8;
    // SAFETY (loads below): columns c + 8 <= whole <= hd of rows t < len, which lie
    // in `keys`/`vals` (asserted), and of `q`/`out`.
    let widen =
        |p: *const half::f16| unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) };
    let hsum = super::avx2::hsum;
    let tail = |t: usize| -> f32 { (whole..hd).map(|c| keys[t * hd + c].to_f32() * q[c]).sum() };
    let (kp, qp) = (keys.as_ptr(), q.as_ptr());
    let mut t = 0;
    while t + 4 <= len {
        let mut acc = [_mm256_setzero_ps(); 4];
        for c in (0..whole).step_by(8) {
            // SAFETY: as above.
            let qv = unsafe { _mm256_loadu_ps(qp.add(c)) };
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: as above (row t + k < len).
                let kv = widen(unsafe { kp.add((t + k) * hd + c) });
                *a = _mm256_fmadd_ps(kv, qv, *a);
            }
        }
        for (k, a) in acc.iter().enumerate() {
            sc[t + k] = (hsum(*a) + tail(t + k)) * scale;
        }
        t += 4;
    }
    while t < len {
        let mut a = _mm256_setzero_ps();
        for c in (0..whole).step_by(8) {
            // SAFETY: as above.
            let (kv, qv) = (widen(unsafe { kp.add(t * hd + c) }), unsafe {
                _mm256_loadu_ps(qp.add(c))
            });
            a = _mm256_fmadd_ps(kv, qv, a);
        }
        sc[t] = (hsum(a) + tail(t)) * scale;
        t += 1;
    }
    let inv = softmax_weights(sc);
    let vp = vals.as_ptr();
    let mut c0 = 0;
    while c0 < whole {
        let regs = ((whole - c0) / 8).min(8);
        let mut acc = [_mm256_setzero_ps(); 8];
        for (t, &w) in sc.iter().enumerate() {
            let wv = _mm256_set1_ps(w);
            for (r, a) in acc.iter_mut().enumerate().take(regs) {
                // SAFETY: as above (column c0 + 8r + 8 <= whole).
                let v = widen(unsafe { vp.add(t * hd + c0 + 8 * r) });
                *a = _mm256_fmadd_ps(wv, v, *a);
            }
        }
        for (r, a) in acc.iter().enumerate().take(regs) {
            // SAFETY: as above.
            unsafe {
                _mm256_storeu_ps(
                    out.as_mut_ptr().add(c0 + 8 * r),
                    _mm256_mul_ps(*a, _mm256_set1_ps(inv)),
                )
            };
        }
        c0 += 8 * regs;
    }
    for (d, o) in out.iter_mut().enumerate().skip(whole) {
        let sum: f32 = sc
            .iter()
            .enumerate()
            .map(|(t, &w)| w * vals[t * hd + d].to_f32())
            .sum();
        *o = sum * inv;
    }
}

/// Per-path copies of the bodies: the same code, compiled with the path's features.
macro_rules! compiled_for {
    ($attend:ident, $swiglu:ident, $features:literal) => {
        /// [`attend_body`] compiled for this path.
        ///
        /// # Safety
        /// The CPU must have the features this function enables.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn $attend(
            q: &[f32],
            keys: &[f32],
            vals: &[f32],
            scale: f32,
            sc: &mut [f32],
            out: &mut [f32],
        ) {
            attend_body(q, keys, vals, scale, sc, out)
        }

        /// [`swiglu_body`] compiled for this path.
        ///
        /// # Safety
        /// The CPU must have the features this function enables.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn $swiglu(up: &mut [f32], gate: &[f32]) {
            swiglu_body(up, gate)
        }
    };
}

compiled_for!(attend_avx2, swiglu_avx2, "avx2,fma");
compiled_for!(
    attend_avx512,
    swiglu_avx512,
    "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"
);

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// Uniform values in [-2, 2) from an xorshift seeded by the test's seed (fresh
    /// each run, printed; see `test_common`) and `salt` (calls differ).
    fn randoms(len: usize, salt: u64) -> Vec<f32> {
        use crate::test_common::{fresh_seed, test_seed};
        let mut s = (test_seed(fresh_seed()) ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    /// The F16C widening against `half`'s conversion, exactly, on every class of
    /// f16 (random bits: normals, subnormals, zeros, infinities, NaNs) and lengths
    /// that are not multiples of eight.
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[test]
    fn widen_f16_matches_half() {
        if !std::is_x86_feature_detected!("f16c") {
            return;
        }
        let bits = randoms(1000, 7);
        for len in [0, 1, 7, 8, 9, 64, 1000] {
            let src: Vec<half::f16> = bits[..len]
                .iter()
                .map(|x| half::f16::from_bits((x.to_bits() >> 3) as u16))
                .collect();
            let mut dst = vec![0.0f32; len];
            // SAFETY: F16C checked above; AVX comes with it.
            unsafe { widen_f16_f16c(&src, &mut dst) };
            for (h, d) in src.iter().zip(&dst) {
                let want = h.to_f32();
                assert!(
                    d.to_bits() == want.to_bits() || (d.is_nan() && want.is_nan()),
                    "{:#06x}: {d} != {want}",
                    h.to_bits()
                );
            }
        }
    }

    /// The f16 attention against the f32 one over the same values widened (both
    /// f32 arithmetic in different orders: within 1e-5 of the output's scale), on
    /// head sizes that are and are not multiples of 8 and lengths around the
    /// four-key step.
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[test]
    fn attend_f16_matches_attend_over_widened_values() {
        if !(std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c"))
        {
            return;
        }
        for (hd, len) in [
            (64, 1),
            (64, 7),
            (64, 130),
            (128, 33),
            (80, 5),
            (12, 9),
            (3, 4),
        ] {
            let q = randoms(hd, 1 + hd as u64);
            let k16: Vec<half::f16> = randoms(len * hd, 2 + len as u64)
                .iter()
                .map(|&x| half::f16::from_f32(x))
                .collect();
            let v16: Vec<half::f16> = randoms(len * hd, 3 + len as u64)
                .iter()
                .map(|&x| half::f16::from_f32(x))
                .collect();
            let k: Vec<f32> = k16.iter().map(|x| x.to_f32()).collect();
            let v: Vec<f32> = v16.iter().map(|x| x.to_f32()).collect();
            let (mut sa, mut sb) = (vec![0.0f32; len], vec![0.0f32; len]);
            let (mut oa, mut ob) = (vec![f32::NAN; hd], vec![f32::NAN; hd]);
            attend_body(&q, &k, &v, 0.125, &mut sa, &mut oa);
            // SAFETY: the features are checked above.
            unsafe { attend_f16_f16c(&q, &k16, &v16, 0.125, &mut sb, &mut ob) };
            let scale = oa.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-3);
            for (c, (a, b)) in oa.iter().zip(&ob).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * scale,
                    "hd {hd} len {len} column {c}: {a} vs {b}"
                );
            }
        }
    }

    /// Every compiled copy of `attend` and `swiglu` against an f64 reference, on head
    /// sizes and lengths that are not multiples of the vector width.
    #[test]
    fn attend_and_swiglu_match_f64() {
        type Attend = fn(&[f32], &[f32], &[f32], f32, &mut [f32], &mut [f32]);
        type Swiglu = fn(&mut [f32], &[f32]);
        // Only x86-64 with std adds SIMD copies to the list.
        #[cfg_attr(not(all(feature = "std", target_arch = "x86_64")), allow(unused_mut))]
        let mut paths: Vec<(&str, Attend, Swiglu)> = vec![("body", attend_body, swiglu_body)];
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY (in the closures): the CPU has AVX2 and FMA (checked).
                paths.push((
                    "avx2",
                    |q, k, v, sc, s, o| unsafe { attend_avx2(q, k, v, sc, s, o) },
                    |u, g| unsafe { swiglu_avx2(u, g) },
                ));
            }
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx512dq")
                && std::is_x86_feature_detected!("fma")
            {
                // SAFETY (in the closures): the CPU has these features (checked).
                paths.push((
                    "avx512",
                    |q, k, v, sc, s, o| unsafe { attend_avx512(q, k, v, sc, s, o) },
                    |u, g| unsafe { swiglu_avx512(u, g) },
                ));
            }
        }
        for (hd, len) in [(1, 1), (7, 5), (48, 33), (64, 100), (80, 17)] {
            let q = randoms(hd, 1);
            let keys = randoms(len * hd, 2);
            let vals = randoms(len * hd, 3);
            let scale = 0.37;
            // Reference: scores, softmax and weighted sum in f64.
            let sc: Vec<f64> = (0..len)
                .map(|t| {
                    (0..hd)
                        .map(|d| q[d] as f64 * keys[t * hd + d] as f64)
                        .sum::<f64>()
                        * scale as f64
                })
                .collect();
            let max = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = sc.iter().map(|s| libm::exp(s - max)).collect();
            let z: f64 = e.iter().sum();
            let want: Vec<f64> = (0..hd)
                .map(|d| (0..len).map(|t| e[t] / z * vals[t * hd + d] as f64).sum())
                .collect();
            for (name, attend, _) in &paths {
                let mut scratch = vec![f32::NAN; len];
                let mut out = vec![f32::NAN; hd];
                attend(&q, &keys, &vals, scale, &mut scratch, &mut out);
                for (d, (g, w)) in out.iter().zip(&want).enumerate() {
                    // Each output is a convex combination of values in [-2, 2].
                    assert!(
                        (*g as f64 - w).abs() <= 1e-5,
                        "{name} hd {hd} len {len} out[{d}] = {g}, f64 {w}"
                    );
                }
            }
        }
        let gate = randoms(1000, 4);
        let up = randoms(1000, 5);
        for (name, _, swiglu) in &paths {
            let mut u = up.clone();
            swiglu(&mut u, &gate);
            for (i, got) in u.iter().enumerate() {
                let g = gate[i] as f64;
                let want = g / (1.0 + libm::exp(-g)) * up[i] as f64;
                assert!(
                    (*got as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{name} swiglu[{i}]"
                );
            }
        }
    }

    #[test]
    fn exp_is_within_two_ulp_of_std() {
        // Every 97·1024th f32 bit pattern between -87.3 and 88, plus the ends and 0.
        let (lo, hi) = (-87.3f32, 88.0f32);
        let mut xs: Vec<f32> = [lo, hi, 0.0, -0.0, 1.0, -1.0].to_vec();
        let mut b = 0u32;
        while b < 0x7f80_0000 {
            for x in [f32::from_bits(b), -f32::from_bits(b)] {
                if (lo..=hi).contains(&x) {
                    xs.push(x);
                }
            }
            b += 97 * 1024;
        }
        assert!(xs.len() > 10_000);
        for x in xs {
            let want = libm::exp(x as f64);
            let got = exp(x) as f64;
            // ulp of the f32 result at this magnitude.
            let ulp = (want as f32).abs().max(f32::MIN_POSITIVE) * f32::EPSILON;
            assert!(
                (got - want).abs() <= 2.0 * ulp as f64,
                "exp({x:e}) = {got:e}, want {want:e}"
            );
        }
        // Outside the range: clamped, never NaN or negative.
        assert_eq!(exp(-1000.0), exp(-87.3));
        assert!(exp(1000.0).is_finite() && exp(-1000.0) >= 0.0);
    }
}
