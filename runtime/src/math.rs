//! Scalar float functions that `core` lacks: `std`'s when it is there, `libm`'s otherwise.

#[cfg(feature = "std")]
mod imp {
    pub fn expf(x: f32) -> f32 {
        x.exp()
    }
    pub fn sqrtf(x: f32) -> f32 {
        x.sqrt()
    }
    pub fn tanhf(x: f32) -> f32 {
        x.tanh()
    }
    pub fn powf(x: f32, y: f32) -> f32 {
        x.powf(y)
    }
    pub fn sinf(x: f32) -> f32 {
        x.sin()
    }
    pub fn cosf(x: f32) -> f32 {
        x.cos()
    }
    pub fn logf(x: f32) -> f32 {
        x.ln()
    }
    /// `x·y + z`, fused (one rounding; one instruction where the caller's target
    /// features have FMA).
    pub fn mul_add(x: f32, y: f32, z: f32) -> f32 {
        x.mul_add(y, z)
    }
}

#[cfg(not(feature = "std"))]
mod imp {
    pub use libm::{cosf, expf, logf, powf, sinf, sqrtf, tanhf};
    /// `x·y + z`, not fused: `libm::fmaf` is exact in software, far slower than the
    /// two instructions the vector loops that call this want.
    pub fn mul_add(x: f32, y: f32, z: f32) -> f32 {
        x * y + z
    }
}

pub use imp::*;
