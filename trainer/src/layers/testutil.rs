//! Test helpers: random inputs and a gradient checker against central finite
//! differences in f64.

use crate::rng::Rng;
use crate::scalar::Real;

/// `n` values uniform in [-1, 1) from stream `seed` of the test's seed
/// ([`Rng::for_test`]; never all zeros).
pub fn rand_vec<T: Real>(n: usize, seed: u64) -> Vec<T> {
    let mut r = Rng::for_test(seed);
    (0..n).map(|_| T::c(r.uniform() * 2.0 - 1.0)).collect()
}

/// Checks `bwd` against central differences of `L = Σ out ⊙ w` for a random `w`.
///
/// `fwd(inputs, out)` writes the op's output; `bwd(inputs, dout, grads)` must add
/// `∂L/∂inputs` into `grads` (zeroed here). Step `h = 1e-6`; the truncation error is
/// O(h²) and round-off about 1e-16/h, so `tol` (absolute + relative) of 1e-7..1e-6
/// separates a right gradient from a wrong one by many orders of magnitude.
pub fn check_grads<F, B>(inputs: &[Vec<f64>], out_len: usize, tol: f64, fwd: F, bwd: B)
where
    F: Fn(&[Vec<f64>], &mut [f64]),
    B: Fn(&[Vec<f64>], &[f64], &mut [Vec<f64>]),
{
    let w: Vec<f64> = rand_vec(out_len, 99);
    let loss = |x: &[Vec<f64>]| {
        let mut out = vec![0.0; out_len];
        fwd(x, &mut out);
        out.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>()
    };
    let mut grads: Vec<Vec<f64>> = inputs.iter().map(|v| vec![0.0; v.len()]).collect();
    bwd(inputs, &w, &mut grads);
    let h = 1e-6;
    let mut x = inputs.to_vec();
    for (a, g) in grads.iter().enumerate() {
        for i in 0..x[a].len() {
            let orig = x[a][i];
            x[a][i] = orig + h;
            let lp = loss(&x);
            x[a][i] = orig - h;
            let lm = loss(&x);
            x[a][i] = orig;
            let num = (lp - lm) / (2.0 * h);
            assert!(
                (g[i] - num).abs() <= tol * (1.0 + num.abs()),
                "input {a} element {i}: analytic {} vs numeric {num}",
                g[i]
            );
        }
    }
}
