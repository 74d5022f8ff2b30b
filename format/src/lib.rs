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

pub mod aligned;
#[cfg(feature = "std")]
mod atomic;
pub mod dtype;
pub mod error;
pub mod header;
pub mod meta;
#[cfg(feature = "std")]
pub mod mmap;
pub mod options;
pub mod quant;
pub mod reader;
pub mod tensor;
pub mod writer;

pub use aligned::AlignedBuf;
pub use dtype::DType;
pub use error::FormatError;
pub use meta::MetaReader;
pub use meta::Value;
#[cfg(feature = "std")]
pub use mmap::MappedFile;
pub use options::{Mlp, ModelOptions, Norm, Positions, TokenizerKind, TokenizerSpec};
pub use reader::LlmFile;
pub use tensor::{Tensor, TensorInfo};
pub use writer::LlmWriter;
