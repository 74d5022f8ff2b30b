//! Reading C arguments: pointers checked for NULL, lengths for range, text for UTF-8,
//! before any slice is formed.

use crate::status::{
    null, Fail, Res, LLMRT_ERR_BUFFER_TOO_SMALL, LLMRT_ERR_INVALID_ARG, LLMRT_ERR_UTF8,
};
use std::ffi::c_char;

/// Most elements a caller's array may claim; larger lengths are garbage, not arrays
/// (a slice may not span more than `isize::MAX` bytes).
fn check_len<T>(len: usize, what: &str) -> Res<()> {
    let max = isize::MAX as usize / std::mem::size_of::<T>().max(1);
    if len > max {
        return Err(Fail::new(
            LLMRT_ERR_INVALID_ARG,
            format!("{what}: length {len} is out of range"),
        ));
    }
    Ok(())
}

/// The caller's array `ptr[..len]`; NULL is allowed only when `len == 0`.
///
/// # Safety
/// When non-NULL, `ptr` must point to `len` readable, initialised elements that stay
/// unchanged during the call.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, len: usize, what: &str) -> Res<&'a [T]> {
    check_len::<T>(len, what)?;
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL, length in range, and the caller guarantees `len` readable elements.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The caller's tokens to evaluate, `tokens[..n]`: as [`slice`], and `n` may not be 0.
///
/// # Safety
/// As [`slice`].
pub(crate) unsafe fn eval_tokens<'a>(tokens: *const u32, n: usize) -> Res<&'a [u32]> {
    // SAFETY: forwarded contract.
    let toks = unsafe { slice(tokens, n, "tokens") }?;
    if toks.is_empty() {
        return Err(Fail::new(
            LLMRT_ERR_INVALID_ARG,
            "no tokens to evaluate (n is 0)",
        ));
    }
    Ok(toks)
}

/// The caller's UTF-8 text `ptr[..len]` (NUL bytes allowed; no terminator needed).
///
/// # Safety
/// As [`slice`].
pub(crate) unsafe fn text<'a>(ptr: *const c_char, len: usize, what: &str) -> Res<&'a str> {
    // SAFETY: forwarded contract.
    let bytes = unsafe { slice(ptr.cast::<u8>(), len, what) }?;
    std::str::from_utf8(bytes).map_err(|e| {
        Fail::new(
            LLMRT_ERR_UTF8,
            format!("{what} is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })
}

/// A NUL-terminated UTF-8 string (e.g. a stop string).
///
/// # Safety
/// When non-NULL, `ptr` must point to a NUL-terminated string.
pub(crate) unsafe fn c_text<'a>(ptr: *const c_char, what: &str) -> Res<&'a str> {
    if ptr.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL and NUL-terminated by contract.
    let c = unsafe { std::ffi::CStr::from_ptr(ptr) };
    c.to_str().map_err(|e| {
        Fail::new(
            LLMRT_ERR_UTF8,
            format!("{what} is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })
}

/// Writes `value` to the out-parameter `out`.
///
/// # Safety
/// When non-NULL, `out` must be valid for a write of `T`.
pub(crate) unsafe fn put<T>(out: *mut T, value: T, what: &str) -> Res<()> {
    if out.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL and writable by contract; `write` does not drop the old value,
    // which may be uninitialised.
    unsafe { out.write(value) };
    Ok(())
}

/// Writes the optional out-parameter `out` when it is non-NULL.
///
/// # Safety
/// As [`put`].
pub(crate) unsafe fn put_opt<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-NULL and writable by contract.
        unsafe { out.write(value) };
    }
}

/// Copies `src` into the caller's array `dst[..cap]` and writes `src.len()` to `len`
/// (always, so a caller can size a retry). Fails with `LLMRT_ERR_BUFFER_TOO_SMALL`
/// when `cap < src.len() + extra` (`extra` = 1 for a NUL terminator, whose slot is
/// written with `T::default()`).
///
/// # Safety
/// `len` as [`put`]; `dst`, when non-NULL, must be valid for `cap` writes of `T`.
pub(crate) unsafe fn copy_out<T: Copy + Default>(
    src: &[T],
    extra: usize,
    dst: *mut T,
    cap: usize,
    len: *mut usize,
    what: &str,
) -> Res<()> {
    // SAFETY: forwarded contract.
    unsafe { put(len, src.len(), "length out-parameter") }?;
    let need = src.len() + extra;
    if cap < need {
        return Err(Fail::new(
            LLMRT_ERR_BUFFER_TOO_SMALL,
            format!("{what}: the buffer holds {cap} but {need} are needed"),
        ));
    }
    if need == 0 {
        return Ok(());
    }
    if dst.is_null() {
        return Err(null(what));
    }
    check_len::<T>(cap, what)?;
    // SAFETY: `dst` is non-NULL and valid for `cap >= need` writes by contract; the
    // source is our own memory, so the ranges do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len());
        if extra > 0 {
            dst.add(src.len()).write(T::default());
        }
    }
    Ok(())
}
