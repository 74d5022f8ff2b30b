//! GELU, tanh approximation (GPT-2): `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
//!
//! Computed as `x·σ(2u)` with `u = √(2/π)·(x + 0.044715·x³)`, since
//! `0.5·(1 + tanh u) = σ(2u)`: the same function, without the cancellation of
//! `1 + tanh u` for negative x, and through [`Real::sigmoid`], which vectorises (libm's
//! `tanhf` is a scalar call and made GELU the trainer's most expensive op).

use super::CHUNK;
use crate::scalar::Real;
use rayon::prelude::*;

const S: f64 = 0.797_884_560_802_865_4; // √(2/π)
const K: f64 = 0.044715;

/// `gelu(x) = x·σ(2u)`, `u = √(2/π)·(x + 0.044715·x³)` (one element; GeGLU shares it).
#[inline]
pub fn gelu<T: Real>(x: T) -> T {
    let u2 = T::c(2.0 * S) * (x + T::c(K) * x * x * x);
    x * u2.sigmoid()
}

/// `gelu'(x)`; with `s = σ(2u)` (so `tanh u = 2s - 1` and `sech² u = 4s(1 - s)`):
/// `s + 2·x·s·(1 - s)·√(2/π)·(1 + 3·0.044715·x²)` (one element; GeGLU shares it).
#[inline]
pub fn gelu_grad<T: Real>(x: T) -> T {
    let u2 = T::c(2.0 * S) * (x + T::c(K) * x * x * x);
    // s = σ(2u) and 1 - s = e·s with e = e^(-2u): no `1 - s` cancellation.
    let e = (-u2).exp_fast();
    let s = T::one() / (T::one() + e);
    s + T::c(2.0 * S) * x * s * (e * s) * (T::one() + T::c(3.0 * K) * x * x)
}

/// `out[i] = gelu(inp[i])`.
pub fn gelu_forward<T: Real>(out: &mut [T], inp: &[T]) {
    out.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK))
        .for_each(|(o, x)| {
            for (y, &x) in o.iter_mut().zip(x) {
                *y = gelu(x);
            }
        });
}

/// `dinp += dout · gelu'(inp)` ([`gelu_grad`]).
pub fn gelu_backward<T: Real>(dinp: &mut [T], inp: &[T], dout: &[T]) {
    dinp.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK).zip(dout.par_chunks(CHUNK)))
        .for_each(|(dx, (x, dy))| {
            for (dx, (&x, &dy)) in dx.iter_mut().zip(x.iter().zip(dy)) {
                *dx += gelu_grad(x) * dy;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::{check_grads, rand_vec};

    #[test]
    fn gelu_f32_matches_tanh_formula_in_f64() {
        // The fast f32 path against the textbook tanh form evaluated in f64.
        let mut x = rand_vec::<f32>(10_000, 21);
        x.iter_mut().for_each(|v| *v *= 8.0);
        let mut y = vec![0f32; x.len()];
        gelu_forward(&mut y, &x);
        let dy = rand_vec::<f32>(x.len(), 22);
        let mut dx = rand_vec::<f32>(x.len(), 23);
        let dx0 = dx.clone();
        gelu_backward(&mut dx, &x, &dy);
        for i in 0..x.len() {
            let v = x[i] as f64;
            let u = S * (v + K * v * v * v);
            let th = u.tanh();
            let want = 0.5 * v * (1.0 + th);
            let d = 0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * S * (1.0 + 3.0 * K * v * v);
            let want_dx = dx0[i] as f64 + d * dy[i] as f64;
            assert!(
                (y[i] as f64 - want).abs() < 1e-6 * (1e-3 + want.abs()),
                "{v}: {} vs {want}",
                y[i]
            );
            assert!(
                (dx[i] as f64 - want_dx).abs() < 1e-6 * (1.0 + want_dx.abs()),
                "{v}"
            );
        }
    }

    #[test]
    fn gelu_gradients() {
        let mut x = rand_vec::<f64>(40, 11);
        x.iter_mut().for_each(|v| *v *= 4.0);
        check_grads(
            &[x],
            40,
            1e-7,
            |x, o| gelu_forward(o, &x[0]),
            |x, d, g| gelu_backward(&mut g[0], &x[0], d),
        );
    }
}
