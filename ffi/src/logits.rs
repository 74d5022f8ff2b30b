//! Logits for every position of a batch, for scoring text (perplexity, ranking
//! answers) in one call: `llmrt_eval_all` evaluates and keeps them,
//! `llmrt_get_logits_ith` reads row `i` (of an `llmrt_batch` too: its entry `i`).

use crate::args::{copy_out, eval_tokens, put_opt};
use crate::context::{cancelled, llmrt_context, need_logits, with_ctx};
use crate::device::EngineExt;
use crate::status::{
    guard, llmrt_status, Fail, Res, LLMRT_ERR_INVALID_ARG, LLMRT_ERR_NO_LOGITS, LLMRT_ERR_NO_MEMORY,
};
use rt::generate::Decoder;
use rt::tokenizer::StreamDecoder;

/// The rows of the last `llmrt_eval` or `llmrt_eval_all`.
#[derive(Default)]
pub(crate) struct Batch {
    /// Tokens it evaluated (0: none, or something changed the cache since).
    n: usize,
    /// Tokens in the cache right after it.
    end: usize,
    /// `[n, vocab]` logits when it was `llmrt_eval_all`; empty after `llmrt_eval`.
    all: Vec<f32>,
    /// Whether it was an `llmrt_batch`, whose rows the runtime context keeps
    /// (`Context::batch_logits`).
    multi: bool,
}

impl Batch {
    /// Forgets the batch (anything that changes the cache other than an evaluation
    /// that records one).
    pub fn clear(&mut self) {
        self.n = 0;
        self.all.clear();
        self.multi = false;
    }

    /// An `llmrt_batch` of `n` entries.
    pub fn several(&mut self, n: usize) {
        self.clear();
        self.n = n;
        self.multi = true;
    }

    /// An `llmrt_eval` of `n` tokens that left `end` in the cache: only the last row kept.
    pub fn last_only(&mut self, n: usize, end: usize) {
        self.clear();
        self.n = n;
        self.end = end;
    }
}

/// As `llmrt_eval`, and keeps the logits of every one of the `n` tokens for
/// `llmrt_get_logits_ith` (`n × vocab_size` floats, until the next call that
/// evaluates, resets or truncates). `LLMRT_ERR_NO_MEMORY` when they do not fit in
/// memory (nothing evaluated then); `LLMRT_ERR_CANCELLED` as `llmrt_eval`.
///
/// # Safety
/// `tokens` must be NULL or hold `n` readable ids.
#[no_mangle]
pub unsafe extern "C" fn llmrt_eval_all(
    ctx: *mut llmrt_context,
    tokens: *const u32,
    n: usize,
) -> llmrt_status {
    guard(|| {
        with_ctx(ctx, |h, st| {
            // SAFETY: `n` readable ids by contract.
            let toks = unsafe { eval_tokens(tokens, n) }?;
            let vocab = st.ctx.model().opts.vocab_size;
            let floats = toks.len().checked_mul(vocab).ok_or_else(|| {
                Fail::new(LLMRT_ERR_NO_MEMORY, "the logits of every token overflow")
            })?;
            let mut all = std::mem::take(&mut st.batch.all);
            all.clear();
            all.try_reserve_exact(floats).map_err(|_| {
                Fail::new(
                    LLMRT_ERR_NO_MEMORY,
                    format!(
                        "not enough memory for the logits of {} tokens ({} bytes)",
                        toks.len(),
                        floats as u64 * 4
                    ),
                )
            })?;
            let before = st.ctx.tokens().len();
            let run = h.run.begin();
            let done = st.ctx.eval_all_until(toks, &mut all, &|| run.cancelled())?;
            st.batch.clear();
            st.decoder = StreamDecoder::new();
            if !done {
                st.has_logits |= st.ctx.tokens().len() > before;
                return Err(cancelled());
            }
            st.has_logits = true;
            st.batch = Batch {
                n: toks.len(),
                end: st.ctx.tokens().len(),
                all,
                multi: false,
            };
            Ok(())
        })
    })
}

/// Which row of the last batch `i` names: `0..n`, or `-n..-1` counting from the end.
fn row(i: i64, n: usize) -> Res<usize> {
    let n_i = i64::try_from(n).unwrap_or(i64::MAX);
    let r = if i < 0 { n_i + i } else { i };
    if r < 0 || r >= n_i {
        return Err(Fail::new(
            LLMRT_ERR_INVALID_ARG,
            format!("position {i} is outside the last batch of {n} tokens"),
        ));
    }
    Ok(r as usize)
}

/// Copies the logits of position `i` of the last evaluated batch (`vocab_size` floats)
/// into `logits[..cap]`; `*n` receives `vocab_size`. `i` counts from 0 (the batch's
/// first token) or, when negative, from the end (-1: the last token, what
/// `llmrt_get_logits` gives; that one is always there after an evaluation). Every
/// position is there after `llmrt_eval_all`; after `llmrt_eval`, only the last
/// (others: `LLMRT_ERR_NO_LOGITS`). `i` outside the batch is `LLMRT_ERR_INVALID_ARG`;
/// no batch (nothing evaluated since creation, reset, truncation, `llmrt_accept`,
/// generation or embedding) is `LLMRT_ERR_NO_LOGITS`. After `llmrt_batch`, `i` is
/// an entry of that batch, whose logits are there when it asked for them (others:
/// `LLMRT_ERR_NO_LOGITS`), until the next evaluation, reset or truncation.
///
/// # Safety
/// `logits` must be NULL or writable for `cap` floats; `n` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_get_logits_ith(
    ctx: *const llmrt_context,
    i: i64,
    logits: *mut f32,
    cap: usize,
    n: *mut usize,
) -> llmrt_status {
    guard(|| {
        // SAFETY: NULL or writable by contract.
        unsafe { put_opt(n, 0) };
        with_ctx(ctx, |_, st| {
            let b = &st.batch;
            if b.multi {
                let r = row(i, b.n)?;
                let src = st
                    .ctx
                    .cpu_only("llmrt_batch")?
                    .batch_logits(r)
                    .ok_or_else(|| {
                        Fail::new(
                            LLMRT_ERR_NO_LOGITS,
                            format!("entry {i} of the last llmrt_batch did not ask for logits"),
                        )
                    })?;
                // SAFETY: forwarded contract.
                return unsafe { copy_out(src, 0, logits, cap, n, "logits") };
            }
            need_logits(st)?;
            if i == -1 {
                // SAFETY: forwarded contract.
                return unsafe { copy_out(st.ctx.logits(), 0, logits, cap, n, "logits") };
            }
            if b.n == 0 || b.end != st.ctx.tokens().len() {
                return Err(Fail::new(
                    LLMRT_ERR_NO_LOGITS,
                    "no batch to read from: only the last token's logits (i = -1) are \
                     kept after accept, generation, embedding, reset or truncation",
                ));
            }
            let r = row(i, b.n)?;
            if b.all.is_empty() {
                if r + 1 != b.n {
                    return Err(Fail::new(
                        LLMRT_ERR_NO_LOGITS,
                        format!(
                            "position {i}: llmrt_eval keeps the last token's logits only; \
                             evaluate with llmrt_eval_all to keep every one"
                        ),
                    ));
                }
                // SAFETY: forwarded contract.
                return unsafe { copy_out(st.ctx.logits(), 0, logits, cap, n, "logits") };
            }
            let vocab = st.ctx.model().opts.vocab_size;
            let src = &b.all[r * vocab..(r + 1) * vocab];
            // SAFETY: forwarded contract.
            unsafe { copy_out(src, 0, logits, cap, n, "logits") }
        })
    })
}
