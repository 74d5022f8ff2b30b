//! The element-wise and row-wise operations of the decoder other than the matrix
//! products and the vectorised loops (attention with its softmax, SwiGLU), which live
//! in `kernels`. Scalar, allocation-free; rows are `[n, d]` row-major.

use crate::math::{cosf, expf, powf, sinf, sqrtf, tanhf};

/// LayerNorm of each row of `x` (`[n, d]`) into `out`: (x - mean)/sqrt(var + eps)·w + b.
pub fn layernorm(out: &mut [f32], x: &[f32], w: &[f32], b: Option<&[f32]>, eps: f32) {
    let d = w.len();
    for (o, xr) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        let mean = xr.iter().sum::<f32>() / d as f32;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let rstd = 1.0 / sqrtf(var + eps);
        for i in 0..d {
            o[i] = (xr[i] - mean) * rstd * w[i] + b.map_or(0.0, |b| b[i]);
        }
    }
}

/// RMSNorm of each row of `x` (`[n, d]`) into `out`: x / sqrt(mean(x²) + eps) · w.
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let d = w.len();
    for (o, xr) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        let ss = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let r = 1.0 / sqrtf(ss + eps);
        for i in 0..d {
            o[i] = xr[i] * r * w[i];
        }
    }
}

/// RMSNorm in place of each `w.len()`-wide piece of `x` (the heads of a q or k row).
pub fn rmsnorm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    let d = w.len();
    for xr in x.chunks_exact_mut(d) {
        let ss = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let r = 1.0 / sqrtf(ss + eps);
        for (v, wi) in xr.iter_mut().zip(w) {
            *v *= r * wi;
        }
    }
}

/// Adds `b` (`[d]`) to each row of `x` (`[n, d]`).
pub fn add_bias(x: &mut [f32], b: &[f32]) {
    for row in x.chunks_exact_mut(b.len()) {
        for (v, bb) in row.iter_mut().zip(b) {
            *v += bb;
        }
    }
}

/// x += y.
pub fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// GELU, tanh approximation (GPT-2): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
pub fn gelu(x: &mut [f32]) {
    const S: f32 = 0.797_884_6; // sqrt(2/pi)
    for v in x {
        let u = *v;
        *v = 0.5 * u * (1.0 + tanhf(S * (u + 0.044715 * u * u * u)));
    }
}

/// GeGLU's activation: `h = gelu(gate) ⊙ h` (`gate` is overwritten with its GELU).
pub fn geglu(h: &mut [f32], gate: &mut [f32]) {
    gelu(gate);
    for (a, g) in h.iter_mut().zip(gate.iter()) {
        *a *= g;
    }
}

/// ReLU.
pub fn relu(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

/// RoPE inverse frequencies `base^(-2i/head_dim)` for i in 0..head_dim/2.
pub fn rope_freqs(head_dim: usize, base: f32) -> alloc::vec::Vec<f32> {
    (0..head_dim / 2)
        .map(|i| 1.0 / powf(base, (2 * i) as f32 / head_dim as f32))
        .collect()
}

/// YaRN's inverse frequencies ([`llm_format::RopeYarn`]): each of [`rope_freqs`]
/// blended between itself (extrapolation) and itself divided by the factor
/// (interpolation) along the ramp of the correction range.
pub fn yarn_freqs(head_dim: usize, base: f32, y: &llm_format::RopeYarn) -> alloc::vec::Vec<f32> {
    let corr = |rot: f32| {
        head_dim as f32
            * libm::logf(y.original_max_len as f32 / (rot * 2.0 * core::f32::consts::PI))
            / (2.0 * libm::logf(base))
    };
    let low = libm::floorf(corr(y.beta_fast)).max(0.0);
    let high = libm::ceilf(corr(y.beta_slow)).min(head_dim as f32 - 1.0);
    let span = if high == low { 0.001 } else { high - low };
    rope_freqs(head_dim, base)
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let extrapolate = 1.0 - ((i as f32 - low) / span).clamp(0.0, 1.0);
            f / y.factor * (1.0 - extrapolate) + f * extrapolate
        })
        .collect()
}

