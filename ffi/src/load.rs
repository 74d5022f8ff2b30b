//! Loading with options: a progress callback that sees the file read in, and may
//! stop the load.

use crate::args::put;
use crate::model::{llmrt_model, path_from_bytes, MODELS};
use crate::status::{guard, llmrt_status, null, Fail, LLMRT_ERR_CANCELLED};
use rt::Model;
use std::ffi::{c_char, c_void, CStr};

/// Receives the progress of a load, from 0 to 1 (non-decreasing; 1 is the last
/// call). Return 0 to go on, non-zero to stop the load (`LLMRT_ERR_CANCELLED`). It
/// must not unwind (no C++ exception, no longjmp) out of the call.
#[allow(non_camel_case_types)]
pub type llmrt_progress_fn =
    Option<unsafe extern "C" fn(progress: f32, user_data: *mut c_void) -> i32>;

/// How to load a model. `llmrt_model_default_params` gives the defaults.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llmrt_model_params {
    /// Called as the load goes (may be NULL). With a callback, the load also reads
    /// every page of the file in, so the first evaluation does not wait for the disk,
    /// and the progress is the share of the file read. Default NULL.
    pub progress: llmrt_progress_fn,
    /// Passed to `progress`. Default NULL.
    pub progress_user_data: *mut c_void,
}

/// The defaults for `llmrt_model_load_with_params`.
#[no_mangle]
pub extern "C" fn llmrt_model_default_params() -> llmrt_model_params {
    llmrt_model_params {
        progress: None,
        progress_user_data: std::ptr::null_mut(),
    }
}

/// Bytes read between two progress calls (at most; a small file gets a few calls).
const STEP: usize = 4 << 20;

/// Page size assumed when touching the mapping (a smaller real page only means some
/// pages are read by the kernel's read-ahead rather than by a touch).
const PAGE: usize = 4096;

/// Reads every page of `bytes` in, calling `progress` every `STEP` bytes; `false`
/// when it asked to stop.
fn read_in(bytes: &[u8], progress: impl Fn(f32) -> bool) -> bool {
    let total = bytes.len().max(1);
    let mut acc = 0u8;
    for (k, chunk) in bytes.chunks(STEP).enumerate() {
        for page in chunk.chunks(PAGE) {
            acc ^= page[0];
        }
        std::hint::black_box(acc);
        let done = (k * STEP + chunk.len()) as f64 / total as f64;
        // The final 1.0 comes after the load is complete.
        if !progress((done as f32).min(0.999)) {
            return false;
        }
    }
    true
}

/// As `llmrt_model_load`, with options (`params` NULL: the defaults, the same as
/// `llmrt_model_load`). With `params->progress`, it is called with 0 first, then as
/// the file is read in, then with 1 once the model is ready; a non-zero return stops
/// the load with `LLMRT_ERR_CANCELLED` (and `*out` NULL).
///
/// # Safety
/// `path` must be NULL or NUL-terminated; `params` NULL or readable (its callback
/// following `llmrt_progress_fn`'s contract); `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_model_load_with_params(
    path: *const c_char,
    params: *const llmrt_model_params,
    out: *mut *mut llmrt_model,
) -> llmrt_status {
    guard(|| {
        // SAFETY: `out` is NULL or writable by contract.
        unsafe { put(out, std::ptr::null_mut(), "out") }?;
        if path.is_null() {
            return Err(null("path"));
        }
        let p = if params.is_null() {
            llmrt_model_default_params()
        } else {
            // SAFETY: non-NULL and readable by contract; plain data.
            unsafe { params.read() }
        };
        let report = |x: f32| -> bool {
            let Some(f) = p.progress else { return true };
            // SAFETY: the callback's contract, with the caller's own user data.
            let rc = unsafe { f(x, p.progress_user_data) };
            rc == 0
        };
        let stop = || {
            Fail::new(
                LLMRT_ERR_CANCELLED,
                "loading stopped by the progress callback",
            )
        };
        if !report(0.0) {
            return Err(stop());
        }
        // SAFETY: non-NULL and NUL-terminated by contract.
        let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
        let model = Model::load(&path_from_bytes(bytes))?;
        if p.progress.is_some() && !read_in(model.bytes(), report) {
            return Err(stop());
        }
        if !report(1.0) {
            return Err(stop());
        }
        let h = MODELS.insert(model);
        // SAFETY: checked writable above.
        unsafe { put(out, h as *mut llmrt_model, "out") }
    })
}
