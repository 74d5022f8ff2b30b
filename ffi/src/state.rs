//! Saving a context's state (its tokens, last logits and KV cache) to a file and
//! restoring it later, in this process or another, over the same model: a
//! conversation continues exactly where it stopped. The file is versioned, tied to
//! the model and checksummed (`llmrt::state`).

use crate::context::{llmrt_context, with_ctx};
use crate::device::EngineExt;
use crate::model::path_from_bytes;
use crate::status::{
    guard, llmrt_status, null, Fail, Res, LLMRT_ERR_FORMAT, LLMRT_ERR_INVALID_ARG, LLMRT_ERR_IO,
};
use rt::generate::Decoder;
use rt::tokenizer::StreamDecoder;
use std::ffi::{c_char, CStr};

/// The path argument `path` (NUL-terminated, any bytes on Unix).
///
/// # Safety
/// `path` must be NULL or NUL-terminated.
unsafe fn path_arg(path: *const c_char) -> Res<std::path::PathBuf> {
    if path.is_null() {
        return Err(null("path"));
    }
    // SAFETY: non-NULL and NUL-terminated by contract.
    Ok(path_from_bytes(unsafe { CStr::from_ptr(path) }.to_bytes()))
}

/// Saves the state of `ctx` to the file `path`, written atomically (a crash leaves
/// the old file or the whole new one). `LLMRT_ERR_IO` if it cannot be written. The
/// file holds sequence 0: while another sequence holds tokens, the call refuses
/// with `LLMRT_ERR_INVALID_ARG`. A CUDA context cannot be saved yet
/// (`LLMRT_ERR_UNSUPPORTED`).
///
/// # Safety
/// `path` must be NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn llmrt_state_save(
    ctx: *mut llmrt_context,
    path: *const c_char,
) -> llmrt_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let path = unsafe { path_arg(path) }?;
        with_ctx(ctx, |_, st| {
            let cpu = st.ctx.cpu_only("llmrt_state_save")?;
            if let Some(s) =
                (1..cpu.n_seq()).find(|&s| cpu.seq_tokens(s).is_ok_and(|t| !t.is_empty()))
            {
                return Err(Fail::new(
                    LLMRT_ERR_INVALID_ARG,
                    format!("sequence {s} holds tokens; a state file holds sequence 0 only (llmrt_seq_remove the others first)"),
                ));
            }
            cpu.save_state_file(&path)
                .map_err(|e| Fail::new(LLMRT_ERR_IO, e.to_string()))
        })
    })
}

/// Restores into `ctx` a state that `llmrt_state_save` wrote from a context over the
/// same model with the same cache type; the logits of the last saved token are then
/// available to `llmrt_sample`. `LLMRT_ERR_IO` if the file cannot be read,
/// `LLMRT_ERR_FORMAT` if it is not a state file of this version, model and cache
/// type, or is truncated or corrupt, `LLMRT_ERR_NO_MEMORY` if the cache cannot grow
/// to hold it. A state with more tokens than the context holds is `LLMRT_ERR_FORMAT`
/// too. The state goes into sequence 0; the other sequences are emptied. On any
/// error the context is unchanged. A CUDA context cannot load one yet
/// (`LLMRT_ERR_UNSUPPORTED`).
///
/// # Safety
/// `path` must be NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn llmrt_state_load(
    ctx: *mut llmrt_context,
    path: *const c_char,
) -> llmrt_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let path = unsafe { path_arg(path) }?;
        with_ctx(ctx, |_, st| {
            let cpu = st.ctx.cpu_only_mut("llmrt_state_load")?;
            let mut f = std::fs::File::open(&path)
                .map_err(|e| Fail::new(LLMRT_ERR_IO, format!("{}: {e}", path.display())))?;
            cpu.load_state(&mut f).map_err(|e| match e {
                rt::Error::Invalid(m) => {
                    Fail::new(LLMRT_ERR_FORMAT, format!("{}: {m}", path.display()))
                }
                other => Fail::from(other),
            })?;
            st.has_logits = !st.ctx.tokens().is_empty();
            st.batch.clear();
            st.decoder = StreamDecoder::new();
            Ok(())
        })
    })
}
