//! Contexts: one inference stream over a shared model (KV cache, scratch, sampler).
//! The step-by-step API lives here: evaluate tokens, read logits, sample, accept a
//! token, and trim the KV cache to reuse a prompt prefix.
//!
//! A context is used by one thread at a time (a second thread gets `LLMRT_ERR_BUSY`,
//! never a data race); `llmrt_cancel` is the exception and may come from any thread.

use crate::args::{copy_out, eval_tokens, put, put_opt, slice, text};
use crate::cancel::RunFlag;
use crate::device::{check_device, open_engine, Engine, EngineExt, LLMRT_DEVICE_CPU};
use crate::handles::Registry;
use crate::logits::Batch;
use crate::model::{llmrt_model, model};
use crate::status::{
    guard, llmrt_status, null, Fail, Res, LLMRT_ERR_BAD_TOKEN, LLMRT_ERR_BUFFER_TOO_SMALL,
    LLMRT_ERR_BUSY, LLMRT_ERR_CANCELLED, LLMRT_ERR_GRAMMAR, LLMRT_ERR_INTERNAL,
    LLMRT_ERR_INVALID_ARG, LLMRT_ERR_NO_LOGITS, LLMRT_ERR_NO_MEMORY,
};
use rt::context::MAX_THREADS;
use rt::generate::Decoder;
use rt::grammar::{Grammar, GrammarMatcher, TokenTrie};
use rt::sampler::{Sampler, SamplerConfig};
use rt::tokenizer::StreamDecoder;
use rt::ContextParams;
use std::ffi::c_char;
use std::sync::{Arc, Mutex, TryLockError};

/// `llmrt_context_params::cache_type`: keys and values stored as 16-bit floats (the default).
pub const LLMRT_CACHE_F16: u32 = 0;
/// `llmrt_context_params::cache_type`: keys and values stored as 32-bit floats (exact).
pub const LLMRT_CACHE_F32: u32 = 1;
/// `llmrt_context_params::cache_type`: keys and values stored as ggml's q8_0 blocks
/// (8.5 bits a value; the model's head size must be a multiple of 32).
pub const LLMRT_CACHE_Q8_0: u32 = 2;

/// `llmrt_sampler_params::grammar_kind`: no grammar (the default).
pub const LLMRT_GRAMMAR_NONE: u32 = 0;
/// `llmrt_sampler_params::grammar_kind`: `grammar` is GBNF text (llama.cpp's grammar
/// format, start rule `root`).
pub const LLMRT_GRAMMAR_GBNF: u32 = 1;
/// `llmrt_sampler_params::grammar_kind`: `grammar` is a JSON Schema (as JSON text); the
/// output is JSON valid under it.
pub const LLMRT_GRAMMAR_JSON_SCHEMA: u32 = 2;

/// One logit-bias entry: `bias` is added to token `token`'s logit before the penalties;
/// `-INFINITY` bans the token.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llmrt_logit_bias {
    /// Token id, below the vocabulary size.
    pub token: u32,
    /// Finite, or `-INFINITY` (ban).
    pub bias: f32,
}

