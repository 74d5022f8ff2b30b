//! llama.cpp's tokenizer test suite (`tests/test-tokenizer-0.cpp`): every
//! `models/ggml-vocab-*.gguf` with `.inp` / `.out` files must encode each `.inp` string
//! to the `.out` ids exactly. As llama.cpp's test: `add_special` and `parse_special`
//! off (no BOS), strings separated by `\n__ggml_vocab_test__\n`, one line of ids per
//! string.
//!
//! The vocabulary goes the importer's way: GGUF tokenizer metadata → `TokenizerSpec`
//! (`llm_train::import::gguf::tokenizer`) → `.llm` metadata entries and back → runtime
//! `Tokenizer`. The files come from the `llama-cpp-python` sdist:
//! `LLMRT_LLAMA_VOCABS=$(scripts/llama-vocabs.sh) cargo test --release -p llm-train
//! --test llama_vocabs -- --ignored`.

use llm_format::{MetaReader, TokenizerSpec, Value};
use llm_train::import::gguf;
use llmrt::tokenizer::{EncodeOptions, Tokenizer};
use std::path::Path;

/// Vocabularies that do not pass yet, with why. The test fails if one of them passes.
/// None at present: every vocabulary of llama-cpp-python 0.3.36 is exact, BERT's
/// WordPiece (`bert-bge`) included.
const KNOWN_FAILURES: &[(&str, &str)] = &[];

/// `(text, ids)` pairs of a `.inp` / `.out` pair, parsed as llama.cpp's `read_tests`.
fn read_tests(inp: &Path, out: &Path) -> Vec<(String, Vec<u32>)> {
    let raw = std::fs::read_to_string(inp).unwrap();
    let sep = "\n__ggml_vocab_test__\n";
    let mut texts = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        match raw[pos..].find(sep) {
            Some(i) => {
                texts.push(raw[pos..pos + i].to_string());
                pos += i + sep.len();
            }
            None => {
                texts.push(raw[pos..].to_string());
                break;
            }
        }
    }
    let ids: Vec<Vec<u32>> = std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        texts.len(),
        ids.len(),
        "{}: tests and answers differ in number",
        inp.display()
    );
    texts.into_iter().zip(ids).collect()
}

/// The vocabulary as the importer reads it, through `.llm` metadata and back.
fn load(path: &Path) -> Result<Tokenizer, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let name = path.display().to_string();
    let g = gguf::parse(&bytes, &name).map_err(|e| e.to_string())?;
    let spec = gguf::tokenizer(&g, &name).map_err(|e| e.to_string())?;
    let meta = spec.to_meta();
    let entries: Vec<(&str, Value<'static>)> =
        meta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let back =
        TokenizerSpec::from_meta(&MetaReader::from_entries(&entries)).map_err(|e| e.to_string())?;
    assert_eq!(
        back, spec,
        "{name}: the tokenizer does not survive .llm metadata"
    );
    Tokenizer::from_spec(&back).map_err(|e| e.to_string())
}

/// Runs one vocabulary: `Ok(n)` when all `n` strings are exact, else what failed.
fn run_vocab(gguf_path: &Path) -> Result<usize, String> {
    let p = gguf_path.display().to_string();
    let tests = read_tests(
        Path::new(&format!("{p}.inp")),
        Path::new(&format!("{p}.out")),
    );
    let tok = load(gguf_path)?;
    let opts = EncodeOptions {
        add_special: false,
        parse_special: false,
    };
    let mut bad = Vec::new();
    // llama.cpp adds Llama 3's BOS although the file has no add_bos_token.
    if gguf_path.ends_with("ggml-vocab-llama-bpe.gguf") {
        let with_bos = EncodeOptions {
            add_special: true,
            parse_special: true,
        };
        let ids = tok
            .encode_with("<|begin_of_text|>Hi", with_bos)
            .map_err(|e| e.to_string())?;
        if ids[..2] != [128000, 128000] {
            bad.push(format!(
                "BOS not added, or <|begin_of_text|> not parsed: {ids:?}"
            ));
        }
    }
    // llama.cpp's WPM puts [CLS] (101) before and [SEP] (102) after with add_special.
    if gguf_path.ends_with("ggml-vocab-bert-bge.gguf") {
        let with_special = EncodeOptions {
            add_special: true,
            parse_special: true,
        };
        let ids = tok
            .encode_with("Hello", with_special)
            .map_err(|e| e.to_string())?;
        if ids != [101, 7592, 102] {
            bad.push(format!("[CLS] hello [SEP] expected: {ids:?}"));
        }
    }
    for (text, want) in &tests {
        match tok.encode_with(text, opts) {
            Ok(got) if &got == want => {}
            Ok(got) => bad.push(format!("{text:?}: got {got:?}, want {want:?}")),
            Err(e) => bad.push(format!("{text:?}: {e}")),
        }
    }
    if bad.is_empty() {
        Ok(tests.len())
    } else {
        Err(format!(
            "{}/{} strings differ:\n    {}",
            bad.len(),
            tests.len(),
            bad.join("\n    ")
        ))
    }
}

#[test]
#[ignore = "needs llama.cpp's vocab files: LLMRT_LLAMA_VOCABS=$(scripts/llama-vocabs.sh)"]
fn llama_cpp_vocabularies_tokenize_exactly() {
    let dir = std::env::var("LLMRT_LLAMA_VOCABS")
        .expect("set LLMRT_LLAMA_VOCABS to llama.cpp's models dir (scripts/llama-vocabs.sh)");
    let mut vocabs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("ggml-vocab-")
                && name.ends_with(".gguf")
                && Path::new(&format!("{}.inp", p.display())).exists()
        })
        .collect();
    vocabs.sort();
    assert!(
        !vocabs.is_empty(),
        "{dir} has no ggml-vocab-*.gguf with .inp files"
    );
    let mut problems = Vec::new();
    let mut exact = 0;
    for path in &vocabs {
        let file = path.file_name().unwrap().to_string_lossy();
        let name = &file["ggml-vocab-".len()..file.len() - ".gguf".len()];
        let known = KNOWN_FAILURES.iter().find(|(n, _)| *n == name);
        match (run_vocab(path), known) {
            (Ok(n), None) => {
                exact += 1;
                println!("{name:<16} ok: {n} strings exact")
            }
            (Ok(n), Some(_)) => {
                println!("{name:<16} ok: {n} strings exact, but listed as a known failure");
                problems.push(format!("{name} passes: take it off KNOWN_FAILURES"));
            }
            (Err(e), Some((_, why))) => {
                println!(
                    "{name:<16} known failure ({why}): {}",
                    e.lines().next().unwrap_or("")
                )
            }
            (Err(e), None) => {
                println!("{name:<16} FAILED: {e}");
                problems.push(format!("{name}: {e}"));
            }
        }
    }
    println!(
        "{exact}/{} vocabularies exact ({} known failures)",
        vocabs.len(),
        KNOWN_FAILURES.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
