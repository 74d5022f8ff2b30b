//! Cutting a long text into pieces that encode, one after the other, to the ids of the
//! whole text, so that a file can be tokenized in constant memory
//! (`llm-run perplexity` streams its file this way).
//!
//! A cut is made right after a lone line break between two non-blank characters
//! (`x\nY`). No pre-tokenizer joins such a line break with the character after it (the
//! line break ends a whitespace run, or a punctuation run's trailing line breaks, and no
//! letter or number run starts with one), and the line break is not part of a longer
//! whitespace run whose split depends on what follows. The algorithms that merge
//! across the whole text (SentencePiece, raw-UTF-8 BPE), and special tokens, could still
//! merge across it if a token spells a line break followed by a non-blank character:
//! [`Tokenizer::can_cut`] says when a vocabulary has one, and then texts are not cut.
//! After the first piece, the others are encoded by [`Tokenizer::encode_continuation`]:
//! no BOS, no SentencePiece space prefix.

use super::{Algo, Tokenizer, TokenizerError};
use alloc::vec::Vec;
use llm_format::token_type;

/// The character of `bytes` that starts at `at`, if one does (and is valid UTF-8).
fn char_at(bytes: &[u8], at: usize) -> Option<char> {
    let end = (at + 4).min(bytes.len());
    let s = bytes.get(at..end)?;
    let len = match s.first()? {
        b if *b < 0x80 => 1,
        b if *b >= 0xF0 => 4,
        b if *b >= 0xE0 => 3,
        _ => 2,
    };
    core::str::from_utf8(s.get(..len)?).ok()?.chars().next()
}

/// The character of `bytes` that ends just before `end`, if one does.
fn char_before(bytes: &[u8], end: usize) -> Option<char> {
    (1..=4.min(end)).find_map(|len| {
        let s = &bytes[end - len..end];
        core::str::from_utf8(s).ok().and_then(|s| s.chars().next())
    })
}

impl Tokenizer {
    /// Whether texts may be cut for this vocabulary ([`Tokenizer::last_safe_cut`]):
    /// false when a token that could straddle a cut spells a line break followed by a
    /// non-blank character (any token for SentencePiece and raw-UTF-8 BPE, which merge
    /// across line breaks; only special and user-defined tokens for GPT-2, whose
    /// pre-tokenizer already splits there; none for char vocabularies).
    pub fn can_cut(&self) -> bool {
        let whole_text = matches!(self.algo, Algo::SentencePiece(_) | Algo::RawBpe(_));
        (0..self.vocab_size() as u32).all(|id| {
            let ty = self.types.get(id as usize).copied();
            let special = !matches!(ty, Some(token_type::NORMAL | token_type::BYTE));
            if !(whole_text || special) {
                return true;
            }
            let b = self.pieces.get(id).unwrap_or_default();
            !b.iter()
                .enumerate()
                .any(|(i, &c)| c == b'\n' && char_at(b, i + 1).is_some_and(|c| !c.is_whitespace()))
        })
    }

    /// The byte offset of the last safe cut in `bytes` (just after a `\n` whose
    /// neighbours are non-blank characters), or `None`. `bytes` may end inside a
    /// character: the character after a cut must be whole.
    pub fn last_safe_cut(&self, bytes: &[u8]) -> Option<usize> {
        let mut end = bytes.len();
        while let Some(i) = bytes[..end].iter().rposition(|&b| b == b'\n') {
            let blank = |c: Option<char>| c.is_none_or(char::is_whitespace);
            if !blank(char_before(bytes, i)) && !blank(char_at(bytes, i + 1)) {
                return Some(i + 1);
            }
            end = i;
        }
        None
    }

    /// Token ids of `text` that continues, after a safe cut
    /// ([`Tokenizer::last_safe_cut`]), a text whose first piece went through
    /// [`Tokenizer::encode`]: the same as that text's ids, without BOS and without
    /// SentencePiece's space prefix at the start.
    pub fn encode_continuation(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode_parts(text, false, false, false, false)
    }
}

