//! The generation loop: prompt → sampled tokens → streamed text, with EOS, stop
//! strings, a token budget and cancellation. When the context fills up, the older
//! half is dropped and the rest re-evaluated, so generation can run past `n_ctx`.
//!
//! With a grammar ([`GenerateParams::grammar`]) the tokens the grammar does not allow
//! next get `-inf` before the sampler chain, end tokens only where the grammar can
//! end; a state no token can continue is [`Error::Grammar`], never a hang.
//!
//! Text is handed out as soon as it is decoded, never half a UTF-8 character, and
//! never a piece that might turn out to begin a stop string.
//!
//! The loop runs over a [`Decoder`]: what it needs of a context (evaluate tokens after
//! those held, the tokens held, forget them). The CPU's [`Context`] is one; the GPU's
//! (`llmrt::cuda::GpuDecoder`, feature `cuda`) another, so both devices share the
//! sampler chain, stop strings, grammar and streaming, and the same seed and settings
//! pick the same tokens from the same logits.

use crate::context::Context;
use crate::error::Error;
use crate::grammar::{Grammar, GrammarMatcher, GrammarStepError, TokenTrie};
use crate::model::Model;
use crate::sampler::{Sampler, SamplerConfig};
use crate::tokenizer::StreamDecoder;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Generation stops before the first occurrence of any of these.
    pub stop: Vec<String>,
    /// Keep going past the end-of-sequence token.
    pub ignore_eos: bool,
    /// More tokens that end generation as EOS does, and are not emitted either (a chat
    /// template's end-of-turn token, e.g. `<|im_end|>`); `ignore_eos` does not apply.
    pub stop_tokens: Vec<u32>,
    /// The sampler chain.
    pub sampler: SamplerConfig,
    /// Constrains the output to this grammar's language (GBNF or a JSON Schema,
    /// [`crate::grammar`]). Default none.
    pub grammar: Option<Arc<Grammar>>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 128,
            stop: Vec::new(),
            ignore_eos: false,
            stop_tokens: Vec::new(),
            sampler: SamplerConfig::default(),
            grammar: None,
        }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `max_tokens` were generated.
    MaxTokens,
    /// The model produced its end-of-sequence token (or one of
    /// [`GenerateParams::stop_tokens`]).
    Eos,
    /// A stop string appeared.
    StopString,
    /// The context is full and too short to shift (fewer than 4 positions).
    ContextFull,
    /// The caller's callback asked to stop.
    Cancelled,
}

/// The result of [`generate`].
#[derive(Clone, Debug)]
pub struct Generation {
    /// Generated token ids (the EOS token excluded).
    pub tokens: Vec<u32>,
    /// Generated text, cut before a stop string.
    pub text: String,
    /// Why it ended.
    pub reason: StopReason,
}

/// Holds back text that could still become a stop string.
struct StopFilter<'a> {
    stops: &'a [String],
    text: String,
    emitted: usize,
}

impl<'a> StopFilter<'a> {
    /// Appends `piece`; returns (text safe to emit now, whether a stop string was hit).
    fn push(&mut self, piece: &str) -> (&str, bool) {
        let from = self.text.len();
        self.text.push_str(piece);
        let longest = self.stops.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut start = from.saturating_sub(longest);
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        let hit = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.text[start..].find(s.as_str()).map(|j| start + j))
            .min();
        let (end, stop) = match hit {
            Some(j) => {
                self.text.truncate(j);
                (j, true)
            }
            None => (self.text.len() - self.held_back(), false),
        };
        let emit_from = self.emitted.min(end);
        self.emitted = end.max(self.emitted);
        (&self.text[emit_from..end], stop)
    }

    /// Length of the longest suffix of the text that is a proper prefix of a stop string.
    fn held_back(&self) -> usize {
        let t = self.text.as_bytes();
        let mut keep = 0;
        for s in self.stops {
            let s = s.as_bytes();
            for k in (1..s.len().min(t.len() + 1)).rev() {
                if k > keep && t.ends_with(&s[..k]) {
                    keep = k;
                    break;
                }
            }
        }
        // Never split a character.
        let mut cut = t.len() - keep;
        while !self.text.is_char_boundary(cut) {
            cut -= 1;
        }
        t.len() - cut
    }

    /// The rest of the text, at the end of generation.
    fn flush(&mut self) -> &str {
        let from = self.emitted;
        self.emitted = self.text.len();
        &self.text[from..]
    }
}

