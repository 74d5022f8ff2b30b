//! The one error type of the format crate: every variant names what is wrong.

use alloc::string::String;

/// Why a file could not be read or written. `Display` gives a one-line message.
#[derive(Clone, Debug, PartialEq)]
pub enum FormatError {
    /// The buffer ends before `what` (which started at byte `offset`) is complete.
    Truncated {
        /// The field or section being read.
        what: &'static str,
        /// Byte offset where it starts.
        offset: u64,
    },
    /// The first bytes are not the `.llm` magic.
    BadMagic,
    /// A format version this reader does not know.
    UnsupportedVersion(u32),
    /// A dtype id that no [`crate::DType`] has.
    UnknownDType(u32),
    /// A checksum does not match; names the section or tensor.
    Checksum(String),
    /// A field holds a value that is not allowed; the text names the field and the value.
    Invalid(String),
    /// A metadata key that must be there is missing.
    MissingKey(String),
    /// A required tensor is missing.
    MissingTensor(String),
    /// An I/O error (only with `std`), with the path.
    Io(String),
}

impl core::fmt::Display for FormatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FormatError::Truncated { what, offset } => {
                write!(
                    f,
                    "file truncated: {what} at byte {offset} runs past the end"
                )
            }
            FormatError::BadMagic => f.write_str("not an .llm file (bad magic)"),
            FormatError::UnsupportedVersion(v) => write!(f, "unsupported .llm version {v}"),
            FormatError::UnknownDType(d) => write!(f, "unknown tensor dtype id {d}"),
            FormatError::Checksum(what) => write!(f, "checksum mismatch in {what}"),
            FormatError::Invalid(msg) => f.write_str(msg),
            FormatError::MissingKey(k) => write!(f, "missing metadata key '{k}'"),
            FormatError::MissingTensor(t) => write!(f, "missing tensor '{t}'"),
            FormatError::Io(msg) => f.write_str(msg),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FormatError {}
