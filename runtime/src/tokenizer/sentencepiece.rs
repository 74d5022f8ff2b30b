//! SentencePiece-style score-merge BPE with byte fallback, as llama2.c's `encode` (and
//! LLaMA 1-2's tokenizer) does it.
//!
//! Encoding: spaces become `▁`, one `▁` (the dummy prefix) leads non-empty text; each
//! char starts as its own symbol (a char with no piece falls back to its UTF-8 bytes as
//! `<0xXX>` pieces, else to `unk`); then the adjacent pair whose concatenated piece text
//! is in the vocabulary with the highest score is merged, leftmost on ties, until none is.
//! Decoding: `<0xXX>` is the raw byte, `▁` is a space, control tokens are empty.

use super::error::TokenizerError;
use super::merge::{merge, Score, Sym};
use super::Pieces;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use hashbrown::HashMap;

/// The word-boundary mark that stands for a space in pieces.
pub const SPACE_MARK: char = '\u{2581}';

/// The SentencePiece tables, built once.
#[derive(Clone, Debug)]
pub(super) struct SentencePiece {
    /// Piece text → id (control tokens and `unk` excluded: text never produces them).
    lookup: HashMap<Box<str>, u32>,
    /// Id → piece text, as stored (`▁`, `<0xXX>`).
    texts: Pieces,
    /// Id → merge score.
    scores: Vec<f32>,
    /// Byte → its `<0xXX>` token.
    byte_ids: [Option<u32>; 256],
    /// Fallback for a char with neither a piece nor byte tokens.
    unk: Option<u32>,
    /// Whether a text gets a leading `▁` (when it starts the prompt or follows a special
    /// token).
    add_space_prefix: bool,
}

/// Parses a byte-fallback piece `<0xXX>` (hex digits in either case).
pub(super) fn byte_piece(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Builds the decode table (id → bytes) and the merge tables. `is_control(id)` marks
/// BOS/EOS/PAD, which decode to nothing.
pub(super) fn build(
    tokens: &[impl AsRef<str>],
    scores: &[f32],
    unk: Option<u32>,
    is_control: impl Fn(u32) -> bool,
    add_space_prefix: bool,
) -> Result<(Pieces, SentencePiece), TokenizerError> {
    if scores.len() != tokens.len() {
        return Err(TokenizerError::ScoresMismatch {
            tokens: tokens.len(),
            scores: scores.len(),
        });
    }
    let mut pieces = Pieces::with_capacity(tokens.len());
    let mut texts = Pieces::with_capacity(tokens.len());
    let mut lookup: HashMap<Box<str>, u32> = HashMap::with_capacity(tokens.len());
    let mut byte_ids = [None; 256];
    let mut buf = String::new();
    for (id, tok) in tokens.iter().enumerate() {
        let id = id as u32;
        let text = tok.as_ref();
        texts.push(text.as_bytes());
        if is_control(id) {
            pieces.push(&[]);
            continue;
        }
        if Some(id) != unk {
            lookup.entry(Box::from(text)).or_insert(id);
        }
        if let Some(b) = byte_piece(text) {
            byte_ids[b as usize].get_or_insert(id);
            pieces.push(&[b]);
            continue;
        }
        buf.clear();
        buf.extend(text.chars().map(|c| if c == SPACE_MARK { ' ' } else { c }));
        pieces.push(buf.as_bytes());
    }
    Ok((
        pieces,
        SentencePiece {
            lookup,
            texts,
            scores: scores.to_vec(),
            byte_ids,
            unk,
            add_space_prefix,
        },
    ))
}

impl SentencePiece {
    /// Whether `id` is a byte-fallback piece (its decoded space is never stripped).
    pub(super) fn is_byte(&self, id: u32) -> bool {
        self.text(id).and_then(byte_piece).is_some()
    }

    /// Appends the ids of `text` to `out` (nothing for empty text). `at_start`: the text
    /// starts the prompt or follows a special token, so it gets the space prefix if the
    /// vocabulary has one.
    pub(super) fn encode(
        &self,
        text: &str,
        at_start: bool,
        out: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        if text.is_empty() {
            return Ok(());
        }
        // One symbol per char of "▁" + text with ' ' → '▁'.
        let mut syms: Vec<Sym> = Vec::with_capacity(text.len() + 1);
        let mut utf8 = [0u8; 4];
        let prefix = (self.add_space_prefix && at_start).then_some(SPACE_MARK);
        let chars = prefix.into_iter().chain(text.chars());
        for (i, c) in chars
            .map(|c| if c == ' ' { SPACE_MARK } else { c })
            .enumerate()
        {
            let s: &str = c.encode_utf8(&mut utf8);
            let sym = |id| Sym {
                id,
                start: i,
                end: i + 1,
            };
            if let Some(&id) = self.lookup.get(s) {
                syms.push(sym(id));
                continue;
            }
            for &b in s.as_bytes() {
                let id = self.byte_ids[b as usize]
                    .or(self.unk)
                    .ok_or(TokenizerError::UnknownChar(c))?;
                syms.push(sym(id));
            }
        }
        // Highest score of the piece the two texts concatenate to.
        let mut joined = String::new();
        merge(&mut syms, |a, b| {
            joined.clear();
            joined.push_str(self.text(a.id)?);
            joined.push_str(self.text(b.id)?);
            let &id = self.lookup.get(joined.as_str())?;
            Some((Score(*self.scores.get(id as usize)?), id))
        });
        out.extend(syms.iter().map(|s| s.id));
        Ok(())
    }

    /// The stored text of piece `id`.
    fn text(&self, id: u32) -> Option<&str> {
        self.texts
            .get(id)
            .and_then(|t| core::str::from_utf8(t).ok())
    }
}