/// The rotation of position `pos`: `cs[2i] = scale·cos(pos·freqs[i])`, `cs[2i+1] =
/// scale·sin(...)` (`scale` is YaRN's attention factor, else 1). Computed once per
/// position and shared by every head of every layer.
pub fn rope_table(cs: &mut [f32], freqs: &[f32], pos: usize, scale: f32) {
    for (c, f) in cs.chunks_exact_mut(2).zip(freqs) {
        let ang = pos as f32 * f;
        c[0] = cosf(ang) * scale;
        c[1] = sinf(ang) * scale;
    }
}

/// Rotary embedding of one row holding several heads of `cs.len()` values: adjacent
/// pairs `(x[2i], x[2i+1])` rotate by the angle whose cosine and sine are `cs[2i]`,
/// `cs[2i+1]` (see [`rope_table`]).
pub fn rope(row: &mut [f32], cs: &[f32]) {
    for head in row.chunks_exact_mut(cs.len()) {
        for (x, c) in head.chunks_exact_mut(2).zip(cs.chunks_exact(2)) {
            let (a, b) = (x[0], x[1]);
            x[0] = a * c[0] - b * c[1];
            x[1] = a * c[1] + b * c[0];
        }
    }
}

/// Adds the sinusoidal position code of `pos` to `row` (`[d]`):
/// `pe[2i] = sin(pos·10000^(-2i/d))`, `pe[2i+1] = cos(pos·10000^(-2i/d))`.
pub fn add_sinusoidal(row: &mut [f32], pos: usize) {
    let d = row.len();
    for i in 0..d / 2 {
        let ang = pos as f32 / powf(10000.0, (2 * i) as f32 / d as f32);
        row[2 * i] += sinf(ang);
        row[2 * i + 1] += cosf(ang);
    }
}

/// log-softmax probability of `target` in `logits`, computed stably.
pub fn log_prob(logits: &[f32], target: usize) -> f32 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let sum: f32 = logits.iter().map(|v| expf(v - max)).sum();
    logits[target] - max - crate::math::logf(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`yarn_freqs`] against transformers 5.25's `_compute_yarn_parameters` (its
    /// inverse-frequency code run on these settings, f32 arrays as torch's; recorded).
    #[test]
    fn yarn_freqs_are_transformers() {
        /// head_dim, base, factor, original length, beta_fast, frequencies.
        type Case = (usize, f32, f32, usize, f32, &'static [f64]);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            (16, 10000.0, 4.0, 512, 8.0, &[
                1.0, 0.316227764, 0.100000001, 0.0197642371, 0.00249999994, 0.000790569466,
                0.000250000012, 7.90569466e-05,
            ]),
            (64, 1e6, 4.0, 32768, 32.0, &[
                1.0, 0.649381638, 0.421696514, 0.273841977, 0.177827939, 0.115478203,
                0.0749894157, 0.0486967526, 0.0316227786, 0.0205352511, 0.0133352149,
                0.00865964312, 0.00515479548, 0.0030431177, 0.00177853031, 0.00102661771,
                0.000583333371, 0.000324690831, 0.000175706868, 9.12806499e-05,
                4.44569851e-05, 2.88695483e-05, 1.87473561e-05, 1.21741887e-05,
                7.90569356e-06, 5.13381246e-06, 3.33380353e-06, 2.16491094e-06,
                1.40585337e-06, 9.1293532e-07, 5.92843435e-07, 3.84981632e-07,
            ]),
        ];
        for &(hd, base, factor, orig, beta_fast, want) in cases {
            let y = llm_format::RopeYarn {
                factor,
                original_max_len: orig,
                beta_fast,
                beta_slow: 1.0,
                attn_factor: 1.0,
            };
            let got = yarn_freqs(hd, base, &y);
            assert_eq!(got.len(), want.len());
            for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
                let g = g as f64;
                assert!(
                    (g - w).abs() <= 2e-6 * w,
                    "head_dim {hd}, pair {i}: {g} vs {w}"
                );
            }
        }
    }
}
