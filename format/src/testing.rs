//! Seeds for the random inputs of this workspace's tests, in one place so that every
//! crate's tests print and replay them the same way: `LLMRT_TEST_SEED=N` gives the
//! inputs of a printed run again (std only).

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
