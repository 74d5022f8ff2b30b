//! The library's version, so a program can check at run time that the library it
//! loaded speaks the ABI of the header it was compiled with.

use std::ffi::{c_char, CStr};

/// Major version of this header (the crate's).
pub const LLMRT_VERSION_MAJOR: u32 = 0;
/// Minor version of this header.
pub const LLMRT_VERSION_MINOR: u32 = 1;
/// Patch version of this header.
pub const LLMRT_VERSION_PATCH: u32 = 0;
/// `MAJOR * 10000 + MINOR * 100 + PATCH`, as `llmrt_version_number` returns. While the
/// major version is 0, the ABI is the same only for the same major and minor versions:
/// check `llmrt_version_number() / 100 == LLMRT_VERSION_NUMBER / 100`.
pub const LLMRT_VERSION_NUMBER: u32 = 100;

const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };

/// The library's version, "MAJOR.MINOR.PATCH" (a static string).
#[no_mangle]
pub extern "C" fn llmrt_version() -> *const c_char {
    VERSION.as_ptr()
}

/// The library's version as `MAJOR * 10000 + MINOR * 100 + PATCH`; compare with the
/// header's `LLMRT_VERSION_NUMBER`.
#[no_mangle]
pub extern "C" fn llmrt_version_number() -> u32 {
    LLMRT_VERSION_MAJOR * 10000 + LLMRT_VERSION_MINOR * 100 + LLMRT_VERSION_PATCH
}
