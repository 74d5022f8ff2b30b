//! The llm.c importer. Input: checkpoint, `SEP`, tokenizer `.bin`. Whatever imports
//! must also load.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_train::import::{llmc, ImportedModel};

fuzz_target!(|data: &[u8]| {
    let p = llmrt_fuzz::parts(data, 2);
    let ckpt = llmc::parse_checkpoint(p[0], "fuzz.bin");
    let tok = llmc::parse_tokenizer(p[1], "tokenizer.bin");
    if let (Ok((opts, tensors)), Ok(t)) = (ckpt, tok) {
        if let Ok(m) = ImportedModel::finish(opts, t, tensors, "llmc:fuzz".into()) {
            llmrt_fuzz::assert_imported_model_loads(m);
        }
    }
});
