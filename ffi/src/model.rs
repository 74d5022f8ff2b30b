//! Models: load from a path (memory-mapped) or a caller's buffer, describe, free;
//! tokenize text and turn a token into its bytes. A model handle is read-only after
//! load, so any number of threads may use it (and contexts over it) at once.

use crate::args::{copy_out, put, put_opt, slice, text};
use crate::handles::Registry;
use crate::status::{guard, llmrt_status, Fail, Res, LLMRT_ERR_BAD_TOKEN, LLMRT_ERR_INVALID_ARG};
use llm_format::{DType, Mlp, Norm, Positions, TokenizerKind};
use rt::Model;
use std::ffi::{c_char, c_void, CStr};
use std::sync::Arc;

/// A loaded model (opaque). Free with `llmrt_model_free`; contexts made from it keep
/// it alive until they are freed too.
#[allow(non_camel_case_types)]
pub struct llmrt_model {
    _opaque: [u8; 0],
}

/// Every live model, by handle.
pub(crate) static MODELS: Registry<Model> = Registry::new("model");

/// The model behind a handle.
pub(crate) fn model(h: *const llmrt_model) -> Res<Arc<Model>> {
    MODELS.get(h as usize)
}

/// `add_bos` value meaning "as the model file asks" (its tokenizer's `add_bos` flag).
pub const LLMRT_BOS_DEFAULT: i32 = -1;

/// Whether to prepend BOS: `LLMRT_BOS_DEFAULT` (-1) follows the file, 0 never, 1 always
/// (when the vocabulary has a BOS token).
pub(crate) fn want_bos(m: &Model, add_bos: i32) -> Res<bool> {
    match add_bos {
        LLMRT_BOS_DEFAULT => Ok(m.tokenizer.add_bos()),
        0 => Ok(false),
        1 => Ok(true),
        v => Err(Fail::new(
            LLMRT_ERR_INVALID_ARG,
            format!("add_bos is {v}; use -1 (the model's default), 0 or 1"),
        )),
    }
}

fn register(r: Result<Model, rt::Error>, out: *mut *mut llmrt_model) -> Res<()> {
    let h = MODELS.insert(r?);
    // SAFETY: `out` was checked non-NULL by the caller and is writable by contract.
    unsafe { put(out, h as *mut llmrt_model, "out") }
}

/// Loads the `.llm` file at `path` (a NUL-terminated file name), memory-mapped: the
/// weights are read from the page cache, never copied. The file must not be modified
/// or truncated while the model is loaded.
///
/// On success `*out` is the new model; on failure it is NULL and the status is
/// `LLMRT_ERR_IO` (cannot open or map), `LLMRT_ERR_FORMAT` (malformed or corrupt), ...
///
/// # Safety
/// `path` must be NULL or NUL-terminated; `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_model_load(
    path: *const c_char,
    out: *mut *mut llmrt_model,
) -> llmrt_status {
    guard(|| {
        // SAFETY: `out` is NULL or writable by contract.
        unsafe { put(out, std::ptr::null_mut(), "out") }?;
        if path.is_null() {
            return Err(crate::status::null("path"));
        }
        // SAFETY: non-NULL and NUL-terminated by contract.
        let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
        let path = path_from_bytes(bytes);
        register(Model::load(&path), out)
    })
}

#[cfg(unix)]
pub(crate) fn path_from_bytes(b: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(b).into()
}

#[cfg(not(unix))]
pub(crate) fn path_from_bytes(b: &[u8]) -> std::path::PathBuf {
    String::from_utf8_lossy(b).into_owned().into()
}

/// Loads a model from the caller's bytes `data[..len]`, copied once into aligned
/// memory: the caller may free its buffer as soon as this returns.
///
/// # Safety
/// `data` must be NULL or point to `len` readable bytes; `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_model_load_from_buffer(
    data: *const c_void,
    len: usize,
    out: *mut *mut llmrt_model,
) -> llmrt_status {
    guard(|| {
        // SAFETY: `out` is NULL or writable by contract.
        unsafe { put(out, std::ptr::null_mut(), "out") }?;
        if data.is_null() {
            return Err(crate::status::null("data"));
        }
        // SAFETY: `len` readable bytes by contract.
        let bytes = unsafe { slice(data.cast::<u8>(), len, "data") }?;
        register(Model::from_bytes(bytes), out)
    })
}

