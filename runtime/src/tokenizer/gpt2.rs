//! GPT-2 byte-level BPE, as GPT-2's `encoder.py` and tiktoken's `r50k_base` do it.
//!
//! * Pre-tokenisation: GPT-2's regex
//!   `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
//!   hand-written as a scanner ([`Gpt2Pieces`]) because the runtime has no regex engine.
//!   `\s` is Unicode White_Space, `\p{L}` / `\p{N}` the Letter / Number general categories
//!   (what the `regex` crate that tiktoken uses means by them).
//! * Pieces are stored in GPT-2's bytes-to-unicode form ([`byte_to_char`]): every byte
//!   maps to a printable char, so a vocabulary of byte strings fits in UTF-8 metadata.
//! * Merges: with merge rules, repeatedly merge the adjacent pair of lowest rule index
//!   (Hugging Face); without, repeatedly merge the adjacent pair whose concatenation has
//!   the lowest token id (tiktoken's rank rule, including its shortcut that a piece which
//!   is itself a token is that token). Ties go to the leftmost pair.

use super::error::TokenizerError;
use super::merge::{merge, Sym};
use super::pretokenize::PreTokenizer;
use super::Pieces;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use hashbrown::HashMap;
use unicode_general_category::{get_general_category, GeneralCategory as G};

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes map to themselves, the other
/// 68 bytes (controls, space, 0x7F..=0xA0, 0xAD) to U+0100.. in byte order.
pub fn byte_to_char(b: u8) -> char {
    char::from_u32(BYTE_TO_CHAR[b as usize] as u32).unwrap_or('\u{FFFD}')
}

/// The inverse of [`byte_to_char`]; `None` for a char outside the 256-char alphabet.
pub fn char_to_byte(c: char) -> Option<u8> {
    match CHAR_TO_BYTE.get(c as usize) {
        Some(&b) if b >= 0 => Some(b as u8),
        _ => None,
    }
}

/// The bytes GPT-2 maps to themselves: `!..=~`, `¡..=¬`, `®..=ÿ`.
const fn is_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// Byte → code point (all below U+0144).
const BYTE_TO_CHAR: [u16; 256] = {
    let mut t = [0u16; 256];
    let (mut b, mut n) = (0usize, 0u16);
    while b < 256 {
        t[b] = if is_printable(b as u8) {
            b as u16
        } else {
            n += 1;
            255 + n
        };
        b += 1;
    }
    t
};

/// Code point (below 324 = 256 + 68) → byte, or -1.
const CHAR_TO_BYTE: [i16; 324] = {
    let mut t = [-1i16; 324];
    let mut b = 0usize;
    while b < 256 {
        t[BYTE_TO_CHAR[b] as usize] = b as i16;
        b += 1;
    }
    t
};

/// `\p{L}`: Lu, Ll, Lt, Lm, Lo.
fn is_letter(c: char) -> bool {
    matches!(
        get_general_category(c),
        G::UppercaseLetter
            | G::LowercaseLetter
            | G::TitlecaseLetter
            | G::ModifierLetter
            | G::OtherLetter
    )
}

/// `\p{N}`: Nd, Nl, No.
pub(super) fn is_number(c: char) -> bool {
    matches!(
        get_general_category(c),
        G::DecimalNumber | G::LetterNumber | G::OtherNumber
    )
}

/// `\s`: Unicode White_Space.
fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// `[^\s\p{L}\p{N}]`.
fn is_other(c: char) -> bool {
    !is_space(c) && !is_letter(c) && !is_number(c)
}

/// Iterator over GPT-2 pre-tokenisation pieces of a text; the pieces concatenate back to
/// the text.
#[derive(Clone, Debug)]
pub struct Gpt2Pieces<'a> {
    rest: &'a str,
}

/// Splits `text` into GPT-2 pre-tokenisation pieces.
pub fn gpt2_pieces(text: &str) -> Gpt2Pieces<'_> {
    Gpt2Pieces { rest: text }
}

impl<'a> Iterator for Gpt2Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let len = piece_len(self.rest)?;
        let (piece, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(piece)
    }
}

