//! Seeds for the fuzz targets of `fuzz/` that need whole small models: tiny `.llm`
//! files (f32 and q8_0, llama-like and GPT-2-like, byte-level vocabulary) for the reader and the C ABI load,
//! and their GGUF exports for the GGUF importer. Made with the suite's model writer
//! and the trainer's GGUF exporter; `scripts/fuzz-corpus.sh` runs this with
//! `LLMRT_FUZZ_SEEDS` set (the importers' own seeds come from their tests).

use llm_format::testing::fuzz_seed;
use llm_format::{DType, LlmFile, Mlp, Norm, Positions};
use llm_format::{TokenizerKind, TokenizerSpec};
use llmrt_suite::fixtures::{char_tokenizer_of, opts, random_weights, write_model_with};

/// A byte-level vocabulary (GPT-2's 256 byte tokens), which GGUF can carry.
fn byte_tokenizer() -> TokenizerSpec<'static> {
    let tokens = (0..=255u8)
        .map(|b| llmrt::tokenizer::byte_to_char(b).to_string().into())
        .collect();
    TokenizerSpec {
        kind: TokenizerKind::Gpt2,
        ..char_tokenizer_of(tokens)
    }
}

#[test]
#[ignore = "writes the fuzz seed corpus; run by scripts/fuzz-corpus.sh"]
fn write_fuzz_seed_models() {
    let llama = |d: usize, f: usize| {
        let mut o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 1);
        (
            o.vocab_size,
            o.d_model,
            o.n_layers,
            o.n_heads,
            o.d_ff,
            o.max_len,
        ) = (256, d, 1, 2, f, 16);
        o
    };
    let mut gpt2 = opts(
        Positions::Learned,
        Norm::LayerNorm,
        Mlp::Gelu,
        true,
        true,
        2,
    );
    (
        gpt2.vocab_size,
        gpt2.d_model,
        gpt2.n_layers,
        gpt2.n_heads,
        gpt2.d_ff,
        gpt2.max_len,
    ) = (256, 8, 1, 2, 16, 16);
    let models = [
        ("llama_f32", llama(8, 16), DType::F32),
        ("llama_q8_0", llama(32, 32), DType::Q8_0),
        ("gpt2_f32", gpt2, DType::F32),
    ];
    for (seed, (name, o, dtype)) in models.into_iter().enumerate() {
        o.validate().expect("valid options");
        let w = random_weights(&o, 900 + seed as u64);
        let (bytes, _) = write_model_with(&o, &byte_tokenizer(), &w, dtype);
        let f = LlmFile::parse(&bytes).expect("the writer's file parses");
        llmrt::Model::from_bytes(&bytes).expect("and loads");
        fuzz_seed("llm_reader", name, &[&bytes]);
        fuzz_seed("capi_load", name, &[&bytes]);
        if o.positions == Positions::Rope {
            let g = llm_train::export_gguf::to_gguf(&f, name).expect("llama exports");
            fuzz_seed("gguf_import", name, &[&g]);
        }
    }
}