/// Loads a model that reads its weights straight from the caller's bytes `data[..len]`,
/// without a copy when `data` is 64-byte aligned (else it is copied, as
/// `llmrt_model_load_from_buffer`).
///
/// # Safety
/// As `llmrt_model_load_from_buffer`, and: the bytes must stay valid and unchanged
/// until the model *and every context made from it* have been freed.
#[no_mangle]
pub unsafe extern "C" fn llmrt_model_load_from_buffer_nocopy(
    data: *const c_void,
    len: usize,
    out: *mut *mut llmrt_model,
) -> llmrt_status {
    guard(|| {
        // SAFETY: `out` is NULL or writable by contract.
        unsafe { put(out, std::ptr::null_mut(), "out") }?;
        if data.is_null() {
            return Err(crate::status::null("data"));
        }
        // SAFETY: `len` readable bytes by contract, and the caller keeps them alive and
        // unchanged for as long as the model exists (the documented contract), which is
        // what 'static stands for here: the model is dropped before the bytes go.
        let bytes: &'static [u8] = unsafe { slice(data.cast::<u8>(), len, "data") }?;
        register(Model::from_static(bytes), out)
    })
}

/// Releases the caller's reference to a model (contexts hold their own). NULL is a
/// no-op; a handle that is not a live model gives `LLMRT_ERR_BAD_HANDLE`.
#[no_mangle]
pub extern "C" fn llmrt_model_free(model: *mut llmrt_model) -> llmrt_status {
    guard(|| {
        let m = MODELS.remove(model as usize)?;
        drop(m);
        Ok(())
    })
}

/// What a model is: its options, vocabulary and storage type. Strings are static.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llmrt_model_info {
    /// Number of tokens.
    pub vocab_size: u32,
    /// Width of the residual stream.
    pub d_model: u32,
    /// Decoder blocks.
    pub n_layers: u32,
    /// Attention (query) heads.
    pub n_heads: u32,
    /// Key/value heads (< n_heads: grouped-query attention).
    pub n_kv_heads: u32,
    /// Hidden width of the MLP.
    pub d_ff: u32,
    /// Context length the model was trained for (`max_len`).
    pub context_length: u32,
    /// "learned", "sinusoidal" or "rope".
    pub positions: *const c_char,
    /// "layernorm" or "rmsnorm".
    pub norm: *const c_char,
    /// "gelu", "relu" or "swiglu".
    pub mlp: *const c_char,
    /// 1 if linear layers have biases.
    pub bias: i32,
    /// 1 if the output projection is the token embedding.
    pub tied_embeddings: i32,
    /// Normalisation epsilon.
    pub norm_eps: f32,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// Storage type of the weight matrices: "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1".
    pub dtype: *const c_char,
    /// Tokenizer: "gpt2", "sentencepiece", "char", "raw-bpe" or "wpm".
    pub tokenizer: *const c_char,
    /// Beginning-of-sequence token, or -1.
    pub bos: i32,
    /// End-of-sequence token, or -1.
    pub eos: i32,
    /// 1 if the file asks for BOS before a prompt.
    pub add_bos: i32,
    /// Number of parameters.
    pub n_params: u64,
    /// Size of the model file in bytes.
    pub file_size: u64,
}

fn c_name(s: &'static CStr) -> *const c_char {
    s.as_ptr()
}

fn dtype_name(d: DType) -> &'static CStr {
    d.c_name()
}

fn u32_of(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn id_of(v: Option<u32>) -> i32 {
    v.and_then(|v| i32::try_from(v).ok()).unwrap_or(-1)
}

/// Fills `*out` with the model's description.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_model_get_info(
    model: *const llmrt_model,
    out: *mut llmrt_model_info,
) -> llmrt_status {
    guard(|| {
        let m = self::model(model)?;
        let o = &m.opts;
        let tok = &m.tokenizer;
        let info = llmrt_model_info {
            vocab_size: u32_of(o.vocab_size),
            d_model: u32_of(o.d_model),
            n_layers: u32_of(o.n_layers),
            n_heads: u32_of(o.n_heads),
            n_kv_heads: u32_of(o.n_kv_heads),
            d_ff: u32_of(o.d_ff),
            context_length: u32_of(o.max_len),
            positions: c_name(match o.positions {
                Positions::Learned => c"learned",
                Positions::Sinusoidal => c"sinusoidal",
                Positions::Rope => c"rope",
            }),
            norm: c_name(match o.norm {
                Norm::LayerNorm => c"layernorm",
                Norm::RmsNorm => c"rmsnorm",
            }),
            mlp: c_name(match o.mlp {
                Mlp::Gelu => c"gelu",
                Mlp::Relu => c"relu",
                Mlp::SwiGlu => c"swiglu",
                Mlp::GeGlu => c"geglu",
            }),
            bias: o.bias.into(),
            tied_embeddings: o.tied_embeddings.into(),
            norm_eps: o.norm_eps,
            rope_base: o.rope_base,
            dtype: c_name(dtype_name(m.main_dtype)),
            tokenizer: c_name(match tok.kind() {
                TokenizerKind::Gpt2 => c"gpt2",
                TokenizerKind::SentencePiece => c"sentencepiece",
                TokenizerKind::Char => c"char",
                TokenizerKind::RawBpe => c"raw-bpe",
                TokenizerKind::Wpm => c"wpm",
            }),
            bos: id_of(tok.bos()),
            eos: id_of(tok.eos()),
            add_bos: tok.add_bos().into(),
            n_params: o.n_params() as u64,
            file_size: m.bytes().len() as u64,
        };
        // SAFETY: `out` is NULL or writable by contract.
        unsafe { put(out, info, "out") }
    })
}