/// The sampler chain's settings (llama.cpp's order: grammar → logit bias → penalties →
/// top-k → top-p → min-p → temperature → seeded draw). `llmrt_sampler_default_params`
/// gives the defaults. The arrays and text are copied when the settings are applied
/// (`llmrt_context_new`, `llmrt_set_sampler`), so they need not outlive the call.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llmrt_sampler_params {
    /// Divides the logits before the draw; finite and >= 0, below 1e-6 (0 included)
    /// greedy (argmax). Default 0.8.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = off. Default 40.
    pub top_k: u32,
    /// Nucleus: keep the fewest tokens whose probability reaches p; in [0, 1], 1 = off.
    /// Default 0.95.
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely; in [0, 1], 0 = off.
    /// Default 0.05.
    pub min_p: f32,
    /// Repetition penalty (finite, > 0; 1 = off). Default 1.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at; 0 = off. Default 64.
    pub repeat_last_n: u32,
    /// Subtracted per occurrence in the window; finite, 0 = off. Default 0.
    pub frequency_penalty: f32,
    /// Subtracted once if the token is in the window; finite, 0 = off. Default 0.
    pub presence_penalty: f32,
    /// Random seed: the same seed, settings and model give the same tokens on every
    /// machine (and the same as `llm-run --seed`). Default 42.
    pub seed: u64,
    /// `n_logit_bias` entries (may be NULL when `n_logit_bias` is 0). Default none.
    pub logit_bias: *const llmrt_logit_bias,
    /// Number of logit-bias entries.
    pub n_logit_bias: usize,
    /// `LLMRT_GRAMMAR_NONE` (default), `LLMRT_GRAMMAR_GBNF` or `LLMRT_GRAMMAR_JSON_SCHEMA`:
    /// what `grammar` holds. With a grammar, `llmrt_sample` and `llmrt_generate` only
    /// pick tokens that continue a string of its language, and end-of-sequence only
    /// where the string is complete. A malformed, unsupported or unsatisfiable grammar
    /// is `LLMRT_ERR_GRAMMAR` (with line and column in `llmrt_last_error`).
    pub grammar_kind: u32,
    /// `grammar_len` bytes of UTF-8 (no terminator needed; NULL when `grammar_len` is 0).
    pub grammar: *const c_char,
    /// Length of `grammar` in bytes.
    pub grammar_len: usize,
}

/// How to create a context. `llmrt_context_default_params` gives the defaults.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llmrt_context_params {
    /// Context length in tokens; 0 = the model's context length. Default 0.
    pub n_ctx: u32,
    /// Most tokens per forward pass (a longer prompt goes in chunks); 0 = 64. Default 64.
    pub n_batch: u32,
    /// Threads for the matrix products, at most 1024; 0 = one per available CPU.
    /// Default 0.
    pub n_threads: u32,
    /// How the KV cache stores keys and values: `LLMRT_CACHE_F16` (0, the default),
    /// `LLMRT_CACHE_F32` or `LLMRT_CACHE_Q8_0`. The cache grows with the tokens
    /// evaluated, in blocks of 256, up to `n_ctx`.
    pub cache_type: u32,
    /// Sequences the context holds (`llmrt_batch`), at most 256; 0 = 1. They share
    /// the `n_ctx` positions of the KV cache: each holds up to `n_ctx / n_seq`
    /// tokens. Default 1.
    pub n_seq: u32,
    /// Where the forward pass runs: `LLMRT_DEVICE_CPU` (1, the default),
    /// `LLMRT_DEVICE_CUDA` (2: the first CUDA GPU, one sequence, an f32 KV cache on
    /// the device whatever `cache_type` says; `LLMRT_ERR_DEVICE` when it cannot be
    /// used) or `LLMRT_DEVICE_AUTO` (0: the GPU when it can run the model and `n_seq`
    /// is 1, else the CPU; `llmrt_context_device` tells which). A CUDA context serves
    /// evaluation (`llmrt_eval`, `llmrt_eval_all`), logits, sampling, accepting,
    /// truncation, reset and generation (the same sampler chain, grammar and stop
    /// strings as the CPU); several sequences (`llmrt_batch`, `llmrt_seq_*`,
    /// `llmrt_get_logits_seq`, `llmrt_sample_seq`), state files, embeddings and thread
    /// counts return `LLMRT_ERR_UNSUPPORTED`. An unknown value is
    /// `LLMRT_ERR_INVALID_ARG`. The field fills what was padding before `sampler`, so
    /// the struct keeps its size and layout.
    pub device: u32,
    /// The sampler used by `llmrt_sample` and `llmrt_generate`.
    pub sampler: llmrt_sampler_params,
}

/// A context (opaque): one stream's KV cache and sampler over a shared model.
#[allow(non_camel_case_types)]
pub struct llmrt_context {
    _opaque: [u8; 0],
}

/// A context and its cancellation flag, which other threads may set without the lock.
pub(crate) struct CtxHandle {
    /// Whether a cancellable call runs, and whether `llmrt_cancel` asked it to stop.
    pub run: RunFlag,
    /// Everything else; held for the length of a call.
    pub state: Mutex<State>,
}