/// Why [`StreamEncoder::next_ids`] stopped.
#[cfg(feature = "std")]
#[derive(Debug)]
pub enum StreamError {
    /// Reading failed.
    Io(std::io::Error),
    /// The text is not UTF-8: the offset of the first invalid byte.
    NotUtf8(u64),
    /// `held` bytes from offset `at` have no safe cut, and that is the most held at once.
    NoCut {
        /// Bytes held.
        held: usize,
        /// Offset of the first of them.
        at: u64,
    },
    /// Encoding failed.
    Tokenizer(TokenizerError),
}

#[cfg(feature = "std")]
impl core::fmt::Display for StreamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StreamError::Io(e) => write!(f, "{e}"),
            StreamError::NotUtf8(at) => write!(f, "not UTF-8 text (invalid byte at offset {at})"),
            StreamError::NoCut { held, at } => write!(
                f,
                "no place to cut the text in {held} bytes from offset {at} (a line break \
                 between two non-blank characters), the most held at once"
            ),
            StreamError::Tokenizer(e) => write!(f, "{e}"),
        }
    }
}

/// Encodes a text read from `R` piece by piece, in memory bounded by `max_held`
/// bytes of text: the ids, concatenated, are those of [`Tokenizer::encode`] (no BOS)
/// on the whole text. Reads `chunk` bytes at a time and hands out the text up to the
/// last safe cut; a vocabulary that cannot be cut ([`Tokenizer::can_cut`]) is read
/// whole, up to `max_held` bytes.
#[cfg(feature = "std")]
pub struct StreamEncoder<'t, R> {
    tok: &'t Tokenizer,
    reader: R,
    cut: bool,
    buf: Vec<u8>,
    /// Bytes handed out so far.
    done: u64,
    /// Bytes read so far.
    read: u64,
    chunk: usize,
    max_held: usize,
    eof: bool,
}

#[cfg(feature = "std")]
impl<'t, R: std::io::Read> StreamEncoder<'t, R> {
    /// A stream over `reader`, reading `chunk` bytes at a time and holding at most
    /// `max_held` bytes of text without a cut.
    pub fn new(tok: &'t Tokenizer, reader: R, chunk: usize, max_held: usize) -> Self {
        StreamEncoder {
            tok,
            reader,
            cut: tok.can_cut(),
            buf: Vec::new(),
            done: 0,
            read: 0,
            chunk: chunk.max(1),
            max_held: max_held.max(1),
            eof: false,
        }
    }

    /// Bytes read from the reader so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The ids of the next piece (`None` at the end of the text).
    pub fn next_ids(&mut self) -> Result<Option<Vec<u32>>, StreamError> {
        loop {
            let cut = if self.eof {
                (!self.buf.is_empty()).then_some(self.buf.len())
            } else if self.cut {
                self.tok.last_safe_cut(&self.buf)
            } else {
                None
            };
            if let Some(at) = cut {
                let rest = self.buf.split_off(at);
                let piece = core::mem::replace(&mut self.buf, rest);
                let start = self.done;
                self.done += piece.len() as u64;
                let text = core::str::from_utf8(&piece)
                    .map_err(|e| StreamError::NotUtf8(start + e.valid_up_to() as u64))?;
                let ids = if start == 0 {
                    self.tok.encode(text, false)
                } else {
                    self.tok.encode_continuation(text)
                };
                return ids.map(Some).map_err(StreamError::Tokenizer);
            }
            if self.eof {
                return Ok(None);
            }
            if self.buf.len() >= self.max_held {
                return Err(StreamError::NoCut {
                    held: self.buf.len(),
                    at: self.done,
                });
            }
            let want = self.chunk.min(self.max_held - self.buf.len());
            let old = self.buf.len();
            self.buf.resize(old + want, 0);
            let n = loop {
                match self.reader.read(&mut self.buf[old..]) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => break r,
                }
            };
            let n = n.map_err(|e| {
                self.buf.truncate(old);
                StreamError::Io(e)
            })?;
            self.buf.truncate(old + n);
            self.read += n as u64;
            self.eof = n == 0;
        }
    }
}
