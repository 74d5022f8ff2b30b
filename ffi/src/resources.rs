//! What a context costs and how it runs: its memory before it is created, and its
//! thread count while it lives.

use crate::args::put;
use crate::context::{
    llmrt_context, llmrt_context_default_params, llmrt_context_params, resolve_threads,
    runtime_params, with_ctx,
};
use crate::device::EngineExt;
use crate::device::{check_device, LLMRT_DEVICE_CUDA};
use crate::model::{llmrt_model, model};
use crate::status::{guard, llmrt_status, Fail, LLMRT_ERR_INVALID_ARG, LLMRT_ERR_UNSUPPORTED};

/// Writes to `*bytes` the memory `llmrt_context_new(model, params, ...)` would
/// allocate: the KV cache, the forward pass's scratch and the sampler's logits
/// (`params` NULL: the defaults). Nothing is allocated; out-of-range sizes give the
/// status `llmrt_context_new` would. (`llmrt_eval_all` and `llmrt_embed` allocate
/// their outputs per call on top: `n × vocab_size` and `n × d_model` floats.) The
/// figure is a CPU context's (also for `LLMRT_DEVICE_AUTO`, which may run on the CPU);
/// with `LLMRT_DEVICE_CUDA` the call is `LLMRT_ERR_UNSUPPORTED`: a CUDA context checks
/// the GPU's free memory itself when it is created.
///
/// # Safety
/// `params` must be NULL or readable; `bytes` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_context_bytes_needed(
    model: *const llmrt_model,
    params: *const llmrt_context_params,
    bytes: *mut u64,
) -> llmrt_status {
    guard(|| {
        let m = self::model(model)?;
        if bytes.is_null() {
            return Err(crate::status::null("bytes"));
        }
        let p = if params.is_null() {
            llmrt_context_default_params()
        } else {
            // SAFETY: non-NULL and readable by contract; the struct is plain data.
            unsafe { params.read() }
        };
        // SAFETY: the arrays of a readable params struct, by contract.
        unsafe { crate::context::sampler_config(&p.sampler, m.opts.vocab_size) }?;
        if check_device(p.device)? == LLMRT_DEVICE_CUDA {
            return Err(Fail::new(
                LLMRT_ERR_UNSUPPORTED,
                "llmrt_context_bytes_needed counts a CPU context's memory; a CUDA context \
                 checks the GPU's memory when llmrt_context_new creates it",
            ));
        }
        let need = runtime_params(&p)?.bytes_needed(&m.opts)?;
        // The sampler's copy of the logits (`State::scratch`).
        let total = need
            .checked_add(m.opts.vocab_size as u64 * 4)
            .ok_or_else(|| Fail::new(LLMRT_ERR_INVALID_ARG, "context size overflows"))?;
        // SAFETY: non-NULL and writable by contract.
        unsafe { put(bytes, total, "bytes") }
    })
}

/// Changes the number of threads the context's matrix products use (0: one per
/// available CPU; at most 1024). Everything evaluated so far is kept; a call running
/// on another thread makes this `LLMRT_ERR_BUSY`. A CUDA context has no threads to
/// set (`LLMRT_ERR_UNSUPPORTED`).
#[no_mangle]
pub extern "C" fn llmrt_set_threads(ctx: *mut llmrt_context, n_threads: u32) -> llmrt_status {
    guard(|| {
        let threads = resolve_threads(n_threads)?;
        with_ctx(ctx, |_, st| {
            st.ctx
                .cpu_only_mut("llmrt_set_threads")?
                .set_threads(threads);
            Ok(())
        })
    })
}

/// The number of threads the context's matrix products use, into `*n_threads`
/// (`LLMRT_ERR_UNSUPPORTED` on a CUDA context).
///
/// # Safety
/// `n_threads` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_get_threads(
    ctx: *const llmrt_context,
    n_threads: *mut u32,
) -> llmrt_status {
    guard(|| {
        let n = with_ctx(ctx, |_, st| {
            Ok(st.ctx.cpu_only("llmrt_get_threads")?.threads())
        })?;
        // SAFETY: NULL or writable by contract.
        unsafe { put(n_threads, u32::try_from(n).unwrap_or(u32::MAX), "n_threads") }
    })
}
