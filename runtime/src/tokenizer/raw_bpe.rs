//! BPE over raw UTF-8 with `▁` for spaces and `<0xXX>` byte fallback: Gemma 4's
//! tokenizer (GGUF `tokenizer.ggml.model` `gemma4`), as llama.cpp runs it. Spaces become
//! `▁` (no prefix is added), the text is cut into runs of newlines and runs of other
//! chars, a newline run that is a token is that token, every other run starts as one
//! symbol per char and merges by rule rank; a symbol that is no token falls back to its
//! bytes as `<0xXX>` tokens.

use super::error::TokenizerError;
use super::merge::{merge, Sym};
use super::sentencepiece::{byte_piece, SPACE_MARK};
use super::Pieces;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use hashbrown::HashMap;

/// The tables, built once.
#[derive(Clone, Debug)]
pub(super) struct RawBpe {
    /// Piece text → id (control tokens excluded).
    lookup: HashMap<Box<str>, u32>,
    /// (left id, right id) → (rule index, merged id).
    pairs: HashMap<(u32, u32), (u32, u32)>,
    /// Byte → its `<0xXX>` token.
    byte_ids: [Option<u32>; 256],
}

/// A symbol that is no token (a char outside the vocabulary): never merges.
const NO_TOKEN: u32 = u32::MAX;

/// Builds the decode table (`▁` as a space, `<0xXX>` as the byte, control tokens empty)
/// and the merge tables.
pub(super) fn build(
    tokens: &[impl AsRef<str>],
    merges: &[impl AsRef<str>],
    is_control: impl Fn(u32) -> bool,
) -> Result<(Pieces, RawBpe), TokenizerError> {
    let mut pieces = Pieces::with_capacity(tokens.len());
    let mut lookup: HashMap<Box<str>, u32> = HashMap::with_capacity(tokens.len());
    let mut byte_ids = [None; 256];
    let mut buf = String::new();
    for (id, tok) in tokens.iter().enumerate() {
        let id = id as u32;
        let text = tok.as_ref();
        if is_control(id) {
            pieces.push(&[]);
            continue;
        }
        lookup.insert(Box::from(text), id);
        if let Some(b) = byte_piece(text) {
            byte_ids[b as usize].get_or_insert(id);
            pieces.push(&[b]);
            continue;
        }
        buf.clear();
        buf.extend(text.chars().map(|c| if c == SPACE_MARK { ' ' } else { c }));
        pieces.push(buf.as_bytes());
    }
    let mut pairs = HashMap::with_capacity(merges.len());
    let mut joined = String::new();
    for (index, rule) in merges.iter().enumerate() {
        let rule = rule.as_ref();
        let bad = |reason: String| TokenizerError::BadMerge { index, reason };
        // The left piece is never empty: split at the first space after its first char.
        let first = rule.chars().next().map_or(0, char::len_utf8);
        let at = rule[first..]
            .find(' ')
            .map(|i| i + first)
            .ok_or_else(|| bad(format!("'{rule}' is not 'left right'")))?;
        let (l, r) = (&rule[..at], &rule[at + 1..]);
        joined.clear();
        joined.push_str(l);
        joined.push_str(r);
        let id = |p: &str| {
            lookup
                .get(p)
                .copied()
                .ok_or_else(|| bad(format!("'{rule}': piece '{p}' is not in the vocabulary")))
        };
        let (li, ri, mi) = (id(l)?, id(r)?, id(&joined)?);
        pairs.entry((li, ri)).or_insert((index as u32, mi));
    }
    Ok((
        pieces,
        RawBpe {
            lookup,
            pairs,
            byte_ids,
        },
    ))
}

impl RawBpe {
    /// Appends the ids of `text` to `out`.
    pub(super) fn encode(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        let escaped: String = text
            .chars()
            .map(|c| if c == ' ' { SPACE_MARK } else { c })
            .collect();
        let mut syms = Vec::new();
        let mut rest = escaped.as_str();
        while let Some(first) = rest.chars().next() {
            let newline = first == '\n';
            let len = rest
                .find(|c: char| (c == '\n') != newline)
                .unwrap_or(rest.len());
            let (word, tail) = rest.split_at(len);
            rest = tail;
            if newline {
                if let Some(&id) = self.lookup.get(word) {
                    out.push(id);
                    continue;
                }
            }
            self.encode_word(word, out, &mut syms)?;
        }
        Ok(())
    }

    /// One word: a symbol per char, merged by rule rank, byte fallback for non-tokens.
    fn encode_word(
        &self,
        word: &str,
        out: &mut Vec<u32>,
        syms: &mut Vec<Sym>,
    ) -> Result<(), TokenizerError> {
        syms.clear();
        let mut utf8 = [0u8; 4];
        for (i, c) in word.char_indices() {
            let id = self.lookup.get(&*c.encode_utf8(&mut utf8)).copied();
            syms.push(Sym {
                id: id.unwrap_or(NO_TOKEN),
                start: i,
                end: i + c.len_utf8(),
            });
        }
        merge(syms, |a, b| self.pairs.get(&(a.id, b.id)).copied());
        for s in syms.iter() {
            if s.id != NO_TOKEN {
                out.push(s.id);
                continue;
            }
            for &b in &word.as_bytes()[s.start..s.end] {
                out.push(self.byte_ids[b as usize].ok_or(TokenizerError::UnknownByte(b))?);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn merges_by_rank_with_byte_fallback_and_newline_runs() {
        let mut tokens = vec!["<bos>", "▁", "a", "b", "ab", "▁ab", "\n", "\n\n"];
        let bytes: Vec<String> = (0..=255u8).map(|b| format!("<0x{b:02X}>")).collect();
        let byte0 = tokens.len() as u32;
        tokens.extend(bytes.iter().map(String::as_str));
        let merges = ["a b", "▁ ab"];
        let (pieces, bpe) = build(&tokens, &merges, |id| id == 0).unwrap();
        let mut out = Vec::new();
        // " ab" → ▁ab; "é" has no token → its two bytes; "\n\n" is one token, "\n\n\n"
        // is not, so it is split into chars (no merge joins newlines here).
        bpe.encode(" abé\n\nb\n\n\n", &mut out).unwrap();
        assert_eq!(out, [5, byte0 + 0xC3, byte0 + 0xA9, 7, 3, 6, 6, 6]);
        assert_eq!(pieces.get(5), Some(&b" ab"[..]));
        assert_eq!(pieces.get(0), Some(&[][..]));
        assert!(build(&tokens, &["ab"], |_| false).is_err());
    }
}
