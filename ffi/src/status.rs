//! Status codes, the thread-local error text and [`guard`], the wrapper every entry
//! point runs in: it turns a typed failure into a status code plus a message, and a
//! panic into `LLMRT_ERR_INTERNAL`, so no unwind ever crosses into C.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The result of every fallible call: `LLMRT_OK` (0) or a negative error code.
#[allow(non_camel_case_types)]
pub type llmrt_status = i32;

/// Success.
pub const LLMRT_OK: llmrt_status = 0;
/// A required pointer argument is NULL.
pub const LLMRT_ERR_NULL: llmrt_status = -1;
/// An argument is out of range or meaningless (a size, a setting, a token count).
pub const LLMRT_ERR_INVALID_ARG: llmrt_status = -2;
/// Text given as UTF-8 is not valid UTF-8.
pub const LLMRT_ERR_UTF8: llmrt_status = -3;
/// The handle is not a live handle of the expected type (already freed, or garbage).
pub const LLMRT_ERR_BAD_HANDLE: llmrt_status = -4;
/// A file could not be opened, read or mapped.
pub const LLMRT_ERR_IO: llmrt_status = -5;
/// The model bytes are malformed, corrupt or of an unsupported version.
pub const LLMRT_ERR_FORMAT: llmrt_status = -6;
/// Not enough memory (e.g. for a context's KV cache).
pub const LLMRT_ERR_NO_MEMORY: llmrt_status = -7;
/// The tokens do not fit in the context: free some with `llmrt_kv_truncate`/`llmrt_kv_reset`.
pub const LLMRT_ERR_CONTEXT_FULL: llmrt_status = -8;
/// A token id is not below the vocabulary size.
pub const LLMRT_ERR_BAD_TOKEN: llmrt_status = -9;
/// The caller's output buffer is too small; the size needed was written to the length out-parameter.
pub const LLMRT_ERR_BUFFER_TOO_SMALL: llmrt_status = -10;
/// The context is being used by another thread right now (one thread per context at a time).
pub const LLMRT_ERR_BUSY: llmrt_status = -11;
/// The call needs logits but nothing has been evaluated since creation, reset or truncation.
pub const LLMRT_ERR_NO_LOGITS: llmrt_status = -12;
/// An internal error (a bug) was caught at the boundary; a context that saw one is unusable.
pub const LLMRT_ERR_INTERNAL: llmrt_status = -13;
/// The call was stopped by `llmrt_cancel` (or a load by its progress callback).
pub const LLMRT_ERR_CANCELLED: llmrt_status = -14;
/// A grammar or JSON schema in `llmrt_sampler_params` is malformed, unsupported or
/// unsatisfiable; or, during constrained sampling, the token is not allowed by the
/// grammar, or no token of the vocabulary can continue the output.
pub const LLMRT_ERR_GRAMMAR: llmrt_status = -15;
/// The device asked for cannot be used (no CUDA driver or GPU, no NVRTC, a model whose
/// storage types have no GPU kernels, a library built without CUDA), or it failed
/// during a call; `llmrt_last_error` says which.
pub const LLMRT_ERR_DEVICE: llmrt_status = -16;
/// The call or setting is not supported on the context's device yet (a CUDA context:
/// several sequences, state files, embeddings, thread counts); the message names it.
pub const LLMRT_ERR_UNSUPPORTED: llmrt_status = -17;

/// A failed call: its status code and the message `llmrt_last_error` will return.
#[derive(Debug)]
pub(crate) struct Fail {
    pub code: llmrt_status,
    pub msg: String,
}

impl Fail {
    /// A failure with `code` and message `msg`.
    pub fn new(code: llmrt_status, msg: impl Into<String>) -> Fail {
        Fail {
            code,
            msg: msg.into(),
        }
    }
}

/// What entry points compute before [`guard`] turns it into a status.
pub(crate) type Res<T> = Result<T, Fail>;

/// A NULL required argument, named.
pub(crate) fn null(what: &str) -> Fail {
    Fail::new(LLMRT_ERR_NULL, format!("{what} is NULL"))
}

