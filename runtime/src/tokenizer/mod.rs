//! Tokenizers: text ↔ token ids for the vocabularies a `.llm` file carries.
//!
//! * [`TokenizerKind::Gpt2`]: byte-level BPE (`gpt2.rs`) after one of llama.cpp's
//!   pre-tokenizers (`pretokenize.rs`, the file's `tokenizer.pre`; GPT-2's by default,
//!   token for token the same as GPT-2 / tiktoken `r50k_base`);
//! * [`TokenizerKind::SentencePiece`]: score-merge BPE with `<0xXX>` byte fallback, as
//!   llama2.c, LLaMA 1-2 and llama.cpp's SPM (`sentencepiece.rs`), with or without the
//!   space prefix;
//! * [`TokenizerKind::Char`]: one token per char (`char_level.rs`);
//! * [`TokenizerKind::RawBpe`]: Gemma 4's BPE over raw UTF-8 (`raw_bpe.rs`);
//! * [`TokenizerKind::Wpm`]: BERT's WordPiece as llama.cpp's WPM (`wpm.rs`): BERT's
//!   normaliser and word splitting, then greedy longest-piece matching.
//!
//! A [`Tokenizer`] is built once from the file's [`TokenizerSpec`] and owns its tables
//! (hash maps built once, one flat id → bytes table for decoding). [`StreamDecoder`]
//! turns generated ids into text without ever splitting a character.
//!
//! Special tokens, as llama.cpp (`special.rs`): [`Tokenizer::encode_with`] first cuts
//! the text at user-defined tokens, and at control tokens (`<|im_start|>`, `<s>`) when
//! `parse_special`; only the text between them goes through the tokenizer. Token types
//! come from the file (`tokenizer.token_types`), or else BOS/EOS/PAD are control and
//! `unk` unknown.

mod char_level;
mod cut;
mod error;
mod gpt2;
mod merge;
mod pretokenize;
mod raw_bpe;
mod sentencepiece;
mod special;
mod stream;
mod wpm;

#[cfg(feature = "std")]
pub use cut::{StreamEncoder, StreamError};
pub use error::TokenizerError;
pub use gpt2::{byte_to_char, char_to_byte, gpt2_pieces, Gpt2Pieces};
pub use pretokenize::{pre_tokenizer, pre_tokenizer_names, PreSpec, GPT2_NAME, UNSUPPORTED};
pub use sentencepiece::SPACE_MARK;
pub use stream::StreamDecoder;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use llm_format::{token_type, TokenizerKind, TokenizerSpec};
use pretokenize::PreTokenizer;
use special::{Fragment, Specials};

/// How [`Tokenizer::encode_with`] treats special tokens (llama.cpp's `add_special` and
/// `parse_special`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Add BOS/EOS as the file's `add_bos` / `add_eos` say.
    pub add_special: bool,
    /// Turn special tokens written in the text into their ids.
    pub parse_special: bool,
}

/// A vocabulary with its encoder and decoder tables.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    kind: TokenizerKind,
    /// Id → the bytes the token decodes to.
    pieces: Pieces,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    /// Id → token type ([`token_type`]).
    types: Vec<u8>,
    specials: Specials,
    /// The pre-tokenizer's name (gpt2 kind).
    pre: Option<String>,
    algo: Algo,
}

/// The per-kind encoder tables.
#[derive(Clone, Debug)]
enum Algo {
    Gpt2(gpt2::Bpe),
    SentencePiece(sentencepiece::SentencePiece),
    Char(char_level::CharLevel),
    RawBpe(raw_bpe::RawBpe),
    Wpm(wpm::Wpm),
}