/// One sequence's forward pass as generation drives it: tokens are appended to those
/// held and the last one's logits come back. Implemented by the CPU [`Context`]
/// (sequence 0) and, with feature `cuda`, by `llmrt::cuda::GpuDecoder`.
pub trait Decoder {
    /// The model.
    fn model(&self) -> &Arc<Model>;

    /// Most tokens the sequence holds.
    fn n_ctx(&self) -> usize;

    /// The tokens held, in order (the sampler's penalties look at them).
    fn tokens(&self) -> &[u32];

    /// Forgets every token held.
    fn reset(&mut self);

    /// Appends `tokens` and returns the logits of the last one (`[vocab]`). Errors as
    /// [`Context::eval`]'s: [`Error::EmptyPrompt`], [`Error::ContextFull`] and
    /// [`Error::BadToken`] before anything changes; [`Error::Device`] when a device
    /// fails.
    fn eval(&mut self, tokens: &[u32]) -> Result<&[f32], Error>;

    /// [`Decoder::eval`] that stops early with `Ok(None)` once `cancelled()` returns
    /// `true`; the tokens of the batches that finished stay. The default asks once,
    /// before evaluating; [`Context`] asks before every layer.
    fn eval_until(
        &mut self,
        tokens: &[u32],
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Option<&[f32]>, Error> {
        if cancelled() {
            return Ok(None);
        }
        self.eval(tokens).map(Some)
    }
}

/// The CPU context's sequence 0.
impl Decoder for Context {
    fn model(&self) -> &Arc<Model> {
        Context::model(self)
    }

    fn n_ctx(&self) -> usize {
        Context::n_ctx(self)
    }

    fn tokens(&self) -> &[u32] {
        Context::tokens(self)
    }

    fn reset(&mut self) {
        Context::reset(self);
    }

    fn eval(&mut self, tokens: &[u32]) -> Result<&[f32], Error> {
        Context::eval(self, tokens)
    }

