//! The Hugging Face folder importer (it takes a folder, so the input is written to a
//! scratch folder first). Input: `config.json`, `SEP`, `tokenizer.json`, `SEP`,
//! `model.safetensors`, `SEP`, `tokenizer_config.json` (left out when empty).
//! Whatever imports must also load.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_train::import::safetensors;
use std::path::PathBuf;
use std::sync::OnceLock;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| llmrt_fuzz::scratch_dir("safetensors"))
}

fuzz_target!(|data: &[u8]| {
    let p = llmrt_fuzz::parts(data, 4);
    let d = dir();
    let files = [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "tokenizer_config.json",
    ];
    for (name, bytes) in files.iter().zip(&p) {
        let path = d.join(name);
        if bytes.is_empty() && *name == "tokenizer_config.json" {
            let _ = std::fs::remove_file(&path);
        } else {
            std::fs::write(&path, bytes).expect("scratch write");
        }
    }
    if let Ok(m) = safetensors::import(d, None) {
        llmrt_fuzz::assert_imported_model_loads(m);
    }
});