impl Tokenizer {
    /// Builds the tokenizer and its tables. Checks the special ids against the vocabulary,
    /// the scores (SentencePiece) and the merge rules (GPT-2).
    pub fn from_spec(spec: &TokenizerSpec<'_>) -> Result<Tokenizer, TokenizerError> {
        let n = spec.tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        if n > u32::MAX as usize {
            return Err(TokenizerError::TooManyTokens(n));
        }
        for (what, id) in [
            ("bos", spec.bos),
            ("eos", spec.eos),
            ("unk", spec.unk),
            ("pad", spec.pad),
        ] {
            if let Some(id) = id.filter(|&id| id as usize >= n) {
                return Err(TokenizerError::IdOutOfRange { what, id, vocab: n });
            }
        }
        let types = token_types(spec)?;
        let ty = |id: u32| {
            types
                .get(id as usize)
                .copied()
                .unwrap_or(token_type::NORMAL)
        };
        let is_control = |id: u32| {
            [spec.bos, spec.eos, spec.pad].contains(&Some(id)) || ty(id) == token_type::CONTROL
        };
        let mut pre = None;
        let (pieces, algo) = match spec.kind {
            TokenizerKind::Gpt2 => {
                let is_special = |id: u32| {
                    is_control(id)
                        || spec.unk == Some(id)
                        || matches!(ty(id), token_type::USER_DEFINED | token_type::UNKNOWN)
                };
                let (pre_tok, ignore_merges) = match spec.pre.as_deref() {
                    None => (PreTokenizer::gpt2(), false),
                    Some(name) => {
                        let p = pre_tokenizer(name).ok_or_else(|| unknown_pre(name))?;
                        (PreTokenizer::new(name, p)?, p.ignore_merges)
                    }
                };
                pre = Some(spec.pre.as_deref().unwrap_or(GPT2_NAME).to_string());
                let (p, bpe) = gpt2::build(
                    &spec.tokens,
                    &spec.merges,
                    is_special,
                    pre_tok,
                    ignore_merges,
                )?;
                (p, Algo::Gpt2(bpe))
            }
            TokenizerKind::SentencePiece => {
                let (p, sp) = sentencepiece::build(
                    &spec.tokens,
                    &spec.scores,
                    spec.unk,
                    is_control,
                    spec.add_space_prefix,
                )?;
                (p, Algo::SentencePiece(sp))
            }
            TokenizerKind::Char => {
                let (p, c) = char_level::build(&spec.tokens, spec.unk, is_control);
                (p, Algo::Char(c))
            }
            TokenizerKind::RawBpe => {
                let (p, r) = raw_bpe::build(&spec.tokens, &spec.merges, is_control)?;
                (p, Algo::RawBpe(r))
            }
            TokenizerKind::Wpm => {
                let (p, w) = wpm::build(
                    &spec.tokens,
                    spec.unk,
                    is_control,
                    spec.lowercase,
                    spec.strip_accents,
                );
                (p, Algo::Wpm(w))
            }
        };
        Ok(Tokenizer {
            kind: spec.kind,
            pieces,
            bos: spec.bos,
            eos: spec.eos,
            unk: spec.unk,
            pad: spec.pad,
            add_bos: spec.add_bos,
            add_eos: spec.add_eos,
            specials: Specials::new(&spec.tokens, &types),
            types,
            pre,
            algo,
        })
    }

    /// Token ids of `text` under `opts`: llama.cpp's `tokenize(text, add_special,
    /// parse_special)`. With `add_special`, BOS (and EOS) are added as the file says;
    /// with `parse_special`, special tokens written in the text (`<|im_start|>`) become
    /// their ids instead of being spelled out as ordinary characters.
    pub fn encode_with(&self, text: &str, opts: EncodeOptions) -> Result<Vec<u32>, TokenizerError> {
        let add_eos = opts.add_special && self.add_eos;
        self.encode_parts(
            text,
            opts.add_special && self.add_bos,
            add_eos,
            opts.parse_special,
            true,
        )
    }

    /// BOS (when `add_bos`), the fragments of `text` (user-defined tokens, and control
    /// tokens when `parse_special`, cut out first), EOS (when `add_eos`). `at_start`:
    /// `text` starts the text (SentencePiece then prefixes a space), rather than
    /// continuing one after a cut (`cut.rs`).
    fn encode_parts(
        &self,
        text: &str,
        add_bos: bool,
        add_eos: bool,
        parse_special: bool,
        at_start: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if let Some(bos) = self.bos.filter(|_| add_bos) {
            out.push(bos);
        }
        // llama.cpp's SPM prefixes a space to a text that starts the prompt or follows a
        // special token.
        let mut after_special = at_start;
        for frag in self.specials.partition(text, parse_special) {
            match frag {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text(t) => {
                    match &self.algo {
                        Algo::Gpt2(bpe) => bpe.encode(t, &mut out)?,
                        Algo::SentencePiece(sp) => sp.encode(t, after_special, &mut out)?,
                        Algo::Char(c) => c.encode(t, &mut out)?,
                        Algo::RawBpe(r) => r.encode(t, &mut out)?,
                        Algo::Wpm(w) => w.encode(t, &mut out)?,
                    }
                    after_special = false;
                }
            }
        }
        if let Some(eos) = self.eos.filter(|_| add_eos) {
            out.push(eos);
        }
        Ok(out)
    }

