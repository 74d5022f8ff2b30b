//! Seeds for the random inputs of this workspace's tests, in one place so that every
//! crate's tests print and replay them the same way: `LLMRT_TEST_SEED=N` gives the
//! inputs of a printed run again (std only); and [`reseal`] and [`touch_everything`], which the hostile-file
//! tests and the fuzz targets use to get patched bytes past the header checksum and to
//! exercise what parsed.

/// The seed of a test's random inputs: `LLMRT_TEST_SEED` when it is set and not empty
/// (to replay a printed seed, or to try other inputs), else `default`. Prints
/// `seed = N (set LLMRT_TEST_SEED to replay)` on stderr (once per test thread and
/// seed), which the test harness shows beside a failure.
///
/// # Panics
/// If `LLMRT_TEST_SEED` is set to something other than a `u64`.
pub fn test_seed(default: u64) -> u64 {
    let seed = match std::env::var("LLMRT_TEST_SEED") {
        Ok(s) if !s.trim().is_empty() => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("LLMRT_TEST_SEED={s:?} is not a u64")),
        _ => default,
    };
    std::thread_local! {
        static SHOWN: core::cell::Cell<Option<u64>> = const { core::cell::Cell::new(None) };
    }
    if SHOWN.with(|s| s.replace(Some(seed))) != Some(seed) {
        std::eprintln!("seed = {seed} (set LLMRT_TEST_SEED to replay)");
    }
    seed
}

/// A time-based seed, the same for the whole test process: the default of the tests
/// meant to see new inputs on every run.
pub fn fresh_seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    })
}

/// Recomputes the header checksum of `.llm` bytes after a test (or a fuzzer) changed
/// the bytes it covers, so that the change reaches the checks behind the checksum.
/// Does nothing when the file is shorter than the header or its checksum offset field
/// does not point inside the file.
pub fn reseal(file: &mut [u8]) {
    let header = crate::header::HEADER_LEN;
    if (file.len() as u64) < header {
        return;
    }
    let cs_off = u64::from_le_bytes([
        file[32], file[33], file[34], file[35], file[36], file[37], file[38], file[39],
    ]);
    if let Some(end) = cs_off.checked_add(8) {
        if cs_off >= header && end <= file.len() as u64 {
            let cs = crate::header::checksum(&file[..cs_off as usize]);
            file[cs_off as usize..end as usize].copy_from_slice(&cs.to_le_bytes());
        }
    }
}

/// Calls every accessor of a parsed file, so that a property test or fuzz case that
/// parses also exercises the views, options, tokenizer and checksums (none may panic).
///
/// # Panics
/// If a view disagrees with the directory (a listed tensor missing, a size that differs).
pub fn touch_everything(f: &crate::LlmFile<'_>) {
    let _ = f.version();
    let _ = f.data_offset();
    for (k, v) in f.metadata() {
        assert!(f.get(k).is_some());
        let _ = v.as_u64();
    }
    let _ = f.options();
    let _ = f.tokenizer();
    for t in f.tensors() {
        let view = f.tensor(t.name).expect("listed tensor is present");
        assert_eq!(view.data.len() as u64, t.size);
        let v = view.to_f32_vec();
        assert_eq!(v.len(), t.n_elements());
        let _ = (view.rows(), view.cols(), view.as_f32());
        let _ = f.verify_tensor(t.name);
    }
    let _ = f.verify_all();
}

/// Separates the files of one fuzz input (a checkpoint and its tokenizer, the files of
/// a model folder); the fuzz targets (`fuzz/`) cut their input at it.
pub const FUZZ_PART_SEP: &[u8] = b"\n--8<--fuzz-part--8<--\n";

/// Writes a seed for the fuzz target `target` when `LLMRT_FUZZ_SEEDS` names a folder
/// (`scripts/fuzz-corpus.sh` sets it while it runs the tests whose writers make the
/// seeds): `parts` joined by [`FUZZ_PART_SEP`] into `$LLMRT_FUZZ_SEEDS/<target>/<name>`.
/// Does nothing otherwise.
///
/// # Panics
/// If the folder or file cannot be written.
pub fn fuzz_seed(target: &str, name: &str, parts: &[&[u8]]) {
    let Some(root) = std::env::var_os("LLMRT_FUZZ_SEEDS").filter(|s| !s.is_empty()) else {
        return;
    };
    let dir = std::path::Path::new(&root).join(target);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let bytes = parts.join(FUZZ_PART_SEP);
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
