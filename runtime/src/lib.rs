//! llmrt: the inference runtime for `.llm` models.
//!
//! `#![no_std]` + `alloc`; the `std` feature (on by default) adds memory-mapped
//! loading and threads. A [`Model`] is loaded once and shared; each [`Context`]
//! holds one stream's KV cache and scratch; [`generate()`] runs the sampler chain
//! and streams text over any [`Decoder`] (a [`Context`], or with feature `cuda` the
//! GPU's `cuda::GpuDecoder`).
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

#[cfg(feature = "std")]
pub mod chat;
pub mod context;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod embed;
pub mod engine;
pub mod error;
pub mod generate;
pub mod grammar;
pub mod kernels;
pub mod kv_cache;
mod math;
pub mod model;
pub mod ops;
pub mod sampler;
#[cfg(feature = "std")]
pub mod state;
#[cfg(feature = "std")]
pub mod sys;
#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod test_common;
pub mod tokenizer;

pub use context::{BatchEntry, Context, ContextParams};
pub use error::Error;
pub use generate::{generate, generate_until, Decoder, GenerateParams, Generation, StopReason};
pub use kv_cache::CacheType;
pub use model::Model;
