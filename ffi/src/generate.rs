//! One-call generation: evaluate a prompt, then sample, decode and stream text through
//! a callback until EOS, a stop string, the token budget, a full context, the
//! callback's "stop", or `llmrt_cancel` from another thread.

use crate::args::{c_text, put_opt, slice, text};
use crate::context::{llmrt_context, with_ctx, CtxHandle, State};
use crate::model::{want_bos, LLMRT_BOS_DEFAULT};
use crate::status::{guard, llmrt_status, Fail, Res, LLMRT_ERR_INVALID_ARG};
use rt::generate::Decoder;
use rt::tokenizer::StreamDecoder;
use rt::{GenerateParams, StopReason};
use std::ffi::{c_char, c_void};

/// Generation ended after `n_predict` tokens.
pub const LLMRT_STOP_MAX_TOKENS: i32 = 0;
/// The model produced its end-of-sequence token.
pub const LLMRT_STOP_EOS: i32 = 1;
/// A stop string appeared (the text ends before it).
pub const LLMRT_STOP_STRING: i32 = 2;
/// The context is full and too short to shift (under 4 tokens; longer contexts drop
/// their older half and go on).
pub const LLMRT_STOP_CONTEXT_FULL: i32 = 3;
/// The callback returned non-zero.
pub const LLMRT_STOP_CALLBACK: i32 = 4;
/// `llmrt_cancel` was called.
pub const LLMRT_STOP_CANCELLED: i32 = 5;

/// Receives each new piece of generated text: `len` bytes of complete UTF-8 at
/// `piece` (also NUL-terminated; valid only during the call). Return 0 to go on,
/// non-zero to stop. It must not unwind (no C++ exception, no longjmp) out of the call.
#[allow(non_camel_case_types)]
pub type llmrt_piece_fn =
    Option<unsafe extern "C" fn(piece: *const c_char, len: usize, user_data: *mut c_void) -> i32>;

/// What to generate. `llmrt_generate_default_params` gives the defaults.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llmrt_generate_params {
    /// Most tokens to generate. Default 128.
    pub n_predict: u32,
    /// For a text prompt: `LLMRT_BOS_DEFAULT` (-1, as the model file asks), 0 or 1. Default -1.
    pub add_bos: i32,
    /// Non-zero: keep going past the end-of-sequence token. Default 0.
    pub ignore_eos: i32,
    /// `n_stop` NUL-terminated UTF-8 stop strings (may be NULL when `n_stop` is 0):
    /// generation ends before the first occurrence of any. Default none.
    pub stop: *const *const c_char,
    /// Number of stop strings.
    pub n_stop: usize,
}

/// How a generation went.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct llmrt_generation {
    /// Tokens in the prompt (BOS included).
    pub n_prompt: u32,
    /// Tokens generated (an EOS that ended generation not counted).
    pub n_generated: u32,
    /// Why it ended: one of `LLMRT_STOP_*`.
    pub stop_reason: i32,
}

/// The defaults for `llmrt_generate`.
#[no_mangle]
pub extern "C" fn llmrt_generate_default_params() -> llmrt_generate_params {
    llmrt_generate_params {
        n_predict: 128,
        add_bos: LLMRT_BOS_DEFAULT,
        ignore_eos: 0,
        stop: std::ptr::null(),
        n_stop: 0,
    }
}

