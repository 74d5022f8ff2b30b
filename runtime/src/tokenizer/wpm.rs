//! WordPiece (BERT), as llama.cpp's WPM tokenizer (`llm_tokenizer_wpm` in
//! `llama-vocab.cpp`).
//!
//! The vocabulary is stored as llama.cpp's GGUF `bert` model stores it: a word-initial
//! piece carries a `▁` prefix (`▁hello`), a continuation piece is bare (Hugging Face's
//! `##llo` is `llo`), bracketed specials (`[CLS]`) are as they are.
//!
//! Encoding, char by char:
//! * with `strip_accents`, each char becomes the first char of its canonical
//!   decomposition (`é` → `e`, a Hangul syllable → its leading jamo: llama.cpp's
//!   one-char "NFD" table, not full NFD) and marks (`\p{M}`) are dropped;
//! * whitespace (Unicode White_Space) ends a word; NUL, U+FFFD and `\p{C}` other than
//!   unassigned chars are dropped;
//! * punctuation (`\p{P}`), ASCII symbols (`\p{S}` below U+007F) and CJK ideographs are
//!   words of their own;
//! * with `lowercase`, each char becomes the first char of its lowercase mapping.
//!
//! Each word, prefixed with `▁`, is then cut greedily from the left, the longest piece
//! in the vocabulary first; a word with any position that no piece matches is one `unk`.
//! The Unicode classes (categories, White_Space, decompositions, lowercase) come from
//! `unicode-general-category`, `core` and `unicode-normalization`, so they may differ
//! from llama.cpp's generated tables for chars that changed between Unicode versions.
//!
//! Decoding: `▁` is a space, control tokens are empty.

use super::error::TokenizerError;
use super::sentencepiece::SPACE_MARK;
use super::Pieces;
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use hashbrown::HashMap;
use unicode_general_category::{get_general_category, GeneralCategory as G};

/// The WordPiece tables, built once.
#[derive(Clone, Debug)]
pub(super) struct Wpm {
    /// Piece bytes → id, every token (as llama.cpp's `token_to_id`: a later duplicate
    /// wins).
    lookup: HashMap<Box<[u8]>, u32>,
    /// The longest piece, in bytes.
    max_len: usize,
    /// The id of a word that no pieces spell.
    unk: Option<u32>,
    lowercase: bool,
    strip_accents: bool,
}

/// Builds the decode table (id → text with `▁` as a space; empty for control tokens)
/// and the piece map.
pub(super) fn build(
    tokens: &[impl AsRef<str>],
    unk: Option<u32>,
    is_control: impl Fn(u32) -> bool,
    lowercase: bool,
    strip_accents: bool,
) -> (Pieces, Wpm) {
    let mut pieces = Pieces::with_capacity(tokens.len());
    let mut lookup: HashMap<Box<[u8]>, u32> = HashMap::with_capacity(tokens.len());
    let mut max_len = 0;
    let mut buf = String::new();
    for (id, tok) in tokens.iter().enumerate() {
        let id = id as u32;
        let text = tok.as_ref();
        lookup.insert(Box::from(text.as_bytes()), id);
        max_len = max_len.max(text.len());
        if is_control(id) {
            pieces.push(&[]);
            continue;
        }
        buf.clear();
        buf.extend(text.chars().map(|c| if c == SPACE_MARK { ' ' } else { c }));
        pieces.push(buf.as_bytes());
    }
    (
        pieces,
        Wpm {
            lookup,
            max_len,
            unk,
            lowercase,
            strip_accents,
        },
    )
}

/// llama.cpp's `is_chinese_char` (BERT's CJK ranges, with Hugging Face's 0x2B920 start).
fn is_chinese(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

/// The first char of `c`'s canonical decomposition (`c` itself when it has none).
fn nfd_first(c: char) -> char {
    let mut first = None;
    unicode_normalization::char::decompose_canonical(c, |d| {
        first.get_or_insert(d);
    });
    first.unwrap_or(c)
}

impl Wpm {
    /// Appends the ids of `text` to `out`.
    pub(super) fn encode(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        // The current word, `▁` first.
        let mut word = String::with_capacity(64);
        word.push(SPACE_MARK);
        let prefix = word.len();
        for c in text.chars() {
            let c = if self.strip_accents { nfd_first(c) } else { c };
            if c.is_whitespace() {
                self.word(&mut word, prefix, out)?;
                continue;
            }
            let cat = get_general_category(c);
            let control = matches!(cat, G::Control | G::Format | G::Surrogate | G::PrivateUse);
            if c == '\0' || c == '\u{FFFD}' || control {
                continue;
            }
            let mark = matches!(cat, G::NonspacingMark | G::SpacingMark | G::EnclosingMark);
            if self.strip_accents && mark {
                continue;
            }
            let punct = matches!(
                cat,
                G::ConnectorPunctuation
                    | G::DashPunctuation
                    | G::OpenPunctuation
                    | G::ClosePunctuation
                    | G::InitialPunctuation
                    | G::FinalPunctuation
                    | G::OtherPunctuation
            );
            let symbol = matches!(
                cat,
                G::MathSymbol | G::CurrencySymbol | G::ModifierSymbol | G::OtherSymbol
            );
            let alone = punct || (symbol && (c as u32) < 0x7F) || is_chinese(c);
            let c = match self.lowercase {
                true => c.to_lowercase().next().unwrap_or(c),
                false => c,
            };
            if alone {
                self.word(&mut word, prefix, out)?;
                word.push(c);
                self.word(&mut word, prefix, out)?;
            } else {
                word.push(c);
            }
        }
        self.word(&mut word, prefix, out)
    }

    /// Tokenizes the word in `word[prefix..]` (nothing when empty), with its `▁`, and
    /// clears it back to the `▁`.
    fn word(
        &self,
        word: &mut String,
        prefix: usize,
        out: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        if word.len() == prefix {
            return Ok(());
        }
        let w = word.as_bytes();
        let start = out.len();
        let mut i = 0;
        while i < w.len() {
            let longest = (i + 1..=w.len().min(i + self.max_len))
                .rev()
                .find_map(|j| self.lookup.get(&w[i..j]).map(|&id| (j, id)));
            match longest {
                Some((j, id)) => {
                    out.push(id);
                    i = j;
                }
                None => {
                    out.truncate(start);
                    break;
                }
            }
        }
        if out.len() == start {
            let unk = self
                .unk
                .ok_or_else(|| TokenizerError::UnknownWord(word[prefix..].to_string()))?;
            out.push(unk);
        }
        word.truncate(prefix);
        Ok(())
    }
}
