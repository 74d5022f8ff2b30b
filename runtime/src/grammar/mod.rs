//! Constrained sampling: the output follows a grammar.
//!
//! * [`parse`]: llama.cpp's GBNF format → a checked [`Grammar`] (errors with line and
//!   column; left recursion, rules that never end and empty languages refused before
//!   generation);
//! * [`machine`]: the grammar as a set of pushdown stacks advanced per code point, as
//!   llama.cpp runs it, with hash-consed stacks and cached transitions;
//! * [`mask`]: the vocabulary's tokens in a byte trie, and the [`GrammarMatcher`] that
//!   masks the logits (tokens that cannot come next get `-inf`; end tokens only where
//!   the grammar can end) and advances per accepted token;
//! * `json_schema` (std): JSON Schema → GBNF, so a schema runs on the same machine.
//!
//! [`generate`](crate::generate()) applies the mask before the sampler chain, so the
//! logit bias, penalties and truncation only ever see allowed tokens.

#[cfg(feature = "std")]
pub mod json_schema;
pub mod machine;
pub mod mask;
pub mod parse;

pub use mask::{GrammarMatcher, GrammarStepError, MatcherState, TokenTrie};
pub use parse::{Grammar, GrammarError};

use crate::tokenizer::Tokenizer;
use alloc::vec::Vec;

impl TokenTrie {
    /// The trie of a tokenizer's vocabulary: every token by the bytes it decodes to,
    /// except control tokens (BOS, EOS, chat markers), which never match text;
    /// `end_tokens` (EOS, end-of-turn) are allowed where the grammar can end.
    pub fn for_tokenizer(tok: &Tokenizer, end_tokens: &[u32]) -> TokenTrie {
        let control = llm_format::token_type::CONTROL;
        let bytes: Vec<Option<&[u8]>> = (0..tok.vocab_size() as u32)
            .map(|id| {
                if tok.token_type(id) == Some(control) {
                    None
                } else {
                    tok.token_bytes(id)
                }
            })
            .collect();
        TokenTrie::new(&bytes, end_tokens)
    }
}
