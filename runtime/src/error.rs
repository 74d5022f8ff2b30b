//! The runtime's error type: one line that names what is wrong.

use alloc::string::String;

/// Why a model could not be loaded or run.
#[derive(Debug)]
pub enum Error {
    /// The file is malformed (from the format crate).
    Format(llm_format::FormatError),
    /// The tokenizer could not be built or used.
    Tokenizer(crate::tokenizer::TokenizerError),
    /// A token id outside the vocabulary: (id, vocabulary size).
    BadToken(u64, usize),
    /// More tokens than the context holds: (needed, context length).
    ContextFull(usize, usize),
    /// An empty prompt where one token at least is needed.
    EmptyPrompt,
    /// Not enough memory for a context or one of its buffers.
    NoMemory {
        /// What did not fit, as a noun phrase ("a context of 4096 tokens", "the KV cache").
        what: String,
        /// Bytes it needs.
        needed: u64,
        /// Bytes the system had available, when the check before allocating refused
        /// it; `None` when the allocation itself failed.
        available: Option<u64>,
    },
    /// Constrained generation reached a token the grammar refuses, or a state no
    /// token of the vocabulary can continue.
    Grammar(crate::grammar::GrammarStepError),
    /// The GPU (or another device) is missing, refused the model or failed; the text
    /// is the device's own one-line reason.
    Device(String),
    /// Anything else, described.
    Invalid(String),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Format(e) => write!(f, "{e}"),
            Error::Tokenizer(e) => write!(f, "tokenizer: {e}"),
            Error::BadToken(id, n) => {
                write!(f, "token id {id} is out of range (vocabulary size {n})")
            }
            Error::ContextFull(need, ctx) => {
                write!(f, "{need} tokens do not fit in the context of {ctx} tokens")
            }
            Error::EmptyPrompt => f.write_str("the prompt is empty: give at least one token"),
            Error::NoMemory {
                what,
                needed,
                available: Some(avail),
            } => write!(
                f,
                "{what} needs {} MiB but only {} MiB of memory are available",
                needed >> 20,
                avail >> 20
            ),
            Error::NoMemory {
                what,
                needed,
                available: None,
            } => write!(f, "not enough memory for {what} ({} MiB)", needed >> 20),
            Error::Grammar(e) => write!(f, "{e}"),
            Error::Device(m) => f.write_str(m),
            Error::Invalid(m) => f.write_str(m),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

impl From<llm_format::FormatError> for Error {
    fn from(e: llm_format::FormatError) -> Self {
        Error::Format(e)
    }
}

impl From<crate::tokenizer::TokenizerError> for Error {
    fn from(e: crate::tokenizer::TokenizerError) -> Self {
        Error::Tokenizer(e)
    }
}

impl From<crate::grammar::GrammarStepError> for Error {
    fn from(e: crate::grammar::GrammarStepError) -> Self {
        Error::Grammar(e)
    }
}

/// A CUDA failure as the runtime's error: a model or cache the device memory cannot
/// hold is [`Error::NoMemory`] (the numbers kept), anything else [`Error::Device`]
/// with the CUDA error's line.
#[cfg(feature = "cuda")]
impl From<llmrt_cuda::CudaError> for Error {
    fn from(e: llmrt_cuda::CudaError) -> Self {
        match e {
            llmrt_cuda::CudaError::OutOfMemory { what, needed, free } => Error::NoMemory {
                what: alloc::format!("{what} on the GPU"),
                needed: needed as u64,
                available: Some(free as u64),
            },
            e => Error::Device(alloc::string::ToString::to_string(&e)),
        }
    }
}