    fn eval_until(
        &mut self,
        tokens: &[u32],
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Option<&[f32]>, Error> {
        Context::eval_until(self, tokens, cancelled)
    }
}

/// Evaluates `prompt` (after what `ctx` already holds) and samples up to
/// `params.max_tokens` tokens, calling `on_text` with each new piece of text;
/// `on_text` returns `false` to stop. `ctx` is any [`Decoder`]: a CPU [`Context`] or,
/// with feature `cuda`, a GPU one.
pub fn generate<D: Decoder + ?Sized>(
    ctx: &mut D,
    prompt: &[u32],
    params: &GenerateParams,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Generation, Error> {
    generate_until(ctx, prompt, params, &|| false, on_text)
}

/// [`generate`], which also ends with [`StopReason::Cancelled`] as soon as `cancelled()`
/// returns `true`; it is asked before each token is sampled and, while the prompt is
/// evaluated, as [`Decoder::eval_until`] asks (a [`Context`]: before every layer), so a
/// long prompt stops early too (e.g. an atomic flag that another thread sets).
pub fn generate_until<D: Decoder + ?Sized>(
    ctx: &mut D,
    prompt: &[u32],
    params: &GenerateParams,
    cancelled: &dyn Fn() -> bool,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Generation, Error> {
    let model = ctx.model().clone();
    let tok = &model.tokenizer;
    let eos = tok.eos();
    let mut sampler = Sampler::new(params.sampler.clone(), model.opts.vocab_size);
    let mut constraint = params.grammar.as_ref().map(|g| {
        let mut ends: Vec<u32> = params.stop_tokens.clone();
        if !params.ignore_eos {
            ends.extend(eos);
        }
        GrammarMatcher::new(g, Arc::new(TokenTrie::for_tokenizer(tok, &ends)))
    });
    let mut allowed: Vec<bool> = Vec::new();
    // Decoding starts after the prompt's last token (SentencePiece drops the space after BOS).
    let mut decoder = StreamDecoder::starting_after(prompt.last().copied());
    let mut filter = StopFilter {
        stops: &params.stop,
        text: String::new(),
        emitted: 0,
    };
    let mut logits: Vec<f32> = match ctx.eval_until(prompt, cancelled)? {
        Some(l) => l.to_vec(),
        None => {
            return Ok(Generation {
                tokens: Vec::new(),
                text: String::new(),
                reason: StopReason::Cancelled,
            })
        }
    };
    let mut out = Vec::new();
    let mut reason = StopReason::MaxTokens;
    while out.len() < params.max_tokens {
        if cancelled() {
            reason = StopReason::Cancelled;
            break;
        }
        if let Some(m) = &mut constraint {
            m.apply(&mut logits, &mut allowed)?;
        }
        let next = sampler.sample(&mut logits, ctx.tokens());
        if let Some(m) = &mut constraint {
            // The logit bias may ban every token the grammar allows.
            if !allowed.get(next as usize).copied().unwrap_or(false) {
                return Err(GrammarStepError::DeadEnd.into());
            }
            m.accept(next, tok.token_bytes(next))?;
        }
        if (Some(next) == eos && !params.ignore_eos) || params.stop_tokens.contains(&next) {
            reason = StopReason::Eos;
            break;
        }
        out.push(next);
        let piece = decoder.push(tok, next)?.unwrap_or("");
        let (emit, stopped) = filter.push(piece);
        if !emit.is_empty() && !on_text(emit) {
            reason = StopReason::Cancelled;
            break;
        }
        if stopped {
            reason = StopReason::StopString;
            break;
        }
        if out.len() == params.max_tokens {
            break;
        }
        if ctx.tokens().len() >= ctx.n_ctx() {
            // Context full: keep the most recent half (nanoGPT's crop) and recompute
            // its keys and values at their new positions, then go on.
            let keep = ctx.n_ctx() / 2;
            if keep < 2 {
                reason = StopReason::ContextFull;
                break;
            }
            let hist = ctx.tokens();
            let mut window = hist[hist.len() + 1 - keep..].to_vec();
            window.push(next);
            ctx.reset();
            logits.copy_from_slice(ctx.eval(&window)?);
        } else {
            logits.copy_from_slice(ctx.eval(&[next])?);
        }
    }
    if reason != StopReason::StopString && reason != StopReason::Cancelled {
        let rest = decoder.finish().unwrap_or("");
        let (emit, stopped) = filter.push(rest);
        let emit = alloc::string::ToString::to_string(emit);
        let tail = alloc::string::ToString::to_string(filter.flush());
        for piece in [emit, tail] {
            if !piece.is_empty() {
                on_text(&piece);
            }
        }
        if stopped {
            reason = StopReason::StopString;
        }
    }
    Ok(Generation {
        tokens: out,
        text: filter.text,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| (*s).into()).collect();
        let mut f = StopFilter {
            stops: &stops,
            text: String::new(),
            emitted: 0,
        };
        let mut out = String::new();
        for p in pieces {
            let (e, stop) = f.push(p);
            out.push_str(e);
            if stop {
                return (out, true);
            }
        }
        out.push_str(f.flush());
        (out, false)
    }

    #[test]
    fn stop_string_split_across_pieces() {
        assert_eq!(run(&["\n\n"], &["ab", "c\n", "\nd"]), ("abc".into(), true));
        assert_eq!(run(&["END"], &["xE", "N", "y"]), ("xENy".into(), false));
        assert_eq!(run(&["END"], &["xE", "N", "Dy"]), ("x".into(), true));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn held_back_text_is_not_emitted_early() {
        let stops: Vec<String> = ["stop".into()].into();
        let mut f = StopFilter {
            stops: &stops,
            text: String::new(),
            emitted: 0,
        };
        assert_eq!(f.push("hello st").0, "hello ");
        assert_eq!(f.push("ill").0, "still");
    }
}
