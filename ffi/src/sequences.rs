//! Several sequences in one context (`llmrt_context_params::n_seq`): `llmrt_batch`
//! evaluates tokens of several sequences in one pass, so that every weight matrix
//! is read once for all of them; `llmrt_seq_copy` shares a prompt between sequences,
//! `llmrt_seq_remove` / `llmrt_seq_truncate` free or trim one; each sequence has its
//! last logits (`llmrt_get_logits_seq`) and its own sampler (`llmrt_sample_seq`).
//! The single-sequence calls (`llmrt_eval`, `llmrt_sample`, `llmrt_accept`, ...)
//! work on sequence 0. A CUDA context holds one sequence and refuses these calls
//! (`LLMRT_ERR_UNSUPPORTED`).

use crate::args::{copy_out, put, put_opt, slice};
use crate::context::llmrt_sampler_params;
use crate::context::{cancelled, llmrt_context, sampler_config, with_ctx, Sampling, State};
use crate::device::EngineExt;
use crate::status::{
    guard, llmrt_status, null, Fail, Res, LLMRT_ERR_INVALID_ARG, LLMRT_ERR_NO_LOGITS,
    LLMRT_ERR_NO_MEMORY,
};
use rt::generate::Decoder;
use rt::sampler::Sampler;
use rt::tokenizer::StreamDecoder;
use rt::BatchEntry;

/// The sequence `seq` of the context, checked (`LLMRT_ERR_INVALID_ARG` out of range).
fn seq_index(st: &State, seq: u32) -> Res<usize> {
    let n = st.ctx.n_seq();
    if (seq as usize) < n {
        Ok(seq as usize)
    } else {
        Err(Fail::new(
            LLMRT_ERR_INVALID_ARG,
            format!("sequence {seq} is out of range (the context holds {n}: see llmrt_context_params.n_seq)"),
        ))
    }
}

/// After a change to sequence `seq`: what the single-sequence calls know of
/// sequence 0 follows it.
fn changed(st: &mut State, seq: usize) {
    if seq == 0 {
        st.has_logits = st
            .ctx
            .cpu_only("")
            .is_ok_and(|c| matches!(c.seq_logits(0), Ok(Some(_))));
        st.decoder = StreamDecoder::new();
    }
}

/// Evaluates a batch of `n` tokens of several sequences in one pass: entry `i` is
/// token `tokens[i]` of sequence `seq_ids[i]` (below `n_seq`), placed after that
/// sequence's tokens (entries of one sequence go in order). Every weight matrix is
/// read once for the batch (in chunks of `n_batch` entries), so decoding several
/// sequences together costs little more than one. `logits[i]` non-zero asks for
/// entry `i`'s logits (`llmrt_get_logits_ith(ctx, i, ...)`, and
/// `llmrt_get_logits_seq` / `llmrt_sample_seq` when it is its sequence's last);
/// `logits = NULL` asks for each sequence's last entry; `seq_ids = NULL` puts every
/// entry in sequence 0. Before anything changes, fails on an empty batch or a
/// sequence out of range (`LLMRT_ERR_INVALID_ARG`), an id outside the vocabulary
/// (`LLMRT_ERR_BAD_TOKEN`), a sequence that would not fit in its `n_ctx / n_seq`
/// positions (`LLMRT_ERR_CONTEXT_FULL`), or logits that do not fit in memory
/// (`LLMRT_ERR_NO_MEMORY`). `llmrt_cancel` stops it before its next layer with
/// `LLMRT_ERR_CANCELLED` (the sequences keep the chunks that finished). A CUDA
/// context (one sequence) refuses this and the other `llmrt_seq_*` calls with
/// `LLMRT_ERR_UNSUPPORTED`.
///
/// # Safety
/// `tokens` must be NULL or hold `n` readable ids; `seq_ids` NULL or `n` readable
/// ids; `logits` NULL or `n` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn llmrt_batch(
    ctx: *mut llmrt_context,
    tokens: *const u32,
    seq_ids: *const u32,
    logits: *const u8,
    n: usize,
) -> llmrt_status {
    guard(|| {
        with_ctx(ctx, |h, st| {
            // SAFETY: `n` readable elements each (or NULL) by contract.
            let (toks, seqs, want) = unsafe {
                (
                    slice(tokens, n, "tokens")?,
                    if seq_ids.is_null() {
                        &[][..]
                    } else {
                        slice(seq_ids, n, "seq_ids")?
                    },
                    if logits.is_null() {
                        &[][..]
                    } else {
                        slice(logits, n, "logits")?
                    },
                )
            };
            if toks.is_empty() {
                return Err(Fail::new(
                    LLMRT_ERR_INVALID_ARG,
                    "no tokens to evaluate (n is 0)",
                ));
            }
            let mut batch = Vec::new();
            batch.try_reserve_exact(n).map_err(|_| {
                Fail::new(
                    LLMRT_ERR_NO_MEMORY,
                    format!("not enough memory for a batch of {n}"),
                )
            })?;
            for (i, &token) in toks.iter().enumerate() {
                let seq = seqs.get(i).copied().unwrap_or(0);
                batch.push(BatchEntry {
                    token,
                    seq: seq_index(st, seq)?,
                    logits: want.get(i).is_some_and(|&w| w != 0),
                });
            }
            if want.is_empty() {
                // Each sequence's last entry.
                let mut seen = vec![false; st.ctx.n_seq()];
                for e in batch.iter_mut().rev() {
                    e.logits = !std::mem::replace(&mut seen[e.seq], true);
                }
            }
            let run = h.run.begin();
            let done = st
                .ctx
                .cpu_only_mut("llmrt_batch")?
                .eval_batch_until(&batch, &|| run.cancelled());
            st.batch.clear();
            changed(st, 0);
            if !done? {
                return Err(cancelled());
            }
            st.batch.several(n);
            Ok(())
        })
    })
}

