//! Streaming detokenisation: hand out text as soon as it is complete UTF-8.
//!
//! One token may end in the middle of a character (GPT-2 byte tokens, SentencePiece
//! `<0xXX>` fallback), so the decoder keeps the incomplete tail (at most 3 bytes) until
//! the next token completes it. Invalid bytes become U+FFFD exactly as
//! `String::from_utf8_lossy` would, so the concatenated stream equals
//! [`Tokenizer::decode`] of the same ids.

use super::error::TokenizerError;
use super::Tokenizer;
use alloc::string::String;
use alloc::vec::Vec;

/// Turns a stream of token ids into text pieces that never split a character.
/// Its buffers are reused: after the first few tokens, `push` does not allocate.
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    /// Bytes of an incomplete trailing character.
    pending: Vec<u8>,
    /// The text handed out by the last call.
    text: String,
    /// The previous id (SentencePiece strips a space after BOS).
    prev: Option<u32>,
}

impl StreamDecoder {
    /// An empty decoder at the start of a sequence.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder for tokens that follow `prev` (the last prompt token): after BOS, a
    /// SentencePiece piece loses its leading space as it would in [`Tokenizer::decode`].
    pub fn starting_after(prev: Option<u32>) -> Self {
        StreamDecoder {
            prev,
            ..Self::default()
        }
    }

    /// Adds one token; returns the text it completes, or `None` when it completes none
    /// (a control token, or bytes of a character still incomplete).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<Option<&str>, TokenizerError> {
        let bytes = tok.piece_after(self.prev, id)?;
        self.prev = Some(id);
        self.pending.extend_from_slice(bytes);
        self.text.clear();
        drain_utf8(&mut self.pending, &mut self.text, false);
        Ok((!self.text.is_empty()).then_some(self.text.as_str()))
    }

    /// Ends the sequence: hands out what is still held back (an incomplete character
    /// becomes U+FFFD) and resets the decoder for a new sequence.
    pub fn finish(&mut self) -> Option<&str> {
        self.text.clear();
        drain_utf8(&mut self.pending, &mut self.text, true);
        self.prev = None;
        (!self.text.is_empty()).then_some(self.text.as_str())
    }

    /// Number of bytes held back, waiting for the rest of their character.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// Moves the complete UTF-8 prefix of `pending` into `out`, replacing invalid sequences
/// with U+FFFD; an incomplete sequence at the end stays in `pending` unless `flush`.
fn drain_utf8(pending: &mut Vec<u8>, out: &mut String, flush: bool) {
    let mut rest: &[u8] = pending;
    loop {
        match core::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                rest = &[];
                break;
            }
            Err(e) => {
                let (valid, tail) = rest.split_at(e.valid_up_to());
                // The prefix up to valid_up_to() is valid UTF-8 by definition.
                out.push_str(core::str::from_utf8(valid).unwrap_or_default());
                match e.error_len() {
                    Some(n) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        rest = tail.get(n..).unwrap_or_default();
                    }
                    None => {
                        if flush {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &[];
                        } else {
                            rest = tail;
                        }
                        break;
                    }
                }
            }
        }
    }
    let keep = rest.len();
    let start = pending.len() - keep;
    pending.drain(..start);
}
