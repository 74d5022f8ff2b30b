//! Helpers for the tests that run the trainer on the bundled corpus: a fresh scratch
//! folder per test and a slice of the Shakespeare text as its own file.

use std::path::{Path, PathBuf};

/// A fresh, empty folder `llm-train-test-<pid>-<name>` under the temp dir (the process
/// id keeps concurrently running test binaries apart).
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("llm-train-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The first `bytes` bytes of the bundled Shakespeare, as `dir/corpus.txt`.
pub fn corpus_bytes(dir: &Path, bytes: usize) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/shakespeare.txt");
    let text = std::fs::read_to_string(src).unwrap();
    let p = dir.join("corpus.txt");
    std::fs::write(&p, &text[..bytes]).unwrap();
    p
}

/// The first 30 000 bytes of the bundled Shakespeare, as `dir/corpus.txt`.
#[allow(dead_code)] // not every test file uses it
pub fn corpus(dir: &Path) -> PathBuf {
    corpus_bytes(dir, 30_000)
}