/// Where the prompt comes from.
enum Prompt<'a> {
    Text(&'a str),
    Tokens(&'a [u32]),
}

/// Runs one generation on a locked context; `on_piece` may be absent (text dropped).
fn run(
    handle: &CtxHandle,
    st: &mut State,
    prompt: Prompt<'_>,
    p: &llmrt_generate_params,
    on_piece: llmrt_piece_fn,
    user_data: *mut c_void,
) -> Res<llmrt_generation> {
    let model = st.ctx.model().clone();
    // SAFETY: `stop` holds `n_stop` pointers by contract.
    let stops = unsafe { slice(p.stop, p.n_stop, "stop") }?;
    let stop = stops
        .iter()
        .enumerate()
        // SAFETY: each entry is NULL or NUL-terminated by contract.
        .map(|(i, &s)| unsafe { c_text(s, &format!("stop string {i}")) }.map(String::from))
        .collect::<Res<Vec<String>>>()?;
    let ids = match prompt {
        Prompt::Text(t) => model
            .tokenizer
            .encode(t, want_bos(&model, p.add_bos)?)
            .map_err(|e| Fail::new(LLMRT_ERR_INVALID_ARG, format!("tokenize: {e}")))?,
        Prompt::Tokens(t) => t.to_vec(),
    };
    if ids.is_empty() {
        return Err(Fail::new(
            LLMRT_ERR_INVALID_ARG,
            "the prompt is empty: give at least one token",
        ));
    }
    let gp = GenerateParams {
        max_tokens: p.n_predict as usize,
        stop,
        ignore_eos: p.ignore_eos != 0,
        stop_tokens: Vec::new(),
        sampler: st.sampler_cfg.clone(),
        grammar: st.grammar.clone(),
    };
    let mut piece_buf: Vec<u8> = Vec::new();
    let mut by_callback = false;
    let mut emit = |piece: &str| -> bool {
        let Some(f) = on_piece else { return true };
        piece_buf.clear();
        piece_buf.extend_from_slice(piece.as_bytes());
        piece_buf.push(0);
        // SAFETY: the callback's contract: a pointer to `len` bytes plus a NUL, valid
        // for the call, and the caller's own `user_data`.
        let rc = unsafe { f(piece_buf.as_ptr().cast::<c_char>(), piece.len(), user_data) };
        if rc != 0 {
            by_callback = true;
        }
        rc == 0
    };
    let run = handle.run.begin();
    let cancelled = || run.cancelled();
    st.batch.clear();
    let g = rt::generate_until(&mut st.ctx, &ids, &gp, &cancelled, &mut emit)?;
    st.has_logits = true;
    st.decoder = StreamDecoder::new();
    Ok(llmrt_generation {
        n_prompt: u32::try_from(ids.len()).unwrap_or(u32::MAX),
        n_generated: u32::try_from(g.tokens.len()).unwrap_or(u32::MAX),
        stop_reason: match g.reason {
            StopReason::MaxTokens => LLMRT_STOP_MAX_TOKENS,
            StopReason::Eos => LLMRT_STOP_EOS,
            StopReason::StopString => LLMRT_STOP_STRING,
            StopReason::ContextFull => LLMRT_STOP_CONTEXT_FULL,
            StopReason::Cancelled if by_callback => LLMRT_STOP_CALLBACK,
            StopReason::Cancelled => LLMRT_STOP_CANCELLED,
        },
    })
}

fn params_or_default(params: *const llmrt_generate_params) -> llmrt_generate_params {
    if params.is_null() {
        llmrt_generate_default_params()
    } else {
        // SAFETY: non-NULL and readable by the entry points' contract; plain data.
        unsafe { params.read() }
    }
}

/// Tokenizes the UTF-8 prompt `prompt[..prompt_len]` (BOS per `params->add_bos`),
/// evaluates it after what the context holds, and generates with the context's
/// sampler settings, a fresh sampler seeded from them (so the same seed gives the
/// same text as `llm-run --seed`). Each complete UTF-8 piece goes to `on_piece`
/// (may be NULL) with `user_data`; a non-zero return stops generation. `params` NULL:
/// the defaults. `result` (may be NULL) receives counts and the stop reason.
///
/// Stopping (EOS, stop string, budget, full context, callback, `llmrt_cancel`) is
/// `LLMRT_OK`; see `result->stop_reason`. A generation that fills the context drops
/// the older half of it and goes on. Afterwards the KV cache holds the prompt and the
/// generated tokens (or the most recent of them after a shift) except the last one,
/// which was never evaluated.
///
/// # Safety
/// `prompt` must be NULL or hold `prompt_len` readable bytes; `params` NULL or
/// readable with valid `stop` strings; `result` NULL or writable; `on_piece` must
/// follow `llmrt_piece_fn`'s contract.
#[no_mangle]
pub unsafe extern "C" fn llmrt_generate(
    ctx: *mut llmrt_context,
    prompt: *const c_char,
    prompt_len: usize,
    params: *const llmrt_generate_params,
    on_piece: llmrt_piece_fn,
    user_data: *mut c_void,
    result: *mut llmrt_generation,
) -> llmrt_status {
    guard(|| {
        // SAFETY: NULL or writable by contract.
        unsafe { put_opt(result, llmrt_generation::default()) };
        let p = params_or_default(params);
        let g = with_ctx(ctx, |h, st| {
            // SAFETY: `prompt_len` readable bytes by contract.
            let t = unsafe { text(prompt, prompt_len, "prompt") }?;
            run(h, st, Prompt::Text(t), &p, on_piece, user_data)
        })?;
        // SAFETY: NULL or writable by contract.
        unsafe { put_opt(result, g) };
        Ok(())
    })
}

/// As `llmrt_generate`, with the prompt given as token ids `tokens[..n]`, used as given
/// (`params->add_bos` is ignored).
///
/// # Safety
/// `tokens` must be NULL or hold `n` readable ids; the rest as `llmrt_generate`.
#[no_mangle]
pub unsafe extern "C" fn llmrt_generate_tokens(
    ctx: *mut llmrt_context,
    tokens: *const u32,
    n: usize,
    params: *const llmrt_generate_params,
    on_piece: llmrt_piece_fn,
    user_data: *mut c_void,
    result: *mut llmrt_generation,
) -> llmrt_status {
    guard(|| {
        // SAFETY: NULL or writable by contract.
        unsafe { put_opt(result, llmrt_generation::default()) };
        let p = params_or_default(params);
        let g = with_ctx(ctx, |h, st| {
            // SAFETY: `n` readable ids by contract.
            let t = unsafe { slice(tokens, n, "tokens") }?;
            run(h, st, Prompt::Tokens(t), &p, on_piece, user_data)
        })?;
        // SAFETY: NULL or writable by contract.
        unsafe { put_opt(result, g) };
        Ok(())
    })
}
