//! The `.llm` model container: ggml-compatible quantisation blocks, typed metadata,
//! a tensor directory and 64-byte-aligned tensor data.
//!
//! `format/SPEC.md` is the normative byte layout. This crate is `no_std` + `alloc`;
//! the `std` feature adds memory-mapped loading and atomic file writes.
//!
//! ```
//! use llm_format::{AlignedBuf, DType, LlmFile, LlmWriter, Value};
//!
//! let mut w = LlmWriter::new();
//! w.add_meta("provenance.source", Value::from("example"));
//! let x: Vec<f32> = (0..64).map(|i| i as f32 / 7.0 - 3.0).collect();
//! w.add_tensor_f32("blk.0.attn_q.weight", DType::Q8_0, &[2, 32], &x)?;
//! let bytes = w.to_bytes()?;
//!
//! // Parsing borrows from the buffer; an aligned buffer (or an mmap, see
//! // `MappedFile`) also allows in-place f32 / block views.
//! let buf = AlignedBuf::from_slice(&bytes);
//! let f = LlmFile::parse(&buf)?;
//! let t = f.require("blk.0.attn_q.weight", &[DType::Q8_0], &[2, 32])?;
//! assert_eq!((t.rows(), t.cols()), (2, 32));
//! f.verify_all()?;
//! assert_eq!(LlmWriter::from_file(&f).to_bytes()?, bytes);
//! # Ok::<(), llm_format::FormatError>(())
//! ```
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod aligned;
#[cfg(feature = "std")]
pub mod atomic;
pub mod dtype;
pub mod error;
pub mod gguf_value;
pub mod header;
pub mod layout;
pub mod meta;
#[cfg(feature = "std")]
pub mod mmap;
pub mod options;
pub mod quant;
pub mod reader;
pub mod tensor;
#[cfg(feature = "std")]
pub mod testing;
pub mod token_type;
pub mod writer;

pub use aligned::AlignedBuf;
pub use dtype::{ActQuant, DType};
pub use error::FormatError;
pub use gguf_value::ValueType;
pub use layout::Layout;
pub use meta::MetaReader;
pub use meta::Value;
#[cfg(feature = "std")]
pub use mmap::MappedFile;
pub use options::{
    ArchOptions, Mlp, ModelOptions, Norm, Positions, RopeYarn, TokenizerKind, TokenizerSpec,
};
pub use reader::LlmFile;
pub use tensor::{Tensor, TensorInfo};
pub use writer::LlmWriter;