/// Maps a runtime error to its status code; the message is the runtime's own line.
impl From<rt::Error> for Fail {
    fn from(e: rt::Error) -> Fail {
        use llm_format::FormatError;
        let code = match &e {
            rt::Error::Format(FormatError::Io(_)) => LLMRT_ERR_IO,
            rt::Error::Format(_) | rt::Error::Tokenizer(_) => LLMRT_ERR_FORMAT,
            rt::Error::BadToken(..) => LLMRT_ERR_BAD_TOKEN,
            rt::Error::ContextFull(..) => LLMRT_ERR_CONTEXT_FULL,
            rt::Error::EmptyPrompt => LLMRT_ERR_INVALID_ARG,
            rt::Error::NoMemory { .. } => LLMRT_ERR_NO_MEMORY,
            rt::Error::Grammar(_) => LLMRT_ERR_GRAMMAR,
            rt::Error::Device(_) => LLMRT_ERR_DEVICE,
            rt::Error::Invalid(_) => LLMRT_ERR_INVALID_ARG,
        };
        Fail::new(code, e.to_string())
    }
}

thread_local! {
    /// The message of the most recent failed call on this thread.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `msg` as this thread's last error (interior NULs become spaces).
pub(crate) fn set_last_error(msg: &str) {
    let bytes: Vec<u8> = msg.bytes().map(|b| if b == 0 { b' ' } else { b }).collect();
    let c = CString::new(bytes).unwrap_or_default();
    // `try_with` fails only while the thread is being torn down; then there is no one to read it.
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut slot) = e.try_borrow_mut() {
            *slot = c;
        }
    });
}

/// Runs an entry point's body: `Ok` gives `LLMRT_OK`; a [`Fail`] records its message
/// and gives its code; a panic records its payload and gives `LLMRT_ERR_INTERNAL`.
pub(crate) fn guard(body: impl FnOnce() -> Res<()>) -> llmrt_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => LLMRT_OK,
        Ok(Err(f)) => {
            set_last_error(&f.msg);
            f.code
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error: {what}"));
            LLMRT_ERR_INTERNAL
        }
    }
}

/// Runs an infallible entry point that returns a value; a panic gives `fallback`.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// The text of the most recent failed call on the calling thread ("" if none failed
/// yet). The pointer stays valid until the next failed call on this thread; copy the
/// text to keep it. Successful calls leave it unchanged.
#[no_mangle]
pub extern "C" fn llmrt_last_error() -> *const c_char {
    const EMPTY: &CStr = c"";
    guard_value(EMPTY.as_ptr(), || {
        LAST_ERROR
            .try_with(|e| e.try_borrow().map_or(EMPTY.as_ptr(), |s| s.as_ptr()))
            .unwrap_or(EMPTY.as_ptr())
    })
}

/// The name of a status code ("LLMRT_OK", "LLMRT_ERR_NULL", ...), or "unknown status".
/// The string is static.
#[no_mangle]
pub extern "C" fn llmrt_status_name(status: llmrt_status) -> *const c_char {
    let name: &'static CStr = match status {
        LLMRT_OK => c"LLMRT_OK",
        LLMRT_ERR_NULL => c"LLMRT_ERR_NULL",
        LLMRT_ERR_INVALID_ARG => c"LLMRT_ERR_INVALID_ARG",
        LLMRT_ERR_UTF8 => c"LLMRT_ERR_UTF8",
        LLMRT_ERR_BAD_HANDLE => c"LLMRT_ERR_BAD_HANDLE",
        LLMRT_ERR_IO => c"LLMRT_ERR_IO",
        LLMRT_ERR_FORMAT => c"LLMRT_ERR_FORMAT",
        LLMRT_ERR_NO_MEMORY => c"LLMRT_ERR_NO_MEMORY",
        LLMRT_ERR_CONTEXT_FULL => c"LLMRT_ERR_CONTEXT_FULL",
        LLMRT_ERR_BAD_TOKEN => c"LLMRT_ERR_BAD_TOKEN",
        LLMRT_ERR_BUFFER_TOO_SMALL => c"LLMRT_ERR_BUFFER_TOO_SMALL",
        LLMRT_ERR_BUSY => c"LLMRT_ERR_BUSY",
        LLMRT_ERR_NO_LOGITS => c"LLMRT_ERR_NO_LOGITS",
        LLMRT_ERR_INTERNAL => c"LLMRT_ERR_INTERNAL",
        LLMRT_ERR_CANCELLED => c"LLMRT_ERR_CANCELLED",
        LLMRT_ERR_GRAMMAR => c"LLMRT_ERR_GRAMMAR",
        LLMRT_ERR_DEVICE => c"LLMRT_ERR_DEVICE",
        LLMRT_ERR_UNSUPPORTED => c"LLMRT_ERR_UNSUPPORTED",
        _ => c"unknown status",
    };
    name.as_ptr()
}