/// A context's state.
pub(crate) struct State {
    /// The runtime's context (KV cache, scratch), on the CPU or a GPU.
    pub ctx: Engine,
    /// The sampler settings `llmrt_generate` starts from.
    pub sampler_cfg: SamplerConfig,
    /// The grammar of the sampler settings, if any (`llmrt_generate` starts it afresh).
    pub grammar: Option<Arc<Grammar>>,
    /// The grammar's state for `llmrt_sample` / `llmrt_accept`.
    pub matcher: Option<GrammarMatcher>,
    /// Which tokens the grammar allows now (scratch of `llmrt_sample`).
    pub allowed: Vec<bool>,
    /// The sampler of `llmrt_sample`; its random stream continues across calls.
    pub sampler: Sampler,
    /// Whether `ctx.logits()` belong to the last token in the cache.
    pub has_logits: bool,
    /// Turns accepted tokens into whole UTF-8 characters.
    pub decoder: StreamDecoder,
    /// Logits the sampler may penalise in place (`[vocab]`).
    pub scratch: Vec<f32>,
    /// The rows of the last `llmrt_eval` / `llmrt_eval_all` / `llmrt_batch`
    /// (`llmrt_get_logits_ith`).
    pub batch: Batch,
    /// The samplers of `llmrt_sample_seq` for sequences 1.. (index = sequence;
    /// sequence 0 uses `sampler`), made when first used or set.
    pub seq_samplers: Vec<Option<Sampler>>,
}

/// Every live context, by handle.
pub(crate) static CONTEXTS: Registry<CtxHandle> = Registry::new("context");

/// Runs `f` on the context behind `h` with its state locked.
pub(crate) fn with_ctx<R>(
    h: *const llmrt_context,
    f: impl FnOnce(&CtxHandle, &mut State) -> Res<R>,
) -> Res<R> {
    let c = CONTEXTS.get(h as usize)?;
    let mut st =
        match c.state.try_lock() {
            Ok(g) => g,
            Err(TryLockError::WouldBlock) => return Err(Fail::new(
                LLMRT_ERR_BUSY,
                "the context is in use by another call (another thread, or a callback of this one)",
            )),
            Err(TryLockError::Poisoned(_)) => {
                return Err(Fail::new(
                    LLMRT_ERR_INTERNAL,
                    "the context is unusable after an internal error: free it and create another",
                ))
            }
        };
    f(&c, &mut st)
}

/// The defaults of the sampler chain (llama.cpp's, seed 42).
#[no_mangle]
pub extern "C" fn llmrt_sampler_default_params() -> llmrt_sampler_params {
    let d = SamplerConfig::default();
    llmrt_sampler_params {
        temperature: d.temperature,
        top_k: d.top_k as u32,
        top_p: d.top_p,
        min_p: d.min_p,
        repeat_penalty: d.repeat_penalty,
        repeat_last_n: d.repeat_last_n as u32,
        frequency_penalty: d.frequency_penalty,
        presence_penalty: d.presence_penalty,
        seed: d.seed,
        logit_bias: std::ptr::null(),
        n_logit_bias: 0,
        grammar_kind: LLMRT_GRAMMAR_NONE,
        grammar: std::ptr::null(),
        grammar_len: 0,
    }
}

/// The defaults for `llmrt_context_new`.
#[no_mangle]
pub extern "C" fn llmrt_context_default_params() -> llmrt_context_params {
    llmrt_context_params {
        n_ctx: 0,
        n_batch: 64,
        n_threads: 0,
        cache_type: LLMRT_CACHE_F16,
        n_seq: 1,
        device: LLMRT_DEVICE_CPU,
        sampler: llmrt_sampler_default_params(),
    }
}

/// Sampler settings as the runtime takes them.
pub(crate) struct Sampling {
    /// The chain.
    pub cfg: SamplerConfig,
    /// The grammar, parsed and checked.
    pub grammar: Option<Arc<Grammar>>,
}

