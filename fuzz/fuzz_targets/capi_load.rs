//! `llmrt_model_load_from_buffer` through the C ABI, as a C caller uses it: any bytes
//! give a status, never a crash; on success the model's info, tokenizer, a small
//! context and one evaluation work, and everything frees cleanly. Tried as given and
//! resealed (see `llm_reader`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_format::testing::reseal;
use llmrt_capi::context::{
    llmrt_context, llmrt_context_default_params, llmrt_context_free, llmrt_context_new, llmrt_eval,
};
use llmrt_capi::model::{
    llmrt_model, llmrt_model_free, llmrt_model_get_info, llmrt_model_info,
    llmrt_model_load_from_buffer, llmrt_token_to_piece, llmrt_tokenize_special,
};
use llmrt_capi::status::LLMRT_OK;

fn load(bytes: &[u8]) {
    let mut m: *mut llmrt_model = std::ptr::null_mut();
    // SAFETY: `bytes` is readable for its length; `m` is writable.
    let st = unsafe { llmrt_model_load_from_buffer(bytes.as_ptr().cast(), bytes.len(), &mut m) };
    if st != LLMRT_OK {
        assert!(m.is_null(), "a failed load must leave *out NULL");
        return;
    }
    assert!(!m.is_null());
    let mut info = std::mem::MaybeUninit::<llmrt_model_info>::zeroed();
    // SAFETY: a live model and a writable info struct.
    assert_eq!(
        unsafe { llmrt_model_get_info(m, info.as_mut_ptr()) },
        LLMRT_OK
    );
    // SAFETY: written by the successful call above.
    let vocab = unsafe { info.assume_init() }.vocab_size;
    let text = "Hello, world! é\n<s> 12\t<|im_start|>";
    let mut ids = [0u32; 64];
    let mut n = 0usize;
    // SAFETY: `text` readable, `ids` writable for its length, `n` writable.
    let st = unsafe {
        llmrt_tokenize_special(
            m,
            text.as_ptr().cast(),
            text.len(),
            1,
            1,
            ids.as_mut_ptr(),
            ids.len(),
            &mut n,
        )
    };
    let ids = if st == LLMRT_OK {
        &ids[..n.min(64)]
    } else {
        &[][..]
    };
    let mut piece = [0u8; 64];
    let mut len = 0usize;
    for &id in ids
        .iter()
        .chain(&[0, vocab.saturating_sub(1), vocab, u32::MAX])
    {
        // SAFETY: a live model, a writable buffer of `piece.len()` bytes and length.
        unsafe { llmrt_token_to_piece(m, id, piece.as_mut_ptr().cast(), piece.len(), &mut len) };
    }
    let mut p = llmrt_context_default_params();
    p.n_ctx = 8;
    p.n_threads = 1;
    let mut ctx: *mut llmrt_context = std::ptr::null_mut();
    // SAFETY: a live model, readable params, writable `ctx`.
    if unsafe { llmrt_context_new(m, &p, &mut ctx) } == LLMRT_OK {
        let first = ids.first().copied().unwrap_or(0);
        // SAFETY: a live context and one readable id.
        unsafe { llmrt_eval(ctx, &first, 1) };
        assert_eq!(llmrt_context_free(ctx), LLMRT_OK);
    }
    assert_eq!(llmrt_model_free(m), LLMRT_OK);
}

fuzz_target!(|data: &[u8]| {
    load(data);
    let mut sealed = data.to_vec();
    reseal(&mut sealed);
    if sealed != data {
        load(&sealed);
    }
});
