//! The `.llm` reader: parse, then everything a loader checks (options, tokenizer,
//! layout against the metadata) and the tensor checksums. The input is tried as
//! given and, resealed, with a header checksum that matches, so that changes to the
//! metadata and directory reach the checks behind the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_format::testing::{reseal, touch_everything};
use llm_format::LlmFile;

fn check(bytes: &[u8]) {
    let Ok(f) = LlmFile::parse(bytes) else { return };
    touch_everything(&f);
    if let Ok(opts) = f.options() {
        if opts.validate().is_ok() {
            let _ = f.check_layout(&opts);
        }
    }
    if let Ok(spec) = f.tokenizer() {
        let _ = llmrt::tokenizer::Tokenizer::from_spec(&spec);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut sealed = data.to_vec();
    reseal(&mut sealed);
    if sealed != data {
        check(&sealed);
    }
});