/// Checks the sampler settings (the runtime's one validation,
/// `SamplerConfig::validate_for_vocab`, and the grammar's parse) and converts them.
///
/// # Safety
/// `p.logit_bias` must be NULL or hold `p.n_logit_bias` readable entries, and
/// `p.grammar` NULL or hold `p.grammar_len` readable bytes.
pub(crate) unsafe fn sampler_config(p: &llmrt_sampler_params, vocab: usize) -> Res<Sampling> {
    // SAFETY: forwarded contract.
    let bias = unsafe { slice(p.logit_bias, p.n_logit_bias, "logit_bias") }?;
    let grammar = match p.grammar_kind {
        LLMRT_GRAMMAR_NONE => None,
        LLMRT_GRAMMAR_GBNF | LLMRT_GRAMMAR_JSON_SCHEMA => {
            // SAFETY: forwarded contract.
            let src = unsafe { text(p.grammar, p.grammar_len, "grammar") }?;
            let g = if p.grammar_kind == LLMRT_GRAMMAR_GBNF {
                Grammar::parse(src).map_err(|e| e.to_string())
            } else {
                Grammar::from_json_schema(src).map_err(|e| e.to_string())
            };
            Some(Arc::new(g.map_err(|e| Fail::new(LLMRT_ERR_GRAMMAR, e))?))
        }
        k => {
            return Err(Fail::new(
                LLMRT_ERR_INVALID_ARG,
                format!("grammar_kind is {k}; use LLMRT_GRAMMAR_NONE, LLMRT_GRAMMAR_GBNF or LLMRT_GRAMMAR_JSON_SCHEMA"),
            ))
        }
    };
    let cfg = SamplerConfig {
        temperature: p.temperature,
        top_k: p.top_k as usize,
        top_p: p.top_p,
        min_p: p.min_p,
        repeat_penalty: p.repeat_penalty,
        repeat_last_n: p.repeat_last_n as usize,
        frequency_penalty: p.frequency_penalty,
        presence_penalty: p.presence_penalty,
        seed: p.seed,
        logit_bias: bias.iter().map(|b| (b.token, b.bias)).collect(),
    };
    cfg.validate_for_vocab(vocab)
        .map_err(|e| Fail::new(LLMRT_ERR_INVALID_ARG, format!("sampler {e}")))?;
    Ok(Sampling { cfg, grammar })
}

/// The grammar state of the step-by-step API for `grammar` (end token: EOS).
pub(crate) fn matcher_for(
    model: &rt::Model,
    grammar: &Option<Arc<Grammar>>,
) -> Option<GrammarMatcher> {
    let tok = &model.tokenizer;
    grammar.as_ref().map(|g| {
        let ends: Vec<u32> = tok.eos().into_iter().collect();
        GrammarMatcher::new(g, Arc::new(TokenTrie::for_tokenizer(tok, &ends)))
    })
}

/// The thread count `n` asks for: 0 is one per available CPU (at most the runtime's
/// `MAX_THREADS`); above `MAX_THREADS` is an error.
pub(crate) fn resolve_threads(n: u32) -> Res<usize> {
    match n {
        0 => Ok(std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_THREADS)),
        n if n as usize > MAX_THREADS => Err(Fail::new(
            LLMRT_ERR_INVALID_ARG,
            format!("n_threads is {n}; at most {MAX_THREADS}"),
        )),
        n => Ok(n as usize),
    }
}

/// The runtime's context parameters for `p` (what `llmrt_context_new` creates and
/// `llmrt_context_bytes_needed` counts).
pub(crate) fn runtime_params(p: &llmrt_context_params) -> Res<ContextParams> {
    let n_batch = if p.n_batch == 0 {
        64
    } else {
        p.n_batch as usize
    };
    let cache_type = rt::CacheType::from_code(p.cache_type).ok_or_else(|| {
        Fail::new(
            LLMRT_ERR_INVALID_ARG,
            format!(
                "cache_type is {}; use LLMRT_CACHE_F16, LLMRT_CACHE_F32 or LLMRT_CACHE_Q8_0",
                p.cache_type
            ),
        )
    })?;
    Ok(ContextParams {
        n_ctx: p.n_ctx as usize,
        n_batch,
        threads: resolve_threads(p.n_threads)?,
        cache_type,
        n_seq: p.n_seq as usize,
        f16_exact: false,
    })
}

