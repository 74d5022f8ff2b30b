//! Seeds of the tests that draw random inputs, for this crate's integration tests
//! (`mod common;`) and its unit tests (`crate::test_common`, the same file through
//! `#[path]`): one place, so every test prints and replays its seed the same way.
#![allow(dead_code, unused_imports)] // each test binary uses a part

pub use llm_format::testing::{fresh_seed, test_seed};

/// splitmix64, seeded from [`fresh_seed`] or `LLMRT_TEST_SEED` (printed).
pub struct Rng(u64);

impl Rng {
    /// This run's generator: [`common::fresh_seed`], or `LLMRT_TEST_SEED`.
    pub fn fresh() -> Rng {
        Rng(test_seed(fresh_seed()))
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// Random values with a scale that changes every 32 (so blocks differ), never all
    /// zero.
    pub fn vec(&mut self, len: usize) -> std::vec::Vec<f32> {
        let mut scale = 1.0;
        (0..len)
            .map(|i| {
                if i % 32 == 0 {
                    scale = 0.05 + 2.0 * (self.unit() + 1.0);
                }
                self.unit() * scale + if i == 0 { 0.25 } else { 0.0 }
            })
            .collect()
    }
}
