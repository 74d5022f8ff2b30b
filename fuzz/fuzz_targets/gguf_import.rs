//! The GGUF importer: header, metadata, tensor directory, tokenizer and chat template,
//! then the mapping onto the `.llm` layout. Whatever imports must also load.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_train::import::gguf;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = gguf::parse(data, "fuzz.gguf") else {
        return;
    };
    let _ = gguf::tokenizer(&g, "fuzz.gguf");
    let _ = gguf::chat_template(&g, "fuzz.gguf");
    if let Ok(m) = gguf::to_model(&g, "fuzz.gguf") {
        llmrt_fuzz::assert_imported_model_loads(m);
    }
});