/// Registers a new context handle over `ctx` with the sampler settings `sampling`.
pub(crate) fn register(ctx: Engine, sampling: Sampling) -> Res<usize> {
    let Sampling { cfg, grammar } = sampling;
    let vocab = ctx.model().opts.vocab_size;
    let matcher = matcher_for(ctx.model(), &grammar);
    let mut scratch = Vec::new();
    scratch
        .try_reserve_exact(vocab)
        .map_err(|_| Fail::new(LLMRT_ERR_NO_MEMORY, "not enough memory for the logits"))?;
    Ok(CONTEXTS.insert(CtxHandle {
        run: RunFlag::new(),
        state: Mutex::new(State {
            ctx,
            sampler: Sampler::new(cfg.clone(), vocab),
            sampler_cfg: cfg,
            grammar,
            matcher,
            allowed: Vec::new(),
            has_logits: false,
            decoder: StreamDecoder::new(),
            scratch,
            batch: Batch::default(),
            seq_samplers: Vec::new(),
        }),
    }))
}

/// Creates a context over `model` with `params` (NULL: the defaults). Several contexts
/// may share one model, each used by its own thread. On failure `*out` is NULL;
/// `LLMRT_ERR_NO_MEMORY` when the KV cache does not fit in memory (or the model and
/// cache in the GPU's). With `device = LLMRT_DEVICE_CUDA`: `LLMRT_ERR_DEVICE` when
/// there is no usable GPU or the GPU kernels do not cover the model's storage types,
/// `LLMRT_ERR_UNSUPPORTED` when `n_seq` is above 1.
///
/// # Safety
/// `params` must be NULL or readable; `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_context_new(
    model: *const llmrt_model,
    params: *const llmrt_context_params,
    out: *mut *mut llmrt_context,
) -> llmrt_status {
    guard(|| {
        // SAFETY: NULL or writable by contract.
        unsafe { put(out, std::ptr::null_mut(), "out") }?;
        let m = self::model(model)?;
        let p = if params.is_null() {
            llmrt_context_default_params()
        } else {
            // SAFETY: non-NULL and readable by contract; the struct is plain data.
            unsafe { params.read() }
        };
        // SAFETY: the arrays of a readable params struct, by contract.
        let sampling = unsafe { sampler_config(&p.sampler, m.opts.vocab_size) }?;
        let rp = runtime_params(&p)?;
        let ctx = open_engine(check_device(p.device)?, m, &rp)?;
        let h = register(ctx, sampling)?;
        // SAFETY: checked writable above.
        unsafe { put(out, h as *mut llmrt_context, "out") }
    })
}

/// Frees a context and its KV cache. NULL is a no-op. Must not be called while another
/// thread is using the context (that call keeps it alive until it returns).
#[no_mangle]
pub extern "C" fn llmrt_context_free(ctx: *mut llmrt_context) -> llmrt_status {
    guard(|| {
        let c = CONTEXTS.remove(ctx as usize)?;
        drop(c);
        Ok(())
    })
}

/// Replaces the context's sampler settings and restarts its random stream from
/// `params->seed` and its grammar (if any) from the start (for `llmrt_sample` and later
/// `llmrt_generate` calls). On failure the settings are unchanged.
///
/// # Safety
/// `params` must be NULL or readable, with its arrays as `llmrt_sampler_params` says.
#[no_mangle]
pub unsafe extern "C" fn llmrt_set_sampler(
    ctx: *mut llmrt_context,
    params: *const llmrt_sampler_params,
) -> llmrt_status {
    guard(|| {
        with_ctx(ctx, |_, st| {
            if params.is_null() {
                return Err(null("params"));
            }
            let vocab = st.ctx.model().opts.vocab_size;
            // SAFETY: non-NULL and readable by contract, arrays included.
            let Sampling { cfg, grammar } = unsafe { sampler_config(&params.read(), vocab) }?;
            st.matcher = matcher_for(st.ctx.model(), &grammar);
            st.grammar = grammar;
            st.sampler = Sampler::new(cfg.clone(), vocab);
            st.sampler_cfg = cfg;
            Ok(())
        })
    })
}

/// The context length in tokens, into `*n_ctx`: what one sequence holds (`n_ctx /
/// n_seq` of the parameters; the whole context when `n_seq` is 1).
///
/// # Safety
/// `n_ctx` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_context_n_ctx(
    ctx: *const llmrt_context,
    n_ctx: *mut usize,
) -> llmrt_status {
    guard(|| {
        let n = with_ctx(ctx, |_, st| Ok(st.ctx.n_ctx()))?;
        // SAFETY: NULL or writable by contract.
        unsafe { put(n_ctx, n, "n_ctx") }
    })
}