/// Byte length of the first regex match at the start of `s` (`None` when `s` is empty).
/// The alternatives are tried in the regex's order; the first that matches wins.
fn piece_len(s: &str) -> Option<usize> {
    let mut chars = s.chars();
    let c = chars.next()?;
    // 's 't 're 've 'm 'll 'd
    if c == '\'' {
        let tail = &s[1..];
        for suffix in ["s", "t", "m", "d"] {
            if tail.starts_with(suffix) {
                return Some(2);
            }
        }
        for suffix in ["ll", "ve", "re"] {
            if tail.starts_with(suffix) {
                return Some(3);
            }
        }
    }
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
    let (lead, head) = match (c, chars.next()) {
        (' ', Some(n)) if !is_space(n) => (1, n),
        _ => (0, c),
    };
    let class: Option<fn(char) -> bool> = if is_letter(head) {
        Some(is_letter)
    } else if is_number(head) {
        Some(is_number)
    } else if is_other(head) {
        Some(is_other)
    } else {
        None
    };
    if let Some(class) = class {
        return Some(lead + run_len(&s[lead..], class));
    }
    // `\s+(?!\S)|\s+`: a whitespace run. At the end of the text it is taken whole; before a
    // non-space the lookahead gives back its last char (which then leads the next piece),
    // unless the run is a single char.
    let run = run_len(s, is_space);
    if run == s.len() {
        return Some(run);
    }
    let last = s[..run].chars().next_back().map_or(0, char::len_utf8);
    Some(if run > last { run - last } else { run })
}

/// Byte length of the leading run of chars of one class.
fn run_len(s: &str, class: fn(char) -> bool) -> usize {
    s.char_indices()
        .find(|&(_, c)| !class(c))
        .map_or(s.len(), |(i, _)| i)
}

/// (left id, right id) → (merge rule index, merged id).
type PairMap = HashMap<(u32, u32), (u32, u32)>;

/// The BPE tables, built once.
#[derive(Clone, Debug)]
pub(super) struct Bpe {
    /// Piece bytes → id, for every token that text may produce (special tokens excluded).
    encoder: HashMap<Box<[u8]>, u32>,
    /// Single byte → its token.
    byte_ids: [Option<u32>; 256],
    /// With merge rules: (left id, right id) → (rule index, merged id).
    pairs: Option<PairMap>,
    /// How text is cut into words.
    pre: PreTokenizer,
    /// A word that is itself a token is that token (llama.cpp's `ignore_merges`).
    ignore_merges: bool,
}

/// Builds the decode table (id → raw bytes) and the BPE tables. `is_special(id)` marks
/// control and user-defined tokens, which decode to their text as written (not through
/// the byte alphabet) and are never produced by merging.
/// A piece with a char outside the bytes-to-unicode alphabet is an added token: it
/// decodes to its own UTF-8 text and is special too.
pub(super) fn build(
    tokens: &[impl AsRef<str>],
    merges: &[impl AsRef<str>],
    is_special: impl Fn(u32) -> bool,
    pre: PreTokenizer,
    ignore_merges: bool,
) -> Result<(Pieces, Bpe), TokenizerError> {
    let mut pieces = Pieces::with_capacity(tokens.len());
    let mut encoder: HashMap<Box<[u8]>, u32> = HashMap::with_capacity(tokens.len());
    let mut byte_ids = [None; 256];
    let mut buf = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        let id = id as u32;
        let text = tok.as_ref();
        buf.clear();
        let mut added = is_special(id);
        for c in text.chars() {
            match char_to_byte(c).filter(|_| !added) {
                Some(b) => buf.push(b),
                None => {
                    added = true;
                    break;
                }
            }
        }
        if added {
            pieces.push(text.as_bytes());
            continue;
        }
        pieces.push(&buf);
        if is_special(id) || buf.is_empty() {
            continue;
        }
        if let [b] = buf[..] {
            byte_ids[b as usize].get_or_insert(id);
        }
        encoder.entry(Box::from(&buf[..])).or_insert(id);
    }
    let pairs = if merges.is_empty() {
        None
    } else {
        Some(build_pairs(tokens, merges, &is_special)?)
    };
    Ok((
        pieces,
        Bpe {
            encoder,
            byte_ids,
            pairs,
            pre,
            ignore_merges,
        },
    ))
}

