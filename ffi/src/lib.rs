//! libllmrt: the C ABI over the llmrt runtime (`ffi/include/llmrt.h`, generated from
//! this crate by cbindgen in `build.rs`).
//!
//! Conventions, for every `llmrt_*` function:
//! * the return value is an `llmrt_status` (0 = `LLMRT_OK`, negative = an error whose
//!   text `llmrt_last_error()` returns on the same thread), except the few functions
//!   that cannot fail (version, defaults, error text);
//! * no panic crosses the boundary: each entry runs inside `catch_unwind`;
//! * handles are opaque and checked against a registry of live objects, so NULL, freed
//!   or foreign handles are `LLMRT_ERR_BAD_HANDLE` (or `LLMRT_ERR_NULL`), not a crash;
//! * outputs go to caller buffers with an explicit capacity; the needed size is always
//!   reported, so a too-small buffer is `LLMRT_ERR_BUFFER_TOO_SMALL`, never an overflow;
//! * text in is UTF-8 with an explicit length (checked); text out is UTF-8 with a
//!   length and a NUL terminator.
//!
//! Modules: `status` (codes, last error, the guard), `handles` (live-handle registry),
//! `args` (reading C arguments), `version`, `model`, `load` (loading with a progress
//! callback), `context` (step-by-step API), `device` (CPU or CUDA GPU contexts), `cancel` (cancelling the running call),
//! `logits` (every position's logits), `embed` (sentence embeddings), `resources`
//! (a context's memory and threads), `sequences` (several sequences in one context:
//! batches, copies, per-sequence logits and samplers), `generate` (one-call streaming generation),
//! `state` (saving and restoring a context), `chat` (chat templates).

#![deny(missing_docs)]

// Every entry point relies on catching panics; with `panic = "abort"` a bug would
// take the host process down instead of returning `LLMRT_ERR_INTERNAL`.
#[cfg(panic = "abort")]
compile_error!("libllmrt must be built with panic = \"unwind\" (its entry points catch panics)");

mod args;
mod cancel;
pub mod chat;
pub mod context;
pub mod device;
pub mod embed;
pub mod generate;
mod handles;
pub mod load;
pub mod logits;
pub mod model;
pub mod resources;
pub mod sequences;
pub mod state;
pub mod status;
pub mod version;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_capi;
#[cfg(all(test, feature = "cuda"))]
mod tests_device;
#[cfg(test)]
mod tests_seq;
