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
}

impl Real for f32 {
    fn c(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    fn c(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
}