/// Makes sequence `dst` a copy of sequence `src`: its tokens, its KV cache rows and
/// its last logits, replacing what `dst` held. A prompt evaluated once in one
/// sequence then continues in several (`dst` can be sampled at once). `src == dst`
/// does nothing. `LLMRT_ERR_INVALID_ARG` for a sequence out of range,
/// `LLMRT_ERR_NO_MEMORY` when `dst`'s cache cannot grow (`dst` unchanged).
#[no_mangle]
pub extern "C" fn llmrt_seq_copy(ctx: *mut llmrt_context, src: u32, dst: u32) -> llmrt_status {
    guard(|| {
        with_ctx(ctx, |_, st| {
            let (s, d) = (seq_index(st, src)?, seq_index(st, dst)?);
            st.ctx.cpu_only_mut("llmrt_seq_copy")?.seq_copy(s, d)?;
            changed(st, d);
            Ok(())
        })
    })
}

/// Keeps the first `n` tokens of sequence `seq` and drops the rest (a shared prefix
/// kept, the continuation discarded). `n` above the sequence's length is
/// `LLMRT_ERR_INVALID_ARG`, as a sequence out of range. After a cut, evaluate at
/// least one token of the sequence before sampling it.
#[no_mangle]
pub extern "C" fn llmrt_seq_truncate(ctx: *mut llmrt_context, seq: u32, n: usize) -> llmrt_status {
    guard(|| {
        with_ctx(ctx, |_, st| {
            let s = seq_index(st, seq)?;
            let have = st.ctx.cpu_only("llmrt_seq_truncate")?.seq_tokens(s)?.len();
            if n > have {
                return Err(Fail::new(
                    LLMRT_ERR_INVALID_ARG,
                    format!("cannot keep {n} tokens: sequence {seq} holds {have}"),
                ));
            }
            if n < have {
                st.ctx
                    .cpu_only_mut("llmrt_seq_truncate")?
                    .seq_truncate(s, n)?;
                changed(st, s);
            }
            Ok(())
        })
    })
}

/// Empties sequence `seq` (its room in the KV cache is free for new tokens).
/// `LLMRT_ERR_INVALID_ARG` for a sequence out of range.
#[no_mangle]
pub extern "C" fn llmrt_seq_remove(ctx: *mut llmrt_context, seq: u32) -> llmrt_status {
    guard(|| {
        with_ctx(ctx, |_, st| {
            let s = seq_index(st, seq)?;
            st.ctx.cpu_only_mut("llmrt_seq_remove")?.seq_remove(s)?;
            changed(st, s);
            Ok(())
        })
    })
}

/// Copies the tokens of sequence `seq` into `tokens[..cap]`; `*n_tokens` receives
/// their number (`tokens = NULL, cap = 0` asks for the count; too small a `cap`
/// gives `LLMRT_ERR_BUFFER_TOO_SMALL`). `LLMRT_ERR_INVALID_ARG` for a sequence out
/// of range.
///
/// # Safety
/// `tokens` must be NULL or writable for `cap` ids; `n_tokens` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_seq_tokens(
    ctx: *const llmrt_context,
    seq: u32,
    tokens: *mut u32,
    cap: usize,
    n_tokens: *mut usize,
) -> llmrt_status {
    guard(|| {
        // SAFETY: NULL or writable by contract.
        unsafe { put_opt(n_tokens, 0) };
        with_ctx(ctx, |_, st| {
            let s = seq_index(st, seq)?;
            let toks = st.ctx.cpu_only("llmrt_seq_tokens")?.seq_tokens(s)?;
            // SAFETY: forwarded contract.
            unsafe { copy_out(toks, 0, tokens, cap, n_tokens, "tokens") }
        })
    })
}

/// The logits of sequence `seq`'s last token (`vocab_size` floats) into
/// `logits[..cap]`; `*n` receives `vocab_size`. `LLMRT_ERR_NO_LOGITS` when they were
/// not computed (the sequence is empty, was cut, or its last `llmrt_batch` entry did
/// not ask for them); `LLMRT_ERR_INVALID_ARG` for a sequence out of range.
/// Sequence 0's are those of `llmrt_get_logits`.
///
/// # Safety
/// `logits` must be NULL or writable for `cap` floats; `n` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_get_logits_seq(
    ctx: *const llmrt_context,
    seq: u32,
    logits: *mut f32,
    cap: usize,
    n: *mut usize,
) -> llmrt_status {
    guard(|| {
        // SAFETY: NULL or writable by contract.
        unsafe { put_opt(n, 0) };
        with_ctx(ctx, |_, st| {
            let s = seq_index(st, seq)?;
            let src = st
                .ctx
                .cpu_only("llmrt_get_logits_seq")?
                .seq_logits(s)?
                .ok_or_else(|| no_logits(seq))?;
            // SAFETY: forwarded contract.
            unsafe { copy_out(src, 0, logits, cap, n, "logits") }
        })
    })
}