/// Copies the tokens in the KV cache into `tokens[..cap]`; `*n_tokens` receives their
/// number (`tokens = NULL, cap = 0` asks for the count; too small a `cap` gives
/// `LLMRT_ERR_BUFFER_TOO_SMALL`).
///
/// # Safety
/// `tokens` must be NULL or writable for `cap` ids; `n_tokens` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_context_tokens(
    ctx: *const llmrt_context,
    tokens: *mut u32,
    cap: usize,
    n_tokens: *mut usize,
) -> llmrt_status {
    guard(|| {
        with_ctx(ctx, |_, st| {
            // SAFETY: forwarded contract.
            unsafe { copy_out(st.ctx.tokens(), 0, tokens, cap, n_tokens, "tokens") }
        })
    })
}

/// Empties the KV cache, every sequence's (the next evaluation starts anew), and
/// restarts the sampler's grammar, if any.
#[no_mangle]
pub extern "C" fn llmrt_kv_reset(ctx: *mut llmrt_context) -> llmrt_status {
    guard(|| {
        with_ctx(ctx, |_, st| {
            st.ctx.reset();
            if let Some(m) = &mut st.matcher {
                m.reset();
            }
            st.has_logits = false;
            st.batch.clear();
            st.decoder = StreamDecoder::new();
            Ok(())
        })
    })
}

/// Keeps the first `n` tokens of the KV cache and drops the rest, so a shared prompt
/// prefix is evaluated once: evaluate what differs after it. `n` above the number
/// of cached tokens is `LLMRT_ERR_INVALID_ARG`. After a cut, evaluate at least one
/// token before sampling. A grammar keeps its state (it follows accepted tokens, not
/// the cache): `llmrt_set_sampler` or `llmrt_kv_reset` restart it. A CUDA context
/// cannot cut its cache in place: it evaluates the `n` kept tokens again (a prompt's
/// work).
#[no_mangle]
pub extern "C" fn llmrt_kv_truncate(ctx: *mut llmrt_context, n: usize) -> llmrt_status {
    guard(|| {
        with_ctx(ctx, |_, st| {
            let have = st.ctx.tokens().len();
            if n > have {
                return Err(Fail::new(
                    LLMRT_ERR_INVALID_ARG,
                    format!("cannot keep {n} tokens: the cache holds {have}"),
                ));
            }
            if n < have {
                let r = st.ctx.truncate(n);
                st.has_logits = false;
                st.batch.clear();
                st.decoder = StreamDecoder::new();
                r?;
            }
            Ok(())
        })
    })
}

/// Evaluates `tokens[..n]` after those in the KV cache (in chunks of `n_batch`); the
/// logits of the last one are then available to `llmrt_get_logits` and
/// `llmrt_sample` (`llmrt_eval_all` keeps those of every one). Fails without changing
/// the cache on an id outside the vocabulary (`LLMRT_ERR_BAD_TOKEN`) or when the
/// tokens do not fit (`LLMRT_ERR_CONTEXT_FULL`). `llmrt_cancel` from another thread
/// stops it before its next layer with `LLMRT_ERR_CANCELLED`; the cache then keeps
/// the chunks that finished (see `llmrt_context_tokens`).
///
/// # Safety
/// `tokens` must be NULL or hold `n` readable ids.
#[no_mangle]
pub unsafe extern "C" fn llmrt_eval(
    ctx: *mut llmrt_context,
    tokens: *const u32,
    n: usize,
) -> llmrt_status {
    guard(|| {
        with_ctx(ctx, |h, st| {
            // SAFETY: `n` readable ids by contract.
            let toks = unsafe { eval_tokens(tokens, n) }?;
            let before = st.ctx.tokens().len();
            let run = h.run.begin();
            let done = st.ctx.eval_until(toks, &|| run.cancelled())?.is_some();
            st.batch.clear();
            st.decoder = StreamDecoder::new();
            if !done {
                st.has_logits |= st.ctx.tokens().len() > before;
                return Err(cancelled());
            }
            st.has_logits = true;
            st.batch.last_only(toks.len(), st.ctx.tokens().len());
            Ok(())
        })
    })
}

