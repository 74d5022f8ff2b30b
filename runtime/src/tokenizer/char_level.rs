//! Char-level vocabulary: one token per Unicode scalar value (char-level models).

use super::error::TokenizerError;
use super::Pieces;
use alloc::vec::Vec;
use hashbrown::HashMap;

/// Char → id for every single-char piece, built once.
#[derive(Clone, Debug)]
pub(super) struct CharLevel {
    lookup: HashMap<char, u32>,
    unk: Option<u32>,
}

/// Builds the decode table (id → UTF-8 of the piece; empty for control tokens) and the
/// char map. Pieces of several chars (e.g. `<s>`) decode to their text but are never
/// produced by `encode`.
pub(super) fn build(
    tokens: &[impl AsRef<str>],
    unk: Option<u32>,
    is_control: impl Fn(u32) -> bool,
) -> (Pieces, CharLevel) {
    let mut pieces = Pieces::with_capacity(tokens.len());
    let mut lookup = HashMap::with_capacity(tokens.len());
    for (id, tok) in tokens.iter().enumerate() {
        let id = id as u32;
        let text = tok.as_ref();
        if is_control(id) {
            pieces.push(&[]);
            continue;
        }
        pieces.push(text.as_bytes());
        let mut chars = text.chars();
        if let (Some(c), None) = (chars.next(), chars.next()) {
            if Some(id) != unk {
                lookup.entry(c).or_insert(id);
            }
        }
    }
    (pieces, CharLevel { lookup, unk })
}

impl CharLevel {
    /// Appends the ids of `text` to `out`; an unknown char maps to `unk`, else is an error.
    pub(super) fn encode(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        for c in text.chars() {
            let id = self
                .lookup
                .get(&c)
                .copied()
                .or(self.unk)
                .ok_or(TokenizerError::UnknownChar(c))?;
            out.push(id);
        }
        Ok(())
    }
}
