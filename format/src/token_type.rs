//! Per-token types, GGUF's numbering (`tokenizer.ggml.token_type`), stored as the u8
//! array `tokenizer.token_types`. Special-token parsing reads them: user-defined tokens
//! are always split out of text, control (and unknown) tokens only on request.

/// Undefined (GGUF 0): treated as normal.
pub const UNDEFINED: u8 = 0;
/// An ordinary piece.
pub const NORMAL: u8 = 1;
/// The unknown token.
pub const UNKNOWN: u8 = 2;
/// A control token (BOS, EOS, `<|im_start|>`, ...).
pub const CONTROL: u8 = 3;
/// A user-defined (added) token, matched in text before the tokenizer runs.
pub const USER_DEFINED: u8 = 4;
/// Unused.
pub const UNUSED: u8 = 5;
/// A byte-fallback token (`<0xXX>`).
pub const BYTE: u8 = 6;

/// Whether `t` is a known type number.
pub fn is_valid(t: u8) -> bool {
    t <= BYTE
}