    /// The id whose piece is exactly `piece` (as stored in the vocabulary, e.g.
    /// `<|im_end|>`), if any.
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        (0..self.vocab_size() as u32).find(|&id| self.pieces.get(id) == Some(piece.as_bytes()))
    }

    /// Token ids of `text`, with BOS first when `add_bos` and the vocabulary has one.
    /// Control tokens written in the text are spelled out (user-defined tokens are still
    /// recognised, as in llama.cpp with `parse_special` off); no EOS.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, TokenizerError> {
        self.encode_parts(text, add_bos, false, false, true)
    }

    /// The raw bytes token `id` decodes to (GPT-2: the piece's bytes; SentencePiece: `▁`
    /// as a space, `<0xXX>` as the byte; empty for BOS/EOS/PAD of SentencePiece and
    /// char vocabularies). `None` for an id outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.pieces.get(id)
    }

    /// The bytes of `ids`, concatenated (may end inside a character).
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        let mut prev = None;
        for &id in ids {
            out.extend_from_slice(self.piece_after(prev, id)?);
            prev = Some(id);
        }
        Ok(out)
    }

    /// The text of `ids`. Lossless when the bytes are valid UTF-8 (so for GPT-2,
    /// `decode(encode(s)) == s`); invalid sequences become U+FFFD. SentencePiece drops
    /// the leading space of the piece right after BOS, as llama2.c does.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let bytes = self.decode_bytes(ids)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// The bytes of `id` in context: after BOS, a SentencePiece piece loses its leading
    /// space (the dummy prefix), except a `<0x20>` byte token.
    pub(crate) fn piece_after(&self, prev: Option<u32>, id: u32) -> Result<&[u8], TokenizerError> {
        let bytes = self.pieces.get(id).ok_or(TokenizerError::UnknownToken {
            id,
            vocab: self.vocab_size(),
        })?;
        if let Algo::SentencePiece(sp) = &self.algo {
            if prev.is_some() && prev == self.bos && !sp.is_byte(id) {
                if let Some(rest) = bytes.strip_prefix(b" ") {
                    return Ok(rest);
                }
            }
        }
        Ok(bytes)
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// Beginning-of-sequence id.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence id.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Unknown-token id.
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }

    /// Padding id.
    pub fn pad(&self) -> Option<u32> {
        self.pad
    }

    /// Whether the file asks for BOS before a prompt.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether the file asks for EOS after a prompt.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// The pre-tokenizer's name (llama.cpp's `tokenizer.ggml.pre`); `None` for
    /// SentencePiece and char vocabularies.
    pub fn pre_tokenizer(&self) -> Option<&str> {
        self.pre.as_deref()
    }

    /// The type of token `id` ([`token_type`]), `None` outside the vocabulary.
    pub fn token_type(&self, id: u32) -> Option<u8> {
        self.types.get(id as usize).copied()
    }

    /// The algorithm.
    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }
}

/// The file's token types, or, without them, BOS/EOS/PAD control, `unk` unknown,
/// SentencePiece `<0xXX>` byte, the rest normal.
fn token_types(spec: &TokenizerSpec<'_>) -> Result<Vec<u8>, TokenizerError> {
    let n = spec.tokens.len();
    if !spec.token_types.is_empty() {
        if spec.token_types.len() != n {
            return Err(TokenizerError::TypesMismatch {
                tokens: n,
                types: spec.token_types.len(),
            });
        }
        return Ok(spec.token_types.clone());
    }
    let mut types: Vec<u8> = spec
        .tokens
        .iter()
        .map(|t| {
            let byte = sentencepiece::byte_piece(t.as_ref()).is_some();
            if matches!(
                spec.kind,
                TokenizerKind::SentencePiece | TokenizerKind::RawBpe
            ) && byte
            {
                token_type::BYTE
            } else {
                token_type::NORMAL
            }
        })
        .collect();
    for id in [spec.bos, spec.eos, spec.pad].into_iter().flatten() {
        types[id as usize] = token_type::CONTROL;
    }
    if let Some(id) = spec.unk {
        types[id as usize] = token_type::UNKNOWN;
    }
    Ok(types)
}

/// Whether `piece` is a SentencePiece byte-fallback piece `<0xXX>`.
pub fn is_byte_piece(piece: &str) -> bool {
    sentencepiece::byte_piece(piece).is_some()
}

/// The error for a pre-tokenizer name this runtime does not have.
fn unknown_pre(name: &str) -> TokenizerError {
    let reason = match UNSUPPORTED.iter().find(|(n, _)| *n == name) {
        Some((_, why)) => alloc::format!("llama.cpp's '{name}' uses {why}, not supported here"),
        None => "not a pre-tokenizer llama.cpp knows".to_string(),
    };
    TokenizerError::PreTokenizer {
        name: name.to_string(),
        reason,
    }
}

/// Id → byte string, stored flat: piece `i` is `data[ends[i - 1]..ends[i]]`.
#[derive(Clone, Debug, Default)]
struct Pieces {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Pieces {
    fn with_capacity(n: usize) -> Self {
        Pieces {
            data: Vec::with_capacity(n * 6),
            ends: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        self.ends.push(self.data.len());
    }

    fn get(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let end = *self.ends.get(i)?;
        let start = match i.checked_sub(1) {
            Some(j) => *self.ends.get(j)?,
            None => 0,
        };
        self.data.get(start..end)
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

#[cfg(test)]
mod tests;