/// Tokenizes the UTF-8 text `text[..text_len]` (no terminator needed) into
/// `tokens[..cap]`. `add_bos`: `LLMRT_BOS_DEFAULT` (-1, as the file asks), 0 or 1.
/// Special tokens written in the text are spelled out as ordinary characters (but
/// user-defined tokens, as in llama.cpp); `llmrt_tokenize_special` parses them.
/// `*n_tokens` receives the number of ids; when `cap` is too small the status is
/// `LLMRT_ERR_BUFFER_TOO_SMALL` and `*n_tokens` is the size needed (so `tokens = NULL,
/// cap = 0` asks for the count).
///
/// # Safety
/// `text` must be NULL or hold `text_len` readable bytes; `tokens` must be NULL or
/// writable for `cap` ids; `n_tokens` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_tokenize(
    model: *const llmrt_model,
    text: *const c_char,
    text_len: usize,
    add_bos: i32,
    tokens: *mut u32,
    cap: usize,
    n_tokens: *mut usize,
) -> llmrt_status {
    // SAFETY: the caller's contract is this function's.
    unsafe { llmrt_tokenize_special(model, text, text_len, add_bos, 0, tokens, cap, n_tokens) }
}

/// As `llmrt_tokenize`, and with `parse_special` non-zero the special tokens written
/// in the text (`<|im_start|>`, `<s>`) become their ids, as llama.cpp's
/// `llama_tokenize(..., parse_special = true)`: what a prompt rendered by
/// `llmrt_chat_apply_template` needs. A template that writes BOS itself wants
/// `add_bos = 0`.
///
/// # Safety
/// As `llmrt_tokenize`.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // the C signature of llmrt_tokenize plus one flag
pub unsafe extern "C" fn llmrt_tokenize_special(
    model: *const llmrt_model,
    text: *const c_char,
    text_len: usize,
    add_bos: i32,
    parse_special: i32,
    tokens: *mut u32,
    cap: usize,
    n_tokens: *mut usize,
) -> llmrt_status {
    guard(|| {
        // SAFETY: NULL or writable by contract.
        unsafe { put_opt(n_tokens, 0) };
        let m = self::model(model)?;
        // SAFETY: `text_len` readable bytes by contract.
        let s = unsafe { self::text(text, text_len, "text") }?;
        let add_bos = want_bos(&m, add_bos)?;
        let tok = &m.tokenizer;
        let opts = rt::tokenizer::EncodeOptions {
            add_special: false,
            parse_special: parse_special != 0,
        };
        let mut ids = tok
            .encode_with(s, opts)
            .map_err(|e| Fail::new(LLMRT_ERR_INVALID_ARG, format!("tokenize: {e}")))?;
        if let Some(bos) = tok.bos().filter(|_| add_bos) {
            ids.insert(0, bos);
        }
        // SAFETY: `tokens` writable for `cap` ids, `n_tokens` writable, by contract.
        unsafe { copy_out(&ids, 0, tokens, cap, n_tokens, "tokens") }
    })
}

/// Writes the bytes token `token` decodes to into `buf[..cap]`, NUL-terminated;
/// `*len` receives their number (without the NUL). The bytes may be part of a UTF-8
/// character (byte tokens): concatenate pieces before printing, or use `llmrt_accept`
/// / `llmrt_generate`, which hand out whole characters. `cap` must be at least
/// `*len + 1`, else `LLMRT_ERR_BUFFER_TOO_SMALL` with `*len` set.
///
/// # Safety
/// `buf` must be NULL or writable for `cap` bytes; `len` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmrt_token_to_piece(
    model: *const llmrt_model,
    token: u32,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> llmrt_status {
    guard(|| {
        // SAFETY: NULL or writable by contract.
        unsafe { put_opt(len, 0) };
        let m = self::model(model)?;
        let bytes = m.tokenizer.token_bytes(token).ok_or_else(|| {
            Fail::new(
                LLMRT_ERR_BAD_TOKEN,
                format!(
                    "token id {token} is out of range (vocabulary size {})",
                    m.tokenizer.vocab_size()
                ),
            )
        })?;
        // SAFETY: `buf` writable for `cap` bytes, `len` writable, by contract.
        unsafe { copy_out(bytes, 1, buf.cast::<u8>(), cap, len, "piece") }
    })
}