/// The failure of a call `llmrt_cancel` stopped.
pub(crate) fn cancelled() -> Fail {
    Fail::new(
        LLMRT_ERR_CANCELLED,
        "cancelled by llmrt_cancel (the cache keeps the chunks that finished)",
    )
}

pub(crate) fn need_logits(st: &State) -> Res<()> {
    // A GPU context whose last batch failed on the device holds no logits.
    if st.has_logits && !st.ctx.logits().is_empty() {
        Ok(())
    } else {
        Err(Fail::new(
            LLMRT_ERR_NO_LOGITS,
            "no logits: evaluate a token first (none since the context was created, reset or truncated)",
        ))
    }
}

/// Copies the logits of the last evaluated token (`vocab_size` floats) into
/// `logits[..cap]`; `*n` receives `vocab_size`.
///
/// # Safety
/// `logits` must be NULL or writable for `cap` floats; `n` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_get_logits(
    ctx: *const llmrt_context,
    logits: *mut f32,
    cap: usize,
    n: *mut usize,
) -> llmrt_status {
    guard(|| {
        // SAFETY: NULL or writable by contract.
        unsafe { put_opt(n, 0) };
        with_ctx(ctx, |_, st| {
            need_logits(st)?;
            // SAFETY: forwarded contract.
            unsafe { copy_out(st.ctx.logits(), 0, logits, cap, n, "logits") }
        })
    })
}

/// Samples the next token from the last logits with the context's sampler chain
/// (penalties see every token in the KV cache); the random stream continues from call
/// to call. Writes the id to `*token`. With a grammar, only a token it allows now
/// (`LLMRT_ERR_GRAMMAR` when there is none); the grammar advances in `llmrt_accept`.
///
/// # Safety
/// `token` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_sample(ctx: *mut llmrt_context, token: *mut u32) -> llmrt_status {
    guard(|| {
        if token.is_null() {
            return Err(null("token"));
        }
        let id = with_ctx(ctx, |_, st| {
            need_logits(st)?;
            let State {
                ctx,
                sampler,
                scratch,
                matcher,
                allowed,
                ..
            } = st;
            scratch.clear();
            scratch.extend_from_slice(ctx.logits());
            if let Some(m) = matcher {
                m.apply(scratch, allowed).map_err(rt::Error::from)?;
            }
            let id = sampler.sample(scratch, ctx.tokens());
            if matcher.is_some() && !allowed.get(id as usize).copied().unwrap_or(false) {
                return Err(rt::Error::from(rt::grammar::GrammarStepError::DeadEnd).into());
            }
            Ok(id)
        })?;
        // SAFETY: non-NULL and writable by contract.
        unsafe { put(token, id, "token") }
    })
}

/// Accepts a sampled token: evaluates it (it joins the KV cache and the penalty
/// history; the logits become the next token's) and writes the text it completes to
/// `buf`, NUL-terminated, with `*len` its length: whole UTF-8 characters only, so a
/// token that ends inside a character gives "" and the next one the whole character.
/// `buf = NULL` discards the text. If `cap < *len + 1` the status is
/// `LLMRT_ERR_BUFFER_TOO_SMALL` and nothing changed. The loop
/// `llmrt_sample` → (stop at EOS) → `llmrt_accept` prints what `llmrt_generate` prints.
/// With a grammar, the token also advances it; a token the grammar does not allow
/// is `LLMRT_ERR_GRAMMAR` and nothing changed.
///
/// # Safety
/// `buf` must be NULL or writable for `cap` bytes; `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_accept(
    ctx: *mut llmrt_context,
    token: u32,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> llmrt_status {
    guard(|| {
        // SAFETY: NULL or writable by contract.
        unsafe { put_opt(len, 0) };
        with_ctx(ctx, |_, st| {
            let model = st.ctx.model().clone();
            let vocab = model.opts.vocab_size;
            if token as usize >= vocab {
                return Err(Fail::new(
                    LLMRT_ERR_BAD_TOKEN,
                    format!("token id {token} is out of range (vocabulary size {vocab})"),
                ));
            }
            let mut decoder = st.decoder.clone();
            let text = decoder
                .push(&model.tokenizer, token)
                .map_err(|e| Fail::new(LLMRT_ERR_BAD_TOKEN, e.to_string()))?
                .unwrap_or("")
                .as_bytes()
                .to_vec();
            if !buf.is_null() && cap < text.len() + 1 {
                // SAFETY: NULL or writable by contract.
                unsafe { put_opt(len, text.len()) };
                return Err(Fail::new(
                    LLMRT_ERR_BUFFER_TOO_SMALL,
                    format!(
                        "text: the buffer holds {cap} bytes but {} are needed",
                        text.len() + 1
                    ),
                ));
            }
            let before = st.matcher.as_ref().map(|m| m.state());
            if let Some(m) = &mut st.matcher {
                m.accept(token, model.tokenizer.token_bytes(token))
                    .map_err(rt::Error::from)?;
            }
            if let Err(e) = st.ctx.eval(&[token]) {
                if let (Some(m), Some(s)) = (&mut st.matcher, before) {
                    m.restore(s);
                }
                return Err(e.into());
            }
            st.has_logits = true;
            st.batch.clear();
            st.decoder = decoder;
            if !buf.is_null() {
                let mut scratch = 0usize;
                let len_out = if len.is_null() { &mut scratch } else { len };
                // SAFETY: `buf` writable for `cap >= text.len() + 1` bytes by contract;
                // `len_out` is the caller's writable `len` or our local.
                unsafe { copy_out(&text, 1, buf.cast::<u8>(), cap, len_out, "text") }?;
            } else {
                // SAFETY: NULL or writable by contract.
                unsafe { put_opt(len, text.len()) };
            }
            Ok(())
        })
    })
}

