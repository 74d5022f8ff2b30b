//! Helpers shared by the fuzz targets: the multi-file input layout and a scratch
//! folder.
//!
//! A target that reads several files (a checkpoint and its tokenizer; a Hugging Face
//! folder) takes them from one fuzz input cut at [`SEP`]; the seeds that
//! `scripts/fuzz-corpus.sh` makes with `llm_format::testing::fuzz_seed` are joined
//! the same way.

use std::path::PathBuf;

/// Separates the files of one fuzz input.
pub use llm_format::testing::FUZZ_PART_SEP as SEP;

/// The first `n` parts of `data` cut at [`SEP`]: the last one takes the rest (SEP
/// included), missing ones are empty.
pub fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    while out.len() + 1 < n {
        match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + SEP.len()..];
            }
            None => {
                out.push(rest);
                rest = &[];
            }
        }
    }
    out.push(rest);
    out
}

/// A folder of this process's own for targets whose entry point takes paths
/// (`/dev/shm` when there is one: no disk writes per execution).
pub fn scratch_dir(target: &str) -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("llmrt-fuzz-{target}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// What every importer promises: a model that imports also writes, and the file it
/// writes loads in the runtime (issue 16, "a file that imports also loads").
pub fn assert_imported_model_loads(m: llm_train::import::ImportedModel) {
    let bytes = match m.into_writer(None).and_then(|w| Ok(w.to_bytes()?)) {
        Ok(b) => b,
        // Converting can refuse (a dtype it cannot write); that is an error, not a bug.
        Err(_) => return,
    };
    if let Err(e) = llmrt::Model::from_bytes(&bytes) {
        panic!("imported, but the written file does not load: {e}");
    }
}
