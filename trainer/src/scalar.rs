//! The element type of the CPU backend. Training runs in `f32`; every op is also
//! instantiated in `f64` so that the tests can check gradients against central finite
//! differences without float32 round-off drowning the signal.

use num_traits::Float;
use std::fmt::Debug;
use std::iter::Sum;

/// `f32` or `f64`.
pub trait Real:
    Float + Default + Debug + Send + Sync + Sum + std::ops::AddAssign + std::ops::MulAssign + 'static
{
    /// Converts a constant.
    fn c(x: f64) -> Self;
    /// Widens to f64 (for losses and norms, which are accumulated in f64).
    fn f64(self) -> f64;
    /// `eˣ` in a form the compiler can vectorise: for `f32` a branch-free polynomial
    /// (Cephes' `expf`: `x = n·ln2 + r`, degree-6 polynomial in r, `2ⁿ` built from the
    /// exponent bits; within 2e-7 relative for x in [-87, 88], clamped outside so it
    /// never returns inf or 0); for `f64` the library `exp` (the gradient checks).
    fn exp_fast(self) -> Self;
    /// `σ(x) = 1/(1 + e⁻ˣ)` through [`Real::exp_fast`]; precise to a few ulp at both
    /// tails (no `1 - small` cancellation).
    #[inline(always)]
    fn sigmoid(self) -> Self {
        Self::one() / (Self::one() + (-self).exp_fast())
    }
}

impl Real for f32 {
    fn c(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        // ln 2 split in two so that n·C1 is exact (Cephes).
        const C1: f32 = 0.693_359_4;
        const C2: f32 = -2.121_944_4e-4;
        // 1.5·2²³: adding and subtracting it rounds to the nearest integer (SSE2 has
        // no vector round).
        const ROUND: f32 = 12_582_912.0;
        // e^-87.3 is the smallest normal float's neighbourhood, e^88.3 the largest's.
        // Written as selects, not `max`/`min`, so that a NaN stays NaN (a NaN loss
        // must stop the run, not turn into a finite one).
        let x = if self < -87.3 { -87.3 } else { self };
        let x = if x > 88.3 { 88.3 } else { x };
        let n = (x * LOG2E + ROUND) - ROUND;
        let r = x - n * C1 - n * C2;
        let mut p = 1.987_569_1e-4f32;
        p = p * r + 1.398_199_9e-3;
        p = p * r + 8.333_452e-3;
        p = p * r + 4.166_579_6e-2;
        p = p * r + 1.666_666_5e-1;
        p = p * r + 0.5;
        let y = p * r * r + r + 1.0;
        // 2ⁿ for n in [-126, 127]: the biased exponent shifted into place.
        y * f32::from_bits(((n as i32 + 127) as u32) << 23)
    }
}

impl Real for f64 {
    fn c(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        self.exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn exp_fast_f32_matches_f64_exp() {
        // Random points over the whole clamped range, plus the edges and 0.
        let mut r = Rng::for_test(5);
        let mut xs: Vec<f32> = (0..200_000)
            .map(|_| (r.uniform() * 175.0 - 87.0) as f32)
            .collect();
        xs.extend([0.0, -87.0, 88.0, 1e-8, -1e-8, 0.5, -0.5]);
        for x in xs {
            let want = (x as f64).exp();
            let got = x.exp_fast() as f64;
            assert!(
                ((got - want) / want).abs() < 2e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
        // Clamped, never inf or 0; NaN stays NaN.
        assert!(1000f32.exp_fast().is_finite() && (-1000f32).exp_fast() > 0.0);
        assert!(f32::NAN.exp_fast().is_nan() && f32::NAN.sigmoid().is_nan());
    }

    #[test]
    fn sigmoid_is_precise_at_both_tails() {
        let mut r = Rng::for_test(6);
        for _ in 0..100_000 {
            let x = (r.uniform() * 60.0 - 30.0) as f32;
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            let got = x.sigmoid() as f64;
            assert!(
                ((got - want) / want).abs() < 5e-7,
                "σ({x}) = {got}, want {want}"
            );
        }
    }
}