/// Asks the call running on `ctx` (in another thread) to stop. A generation
/// (`llmrt_generate`, `llmrt_generate_tokens`) stops before its next token, or,
/// while it is still evaluating its prompt, before the prompt's next layer (the
/// cache then keeps the prompt batches that finished), and returns `LLMRT_OK` with
/// stop reason `LLMRT_STOP_CANCELLED`. `llmrt_eval`, `llmrt_eval_all`, `llmrt_batch`,
/// `llmrt_embed` and `llmrt_embed_tokens` stop before their next layer and return
/// `LLMRT_ERR_CANCELLED`. Safe to call from any thread at any time. The request
/// applies to the call running now only: made while no call runs, it does nothing
/// (`LLMRT_OK` all the same), and a call that starts later runs to its end.
#[no_mangle]
pub extern "C" fn llmrt_cancel(ctx: *const llmrt_context) -> llmrt_status {
    guard(|| {
        let c = CONTEXTS.get(ctx as usize)?;
        c.run.cancel();
        Ok(())
    })
}

/// Ends a stream of `llmrt_accept` calls: writes the bytes still held back (the start
/// of a character no token completed, as U+FFFD), NUL-terminated, with `*len` their
/// length (usually 0), and resets the text decoder. `llmrt_generate` does this itself.
///
/// # Safety
/// `buf` must be NULL or writable for `cap` bytes; `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_accept_finish(
    ctx: *mut llmrt_context,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> llmrt_status {
    guard(|| {
        // SAFETY: NULL or writable by contract.
        unsafe { put_opt(len, 0) };
        with_ctx(ctx, |_, st| {
            let mut decoder = st.decoder.clone();
            let text = decoder.finish().unwrap_or("").as_bytes().to_vec();
            let mut scratch = 0usize;
            let len_out = if len.is_null() { &mut scratch } else { len };
            if !buf.is_null() || !text.is_empty() {
                // SAFETY: `buf` writable for `cap` bytes by contract; `len_out` is the
                // caller's writable `len` or our local.
                unsafe { copy_out(&text, 1, buf.cast::<u8>(), cap, len_out, "text") }?;
            }
            st.decoder = StreamDecoder::new();
            Ok(())
        })
    })
}

/// Where the context runs, into `*device`: `LLMRT_DEVICE_CPU` or `LLMRT_DEVICE_CUDA`
/// (what `LLMRT_DEVICE_AUTO` chose).
///
/// # Safety
/// `device` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_context_device(
    ctx: *const llmrt_context,
    device: *mut u32,
) -> llmrt_status {
    guard(|| {
        let d = with_ctx(ctx, |_, st| Ok(st.ctx.device()))?;
        // SAFETY: NULL or writable by contract.
        unsafe { put(device, d, "device") }
    })
}
