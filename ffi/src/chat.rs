//! Chat templates: render a conversation in the model's own Jinja chat template (or a
//! built-in or caller's one) as `transformers`' `apply_chat_template` does, to be
//! tokenized and generated from.

use crate::args::{c_text, copy_out, put_opt, slice};
use crate::model::{llmrt_model, model};
use crate::status::{guard, llmrt_status, Fail, LLMRT_ERR_FORMAT, LLMRT_ERR_INVALID_ARG};
use rt::chat::{ChatError, ChatTemplate, Message};
use std::ffi::c_char;

/// One message of a conversation: NUL-terminated UTF-8 `role` ("system", "user",
/// "assistant", ...) and `content`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llmrt_chat_message {
    /// Who speaks.
    pub role: *const c_char,
    /// What is said.
    pub content: *const c_char,
}

/// Renders `messages[0..n_messages]` in a chat template into `buf[..cap]` as UTF-8
/// text, NUL-terminated; `*len` receives its length without the NUL (always, so `buf =
/// NULL, cap = 0` asks for the size: `LLMRT_ERR_BUFFER_TOO_SMALL`).
///
/// `chat_template`: NULL for the model's own (its file's `tokenizer.chat_template`),
/// else a NUL-terminated built-in name (`"chatml"`, `"llama3"`, `"gemma"`) or Jinja
/// source. `add_generation_prompt` non-zero ends the text with the assistant's
/// header, ready for the model's answer. The text contains the template's special
/// tokens (`<|im_start|>`, the BOS piece, ...) as text.
///
/// Errors: `LLMRT_ERR_INVALID_ARG` when the model has no template and NULL was given,
/// when the given template does not parse, or when the template refuses the
/// conversation (e.g. roles that do not alternate; the message is the template's);
/// `LLMRT_ERR_FORMAT` when the model's own template does not parse.
///
/// # Safety
/// `chat_template` must be NULL or NUL-terminated; `messages` must be NULL or point to
/// `n_messages` messages whose strings are NUL-terminated; `buf` must be NULL or
/// writable for `cap` bytes; `len` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_chat_apply_template(
    model: *const llmrt_model,
    chat_template: *const c_char,
    messages: *const llmrt_chat_message,
    n_messages: usize,
    add_generation_prompt: i32,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> llmrt_status {
    guard(|| {
        // SAFETY: NULL or writable by contract.
        unsafe { put_opt(len, 0) };
        let m = self::model(model)?;
        let choice = if chat_template.is_null() {
            None
        } else {
            // SAFETY: non-NULL and NUL-terminated by contract.
            Some(unsafe { c_text(chat_template, "chat_template") }?)
        };
        // SAFETY: `n_messages` readable messages by contract.
        let raw = unsafe { slice(messages, n_messages, "messages") }?;
        let mut conv = Vec::with_capacity(raw.len());
        for (i, msg) in raw.iter().enumerate() {
            // SAFETY: each string is NULL or NUL-terminated by contract.
            let role = unsafe { c_text(msg.role, &format!("messages[{i}].role")) }?;
            // SAFETY: as above.
            let content = unsafe { c_text(msg.content, &format!("messages[{i}].content")) }?;
            conv.push(Message::new(role, content));
        }
        let t = ChatTemplate::for_model(&m, choice).map_err(|e| {
            let code = match (&e, choice) {
                (ChatError::Syntax(_) | ChatError::Model(_), None) => LLMRT_ERR_FORMAT,
                _ => LLMRT_ERR_INVALID_ARG,
            };
            Fail::new(code, e.to_string())
        })?;
        let text = t
            .render(&conv, add_generation_prompt != 0)
            .map_err(|e| Fail::new(LLMRT_ERR_INVALID_ARG, e.to_string()))?;
        // SAFETY: `buf` writable for `cap` bytes, `len` writable, by contract.
        unsafe { copy_out(text.as_bytes(), 1, buf.cast::<u8>(), cap, len, "text") }
    })
}