/// Parses merge rules "left right" into (left id, right id) → (rule index, merged id).
fn build_pairs(
    tokens: &[impl AsRef<str>],
    merges: &[impl AsRef<str>],
    is_special: &impl Fn(u32) -> bool,
) -> Result<PairMap, TokenizerError> {
    let mut by_text: HashMap<&str, u32> = HashMap::with_capacity(tokens.len());
    for (id, t) in tokens.iter().enumerate() {
        if !is_special(id as u32) {
            by_text.entry(t.as_ref()).or_insert(id as u32);
        }
    }
    let mut pairs = HashMap::with_capacity(merges.len());
    let mut joined = String::new();
    for (index, rule) in merges.iter().enumerate() {
        let rule = rule.as_ref();
        let bad = |reason: String| TokenizerError::BadMerge { index, reason };
        let (l, r) = rule
            .split_once(' ')
            .ok_or_else(|| bad(format!("'{rule}' is not 'left right'")))?;
        let id = |p: &str| {
            by_text
                .get(p)
                .copied()
                .ok_or_else(|| bad(format!("'{rule}': piece '{p}' is not in the vocabulary")))
        };
        joined.clear();
        joined.push_str(l);
        joined.push_str(r);
        let (li, ri, mi) = (id(l)?, id(r)?, id(&joined)?);
        pairs.entry((li, ri)).or_insert((index as u32, mi));
    }
    Ok(pairs)
}

impl Bpe {
    /// Appends the ids of `text` to `out`.
    pub(super) fn encode(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        let mut syms = Vec::new();
        for piece in self.pre.split(text)? {
            let bytes = piece.as_bytes();
            if self.pairs.is_none() || self.ignore_merges {
                if let Some(&id) = self.encoder.get(bytes) {
                    out.push(id);
                    continue;
                }
            }
            self.encode_piece(bytes, out, &mut syms)?;
        }
        Ok(())
    }

    /// BPE over one pre-tokenised piece: start from single bytes, merge the best adjacent
    /// pair until none merges.
    fn encode_piece(
        &self,
        piece: &[u8],
        out: &mut Vec<u32>,
        syms: &mut Vec<Sym>,
    ) -> Result<(), TokenizerError> {
        syms.clear();
        for (i, &b) in piece.iter().enumerate() {
            let id = self.byte_ids[b as usize].ok_or(TokenizerError::UnknownByte(b))?;
            syms.push(Sym {
                id,
                start: i,
                end: i + 1,
            });
        }
        match &self.pairs {
            // Rule index of (left, right).
            Some(pairs) => merge(syms, |a, b| pairs.get(&(a.id, b.id)).copied()),
            // Rank (= id) of the concatenated bytes.
            None => merge(syms, |a, b| {
                let joined = piece.get(a.start..b.end)?;
                self.encoder.get(joined).map(|&id| (id, id))
            }),
        }
        out.extend(syms.iter().map(|s| s.id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn bytes_to_unicode_is_gpt2s_table() {
        // Reference: GPT-2 encoder.py bytes_to_unicode, built the same way as Python does.
        let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
            .chain(0xA1..=0xAC)
            .chain(0xAE..=0xFF)
            .collect();
        let mut cs = bs.clone();
        let mut n = 0;
        for b in 0..256u32 {
            if !bs.contains(&b) {
                bs.push(b);
                cs.push(256 + n);
                n += 1;
            }
        }
        for (b, c) in bs.iter().zip(&cs) {
            let ch = char::from_u32(*c).unwrap();
            assert_eq!(byte_to_char(*b as u8), ch);
            assert_eq!(char_to_byte(ch), Some(*b as u8));
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(char_to_byte('\u{0144}'), None);
        assert_eq!(char_to_byte(' '), None);
    }

    #[test]
    fn pieces_follow_the_regex() {
        let split = |s| gpt2_pieces(s).collect::<Vec<_>>();
        assert_eq!(
            split("Hello world, it's 2024!!"),
            vec!["Hello", " world", ",", " it", "'s", " 2024", "!!"]
        );
        assert_eq!(split("a   b"), vec!["a", "  ", " b"]);
        assert_eq!(split("a \n\tb  "), vec!["a", " \n", "\t", "b", "  "]);
        assert_eq!(
            split("x'll 'LL ''s"),
            vec!["x", "'ll", " '", "LL", " ''", "s"]
        );
        assert_eq!(split("héllo мир 中文"), vec!["héllo", " мир", " 中文"]);
        assert_eq!(split(""), Vec::<&str>::new());
    }
}
