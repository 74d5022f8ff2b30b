//! The tokenizer's one error type: every variant names the offending token, piece or
//! character, and `Display` gives a one-line message.

use alloc::string::String;

/// Why a tokenizer could not be built, or a text encoded, or ids decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenizerError {
    /// The vocabulary has no tokens.
    EmptyVocab,
    /// The vocabulary has more tokens than a `u32` id can name.
    TooManyTokens(usize),
    /// A special id (`what` = "bos", "eos", "unk", "pad") is not below the vocabulary size.
    IdOutOfRange {
        /// Which special id.
        what: &'static str,
        /// Its value.
        id: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// A SentencePiece vocabulary needs one score per token.
    ScoresMismatch {
        /// Number of tokens.
        tokens: usize,
        /// Number of scores.
        scores: usize,
    },
    /// A GPT-2 merge rule is malformed or names a piece that is not in the vocabulary.
    BadMerge {
        /// Position of the rule in `merges`.
        index: usize,
        /// What is wrong, including the rule's text.
        reason: String,
    },
    /// A token id that is not below the vocabulary size.
    UnknownToken {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// A character that has no token, no byte-fallback tokens and no `unk` to map to.
    UnknownChar(char),
    /// A WordPiece word that no pieces spell, in a vocabulary without `unk`.
    UnknownWord(String),
    /// A byte that has no token (a byte-level vocabulary must hold all 256 bytes).
    UnknownByte(u8),
    /// The token types do not match the tokens one to one.
    TypesMismatch {
        /// Number of tokens.
        tokens: usize,
        /// Number of types.
        types: usize,
    },
    /// An unknown or unusable pre-tokenizer, or one whose regex failed on a text.
    PreTokenizer {
        /// The pre-tokenizer's name (or the regex).
        name: String,
        /// What is wrong.
        reason: String,
    },
}

impl core::fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TokenizerError::EmptyVocab => f.write_str("tokenizer has an empty vocabulary"),
            TokenizerError::TooManyTokens(n) => {
                write!(f, "tokenizer has {n} tokens, more than a u32 id can name")
            }
            TokenizerError::IdOutOfRange { what, id, vocab } => write!(
                f,
                "tokenizer {what} id {id} is not below the vocabulary size {vocab}"
            ),
            TokenizerError::ScoresMismatch { tokens, scores } => write!(
                f,
                "sentencepiece tokenizer has {tokens} tokens but {scores} scores"
            ),
            TokenizerError::BadMerge { index, reason } => {
                write!(f, "bad merge rule #{index}: {reason}")
            }
            TokenizerError::UnknownToken { id, vocab } => {
                write!(f, "unknown token id {id} (vocabulary size {vocab})")
            }
            TokenizerError::UnknownChar(c) => write!(
                f,
                "character {c:?} (U+{:04X}) has no token and no fallback",
                *c as u32
            ),
            TokenizerError::UnknownWord(w) => {
                write!(
                    f,
                    "word {w:?} has no pieces and the vocabulary no unk token"
                )
            }
            TokenizerError::UnknownByte(b) => write!(f, "byte 0x{b:02X} has no token"),
            TokenizerError::TypesMismatch { tokens, types } => {
                write!(f, "tokenizer has {tokens} tokens but {types} token types")
            }
            TokenizerError::PreTokenizer { name, reason } => {
                write!(f, "pre-tokenizer '{name}': {reason}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TokenizerError {}
