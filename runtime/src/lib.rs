//! llmrt: the inference runtime.
#![no_std]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;
pub mod kernels;
pub mod sampler;
pub mod tokenizer;