fn no_logits(seq: u32) -> Fail {
    Fail::new(
        LLMRT_ERR_NO_LOGITS,
        format!(
            "no logits for sequence {seq}: evaluate a token of it with logits asked for \
             (none since it was emptied or cut, or its last batch entry had logits = 0)"
        ),
    )
}

/// Gives sequence `seq` its own sampler settings for `llmrt_sample_seq`, and starts
/// its random stream from `params->seed`. For sequence 0 this is `llmrt_set_sampler`.
/// A sequence without settings of its own samples with the context's settings and
/// seed + `seq`, so that sequences differ by default.
/// A grammar is for the single-sequence calls (`llmrt_set_sampler`): here it is
/// `LLMRT_ERR_INVALID_ARG`, and `llmrt_sample_seq` refuses sequence 0 while it has one.
///
/// # Safety
/// `params` must be NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_seq_set_sampler(
    ctx: *mut llmrt_context,
    seq: u32,
    params: *const llmrt_sampler_params,
) -> llmrt_status {
    guard(|| {
        with_ctx(ctx, |_, st| {
            let s = seq_index(st, seq)?;
            if params.is_null() {
                return Err(null("params"));
            }
            let vocab = st.ctx.model().opts.vocab_size;
            // SAFETY: non-NULL and readable by contract, arrays included.
            let Sampling { cfg, grammar } = unsafe { sampler_config(&params.read(), vocab) }?;
            if grammar.is_some() {
                return Err(Fail::new(
                    LLMRT_ERR_INVALID_ARG,
                    "a grammar applies to the single-sequence calls (llmrt_set_sampler, llmrt_sample, llmrt_accept, llmrt_generate), not to llmrt_seq_set_sampler",
                ));
            }
            let sampler = Sampler::new(cfg.clone(), vocab);
            if s == 0 {
                st.sampler_cfg = cfg;
                st.sampler = sampler;
                st.matcher = None;
                st.grammar = None;
            } else {
                *seq_sampler(&mut st.seq_samplers, s)? = Some(sampler);
            }
            Ok(())
        })
    })
}

/// The slot of sequence `s`'s sampler in `samplers` (`s >= 1`), growing the table
/// on first use.
fn seq_sampler(samplers: &mut Vec<Option<Sampler>>, s: usize) -> Res<&mut Option<Sampler>> {
    if samplers.len() <= s {
        let more = s + 1 - samplers.len();
        samplers
            .try_reserve(more)
            .map_err(|_| Fail::new(LLMRT_ERR_NO_MEMORY, "not enough memory for the samplers"))?;
        samplers.resize_with(s + 1, || None);
    }
    Ok(&mut samplers[s])
}

/// Samples the next token of sequence `seq` from its last logits with its own
/// sampler chain (penalties see the sequence's tokens; its random stream continues
/// from call to call), into `*token`. For sequence 0 this is `llmrt_sample`. The
/// token is not evaluated: put it in the next `llmrt_batch`. `LLMRT_ERR_NO_LOGITS`
/// as `llmrt_get_logits_seq`.
///
/// # Safety
/// `token` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_sample_seq(
    ctx: *mut llmrt_context,
    seq: u32,
    token: *mut u32,
) -> llmrt_status {
    guard(|| {
        if token.is_null() {
            return Err(null("token"));
        }
        let id = with_ctx(ctx, |_, st| {
            let s = seq_index(st, seq)?;
            if s == 0 && st.matcher.is_some() {
                return Err(Fail::new(
                    LLMRT_ERR_INVALID_ARG,
                    "sequence 0 has a grammar: sample it with llmrt_sample and llmrt_accept",
                ));
            }
            let State {
                ctx,
                sampler,
                sampler_cfg,
                seq_samplers,
                scratch,
                ..
            } = st;
            let sampler = match s {
                0 => sampler,
                _ => seq_sampler(seq_samplers, s)?.get_or_insert_with(|| {
                    let mut c = sampler_cfg.clone();
                    c.seed = c.seed.wrapping_add(s as u64);
                    Sampler::new(c, ctx.model().opts.vocab_size)
                }),
            };
            let cpu = ctx.cpu_only("llmrt_sample_seq")?;
            let logits = cpu.seq_logits(s)?.ok_or_else(|| no_logits(seq))?;
            scratch.clear();
            scratch.extend_from_slice(logits);
            Ok(sampler.sample(scratch, cpu.seq_tokens(s)?))
        })?;
        // SAFETY: non-NULL and writable by contract.
        unsafe { put(token, id, "token") }
    })
}
