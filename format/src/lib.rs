//! The `.llm` model container: ggml-compatible quantisation blocks, typed metadata,
//! a tensor directory and 64-byte-aligned tensor data.
//!
//! `format/SPEC.md` is the normative byte layout. This crate is `no_std` + `alloc`;
//! the `std` feature adds memory-mapped loading and atomic file writes.
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod dtype;
pub mod error;
pub mod meta;
pub mod options;
pub mod quant;

pub use dtype::DType;
pub use error::FormatError;
pub use meta::Value;
pub use options::{Mlp, ModelOptions, Norm, Positions, TokenizerKind, TokenizerSpec};
