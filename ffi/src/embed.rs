//! Sentence embeddings: a text (or token ids) evaluated as a new sequence, its hidden
//! states after the final norm pooled into one `d_model` vector, optionally
//! L2-normalised, for semantic search and "find similar".

use crate::args::{put_opt, slice, text};
use crate::context::{cancelled, llmrt_context, with_ctx, CtxHandle, State};
use crate::device::EngineExt;
use crate::model::want_bos;
use crate::status::{
    guard, llmrt_status, Fail, Res, LLMRT_ERR_BUFFER_TOO_SMALL, LLMRT_ERR_INVALID_ARG,
    LLMRT_ERR_NULL,
};
use rt::embed::{embed_until, Pooling};
use rt::generate::Decoder;
use rt::tokenizer::StreamDecoder;
use std::ffi::c_char;

/// Pooling: the mean of every token's state (BOS included when there is one).
pub const LLMRT_POOLING_MEAN: i32 = 0;
/// Pooling: the last token's state (in a causal model, the one that saw the whole text).
pub const LLMRT_POOLING_LAST: i32 = 1;
/// Pooling: the first token's state (CLS pooling; in a causal model with a BOS the
/// same for every text).
pub const LLMRT_POOLING_FIRST: i32 = 2;

fn pooling(p: i32) -> Res<Pooling> {
    match p {
        LLMRT_POOLING_MEAN => Ok(Pooling::Mean),
        LLMRT_POOLING_LAST => Ok(Pooling::Last),
        LLMRT_POOLING_FIRST => Ok(Pooling::First),
        v => Err(Fail::new(
            LLMRT_ERR_INVALID_ARG,
            format!("pooling is {v}; use LLMRT_POOLING_MEAN (0), _LAST (1) or _FIRST (2)"),
        )),
    }
}

/// Embeds `ids` on a locked context into `out[..cap]`.
///
/// # Safety
/// `out` must be NULL or writable for `cap` floats; `n` NULL or writable.
#[allow(clippy::too_many_arguments)]
unsafe fn run(
    h: &CtxHandle,
    st: &mut State,
    ids: &[u32],
    pooling: Pooling,
    normalize: bool,
    out: *mut f32,
    cap: usize,
    n: *mut usize,
) -> Res<()> {
    let d = st.ctx.model().opts.d_model;
    st.ctx
        .cpu_only("embedding (llmrt_embed, llmrt_embed_tokens)")?;
    if n.is_null() {
        return Err(crate::status::null("n"));
    }
    // SAFETY: non-NULL and writable by contract.
    unsafe { n.write(d) };
    if cap < d {
        return Err(Fail::new(
            LLMRT_ERR_BUFFER_TOO_SMALL,
            format!("embedding: the buffer holds {cap} floats but {d} are needed"),
        ));
    }
    if out.is_null() {
        return Err(Fail::new(LLMRT_ERR_NULL, "out is NULL"));
    }
    if ids.is_empty() {
        return Err(Fail::new(
            LLMRT_ERR_INVALID_ARG,
            "nothing to embed: the text gives no tokens",
        ));
    }
    let mut hidden = Vec::new();
    hidden
        .try_reserve_exact(ids.len().saturating_mul(d))
        .map_err(|_| {
            Fail::new(
                crate::status::LLMRT_ERR_NO_MEMORY,
                "not enough memory for the hidden states",
            )
        })?;
    let run = h.run.begin();
    st.batch.clear();
    st.decoder = StreamDecoder::new();
    let cpu = st
        .ctx
        .cpu_only_mut("embedding (llmrt_embed, llmrt_embed_tokens)")?;
    let r = embed_until(cpu, ids, pooling, normalize, &mut hidden, &|| {
        run.cancelled()
    });
    // The cache was emptied first: whatever it holds now ends with a finished chunk
    // (or is empty), and the logits are those of its last token.
    st.has_logits = !st.ctx.tokens().is_empty();
    let v = r?.ok_or_else(cancelled)?;
    // SAFETY: `out` is non-NULL and writable for `cap >= d` floats by contract.
    unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), out, d) };
    Ok(())
}

/// Embeds the UTF-8 text `text[..text_len]` (tokenized with the model's BOS rule):
/// empties the KV cache, evaluates the text as a new sequence, pools the hidden
/// states after the final norm (`pooling`: `LLMRT_POOLING_MEAN`, `_LAST` or `_FIRST`)
/// and, when `normalize` is non-zero, scales the vector to unit length. Writes
/// `d_model` floats to `out[..cap]` and `d_model` to `*n` (`out = NULL, cap = 0`
/// asks for the size: `LLMRT_ERR_BUFFER_TOO_SMALL`, nothing evaluated). Afterwards
/// the cache holds the text and the logits are its last token's. A text longer than
/// the context is `LLMRT_ERR_CONTEXT_FULL`; `llmrt_cancel` stops it
/// (`LLMRT_ERR_CANCELLED`). A CUDA context does not embed yet
/// (`LLMRT_ERR_UNSUPPORTED`).
///
/// # Safety
/// `text` must be NULL or hold `text_len` readable bytes; `out` NULL or writable for
/// `cap` floats; `n` NULL or writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn llmrt_embed(
    ctx: *mut llmrt_context,
    text: *const c_char,
    text_len: usize,
    pooling: i32,
    normalize: i32,
    out: *mut f32,
    cap: usize,
    n: *mut usize,
) -> llmrt_status {
    guard(|| {
        // SAFETY: NULL or writable by contract.
        unsafe { put_opt(n, 0) };
        let pooling = self::pooling(pooling)?;
        with_ctx(ctx, |h, st| {
            // SAFETY: `text_len` readable bytes by contract.
            let t = unsafe { self::text(text, text_len, "text") }?;
            let model = st.ctx.model().clone();
            let ids = model
                .tokenizer
                .encode(t, want_bos(&model, crate::model::LLMRT_BOS_DEFAULT)?)
                .map_err(|e| Fail::new(LLMRT_ERR_INVALID_ARG, format!("tokenize: {e}")))?;
            // SAFETY: forwarded contract.
            unsafe { run(h, st, &ids, pooling, normalize != 0, out, cap, n) }
        })
    })
}

/// As `llmrt_embed`, with the text given as token ids `tokens[..n_tokens]`, used as
/// given (no BOS added).
///
/// # Safety
/// `tokens` must be NULL or hold `n_tokens` readable ids; the rest as `llmrt_embed`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn llmrt_embed_tokens(
    ctx: *mut llmrt_context,
    tokens: *const u32,
    n_tokens: usize,
    pooling: i32,
    normalize: i32,
    out: *mut f32,
    cap: usize,
    n: *mut usize,
) -> llmrt_status {
    guard(|| {
        // SAFETY: NULL or writable by contract.
        unsafe { put_opt(n, 0) };
        let pooling = self::pooling(pooling)?;
        with_ctx(ctx, |h, st| {
            // SAFETY: `n_tokens` readable ids by contract.
            let ids = unsafe { slice(tokens, n_tokens, "tokens") }?;
            // SAFETY: forwarded contract.
            unsafe { run(h, st, ids, pooling, normalize != 0, out, cap, n) }
        })
    })
}
