//! Seeds of the tests that draw random inputs, for this crate's integration tests
//! (`mod common;`) and its unit tests (`crate::test_common`, the same file through
//! `#[path]`): one place, so every test prints and replays its seed the same way.
#![allow(dead_code, unused_imports)] // each test binary uses a part

pub use llm_format::testing::{fresh_seed, test_seed};
