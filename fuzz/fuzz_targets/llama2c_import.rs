//! The llama2.c importer. Input: checkpoint, `SEP`, `tokenizer.bin`. The tokenizer is
//! read for the checkpoint's vocabulary when the checkpoint parses, else for a
//! vocabulary of `1 + first byte` tokens. Whatever imports must also load.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_train::import::{llama2c, ImportedModel};

fuzz_target!(|data: &[u8]| {
    let p = llmrt_fuzz::parts(data, 2);
    let (model, tok) = (p[0], p[1]);
    match llama2c::parse_checkpoint(model, "fuzz.bin") {
        Ok((opts, tensors)) => {
            let Ok(t) = llama2c::parse_tokenizer(tok, opts.vocab_size, "tokenizer.bin") else {
                return;
            };
            if let Ok(m) = ImportedModel::finish(opts, t, tensors, "llama2c:fuzz".into()) {
                llmrt_fuzz::assert_imported_model_loads(m);
            }
        }
        Err(_) => {
            let vocab = 1 + usize::from(tok.first().copied().unwrap_or(0));
            let _ = llama2c::parse_tokenizer(tok, vocab, "tokenizer.bin");
        }
    }
});
